/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Many movements in one call: transfer_legs() (all or nothing) and
 *	  transfer_many() (each item on its own).
 *
 * Both lock every account they touch up front, in ascending id order
 * (posting.c), so concurrent batches over any accounts never deadlock, and
 * write each account row back once at the end.
 *
 * transfer_legs checks its legs in the order given, on balances as the
 * earlier legs leave them: a leg that would breach a floor declines the
 * whole transfer, and the audit row's error_message names the leg.
 *
 * transfer_many walks its arrays without copying them and runs each item in
 * a scratch memory context reset between items, so memory does not grow
 * with the number of items beyond the input itself: it holds the locked
 * accounts and its result set (a tuplestore, which spills to disk).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "audit.h"
#include "metrics.h"
#include "ledger.h"

typedef struct Leg
{
	pg_uuid_t	from_id;
	pg_uuid_t	to_id;
	int64		amount;
} Leg;

static void
bad_leg(int index, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed legs"),
			 errdetail("legs[%d]: %s.", index, problem),
			 errhint("legs is an array of {\"from\": uuid, \"to\": uuid, \"amount\": positive integer}.")));
}

static pg_uuid_t
leg_uuid(JsonbContainer *obj, const char *field, int index)
{
	JsonbValue	k;
	JsonbValue *v;
	pg_uuid_t	u;
	char	   *s;

	k.type = jbvString;
	k.val.string.val = (char *) field;
	k.val.string.len = strlen(field);
	v = findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
	if (v == NULL)
		bad_leg(index, psprintf("\"%s\" is missing", field));
	if (v->type != jbvString)
		bad_leg(index, psprintf("\"%s\" must be a uuid string", field));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (!PlParseUuid(s, &u))
		bad_leg(index, psprintf("\"%s\" is not a uuid", field));
	return u;
}

static int64
leg_amount(JsonbContainer *obj, int index)
{
	JsonbValue	k;
	JsonbValue *v;
	char	   *s;
	char	   *dot;
	char	   *end;
	int64		amount;

	k.type = jbvString;
	k.val.string.val = "amount";
	k.val.string.len = 6;
	v = findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
	if (v == NULL)
		bad_leg(index, "\"amount\" is missing");
	if (v->type != jbvNumeric)
		bad_leg(index, "\"amount\" must be a number");
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	dot = strchr(s, '.');
	if (dot != NULL)
	{
		for (char *p = dot + 1; *p; p++)
			if (*p != '0')
				bad_leg(index, "\"amount\" must be an integer");
		*dot = '\0';
	}
	errno = 0;
	amount = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		bad_leg(index, "\"amount\" is out of range");
	if (amount <= 0)
		bad_leg(index, "\"amount\" must be positive");
	return amount;
}

static Leg *
parse_legs(Jsonb *legs, int *nlegs, int64 *total)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	Leg		   *out;
	int			n;
	int			i = 0;

	if (!JB_ROOT_IS_ARRAY(legs) || JB_ROOT_IS_SCALAR(legs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("legs must be a JSON array")));
	n = JB_ROOT_COUNT(legs);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("legs must not be empty")));
	if (n > pl_max_legs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too many legs"),
				 errdetail("%d legs were given; payledger.max_legs is %d.", n, pl_max_legs)));

	out = palloc(sizeof(Leg) * n);
	*total = 0;
	it = JsonbIteratorInit(&legs->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			bad_leg(i, "a leg must be an object");
		if (JsonContainerSize(v.val.binary.data) != 3)
			bad_leg(i, "a leg has exactly the fields \"from\", \"to\" and \"amount\"");
		out[i].from_id = leg_uuid(v.val.binary.data, "from", i);
		out[i].to_id = leg_uuid(v.val.binary.data, "to", i);
		out[i].amount = leg_amount(v.val.binary.data, i);
		if (memcmp(out[i].from_id.data, out[i].to_id.data, UUID_LEN) == 0)
			bad_leg(i, "\"from\" and \"to\" must differ");
		if (pg_add_s64_overflow(*total, out[i].amount, total))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("the legs' total would overflow bigint")));
		i++;
	}
	*nlegs = n;
	return out;
}

