/*-------------------------------------------------------------------------
 *
 * reads.c
 *	  The read API: get_transfer(), list_transfers(), get_payment(),
 *	  list_payments(), list_accounts().
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
 * bound on the UUIDv7 id as well (a second earlier), so it is served by
 * the primary key.
 *
 * Transfers live in two tables: transfers (every transfer, leg set,
 * refund, split, payout and declined attempt, and a row per posted hold)
 * and holds (every hold, in its current state).  get_transfer and
 * list_transfers read both as one relation (TRANSFER_ROWS), merged by id.
 * An account's page is the union of the first max_rows ids of each source
 * touching it (transfers from it, to it, leg sets through payledger.legs,
 * pending and settled holds from and to it), each read in index order; a
 * scoped caller's page without an account is the same over every account
 * of its merchants, so it costs the page times the number of those
 * accounts.  since and until bound created_at exactly (a transfer's id is
 * minted before it is recorded, and a caller may supply its own), so they
 * do not narrow the index range: a window that starts late in a long
 * history reads the index entries before it.
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
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "access.h"

/* how much earlier than since list_payments' bound on ids starts */
#define ID_FLOOR_SLACK USECS_PER_SEC

typedef enum ReadPlan
{
	READ_TRANSFER,
	READ_TRANSFERS,
	READ_TRANSFERS_OF,
	READ_PAYMENT,
	READ_PAYMENTS,
	READ_ACCOUNTS,
	READ_COUNT
} ReadPlan;

/* parameters of READ_TRANSFER and READ_PAYMENT (one row by id), 0-based */
enum
{
	ONE_ARG_ID, ONE_ARG_SCOPE, ONE_NARGS
};

/* parameters of READ_TRANSFERS, 0-based */
enum
{
	TRANSFERS_ARG_SINCE, TRANSFERS_ARG_UNTIL, TRANSFERS_ARG_STATUS, TRANSFERS_ARG_METADATA,
	TRANSFERS_ARG_AFTER, TRANSFERS_ARG_MAX_ROWS, TRANSFERS_NARGS
};

/*
 * parameters of READ_TRANSFERS_OF, 0-based: the account and the scope,
 * then those of READ_TRANSFERS in their order
 */
enum
{
	TRANSFERS_OF_ARG_ACCOUNT, TRANSFERS_OF_ARG_SCOPE, TRANSFERS_OF_ARG_SINCE,
	TRANSFERS_OF_ARG_UNTIL, TRANSFERS_OF_ARG_STATUS, TRANSFERS_OF_ARG_METADATA,
	TRANSFERS_OF_ARG_AFTER, TRANSFERS_OF_ARG_MAX_ROWS, TRANSFERS_OF_NARGS
};

StaticAssertDecl(TRANSFERS_OF_NARGS - TRANSFERS_OF_ARG_SINCE == TRANSFERS_NARGS &&
				 TRANSFERS_OF_ARG_MAX_ROWS - TRANSFERS_OF_ARG_SINCE == TRANSFERS_ARG_MAX_ROWS,
				 "READ_TRANSFERS takes the last parameters of READ_TRANSFERS_OF");

/* parameters of READ_PAYMENTS, 0-based */
enum
{
	PAYMENTS_ARG_MERCHANT, PAYMENTS_ARG_STATE, PAYMENTS_ARG_SINCE, PAYMENTS_ARG_UNTIL,
	PAYMENTS_ARG_METADATA, PAYMENTS_ARG_AFTER, PAYMENTS_ARG_SCOPE, PAYMENTS_ARG_MAX_ROWS,
	PAYMENTS_ARG_FLOOR, PAYMENTS_NARGS
};

/* parameters of READ_ACCOUNTS, 0-based */
enum
{
	ACCOUNTS_ARG_OWNER, ACCOUNTS_ARG_KIND, ACCOUNTS_ARG_CURRENCY, ACCOUNTS_ARG_AFTER,
	ACCOUNTS_ARG_SCOPE, ACCOUNTS_ARG_MAX_ROWS, ACCOUNTS_NARGS
};

/* the most parameters a read has */
enum
{
	READ_MAX_ARGS = PAYMENTS_NARGS
};

typedef struct ReadDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[READ_MAX_ARGS];
} ReadDef;

/*
 * Every transfer, hold and leg set as get_transfer() shows it, but for its
 * legs (TRANSFER_OUT adds them to the rows of a page).  A hold is its holds
 * row (its status, and once posted the amount that moved); the transfers
 * row a posted hold also has (same id) is "shadowed" and left out by every
 * statement, a declined hold (only a transfers row) is kept.  The branches
 * have no WHERE clause of their own, so that the planner flattens them into
 * one append relation and merges their primary keys in id order.
 */
