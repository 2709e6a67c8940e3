/*-------------------------------------------------------------------------
 *
 * ledger_writer.c
 *	  Group commit: submit_transfer() and the ledger writer that applies
 *	  many submissions per transaction.
 *
 * Design note.
 *
 * A transfer() commits on its own, so at high rates a server spends its
 * time on commits (one WAL flush each) and, on a hot account, on sessions
 * queueing for one row lock.  submit_transfer() hands the transfer to a
 * background worker of its database, the ledger writer, which applies
 * every submission waiting at that moment in one transaction, in one WAL
 * flush, and locks each account once per batch; the callers wait on their
 * latches and return once that commit is durable.
 *
 * The calling session does everything that needs no ledger state before
 * it queues: 25001 in a transaction block, 55000 without preloading, the
 * arguments (22004, 22023, PY006, max_metadata_bytes), PY008, the
 * context settings, the request hash and the masked metadata.  It then
 * copies the request (its role, the arguments, the key, the hash, the
 * metadata and the payledger.* context settings of the audit row) into a
 * slot of a bounded queue in shared memory.
 *
 * The queue.  payledger.submit_queue_size slots, each with room for a
 * request (a larger one goes into a DSM segment the caller keeps until
 * the writer has copied it), one LWLock over all of it, and a queue of
 * slots per database in its writer slot, oldest first.  A slot's life:
 *
 *	FREE --caller--> QUEUED --writer--> TAKEN --writer--> DONE --caller--> FREE
 *
 * with these other ways out, every one under the lock:
 *	- QUEUED, the caller cancelled or left: it unlinks and frees the slot
 *	  (nothing was done);
 *	- TAKEN, the caller cancelled or left: it marks the slot abandoned and
 *	  never touches it again; the writer frees it after the batch (the
 *	  transfer may still be applied: its retry replays it);
 *	- TAKEN, the writer exits (pg_terminate_backend, an error): its exit
 *	  callback frees its abandoned slots and marks the others LOST, which
 *	  their callers free, raising 40003 (statement completion unknown).
 * So a slot always has exactly one owner: the caller while QUEUED (the
 * writer only moves it to TAKEN under the lock), DONE or LOST; the writer
 * while TAKEN.  Each use of a slot carries a ticket number, which both
 * sides Assert before touching it.  A server crash resets shared memory
 * and ends every caller with it.
 *
 * The writers.  payledger.ledger_writers (default 2) per database, each a
 * dynamic background worker started on demand by a caller that finds one
 * missing; like the notify worker a writer exits after a while with
 * nothing to do, and only when nothing is queued.  Two writers let one
 * apply a batch while the other's commit is being flushed, and on a busy
 * machine give the serial part of the work two shares of the CPU.  A
 * writer takes up to WRITER_MAX_BATCH queued submissions, oldest first,
 * and applies them in one transaction: first every key of the batch is
 * locked, then every account, in the order every payledger call uses
 * (idempotency.c, posting.c), so writers never deadlock with each other
 * or with concurrent transfer() calls; then each item runs the steps of
 * transfer()'s request pipeline (pipeline.c, posting.c), as transfer_many
 * runs its items, as the role that submitted it (the audit row's db_role,
 * merchant scope) and with that session's context settings, on the
 * batch's locked account rows, which are written back once.  Declines,
 * replays and PY002 are per item.  When an item raises an error, the
 * transaction is rolled back, that error becomes the item's result and the
 * other items are applied again in a new transaction: one bad item never
 * fails the others, and no subtransaction is needed.  The commit is
 * durable (synchronous_commit at least on) before any result is handed
 * back and its caller's latch set.  A caller wakes an idle writer when no
 * writer is busy, or when WRITER_WAKE_ANOTHER submissions already wait; a
 * busy writer looks at the queue again before it waits.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/ledger_writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/table.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "direct.h"
#include "idempotency.h"
#include "audit.h"
#include "access.h"
#include "spi_plans.h"
#include "metrics.h"
#include "pipeline.h"
#include "ledger.h"
#include "ledger_writer.h"
#include "workers.h"

/* room for a request (or an error's texts) in a queue slot */
#define SUBMIT_INLINE			2048
/* most submissions in one transaction of the writer */
#define WRITER_MAX_BATCH		256
/* submissions waiting for a busy writer before an idle one is woken too */
#define WRITER_WAKE_ANOTHER		8
/* how often a waiting caller looks at its writer even without a wake-up */
#define CALLER_POLL_MS			1000
#define SUBMIT_NONE				(-1)

typedef enum SubmitState
{
	SUBMIT_FREE,				/* on the free list */
	SUBMIT_QUEUED,				/* on its database's queue; the caller owns it */
	SUBMIT_TAKEN,				/* in a writer's batch; the writer owns it */
	SUBMIT_DONE,				/* the result is in the slot; the caller owns it */
	SUBMIT_LOST					/* the writer that took it is gone; the caller owns it */
} SubmitState;

typedef struct SubmitSlot
{
	/* protected by the queue lock */
	SubmitState state;
	int			writer;			/* its database's writer slot */
	pid_t		caller_pid;
	Latch	   *caller_latch;
	pid_t		writer_pid;		/* the writer that took it (TAKEN) */
	bool		abandoned;		/* TAKEN, and the caller has left */
	uint64		ticket;			/* which use of the slot this is */
	int			prev;			/* the database's queue (QUEUED) */
	int			next;			/* ... or the free list (FREE) */

	/* the request: written by the caller before QUEUED, read while TAKEN */
	uint32		payload_len;
	dsm_handle	payload_dsm;	/* DSM_HANDLE_INVALID: the request is in data */

	/* the result: written by the writer while TAKEN, read by the caller once DONE */
	bool		failed;
	bool		replayed;
	pg_uuid_t	transfer_id;
	char		status[16];
	char		reason[64];
	int			sqlstate;
	uint32		message_len;	/* the error's texts in data: message, detail, hint */
	uint32		detail_len;
	uint32		hint_len;

	char		data[SUBMIT_INLINE];
} SubmitSlot;