/*
 * payledger.transfer_legs(legs jsonb, currency text,
 *		idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT '{}')
 *		RETURNS payledger.transfer_result
 *
 * Posts every leg or none: one transfer id, one entry per leg side.
 */
PG_FUNCTION_INFO_V1(transfer_legs);
Datum
transfer_legs(PG_FUNCTION_ARGS)
{
	Jsonb	   *legs_json;
	char	   *currency;
	char	   *key = NULL;
	Jsonb	   *metadata;
	Leg		   *legs;
	int			nlegs;
	int64		total;
	uint8		request_hash[PL_SHA256_LEN];
	PlHasher   *h;
	PlPrivState priv;
	PlIdemResult stored;
	pg_uuid_t	id;
	pg_uuid_t  *ids;
	Relation	accounts;
	PlLockedSet *locked;
	const char *reason = NULL;
	int			bad_index = -1;
	int64	   *saved;
	TimestampTz now;
	PlAuditEvent ev;

	PlRequireArg(fcinfo, 0, "legs");
	PlRequireArg(fcinfo, 1, "currency");
	legs_json = PG_GETARG_JSONB_P(0);
	currency = text_to_cstring(PG_GETARG_TEXT_PP(1));
	metadata = PG_ARGISNULL(3) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(3);
	legs = parse_legs(legs_json, &nlegs, &total);
	PlCheckCurrency(currency);
	PlCheckMetadata("transfer metadata", metadata);
	key = PlKeyArg(fcinfo, 2, "transfer_legs");

	h = PlHashBegin("transfer_legs");
	PlHashJsonb(h, legs_json);
	PlHashText(h, currency);
	PlHashJsonb(h, metadata);
	PlHashEnd(h, request_hash);
	/* stored with e-mail addresses masked; the hash covers what was sent */
	metadata = PlMaskJsonb(metadata);

	PlSpiBegin(&priv);
	CommandCounterIncrement();
	if (key != NULL &&
		PlIdemBegin(NULL, "transfer_legs", key, request_hash, NULL, &stored))
	{
		PlSpiEnd(&priv);
		return PlTransferResult(fcinfo, &stored.result_id, stored.status,
								stored.reason_code, true);
	}
	PlUuidV7(&id);

	accounts = PlOpenAccounts();
	ids = palloc(sizeof(pg_uuid_t) * nlegs * 2);
	for (int i = 0; i < nlegs; i++)
	{
		ids[2 * i] = legs[i].from_id;
		ids[2 * i + 1] = legs[i].to_id;
	}
	locked = PlLockAccounts(accounts, ids, nlegs * 2);
	for (int i = 0; i < locked->n; i++)
		PlCheckAccountCurrency(&locked->rows[i], currency);

	/* dry run on the in-memory balances, leg by leg */
	saved = palloc(sizeof(int64) * locked->n);
	for (int i = 0; i < locked->n; i++)
		saved[i] = locked->rows[i].balance;
	for (int i = 0; i < nlegs && reason == NULL; i++)
	{
		PlAccountRow *src = PlFindAccount(locked, &legs[i].from_id);
		PlAccountRow *dst = PlFindAccount(locked, &legs[i].to_id);

		reason = PlDeclineReason(src, dst, legs[i].amount);
		if (reason != NULL)
			bad_index = i;
		else
		{
			src->balance -= legs[i].amount;
			src->call_debits += legs[i].amount;
			dst->balance += legs[i].amount;
		}
	}
	for (int i = 0; i < locked->n; i++)
	{
		locked->rows[i].balance = saved[i];
		locked->rows[i].call_debits = 0;
	}

	now = GetCurrentTimestamp();
	if (key != NULL)
		PlIdemRecord(NULL, "transfer_legs", key, request_hash, &id,
					 reason ? "rejected" : "posted", reason, now);
	if (reason == NULL)
	{
		Relation	entries = PlOpenEntries();

		for (int i = 0; i < nlegs; i++)
		{
			PlWriteEntry(entries, PlFindAccount(locked, &legs[i].from_id), &id,
						 -legs[i].amount, now);
			PlWriteEntry(entries, PlFindAccount(locked, &legs[i].to_id), &id,
						 legs[i].amount, now);
		}
		table_close(entries, NoLock);
		PlFlushAccounts(accounts, locked, now);
	}
	table_close(accounts, NoLock);
	PlStoreTransfer(&id, "legs", reason, currency, total, NULL, NULL, key,
					request_hash, metadata, now);

	PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, &id,
					reason ? &legs[bad_index].from_id : NULL,
					reason ? &legs[bad_index].to_id : NULL, total, currency, key,
					metadata, NULL, now);
	if (reason)
		ev.error_message = psprintf("legs[%d] declined: %s", bad_index, reason);
	PlAuditWrite(&ev);

	PlSpiEnd(&priv);
	return PlTransferResult(fcinfo, &id, reason ? "rejected" : "posted", reason, false);
}

