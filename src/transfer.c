/*-------------------------------------------------------------------------
 *
 * transfer.c
 *	  transfer(): moving money between two accounts.
 *
 * Design note: locking.
 *
 * A transfer locks both account rows FOR NO KEY UPDATE, the lower id
 * first, so every transfer takes its locks in ascending id order; two
 * transfers over the same pair, in either direction, queue on the lower id
 * and can never hold one lock each while waiting for the other.  The
 * idempotency key is locked before the accounts, in every call, so keys add
 * no cycle either.  Under READ COMMITTED the lock returns the newest
 * committed version of the row, so the floor check that follows sees every
 * earlier transfer and no update is lost; under REPEATABLE READ or
 * SERIALIZABLE a concurrent change raises a serialization failure for the
 * client to retry.  FOR NO KEY UPDATE leaves foreign-key share locks free.
 *
 * The hot path runs no SQL: rows are found by index probes, locked with
 * table_tuple_lock(), updated in place (HOT) and inserted directly
 * (direct.c).
 *
 * Order of checks (API.md section 1): arguments (22004, 22023, PY006),
 * PY008, the idempotency key (replay or PY002), unknown accounts (PY005),
 * currency (PY004), then business declines, which are returned with
 * status 'rejected', stored and audited, never raised.
 *
 * Writes of a posted transfer: the idempotency record, both balances,
 * both entries, the transfer row and the audit row.
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
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"

static char *
uuid_text(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/*
 * Locks both accounts in ascending id order (see the design note) and reads
 * their newest versions.  Raises PY005 naming the first unknown argument.
 */
static void
lock_pair(Relation rel, pg_uuid_t *from_id, pg_uuid_t *to_id,
		  PlAccountRow *from, PlAccountRow *to)
{
	bool		from_first = memcmp(from_id->data, to_id->data, UUID_LEN) < 0;
	bool		found_from,
				found_to;

	if (from_first)
	{
		found_from = PlLockAccountRow(rel, from_id, from);
		found_to = PlLockAccountRow(rel, to_id, to);
	}
	else
	{
		found_to = PlLockAccountRow(rel, to_id, to);
		found_from = PlLockAccountRow(rel, from_id, from);
	}
	if (!found_from || !found_to)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("account %s does not exist",
						uuid_text(found_from ? to_id : from_id))));
}

/*
 * Why a debit of amount from src to dst is declined, or NULL.  Raises
 * 22003 when the credit would overflow the destination's balance.
 */
static const char *
decline_reason(const PlAccountRow *src, const PlAccountRow *dst, int64 amount)
{
	int64		after;

	if (src->status[0] == 'c' || dst->status[0] == 'c')
		return "ACCOUNT_CLOSED";
	if (src->status[0] == 'f' || dst->status[0] == 'f')
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
 * Moves the balances of both locked accounts and writes one entry for each,
 * with the balance and account version after it.
 */
static void
apply_postings(Relation accounts, pg_uuid_t *id, PlAccountRow *from,
			   PlAccountRow *to, int64 amount, TimestampTz now)
{
	PlAccountRow *rows[2] = {from, to};
	int64		deltas[2] = {-amount, amount};
	Relation	rel = PlOpenTable("entries");

	if (RelationGetDescr(rel)->natts != PL_NATTS_ENTRIES)
		elog(ERROR, "payledger.entries does not have the expected columns");
	from->balance -= amount;
	to->balance += amount;
	for (int i = 0; i < 2; i++)
	{
		Datum		ev[PL_NATTS_ENTRIES];
		bool		en[PL_NATTS_ENTRIES] = {false};

		PlUpdateAccountRow(accounts, rows[i], now);
		ev[0] = UUIDPGetDatum(&rows[i]->id);
		ev[1] = Int64GetDatum(rows[i]->version);
		ev[2] = UUIDPGetDatum(id);
		ev[3] = Int64GetDatum(deltas[i]);
		ev[4] = Int64GetDatum(rows[i]->balance);
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
	PlAccountRow acc[2];
	Relation	accounts;
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

	/*
	 * Make what earlier calls in this same statement wrote visible, as SPI
	 * would before a query: e.g. two transfers with one key in one SELECT.
	 */
	CommandCounterIncrement();

	/* (3) a retry replays */
	if (key != NULL &&
		PlIdemBegin(NULL, "transfer", key, request_hash, wanted_id, &stored))
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
			if (key != NULL)
				PlIdemRecord(NULL, "transfer", key, request_hash, wanted_id,
							 status, rc, GetCurrentTimestamp());
			PlSpiEnd(&priv);
			return PlTransferResult(fcinfo, wanted_id, status, rc, true);
		}
		id = *wanted_id;
	}
	else
		PlUuidV7(&id);

	/* (4) unknown accounts, in a fixed lock order */
	accounts = PlOpenTable("accounts");
	if (RelationGetDescr(accounts)->natts != PL_NATTS_ACCOUNTS)
		elog(ERROR, "payledger.accounts does not have the expected columns");
	lock_pair(accounts, from_id, to_id, &acc[0], &acc[1]);

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

	if (key != NULL)
		PlIdemRecord(NULL, "transfer", key, request_hash, &id,
					 reason ? "rejected" : "posted", reason, now);

	hash = palloc(VARHDRSZ + PL_SHA256_LEN);
	SET_VARSIZE(hash, VARHDRSZ + PL_SHA256_LEN);
	memcpy(VARDATA(hash), request_hash, PL_SHA256_LEN);

	if (reason == NULL)
		apply_postings(accounts, &id, &acc[0], &acc[1], amount, now);
	table_close(accounts, NoLock);
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