/* one ledger writer of a database (protected by the queue lock) */
typedef struct WriterProc
{
	bool		wanted;			/* registered or running */
	bool		idle;			/* waiting for work: a caller may wake it */
	pid_t		pid;			/* 0 while not running */
	TimestampTz registered_at;
	Latch	   *latch;			/* the running writer's latch, or NULL */
} WriterProc;

/* a database's queue and its writers (protected by the queue lock) */
typedef struct WriterSlot
{
	Oid			dboid;			/* InvalidOid: free */
	int			head;			/* the queued submissions, oldest first */
	int			tail;
	int			nqueued;
	WriterProc	procs[PL_MAX_LEDGER_WRITERS];
} WriterSlot;

typedef struct SubmitQueue
{
	LWLock	   *lock;
	ConditionVariable slot_freed;
	int			free_head;
	uint64		next_ticket;
	int			nslots;
	int			nwriters;
} SubmitQueue;

static SubmitQueue *queue = NULL;
static WriterSlot *writers = NULL;
static SubmitSlot *slots = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* caller: the slot of the submission it waits for */
static int	my_slot = SUBMIT_NONE;
static uint64 my_ticket = 0;
static dsm_segment *my_dsm = NULL;
static bool caller_exit_registered = false;

/* writer: its database's writer slot and its place there, once it owns it */
static int	writer_slot = SUBMIT_NONE;
static int	writer_proc = SUBMIT_NONE;

PGDLLEXPORT void PlLedgerWriterMain(Datum main_arg);

/*
 * A request, as the caller lays it out: this header, then each field at a
 * MAXALIGNed offset.  Strings include their NUL; a string of length 0 is
 * NULL.  The metadata is the jsonb to store (e-mail addresses masked); the
 * request hash covers it as sent.
 */
typedef enum SubmitField
{
	FIELD_CURRENCY,
	FIELD_KEY,
	FIELD_METADATA,
	FIELD_ACTOR_TYPE,
	FIELD_ACTOR_ID,
	FIELD_IP_ADDRESS,
	FIELD_USER_AGENT,
	FIELD_DEVICE_ID,
	FIELD_CORRELATION_ID,
	NFIELDS
} SubmitField;

typedef struct SubmitHeader
{
	Oid			roleid;			/* the caller's current_user */
	pg_uuid_t	from_id;
	pg_uuid_t	to_id;
	int64		amount;
	uint8		hash[PL_SHA256_LEN];	/* the request hash (transfer()'s) */
	uint32		len[NFIELDS];
} SubmitHeader;

/* the context settings the audit row takes from the caller */
typedef struct ContextSetting
{
	SubmitField field;
	const char *name;
	char	  **var;
} ContextSetting;

static const ContextSetting context_settings[] = {
	{FIELD_ACTOR_TYPE, "payledger.actor_type", &pl_actor_type},
	{FIELD_ACTOR_ID, "payledger.actor_id", &pl_actor_id},
	{FIELD_IP_ADDRESS, "payledger.ip_address", &pl_ip_address},
	{FIELD_USER_AGENT, "payledger.user_agent", &pl_user_agent},
	{FIELD_DEVICE_ID, "payledger.device_id", &pl_device_id},
	{FIELD_CORRELATION_ID, "payledger.correlation_id", &pl_correlation_id},
};

/* a submission in the writer's batch */
typedef struct WriterItem
{
	int			slotno;
	uint64		ticket;
	char	   *payload;		/* the request, copied */
	SubmitHeader *hdr;
	char	   *field[NFIELDS];
	bool		done;			/* its outcome is final */
	bool		failed;
	ErrorData  *error;
	pg_uuid_t	transfer_id;
	bool		replayed;
	char		status[16];
	char		reason[64];
} WriterItem;

static Size
queue_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(SubmitQueue));

	size = add_size(size, MAXALIGN(mul_size(sizeof(WriterSlot), max_worker_processes)));
	size = add_size(size, mul_size(sizeof(SubmitSlot), pl_submit_queue_size));
	return size;
}

static void
queue_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(queue_shmem_size());
	RequestNamedLWLockTranche("payledger ledger writer", 1);
}

