/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters for payledger.metrics that tables cannot give.
 *
 * A scrape must cost the same whatever the ledger's history, so the
 * cumulative counters are kept, not recounted from the tables:
 *
 *	- transfers by status and reason, holds made, voided and expired, audit
 *	  rows and payment events are counted as a call makes them, in memory,
 *	  and added at the end of the outermost call to this backend's rows of
 *	  payledger.metric_counters, directly (direct.c), in the same
 *	  transaction as the rows they count (so a rollback takes both back).
 *	  Rows are keyed by backend slot: no two live sessions share a row, so
 *	  counting adds no contention; the view sums a backend's rows, whose
 *	  number is bounded by max_connections times the label sets.  A prepared
 *	  transaction keeps the row locks of what it counted until COMMIT or
 *	  ROLLBACK PREPARED, so a transaction counts under a key it holds an
 *	  advisory lock on (the lock goes with the prepared transaction): the
 *	  slot's own key, or the slot's next lane when a prepared transaction
 *	  holds that one (counter_key());
 *	- replays write nothing else, so each backend counts its replays in its
 *	  own row of payledger.replay_counts, likewise;
 *	- errors roll back whatever they would have written, so when payledger
 *	  is in shared_preload_libraries an emit_log_hook counts, by SQLSTATE
 *	  in a small table in shared memory, every error raised inside a
 *	  payledger call (whoever raises it: PostgreSQL's lock manager, a
 *	  statement_timeout) or by payledger's own code, and the risk hook
 *	  counts the errors of the hook that it turns into a decline.  Without
 *	  preloading that counter is simply absent.
 *
 * Gauges (holds pending now, the oldest one) read only the pending holds,
 * through their partial indexes.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/twophase.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "payledger.h"
#include "direct.h"
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

/* counts of the running outermost call, not yet in metric_counters */
#define PENDING_SLOTS 16
#define LABELS_LEN 128

typedef struct PendingCount
{
	const char *metric;
	char		labels[LABELS_LEN];
	int64		delta;
} PendingCount;

static PendingCount pending[PENDING_SLOTS];
static int	npending = 0;

/*
 * payledger's own source files: errors raised there are ours.  elog.c keeps
 * only the base name of __FILE__.
 */
static bool
raised_by_payledger(const char *filename)
{
	static const char *const ours[] = {
		"accounts.c", "args.c", "audit.c", "audit_chain.c", "audit_partitions.c",
		"batch.c", "check.c", "currency.c", "direct.c", "events.c", "holds.c",
		"idempotency.c", "ledger_writer.c", "metrics.c", "payledger.c", "payments.c", "pii.c",
		"pipeline.c", "posting.c", "protect.c", "risk.c", "settings.c",
		"settlement.c", "spi_plans.c", "state_machine.c", "sub_balances.c",
		"transfer.c", "uuid_v7.c"
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

/* adds one to the shared counter of sqlstate */
static void
count_sqlstate(int sqlstate)
{
	if (counters != NULL)
	{
		int			start = (uint32) sqlstate % ERROR_SLOTS;

		for (int i = 0; i < ERROR_SLOTS; i++)
		{
			ErrorSlot  *slot = &counters->slots[(start + i) % ERROR_SLOTS];

			if (slot->sqlstate == sqlstate)
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
					slot->sqlstate = sqlstate;
					mine = true;
				}
				SpinLockRelease(&counters->mutex);
				if (mine || slot->sqlstate == sqlstate)
				{
					pg_atomic_fetch_add_u64(&slot->count, 1);
					break;
				}
			}
		}
	}
}

/*
 * emit_log_hook: an error raised inside a payledger call (the internal-write
 * depth is up until the transaction aborts, which comes after the report) or
 * by payledger's own code.
 */
