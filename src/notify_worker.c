/*-------------------------------------------------------------------------
 *
 * notify_worker.c
 *	  Wakes LISTEN payledger_events without making commits queue on
 *	  PostgreSQL's notify lock.
 *
 * Design note.
 *
 * A transaction that calls NOTIFY takes a cluster-wide lock in pre-commit
 * and keeps it until its commit record is flushed, so event-writing commits
 * that each NOTIFY run one at a time.  A NOTIFY is also refused, failing
 * the whole commit, once a listener that stopped reading has filled the
 * notification queue.  With payledger in shared_preload_libraries the
 * committing transactions therefore never NOTIFY: at commit they only set
 * a flag in shared memory and the latch of their database's notify worker,
 * and the worker sends one NOTIFY payledger_events, in a transaction of its
 * own, for every commit since its last one, at most once per
 * payledger.notify_delay.  The worker's NOTIFY may wait or fail; no
 * payledger commit waits for it or fails with it.
 *
 * NOTIFY is per database and a background worker connects to one, so
 * there is one worker per database that writes events, started on demand:
 * the first event-writing transaction of a database claims a slot and
 * registers a dynamic background worker for it (inside the transaction,
 * where an error is still allowed; the commit callback never allocates,
 * locks or fails).  A worker that has had nothing to do for
 * PL_WORKER_IDLE_EXIT_MS exits and frees its slot, so that DROP DATABASE,
 * which waits a few seconds for other sessions to leave, is not held up.
 * A slot is freed only while no transaction that will signal it is in
 * progress (inflight) and no signal is pending, so no commit's wake-up is
 * lost between a worker deciding to exit and the next one starting.
 *
 * When no worker can be started (max_worker_processes reached), or without
 * preloading, the event-writing transaction sends its own NOTIFY, as
 * payledger did before the worker existed.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/notify_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "notify_worker.h"
#include "workers.h"

/* after a failed NOTIFY, the worker tries again this much later */
#define NOTIFY_RETRY_MS			1000

typedef struct NotifySlot
{
	/* protected by NotifyShared.mutex */
	Oid			dboid;			/* InvalidOid: slot free */
	bool		worker_wanted;	/* a worker is registered or running */
	pid_t		pid;			/* the running worker, 0 while none */
	TimestampTz registered_at;

	/* read without the mutex */
	Latch	   *volatile latch; /* the running worker's latch, or NULL */
	pg_atomic_uint32 pending;	/* a commit has happened since the last NOTIFY */
	pg_atomic_uint32 inflight;	/* transactions that will signal at their end */
} NotifySlot;

typedef struct NotifyShared
{
	slock_t		mutex;
	int			nslots;
	NotifySlot	slots[FLEXIBLE_ARRAY_MEMBER];
} NotifyShared;

static NotifyShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* backend: the slot this transaction signals at its end, or -1 */
static int	xact_slot = -1;
/* backend: the slot last used by this database */
static int	cached_slot = -1;
static bool start_failure_logged = false;

/* worker: its slot, once it owns it */
static int	worker_slot = -1;

PGDLLEXPORT void PlNotifyWorkerMain(Datum main_arg);

static Size
notify_shmem_size(void)
{
	return add_size(offsetof(NotifyShared, slots),
					mul_size(sizeof(NotifySlot), max_worker_processes));
}

static void
notify_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(notify_shmem_size()));
}

