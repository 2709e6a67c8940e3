/*-------------------------------------------------------------------------
 *
 * reads.c
 *	  The read API: get_payment(), list_payments(), list_accounts().
 *
 * The reads run as the ledger's owner (applications hold no privilege on
 * the tables) and filter by the merchant scope of the real caller, which
 * only C code still knows once the user has been switched: the caller's
 * merchants are a parameter of every statement (NULL when it is unscoped),
 * so another merchant's rows are never read into a page, let alone
 * returned.
 *
 * Pages are keyset-paginated on the row id (after_id, oldest first: ids
 * are UUIDv7).  Every statement is planned for the values of its call
 * (custom plans, kept and re-planned per call): the filters a caller leaves
 * NULL fold away, so the planner sees exactly the predicate it has to
 * serve and picks the index for it: (merchant_id, id) and (owner_id, id)
 * for a merchant's pages, the primary key for the others, the GIN index on
 * metadata for containment.  A time window from since becomes a lower
 * bound on the UUIDv7 id as well, so it is served by the primary key.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/reads.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "access.h"

typedef enum ReadPlan
{
	READ_PAYMENT,
	READ_PAYMENTS,
	READ_ACCOUNTS,
	READ_COUNT
} ReadPlan;

typedef struct ReadDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[10];
} ReadDef;

static const ReadDef read_defs[READ_COUNT] = {
	[READ_PAYMENT] = {
		"SELECT * FROM payledger.payments WHERE id = $1"
		" AND ($2::uuid[] IS NULL OR merchant_id = ANY ($2))",
		2, {UUIDOID, UUIDARRAYOID}
	},
	[READ_PAYMENTS] = {
		"SELECT * FROM payledger.payments"
		" WHERE ($1::uuid IS NULL OR merchant_id = $1)"
		" AND ($2::text IS NULL OR state = $2::payledger.payment_state)"
		" AND created_at >= $3 AND created_at <= $4"
		" AND ($5::jsonb IS NULL OR metadata @> $5)"
		" AND ($6::uuid IS NULL OR id > $6)"
		" AND ($7::uuid[] IS NULL OR merchant_id = ANY ($7))"
		" AND ($9::uuid IS NULL OR id >= $9)"
		" ORDER BY id LIMIT $8",
		9, {UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, UUIDOID,
		UUIDARRAYOID, INT4OID, UUIDOID}
	},
	/* balances as get_balance() reports them: sub-balances added, overdue holds released */
	[READ_ACCOUNTS] = {
		"SELECT a.id, a.currency, a.kind, a.owner_id, a.status, b.balance,"
		" b.pending_debits, b.balance - b.pending_debits, a.min_balance, a.metadata, a.created_at"
		" FROM payledger.accounts a,"
		" LATERAL (SELECT (a.balance + coalesce((SELECT sum(s.balance) FROM payledger.sub_balances sb"
		"   JOIN payledger.accounts s ON s.id = sb.sub_account_id WHERE sb.account_id = a.id), 0))::bigint"
		"   AS balance, (a.pending_debits - coalesce((SELECT sum(h.amount) FROM payledger.holds h"
		"   WHERE h.from_account = a.id AND h.status = 'pending'"
		"   AND h.expires_at <= clock_timestamp()), 0))::bigint AS pending_debits) b"
		" WHERE a.kind <> 'sub_balance'"
		" AND ($1::uuid IS NULL OR a.owner_id = $1)"
		" AND ($2::text IS NULL OR a.kind = $2)"
		" AND ($3::text IS NULL OR a.currency = $3)"
		" AND ($4::uuid IS NULL OR a.id > $4)"
		" AND ($5::uuid[] IS NULL OR a.owner_id = ANY ($5))"
		" ORDER BY a.id LIMIT $6",
		6, {UUIDOID, TEXTOID, TEXTOID, UUIDOID, UUIDARRAYOID, INT4OID}
	},
};

/* custom plans: a read's best plan depends on which filters are given */
static SPIPlanPtr read_plans[READ_COUNT];

static int
run_read(ReadPlan id, Datum *values, const char *nulls)
{
	int			rc;

	if (read_plans[id] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(read_defs[id].sql, read_defs[id].nargs,
											  (Oid *) read_defs[id].argtypes,
											  CURSOR_OPT_CUSTOM_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for payledger read %d: %s", (int) id,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed for payledger read %d", (int) id);
		read_plans[id] = plan;
	}
	rc = SPI_execute_plan(read_plans[id], values, nulls, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "payledger read %d failed: %s", (int) id, SPI_result_code_string(rc));
	return rc;
}

/* Copies SPI's result into the function's tuplestore. */
static void
return_rows(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			natts = rsinfo->setDesc->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);

	if (SPI_tuptable->tupdesc->natts != natts)
		elog(ERROR, "payledger read returns %d columns, not %d",
			 SPI_tuptable->tupdesc->natts, natts);
	for (int i = 0; i < natts; i++)
		if (TupleDescAttr(SPI_tuptable->tupdesc, i)->atttypid !=
			TupleDescAttr(rsinfo->setDesc, i)->atttypid)
			elog(ERROR, "payledger read returns column %d of another type", i + 1);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