static void
queue_shmem_startup(void)
{
	bool		found;
	char	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("payledger ledger writer queue", queue_shmem_size(), &found);
	queue = (SubmitQueue *) base;
	writers = (WriterSlot *) (base + MAXALIGN(sizeof(SubmitQueue)));
	slots = (SubmitSlot *) (base + MAXALIGN(sizeof(SubmitQueue)) +
							MAXALIGN(sizeof(WriterSlot) * max_worker_processes));
	if (!found)
	{
		queue->lock = &(GetNamedLWLockTranche("payledger ledger writer"))->lock;
		ConditionVariableInit(&queue->slot_freed);
		queue->next_ticket = 0;
		queue->nslots = pl_submit_queue_size;
		queue->nwriters = max_worker_processes;
		for (int i = 0; i < queue->nwriters; i++)
		{
			memset(&writers[i], 0, sizeof(WriterSlot));
			writers[i].dboid = InvalidOid;
			writers[i].head = writers[i].tail = SUBMIT_NONE;
		}
		queue->free_head = SUBMIT_NONE;
		for (int i = queue->nslots - 1; i >= 0; i--)
		{
			SubmitSlot *s = &slots[i];

			s->state = SUBMIT_FREE;
			s->ticket = 0;
			s->prev = SUBMIT_NONE;
			s->next = queue->free_head;
			queue->free_head = i;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
LedgerWriterInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_shmem_startup;
}

/* ---- the queue (all with the lock held) ---- */

static void
slot_free_locked(int slotno)
{
	SubmitSlot *s = &slots[slotno];

	Assert(LWLockHeldByMeInMode(queue->lock, LW_EXCLUSIVE));
	Assert(s->state != SUBMIT_FREE);
	s->state = SUBMIT_FREE;
	s->caller_pid = 0;
	s->caller_latch = NULL;
	s->writer_pid = 0;
	s->abandoned = false;
	s->prev = SUBMIT_NONE;
	s->next = queue->free_head;
	queue->free_head = slotno;
}

static void
queue_append_locked(WriterSlot *w, int slotno)
{
	SubmitSlot *s = &slots[slotno];

	s->prev = w->tail;
	s->next = SUBMIT_NONE;
	if (w->tail != SUBMIT_NONE)
		slots[w->tail].next = slotno;
	else
		w->head = slotno;
	w->tail = slotno;
	w->nqueued++;
}

static void
queue_remove_locked(WriterSlot *w, int slotno)
{
	SubmitSlot *s = &slots[slotno];

	Assert(s->state == SUBMIT_QUEUED && w->nqueued > 0);
	if (s->prev != SUBMIT_NONE)
		slots[s->prev].next = s->next;
	else
		w->head = s->next;
	if (s->next != SUBMIT_NONE)
		slots[s->next].prev = s->prev;
	else
		w->tail = s->prev;
	s->prev = s->next = SUBMIT_NONE;
	w->nqueued--;
}

/*
 * The writer of w that a caller must register, or -1: one of the first
 * payledger.ledger_writers that is neither registered nor running, or
 * registered so long ago that it never started.  It is marked wanted.
 */
static int
writer_to_start_locked(WriterSlot *w, TimestampTz now)
{
	for (int k = 0; k < Min(pl_ledger_writers, PL_MAX_LEDGER_WRITERS); k++)
	{
		WriterProc *p = &w->procs[k];

		if (PlWorkerClaimStart(&p->wanted, p->pid, &p->registered_at, now))
			return k;
	}
	return SUBMIT_NONE;
}

/* some writer of w is registered or running */
static bool
writer_wanted_locked(WriterSlot *w)
{
	for (int k = 0; k < PL_MAX_LEDGER_WRITERS; k++)
		if (w->procs[k].wanted)
			return true;
	return false;
}

/*
 * The writer slot of this database, claiming a free one if it has none;
 * -1 when every writer slot serves another database.  *start is the
 * writer the caller must register, or -1.
 */
static int
writer_for_database_locked(TimestampTz now, int *start)
{
	int			found = SUBMIT_NONE;
	int			free_slot = SUBMIT_NONE;
	WriterSlot *w;

	*start = SUBMIT_NONE;
	for (int i = 0; i < queue->nwriters && found == SUBMIT_NONE; i++)
	{
		if (writers[i].dboid == MyDatabaseId)
			found = i;
		else if (writers[i].dboid == InvalidOid && free_slot == SUBMIT_NONE)
			free_slot = i;
	}
	if (found == SUBMIT_NONE)
	{
		if (free_slot == SUBMIT_NONE)
			return SUBMIT_NONE;
		found = free_slot;
		w = &writers[found];
		Assert(w->nqueued == 0 && w->head == SUBMIT_NONE && !writer_wanted_locked(w));
		memset(w->procs, 0, sizeof(w->procs));
		w->dboid = MyDatabaseId;
	}
	*start = writer_to_start_locked(&writers[found], now);
	return found;
}

/*
 * An idle writer of w to wake (no longer idle), or NULL.  While a writer
 * is busy it takes what queued meanwhile as its next batch; a second one
 * is woken only once WRITER_WAKE_ANOTHER submissions wait, since a writer
 * woken for every arrival would commit batches of one.
 */
static Latch *
writer_to_wake_locked(WriterSlot *w)
{
	bool		busy = false;
	WriterProc *idle = NULL;

	for (int k = 0; k < PL_MAX_LEDGER_WRITERS; k++)
	{
		WriterProc *p = &w->procs[k];

		if (p->pid != 0 && !p->idle)
			busy = true;
		else if (p->idle && p->latch != NULL && idle == NULL)
			idle = p;
	}
	if (idle == NULL || (busy && w->nqueued < WRITER_WAKE_ANOTHER))
		return NULL;
	idle->idle = false;
	return idle->latch;
}

static bool
register_writer(int w, int k)
{
	return PlStartDatabaseWorker("PlLedgerWriterMain", "payledger ledger writer",
								 "payledger ledger writer", w * PL_MAX_LEDGER_WRITERS + k);
}

/* ---- the caller ---- */

/*
 * Gives up this backend's slot: a queued submission is withdrawn, a taken
 * one abandoned to its writer, a finished one freed.  With detach, the
 * request's DSM segment is detached too (at process exit that is left to
 * the DSM shutdown).
 */
static void
caller_release(bool detach)
{
	SubmitSlot *s;
	bool		freed = true;

	if (my_slot == SUBMIT_NONE)
		return;
	s = &slots[my_slot];
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	Assert(s->caller_pid == MyProcPid && s->ticket == my_ticket);
	switch (s->state)
	{
		case SUBMIT_QUEUED:
			queue_remove_locked(&writers[s->writer], my_slot);
			slot_free_locked(my_slot);
			break;
		case SUBMIT_TAKEN:
			s->abandoned = true;
			freed = false;
			break;
		case SUBMIT_DONE:
		case SUBMIT_LOST:
			slot_free_locked(my_slot);
			break;
		case SUBMIT_FREE:
			Assert(false);
			freed = false;
			break;
	}
	LWLockRelease(queue->lock);
	my_slot = SUBMIT_NONE;
	if (freed)
		ConditionVariableBroadcast(&queue->slot_freed);
	if (my_dsm != NULL && detach)
		dsm_detach(my_dsm);
	my_dsm = NULL;
}

static void
caller_exit(int code, Datum arg)
{
	caller_release(false);
}

/* PY009: nothing was queued */
static void
raise_busy(const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_LEDGER_BUSY),
			 errmsg("the ledger writer cannot take the submission"),
			 errdetail_internal("%s Nothing was done.", detail),
			 errhint("%s", hint)));
}

/*
 * Registers writer k of this database, which the caller found missing.
 * When that fails and the database has no writer at all, the submission
 * is withdrawn and the call raises PY009.
 */
static void
caller_start_writer(int w, int k)
{
	bool		none;

	if (register_writer(w, k))
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (writers[w].procs[k].pid == 0)
		writers[w].procs[k].wanted = false;
	none = !writer_wanted_locked(&writers[w]);
	LWLockRelease(queue->lock);
	if (!none)
		return;
	caller_release(true);
	raise_busy("No ledger writer could be started.",
			   "Raise max_worker_processes, or call transfer().");
}