#define TRANSFER_ROWS \
	"(SELECT t.id, t.kind, t.status, t.reason_code, t.currency, t.amount, t.from_account," \
	" t.to_account, t.idempotency_key, t.metadata, t.created_at," \
	" t.kind = 'hold' AND t.status = 'posted' AS shadowed, false AS is_hold" \
	" FROM payledger.transfers t" \
	" UNION ALL SELECT h.id, 'hold', h.status, NULL, h.currency," \
	" CASE WHEN h.status = 'posted' THEN h.posted_amount ELSE h.amount END," \
	" h.from_account, h.to_account, h.idempotency_key, h.metadata, h.created_at, false, true" \
	" FROM payledger.holds h) v WHERE NOT v.shadowed"

/*
 * The GIN indexes on metadata cover only rows whose metadata is not '{}'
 * (the rest could match only the filter '{}', which matches every row):
 * with a filter other than '{}' the row's metadata cannot be '{}', and
 * saying so lets the planner use them.
 */
#define NON_EMPTY(col, filter) "(" filter " = '{}' OR " col " <> '{}')"

/*
 * Which table can hold a status: transfers rows are posted or rejected,
 * holds rows pending, posted, voided or expired.  Given a status, the
 * source that cannot have it folds to a constant false and is not read.
 */
#define TRANSFERS_MAY_BE(p) " AND (" p "::text IS NULL OR " p " IN ('posted', 'rejected'))"

/*
 * The result columns of the rows query q selects from TRANSFER_ROWS: a leg
 * set's legs from payledger.legs, in the order given, looked up for the
 * rows of the page only.
 */
#define TRANSFER_OUT(q) \
	"SELECT p.id, p.kind, p.status, p.reason_code, p.currency, p.amount, p.from_account," \
	" p.to_account, CASE WHEN p.kind = 'legs' THEN (SELECT jsonb_agg(jsonb_build_object(" \
	" 'from', l.from_account, 'to', l.to_account, 'amount', l.amount) ORDER BY l.leg)" \
	" FROM payledger.legs l WHERE l.transfer_id = p.id) END, p.idempotency_key, p.metadata," \
	" p.created_at FROM (" q ") p ORDER BY p.id"

/* a transfer touching an account of one of the merchants in $2 (NULL: unscoped) */
#define TRANSFER_IN_SCOPE \
	" AND ($2::uuid[] IS NULL" \
	" OR EXISTS (SELECT FROM payledger.accounts a WHERE a.id IN (v.from_account, v.to_account)" \
	" AND a.owner_id = ANY ($2))" \
	" OR EXISTS (SELECT FROM payledger.legs l JOIN payledger.accounts a" \
	" ON a.id IN (l.from_account, l.to_account) WHERE l.transfer_id = v.id" \
	" AND a.owner_id = ANY ($2)))"

/*
 * The filters of list_transfers on one source's rows (alias x).  Those not
 * given fold away (custom plans), so that an account's page without
 * filters reads only the index (from_account, id) or (to_account, id).
 */
#define PAGE_FILTER(x) \
	" AND ($3 = '-infinity' OR " x ".created_at >= $3)" \
	" AND ($4 = 'infinity' OR " x ".created_at <= $4)" \
	" AND ($5::text IS NULL OR " x ".status = $5)" \
	" AND ($6::jsonb IS NULL OR " x ".metadata @> $6 AND " NON_EMPTY(x ".metadata", "$6") ")" \
	" AND ($7::uuid IS NULL OR " x ".id > $7)"

/* the first $8 ids of one source's rows touching account a */
#define ACCOUNT_PAGE(from, where) \
	" (SELECT DISTINCT x.id FROM " from " WHERE " where PAGE_FILTER("x") \
	" ORDER BY x.id LIMIT $8)"
/*
 * Transfers rows from or to account a.  A posted hold's shadowed row has
 * the hold's id and accounts, so with no filter it may stand for the hold
 * (the holds branches have its id too) and the index alone is read; with
 * a filter it must not, since it has the post's created_at and metadata,
 * not the hold's that the filter is about.
 */
#define TRANSFERS_PAGE(where) \
	ACCOUNT_PAGE("payledger.transfers x", where TRANSFERS_MAY_BE("$5") \
				 " AND ($3 = '-infinity' AND $4 = 'infinity' AND $5::text IS NULL" \
				 " AND $6::jsonb IS NULL OR NOT (x.kind = 'hold' AND x.status = 'posted'))")
