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
#include "ledger.h"

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
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "settlement_id";
	k.val.string.len = strlen(k.val.string.val);
	pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = PlUuidText(id);
	v.val.string.len = strlen(v.val.string.val);
	pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

static void
overflow(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("settlement totals would overflow bigint")));
}

/*
 * payledger.settle_merchant(merchant_id uuid, cutoff timestamptz,
 *		payout_account uuid, idempotency_key text) RETURNS uuid
 */
PG_FUNCTION_INFO_V1(settle_merchant);
Datum
settle_merchant(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *merchant;
	TimestampTz cutoff;
	pg_uuid_t  *payout;
	char	   *key = NULL;
	uint8		hash[PL_SHA256_LEN];
	PlHasher   *h;
	PlPrivState priv;
	PlIdemResult stored;
	pg_uuid_t  *settlement = palloc(sizeof(pg_uuid_t));
	Candidate  *cands;
	int			n;
	char	   *currency = NULL;
	int64		gross = 0,
				fees = 0,
				refunds = 0,
				net = 0;
	pg_uuid_t	payout_transfer;
	bool		has_payout = false;
	TimestampTz now;
	Datum		values[11];
	char		nulls[11] = "           ";

	PlRequireArg(fcinfo, 0, "merchant_id");
	PlRequireArg(fcinfo, 1, "cutoff");
	PlRequireArg(fcinfo, 2, "payout_account");
	merchant = PG_GETARG_UUID_P(0);
	cutoff = PG_GETARG_TIMESTAMPTZ(1);
	payout = PG_GETARG_UUID_P(2);
	key = PlKeyArg(fcinfo, 3, "settle_merchant");
	h = PlHashBegin("settle_merchant");
	PlHashInt64(h, cutoff);
	PlHashUuid(h, payout);
	PlHashEnd(h, hash);

	PlSpiBegin(&priv);
	CommandCounterIncrement();
	if (key != NULL && PlIdemBegin(merchant, "settle_merchant", key, hash, NULL, &stored))
	{
		PlSpiEnd(&priv);
		*settlement = stored.result_id;
		PG_RETURN_UUID_P(settlement);
	}

	/* the payout account must exist even when there is nothing to pay */
	values[0] = UUIDPGetDatum(payout);
	if (PlExec(PLAN_ACCOUNT_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("account %s does not exist", PlUuidText(payout))));

	values[0] = UUIDPGetDatum(merchant);
	values[1] = TimestampTzGetDatum(cutoff);
	if (PlExec(PLAN_SETTLE_CANDIDATES, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "settlement scan failed");
	n = SPI_processed;
	cands = palloc(sizeof(Candidate) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *cur = SPI_getvalue(tup, desc, 3);
		int64		captured = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		int64		fee = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		int64		refunded = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));

		if (currency == NULL)
			currency = MemoryContextStrdup(TopTransactionContext, cur);
		else if (strcmp(currency, cur) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_CURRENCY_MISMATCH),
					 errmsg("the merchant's payments to settle are in more than one currency"),
					 errhint("Settle each currency to a payout account of that currency.")));
		cands[i].id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		cands[i].merchant_account = *DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
		cands[i].state = MemoryContextStrdup(TopTransactionContext, SPI_getvalue(tup, desc, 7));
		cands[i].customer_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 8, &isnull));
		cands[i].correlation_id = *DatumGetUUIDP(SPI_getbinval(tup, desc, 9, &isnull));
		if (memcmp(cands[i].merchant_account.data, payout->data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("payout_account is the merchant account itself"),
					 errdetail("Payment %s is paid into %s.", PlUuidText(&cands[i].id),
							   PlUuidText(payout))));
		cands[i].net = captured - fee - refunded;
		if (pg_add_s64_overflow(gross, captured, &gross) ||
			pg_add_s64_overflow(fees, fee, &fees) ||
			pg_add_s64_overflow(refunds, refunded, &refunds))
			overflow();
	}
	net = gross - fees - refunds;

	/* every merchant account and the payout account, in one sorted pass */
	if (n > 0)
	{
		pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * (n + 1));
		Relation	accounts = PlOpenAccounts();

		for (int i = 0; i < n; i++)
			ids[i] = cands[i].merchant_account;
		ids[n] = *payout;
		(void) PlLockAccounts(accounts, ids, n + 1);
		table_close(accounts, NoLock);
	}
	PlUuidV7(settlement);
	now = GetCurrentTimestamp();

	/* one payout per merchant account, all or nothing */
	for (int i = 0; i < n; i++)
	{
		int64		account_net = 0;
		bool		first = true;
		pg_uuid_t	transfer_id;
		const char *declined;

		for (int j = 0; j < i; j++)
			if (memcmp(cands[j].merchant_account.data, cands[i].merchant_account.data, UUID_LEN) == 0)
				first = false;
		if (!first)
			continue;
		for (int j = i; j < n; j++)
			if (memcmp(cands[j].merchant_account.data, cands[i].merchant_account.data, UUID_LEN) == 0 &&
				pg_add_s64_overflow(account_net, cands[j].net, &account_net))
				overflow();
		if (account_net <= 0)
			continue;
		PlUuidV7(&transfer_id);
		declined = PlPostTransfer(&transfer_id, "payout", &cands[i].merchant_account, payout,
								  account_net, currency, NULL, hash, settlement_ref(settlement),
								  settlement, NULL);
		if (declined != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the payout from merchant account %s was declined: %s",
							PlUuidText(&cands[i].merchant_account), declined),
					 errdetail("Nothing was settled.")));
		if (!has_payout)
		{
			payout_transfer = transfer_id;
			has_payout = true;
		}
	}

	for (int i = 0; i < n; i++)
	{
		Datum		v[2];
		PlAuditEvent ev;

		v[0] = UUIDPGetDatum(&cands[i].id);
		v[1] = UUIDPGetDatum(settlement);
		if (PlExec(PLAN_PAYMENT_SETTLE, v, NULL, 0) != SPI_OK_UPDATE || SPI_processed != 1)
			elog(ERROR, "payment settle failed");
		PlAuditInit(&ev, "PAYMENT_SETTLED", now);
		ev.previous_state = cands[i].state;
		ev.new_state = "settled";
		ev.payment_id = &cands[i].id;
		ev.correlation_id = &cands[i].correlation_id;
		ev.merchant_id = merchant;
		ev.customer_id = &cands[i].customer_id;
		ev.account_id = &cands[i].merchant_account;
		ev.counterparty_account_id = payout;
		ev.has_amount = true;
		ev.amount = cands[i].net;
		ev.currency = currency;
		ev.idempotency_key = key;
		ev.metadata = settlement_ref(settlement);
		PlAuditWrite(&ev);
	}

	values[0] = UUIDPGetDatum(settlement);
	values[1] = UUIDPGetDatum(merchant);
	values[2] = TimestampTzGetDatum(cutoff);
	if (currency)
		values[3] = CStringGetTextDatum(currency);
	else
		nulls[3] = 'n';
	values[4] = Int32GetDatum(n);
	values[5] = Int64GetDatum(gross);
	values[6] = Int64GetDatum(fees);
	values[7] = Int64GetDatum(refunds);
	values[8] = Int64GetDatum(net);
	values[9] = UUIDPGetDatum(payout);
	if (has_payout)
		values[10] = UUIDPGetDatum(&payout_transfer);
	else
		nulls[10] = 'n';
	if (PlExec(PLAN_SETTLEMENT_INSERT, values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "settlement insert failed");
	if (key != NULL)
		PlIdemRecord(merchant, "settle_merchant", key, hash, settlement, "posted", NULL, now);
	PlSpiEnd(&priv);
	PG_RETURN_UUID_P(settlement);
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
 * payledger.reconcile_settlement(settlement_id uuid, statement jsonb)
 *		RETURNS TABLE(payment_id uuid, ledger_amount bigint,
 *		statement_amount bigint, status text)
 *
 * status: matched, amount_mismatch, missing_in_statement or
 * missing_in_ledger.  The ledger amount is the captured amount minus
 * refunds (gross of splits).  Each distinct statement is recorded once, as
 * a SETTLEMENT_RECONCILED audit event with the counts.
 */
PG_FUNCTION_INFO_V1(reconcile_settlement);
Datum
reconcile_settlement(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pg_uuid_t  *settlement;
	Jsonb	   *statement;
	PlPrivState priv;
	Datum		values[2];
	pg_uuid_t	merchant;
	bool		isnull;
	int			counts[4] = {0, 0, 0, 0};
	static const char *const statuses[4] = {"matched", "amount_mismatch",
	"missing_in_statement", "missing_in_ledger"};
	uint8		hash[PL_SHA256_LEN];
	PlHasher   *h;
	PlIdemResult stored;
	char		key[PL_MAX_KEY_LENGTH];
	int			n;
	pg_uuid_t  *ids;

	PlRequireArg(fcinfo, 0, "settlement_id");
	PlRequireArg(fcinfo, 1, "statement");
	settlement = PG_GETARG_UUID_P(0);
	statement = PG_GETARG_JSONB_P(1);
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
		pg_uuid_t	u;

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
			!PlParseUuid(pnstrdup(pid->val.string.val, pid->val.string.len), &u) ||
			amt == NULL || amt->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed statement"),
					 errdetail("statement[%d] must be {\"payment_id\": uuid, \"amount\": n}.", i)));
		check_statement_amount(amt->val.numeric, i);
		ids[i] = u;
	}
	qsort(ids, n, sizeof(pg_uuid_t), statement_id_cmp);
	for (int i = 1; i < n; i++)
		if (statement_id_cmp(&ids[i - 1], &ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed statement"),
					 errdetail("Payment %s appears more than once.", PlUuidText(&ids[i]))));
	InitMaterializedSRF(fcinfo, 0);

	PlSpiBegin(&priv);
	CommandCounterIncrement();
	values[0] = UUIDPGetDatum(settlement);
	if (PlExec(PLAN_SETTLEMENT_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "settlement lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("settlement %s does not exist", PlUuidText(settlement))));
	merchant = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	values[1] = JsonbPGetDatum(statement);
	if (PlExec(PLAN_SETTLEMENT_PAYMENTS, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "reconciliation failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		row[4];
		bool		nulls[4];
		char	   *status;

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, row, nulls);
		status = TextDatumGetCString(row[3]);
		for (int s = 0; s < 4; s++)
			if (strcmp(status, statuses[s]) == 0)
				counts[s]++;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}

	/* record each distinct statement once */
	h = PlHashBegin("reconcile_settlement");
	PlHashJsonb(h, statement);
	PlHashEnd(h, hash);
	snprintf(key, sizeof(key), "reconcile:%s:", PlUuidText(settlement));
	{
		int			len = strlen(key);

		for (int i = 0; i < 16 && len + 2 < (int) sizeof(key); i++, len += 2)
			snprintf(key + len, 3, "%02x", hash[i]);
	}
	if (!PlIdemBegin(&merchant, "reconcile_settlement", key, hash, NULL, &stored))
	{
		PlAuditEvent ev;
		TimestampTz now = GetCurrentTimestamp();
		JsonbParseState *state = NULL;
		JsonbValue	k,
					v;

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (int s = 0; s < 4; s++)
		{
			k.type = jbvString;
			k.val.string.val = (char *) statuses[s];
			k.val.string.len = strlen(statuses[s]);
			pushJsonbValue(&state, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int4_numeric, Int32GetDatum(counts[s])));
			pushJsonbValue(&state, WJB_VALUE, &v);
		}
		PlAuditInit(&ev, "SETTLEMENT_RECONCILED", now);
		ev.payment_id = settlement;
		ev.correlation_id = settlement;
		ev.merchant_id = &merchant;
		/* a mismatch is a finding of the run, not a decline: success stays true */
		ev.metadata = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
		PlAuditWrite(&ev);
		PlIdemRecord(&merchant, "reconcile_settlement", key, hash, settlement,
					 counts[1] + counts[2] + counts[3] == 0 ? "matched" : "mismatched",
					 NULL, now);
	}
	PlSpiEnd(&priv);
	return (Datum) 0;
}
