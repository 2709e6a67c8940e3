/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters for payledger.metrics that tables cannot give.
 *
 * Most metrics are derived from the ledger's own tables by the view
 * payledger.metrics, so the money path updates no shared counter.  Two
 * are not in the tables:
 *
 *	- replays write nothing, so each backend counts its replays in its own
 *	  row of payledger.replay_counts (keyed by backend slot: no two live
 *	  sessions share a row, so the count adds no contention);
 *	- errors roll back whatever they would have written, so when payledger
 *	  is in shared_preload_libraries an emit_log_hook counts the errors that
 *	  payledger raises, by SQLSTATE, in a small table in shared memory.
 *	  Without preloading that counter is simply absent.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/elog.h"

#include "payledger.h"
#include "spi_plans.h"
#include "metrics.h"

#define ERROR_SLOTS 128

typedef struct ErrorSlot
{
	int			sqlstate;		/* 0: free */
	pg_atomic_uint64 count;
} ErrorSlot;

typedef struct ErrorCounters
{
	slock_t		mutex;			/* taken only to claim a free slot */
	ErrorSlot	slots[ERROR_SLOTS];
} ErrorCounters;

static ErrorCounters *counters = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * payledger's own source files: errors raised there are ours.  elog.c keeps
 * only the base name of __FILE__.
 */
static bool
raised_by_payledger(const char *filename)
{
	static const char *const ours[] = {
		"accounts.c", "args.c", "audit.c", "audit_chain.c", "batch.c",
		"check.c", "currency.c", "direct.c", "events.c", "holds.c",
		"idempotency.c", "metrics.c", "payledger.c", "payments.c", "pii.c", "posting.c",
		"protect.c", "settlement.c", "spi_plans.c", "state_machine.c", "transfer.c",
		"uuid_v7.c"
	};
	const char *base;

	if (filename == NULL)
		return false;
	base = strrchr(filename, '/');
	base = base ? base + 1 : filename;
	for (int i = 0; i < (int) lengthof(ours); i++)
		if (strcmp(base, ours[i]) == 0)
			return true;
	return false;
}

static void
count_error(ErrorData *edata)
{
	if (counters != NULL && edata->elevel >= ERROR &&
		raised_by_payledger(edata->filename))
	{
		int			start = (uint32) edata->sqlerrcode % ERROR_SLOTS;

		for (int i = 0; i < ERROR_SLOTS; i++)
		{
			ErrorSlot  *slot = &counters->slots[(start + i) % ERROR_SLOTS];

			if (slot->sqlstate == edata->sqlerrcode)
			{
				pg_atomic_fetch_add_u64(&slot->count, 1);
				break;
			}
			if (slot->sqlstate == 0)
			{
				bool		mine = false;

				SpinLockAcquire(&counters->mutex);
				if (slot->sqlstate == 0)
				{
					slot->sqlstate = edata->sqlerrcode;
					mine = true;
				}
				SpinLockRelease(&counters->mutex);
				if (mine || slot->sqlstate == edata->sqlerrcode)
				{
					pg_atomic_fetch_add_u64(&slot->count, 1);
					break;
				}
			}
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static void
metrics_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(ErrorCounters)));
}

static void
metrics_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	counters = ShmemInitStruct("payledger error counters", sizeof(ErrorCounters), &found);
	if (!found)
	{
		SpinLockInit(&counters->mutex);
		for (int i = 0; i < ERROR_SLOTS; i++)
		{
			counters->slots[i].sqlstate = 0;
			pg_atomic_init_u64(&counters->slots[i].count, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
MetricsInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = count_error;
}

/* Counts replays of this backend (inside PlSpiBegin). */
void
PlCountReplays(int n)
{
	Datum		values[2];

	if (n <= 0)
		return;
	values[0] = Int32GetDatum(MyBackendId);
	values[1] = Int64GetDatum(n);
	if (PlExec(PLAN_COUNT_REPLAYS, values, NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "replay count failed");
}

/*
 * payledger.error_counts() RETURNS TABLE(sqlstate text, errors bigint)
 *
 * Errors payledger raised since the server started, by SQLSTATE; empty
 * unless payledger is in shared_preload_libraries.
 */
PG_FUNCTION_INFO_V1(error_counts);
Datum
error_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (counters == NULL)
		return (Datum) 0;
	for (int i = 0; i < ERROR_SLOTS; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};
		int			code = counters->slots[i].sqlstate;

		if (code == 0)
			continue;
		values[0] = CStringGetTextDatum(unpack_sql_state(code));
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&counters->slots[i].count));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
