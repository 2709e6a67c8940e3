/*-------------------------------------------------------------------------
 *
 * transfer.c
 *	  transfer(): moving money between two accounts.
 *
 * Design note: locking.
 *
 * A transfer locks both account rows with one SELECT ... ORDER BY id FOR NO
 * KEY UPDATE.  LockRows runs above the sort, so every transfer takes its
 * locks in ascending id order; two transfers over the same pair, in either
 * direction, queue on the lower id and can never hold one lock each while
 * waiting for the other.  Under READ COMMITTED the lock returns the newest
 * committed balance (EvalPlanQual), so the floor check that follows sees
 * every earlier transfer and no update is lost; under REPEATABLE READ or
 * SERIALIZABLE a concurrent change raises a serialization failure for the
 * client to retry.  FOR NO KEY UPDATE leaves foreign-key share locks free.
 *
 * Order of checks (API.md section 1): arguments (22004, 22023, PY006),
 * PY008, the idempotency key (replay or PY002), unknown accounts (PY005),
 * currency (PY004), then business declines, which are returned with
 * status 'rejected', stored and audited, never raised.
 *
 * Writes of a posted transfer: both balances, both entries and the
 * transfer row in one statement, then the idempotency claim and the audit
 * row.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/transfer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"

typedef struct LockedAccount
{
	pg_uuid_t	id;
	char		currency[4];
	char		status;			/* 'a'ctive, 'f'rozen, 'c'losed */
	bool		has_floor;
	int64		min_balance;
	int64		balance;
	int64		pending_debits;
} LockedAccount;

static char *
uuid_text(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/*
 * Locks the given accounts in id order and reads them.  Raises PY005 for an
 * id that does not exist.  out[i] corresponds to ids[i].
 */
static void
lock_accounts(pg_uuid_t *ids, int n, LockedAccount *out)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	ArrayType  *arr;
	Datum		values[1];
	bool	   *seen = palloc0(sizeof(bool) * n);

	for (int i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&ids[i]);
	arr = construct_array(elems, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
	values[0] = PointerGetDatum(arr);

	if (PlExec(PLAN_ACCOUNTS_LOCK_MANY, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "account lock failed");

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));

		for (int i = 0; i < n; i++)
		{
			LockedAccount *a = &out[i];
			text	   *cur;
			text	   *st;

			if (memcmp(ids[i].data, id->data, UUID_LEN) != 0)
				continue;
			seen[i] = true;
			a->id = ids[i];
			cur = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
			memset(a->currency, 0, sizeof(a->currency));
			memcpy(a->currency, VARDATA_ANY(cur), Min(3, VARSIZE_ANY_EXHDR(cur)));
			st = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));
			a->status = *VARDATA_ANY(st);
			a->min_balance = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
			a->has_floor = !isnull;
			a->balance = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
			a->pending_debits = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		}
	}
	for (int i = 0; i < n; i++)
		if (!seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
					 errmsg("account %s does not exist", uuid_text(&ids[i]))));
}

/*
 * Why a debit of amount from src to dst is declined, or NULL.  Raises
 * 22003 when the credit would overflow the destination's balance.
 */
static const char *
decline_reason(const LockedAccount *src, const LockedAccount *dst, int64 amount)
{
	int64		after;

	if (src->status == 'c' || dst->status == 'c')
		return "ACCOUNT_CLOSED";
	if (src->status == 'f' || dst->status == 'f')
		return "ACCOUNT_FROZEN";
	if (pg_add_s64_overflow(dst->balance, amount, &after))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint", uuid_text(&dst->id))));
	if (src->has_floor)
	{
		int64		available;

		if (pg_sub_s64_overflow(src->balance, src->pending_debits, &available) ||
			pg_sub_s64_overflow(available, amount, &after) ||
			after < src->min_balance)
			return "INSUFFICIENT_FUNDS";
	}
	else if (pg_sub_s64_overflow(src->balance, amount, &after))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint", uuid_text(&src->id))));
	return NULL;
}

/*
 * Moves the balances of both (already locked) accounts and writes one entry
 * for each, with the balance and account version after it.
 */