/*
 * Takes a free slot for the request and appends it to the queue of writer
 * slot w (queue lock held); returns the latch of an idle writer to wake,
 * or NULL: busy writers look at the queue again before they wait.
 */
static Latch *
caller_queue_locked(int w, const char *payload, uint32 len, dsm_segment *seg)
{
	SubmitSlot *s;

	Assert(LWLockHeldByMeInMode(queue->lock, LW_EXCLUSIVE));
	Assert(queue->free_head != SUBMIT_NONE && my_slot == SUBMIT_NONE);
	my_slot = queue->free_head;
	s = &slots[my_slot];
	Assert(s->state == SUBMIT_FREE);
	queue->free_head = s->next;
	s->state = SUBMIT_QUEUED;
	s->writer = w;
	s->caller_pid = MyProcPid;
	s->caller_latch = MyLatch;
	s->writer_pid = 0;
	s->abandoned = false;
	s->ticket = ++queue->next_ticket;
	s->failed = false;
	s->payload_len = len;
	if (seg != NULL)
		s->payload_dsm = dsm_segment_handle(seg);
	else
	{
		s->payload_dsm = DSM_HANDLE_INVALID;
		memcpy(s->data, payload, len);
	}
	queue_append_locked(&writers[w], my_slot);
	my_ticket = s->ticket;
	my_dsm = seg;
	return writer_to_wake_locked(&writers[w]);
}

/*
 * Queues a request (in payload, or in seg when it did not fit), waiting up
 * to payledger.submit_timeout for a free slot.
 */
static void
caller_enqueue(const char *payload, uint32 len, dsm_segment *seg)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   pl_submit_timeout);
	bool		sleeping = false;
	int			start;
	int			w;
	Latch	   *writer_latch;

	Assert(my_slot == SUBMIT_NONE);
	for (;;)
	{
		long		remaining;

		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		w = writer_for_database_locked(GetCurrentTimestamp(), &start);
		if (w == SUBMIT_NONE)
		{
			LWLockRelease(queue->lock);
			if (sleeping)
				ConditionVariableCancelSleep();
			raise_busy("Every ledger writer slot serves another database.",
					   "Raise max_worker_processes, or call transfer().");
		}
		if (queue->free_head != SUBMIT_NONE)
			break;
		LWLockRelease(queue->lock);
		/* a full queue of this database's submissions with no writer to drain it */
		if (start != SUBMIT_NONE)
			caller_start_writer(w, start);

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
		{
			if (sleeping)
				ConditionVariableCancelSleep();
			raise_busy(psprintf("All %d slots of the queue stayed taken for payledger.submit_timeout (%d ms).",
								queue->nslots, pl_submit_timeout),
					   "Retry later with the same idempotency key, or raise payledger.submit_queue_size.");
		}
		if (!sleeping)
		{
			/* look once more after joining the wait list, so no wake-up is lost */
			ConditionVariablePrepareToSleep(&queue->slot_freed);
			sleeping = true;
			continue;
		}
		(void) ConditionVariableTimedSleep(&queue->slot_freed, remaining, PG_WAIT_EXTENSION);
	}

	/* the lock is held */
	writer_latch = caller_queue_locked(w, payload, len, seg);
	LWLockRelease(queue->lock);

	if (sleeping)
		ConditionVariableCancelSleep();
	if (writer_latch != NULL)
		SetLatch(writer_latch);
	if (start != SUBMIT_NONE)
		caller_start_writer(w, start);
}

/*
 * Waits until the submission is DONE or LOST.  A cancel or a timeout
 * raises here (the caller's PG_CATCH gives the slot up); a shutdown or
 * pg_terminate_backend ends the session with 40003.
 */
static SubmitState
caller_wait(void)
{
	for (;;)
	{
		SubmitSlot *s = &slots[my_slot];
		SubmitState state;
		int			start = SUBMIT_NONE;
		int			w;

		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		Assert(s->caller_pid == MyProcPid && s->ticket == my_ticket);
		state = s->state;
		w = s->writer;
		if (state == SUBMIT_QUEUED)
		{
			/* a writer left (or never started) with this submission queued */
			Assert(writers[w].dboid == MyDatabaseId);
			start = writer_to_start_locked(&writers[w], GetCurrentTimestamp());
		}
		LWLockRelease(queue->lock);
		if (state == SUBMIT_DONE || state == SUBMIT_LOST)
			return state;
		if (start != SUBMIT_NONE)
			caller_start_writer(w, start);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 CALLER_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ProcDiePending)
			ereport(FATAL,
					(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
					 errmsg("terminating connection while submit_transfer waits for the ledger writer"),
					 errdetail("The transfer may or may not have been committed."),
					 errhint("Retry with the same idempotency key: it replays the transfer if it committed, or does it.")));
		CHECK_FOR_INTERRUPTS();
	}
}

