/*-------------------------------------------------------------------------
 *
 * settlement.c
 *	  settle_merchant() and reconcile_settlement().
 *
 * A settlement takes the merchant's payments that are captured or
 * partially refunded and were captured at or before the cutoff (by the
 * wall clock of the capture), locks them, and pays their net -- captured
 * minus capture splits minus refunds -- from each merchant account to the
 * payout account, all in one transaction; the payments become settled and
 * the batch is recorded in payledger.settlements.  Reconciliation compares
 * a processor's statement with a batch, payment by payment.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/settlement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "audit.h"
#include "pipeline.h"
#include "access.h"
#include "ledger.h"

/* parameters of PLAN_SETTLE_CANDIDATES, 0-based */
enum
{
	CANDIDATES_MERCHANT, CANDIDATES_CUTOFF, CANDIDATES_NARGS
};

/* columns of PLAN_SETTLE_CANDIDATES */
enum
{
	CAND_ID = 1, CAND_MERCHANT_ACCOUNT, CAND_CURRENCY, CAND_CAPTURED, CAND_FEES,
	CAND_REFUNDED, CAND_STATE, CAND_CUSTOMER, CAND_CORRELATION
};

/* parameters of PLAN_SETTLEMENT_INSERT, 0-based */
enum
{
	SETTLEMENT_ID, SETTLEMENT_MERCHANT, SETTLEMENT_CUTOFF, SETTLEMENT_CURRENCY,
	SETTLEMENT_COUNT, SETTLEMENT_GROSS, SETTLEMENT_FEES, SETTLEMENT_REFUNDS, SETTLEMENT_NET,
	SETTLEMENT_PAYOUT_ACCOUNT, SETTLEMENT_PAYOUT_TRANSFER, SETTLEMENT_NARGS
};

typedef struct Candidate
{
	pg_uuid_t	id;
	pg_uuid_t	merchant_account;
	pg_uuid_t	customer_id;
	pg_uuid_t	correlation_id;
	char	   *state;
	int64		net;
} Candidate;

static Jsonb *
settlement_ref(const pg_uuid_t *id)
{
	return PlJsonbPair("settlement_id", PlUuidText(id));
}

static void
overflow(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("settlement totals would overflow bigint")));
}

/* a settle_merchant call: its arguments, then what its steps share */
typedef struct Settlement
{
	pg_uuid_t  *merchant;
	TimestampTz cutoff;
	pg_uuid_t  *payout;
	pg_uuid_t	id;				/* the new settlement */
	Candidate  *cands;
	int			n;
	char	   *currency;		/* NULL when there is nothing to settle */
	int64		gross;
	int64		fees;
	int64		refunds;
	bool		has_payout;
	pg_uuid_t	payout_transfer;	/* the first payout */
} Settlement;

/* PY005 for a payout account that does not exist, even with nothing to pay */
static void
check_payout_account(const pg_uuid_t *payout)
{
	Datum		values[1];

	values[0] = UUIDPGetDatum((pg_uuid_t *) payout);
	if (PlExec(PLAN_ACCOUNT_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("account %s does not exist", PlUuidText(payout))));
	SPI_freetuptable(SPI_tuptable);
}

/*
 * The merchant's payments to settle, locked in id order, with their
 * totals; all in one currency (PY004 otherwise), none paid into the
 * payout account itself (22023).
 */