static void
notify_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("payledger notify workers", notify_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		shared->nslots = max_worker_processes;
		for (int i = 0; i < shared->nslots; i++)
		{
			NotifySlot *slot = &shared->slots[i];

			slot->dboid = InvalidOid;
			slot->worker_wanted = false;
			slot->pid = 0;
			slot->registered_at = 0;
			slot->latch = NULL;
			pg_atomic_init_u32(&slot->pending, 0);
			pg_atomic_init_u32(&slot->inflight, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * At the end of a transaction that wrote events: mark a wake-up pending and
 * wake the worker.  Runs after the commit or abort; it takes no lock and
 * cannot fail.  An abort wakes too: while it ran, the transaction held back
 * the events of later commits, whose wake-ups found nothing to read.  A
 * PREPARE does not: nothing becomes readable until COMMIT PREPARED or
 * ROLLBACK PREPARED, which wake the worker themselves (events.c).
 */
static void
notify_xact_callback(XactEvent event, void *arg)
{
	NotifySlot *slot;
	Latch	   *latch;

	if (xact_slot < 0)
		return;
	slot = &shared->slots[xact_slot];
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			(void) pg_atomic_exchange_u32(&slot->pending, 1);
			latch = slot->latch;
			if (latch != NULL)
				SetLatch(latch);
			pg_atomic_fetch_sub_u32(&slot->inflight, 1);
			xact_slot = -1;
			break;
		case XACT_EVENT_PREPARE:
			pg_atomic_fetch_sub_u32(&slot->inflight, 1);
			xact_slot = -1;
			break;
		default:
			break;
	}
}

void
NotifyWorkerInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = notify_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = notify_shmem_startup;
	RegisterXactCallback(notify_xact_callback, NULL);
}

static bool
start_worker(int slotno)
{
	return PlStartDatabaseWorker("PlNotifyWorkerMain", "payledger notify worker",
								 "payledger notify", slotno);
}

/* the slot of this database, claiming a free one if it has none (mutex held) */
static int
find_slot(TimestampTz now)
{
	int			free_slot = -1;

	if (cached_slot >= 0 && shared->slots[cached_slot].dboid == MyDatabaseId)
		return cached_slot;
	for (int i = 0; i < shared->nslots; i++)
	{
		NotifySlot *slot = &shared->slots[i];

		if (slot->dboid == MyDatabaseId)
			return cached_slot = i;
		if (slot->dboid == InvalidOid && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		NotifySlot *slot = &shared->slots[free_slot];

		slot->dboid = MyDatabaseId;
		slot->worker_wanted = false;
		slot->pid = 0;
		slot->registered_at = now;
		slot->latch = NULL;
		pg_atomic_write_u32(&slot->pending, 0);
		cached_slot = free_slot;
	}
	return free_slot;
}

/*
 * Arranges for this transaction's commit to wake its database's notify
 * worker.  Returns false when there is no worker to wake (payledger not
 * preloaded, or no worker could be started): the caller then sends its own
 * NOTIFY.  Called inside the transaction, at its first event.
 */
bool
PlNotifyWorkerSignal(void)
{
	TimestampTz now;
	NotifySlot *slot;
	int			slotno;
	bool		start;

	if (shared == NULL || !IsUnderPostmaster || !OidIsValid(MyDatabaseId))
		return false;
	if (xact_slot >= 0)
		return true;

	now = GetCurrentTimestamp();
	SpinLockAcquire(&shared->mutex);
	slotno = find_slot(now);
	if (slotno < 0)
	{
		SpinLockRelease(&shared->mutex);
		return false;
	}
	slot = &shared->slots[slotno];
	start = PlWorkerClaimStart(&slot->worker_wanted, slot->pid, &slot->registered_at, now);
	pg_atomic_fetch_add_u32(&slot->inflight, 1);
	SpinLockRelease(&shared->mutex);
	xact_slot = slotno;

	if (start && !start_worker(slotno))
	{
		SpinLockAcquire(&shared->mutex);
		slot->worker_wanted = false;
		SpinLockRelease(&shared->mutex);
		if (!start_failure_logged)
			ereport(LOG,
					(errmsg("payledger could not start a notify worker, so transactions send NOTIFY payledger_events themselves"),
					 errhint("Raise max_worker_processes.")));
		start_failure_logged = true;
		return false;
	}
	return true;
}

/* worker exit: give the slot up, or leave it claimed for the next worker */
static void
worker_detach(int code, Datum arg)
{
	NotifySlot *slot;

	if (worker_slot < 0)
		return;
	slot = &shared->slots[worker_slot];
	SpinLockAcquire(&shared->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->latch = NULL;
		slot->pid = 0;
		slot->worker_wanted = false;
		pg_memory_barrier();
		if (pg_atomic_read_u32(&slot->inflight) == 0 &&
			pg_atomic_read_u32(&slot->pending) == 0)
			slot->dboid = InvalidOid;
	}
	SpinLockRelease(&shared->mutex);
	worker_slot = -1;
}

/* an idle worker exits unless a transaction is about to signal it */
static bool
worker_may_exit(NotifySlot *slot)
{
	bool		idle;

	SpinLockAcquire(&shared->mutex);
	pg_memory_barrier();
	idle = pg_atomic_read_u32(&slot->inflight) == 0 &&
		pg_atomic_read_u32(&slot->pending) == 0;
	if (idle)
	{
		slot->latch = NULL;
		slot->pid = 0;
		slot->worker_wanted = false;
		slot->dboid = InvalidOid;
		worker_slot = -1;
	}
	SpinLockRelease(&shared->mutex);
	return idle;
}

/* one NOTIFY payledger_events in a transaction of its own; false if it failed */
static bool
send_notify(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	pgstat_report_activity(STATE_RUNNING, "NOTIFY payledger_events");
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		Async_Notify("payledger_events", "");
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/*
 * Takes slot slotno of database dboid for this worker, or exits: a late or
 * duplicate registration finds the slot taken or reused.
 */
static NotifySlot *
worker_claim_slot(int slotno, Oid dboid)
{
	NotifySlot *slot;
	bool		mine;

	if (shared == NULL || slotno < 0 || slotno >= shared->nslots)
		proc_exit(0);
	slot = &shared->slots[slotno];

	SpinLockAcquire(&shared->mutex);
	mine = slot->dboid == dboid && slot->pid == 0;
	if (mine)
		slot->pid = MyProcPid;
	SpinLockRelease(&shared->mutex);
	if (!mine)
		proc_exit(0);
	worker_slot = slotno;
	before_shmem_exit(worker_detach, (Datum) 0);
	return slot;
}

/* when the worker last sent, last had something to do, and may next retry */
typedef struct WorkerClock
{
	TimestampTz last_sent;
	TimestampTz idle_since;
	TimestampTz retry_at;
} WorkerClock;

/*
 * With commits pending: sends their NOTIFY once notify_delay (or the retry
 * delay after a failure) has passed and returns 0, else returns how long
 * to wait.
 */
static long
worker_send_due(NotifySlot *slot, WorkerClock *wc, TimestampTz now)
{
	TimestampTz due = TimestampTzPlusMilliseconds(wc->last_sent, pl_notify_delay);
	long		timeout;

	if (wc->retry_at > due)
		due = wc->retry_at;
	timeout = TimestampDifferenceMilliseconds(now, due);
	if (timeout > 0)
		return timeout;
	(void) pg_atomic_exchange_u32(&slot->pending, 0);
	if (send_notify())
		wc->retry_at = 0;
	else
	{
		(void) pg_atomic_exchange_u32(&slot->pending, 1);
		wc->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), NOTIFY_RETRY_MS);
	}
	wc->last_sent = wc->idle_since = GetCurrentTimestamp();
	return 0;
}

/*
 * With nothing pending: exits once idle for PL_WORKER_IDLE_EXIT_MS if the slot
 * may be freed, and returns 0 then; else returns how long to wait.
 */
static long
worker_idle(NotifySlot *slot, WorkerClock *wc, TimestampTz now)
{
	long		timeout = PL_WORKER_IDLE_EXIT_MS - TimestampDifferenceMilliseconds(wc->idle_since, now);

	if (timeout > 0)
		return timeout;
	if (worker_may_exit(slot))
		proc_exit(0);
	wc->idle_since = now;
	return 0;
}

/*
 * Main of a notify worker: slot number in main_arg, database oid in
 * bgw_extra.
 */
void
PlNotifyWorkerMain(Datum main_arg)
{
	Oid			dboid = PlDatabaseWorkerBegin();
	NotifySlot *slot;
	WorkerClock wc;

	slot = worker_claim_slot(DatumGetInt32(main_arg), dboid);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("payledger notify");

	/*
	 * The NOTIFY only wakes listeners to read what committed transactions
	 * made durable already; its own commit need not wait for a flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	slot->latch = MyLatch;
	wc.last_sent = wc.retry_at = 0;
	wc.idle_since = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz now;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		if (pg_atomic_read_u32(&slot->pending) != 0)
			timeout = worker_send_due(slot, &wc, now);
		else
			timeout = worker_idle(slot, &wc, now);
		if (timeout <= 0)
			continue;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