/* queues the request and waits; any error gives the slot up */
static SubmitState
caller_submit(const char *payload, uint32 len, dsm_segment *seg)
{
	SubmitState state;

	PG_TRY();
	{
		caller_enqueue(payload, len, seg);
		state = caller_wait();
	}
	PG_CATCH();
	{
		caller_release(true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return state;
}

/* appends a field to a request being built; returns the new length */
static Size
put_field(char *buf, Size off, SubmitHeader *hdr, SubmitField f, const void *data, uint32 len)
{
	off = MAXALIGN(off);
	hdr->len[f] = len;
	if (buf != NULL && len > 0)
		memcpy(buf + off, data, len);
	return off + len;
}

static void
put_string(char **buf, Size *off, SubmitHeader *hdr, SubmitField f, const char *s)
{
	uint32		len = (s != NULL && s[0] != '\0') ? strlen(s) + 1 : 0;

	*off = put_field(*buf, *off, hdr, f, s, len);
}

/*
 * Lays a request out (its arguments as PlTransferPrepare left them), twice:
 * first (buf NULL) to learn its size.
 */
static Size
build_request(char *buf, const PlTransferArgs *args, const uint8 *hash)
{
	SubmitHeader hdr;
	Size		off = sizeof(SubmitHeader);

	memset(&hdr, 0, sizeof(hdr));
	hdr.roleid = GetUserId();
	hdr.from_id = args->from_id;
	hdr.to_id = args->to_id;
	hdr.amount = args->amount;
	memcpy(hdr.hash, hash, PL_SHA256_LEN);
	put_string(&buf, &off, &hdr, FIELD_CURRENCY, args->currency);
	put_string(&buf, &off, &hdr, FIELD_KEY, args->key);
	off = put_field(buf, off, &hdr, FIELD_METADATA, args->metadata, VARSIZE(args->metadata));
	for (int i = 0; i < (int) lengthof(context_settings); i++)
		put_string(&buf, &off, &hdr, context_settings[i].field, *context_settings[i].var);
	if (buf != NULL)
		memcpy(buf, &hdr, sizeof(hdr));
	return off;
}

/* Raises, in this session, the error the writer recorded for the submission. */
static void
raise_item_error(SubmitSlot *s)
{
	char	   *message = pnstrdup(s->data, s->message_len);
	char	   *detail = s->detail_len ? pnstrdup(s->data + s->message_len, s->detail_len) : NULL;
	char	   *hint = s->hint_len ?
		pnstrdup(s->data + s->message_len + s->detail_len, s->hint_len) : NULL;
	int			sqlstate = s->sqlstate;

	caller_release(true);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * payledger.submit_transfer(from_account uuid, to_account uuid,
 *		amount bigint, currency text, idempotency_key text,
 *		metadata jsonb DEFAULT '{}') RETURNS payledger.transfer_result
 *
 * transfer(), applied by the ledger writer together with other sessions'
 * submissions: the same checks, declines, audit rows and idempotency (a
 * submission and a transfer() with one key and the same parameters replay
 * each other), always keyed, refused inside a transaction block (25001)
 * and without preloading (55000).  Returns once the writer's commit is
 * durable; PY009 when the queue stays full for payledger.submit_timeout
 * (nothing done), 40003 when the writer is lost while the call waits.
 */
PG_FUNCTION_INFO_V1(submit_transfer);
Datum
submit_transfer(PG_FUNCTION_ARGS)
{
	PlTransferArgs args;
	uint8		hash[PL_SHA256_LEN];
	Size		len;
	char	   *payload = NULL;
	dsm_segment *seg = NULL;
	SubmitSlot *s;
	SubmitState state;
	pg_uuid_t	id;
	char	   *status;
	char	   *reason;
	bool		replayed;

	if (!pl_preloaded || queue == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("submit_transfer needs payledger in shared_preload_libraries"),
				 errhint("Add payledger to shared_preload_libraries and restart the server, or call transfer().")));
	PreventInTransactionBlock(true, "submit_transfer");
	/* a standby or a read-only session: the writer must not write for it */
	PreventCommandIfReadOnly("submit_transfer");

	/* (1) and (2), and the settings the audit row will carry */
	PlTransferArgsFrom(fcinfo, &args);
	args.transfer_id = NULL;
	args.always_keyed = true;
	PlTransferCheckArgs(&args);
	PlCheckContext();
	PlTransferPrepare(&args, hash);

	len = build_request(NULL, &args, hash);
	if (len > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("submit_transfer request is too large")));
	if (len <= SUBMIT_INLINE)
	{
		payload = palloc0(len);
		(void) build_request(payload, &args, hash);
	}
	else
	{
		seg = dsm_create(len, 0);
		(void) build_request(dsm_segment_address(seg), &args, hash);
	}
	if (!caller_exit_registered)
	{
		before_shmem_exit(caller_exit, (Datum) 0);
		caller_exit_registered = true;
	}

	state = caller_submit(payload, (uint32) len, seg);

	s = &slots[my_slot];
	if (state == SUBMIT_LOST)
	{
		caller_release(true);
		ereport(ERROR,
				(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
				 errmsg("the ledger writer stopped while submit_transfer waited"),
				 errdetail("The transfer may or may not have been committed."),
				 errhint("Retry with the same idempotency key: it replays the transfer if it committed, or does it.")));
	}
	/* DONE: the slot is this session's alone until it frees it */
	Assert(state == SUBMIT_DONE && s->ticket == my_ticket);
	if (s->failed)
		raise_item_error(s);
	id = s->transfer_id;
	status = pstrdup(s->status);
	reason = s->reason[0] ? pstrdup(s->reason) : NULL;
	replayed = s->replayed;
	caller_release(true);
	return PlTransferResult(fcinfo, &id, status, reason, replayed);
}

/* ---- the writer ---- */

/* worker exit: hands back what it took, and gives its writer slot up */
static void
writer_exit(int code, Datum arg)
{
	WriterSlot *w;
	Latch	   *wake[WRITER_MAX_BATCH];
	int			nwake = 0;
	bool		freed = false;

	if (writer_slot == SUBMIT_NONE)
		return;
	w = &writers[writer_slot];
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < queue->nslots; i++)
	{
		SubmitSlot *s = &slots[i];

		if (s->state != SUBMIT_TAKEN || s->writer_pid != MyProcPid)
			continue;
		if (s->abandoned)
		{
			slot_free_locked(i);
			freed = true;
		}
		else
		{
			s->state = SUBMIT_LOST;
			if (nwake < WRITER_MAX_BATCH)
				wake[nwake++] = s->caller_latch;
		}
	}
	if (w->procs[writer_proc].pid == MyProcPid)
	{
		memset(&w->procs[writer_proc], 0, sizeof(WriterProc));
		if (w->nqueued == 0 && !writer_wanted_locked(w))
			w->dboid = InvalidOid;
	}
	/* callers still queued start the next writer */
	for (int i = w->head; i != SUBMIT_NONE && nwake < WRITER_MAX_BATCH; i = slots[i].next)
		wake[nwake++] = slots[i].caller_latch;
	LWLockRelease(queue->lock);
	writer_slot = SUBMIT_NONE;
	for (int i = 0; i < nwake; i++)
		SetLatch(wake[i]);
	if (freed)
		ConditionVariableBroadcast(&queue->slot_freed);
}

/*
 * An idle writer exits unless something is queued for it; one beyond
 * payledger.ledger_writers (the setting was lowered) exits between batches
 * whatever is queued, which the others take (the callers waiting start
 * them if need be).
 */