static void
collect_candidates(Settlement *st)
{
	Datum		values[CANDIDATES_NARGS];

	values[CANDIDATES_MERCHANT] = UUIDPGetDatum(st->merchant);
	values[CANDIDATES_CUTOFF] = TimestampTzGetDatum(st->cutoff);
	if (PlExec(PLAN_SETTLE_CANDIDATES, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "settlement scan failed");
	st->n = SPI_processed;
	st->cands = palloc(sizeof(Candidate) * Max(st->n, 1));
	for (int i = 0; i < st->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Candidate  *c = &st->cands[i];
		bool		isnull;
		char	   *cur = SPI_getvalue(tup, desc, CAND_CURRENCY);
		int64		captured = DatumGetInt64(SPI_getbinval(tup, desc, CAND_CAPTURED, &isnull));
		int64		fee = DatumGetInt64(SPI_getbinval(tup, desc, CAND_FEES, &isnull));
		int64		refunded = DatumGetInt64(SPI_getbinval(tup, desc, CAND_REFUNDED, &isnull));

		if (st->currency == NULL)
			st->currency = cur;
		else if (strcmp(st->currency, cur) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_CURRENCY_MISMATCH),
					 errmsg("the merchant's payments to settle are in more than one currency"),
					 errhint("Settle each currency to a payout account of that currency.")));
		c->id = *DatumGetUUIDP(SPI_getbinval(tup, desc, CAND_ID, &isnull));
		c->merchant_account = *DatumGetUUIDP(SPI_getbinval(tup, desc, CAND_MERCHANT_ACCOUNT,
														   &isnull));
		c->state = SPI_getvalue(tup, desc, CAND_STATE);
		c->customer_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, CAND_CUSTOMER, &isnull));
		c->correlation_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, CAND_CORRELATION, &isnull));
		if (memcmp(c->merchant_account.data, st->payout->data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("payout_account is the merchant account itself"),
					 errdetail("Payment %s is paid into %s.", PlUuidText(&c->id),
							   PlUuidText(st->payout))));
		c->net = captured - fee - refunded;
		if (pg_add_s64_overflow(st->gross, captured, &st->gross) ||
			pg_add_s64_overflow(st->fees, fee, &st->fees) ||
			pg_add_s64_overflow(st->refunds, refunded, &st->refunds))
			overflow();
	}
}

/*
 * Every merchant account and the payout account, in one sorted pass;
 * returns ACCOUNT_FROZEN or ACCOUNT_CLOSED when one of them is.
 */
static const char *
lock_settlement_accounts(Settlement *st)
{
	const char *frozen;
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * (st->n + 1));
	bool	   *credit_only = palloc0(sizeof(bool) * (st->n + 1));
	Relation	accounts = PlOpenAccounts();

	for (int i = 0; i < st->n; i++)
		ids[i] = st->cands[i].merchant_account;
	ids[st->n] = *st->payout;
	/* a payout account with sub-balances is credited on one of them */
	credit_only[st->n] = true;
	frozen = PlStatusDecline(PlLockAccountsFor(accounts, ids, st->n + 1, credit_only));
	table_close(accounts, NoLock);
	pfree(ids);
	pfree(credit_only);
	return frozen;
}

/*
 * A frozen or closed merchant or payout account declines the whole batch:
 * a rejected payout in the transfers and the audit log, nothing settled.
 */
static void
decline_settlement(PlRequest *req, Settlement *st, const char *reason, TimestampTz now)
{
	pg_uuid_t	transfer_id;
	PlAuditEvent ev;
	int64		net = st->gross - st->fees - st->refunds;

	PlUuidV7(&transfer_id);
	PlStoreTransfer(&transfer_id, "payout", reason, st->currency, net,
					&st->cands[0].merchant_account, st->payout, req->key, req->hash,
					PlEmptyJsonb(), now);
	PlAuditMovement(&ev, "TRANSFER_REJECTED", NULL, reason, &transfer_id,
					&st->cands[0].merchant_account, st->payout, net, st->currency, req->key,
					NULL, NULL, now);
	ev.merchant_id = st->merchant;
	PlAuditWrite(&ev);
	PlRequestOutcome(req, &transfer_id, "rejected", reason, now);
}