/*
 * Holds by account are indexed in two halves, pending and settled (posted,
 * voided, expired): a branch for each, read only when the status allows.
 */
#define HOLDS_PAGE(where) \
	ACCOUNT_PAGE("payledger.holds x", where " AND x.status = 'pending'" \
				 " AND ($5::text IS NULL OR $5 = 'pending')") \
	" UNION ALL" \
	ACCOUNT_PAGE("payledger.holds x", where " AND x.status <> 'pending'" \
				 " AND ($5::text IS NULL OR $5 NOT IN ('pending', 'rejected'))")

/*
 * The first $8 leg sets with a leg touching account a: legs by account in
 * transfer id order; their transfers rows are read only when a filter
 * needs them (with none given, the EXISTS folds away).
 */
#define LEGS_PAGE(where) \
	" (SELECT DISTINCT l.transfer_id FROM payledger.legs l WHERE " where \
	" AND ($7::uuid IS NULL OR l.transfer_id > $7)" TRANSFERS_MAY_BE("$5") \
	" AND ($3 = '-infinity' AND $4 = 'infinity' AND $5::text IS NULL AND $6::jsonb IS NULL" \
	" OR EXISTS (SELECT FROM payledger.transfers x WHERE x.id = l.transfer_id" PAGE_FILTER("x") "))" \
	" ORDER BY l.transfer_id LIMIT $8)"

