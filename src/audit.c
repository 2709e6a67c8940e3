/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit log writer and the append-only guards.
 *
 * Every state change and every decline writes one row of
 * payledger.payment_audit_log through PlAuditWrite(), inside the same SPI
 * session and so the same transaction as the change: if the row cannot be
 * written, the change does not happen.  The actor comes from the
 * payledger.* context settings (doc/reference.md section 2); the IP address is stored
 * masked, the user agent and device id only as SHA-256 hex.  Column
 * db_role is the role that called the function (its current_user, not the
 * owner the statements run as), which no setting can change.
 *
 * forbid_mutation() is the statement-level trigger that makes a table
 * append-only; guard_internal() lets only payledger's own statements change
 * account and hold rows.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/xid8.h"
#include "utils/rel.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "layouts.h"
#include "spi_plans.h"
#include "metrics.h"
#include "direct.h"
#include "audit.h"
#include "events.h"

void
PlAuditInit(PlAuditEvent *ev, const char *event_type, TimestampTz at)
{
	memset(ev, 0, sizeof(*ev));
	ev->event_type = event_type;
	ev->success = true;
	ev->event_time = at;
}

static inline void
set_text(Datum *values, bool *nulls, int i, const char *s)
{
	if (s != NULL)
		values[i] = CStringGetTextDatum(s);
	else
		nulls[i] = true;
}

static inline void
set_uuid(Datum *values, bool *nulls, int i, pg_uuid_t *u)
{
	if (u != NULL)
		values[i] = UUIDPGetDatum(u);
	else
		nulls[i] = true;
}

/*
 * Prepares the audit row of a money movement with transfer (or hold) id
 * "id": on success event_type and new_state, on a decline (reason set)
 * TRANSFER_REJECTED with success = false.
 * The caller may adjust the event before PlAuditWrite().
 */
void
PlAuditMovement(PlAuditEvent *ev, const char *event_type, const char *new_state,
				const char *reason, const pg_uuid_t *id, const pg_uuid_t *from_id,
				const pg_uuid_t *to_id, int64 amount, const char *currency,
				const char *key, Jsonb *metadata, const pg_uuid_t *correlation_id,
				TimestampTz now)
{
	PlAuditInit(ev, reason ? "TRANSFER_REJECTED" : event_type, now);
	ev->new_state = reason ? "rejected" : new_state;
	ev->success = (reason == NULL);
	ev->reason_code = reason;
	ev->payment_id = (pg_uuid_t *) id;
	ev->correlation_id = (pg_uuid_t *) (correlation_id ? correlation_id : id);
	ev->account_id = (pg_uuid_t *) from_id;
	ev->counterparty_account_id = (pg_uuid_t *) to_id;
	ev->idempotency_key = key;
	ev->has_amount = true;
	ev->amount = amount;
	ev->currency = currency;
	ev->metadata = metadata;
}

/*
 * Writes one audit row, in column order of payledger.payment_audit_log.
 * Must run inside PlSpiBegin/PlSpiEnd (the actor is the caller, not the
 * owner the statements run as).
 */