/* One payout per merchant account of the net it is owed; all or nothing. */
static void
pay_out(Settlement *st, const uint8 *hash)
{
	for (int i = 0; i < st->n; i++)
	{
		int64		account_net = 0;
		bool		first = true;
		pg_uuid_t	transfer_id;
		const char *declined;

		for (int j = 0; j < i; j++)
			if (memcmp(st->cands[j].merchant_account.data, st->cands[i].merchant_account.data,
					   UUID_LEN) == 0)
				first = false;
		if (!first)
			continue;
		for (int j = i; j < st->n; j++)
			if (memcmp(st->cands[j].merchant_account.data, st->cands[i].merchant_account.data,
					   UUID_LEN) == 0 &&
				pg_add_s64_overflow(account_net, st->cands[j].net, &account_net))
				overflow();
		if (account_net <= 0)
			continue;
		PlUuidV7(&transfer_id);
		declined = PlPostTransfer(&transfer_id, "payout", &st->cands[i].merchant_account,
								  st->payout, account_net, st->currency, NULL, hash,
								  settlement_ref(&st->id), &st->id, NULL);
		if (declined != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the payout from merchant account %s was declined: %s",
							PlUuidText(&st->cands[i].merchant_account), declined),
					 errdetail("Nothing was settled.")));
		if (!st->has_payout)
		{
			st->payout_transfer = transfer_id;
			st->has_payout = true;
		}
	}
}

/* parameters of PLAN_PAYMENT_SETTLE, 0-based */
enum
{
	SETTLE_PAYMENT, SETTLE_SETTLEMENT, SETTLE_NARGS
};

/* Every payment becomes settled, with its PAYMENT_SETTLED audit row. */
static void
mark_settled(Settlement *st, const char *key, TimestampTz now)
{
	for (int i = 0; i < st->n; i++)
	{
		Datum		v[SETTLE_NARGS];
		PlAuditEvent ev;

		v[SETTLE_PAYMENT] = UUIDPGetDatum(&st->cands[i].id);
		v[SETTLE_SETTLEMENT] = UUIDPGetDatum(&st->id);
		if (PlExec(PLAN_PAYMENT_SETTLE, v, NULL, 0) != SPI_OK_UPDATE || SPI_processed != 1)
			elog(ERROR, "payment settle failed");
		PlAuditInit(&ev, "PAYMENT_SETTLED", now);
		ev.previous_state = st->cands[i].state;
		ev.new_state = "settled";
		ev.payment_id = &st->cands[i].id;
		ev.correlation_id = &st->cands[i].correlation_id;
		ev.merchant_id = st->merchant;
		ev.customer_id = &st->cands[i].customer_id;
		ev.account_id = &st->cands[i].merchant_account;
		ev.counterparty_account_id = st->payout;
		ev.has_amount = true;
		ev.amount = st->cands[i].net;
		ev.currency = st->currency;
		ev.idempotency_key = key;
		ev.metadata = settlement_ref(&st->id);
		PlAuditWrite(&ev);
	}
}