static Datum
max_rows_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		max_rows;

	PlRequireArg(fcinfo, argno, "max_rows");
	max_rows = PG_GETARG_INT32(argno);
	if (max_rows < 1 || max_rows > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and 1000"),
				 errhint("Page through more with after_id, the last id of the previous page.")));
	return Int32GetDatum(max_rows);
}

/* argument argno into values[i], or a NULL parameter */
static void
arg_or_null(FunctionCallInfo fcinfo, int argno, Datum *values, char *nulls, int i)
{
	if (PG_ARGISNULL(argno))
		nulls[i] = 'n';
	else
		values[i] = PG_GETARG_DATUM(argno);
}

/* the time window's bound, or the default when NULL */
static Datum
time_arg(FunctionCallInfo fcinfo, int argno, bool lower)
{
	TimestampTz t;

	if (!PG_ARGISNULL(argno))
		return PG_GETARG_DATUM(argno);
	if (lower)
		TIMESTAMP_NOBEGIN(t);
	else
		TIMESTAMP_NOEND(t);
	return TimestampTzGetDatum(t);
}

/*
 * The smallest UUIDv7 minted at or after t (its first 48 bits are the Unix
 * time in milliseconds), or false for a bound that excludes nothing.
 */
static bool
uuid_v7_floor(TimestampTz t, pg_uuid_t *out)
{
	int64		ms;

	if (TIMESTAMP_NOT_FINITE(t))
		return false;
	ms = (t / 1000) + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	if (ms <= 0)
		return false;
	memset(out, 0, sizeof(pg_uuid_t));
	for (int i = 0; i < 6; i++)
		out->data[i] = (uint8) (ms >> (40 - 8 * i));
	return true;
}

/*
 * payledger.get_payment(payment_id uuid) RETURNS SETOF payledger.payments
 *
 * The payment, PY005 when unknown (or another merchant's, to a scoped role).
 */
PG_FUNCTION_INFO_V1(get_payment);
Datum
get_payment(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	Datum		values[2];
	char		nulls[2] = "  ";
	bool		scope_null;

	PlRequireArg(fcinfo, 0, "payment_id");
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	PlSpiBegin(&priv);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[1] = 'n';
	run_read(READ_PAYMENT, values, nulls);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("payment %s does not exist", PlUuidText(PG_GETARG_UUID_P(0)))));
	return_rows(fcinfo);
	PlSpiEnd(&priv);
	return (Datum) 0;
}

/*
 * payledger.list_payments(merchant_id uuid DEFAULT NULL, state
 *		payledger.payment_state DEFAULT NULL, since timestamptz DEFAULT
 *		'-infinity', until timestamptz DEFAULT 'infinity', metadata_contains
 *		jsonb DEFAULT NULL, after_id uuid DEFAULT NULL, max_rows integer
 *		DEFAULT 100) RETURNS SETOF payledger.payments
 *
 * Oldest first, at most max_rows (1..1000), after after_id.
 */
PG_FUNCTION_INFO_V1(list_payments);
Datum
list_payments(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	Datum		values[9];
	char		nulls[9] = "         ";
	bool		scope_null;
	pg_uuid_t	floor;

	values[7] = max_rows_arg(fcinfo, 6);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	arg_or_null(fcinfo, 0, values, nulls, 0);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	else
		values[1] = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(enum_out,
																			PG_GETARG_DATUM(1))));
	values[2] = time_arg(fcinfo, 2, true);
	values[3] = time_arg(fcinfo, 3, false);
	arg_or_null(fcinfo, 4, values, nulls, 4);
	arg_or_null(fcinfo, 5, values, nulls, 5);
	if (uuid_v7_floor(DatumGetTimestampTz(values[2]), &floor))
		values[8] = UUIDPGetDatum(&floor);
	else
		nulls[8] = 'n';

	PlSpiBegin(&priv);
	values[6] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[6] = 'n';
	run_read(READ_PAYMENTS, values, nulls);
	return_rows(fcinfo);
	PlSpiEnd(&priv);
	return (Datum) 0;
}

/*
 * payledger.list_accounts(owner_id uuid DEFAULT NULL, kind text DEFAULT
 *		NULL, currency text DEFAULT NULL, after_id uuid DEFAULT NULL,
 *		max_rows integer DEFAULT 100) RETURNS TABLE(account_id uuid, currency
 *		text, kind text, owner_id uuid, status text, balance bigint,
 *		pending_debits bigint, available bigint, min_balance bigint, metadata
 *		jsonb, created_at timestamptz)
 *
 * In id order, at most max_rows (1..1000), after after_id; sub-balance rows
 * are part of their account, not listed.
 */
PG_FUNCTION_INFO_V1(list_accounts);
Datum
list_accounts(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	Datum		values[6];
	char		nulls[6] = "      ";
	bool		scope_null;

	values[5] = max_rows_arg(fcinfo, 4);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < 4; i++)
		arg_or_null(fcinfo, i, values, nulls, i);
	PlSpiBegin(&priv);
	values[4] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[4] = 'n';
	run_read(READ_ACCOUNTS, values, nulls);
	return_rows(fcinfo);
	PlSpiEnd(&priv);
	return (Datum) 0;
}