static void
count_error(ErrorData *edata)
{
	if (edata->elevel >= ERROR &&
		(PlInternalWrite() || raised_by_payledger(edata->filename)))
		count_sqlstate(edata->sqlerrcode);
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

/*
 * Keys of counter rows: slot + lane * COUNTER_LANE_STRIDE, above any backend
 * slot.  Lanes beyond the first are used only while prepared transactions
 * hold the lower ones, so there are at most max_prepared_transactions + 1.
 */
#define COUNTER_KEY_LOCK_SPACE	0x504E
#define COUNTER_LANE_STRIDE		(1 << 18)

static int32 xact_counter_key = -1;
static LocalTransactionId xact_counter_lxid = InvalidLocalTransactionId;

/*
 * The key this transaction counts under: the first lane of this backend
 * slot whose advisory lock it gets without waiting.  Live sessions never
 * share a slot, so only prepared transactions, which keep their locks,
 * hold a lane another transaction of the slot tries.  The lock belongs to
 * the top transaction, also when a subtransaction takes it: a rolled back
 * savepoint must not release it while the key stays cached for the rest
 * of the transaction (which may then be prepared with rows under that key
 * and without its lock).
 */
static int32
counter_key(void)
{
	LOCKTAG		tag;
	ResourceOwner owner = CurrentResourceOwner;

	Assert(MyBackendId > 0 && MyBackendId < COUNTER_LANE_STRIDE);
	if (xact_counter_lxid == MyProc->lxid)
		return xact_counter_key;
	for (int32 lane = 0;; lane++)
	{
		int32		key = MyBackendId + lane * COUNTER_LANE_STRIDE;
		bool		got;

		if (lane > max_prepared_xacts)
			elog(ERROR, "no free metric counter lane for backend %d", MyBackendId);
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) key, COUNTER_KEY_LOCK_SPACE);
		CurrentResourceOwner = TopTransactionResourceOwner;
		got = LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
		CurrentResourceOwner = owner;
		if (got)
		{
			xact_counter_key = key;
			xact_counter_lxid = MyProc->lxid;
			return key;
		}
	}
}

/*
 * The counter rows this backend has written: their labels as jsonb, made
 * once, and where each row's newest version was written last, which is
 * where PlAddCounters looks first.
 */
#define COUNTER_ROWS 64

typedef struct CounterRow
{
	int32		key;
	const char *metric;
	char		labels[LABELS_LEN];
	Datum		labels_jsonb;
	ItemPointerData where;
} CounterRow;

static CounterRow counter_rows[COUNTER_ROWS];
static int	ncounter_rows = 0;
static MemoryContext counter_rows_cxt = NULL;

/* The remembered row of count (made in counter_rows_cxt when new). */
static CounterRow *
counter_row(int32 key, const PendingCount *count)
{
	CounterRow *row;

	for (int i = 0; i < ncounter_rows; i++)
	{
		row = &counter_rows[i];
		if (row->key == key && strcmp(row->metric, count->metric) == 0 &&
			strcmp(row->labels, count->labels) == 0)
			return row;
	}
	Assert(ncounter_rows < COUNTER_ROWS);
	row = &counter_rows[ncounter_rows++];
	row->key = key;
	row->metric = count->metric;
	strlcpy(row->labels, count->labels, LABELS_LEN);
	row->labels_jsonb = DirectFunctionCall1(jsonb_in, CStringGetDatum(count->labels));
	ItemPointerSetInvalid(&row->where);
	return row;
}

/*
 * Adds the running call's counts to this transaction's rows (inside SPI,
 * as the ledger's owner), without the executor (direct.c): no executor
 * start, statement trigger or join over the counts per call.
 */
static void
flush_counts(void)
{
	PlCounterDelta deltas[PENDING_SLOTS];
	CounterRow *rows[PENDING_SLOTS];
	MemoryContext oldcxt;
	Relation	rel;
	int32		key;

	if (npending == 0)
		return;
	/* a schema not yet updated to 0.3.0 counts from its tables */
	rel = PlTryOpenTable("metric_counters");
	if (rel == NULL)
	{
		npending = 0;
		return;
	}
	key = counter_key();
	if (counter_rows_cxt == NULL)
		counter_rows_cxt = AllocSetContextCreate(TopMemoryContext, "payledger counter rows",
												 ALLOCSET_SMALL_SIZES);
	if (ncounter_rows + npending > COUNTER_ROWS)
	{
		MemoryContextReset(counter_rows_cxt);
		ncounter_rows = 0;
	}
	oldcxt = MemoryContextSwitchTo(counter_rows_cxt);
	for (int i = 0; i < npending; i++)
	{
		rows[i] = counter_row(key, &pending[i]);
		deltas[i].metric = pending[i].metric;
		deltas[i].labels = rows[i]->labels_jsonb;
		deltas[i].delta = pending[i].delta;
		deltas[i].where = rows[i]->where;
	}
	MemoryContextSwitchTo(oldcxt);

	PlAddCounters(rel, key, deltas, npending);
	table_close(rel, NoLock);
	for (int i = 0; i < npending; i++)
		rows[i]->where = deltas[i].where;
	npending = 0;
}