/* The row of payledger.settlements. */
static void
insert_settlement(Settlement *st)
{
	Datum		values[SETTLEMENT_NARGS];
	char		nulls[SETTLEMENT_NARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[SETTLEMENT_ID] = UUIDPGetDatum(&st->id);
	values[SETTLEMENT_MERCHANT] = UUIDPGetDatum(st->merchant);
	values[SETTLEMENT_CUTOFF] = TimestampTzGetDatum(st->cutoff);
	if (st->currency)
		values[SETTLEMENT_CURRENCY] = CStringGetTextDatum(st->currency);
	else
		nulls[SETTLEMENT_CURRENCY] = 'n';
	values[SETTLEMENT_COUNT] = Int32GetDatum(st->n);
	values[SETTLEMENT_GROSS] = Int64GetDatum(st->gross);
	values[SETTLEMENT_FEES] = Int64GetDatum(st->fees);
	values[SETTLEMENT_REFUNDS] = Int64GetDatum(st->refunds);
	values[SETTLEMENT_NET] = Int64GetDatum(st->gross - st->fees - st->refunds);
	values[SETTLEMENT_PAYOUT_ACCOUNT] = UUIDPGetDatum(st->payout);
	if (st->has_payout)
		values[SETTLEMENT_PAYOUT_TRANSFER] = UUIDPGetDatum(&st->payout_transfer);
	else
		nulls[SETTLEMENT_PAYOUT_TRANSFER] = 'n';
	if (PlExec(PLAN_SETTLEMENT_INSERT, values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "settlement insert failed");
}

/* The work of settle_merchant: its steps, in order. */
static void
settle_work(PlRequest *req)
{
	Settlement *st = req->arg;
	TimestampTz now;
	const char *frozen = NULL;

	check_payout_account(st->payout);
	collect_candidates(st);
	if (st->n > 0)
		frozen = lock_settlement_accounts(st);
	PlUuidV7(&st->id);
	now = GetCurrentTimestamp();
	if (frozen != NULL)
	{
		decline_settlement(req, st, frozen, now);
		return;
	}
	pay_out(st, req->hash);
	mark_settled(st, req->key, now);
	insert_settlement(st);
	PlRequestOutcome(req, &st->id, "posted", NULL, now);
}

/*
 * payledger.settle_merchant(merchant_id uuid, cutoff timestamptz,
 *		payout_account uuid, idempotency_key text) RETURNS uuid
 *
 * A frozen or closed merchant or payout account declines the whole batch
 * (ACCOUNT_FROZEN / ACCOUNT_CLOSED): nothing is settled and the call
 * returns NULL, also when replayed.
 */
PG_FUNCTION_INFO_V1(settle_merchant);
Datum
settle_merchant(PG_FUNCTION_ARGS)
{
	Settlement	st;
	PlHasher   *h;
	PlRequest	req;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	PlRequireArg(fcinfo, 0, "merchant_id");
	PlRequireArg(fcinfo, 1, "cutoff");
	PlRequireArg(fcinfo, 2, "payout_account");
	memset(&st, 0, sizeof(st));
	st.merchant = PG_GETARG_UUID_P(0);
	st.cutoff = PG_GETARG_TIMESTAMPTZ(1);
	st.payout = PG_GETARG_UUID_P(2);
	PlRequireMerchant(st.merchant, "settle");
	PlRequestInit(&req, "settle_merchant", st.merchant,
				  PlKeyArg(fcinfo, 3, "settle_merchant"), settle_work, &st);
	h = PlHashBegin("settle_merchant");
	PlHashInt64(h, st.cutoff);
	PlHashUuid(h, st.payout);
	PlHashEnd(h, req.hash);

	PlRunRequest(&req);
	if (req.reason != NULL)
		PG_RETURN_NULL();
	*result = req.result_id;
	PG_RETURN_UUID_P(result);
}

static int
statement_id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * A statement amount is a whole, non-negative number of cents that fits a
 * bigint, checked here so that a bad line is 22023 naming the line.
 */
static void
check_statement_amount(Numeric amount, int line)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount)));
	char	   *end;
	long long	value;

	errno = 0;
	value = strtoll(text, &end, 10);
	if (*end != '\0' || errno == ERANGE || value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed statement"),
				 errdetail("statement[%d].amount is %s; it must be a whole, non-negative number of cents up to %lld.",
						   line, text, (long long) PG_INT64_MAX)));
}

/*
 * (1) the statement: an array of {"payment_id": uuid, "amount": n}, each
 * payment once, each amount whole and non-negative (22023 naming the line).
 */