static const ReadDef read_defs[READ_COUNT] = {
	[READ_TRANSFER] = {
		TRANSFER_OUT("SELECT v.* FROM " TRANSFER_ROWS " AND v.id = $1" TRANSFER_IN_SCOPE),
		ONE_NARGS, {UUIDOID, UUIDARRAYOID}
	},
	/* every transfer (an unscoped caller, no account): the primary keys */
	[READ_TRANSFERS] = {
		TRANSFER_OUT("SELECT v.* FROM " TRANSFER_ROWS
					 " AND v.created_at >= $1 AND v.created_at <= $2"
					 " AND ($3::text IS NULL OR v.status = $3)"
					 " AND (v.is_hold OR ($3::text IS NULL OR $3 IN ('posted', 'rejected')))"
					 " AND (NOT v.is_hold OR ($3::text IS NULL OR $3 <> 'rejected'))"
					 " AND ($4::jsonb IS NULL OR v.metadata @> $4 AND " NON_EMPTY("v.metadata", "$4") ")"
					 " AND ($5::uuid IS NULL OR v.id > $5)"
					 " ORDER BY v.id LIMIT $6"),
		TRANSFERS_NARGS, {TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, JSONBOID, UUIDOID, INT4OID}
	},

	/*
	 * The transfers touching a set of accounts: account $1, or every account
	 * of the scope's merchants, or both.  Each account's first $8 ids from
	 * and to it in transfers, leg sets and holds (index order, each source
	 * deduplicated), the first $8 of all of those: no id among the first $8
	 * of the whole can be missing from the first $8 of a source holding it.
	 * A posted hold's shadowed transfers row: see TRANSFERS_PAGE.
	 */
	[READ_TRANSFERS_OF] = {
		TRANSFER_OUT("SELECT v.* FROM " TRANSFER_ROWS " AND v.id IN ("
		" SELECT DISTINCT hit.id FROM payledger.accounts a, LATERAL ("
		TRANSFERS_PAGE("x.from_account = a.id")
		" UNION ALL"
		TRANSFERS_PAGE("x.to_account = a.id")
		" UNION ALL"
		LEGS_PAGE("l.from_account = a.id")
		" UNION ALL"
		LEGS_PAGE("l.to_account = a.id")
		" UNION ALL"
		HOLDS_PAGE("x.from_account = a.id")
		" UNION ALL"
		HOLDS_PAGE("x.to_account = a.id")
		") hit"
		" WHERE ($1::uuid IS NULL OR a.id = $1)"
		" AND ($2::uuid[] IS NULL OR a.owner_id = ANY ($2))"
		" ORDER BY hit.id LIMIT $8)"),
		TRANSFERS_OF_NARGS, {UUIDOID, UUIDARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID,
		JSONBOID, UUIDOID, INT4OID}
	},
	[READ_PAYMENT] = {
		"SELECT * FROM payledger.payments WHERE id = $1"
		" AND ($2::uuid[] IS NULL OR merchant_id = ANY ($2))",
		ONE_NARGS, {UUIDOID, UUIDARRAYOID}
	},
	[READ_PAYMENTS] = {
		"SELECT * FROM payledger.payments"
		" WHERE ($1::uuid IS NULL OR merchant_id = $1)"
		" AND ($2::text IS NULL OR state = $2::payledger.payment_state)"
		" AND created_at >= $3 AND created_at <= $4"
		" AND ($5::jsonb IS NULL OR metadata @> $5 AND " NON_EMPTY("metadata", "$5") ")"
		" AND ($6::uuid IS NULL OR id > $6)"
		" AND ($7::uuid[] IS NULL OR merchant_id = ANY ($7))"
		" AND ($9::uuid IS NULL OR id >= $9)"
		" ORDER BY id LIMIT $8",
		PAYMENTS_NARGS, {UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, UUIDOID,
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
		ACCOUNTS_NARGS, {UUIDOID, TEXTOID, TEXTOID, UUIDOID, UUIDARRAYOID, INT4OID}
	},
};

/* custom plans: a read's best plan depends on which filters are given */
static SPIPlanPtr read_plans[READ_COUNT];

/*
 * Runs one read with the settings every read plan assumes, for this call
 * only (PlSpiBegin's GUC level): no JIT, whose compiling costs more than a
 * page of at most 1000 rows; and for the pages of a set of accounts no
 * bitmap scans, so that each account's sources are read in index order up
 * to the page size, whatever the planner guesses an account's history to
 * be (a bitmap scan reads all of it, then sorts).
 */
static int
run_read(ReadPlan id, Datum *values, const char *nulls)
{
	int			rc;

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (id == READ_TRANSFERS_OF)
		(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

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
 * The rows of a read by id (argument 0, "<what>_id") within the caller's
 * scope as the SRF's result; PY005 when there are none.
 */
static void
read_one(FunctionCallInfo fcinfo, ReadPlan plan, const char *what)
{
	PlPrivState priv;
	Datum		values[ONE_NARGS];
	char		nulls[ONE_NARGS];
	bool		scope_null;

	PlRequireArg(fcinfo, 0, psprintf("%s_id", what));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	PlSpiBegin(&priv);
	memset(nulls, ' ', sizeof(nulls));
	values[ONE_ARG_ID] = PG_GETARG_DATUM(0);
	values[ONE_ARG_SCOPE] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[ONE_ARG_SCOPE] = 'n';
	run_read(plan, values, nulls);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("%s %s does not exist", what, PlUuidText(PG_GETARG_UUID_P(0)))));
	Assert(SPI_processed == 1);
	return_rows(fcinfo);
	PlSpiEnd(&priv);
}

/*
 * payledger.get_transfer(transfer_id uuid) RETURNS TABLE(transfer_id uuid,
 *		kind text, status text, reason_code text, currency text, amount bigint,
 *		from_account uuid, to_account uuid, legs jsonb, idempotency_key text,
 *		metadata jsonb, created_at timestamptz)
 *
 * The transfer, hold, leg set or declined attempt; PY005 when unknown (or,
 * to a scoped role, touching none of its merchants' accounts).
 */
PG_FUNCTION_INFO_V1(get_transfer);
Datum
get_transfer(PG_FUNCTION_ARGS)
{
	read_one(fcinfo, READ_TRANSFER, "transfer");
	return (Datum) 0;
}

/*
 * payledger.list_transfers(account_id uuid DEFAULT NULL, since timestamptz
 *		DEFAULT '-infinity', until timestamptz DEFAULT 'infinity', status text
 *		DEFAULT NULL, metadata_contains jsonb DEFAULT NULL, after_id uuid
 *		DEFAULT NULL, max_rows integer DEFAULT 100) RETURNS TABLE(<the columns
 *		of get_transfer>)
 *
 * In id order (oldest first: the ids payledger makes are UUIDv7), at most
 * max_rows (1..1000), after after_id; since and until bound created_at.  A
 * scoped caller lists only transfers touching its merchants' accounts; an
 * account_id it may not see, or that does not exist, lists nothing.
 */
PG_FUNCTION_INFO_V1(list_transfers);
Datum
list_transfers(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	Datum		values[TRANSFERS_OF_NARGS];
	char		nulls[TRANSFERS_OF_NARGS];
	bool		scope_null;

	memset(nulls, ' ', sizeof(nulls));
	values[TRANSFERS_OF_ARG_MAX_ROWS] = max_rows_arg(fcinfo, 6);
	if (!PG_ARGISNULL(3))
	{
		char	   *status = text_to_cstring(PG_GETARG_TEXT_PP(3));

		if (PlKnownStatus(status) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown transfer status \"%s\"", status),
					 errhint("A transfer is posted, pending, voided, expired or rejected.")));
	}
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	arg_or_null(fcinfo, 0, values, nulls, TRANSFERS_OF_ARG_ACCOUNT);
	values[TRANSFERS_OF_ARG_SINCE] = time_arg(fcinfo, 1, true);
	values[TRANSFERS_OF_ARG_UNTIL] = time_arg(fcinfo, 2, false);
	arg_or_null(fcinfo, 3, values, nulls, TRANSFERS_OF_ARG_STATUS);
	arg_or_null(fcinfo, 4, values, nulls, TRANSFERS_OF_ARG_METADATA);
	arg_or_null(fcinfo, 5, values, nulls, TRANSFERS_OF_ARG_AFTER);

	PlSpiBegin(&priv);
	values[TRANSFERS_OF_ARG_SCOPE] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[TRANSFERS_OF_ARG_SCOPE] = 'n';
	if (nulls[TRANSFERS_OF_ARG_ACCOUNT] == 'n' && scope_null)
		run_read(READ_TRANSFERS, &values[TRANSFERS_OF_ARG_SINCE], &nulls[TRANSFERS_OF_ARG_SINCE]);
	else
		run_read(READ_TRANSFERS_OF, values, nulls);
	return_rows(fcinfo);
	PlSpiEnd(&priv);
	return (Datum) 0;
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
	read_one(fcinfo, READ_PAYMENT, "payment");
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
	Datum		values[PAYMENTS_NARGS];
	char		nulls[PAYMENTS_NARGS];
	bool		scope_null;
	TimestampTz since;
	pg_uuid_t	floor;

	memset(nulls, ' ', sizeof(nulls));
	values[PAYMENTS_ARG_MAX_ROWS] = max_rows_arg(fcinfo, 6);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	arg_or_null(fcinfo, 0, values, nulls, PAYMENTS_ARG_MERCHANT);
	if (PG_ARGISNULL(1))
		nulls[PAYMENTS_ARG_STATE] = 'n';
	else
		values[PAYMENTS_ARG_STATE] =
			CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(enum_out,
																	PG_GETARG_DATUM(1))));
	values[PAYMENTS_ARG_SINCE] = time_arg(fcinfo, 2, true);
	values[PAYMENTS_ARG_UNTIL] = time_arg(fcinfo, 3, false);
	arg_or_null(fcinfo, 4, values, nulls, PAYMENTS_ARG_METADATA);
	arg_or_null(fcinfo, 5, values, nulls, PAYMENTS_ARG_AFTER);

	/*
	 * A payment's id is minted after its created_at is read, so ids from
	 * since's millisecond on hold every payment of the window; a second of
	 * slack covers payments made before 0.3.0, which minted the id first.
	 */
	since = DatumGetTimestampTz(values[PAYMENTS_ARG_SINCE]);
	if (!TIMESTAMP_NOT_FINITE(since) && PlUuidV7Floor(since - ID_FLOOR_SLACK, &floor))
		values[PAYMENTS_ARG_FLOOR] = UUIDPGetDatum(&floor);
	else
		nulls[PAYMENTS_ARG_FLOOR] = 'n';

	PlSpiBegin(&priv);
	values[PAYMENTS_ARG_SCOPE] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[PAYMENTS_ARG_SCOPE] = 'n';
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
	Datum		values[ACCOUNTS_NARGS];
	char		nulls[ACCOUNTS_NARGS];
	bool		scope_null;

	memset(nulls, ' ', sizeof(nulls));
	values[ACCOUNTS_ARG_MAX_ROWS] = max_rows_arg(fcinfo, 4);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	arg_or_null(fcinfo, 0, values, nulls, ACCOUNTS_ARG_OWNER);
	arg_or_null(fcinfo, 1, values, nulls, ACCOUNTS_ARG_KIND);
	arg_or_null(fcinfo, 2, values, nulls, ACCOUNTS_ARG_CURRENCY);
	arg_or_null(fcinfo, 3, values, nulls, ACCOUNTS_ARG_AFTER);
	PlSpiBegin(&priv);
	values[ACCOUNTS_ARG_SCOPE] = PlScopeMerchants(&scope_null);
	if (scope_null)
		nulls[ACCOUNTS_ARG_SCOPE] = 'n';
	run_read(READ_ACCOUNTS, values, nulls);
	return_rows(fcinfo);
	PlSpiEnd(&priv);
	return (Datum) 0;
}
