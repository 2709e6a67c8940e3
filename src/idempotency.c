/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Idempotency keys: a retry never moves money twice.
 *
 * A keyed call first takes a transaction-scoped lock on its key (see
 * PlLockKeys), then looks the key up with a fresh snapshot: a replay costs
 * two locks and one index probe and moves nothing.
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
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"
#include "storage/lock.h"
#include "utils/timestamp.h"

#include "payledger.h"
#include "pii.h"
#include "layouts.h"
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

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Checks a stored idempotency row against this request and reads it. */
static void
read_stored(HeapTuple tup, TupleDesc desc, const char *operation,
			const char *key, const uint8 *request_hash,
			const pg_uuid_t *wanted_id, PlIdemResult *result)
{
	bool		isnull;
	char	   *stored_op = text_attr(tup, desc, Anum_idempotency_keys_operation);
	bytea	   *stored_hash = DatumGetByteaPP(heap_getattr(tup, Anum_idempotency_keys_request_hash, desc, &isnull));
	pg_uuid_t  *stored_id = DatumGetUUIDP(heap_getattr(tup, Anum_idempotency_keys_result_id, desc, &isnull));

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
	result->status = text_attr(tup, desc, Anum_idempotency_keys_status);
	result->reason_code = text_attr(tup, desc, Anum_idempotency_keys_reason_code);
}

/*
 * Key locks.  Calls that use one key are serialized by a transaction-scoped
 * lock on a 64-bit hash of (scope, key) in a lock space of payledger's own.
 * A batch with thousands of keys cannot take one lock per key without
 * filling the shared lock table, so every call first takes a lock on each
 * of its keys' buckets (the hash's top bits, one of PL_KEY_BUCKETS): calls
 * with at most PL_KEY_LOCKS_MAX keys take their buckets in RowExclusiveLock,
 * which they share, and then their keys in ExclusiveLock; a larger batch
 * takes only its buckets, in ExclusiveLock, which excludes every other call
 * on any key of those buckets with at most PL_KEY_BUCKETS locks.  Buckets
 * are locked in ascending order, then keys in ascending order, all before
 * any row lock, so key locks add no cycle to the lock order (posting.c).
 */
/* lock spaces (advisory lock field 4) of key locks and bucket locks */
#define PL_IDEM_LOCK_SPACE			0x504C
#define PL_KEY_BUCKET_LOCK_SPACE	0x504D

#define PL_KEY_BUCKET_BITS	8
#define PL_KEY_BUCKETS		(1 << PL_KEY_BUCKET_BITS)
#define PL_KEY_LOCKS_MAX	64

/* the 64-bit hash a key is locked by */
uint64
PlKeyHash(const PlKeyRef *ref)
{
	const pg_uuid_t *scope = ref->scope ? ref->scope : &ledger_scope;

	return hash_bytes_extended((const unsigned char *) ref->key, strlen(ref->key),
							   hash_bytes_extended(scope->data, UUID_LEN, 0));
}

static uint32
key_bucket(uint64 h)
{
	return (uint32) (h >> (64 - PL_KEY_BUCKET_BITS));
}

static int
hash_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

static void
lock_bucket(uint32 bucket, LOCKMODE mode)
{
	LOCKTAG		tag;

	Assert(bucket < PL_KEY_BUCKETS);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, bucket, PL_KEY_BUCKET_LOCK_SPACE);
	(void) LockAcquire(&tag, mode, false, false);
}

static void
lock_key(uint64 h)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 PL_IDEM_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * Locks the keys of a call, or of every item of a batch, for the rest of
 * the transaction (duplicates allowed).  Afterwards no other transaction
 * can store any of them until this one ends, and what is stored is
 * visible to a lookup with a fresh snapshot (PlIdemLookup).
 */
void
PlLockKeys(const PlKeyRef *keys, int n)
{
	uint64		hashes[2];
	uint64	   *all = n <= (int) lengthof(hashes) ? hashes : palloc(sizeof(uint64) * n);

	for (int i = 0; i < n; i++)
		all[i] = PlKeyHash(&keys[i]);
	PlLockKeyHashes(all, n);
	if (all != hashes)
		pfree(all);
}

