/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The transactional outbox: read_events(), ack_events() and the
 *	  payledger_events notification.
 *
 * Design note: delivery order.
 *
 * Every audit row is an event and carries a delivery key (column txid).
 * Ids from the sequence are taken before commit, so a transaction can
 * commit after one that took a later id; reading "id > last acknowledged"
 * would skip it.  Instead, events are delivered in (era, key, id) order and
 * only once their key is below the delivery horizon, which guarantees that
 * no transaction still in progress will ever write an event below it.
 *
 * The key of a transaction's events is taken at its first event: the
 * transaction already holds its lock on payment_audit_log (every event
 * writer does, until it ends) and its own transaction id, and then takes a
 * fresh transaction id of an internal subtransaction.  So a key is larger
 * than its transaction's id and than every transaction id assigned before
 * the writer began to write events, however old the transaction is.
 *
 * The horizon (delivery_horizon) is the next transaction id, lowered to
 * the transaction id of every transaction that holds a lock on
 * payment_audit_log that a writer holds (found in the lock table,
 * prepared transactions included, in any order of their start).  A reader
 * reads the next transaction id first and the lock holders after it: a
 * writer that took its key before that read already held its lock and
 * shows up (or has ended, and its commit is in the snapshot the reader
 * takes afterwards); a writer that takes its key later gets one at or
 * above the horizon.  So the readable events only ever grow at the end of
 * the order: a consumer's position never moves back, and nothing is
 * skipped.  Transactions that write no events, idle or long, in this
 * database or another, never lower the horizon; a prepared transaction
 * lowers it only when it wrote events (it keeps its locks).  A reader in
 * REPEATABLE READ sees only what its snapshot sees, so its horizon is at
 * most that snapshot's xmin; on a hot standby, where the primary's locks
 * are unknown, the horizon is the snapshot's xmin too (a writer's key is
 * above its transaction id, so that is safe).  A poll reads the index on
 * (era, txid, id) between the consumer's position and the horizon: its cost
 * grows with what it returns, not with the backlog behind a writer.
 * Delivery is at least once: a consumer that crashes before ack_events()
 * reads the same events again.
 *
 * Transaction ids mean something only on the server that assigned them.
 * The era numbers the servers (by system identifier) a ledger has lived
 * on: a ledger restored onto another server gets a new, larger era there,
 * so everything it writes is delivered after what it brought along, and
 * events of earlier eras are readable at once (their transactions ended
 * on the old server).  Only a writer registers the era; readers, which
 * may run in a read-only transaction or on a hot standby, never write.
 *
 * Design note: wake-ups and two-phase commit.
 *
 * With the notify worker, a transaction that wrote events wakes it when it
 * ends (notify_worker.c); COMMIT PREPARED and ROLLBACK PREPARED wake it too,
 * from a ProcessUtility hook, because the end of a prepared transaction
 * changes what is readable as much as a commit does (its events, or the
 * events it held back).  Without a worker the transaction queues its own
 * NOTIFY, which PostgreSQL cannot prepare: PREPARE TRANSACTION is then
 * refused with 0A000 before PostgreSQL's own, less helpful, refusal.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "events.h"
#include "notify_worker.h"

static bool notified = false;

/* the level of the NOTIFY this transaction queued itself, 0 when none */
static int	notify_level = 0;
static ProcessUtility_hook_type prev_process_utility = NULL;

static Oid	era_relid = InvalidOid;	/* payledger.cluster_eras, when era is known */
static int32 current_era = 0;

/* the delivery key of this transaction's events, and the level that took it */
static FullTransactionId xact_key = {InvalidTransactionId};
static int	xact_key_level = 0;

static void
reset_notified(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_PREPARE && notify_level > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot prepare a transaction that wrote payledger events while it sends its own NOTIFY"),
				 errdetail("Without a payledger notify worker the transaction sends NOTIFY payledger_events itself, and PostgreSQL cannot prepare a transaction that has executed NOTIFY."),
				 errhint("Add payledger to shared_preload_libraries (where it is, raise max_worker_processes so that its notify worker can start), or set payledger.notify_events = off in the sessions that prepare transactions.")));
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		notified = false;
		notify_level = 0;
		xact_key = InvalidFullTransactionId;
		xact_key_level = 0;
	}
}