static void
apply_postings(pg_uuid_t *id, pg_uuid_t *from_id, pg_uuid_t *to_id,
			   int64 amount, TimestampTz now)
{
	Datum		values[5];
	Relation	rel;

	values[0] = UUIDPGetDatum(from_id);
	values[1] = Int64GetDatum(-amount);
	values[2] = UUIDPGetDatum(to_id);
	values[3] = Int64GetDatum(amount);
	values[4] = TimestampTzGetDatum(now);
	if (PlExec(PLAN_ACCOUNTS_APPLY2, values, NULL, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 2)
		elog(ERROR, "account update failed");

	rel = PlOpenTable("entries");
	if (RelationGetDescr(rel)->natts != PL_NATTS_ENTRIES)
		elog(ERROR, "payledger.entries does not have the expected columns");
	for (int i = 0; i < 2; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *acct = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		Datum		ev[PL_NATTS_ENTRIES];
		bool		en[PL_NATTS_ENTRIES] = {false};

		ev[0] = UUIDPGetDatum(acct);
		ev[1] = SPI_getbinval(tup, desc, 3, &isnull);
		ev[2] = UUIDPGetDatum(id);
		ev[3] = Int64GetDatum(memcmp(acct->data, from_id->data, UUID_LEN) == 0 ? -amount : amount);
		ev[4] = SPI_getbinval(tup, desc, 2, &isnull);
		ev[5] = TimestampTzGetDatum(now);
		PlDirectInsert(rel, ev, en);
	}
	table_close(rel, NoLock);
}

/* Records the transfer, posted (reason NULL) or rejected. */
static void
store_transfer(pg_uuid_t *id, const char *kind, const char *reason,
			   const char *currency, int64 amount, pg_uuid_t *from_id,
			   pg_uuid_t *to_id, const char *key, bytea *hash, Jsonb *metadata,
			   TimestampTz now)
{
	Datum		values[PL_NATTS_TRANSFERS];
	bool		nulls[PL_NATTS_TRANSFERS] = {false};
	Relation	rel = PlOpenTable("transfers");

	if (RelationGetDescr(rel)->natts != PL_NATTS_TRANSFERS)
		elog(ERROR, "payledger.transfers does not have the expected columns");
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(reason ? "rejected" : "posted");
	if (reason)
		values[3] = CStringGetTextDatum(reason);
	else
		nulls[3] = true;
	values[4] = CStringGetTextDatum(currency);
	values[5] = Int64GetDatum(amount);
	values[6] = UUIDPGetDatum(from_id);
	values[7] = UUIDPGetDatum(to_id);
	if (key)
		values[8] = CStringGetTextDatum(key);
	else
		nulls[8] = true;
	values[9] = PointerGetDatum(hash);
	values[10] = JsonbPGetDatum(metadata);
	values[11] = TimestampTzGetDatum(now);
	PlDirectInsert(rel, values, nulls);
	table_close(rel, NoLock);
}

/*
 * payledger.transfer(from_account uuid, to_account uuid, amount bigint,
 *		currency text, idempotency_key text DEFAULT NULL,
 *		metadata jsonb DEFAULT '{}', transfer_id uuid DEFAULT NULL)
 *		RETURNS payledger.transfer_result
 *
 * Posts amount from one account to the other, or declines it with a
 * reason code; either way the outcome is stored, audited and, with a key or
 * a caller-supplied transfer_id, replayed on retry.
 */
PG_FUNCTION_INFO_V1(transfer);
Datum
transfer(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *from_id;
	pg_uuid_t  *to_id;
	int64		amount;
	char	   *currency;
	char	   *key = NULL;
	Jsonb	   *metadata;
	pg_uuid_t  *wanted_id = NULL;
	pg_uuid_t	id;
	uint8		request_hash[PL_SHA256_LEN];
	PlHasher   *h;
	PlPrivState priv;
	PlIdemResult stored;
	pg_uuid_t	ids[2];
	LockedAccount acc[2];
	const char *reason;
	TimestampTz now;
	Datum		values[1];
	bytea	   *hash;

	/* (1) the arguments themselves */
	PlRequireArg(fcinfo, 0, "from_account");
	PlRequireArg(fcinfo, 1, "to_account");
	PlRequireArg(fcinfo, 2, "amount");
	PlRequireArg(fcinfo, 3, "currency");
	from_id = PG_GETARG_UUID_P(0);
	to_id = PG_GETARG_UUID_P(1);
	amount = PG_GETARG_INT64(2);
	currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	metadata = PG_ARGISNULL(5) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(5);
	if (!PG_ARGISNULL(6))
		wanted_id = PG_GETARG_UUID_P(6);

	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("amount must be positive"),
				 errdetail("The amount was " INT64_FORMAT ".", amount)));
	PlCheckCurrency(currency);
	if (memcmp(from_id->data, to_id->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_account and to_account must differ")));
	PlRejectPanInJsonb("transfer metadata", metadata);
	if (!PG_ARGISNULL(4))
	{
		key = text_to_cstring(PG_GETARG_TEXT_PP(4));
		PlCheckKey(key);
	}

	/* (2) a key is required, unless the caller's own transfer_id serves */
	if (key == NULL && wanted_id == NULL && pl_require_idempotency_key)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REQUIRED),
				 errmsg("transfer requires an idempotency key"),
				 errhint("Pass idempotency_key (or transfer_id), or turn payledger.require_idempotency_key off.")));

	h = PlHashBegin("transfer");
	PlHashUuid(h, from_id);
	PlHashUuid(h, to_id);
	PlHashInt64(h, amount);
	PlHashText(h, currency);
	PlHashJsonb(h, metadata);
	PlHashEnd(h, request_hash);

	PlSpiBegin(&priv);

	/* (3) a retry replays */
	if (key != NULL &&
		PlIdemLookup(NULL, "transfer", key, request_hash, wanted_id, &stored))
	{
		PlSpiEnd(&priv);
		return PlTransferResult(fcinfo, &stored.result_id, stored.status,
								stored.reason_code, true);
	}
	if (wanted_id != NULL)
	{
		values[0] = UUIDPGetDatum(wanted_id);
		if (PlExec(PLAN_TRANSFER_GET, values, NULL, 1) != SPI_OK_SELECT)
			elog(ERROR, "transfer lookup failed");
		if (SPI_processed == 1)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			bytea	   *old = DatumGetByteaPP(SPI_getbinval(tup, desc, 1, &isnull));
			char	   *status;
			char	   *rc;

			if (VARSIZE_ANY_EXHDR(old) != PL_SHA256_LEN ||
				memcmp(VARDATA_ANY(old), request_hash, PL_SHA256_LEN) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
						 errmsg("transfer %s already exists with different parameters",
								uuid_text(wanted_id)),
						 errhint("A caller-supplied transfer_id is unique forever.")));
			status = MemoryContextStrdup(TopTransactionContext, SPI_getvalue(tup, desc, 2));
			rc = SPI_getvalue(tup, desc, 3);
			if (rc)
				rc = MemoryContextStrdup(TopTransactionContext, rc);
			/* a retry with a key the first call did not carry: remember it */
			if (key != NULL &&
				!PlIdemClaim(NULL, "transfer", key, request_hash, wanted_id, wanted_id,
							 status, rc, GetCurrentTimestamp(), &stored))
			{
				PlSpiEnd(&priv);
				return PlTransferResult(fcinfo, &stored.result_id, stored.status,
										stored.reason_code, true);
			}
			PlSpiEnd(&priv);
			return PlTransferResult(fcinfo, wanted_id, status, rc, true);
		}
		id = *wanted_id;
	}
	else
		PlUuidV7(&id);

	/* (4) unknown accounts, in a fixed lock order */
	ids[0] = *from_id;
	ids[1] = *to_id;
	lock_accounts(ids, 2, acc);

	/* (5) currency */
	for (int i = 0; i < 2; i++)
		if (strcmp(acc[i].currency, currency) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_CURRENCY_MISMATCH),
					 errmsg("account %s holds %s, not %s",
							uuid_text(&acc[i].id), acc[i].currency, currency)));

	/* (8) business declines */
	reason = decline_reason(&acc[0], &acc[1], amount);
	now = GetCurrentTimestamp();

	if (key != NULL &&
		!PlIdemClaim(NULL, "transfer", key, request_hash, &id, wanted_id,
					 reason ? "rejected" : "posted", reason, now, &stored))
	{
		/* a concurrent call with this key committed first: replay it */
		PlSpiEnd(&priv);
		return PlTransferResult(fcinfo, &stored.result_id, stored.status,
								stored.reason_code, true);
	}

	hash = palloc(VARHDRSZ + PL_SHA256_LEN);
	SET_VARSIZE(hash, VARHDRSZ + PL_SHA256_LEN);
	memcpy(VARDATA(hash), request_hash, PL_SHA256_LEN);

	if (reason == NULL)
		apply_postings(&id, from_id, to_id, amount, now);
	store_transfer(&id, "transfer", reason, currency, amount, from_id, to_id,
				   key, hash, metadata, now);

	{
		PlAuditEvent ev;

		PlAuditInit(&ev, reason ? "TRANSFER_REJECTED" : "TRANSFER_POSTED", now);
		ev.new_state = reason ? "rejected" : "posted";
		ev.success = (reason == NULL);
		ev.reason_code = reason;
		if (reason)
			ev.event_id = &id;
		ev.payment_id = &id;
		ev.correlation_id = &id;
		ev.account_id = from_id;
		ev.counterparty_account_id = to_id;
		ev.idempotency_key = key;
		ev.has_amount = true;
		ev.amount = amount;
		ev.currency = currency;
		ev.metadata = metadata;
		PlAuditWrite(&ev);
	}

	PlSpiEnd(&priv);
	return PlTransferResult(fcinfo, &id, reason ? "rejected" : "posted", reason, false);
}
