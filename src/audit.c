/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit log writer and the append-only guards.
 *
 * Every state change and every decline writes one row of
 * payledger.payment_audit_log through PlAuditWrite(), inside the same SPI
 * session and so the same transaction as the change: if the row cannot be
 * written, the change does not happen.  The actor comes from the
 * payledger.* context settings (API.md section 2); the IP address is stored
 * masked, the user agent and device id only as SHA-256 hex.
 *
 * forbid_mutation() is the statement-level trigger that makes a table
 * append-only; guard_accounts() lets only payledger's own statements change
 * account rows.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "payledger.h"

#define AUDIT_NARGS 24

void
PlAuditInit(PlAuditEvent *ev, const char *event_type, TimestampTz at)
{
	memset(ev, 0, sizeof(*ev));
	ev->event_type = event_type;
	ev->success = true;
	ev->event_time = at;
}

static inline void
set_text(Datum *values, char *nulls, int i, const char *s)
{
	if (s != NULL)
		values[i] = CStringGetTextDatum(s);
	else
		nulls[i] = 'n';
}

static inline void
set_uuid(Datum *values, char *nulls, int i, pg_uuid_t *u)
{
	if (u != NULL)
		values[i] = UUIDPGetDatum(u);
	else
		nulls[i] = 'n';
}

/* Must run inside PlSpiBegin/PlSpiEnd. */
void
PlAuditWrite(const PlAuditEvent *ev)
{
	Datum		values[AUDIT_NARGS];
	char		nulls[AUDIT_NARGS];
	pg_uuid_t	event_id;
	pg_uuid_t	correlation;
	pg_uuid_t  *correlation_p = ev->correlation_id;

	memset(nulls, ' ', sizeof(nulls));

	if (ev->event_id)
		event_id = *ev->event_id;
	else
		PlUuidV7(&event_id);
	values[0] = UUIDPGetDatum(&event_id);

	if (pl_correlation_id != NULL && pl_correlation_id[0] != '\0' &&
		PlParseUuid(pl_correlation_id, &correlation))
		correlation_p = &correlation;
	set_uuid(values, nulls, 1, correlation_p);
	set_text(values, nulls, 2, ev->idempotency_key);
	values[3] = TimestampTzGetDatum(ev->event_time);
	values[4] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	set_text(values, nulls, 5, ev->event_type);
	set_text(values, nulls, 6, ev->previous_state);
	set_text(values, nulls, 7, ev->new_state);
	set_text(values, nulls, 8,
			 (pl_actor_type && pl_actor_type[0]) ? pl_actor_type : "SYSTEM");
	set_text(values, nulls, 9,
			 (pl_actor_id && pl_actor_id[0]) ? pl_actor_id :
			 GetUserNameFromId(PlCallerUserId(), false));
	set_uuid(values, nulls, 10, ev->payment_id);
	set_uuid(values, nulls, 11, ev->account_id);
	set_uuid(values, nulls, 12, ev->counterparty_account_id);
	if (ev->has_amount)
		values[13] = Int64GetDatum(ev->amount);
	else
		nulls[13] = 'n';
	set_text(values, nulls, 14, ev->currency);
	set_uuid(values, nulls, 15, ev->merchant_id);
	set_uuid(values, nulls, 16, ev->customer_id);
	set_text(values, nulls, 17,
			 (pl_ip_address && pl_ip_address[0]) ? PlMaskIp(pl_ip_address) : NULL);
	set_text(values, nulls, 18,
			 (pl_user_agent && pl_user_agent[0]) ? PlSha256Hex(pl_user_agent) : NULL);
	set_text(values, nulls, 19,
			 (pl_device_id && pl_device_id[0]) ? PlSha256Hex(pl_device_id) : NULL);
	values[20] = BoolGetDatum(ev->success);
	set_text(values, nulls, 21, ev->reason_code);
	set_text(values, nulls, 22, ev->error_message);
	values[23] = JsonbPGetDatum(ev->metadata ? ev->metadata : PlEmptyJsonb());

	if (PlExec(PLAN_AUDIT_INSERT, values, nulls, 0) != SPI_OK_INSERT || SPI_processed != 1)
		elog(ERROR, "could not write the audit row");
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
 * payledger.guard_accounts() RETURNS trigger
 *
 * Balances and statuses change only through payledger's functions, which
 * keep entries, audit rows and balances in step; a hand-written UPDATE,
 * DELETE or TRUNCATE, by anybody, is refused.
 */
PG_FUNCTION_INFO_V1(guard_accounts);
Datum
guard_accounts(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard_accounts() must be called as a trigger")));
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
