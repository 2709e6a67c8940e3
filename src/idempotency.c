/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Idempotency keys: a retry never moves money twice.
 *
 * A keyed call first takes a transaction-scoped lock on a hash of its key
 * (in a lock space of payledger's own), then looks the key up with a fresh
 * snapshot: a replay costs one lock and one index probe and moves nothing.
 * A new key's row is inserted with the call's final result, in the same
 * transaction as the work.  A concurrent call with the same key blocks on
 * the lock until the first transaction ends: if it committed, the waiter
 * finds its row and replays the stored result; if it rolled back, the
 * waiter finds nothing and does the work.  The key lock is always taken
 * before any account lock, so keys add no cycle to the lock order.
 *
 * The parameters of a call are summarized by a SHA-256 over a length-
 * prefixed encoding of the operation and every argument; the same key with
 * another hash, another operation or another caller-supplied id is PY002.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/idempotency.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "payledger.h"
#include "pii.h"
#include "spi_plans.h"
#include "direct.h"
#include "idempotency.h"
#include "metrics.h"

static pg_uuid_t ledger_scope;	/* all zeroes: the scope of ledger functions */

struct PlHasher
{
	StringInfoData buf;
};

PlHasher *
PlHashBegin(const char *operation)
{
	PlHasher   *h = palloc(sizeof(PlHasher));

	initStringInfo(&h->buf);
	PlHashText(h, operation);
	return h;
}

void
PlHashText(PlHasher *h, const char *s)
{
	if (s == NULL)
	{
		appendStringInfoString(&h->buf, "N;");
		return;
	}
	appendStringInfo(&h->buf, "%zu:", strlen(s));
	appendStringInfoString(&h->buf, s);
	appendStringInfoChar(&h->buf, ';');
}

void
PlHashInt64(PlHasher *h, int64 v)
{
	appendStringInfo(&h->buf, "i" INT64_FORMAT ";", v);
}

void
PlHashUuid(PlHasher *h, const pg_uuid_t *u)
{
	if (u == NULL)
		appendStringInfoString(&h->buf, "N;");
	else
	{
		appendStringInfoChar(&h->buf, 'u');
		appendBinaryStringInfo(&h->buf, (const char *) u->data, UUID_LEN);
		appendStringInfoChar(&h->buf, ';');
	}
}

/* by its fields, so that IntervalStyle does not change the hash */
void
PlHashInterval(PlHasher *h, const Interval *iv)
{
	appendStringInfo(&h->buf, "v%d/%d/" INT64_FORMAT ";", iv->month, iv->day, iv->time);
}

void
PlHashJsonb(PlHasher *h, Jsonb *jb)
{
	/* jsonb is stored canonically: equal documents print equal */
	PlHashText(h, jb ? JsonbToCString(NULL, &jb->root, VARSIZE(jb)) : NULL);
}

void
PlHashEnd(PlHasher *h, uint8 *out)
{
	PlSha256(h->buf.data, h->buf.len, out);
	pfree(h->buf.data);
	pfree(h);
}

static char *
text_attr(HeapTuple tup, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attno, desc, &isnull);

	return isnull ? NULL : MemoryContextStrdup(TopTransactionContext,
											   TextDatumGetCString(d));
}

/* Checks a stored idempotency row against this request and reads it. */
static void
read_stored(HeapTuple tup, TupleDesc desc, const char *operation,
			const char *key, const uint8 *request_hash,
			const pg_uuid_t *wanted_id, PlIdemResult *result)
{
	bool		isnull;
	char	   *stored_op = text_attr(tup, desc, 3);
	bytea	   *stored_hash = DatumGetByteaPP(heap_getattr(tup, 4, desc, &isnull));
	pg_uuid_t  *stored_id = DatumGetUUIDP(heap_getattr(tup, 5, desc, &isnull));

	if (strcmp(stored_op, operation) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("idempotency key \"%s\" was already used for another operation", key),
				 errdetail("The key was first used by %s(); this call is %s().",
						   stored_op, operation),
				 errhint("Use a new key for every distinct request.")));
	if (VARSIZE_ANY_EXHDR(stored_hash) != PL_SHA256_LEN ||
		memcmp(VARDATA_ANY(stored_hash), request_hash, PL_SHA256_LEN) != 0 ||
		(wanted_id != NULL && memcmp(wanted_id->data, stored_id->data, UUID_LEN) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("idempotency key \"%s\" was already used with different parameters", key),
				 errdetail("A retry must repeat the first call's arguments exactly."),
				 errhint("Use a new key for every distinct request.")));

	result->found = true;
	memcpy(result->result_id.data, stored_id->data, UUID_LEN);
	result->status = text_attr(tup, desc, 6);
	result->reason_code = text_attr(tup, desc, 7);
}