static bool
writer_may_exit(void)
{
	WriterSlot *w = &writers[writer_slot];
	bool		idle;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	Assert(w->procs[writer_proc].pid == MyProcPid);
	idle = w->nqueued == 0 || writer_proc >= pl_ledger_writers;
	if (idle)
	{
		memset(&w->procs[writer_proc], 0, sizeof(WriterProc));
		if (w->nqueued == 0 && !writer_wanted_locked(w))
			w->dboid = InvalidOid;
		writer_slot = SUBMIT_NONE;
	}
	LWLockRelease(queue->lock);
	return idle;
}

/* the fields of a copied request */
static void
parse_request(WriterItem *item)
{
	Size		off = sizeof(SubmitHeader);

	item->hdr = (SubmitHeader *) item->payload;
	for (int f = 0; f < NFIELDS; f++)
	{
		off = MAXALIGN(off);
		item->field[f] = item->hdr->len[f] > 0 ? item->payload + off : NULL;
		off += item->hdr->len[f];
	}
}

/* copies a request the caller put in a DSM segment (queue lock held) */
static void
copy_dsm_request(WriterItem *item, SubmitSlot *s)
{
	dsm_segment *seg = dsm_attach(s->payload_dsm);

	/* the caller holds the segment until it gives the slot up, under the lock */
	if (seg == NULL)
		elog(ERROR, "submission %llu lost its request", (unsigned long long) s->ticket);
	item->payload = palloc(s->payload_len);
	memcpy(item->payload, dsm_segment_address(seg), s->payload_len);
	dsm_detach(seg);
}

/* Takes the oldest queued submissions of this database; returns how many. */
static int
writer_take(WriterItem *items)
{
	WriterSlot *w = &writers[writer_slot];
	int			n = 0;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	Assert(w->procs[writer_proc].pid == MyProcPid && w->dboid == MyDatabaseId);
	/* with nothing to take, the writer waits and a caller may wake it */
	w->procs[writer_proc].idle = (w->head == SUBMIT_NONE);
	while (w->head != SUBMIT_NONE && n < WRITER_MAX_BATCH)
	{
		int			slotno = w->head;
		SubmitSlot *s = &slots[slotno];
		WriterItem *item = &items[n++];

		Assert(s->state == SUBMIT_QUEUED && s->writer == writer_slot &&
			   writers[s->writer].dboid == MyDatabaseId);
		queue_remove_locked(w, slotno);
		s->state = SUBMIT_TAKEN;
		s->writer_pid = MyProcPid;
		memset(item, 0, sizeof(WriterItem));
		item->slotno = slotno;
		item->ticket = s->ticket;
		if (s->payload_dsm != DSM_HANDLE_INVALID)
			copy_dsm_request(item, s);
	}
	LWLockRelease(queue->lock);

	/* a TAKEN slot is the writer's: its request is read without the lock */
	for (int i = 0; i < n; i++)
	{
		SubmitSlot *s = &slots[items[i].slotno];

		if (items[i].payload == NULL)
		{
			items[i].payload = palloc(s->payload_len);
			memcpy(items[i].payload, s->data, s->payload_len);
		}
		parse_request(&items[i]);
	}
	return n;
}

/* an account id an item names is a sub-balance row: 22023, as transfer() */
static bool
is_sub_balance_row(const pg_uuid_t *id)
{
	const PlSubBalances *sb = PlSubBalancesOf(id);

	return sb != NULL && sb->is_sub_balance;
}

/*
 * Every key of the batch, then every account, locked in the order every
 * payledger call uses (keys, then accounts by id: idempotency.c,
 * posting.c), so that the items wait for nothing and the writer never
 * deadlocks with transfer() and the other calls.  An account that is a
 * sub-balance row, or (with probe) does not exist, is not locked: the items
 * that name it raise 22023 or PY005 as transfer() would.  Accounts are locked on their
 * own rows, also those with sub-balances: the writer credits a hot account
 * once per batch, so it needs no spreading.
 */
static PlLockedSet *
writer_lock_batch(WriterItem *items, int n, Relation accounts, bool probe)
{
	uint64	   *hashes = palloc(sizeof(uint64) * n);
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * n * 2);
	int			nkeys = 0;
	int			nids = 0;
	int			nknown = 0;

	for (int i = 0; i < n; i++)
	{
		PlKeyRef	ref;

		if (items[i].done)
			continue;
		ref.scope = NULL;
		ref.key = items[i].field[FIELD_KEY];
		hashes[nkeys++] = PlKeyHash(&ref);
		ids[nids++] = items[i].hdr->from_id;
		ids[nids++] = items[i].hdr->to_id;
	}
	PlLockKeyHashes(hashes, nkeys);

	/*
	 * Without probe every account is expected to exist (PlLockAccountsFor
	 * raises PY005 otherwise, and the batch is locked again with probe).
	 * Accounts are never deleted: one that exists now still does when it is
	 * locked.
	 */
	qsort(ids, nids, sizeof(pg_uuid_t), PlAccountIdCmp);
	for (int i = 0; i < nids; i++)
	{
		HeapTuple	tup = NULL;

		if (nknown > 0 && PlAccountIdCmp(&ids[nknown - 1], &ids[i]) == 0)
			continue;
		if (is_sub_balance_row(&ids[i]))
			continue;
		if (probe && (tup = PlFetchRow(accounts, &ids[i])) == NULL)
			continue;
		if (tup != NULL)
			heap_freetuple(tup);
		ids[nknown++] = ids[i];
	}
	pfree(hashes);
	return PlLockAccountsFor(accounts, ids, nknown, NULL);
}

/*
 * Sets the caller's context settings that differ from the writer's, in a
 * GUC nest level of their own; returns it, or -1 when none differ.
 */