/* PlLockKeys for keys already hashed (PlKeyHash); sorts hashes in place */
void
PlLockKeyHashes(uint64 *hashes, int n)
{
	int			nunique = 0;
	bool		per_key;
	uint32		last_bucket = 0;

	if (n == 0)
		return;
	qsort(hashes, n, sizeof(uint64), hash_cmp);
	for (int i = 0; i < n; i++)
		if (nunique == 0 || hashes[nunique - 1] != hashes[i])
			hashes[nunique++] = hashes[i];

	per_key = nunique <= PL_KEY_LOCKS_MAX;
	for (int i = 0; i < nunique; i++)
	{
		uint32		bucket = key_bucket(hashes[i]);

		/* sorted by hash is sorted by bucket: each bucket once, ascending */
		Assert(i == 0 || hashes[i - 1] < hashes[i]);
		Assert(i == 0 || last_bucket <= bucket);
		if (i == 0 || bucket != last_bucket)
			lock_bucket(bucket, per_key ? RowExclusiveLock : ExclusiveLock);
		last_bucket = bucket;
	}
	if (per_key)
		for (int i = 0; i < nunique; i++)
			lock_key(hashes[i]);
}

/*
 * Looks a key up with a fresh snapshot (the caller holds its lock).
 * Returns true, with the stored result in the current memory context, when
 * the key was used before with the same operation, parameters and (when
 * given) result id; raises PY002 when it was used otherwise; returns false
 * for a new key, which the caller records with PlIdemRecord() once it
 * knows its outcome.
 */
bool
PlIdemLookup(const pg_uuid_t *scope, const char *operation, const char *key,
			 const uint8 *request_hash, const pg_uuid_t *wanted_id,
			 PlIdemResult *result)
{
	Relation	rel = PlOpenTable("idempotency_keys");
	TupleDesc	desc;
	HeapTuple	tup;

	result->found = false;
	tup = PlIdemFetchLatest(rel, scope ? scope : &ledger_scope, key, &desc);
	if (tup != NULL)
	{
		read_stored(tup, desc, operation, key, request_hash, wanted_id, result);
		heap_freetuple(tup);
	}
	table_close(rel, NoLock);
	return result->found;
}

/* a transfer status as the string constant callers keep, or NULL when it is none */
const char *
PlKnownStatus(const char *status)
{
	static const char *const known[] = {"posted", "pending", "voided", "expired", "rejected"};

	for (int i = 0; i < (int) lengthof(known); i++)
		if (strcmp(status, known[i]) == 0)
			return known[i];
	return NULL;
}

/* the stored status and reason as the string constants callers keep */
const char *
PlConstStatus(const char *status)
{
	const char *known = PlKnownStatus(status);

	if (known == NULL)
		elog(ERROR, "unknown stored status \"%s\"", status);
	return known;
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

/* Stores the outcome of a keyed call that PlIdemLookup() found new. */
void
PlIdemRecord(const pg_uuid_t *scope, const char *operation, const char *key,
			 const uint8 *request_hash, const pg_uuid_t *result_id,
			 const char *status, const char *reason_code, TimestampTz now)
{
	Datum		values[Natts_idempotency_keys];
	bool		nulls[Natts_idempotency_keys] = {false};
	bytea	   *hash = palloc(VARHDRSZ + PL_SHA256_LEN);
	Relation	rel = PlOpenTable("idempotency_keys");

	SET_VARSIZE(hash, VARHDRSZ + PL_SHA256_LEN);
	memcpy(VARDATA(hash), request_hash, PL_SHA256_LEN);
	values[Anum_idempotency_keys_scope - 1] = UUIDPGetDatum(scope ? scope : &ledger_scope);
	values[Anum_idempotency_keys_key - 1] = CStringGetTextDatum(key);
	values[Anum_idempotency_keys_operation - 1] = CStringGetTextDatum(operation);
	values[Anum_idempotency_keys_request_hash - 1] = PointerGetDatum(hash);
	values[Anum_idempotency_keys_result_id - 1] = UUIDPGetDatum(result_id);
	values[Anum_idempotency_keys_status - 1] = CStringGetTextDatum(status);
	if (reason_code)
		values[Anum_idempotency_keys_reason_code - 1] = CStringGetTextDatum(reason_code);
	else
		nulls[Anum_idempotency_keys_reason_code - 1] = true;
	values[Anum_idempotency_keys_created_at - 1] = TimestampTzGetDatum(now);
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