/*
 * Starts a keyed call: locks the key for the rest of the transaction, then
 * looks it up with a fresh snapshot.  Returns true, with the stored result,
 * when the key was used before with the same parameters; raises PY002 when
 * it was used otherwise; returns false for a new key, which the caller
 * records with PlIdemRecord() once it knows its outcome.  The caller has
 * switched to the ledger's owner.
 */
bool
PlIdemBegin(const pg_uuid_t *scope, const char *operation, const char *key,
			const uint8 *request_hash, const pg_uuid_t *wanted_id,
			PlIdemResult *result)
{
	Relation	rel = PlOpenTable("idempotency_keys");
	TupleDesc	desc;
	HeapTuple	tup;

	if (scope == NULL)
		scope = &ledger_scope;
	result->found = false;

	/* wait for any call holding this key; then its row is visible or gone */
	PlLockIdemKey(scope, key);
	tup = PlIdemFetchLatest(rel, scope, key, &desc);
	if (tup != NULL)
	{
		read_stored(tup, desc, operation, key, request_hash, wanted_id, result);
		PlCountReplays(1);
	}
	table_close(rel, NoLock);
	return tup != NULL;
}

/*
 * Like PlIdemBegin() without the lock: for batches, whose many keys would
 * fill the lock table.  A key a concurrent batch is still writing is found
 * by the unique index when this call records its own.
 */
bool
PlIdemPeek(const pg_uuid_t *scope, const char *operation, const char *key,
		   const uint8 *request_hash, PlIdemResult *result)
{
	Relation	rel = PlOpenTable("idempotency_keys");
	TupleDesc	desc;
	HeapTuple	tup;

	result->found = false;
	tup = PlIdemFetchLatest(rel, scope ? scope : &ledger_scope, key, &desc);
	if (tup != NULL)
		read_stored(tup, desc, operation, key, request_hash, NULL, result);
	table_close(rel, NoLock);
	return tup != NULL;
}

/* the stored status and reason as the string constants callers keep */
const char *
PlConstStatus(const char *status)
{
	static const char *const known[] = {"posted", "pending", "voided", "expired", "rejected"};

	for (int i = 0; i < (int) lengthof(known); i++)
		if (strcmp(status, known[i]) == 0)
			return known[i];
	elog(ERROR, "unknown stored status \"%s\"", status);
	return NULL;
}

const char *
PlConstReason(const char *reason)
{
	static const char *const known[] = {
		"INSUFFICIENT_FUNDS", "ACCOUNT_FROZEN", "ACCOUNT_CLOSED", "HOLD_EXPIRED",
		"HOLD_NOT_PENDING", "EXCEEDS_AVAILABLE_AMOUNT", "FRAUD_SUSPECTED", "LIMIT_EXCEEDED"
	};

	if (reason == NULL)
		return NULL;
	for (int i = 0; i < (int) lengthof(known); i++)
		if (strcmp(reason, known[i]) == 0)
			return known[i];
	elog(ERROR, "unknown stored reason \"%s\"", reason);
	return NULL;
}

/* Stores the outcome of a keyed call that PlIdemBegin() found new. */
void
PlIdemRecord(const pg_uuid_t *scope, const char *operation, const char *key,
			 const uint8 *request_hash, const pg_uuid_t *result_id,
			 const char *status, const char *reason_code, TimestampTz now)
{
	Datum		values[8];
	bool		nulls[8] = {false};
	bytea	   *hash = palloc(VARHDRSZ + PL_SHA256_LEN);
	Relation	rel = PlOpenTable("idempotency_keys");

	SET_VARSIZE(hash, VARHDRSZ + PL_SHA256_LEN);
	memcpy(VARDATA(hash), request_hash, PL_SHA256_LEN);
	values[0] = UUIDPGetDatum(scope ? scope : &ledger_scope);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(operation);
	values[3] = PointerGetDatum(hash);
	values[4] = UUIDPGetDatum(result_id);
	values[5] = CStringGetTextDatum(status);
	if (reason_code)
		values[6] = CStringGetTextDatum(reason_code);
	else
		nulls[6] = true;
	values[7] = TimestampTzGetDatum(now);
	PlDirectInsert(rel, values, nulls);
	table_close(rel, NoLock);
}

/*
 * payledger.purge_idempotency_keys() RETURNS bigint
 *
 * Deletes keys older than payledger.idempotency_retention.  A purged key
 * can be used again as a new request.
 */
PG_FUNCTION_INFO_V1(purge_idempotency_keys);
Datum
purge_idempotency_keys(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	Datum		values[1];
	TimestampTz cutoff;
	uint64		n;

	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(GetCurrentTimestamp()),
													 IntervalPGetDatum(PlIdempotencyRetention())));
	values[0] = TimestampTzGetDatum(cutoff);
	PlSpiBegin(&priv);
	if (PlExec(PLAN_IDEM_PURGE, values, NULL, 0) != SPI_OK_DELETE)
		elog(ERROR, "idempotency purge failed");
	n = SPI_processed;
	PlSpiEnd(&priv);
	PG_RETURN_INT64((int64) n);
}