/* a new outermost call: what a failed one left is not to be counted */
static void
forget_counts(void)
{
	npending = 0;
}

static void
count(const char *metric, const char *labels)
{
	for (int i = 0; i < npending; i++)
		if (strcmp(pending[i].metric, metric) == 0 && strcmp(pending[i].labels, labels) == 0)
		{
			pending[i].delta++;
			return;
		}
	if (npending == PENDING_SLOTS)
		flush_counts();
	pending[npending].metric = metric;
	strlcpy(pending[npending].labels, labels, LABELS_LEN);
	pending[npending].delta = 1;
	npending++;
}

/* A transfer row: posted, or rejected with its reason. */
void
PlCountTransfer(const char *reason)
{
	char		labels[LABELS_LEN];

	snprintf(labels, sizeof(labels), "{\"status\": \"%s\", \"reason_code\": \"%s\"}",
			 reason ? "rejected" : "posted", reason ? reason : "");
	count("payledger_transfers_total", labels);
}

/*
 * A hold made (pending) or ended without a posting (voided, expired); a
 * made hold also records its currency, for the holds gauges.
 */
void
PlCountHold(const char *status, const char *currency)
{
	char		labels[LABELS_LEN];

	snprintf(labels, sizeof(labels), "{\"status\": \"%s\", \"reason_code\": \"\"}", status);
	count("payledger_transfers_total", labels);
	if (strcmp(status, "pending") == 0)
	{
		snprintf(labels, sizeof(labels), "{\"currency\": \"%s\"}", currency);
		count("hold_currencies", labels);
	}
}

/* An audit row, and the payment event it may be. */
void
PlCountAudit(const char *event_type, bool success)
{
	count("payledger_audit_rows_total", "{}");
	if (strncmp(event_type, "PAYMENT", 7) == 0 || strcmp(event_type, "DISPUTE_WON") == 0)
	{
		char		labels[LABELS_LEN];

		snprintf(labels, sizeof(labels), "{\"event_type\": \"%s\", \"success\": %s}",
				 event_type, success ? "true" : "false");
		count("payledger_payments_total", labels);
	}
}

/* An error payledger caught and turned into an outcome (the risk hook's). */
void
PlCountError(int sqlstate)
{
	count_sqlstate(sqlstate);
}

void
MetricsInit(void)
{
	PlSetCallHooks(forget_counts, flush_counts);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = count_error;
}

/* parameters of PLAN_COUNT_REPLAYS, 0-based */
enum
{
	REPLAYS_KEY, REPLAYS_N, REPLAYS_NARGS
};

/* Counts replays of this backend (inside PlSpiBegin). */
void
PlCountReplays(int n)
{
	Datum		values[REPLAYS_NARGS];

	if (n <= 0)
		return;
	values[REPLAYS_KEY] = Int32GetDatum(counter_key());
	values[REPLAYS_N] = Int64GetDatum(n);
	if (PlExec(PLAN_COUNT_REPLAYS, values, NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "replay count failed");
}

/* columns of error_counts()'s result, 0-based */
enum
{
	ERRORS_SQLSTATE, ERRORS_COUNT, ERRORS_NCOLS
};

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
		Datum		values[ERRORS_NCOLS];
		bool		nulls[ERRORS_NCOLS] = {false, false};
		int			code = counters->slots[i].sqlstate;

		if (code == 0)
			continue;
		values[ERRORS_SQLSTATE] = CStringGetTextDatum(unpack_sql_state(code));
		values[ERRORS_COUNT] = Int64GetDatum((int64) pg_atomic_read_u64(&counters->slots[i].count));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