static int
writer_push_context(WriterItem *item)
{
	int			level = -1;

	for (int i = 0; i < (int) lengthof(context_settings); i++)
	{
		const char *want = item->field[context_settings[i].field];
		const char *have = *context_settings[i].var;

		if (strcmp(want ? want : "", have ? have : "") == 0)
			continue;
		if (level < 0)
			level = NewGUCNestLevel();
		(void) set_config_option(context_settings[i].name, want ? want : "",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	return level;
}

/*
 * One submission, as transfer() runs it once its key and accounts are
 * locked (transfer.c, pipeline.c): (3) replay or PY002, (4) a sub-balance
 * row or an unknown account, (5) the currency, then the scope check and
 * the declines, the key's record, the entries, the transfer row and the
 * audit row.  The account rows are the batch's, changed in memory and
 * written back once at the end of the batch.
 */
static void
writer_item(WriterItem *item, PlLockedSet *locked, Relation entries, int *nreplayed)
{
	SubmitHeader *hdr = item->hdr;
	const char *currency = item->field[FIELD_CURRENCY];
	const char *key = item->field[FIELD_KEY];
	Jsonb	   *metadata = (Jsonb *) item->field[FIELD_METADATA];
	const pg_uuid_t *first;
	const pg_uuid_t *second;
	PlRequest	req;
	int			level;

	level = writer_push_context(item);
	PlRequestInit(&req, "transfer", NULL, key, NULL, NULL);
	memcpy(req.hash, hdr->hash, PL_SHA256_LEN);
	if (PlRequestLookup(&req))
		(*nreplayed)++;
	else
	{
		PlAccountRow *src;
		PlAccountRow *dst;
		pg_uuid_t	id;
		const char *reason;
		TimestampTz now;

		/* transfer() meets the two ids in ascending order */
		first = PlAccountIdCmp(&hdr->from_id, &hdr->to_id) < 0 ? &hdr->from_id : &hdr->to_id;
		second = first == &hdr->from_id ? &hdr->to_id : &hdr->from_id;
		PlRejectSubBalance(first);
		PlRejectSubBalance(second);
		src = PlLockedAccount(locked, &hdr->from_id);
		dst = PlLockedAccount(locked, &hdr->to_id);
		if (src == NULL || dst == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
					 errmsg("account %s does not exist",
							PlUuidText(src == NULL ? &hdr->from_id : &hdr->to_id))));
		PlCheckAccountCurrency(src, currency);
		PlCheckAccountCurrency(dst, currency);

		PlUuidV7(&id);
		now = GetCurrentTimestamp();
		reason = PlPostLocked(entries, src, dst, &id, "transfer", hdr->amount, currency, key,
							  hdr->hash, metadata, NULL, now);
		PlRequestOutcome(&req, &id, reason ? "rejected" : "posted", reason, now);
		PlRequestRecord(&req);
		/* the next items' key lookups see this item's key */
		CommandCounterIncrement();
	}
	if (level >= 0)
		AtEOXact_GUC(true, level);

	item->transfer_id = req.result_id;
	item->replayed = req.replayed;
	strlcpy(item->status, req.status, sizeof(item->status));
	strlcpy(item->reason, req.reason ? req.reason : "", sizeof(item->reason));
}

/*
 * The items not done yet, in the current transaction: the locks, then each
 * item, in runs of the same submitting role, each run one call of the
 * request pipeline's owner switch (PlSpiBegin) made as that role, so that
 * the audit rows' db_role, the default actor and the merchant scope are
 * the submitter's; then every changed account row written back once.
 * *cur names the item being applied, for the caller's error handling.
 */
static void
writer_run_batch(WriterItem *items, int n, bool probe, volatile int *cur)
{
	MemoryContext batch_mem = CurrentMemoryContext;
	MemoryContext item_cxt = AllocSetContextCreate(batch_mem,
												   "payledger ledger writer item",
												   ALLOCSET_DEFAULT_SIZES);
	Oid			save_userid;
	int			save_sec_context;
	PlPrivState priv;
	Relation	accounts = NULL;
	Relation	entries = NULL;
	PlLockedSet *locked = NULL;
	int			i = 0;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	while (i < n)
	{
		Oid			role;
		int			nreplayed = 0;

		if (items[i].done)
		{
			i++;
			continue;
		}
		role = items[i].hdr->roleid;
		SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		PlSpiBegin(&priv);
		if (locked == NULL)
		{
			/* the locked rows live until the end of the batch, not in SPI's memory */
			MemoryContext spi_mem = MemoryContextSwitchTo(batch_mem);

			accounts = PlOpenAccounts();
			entries = PlOpenEntries();
			locked = writer_lock_batch(items, n, accounts, probe);
			MemoryContextSwitchTo(spi_mem);
		}
		PlScopeDebits(true);
		for (; i < n; i++)
		{
			MemoryContext oldcxt;

			if (items[i].done)
				continue;
			if (items[i].hdr->roleid != role)
				break;
			*cur = i;
			oldcxt = MemoryContextSwitchTo(item_cxt);
			writer_item(&items[i], locked, entries, &nreplayed);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(item_cxt);
		}
		*cur = -1;
		PlScopeDebits(false);
		if (nreplayed > 0)
			PlCountReplays(nreplayed);
		PlSpiEnd(&priv);
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	if (locked != NULL)
	{
		PlFlushAccounts(accounts, locked, GetCurrentTimestamp());
		table_close(entries, NoLock);
		table_close(accounts, NoLock);
	}
	MemoryContextDelete(item_cxt);
}

/*
 * One attempt at the items not done yet, in one transaction.  True when it
 * committed, or when an error outside any item failed them all; false when
 * an item raised (that item is now done, failed, and the rest is to be
 * applied again), or when an unknown account made the locks fail (*probe
 * is then set: the next attempt looks for the accounts first).
 */
static bool
writer_attempt(WriterItem *items, int n, MemoryContext batch_cxt, bool *probe)
{
	volatile int cur = -1;
	volatile bool finished = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		/* the callers return once the batch is durable */
		if (synchronous_commit < SYNCHRONOUS_COMMIT_ON)
			(void) set_config_option("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		pgstat_report_activity(STATE_RUNNING, "payledger ledger writer: applying a batch");
		writer_run_batch(items, n, *probe, &cur);
		PopActiveSnapshot();
		CommitTransactionCommand();
		finished = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(batch_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		if (cur < 0 && edata->sqlerrcode == ERRCODE_PAYLEDGER_NOT_FOUND && !*probe)
		{
			/* an item names an unknown account: lock again, leaving it out */
			*probe = true;
			FreeErrorData(edata);
		}
		else
		{
			for (int i = 0; i < n; i++)
			{
				if (items[i].done || (cur >= 0 && i != cur))
					continue;
				items[i].done = true;
				items[i].failed = true;
				items[i].error = edata;
			}
			finished = (cur < 0);
		}
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return finished;
}

/*
 * Applies the batch in one transaction; an item that raises gets that
 * error as its result and the others are applied again, without it, in a
 * new transaction.  An error outside any item fails the items left.
 */
static void
writer_apply(WriterItem *items, int n, MemoryContext batch_cxt)
{
	bool		probe = false;

	while (!writer_attempt(items, n, batch_cxt, &probe))
		;
	for (int i = 0; i < n; i++)
		items[i].done = true;
}

/* puts an error's texts into the slot */
static void
store_error(SubmitSlot *s, ErrorData *edata)
{
	const char *texts[3] = {edata->message ? edata->message : "unknown error",
	edata->detail, edata->hint};
	uint32		lens[3];
	Size		room = SUBMIT_INLINE;
	char	   *p = s->data;

	for (int i = 0; i < 3; i++)
	{
		lens[i] = texts[i] ? Min(strlen(texts[i]), room) : 0;
		/* a text cut short must not end inside a multibyte character */
		if (texts[i] && lens[i] < strlen(texts[i]))
			lens[i] = pg_mbcliplen(texts[i], strlen(texts[i]), lens[i]);
		memcpy(p, texts[i] ? texts[i] : "", lens[i]);
		p += lens[i];
		room -= lens[i];
	}
	s->failed = true;
	s->sqlstate = edata->sqlerrcode;
	s->message_len = lens[0];
	s->detail_len = lens[1];
	s->hint_len = lens[2];
}

/* Hands the results back: DONE and the caller woken, or freed if abandoned. */
static void
writer_hand_back(WriterItem *items, int n)
{
	Latch	   *wake[WRITER_MAX_BATCH];
	int			nwake = 0;
	bool		freed = false;

	/* the slots are still TAKEN, so the result areas are the writer's */
	for (int i = 0; i < n; i++)
	{
		SubmitSlot *s = &slots[items[i].slotno];

		Assert(s->state == SUBMIT_TAKEN && s->ticket == items[i].ticket);
		if (items[i].failed)
			store_error(s, items[i].error);
		else
		{
			s->failed = false;
			s->transfer_id = items[i].transfer_id;
			s->replayed = items[i].replayed;
			strlcpy(s->status, items[i].status, sizeof(s->status));
			strlcpy(s->reason, items[i].reason, sizeof(s->reason));
		}
	}

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		SubmitSlot *s = &slots[items[i].slotno];

		Assert(s->state == SUBMIT_TAKEN && s->writer_pid == MyProcPid &&
			   s->ticket == items[i].ticket);
		if (s->abandoned)
		{
			slot_free_locked(items[i].slotno);
			freed = true;
		}
		else
		{
			s->state = SUBMIT_DONE;
			wake[nwake++] = s->caller_latch;
		}
	}
	LWLockRelease(queue->lock);
	for (int i = 0; i < nwake; i++)
		SetLatch(wake[i]);
	if (freed)
		ConditionVariableBroadcast(&queue->slot_freed);
}

/*
 * Takes writer k of writer slot w, unless a late or duplicate registration
 * finds it taken or the slot serving another database.
 */
static bool
writer_claim(int w, int k, Oid dboid)
{
	bool		mine;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	mine = writers[w].dboid == dboid && writers[w].procs[k].pid == 0;
	if (mine)
	{
		writers[w].procs[k].wanted = true;
		writers[w].procs[k].pid = MyProcPid;
		writers[w].procs[k].latch = MyLatch;
		writers[w].procs[k].idle = false;
	}
	LWLockRelease(queue->lock);
	if (mine)
	{
		writer_slot = w;
		writer_proc = k;
	}
	return mine;
}

/* takes and applies batches until idle for PL_WORKER_IDLE_EXIT_MS */
static void
writer_loop(void)
{
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext,
													"payledger ledger writer batch",
													ALLOCSET_DEFAULT_SIZES);
	WriterItem *items = MemoryContextAlloc(TopMemoryContext,
										   sizeof(WriterItem) * WRITER_MAX_BATCH);
	TimestampTz idle_since = GetCurrentTimestamp();

	for (;;)
	{
		MemoryContext oldcxt;
		int			n;
		long		timeout;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* payledger.ledger_writers was lowered: the others take the queue */
		if (writer_proc >= pl_ledger_writers && writer_may_exit())
			return;

		oldcxt = MemoryContextSwitchTo(batch_cxt);
		n = writer_take(items);
		if (n > 0)
		{
			writer_apply(items, n, batch_cxt);
			writer_hand_back(items, n);
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batch_cxt);
		if (n > 0)
		{
			pgstat_report_stat(false);
			idle_since = GetCurrentTimestamp();
			continue;
		}

		timeout = PL_WORKER_IDLE_EXIT_MS -
			TimestampDifferenceMilliseconds(idle_since, GetCurrentTimestamp());
		if (timeout <= 0)
		{
			if (writer_may_exit())
				return;
			idle_since = GetCurrentTimestamp();
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
	}
}

/*
 * Main of a ledger writer: its writer slot and place there in main_arg
 * (slot * PL_MAX_LEDGER_WRITERS + place), its database's oid in bgw_extra.
 */
void
PlLedgerWriterMain(Datum main_arg)
{
	int			w = DatumGetInt32(main_arg) / PL_MAX_LEDGER_WRITERS;
	int			k = DatumGetInt32(main_arg) % PL_MAX_LEDGER_WRITERS;
	Oid			dboid = PlDatabaseWorkerBegin();

	if (queue == NULL || DatumGetInt32(main_arg) < 0 || w >= queue->nwriters ||
		!writer_claim(w, k, dboid))
		proc_exit(0);
	before_shmem_exit(writer_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("payledger ledger writer");
	/* a batch waits for the row locks it needs, however long they are held */
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	writer_loop();
	proc_exit(0);
}