/*
 * transfer_many's arrays are walked with array iterators, several times,
 * instead of deconstructed: nothing is kept per item, so a call's memory
 * is its input, its locked accounts and its result set (a tuplestore,
 * which spills to disk past work_mem).
 */
typedef struct ItemArrays
{
	ArrayType  *from;
	ArrayType  *to;
	ArrayType  *amounts;
	ArrayType  *keys;			/* NULL when no keys were given */
	ArrayIterator from_it;
	ArrayIterator to_it;
	ArrayIterator amount_it;
	ArrayIterator key_it;
} ItemArrays;

/* one item, as the arrays hold it; pointers into the arrays */
typedef struct BatchItem
{
	pg_uuid_t  *from_id;
	pg_uuid_t  *to_id;
	int64		amount;
	text	   *key;			/* NULL: no key */
	bool		from_null;
	bool		to_null;
	bool		amount_null;
} BatchItem;

/* The request hash of one item: the same as transfer() with empty metadata. */
static void
item_hash(const BatchItem *item, const char *currency, Jsonb *empty, uint8 *hash)
{
	PlTransferHash(item->from_id, item->to_id, item->amount, currency, empty, hash);
}

/* A one-dimensional array argument and its length. */
static ArrayType *
get_array(FunctionCallInfo fcinfo, int argno, const char *name, int *n)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(argno);

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", name)));
	*n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	return arr;
}

static void
items_end(ItemArrays *a)
{
	array_free_iterator(a->from_it);
	array_free_iterator(a->to_it);
	array_free_iterator(a->amount_it);
	if (a->key_it != NULL)
		array_free_iterator(a->key_it);
}

/* starts a pass over the items (from_it is NULL before the first) */
static void
items_rewind(ItemArrays *a)
{
	if (a->from_it != NULL)
		items_end(a);
	a->from_it = array_create_iterator(a->from, 0, NULL);
	a->to_it = array_create_iterator(a->to, 0, NULL);
	a->amount_it = array_create_iterator(a->amounts, 0, NULL);
	a->key_it = a->keys ? array_create_iterator(a->keys, 0, NULL) : NULL;
}

static void
items_next(ItemArrays *a, BatchItem *item)
{
	Datum		d;
	bool		isnull;

	(void) array_iterate(a->from_it, &d, &item->from_null);
	item->from_id = item->from_null ? NULL : DatumGetUUIDP(d);
	(void) array_iterate(a->to_it, &d, &item->to_null);
	item->to_id = item->to_null ? NULL : DatumGetUUIDP(d);
	(void) array_iterate(a->amount_it, &d, &item->amount_null);
	item->amount = item->amount_null ? 0 : DatumGetInt64(d);
	item->key = NULL;
	if (a->key_it != NULL && array_iterate(a->key_it, &d, &isnull) && !isnull)
		item->key = DatumGetTextPP(d);
}

