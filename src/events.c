/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The transactional outbox: read_events(), ack_events() and the
 *	  payledger_events notification.
 *
 * Design note: delivery order.
 *
 * Every audit row is an event and carries the id of the transaction that
 * wrote it (txid).  Ids from the sequence are taken before commit, so a
 * transaction can commit after one that took a later id; reading "id >
 * last acknowledged" would skip it.  Instead, events are delivered in
 * (era, txid, id) order and only once their txid is below the xmin of the
 * reader's snapshot, i.e. once that transaction and every older one have
 * ended.  Any transaction that has not ended has a txid at or above that
 * xmin, and every transaction that starts later gets a larger txid, so the
 * readable events only ever grow at the end of that order: a consumer's
 * position never has to move back, and nothing is skipped.  Delivery is at
 * least once: a consumer that crashes before ack_events() reads the same
 * events again.
 *
 * Transaction ids mean something only on the server that assigned them.
 * The era numbers the servers (by system identifier) a ledger has lived
 * on: a ledger restored onto another server gets a new, larger era there,
 * so everything it writes is delivered after what it brought along, and
 * events of earlier eras are readable at once (their transactions ended
 * on the old server).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "access/xlog.h"
#include "utils/lsyscache.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "events.h"
#include "notify_worker.h"

static bool notified = false;
static Oid	era_relid = InvalidOid;	/* payledger.cluster_eras, when era is known */
static int32 current_era = 0;

static void
reset_notified(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		notified = false;
}

void
EventsInit(void)
{
	RegisterXactCallback(reset_notified, NULL);
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
		Async_Notify("payledger_events", "");
	notified = true;
}

/*
 * The era of this server (inside PlSpiBegin): registered on first use,
 * then cached for the life of the backend.
 */
int32
PlCurrentEra(void)
{
	Oid			relid = get_relname_relid("cluster_eras", get_namespace_oid("payledger", false));
	char		sysid[32];
	Datum		values[1];
	bool		isnull;

	if (relid == era_relid && current_era > 0)
		return current_era;
	snprintf(sysid, sizeof(sysid), UINT64_FORMAT, GetSystemIdentifier());
	values[0] = CStringGetTextDatum(sysid);
	if (PlExec(PLAN_ERA_REGISTER, values, NULL, 0) < 0 ||
		PlExec(PLAN_ERA_GET, values, NULL, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not find this server's era");
	current_era = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	era_relid = relid;
	return current_era;
}

/*
 * payledger.delivery_era() RETURNS integer
 *
 * The era of this server in the outbox's delivery order.
 */
PG_FUNCTION_INFO_V1(delivery_era);
Datum
delivery_era(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	int32		era;

	PlSpiBegin(&priv);
	era = PlCurrentEra();
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
	Datum		values[3];

	if (max_events <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	values[0] = CStringGetTextDatum(consumer);
	values[1] = Int32GetDatum(max_events);
	PlSpiBegin(&priv);
	values[2] = Int32GetDatum(PlCurrentEra());
	if (PlExec(PLAN_EVENTS_READ, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "event read failed");
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	PlSpiEnd(&priv);
	return (Datum) 0;
}

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
	Datum		values[3];
	bool		isnull;
	bool		readable;

	PlRequireArg(fcinfo, 1, "up_to_event_id");
	values[0] = CStringGetTextDatum(consumer);
	values[1] = PG_GETARG_DATUM(1);
	PlSpiBegin(&priv);
	values[2] = Int32GetDatum(PlCurrentEra());
	if (PlExec(PLAN_EVENT_READABLE, &values[1], NULL, 1) != SPI_OK_SELECT)
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
	if (PlExec(PLAN_EVENTS_ACK, values, NULL, 0) < 0)
		elog(ERROR, "event acknowledgement failed");
	PlSpiEnd(&priv);
	PG_RETURN_VOID();
}
