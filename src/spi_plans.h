/*-------------------------------------------------------------------------
 *
 * spi_plans.h
 *	  Kept SPI plans, run as the ledger's owner (spi_plans.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/spi_plans.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SPI_PLANS_H
#define SPI_PLANS_H

#include "executor/spi.h"
#include "utils/snapshot.h"

typedef enum PlPlanId
{
	PLAN_ACCOUNT_INSERT,
	PLAN_ACCOUNT_INSERT_OWNED,
	PLAN_ACCOUNT_GET,
	PLAN_ACCOUNT_LOCK,
	PLAN_ACCOUNT_SET_STATUS,
	PLAN_ACCOUNT_ENTRIES,
	PLAN_BALANCE_AT,
	PLAN_TRANSFER_GET,
	PLAN_IDEM_PURGE,
	PLAN_CONSUMER_POSITION,
	PLAN_EVENTS_READ,
	PLAN_EVENT_READABLE,
	PLAN_EVENTS_ACK,
	PLAN_ERA_REGISTER,
	PLAN_ERA_GET,
	PLAN_ERA_NEXT,
	PLAN_COUNT_REPLAYS,
	PLAN_MACHINE_GET,
	PLAN_MACHINE_PUT,
	PLAN_AUTHS_OVERDUE,
	PLAN_HOLDS_LOCK_MANY,
	PLAN_LIMITS_CHECK,
	PLAN_LIMITS_SET,
	PLAN_PAYMENT_DISPUTE,
	PLAN_SETTLE_CANDIDATES,
	PLAN_PAYMENT_SETTLE,
	PLAN_SETTLEMENT_INSERT,
	PLAN_SETTLEMENT_GET,
	PLAN_SETTLEMENT_PAYMENTS,
	PLAN_HOLDS_OVERDUE,
	PLAN_OVERDUE_DEBITS,
	PLAN_OVERDUE_CREDITS,
	PLAN_SUB_BALANCES_COUNT,
	PLAN_SUB_BALANCE_INSERT,
	PLAN_SUB_BALANCES_ACTIVATE,
	PLAN_SUB_BALANCES_LOCK,
	PLAN_SUB_BALANCES_CLOSE,
	PLAN_BALANCE_AT_SUB,
	PLAN_ACCOUNT_ENTRIES_SUB,
	PLAN_COUNT					/* must be last */
} PlPlanId;

typedef struct PlPrivState
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_internal;
	int			save_nestlevel; /* GUC nest level of the call */
	Oid			owner;			/* the ledger's owner, the call's user */
	bool		save_reads;
} PlPrivState;

extern void PlSpiBegin(PlPrivState *state);
extern void PlSpiEnd(PlPrivState *state);
extern void PlSpiBeginRead(PlPrivState *state);
extern void PlSetCallHooks(void (*on_begin) (void), void (*on_end) (void));
extern Snapshot PlReadSnapshot(void);
extern int	PlExec(PlPlanId id, Datum *values, const char *nulls, long count);
extern bool PlInternalWrite(void);
extern Oid	PlCallerUserId(void);
extern Oid	PlLedgerOwner(void);
extern void PlUnprivilegedBegin(PlPrivState *state);
extern void PlUnprivilegedEnd(PlPrivState *state);
extern void PlSafeSearchPathSuspend(void);
extern void PlSafeSearchPathResume(void);
extern void SpiPlansInit(void);

#endif							/* SPI_PLANS_H */