static void
null_item(const char *name, int i)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not contain nulls", name),
			 errdetail("%s[%d] is null.", name, i + 1)));
}

/*
 * payledger.transfer_many(from_accounts uuid[], to_accounts uuid[],
 *		amounts bigint[], currency text, idempotency_keys text[] DEFAULT NULL)
 *		RETURNS SETOF payledger.transfer_result
 *
 * One result per item, in order; each item posts or is declined on its
 * own, with its own key.  Malformed items raise for the whole call.
 *
 * Keys are looked up twice: before the accounts are locked, so that a key
 * reused with other parameters raises PY002 ahead of PY005 and PY004, and
 * again for each item once they are, with the command counter advanced
 * after every item: a key that an earlier item of this batch or a batch
 * that committed while this one waited for its accounts has stored is
 * then replayed, without a table of the batch's keys in memory.
 */
PG_FUNCTION_INFO_V1(transfer_many);
Datum
transfer_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ItemArrays	arrays;
	int			n,
				n_to,
				n_amounts,
				nreplayed = 0;
	char	   *currency;
	PlPrivState priv;
	HTAB	   *account_set;
	HASHCTL		ctl;
	HASH_SEQ_STATUS seq;
	pg_uuid_t  *ids;
	pg_uuid_t  *next_id;
	int			nids;
	Relation	accounts;
	Relation	entries;
	PlLockedSet *locked;
	MemoryContext scratch;
	MemoryContext oldcxt;
	Jsonb	   *empty = PlEmptyJsonb();
	BatchItem	item;

	PlRequireArg(fcinfo, 0, "from_accounts");
	PlRequireArg(fcinfo, 1, "to_accounts");
	PlRequireArg(fcinfo, 2, "amounts");
	PlRequireArg(fcinfo, 3, "currency");
	InitMaterializedSRF(fcinfo, 0);

	arrays.from = get_array(fcinfo, 0, "from_accounts", &n);
	arrays.to = get_array(fcinfo, 1, "to_accounts", &n_to);
	arrays.amounts = get_array(fcinfo, 2, "amounts", &n_amounts);
	if (n_to != n || n_amounts != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_accounts, to_accounts and amounts must have the same length")));
	arrays.keys = NULL;
	if (!PG_ARGISNULL(4))
	{
		int			nkeys;

		arrays.keys = get_array(fcinfo, 4, "idempotency_keys", &nkeys);
		if (nkeys != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_keys must have one key per item"),
					 errdetail("%d items, %d keys.", n, nkeys)));
	}
	arrays.from_it = NULL;
	currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	PlCheckCurrency(currency);

	scratch = AllocSetContextCreate(CurrentMemoryContext, "payledger transfer_many item",
									ALLOCSET_DEFAULT_SIZES);

	/* (1) every argument, and the set of accounts the batch touches */
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(pg_uuid_t);
	ctl.hcxt = CurrentMemoryContext;
	account_set = hash_create("payledger transfer_many accounts", 1024, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	items_rewind(&arrays);
	for (int i = 0; i < n; i++)
	{
		items_next(&arrays, &item);
		if (item.from_null)
			null_item("from_accounts", i);
		if (item.to_null)
			null_item("to_accounts", i);
		if (item.amount_null)
			null_item("amounts", i);
		if (item.amount <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount must be positive"),
					 errdetail("amounts[%d] is " INT64_FORMAT ".", i + 1, item.amount)));
		if (memcmp(item.from_id->data, item.to_id->data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_account and to_account must differ"),
					 errdetail("Item %d names the same account twice.", i + 1)));
		if (item.key != NULL)
		{
			oldcxt = MemoryContextSwitchTo(scratch);
			PlCheckKey(text_to_cstring(item.key));
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(scratch);
		}
		(void) hash_search(account_set, item.from_id, HASH_ENTER, NULL);
		(void) hash_search(account_set, item.to_id, HASH_ENTER, NULL);
	}
	/* (2) keys are required: only once every argument is well formed */
	if (n > 0 && (arrays.keys == NULL || array_contains_nulls(arrays.keys)))
		PlRequireKey("transfer_many");
	if (n == 0)
		return (Datum) 0;

	PlSpiBegin(&priv);
	CommandCounterIncrement();

	/* (3) a key used before with other parameters raises before any lock */
	if (arrays.keys != NULL)
	{
		items_rewind(&arrays);
		for (int i = 0; i < n; i++)
		{
			PlIdemResult stored;
			uint8		hash[PL_SHA256_LEN];

			items_next(&arrays, &item);
			if (item.key == NULL)
				continue;
			item_hash(&item, currency, empty, hash);
			oldcxt = MemoryContextSwitchTo(scratch);
			(void) PlIdemPeek(NULL, "transfer", text_to_cstring(item.key), hash, &stored);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(scratch);
		}
	}

	/* (4), (5) every account, locked in id order, in the batch's currency */
	nids = hash_get_num_entries(account_set);
	ids = palloc(sizeof(pg_uuid_t) * nids);
	next_id = ids;
	hash_seq_init(&seq, account_set);
	for (pg_uuid_t *id = hash_seq_search(&seq); id != NULL; id = hash_seq_search(&seq))
		*next_id++ = *id;
	hash_destroy(account_set);
	accounts = PlOpenAccounts();
	entries = PlOpenEntries();
	locked = PlLockAccounts(accounts, ids, nids);
	pfree(ids);
	for (int i = 0; i < locked->n; i++)
		PlCheckAccountCurrency(&locked->rows[i], currency);

	items_rewind(&arrays);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		pg_uuid_t	id;
		const char *status;
		const char *reason = NULL;
		char	   *key = NULL;
		uint8		hash[PL_SHA256_LEN];
		PlIdemResult stored;
		bool		replayed = false;

		items_next(&arrays, &item);
		oldcxt = MemoryContextSwitchTo(scratch);
		item_hash(&item, currency, empty, hash);
		if (item.key != NULL)
		{
			key = text_to_cstring(item.key);
			replayed = PlIdemPeek(NULL, "transfer", key, hash, &stored);
		}
		if (replayed)
		{
			id = stored.result_id;
			status = PlConstStatus(stored.status);
			reason = PlConstReason(stored.reason_code);
			nreplayed++;
		}
		else
		{
			PlAccountRow *src = PlFindAccount(locked, item.from_id);
			PlAccountRow *dst = PlFindAccount(locked, item.to_id);
			TimestampTz now = GetCurrentTimestamp();
			PlAuditEvent ev;

			PlUuidV7(&id);
			reason = PlDeclineReason(src, dst, item.amount);
			status = reason ? "rejected" : "posted";
			if (key != NULL)
				PlIdemRecord(NULL, "transfer", key, hash, &id, status, reason, now);
			if (reason == NULL)
			{
				PlWriteEntry(entries, src, &id, -item.amount, now);
				PlWriteEntry(entries, dst, &id, item.amount, now);
			}
			PlStoreTransfer(&id, "transfer", reason, currency, item.amount, item.from_id,
							item.to_id, key, hash, empty, now);
			PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, &id, item.from_id,
							item.to_id, item.amount, currency, key, NULL, NULL, now);
			PlAuditWrite(&ev);
			/* the next items' key lookups see this item's key */
			if (key != NULL)
				CommandCounterIncrement();
		}
		values[0] = UUIDPGetDatum(&id);
		values[1] = CStringGetTextDatum(status);
		if (reason)
			values[2] = CStringGetTextDatum(reason);
		else
			nulls[2] = true;
		values[3] = BoolGetDatum(replayed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(scratch);
	}
	items_end(&arrays);
	PlFlushAccounts(accounts, locked, GetCurrentTimestamp());
	PlCountReplays(nreplayed);
	table_close(entries, NoLock);
	table_close(accounts, NoLock);
	MemoryContextDelete(scratch);
	PlSpiEnd(&priv);
	return (Datum) 0;
}