void
PlAuditWrite(const PlAuditEvent *ev)
{
	Datum		values[Natts_audit];
	bool		nulls[Natts_audit];
	pg_uuid_t	event_id;
	pg_uuid_t	correlation;
	pg_uuid_t  *correlation_p = ev->correlation_id;
	Relation	parent;
	Relation	rel;
	Oid			seq;
	char	   *caller;

	PlCheckContext();
#ifdef PAYLEDGER_BENCH_NO_AUDIT
	/* only in the copy bench/run builds to measure what the audit row costs */
	return;
#endif
	memset(nulls, 0, sizeof(nulls));
	/* the calling role: db_role, and actor_id unless the application names one */
	caller = GetUserNameFromId(PlCallerUserId(), false);
	parent = PlOpenTable("payment_audit_log");
	seq = get_relname_relid("payment_audit_log_id_seq", RelationGetNamespace(parent));

	/* minted now, so that the row lands in this month's partition */
	PlUuidV7(&event_id);
	rel = PlAuditLeafFor(parent, &event_id);
	if (pl_correlation_id != NULL && pl_correlation_id[0] != '\0' &&
		PlParseUuid(pl_correlation_id, &correlation))
		correlation_p = &correlation;

	values[Anum_audit_id - 1] = Int64GetDatum(nextval_internal(seq, false));
	values[Anum_audit_event_id - 1] = UUIDPGetDatum(&event_id);
	set_uuid(values, nulls, Anum_audit_correlation_id - 1, correlation_p);
	set_text(values, nulls, Anum_audit_idempotency_key - 1, ev->idempotency_key);
	values[Anum_audit_event_time - 1] = TimestampTzGetDatum(ev->event_time);
	values[Anum_audit_server_time - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	set_text(values, nulls, Anum_audit_event_type - 1, ev->event_type);
	set_text(values, nulls, Anum_audit_previous_state - 1, ev->previous_state);
	set_text(values, nulls, Anum_audit_new_state - 1, ev->new_state);
	set_text(values, nulls, Anum_audit_actor_type - 1,
			 (pl_actor_type && pl_actor_type[0]) ? pl_actor_type : "SYSTEM");
	set_text(values, nulls, Anum_audit_actor_id - 1,
			 (pl_actor_id && pl_actor_id[0]) ? pl_actor_id : caller);
	set_uuid(values, nulls, Anum_audit_payment_id - 1, ev->payment_id);
	set_uuid(values, nulls, Anum_audit_account_id - 1, ev->account_id);
	set_uuid(values, nulls, Anum_audit_counterparty_account_id - 1, ev->counterparty_account_id);
	if (ev->has_amount)
		values[Anum_audit_amount_cents - 1] = Int64GetDatum(ev->amount);
	else
		nulls[Anum_audit_amount_cents - 1] = true;
	set_text(values, nulls, Anum_audit_currency - 1, ev->currency);
	set_uuid(values, nulls, Anum_audit_merchant_id - 1, ev->merchant_id);
	set_uuid(values, nulls, Anum_audit_customer_id - 1, ev->customer_id);
	set_text(values, nulls, Anum_audit_ip_address - 1,
			 (pl_ip_address && pl_ip_address[0]) ? PlMaskIp(pl_ip_address) : NULL);
	set_text(values, nulls, Anum_audit_user_agent_hash - 1,
			 (pl_user_agent && pl_user_agent[0]) ? PlSha256Hex(pl_user_agent) : NULL);
	set_text(values, nulls, Anum_audit_device_id - 1,
			 (pl_device_id && pl_device_id[0]) ? PlSha256Hex(pl_device_id) : NULL);
	values[Anum_audit_success - 1] = BoolGetDatum(ev->success);
	set_text(values, nulls, Anum_audit_reason_code - 1, ev->reason_code);
	set_text(values, nulls, Anum_audit_error_message - 1, ev->error_message);
	values[Anum_audit_metadata - 1] = JsonbPGetDatum(ev->metadata ? ev->metadata : PlEmptyJsonb());
	values[Anum_audit_created_at - 1] = TimestampTzGetDatum(ev->event_time);
	values[Anum_audit_txid - 1] = FullTransactionIdGetDatum(PlEventKey());
	values[Anum_audit_era - 1] = Int32GetDatum(PlCurrentEra());
	/* a 0.2.0 log (the library is new, ALTER EXTENSION UPDATE not yet run) has no db_role */
	if (RelationGetDescr(rel)->natts >= Anum_audit_db_role)
		values[Anum_audit_db_role - 1] = CStringGetTextDatum(caller);
	PlAuditChainFill(RelationGetRelid(rel), RelationGetDescr(rel), values, nulls);

	PlDirectInsert(rel, values, nulls);
	PlCountAudit(ev->event_type, ev->success);
	PlNotifyEvents();
	if (rel != parent)
		table_close(rel, NoLock);
	table_close(parent, NoLock);
}

static const char *
trigger_op(TriggerData *trigdata)
{
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return "UPDATE";
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		return "DELETE";
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		return "TRUNCATE";
	return "INSERT";
}

/*
 * payledger.forbid_mutation() RETURNS trigger
 *
 * Attach BEFORE UPDATE OR DELETE OR TRUNCATE (row or statement level) to
 * make a table append-only for every role, owner and superuser included.
 */
PG_FUNCTION_INFO_V1(forbid_mutation);
Datum
forbid_mutation(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("forbid_mutation() must be called as a trigger")));
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IMMUTABLE_RECORD),
				 errmsg("%s of \"%s\" is not allowed: the table is append-only",
						trigger_op(trigdata),
						RelationGetRelationName(trigdata->tg_relation)),
				 errhint("Record a correcting entry instead of changing history.")));
	return PointerGetDatum(NULL);
}

/*
 * payledger.guard_internal() RETURNS trigger
 *
 * Balances, holds and statuses change only through payledger's functions,
 * which keep entries, audit rows and balances in step; a hand-written
 * UPDATE, DELETE or TRUNCATE, by anybody, is refused.
 */
PG_FUNCTION_INFO_V1(guard_internal);
Datum
guard_internal(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard_internal() must be called as a trigger")));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && PlInternalWrite())
		return PointerGetDatum(NULL);
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_IMMUTABLE_RECORD),
			 errmsg("%s of \"%s\" is not allowed outside payledger functions",
					trigger_op(trigdata),
					RelationGetRelationName(trigdata->tg_relation)),
			 errhint("Move money with payledger.transfer() and change status with freeze_account(), unfreeze_account() or close_account().")));
	return PointerGetDatum(NULL);
}