static void
check_statement(Jsonb *statement)
{
	int			n;
	pg_uuid_t  *ids;

	if (!JB_ROOT_IS_ARRAY(statement) || JB_ROOT_IS_SCALAR(statement))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("statement must be a JSON array of {\"payment_id\": uuid, \"amount\": n}")));
	n = (int) JB_ROOT_COUNT(statement);
	ids = palloc(Max(n, 1) * sizeof(pg_uuid_t));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&statement->root, i);
		JsonbValue	k;
		JsonbValue *pid;
		JsonbValue *amt;

		if (e == NULL || e->type != jbvBinary || !JsonContainerIsObject(e->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed statement"),
					 errdetail("statement[%d] must be {\"payment_id\": uuid, \"amount\": n}.", i)));
		k.type = jbvString;
		k.val.string.val = "payment_id";
		k.val.string.len = 10;
		pid = findJsonbValueFromContainer(e->val.binary.data, JB_FOBJECT, &k);
		k.val.string.val = "amount";
		k.val.string.len = 6;
		amt = findJsonbValueFromContainer(e->val.binary.data, JB_FOBJECT, &k);
		if (pid == NULL || pid->type != jbvString ||
			!PlParseUuid(pnstrdup(pid->val.string.val, pid->val.string.len), &ids[i]) ||
			amt == NULL || amt->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed statement"),
					 errdetail("statement[%d] must be {\"payment_id\": uuid, \"amount\": n}.", i)));
		check_statement_amount(amt->val.numeric, i);
	}
	qsort(ids, n, sizeof(pg_uuid_t), statement_id_cmp);
	for (int i = 1; i < n; i++)
		if (statement_id_cmp(&ids[i - 1], &ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed statement"),
					 errdetail("Payment %s appears more than once.", PlUuidText(&ids[i]))));
	pfree(ids);
}

/* what reconcile_settlement() says of a payment */
typedef enum ReconcileStatus
{
	RECONCILE_MATCHED, RECONCILE_AMOUNT_MISMATCH, RECONCILE_MISSING_IN_STATEMENT,
	RECONCILE_MISSING_IN_LEDGER, RECONCILE_NSTATUSES
} ReconcileStatus;

static const char *const reconcile_statuses[RECONCILE_NSTATUSES] = {
	[RECONCILE_MATCHED] = "matched",
	[RECONCILE_AMOUNT_MISMATCH] = "amount_mismatch",
	[RECONCILE_MISSING_IN_STATEMENT] = "missing_in_statement",
	[RECONCILE_MISSING_IN_LEDGER] = "missing_in_ledger"
};

/* parameters of PLAN_SETTLEMENT_PAYMENTS, 0-based */
enum
{
	COMPARE_SETTLEMENT, COMPARE_STATEMENT, COMPARE_NARGS
};

/*
 * columns of PLAN_SETTLEMENT_PAYMENTS, 0-based: reconcile_settlement()'s
 * result columns
 */
enum
{
	COMPARED_PAYMENT, COMPARED_LEDGER_AMOUNT, COMPARED_STATEMENT_AMOUNT, COMPARED_STATUS,
	COMPARED_NCOLS
};

/* a reconcile_settlement call */
typedef struct Reconciliation
{
	pg_uuid_t  *settlement;
	Jsonb	   *statement;
	ReturnSetInfo *rsinfo;
	pg_uuid_t	merchant;		/* the settlement's: the key's scope */
	int			counts[RECONCILE_NSTATUSES];
} Reconciliation;

/* the prepare step: PY005 for an unknown settlement, else its merchant */
static void
find_settlement_scope(PlRequest *req)
{
	Reconciliation *rc = req->arg;
	Datum		values[1];
	bool		isnull;

	values[0] = UUIDPGetDatum(rc->settlement);
	if (PlExec(PLAN_SETTLEMENT_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "settlement lookup failed");
	if (SPI_processed > 0)
		rc->merchant = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													1, &isnull));
	/* another merchant's settlement does not exist for a scoped role */
	if (SPI_processed == 0 || !PlMerchantVisible(&rc->merchant))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("settlement %s does not exist", PlUuidText(rc->settlement))));
	SPI_freetuptable(SPI_tuptable);
}

