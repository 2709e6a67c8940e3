/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Argument checks and result building shared by the SQL-callable
 *	  functions.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "payledger.h"
#include "util.h"
#include "layouts.h"
#include "pii.h"

void
PlRequireArg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

void
PlCheckAmount(int64 amount)
{
	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("amount must be positive"),
				 errdetail("The amount was " INT64_FORMAT ".", amount)));
}

/*
 * The optional idempotency key in argument argno: checked when given, PY008
 * when missing while keys are required.  NULL when there is none.
 */
char *
PlKeyArg(FunctionCallInfo fcinfo, int argno, const char *function)
{
	char	   *key;

	if (PG_ARGISNULL(argno))
	{
		PlRequireKey(function);
		return NULL;
	}
	key = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	PlCheckKey(key);
	return key;
}

/* PY008 when keys are required; called for a money-moving call without one */
void
PlRequireKey(const char *function)
{
	if (pl_require_idempotency_key)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REQUIRED),
				 errmsg("%s requires an idempotency key", function),
				 errhint("Pass idempotency_key, or turn payledger.require_idempotency_key off.")));
}

Jsonb *
PlEmptyJsonb(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		Datum		d = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		Jsonb	   *tmp = DatumGetJsonbP(d);

		empty = MemoryContextAlloc(TopMemoryContext, VARSIZE(tmp));
		memcpy(empty, tmp, VARSIZE(tmp));
	}
	return empty;
}

/* {"key": "value"}: the metadata of an audit row or transfer naming one thing */
Jsonb *
PlJsonbPair(const char *key, const char *value)
{
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* the columns of a payledger.transfer_result (Natts_transfer_result each) */
void
PlTransferResultValues(Datum *values, bool *nulls, const pg_uuid_t *id,
					   const char *status, const char *reason_code, bool replayed)
{
	pg_uuid_t  *idcopy = palloc(sizeof(pg_uuid_t));

	*idcopy = *id;
	memset(nulls, 0, sizeof(bool) * Natts_transfer_result);
	values[Anum_transfer_result_transfer_id - 1] = UUIDPGetDatum(idcopy);
	values[Anum_transfer_result_status - 1] = CStringGetTextDatum(status);
	if (reason_code)
		values[Anum_transfer_result_reason_code - 1] = CStringGetTextDatum(reason_code);
	else
		nulls[Anum_transfer_result_reason_code - 1] = true;
	values[Anum_transfer_result_replayed - 1] = BoolGetDatum(replayed);
}

/* builds a payledger.transfer_result */
Datum
PlTransferResult(FunctionCallInfo fcinfo, const pg_uuid_t *id,
				 const char *status, const char *reason_code, bool replayed)
{
	TupleDesc	tupdesc;
	Datum		values[Natts_transfer_result];
	bool		nulls[Natts_transfer_result];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	PlTransferResultValues(values, nulls, id, status, reason_code, replayed);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* An idempotency key: 1 to PL_MAX_KEY_LENGTH bytes, never a card number. */
void
PlCheckKey(const char *key)
{
	int			len = strlen(key);

	if (len == 0 || len > PL_MAX_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency key must be 1 to %d bytes long", PL_MAX_KEY_LENGTH)));
	PlRejectPanInText("idempotency key", key);
}

/*
 * now + expires_in, for a hold or an authorization: a positive, finite
 * instant after now, else 22023.  An interval so large that the sum would
 * leave timestamptz's range is refused here, before the addition could
 * raise 22008, which the contract does not list.  The bound takes every
 * month as 31 days and every day as 25 hours, so it errs on the safe side.
 */
TimestampTz
PlExpiryAfter(TimestampTz now, const Interval *expires_in)
{
	double		bound;
	TimestampTz expires_at;

	Assert(!TIMESTAMP_NOT_FINITE(now));
	bound = fabs((double) expires_in->month) * 31.0 * USECS_PER_DAY +
		fabs((double) expires_in->day) * 25.0 * USECS_PER_HOUR +
		fabs((double) expires_in->time);
	if (bound >= (double) (END_TIMESTAMP - now) ||
		bound >= (double) (now - MIN_TIMESTAMP))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_in must be a positive, finite interval"),
				 errdetail("The expiry would fall outside the range of timestamptz.")));
	expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(expires_in)));
	if (expires_at <= now || TIMESTAMP_NOT_FINITE(expires_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_in must be a positive, finite interval")));
	return expires_at;
}