/*
 * A subtransaction that took the key and aborts releases the lock on
 * payment_audit_log that made the key safe: the next event takes a new one.
 */
static void
reset_key_at_subabort(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	/* an aborted subtransaction takes the NOTIFY it queued with it */
	if (notify_level > 0 && level <= notify_level)
	{
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			notified = false;
			notify_level = 0;
		}
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			notify_level = level - 1;
	}
	if (!FullTransactionIdIsValid(xact_key) || level > xact_key_level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		xact_key = InvalidFullTransactionId;
		xact_key_level = 0;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		xact_key_level = level - 1;
}

/*
 * COMMIT PREPARED and ROLLBACK PREPARED in a database with payledger wake
 * the listeners at the end of their transaction, as the prepared
 * transaction's own commit would have (whether it wrote events is not
 * known here; a wake-up too many only makes listeners read).
 */
static void
wake_after_prepared(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		ends_prepared = false;

	if (IsA(parsetree, TransactionStmt))
	{
		TransactionStmtKind kind = ((TransactionStmt *) parsetree)->kind;

		ends_prepared = kind == TRANS_STMT_COMMIT_PREPARED ||
			kind == TRANS_STMT_ROLLBACK_PREPARED;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	if (ends_prepared && pl_notify_events && IsTransactionState() &&
		OidIsValid(get_extension_oid("payledger", true)))
		PlNotifyEvents();
}

void
EventsInit(void)
{
	RegisterXactCallback(reset_notified, NULL);
	RegisterSubXactCallback(reset_key_at_subabort, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = wake_after_prepared;
}

/*
 * The delivery key of this transaction's events (stored in column txid).
 * The caller holds its RowExclusiveLock on payledger.payment_audit_log.
 */
FullTransactionId
PlEventKey(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	if (FullTransactionIdIsValid(xact_key))
		return xact_key;
	(void) GetTopFullTransactionId();
	BeginInternalSubTransaction(NULL);
	xact_key = GetCurrentFullTransactionId();
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	xact_key_level = GetCurrentTransactionNestLevel();
	return xact_key;
}

/* a transaction id not after next, widened to 64 bits */
static FullTransactionId
widen_xid(TransactionId xid, FullTransactionId next)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

static void
lower_to(FullTransactionId *horizon, TransactionId xid, FullTransactionId next)
{
	FullTransactionId full;

	if (!TransactionIdIsNormal(xid))
		return;
	full = widen_xid(xid, next);
	if (FullTransactionIdPrecedes(full, *horizon))
		*horizon = full;
}

/*
 * Events of the current era are readable below this key (see the design
 * note at the top).  Called before the statement that reads them takes its
 * snapshot.
 */
static FullTransactionId
delivery_horizon(void)
{
	FullTransactionId next = ReadNextFullTransactionId();
	FullTransactionId horizon = next;
	Oid			audit = get_relname_relid("payment_audit_log",
										  get_namespace_oid("payledger", false));
	LOCKTAG		tag;
	VirtualTransactionId *holders;

	if (RecoveryInProgress() || IsolationUsesXactSnapshot())
	{
		lower_to(&horizon, GetTransactionSnapshot()->xmin, next);
		if (RecoveryInProgress())
			return horizon;
	}

	/* this transaction's own events are not readable to it before it ends */
	lower_to(&horizon, GetTopTransactionIdIfAny(), next);

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, audit);
	holders = GetLockConflicts(&tag, ShareLock, NULL);
	for (VirtualTransactionId *v = holders; VirtualTransactionIdIsValid(*v); v++)
	{
		TransactionId xid;
		TransactionId xmin;
		bool		more;

		if (VirtualTransactionIdIsRecoveredPreparedXact(*v))
		{
			lower_to(&horizon, (TransactionId) v->localTransactionId, next);
			continue;
		}

		/*
		 * A transaction prepared since startup keeps the virtual id of the
		 * session that prepared it, which has moved on: lower to both.
		 */
		BackendIdGetTransactionIds(v->backendId, &xid, &xmin);
		lower_to(&horizon, xid, next);
		lower_to(&horizon, TwoPhaseGetXidByVirtualXID(*v, &more), next);
	}
	pfree(holders);
	return horizon;
}

/*
 * Once per transaction that writes events: arranges for the notify worker
 * to be woken at commit or, when there is none, queues NOTIFY
 * payledger_events in this transaction.
 */
void
PlNotifyEvents(void)
{
	if (notified || !pl_notify_events)
		return;
	if (!PlNotifyWorkerSignal())
	{
		Async_Notify("payledger_events", "");
		notify_level = GetCurrentTransactionNestLevel();
	}
	notified = true;
}

/*
 * True when current_era is this server's era in the cluster_eras table
 * that exists now (not one dropped with the extension); otherwise sets
 * *relid to that table and *sysid to this server's system identifier, the
 * key to look the era up by.
 */
static bool
cached_era(Oid *relid, Datum *sysid)
{
	char		text[32];

	*relid = get_relname_relid("cluster_eras", get_namespace_oid("payledger", false));
	if (*relid == era_relid && current_era > 0)
		return true;
	snprintf(text, sizeof(text), UINT64_FORMAT, GetSystemIdentifier());
	*sysid = CStringGetTextDatum(text);
	return false;
}

/*
 * The era of this server (inside PlSpiBegin): registered on first use,
 * then cached for the life of the backend.
 */
int32
PlCurrentEra(void)
{
	Oid			relid;
	Datum		values[1];
	bool		isnull;

	if (cached_era(&relid, values))
		return current_era;
	if (PlExec(PLAN_ERA_REGISTER, values, NULL, 0) < 0 ||
		PlExec(PLAN_ERA_GET, values, NULL, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not find this server's era");
	current_era = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	era_relid = relid;
	return current_era;
}

/*
 * The era of this server for a reader (inside PlSpiBegin), without
 * registering it: until this server writes, it is the era it would get.
 */
static int32
reader_era(void)
{
	Oid			relid;
	Datum		values[1];
	bool		isnull;

	if (cached_era(&relid, values))
		return current_era;
	if (PlExec(PLAN_ERA_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up this server's era");
	if (SPI_processed == 1)
	{
		current_era = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		era_relid = relid;
		return current_era;
	}
	if (PlExec(PLAN_ERA_NEXT, NULL, NULL, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look up the next era");
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * payledger.delivery_era() RETURNS integer
 *
 * The era of this server in the outbox's delivery order.  Writes nothing,
 * so it works in a read-only transaction and on a hot standby.
 */
PG_FUNCTION_INFO_V1(delivery_era);
Datum
delivery_era(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	int32		era;

	PlSpiBegin(&priv);
	era = reader_era();
	PlSpiEnd(&priv);
	PG_RETURN_INT32(era);
}

static char *
consumer_arg(FunctionCallInfo fcinfo)
{
	char	   *consumer;

	PlRequireArg(fcinfo, 0, "consumer");
	consumer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (consumer[0] == '\0' || strlen(consumer) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer must be 1 to 200 bytes long")));
	return consumer;
}

/* columns of PLAN_CONSUMER_POSITION */
enum
{
	POSITION_ERA = 1, POSITION_TXID, POSITION_ID
};

/*
 * parameters of PLAN_EVENTS_READ, 0-based: after the consumer's position,
 * before the horizon, at most a limit
 */
enum
{
	READ_FROM_ERA, READ_FROM_TXID, READ_FROM_ID, READ_TO_ERA, READ_TO_TXID, READ_LIMIT,
	READ_NARGS
};

/*
 * The consumer's position into values (READ_FROM_*): where it acknowledged
 * last, or before everything for a new consumer.
 */
static void
consumer_position(const char *consumer, Datum *values)
{
	Datum		key = CStringGetTextDatum(consumer);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (PlExec(PLAN_CONSUMER_POSITION, &key, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "consumer lookup failed");
	if (SPI_processed != 1)
	{
		values[READ_FROM_ERA] = Int32GetDatum(0);
		values[READ_FROM_TXID] = FullTransactionIdGetDatum(InvalidFullTransactionId);
		values[READ_FROM_ID] = Int64GetDatum(0);
		return;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	values[READ_FROM_ERA] = SPI_getbinval(tup, desc, POSITION_ERA, &isnull);
	values[READ_FROM_TXID] = SPI_getbinval(tup, desc, POSITION_TXID, &isnull);
	values[READ_FROM_ID] = SPI_getbinval(tup, desc, POSITION_ID, &isnull);
}

/*
 * payledger.read_events(consumer text, max_events integer DEFAULT 1000)
 *		RETURNS SETOF payledger.payment_audit_log
 *
 * The events this consumer has not acknowledged, oldest first.
 */
PG_FUNCTION_INFO_V1(read_events);
Datum
read_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *consumer = consumer_arg(fcinfo);
	int32		max_events = PG_ARGISNULL(1) ? 1000 : PG_GETARG_INT32(1);
	PlPrivState priv;
	Datum		values[READ_NARGS];

	if (max_events <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	PlSpiBegin(&priv);
	/* from the consumer's position (a new one starts before everything) */
	consumer_position(consumer, values);
	/* to the horizon */
	values[READ_TO_ERA] = Int32GetDatum(reader_era());
	values[READ_TO_TXID] = FullTransactionIdGetDatum(delivery_horizon());
	values[READ_LIMIT] = Int32GetDatum(max_events);
	if (PlExec(PLAN_EVENTS_READ, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "event read failed");
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	PlSpiEnd(&priv);
	return (Datum) 0;
}

/* parameters of PLAN_EVENT_READABLE, 0-based: the event, then the horizon */
enum
{
	READABLE_EVENT, READABLE_ERA, READABLE_TXID, READABLE_NARGS
};

/* parameters of PLAN_EVENTS_ACK, 0-based */
enum
{
	ACK_CONSUMER, ACK_EVENT, ACK_NARGS
};

/*
 * payledger.ack_events(consumer text, up_to_event_id uuid) RETURNS void
 *
 * Acknowledges every event up to and including this one.  Acknowledging
 * an event the consumer has passed already is a no-op.
 */
PG_FUNCTION_INFO_V1(ack_events);
Datum
ack_events(PG_FUNCTION_ARGS)
{
	char	   *consumer = consumer_arg(fcinfo);
	PlPrivState priv;
	Datum		check[READABLE_NARGS];
	Datum		ack[ACK_NARGS];
	bool		isnull;
	bool		readable;

	PlRequireArg(fcinfo, 1, "up_to_event_id");
	ack[ACK_CONSUMER] = CStringGetTextDatum(consumer);
	ack[ACK_EVENT] = PG_GETARG_DATUM(1);
	check[READABLE_EVENT] = PG_GETARG_DATUM(1);
	PlSpiBegin(&priv);
	check[READABLE_ERA] = Int32GetDatum(reader_era());
	check[READABLE_TXID] = FullTransactionIdGetDatum(delivery_horizon());
	if (PlExec(PLAN_EVENT_READABLE, check, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "event lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("event %s does not exist", PlUuidText(PG_GETARG_UUID_P(1)))));
	readable = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!readable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event %s cannot be acknowledged yet", PlUuidText(PG_GETARG_UUID_P(1))),
				 errdetail("An older transaction that may write events is still running."),
				 errhint("Acknowledge only events that read_events() returned.")));
	if (PlExec(PLAN_EVENTS_ACK, ack, NULL, 0) < 0)
		elog(ERROR, "event acknowledgement failed");
	PlSpiEnd(&priv);
	PG_RETURN_VOID();
}
