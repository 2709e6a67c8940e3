/*-------------------------------------------------------------------------
 *
 * payledger.c
 *	  Module entry point: one Init call per module that keeps state.
 *
 * SettingsInit() runs first, because it reserves the payledger.* prefix
 * once every setting is defined.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/payledger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "payledger.h"
#include "access.h"
#include "audit.h"
#include "events.h"
#include "ledger.h"
#include "ledger_writer.h"
#include "metrics.h"
#include "notify_worker.h"
#include "spi_plans.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	SettingsInit();

	SpiPlansInit();
	PlSubBalancesInit();
	AuditChainInit();
	AuditPartitionsInit();
	EventsInit();
	MetricsInit();
	AccessInit();
	NotifyWorkerInit();
	LedgerWriterInit();
}