/* The comparison, payment by payment, into the result set, with counts. */
static void
compare_statement(PlRequest *req)
{
	Reconciliation *rc = req->arg;
	Datum		values[COMPARE_NARGS];

	values[COMPARE_SETTLEMENT] = UUIDPGetDatum(rc->settlement);
	values[COMPARE_STATEMENT] = JsonbPGetDatum(rc->statement);
	if (PlExec(PLAN_SETTLEMENT_PAYMENTS, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "reconciliation failed");
	Assert(SPI_tuptable->tupdesc->natts == COMPARED_NCOLS);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		row[COMPARED_NCOLS];
		bool		nulls[COMPARED_NCOLS];
		char	   *status;

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, row, nulls);
		status = TextDatumGetCString(row[COMPARED_STATUS]);
		for (int s = 0; s < RECONCILE_NSTATUSES; s++)
			if (strcmp(status, reconcile_statuses[s]) == 0)
				rc->counts[s]++;
		tuplestore_putvalues(rc->rsinfo->setResult, rc->rsinfo->setDesc, row, nulls);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * The work of a statement not reconciled before: the comparison and one
 * SETTLEMENT_RECONCILED audit event with the counts.
 */
static void
reconcile_work(PlRequest *req)
{
	Reconciliation *rc = req->arg;
	PlAuditEvent ev;
	TimestampTz now;
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	compare_statement(req);
	now = GetCurrentTimestamp();
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int s = 0; s < RECONCILE_NSTATUSES; s++)
	{
		k.type = jbvString;
		k.val.string.val = (char *) reconcile_statuses[s];
		k.val.string.len = strlen(reconcile_statuses[s]);
		pushJsonbValue(&state, WJB_KEY, &k);
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int4_numeric,
															Int32GetDatum(rc->counts[s])));
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	PlAuditInit(&ev, "SETTLEMENT_RECONCILED", now);
	ev.payment_id = rc->settlement;
	ev.correlation_id = rc->settlement;
	ev.merchant_id = &rc->merchant;
	/* a mismatch is a finding of the run, not a decline: success stays true */
	ev.metadata = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	PlAuditWrite(&ev);
	PlRequestOutcome(req, rc->settlement,
					 rc->counts[RECONCILE_AMOUNT_MISMATCH] + rc->counts[RECONCILE_MISSING_IN_STATEMENT] +
					 rc->counts[RECONCILE_MISSING_IN_LEDGER] == 0 ? "matched" : "mismatched",
					 NULL, now);
}

/*
 * payledger.reconcile_settlement(settlement_id uuid, statement jsonb)
 *		RETURNS TABLE(payment_id uuid, ledger_amount bigint,
 *		statement_amount bigint, status text)
 *
 * status: matched, amount_mismatch, missing_in_statement or
 * missing_in_ledger.  The ledger amount is the captured amount minus
 * refunds (gross of splits).  Each distinct statement is recorded once, as
 * a SETTLEMENT_RECONCILED audit event with the counts: the request's key
 * is made of the settlement and the statement's hash, and a replay only
 * compares again.
 */
PG_FUNCTION_INFO_V1(reconcile_settlement);
Datum
reconcile_settlement(PG_FUNCTION_ARGS)
{
	Reconciliation rc;
	PlHasher   *h;
	PlRequest	req;
	char		key[PL_MAX_KEY_LENGTH];
	int			len;

	PlRequireArg(fcinfo, 0, "settlement_id");
	PlRequireArg(fcinfo, 1, "statement");
	memset(&rc, 0, sizeof(rc));
	rc.settlement = PG_GETARG_UUID_P(0);
	rc.statement = PG_GETARG_JSONB_P(1);
	check_statement(rc.statement);
	InitMaterializedSRF(fcinfo, 0);
	rc.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	PlRequestInit(&req, "reconcile_settlement", &rc.merchant, key, reconcile_work, &rc);
	req.prepare = find_settlement_scope;
	req.replay = compare_statement;
	h = PlHashBegin("reconcile_settlement");
	PlHashJsonb(h, rc.statement);
	PlHashEnd(h, req.hash);
	snprintf(key, sizeof(key), "reconcile:%s:", PlUuidText(rc.settlement));
	len = strlen(key);
	for (int i = 0; i < 16 && len + 2 < (int) sizeof(key); i++, len += 2)
		snprintf(key + len, 3, "%02x", req.hash[i]);

	PlRunRequest(&req);
	return (Datum) 0;
}
