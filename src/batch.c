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
 * accounts, its result set (a tuplestore, which spills to disk past
 * work_mem) and, when the items have keys, one byte per item and the
 * stored outcome of each item that replays.
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
#include "layouts.h"
#include "pii.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "audit.h"
#include "metrics.h"
#include "pipeline.h"
#include "ledger.h"

typedef PlLeg Leg;

static void bad_leg(int index, const char *problem) pg_attribute_noreturn();

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

/* what transfer_legs() hands its work */
typedef struct LegsArgs
{
	Leg		   *legs;
	int			nlegs;
	int64		total;
	char	   *currency;
	Jsonb	   *metadata;
} LegsArgs;

/*
 * The dry run of transfer_legs: each leg in the order given, on the
 * in-memory balances as the earlier legs leave them, which are then put
 * back.  Returns the first leg's decline reason (its index in *bad_index),
 * or NULL when every leg can post.
 */
static const char *
legs_decline(PlLockedSet *locked, const Leg *legs, int nlegs, int *bad_index)
{
	const char *reason = NULL;
	int64	   *saved = palloc(sizeof(int64) * locked->n);

	for (int i = 0; i < locked->n; i++)
		saved[i] = locked->rows[i].balance;
	for (int i = 0; i < nlegs && reason == NULL; i++)
	{
		PlAccountRow *src = PlFindAccount(locked, &legs[i].from_id);
		PlAccountRow *dst = PlFindAccount(locked, &legs[i].to_id);

		reason = PlDeclineReason(src, dst, legs[i].amount);
		if (reason != NULL)
			*bad_index = i;
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
	pfree(saved);
	return reason;
}

/* Posts every leg: one entry per leg side, each account row written once. */
static void
legs_post(Relation accounts, PlLockedSet *locked, const Leg *legs, int nlegs,
		  const pg_uuid_t *id, TimestampTz now)
{
	Relation	entries = PlOpenEntries();

	for (int i = 0; i < nlegs; i++)
	{
		PlWriteEntry(entries, PlFindAccount(locked, &legs[i].from_id), id,
					 -legs[i].amount, now);
		PlWriteEntry(entries, PlFindAccount(locked, &legs[i].to_id), id,
					 legs[i].amount, now);
	}
	table_close(entries, NoLock);
	PlFlushAccounts(accounts, locked, now);
}

/*
 * The work of transfer_legs: every account locked in id order, (4) PY005
 * and (5) PY004, the dry run, then all legs or none, the transfer row and
 * the audit row (which names a declined leg).
 */
static void
legs_work(PlRequest *req)
{
	LegsArgs   *args = req->arg;
	pg_uuid_t	id;
	pg_uuid_t  *ids;
	bool	   *credit_only;
	Relation	accounts;
	PlLockedSet *locked;
	const char *reason;
	int			bad_index = -1;
	TimestampTz now;
	PlAuditEvent ev;

	PlUuidV7(&id);
	accounts = PlOpenAccounts();
	ids = palloc(sizeof(pg_uuid_t) * args->nlegs * 2);
	credit_only = palloc(sizeof(bool) * args->nlegs * 2);
	for (int i = 0; i < args->nlegs; i++)
	{
		ids[2 * i] = args->legs[i].from_id;
		credit_only[2 * i] = false;
		ids[2 * i + 1] = args->legs[i].to_id;
		credit_only[2 * i + 1] = true;
	}
	/* an account only credited by the legs takes one of its sub-balances */
	locked = PlLockAccountsFor(accounts, ids, args->nlegs * 2, credit_only);
	for (int i = 0; i < locked->n; i++)
		PlCheckAccountCurrency(&locked->rows[i], args->currency);

	reason = legs_decline(locked, args->legs, args->nlegs, &bad_index);
	now = GetCurrentTimestamp();
	if (reason == NULL)
		legs_post(accounts, locked, args->legs, args->nlegs, &id, now);
	table_close(accounts, NoLock);
	PlStoreTransfer(&id, "legs", reason, args->currency, args->total, NULL, NULL, req->key,
					req->hash, args->metadata, now);
	PlStoreLegs(&id, args->legs, args->nlegs);

	PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, &id,
					reason ? &args->legs[bad_index].from_id : NULL,
					reason ? &args->legs[bad_index].to_id : NULL, args->total,
					args->currency, req->key, args->metadata, NULL, now);
	if (reason)
		ev.error_message = psprintf("legs[%d] declined: %s", bad_index, reason);
	PlAuditWrite(&ev);
	PlRequestOutcome(req, &id, reason ? "rejected" : "posted", reason, now);
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
	Jsonb	   *metadata;
	LegsArgs	args;
	PlHasher   *h;
	PlRequest	req;

	PlRequireArg(fcinfo, 0, "legs");
	PlRequireArg(fcinfo, 1, "currency");
	legs_json = PG_GETARG_JSONB_P(0);
	args.currency = text_to_cstring(PG_GETARG_TEXT_PP(1));
	metadata = PG_ARGISNULL(3) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(3);
	args.legs = parse_legs(legs_json, &args.nlegs, &args.total);
	PlCheckCurrency(args.currency);
	PlCheckMetadata("transfer metadata", metadata);
	PlRequestInit(&req, "transfer_legs", NULL, PlKeyArg(fcinfo, 2, "transfer_legs"),
				  legs_work, &args);

	h = PlHashBegin("transfer_legs");
	PlHashJsonb(h, legs_json);
	PlHashText(h, args.currency);
	PlHashJsonb(h, metadata);
	PlHashEnd(h, req.hash);
	/* stored with e-mail addresses masked; the hash covers what was sent */
	args.metadata = PlMaskJsonb(metadata);

	req.scoped_debits = true;
	PlRunRequest(&req);
	return PlTransferResult(fcinfo, &req.result_id, req.status, req.reason, req.replayed);
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
 * What step (3) found for an item's key, one byte per item; the outcome of
 * a stored key is kept apart (BatchReplay), for the items that replay only.
 */
typedef enum BatchKeyState
{
	KEY_NONE,					/* the item has no key */
	KEY_NEW,					/* not stored, and no earlier item has it */
	KEY_STORED,					/* stored by an earlier call: the item replays
								 * the next BatchReplay */
	KEY_AGAIN					/* an earlier item has it: looked up at its turn */
} BatchKeyState;

typedef struct BatchReplay
{
	pg_uuid_t	result_id;
	const char *status;
	const char *reason;
} BatchReplay;

/* a transfer_many call: its arguments, then what its steps share */
typedef struct Batch
{
	ItemArrays	arrays;
	int			n;
	char	   *currency;
	ReturnSetInfo *rsinfo;
	Jsonb	   *empty;
	MemoryContext scratch;		/* reset after every item */
	Relation	accounts;
	Relation	entries;
	pg_uuid_t  *ids;			/* the accounts the batch touches, each once */
	bool	   *credit_only;	/* ids[i] is only credited by the batch */
	int			nids;
	PlLockedSet *locked;
	uint8	   *keys;			/* a BatchKeyState per item, when the batch
								 * has keys */
	BatchReplay *replays;		/* the KEY_STORED items' outcomes, in order */
	int			nreplays;
	int			next_replay;
	int			nreplayed;
} Batch;

/* an account of a batch, and whether any item debits it */
typedef struct BatchAccount
{
	pg_uuid_t	id;
	bool		debited;
} BatchAccount;

/* (1) every item well formed; collects the accounts the batch touches */
static void
batch_check_items(Batch *b)
{
	HASHCTL		ctl;
	HTAB	   *account_set;
	HASH_SEQ_STATUS seq;
	BatchAccount *account;
	bool		found;
	int			n = 0;
	BatchItem	item;

	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(BatchAccount);
	ctl.hcxt = CurrentMemoryContext;
	account_set = hash_create("payledger transfer_many accounts", 1024, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	items_rewind(&b->arrays);
	for (int i = 0; i < b->n; i++)
	{
		items_next(&b->arrays, &item);
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
			MemoryContext oldcxt = MemoryContextSwitchTo(b->scratch);

			PlCheckKey(text_to_cstring(item.key));
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(b->scratch);
		}
		account = hash_search(account_set, item.from_id, HASH_ENTER, NULL);
		account->debited = true;
		account = hash_search(account_set, item.to_id, HASH_ENTER, &found);
		if (!found)
			account->debited = false;
	}

	b->nids = hash_get_num_entries(account_set);
	b->ids = palloc(sizeof(pg_uuid_t) * Max(b->nids, 1));
	b->credit_only = palloc(sizeof(bool) * Max(b->nids, 1));
	hash_seq_init(&seq, account_set);
	while ((account = hash_seq_search(&seq)) != NULL)
	{
		b->ids[n] = account->id;
		b->credit_only[n++] = !account->debited;
	}
	hash_destroy(account_set);
}

/* keeps the stored outcome of an item that replays, in cxt */
static void
batch_keep_replay(Batch *b, const PlIdemResult *stored, MemoryContext cxt, int *size)
{
	BatchReplay *r;

	if (b->nreplays == *size)
	{
		*size = Max(16, *size * 2);
		b->replays = b->replays == NULL ?
			MemoryContextAlloc(cxt, sizeof(BatchReplay) * *size) :
			repalloc(b->replays, sizeof(BatchReplay) * *size);
	}
	r = &b->replays[b->nreplays++];
	r->result_id = stored->result_id;
	r->status = PlConstStatus(stored->status);
	r->reason = PlConstReason(stored->reason_code);
}

/*
 * (3) every key of the batch locked, in one order, before any account,
 * then looked up: a key used before with other parameters raises PY002
 * ahead of PY005 and PY004.  What the lookup found is kept, so that each
 * key is looked up once: the locks keep other sessions from storing a key
 * of the batch meanwhile, and only an item whose key an earlier item of
 * the batch has (or whose key's hash collides with one) is looked up
 * again at its turn, after that item stored it.  A new key costs one byte;
 * a stored one, its outcome (a replaying item: 33 bytes).
 */
static void
batch_lock_keys(Batch *b)
{
	uint64	   *hashes;
	int			nkeys = 0;
	BatchItem	item;
	HASHCTL		ctl;
	HTAB	   *seen;
	int			replays_size = 0;

	if (b->arrays.keys == NULL)
		return;
	hashes = palloc(sizeof(uint64) * b->n);
	items_rewind(&b->arrays);
	for (int i = 0; i < b->n; i++)
	{
		MemoryContext oldcxt;
		PlKeyRef	ref;

		items_next(&b->arrays, &item);
		if (item.key == NULL)
			continue;
		oldcxt = MemoryContextSwitchTo(b->scratch);
		ref.scope = NULL;
		ref.key = text_to_cstring(item.key);
		hashes[nkeys++] = PlKeyHash(&ref);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(b->scratch);
	}
	PlLockKeyHashes(hashes, nkeys);
	pfree(hashes);

	b->keys = palloc(sizeof(uint8) * b->n);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("payledger transfer_many keys", Max(nkeys, 16), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	items_rewind(&b->arrays);
	for (int i = 0; i < b->n; i++)
	{
		MemoryContext oldcxt;
		PlIdemResult stored;
		uint8		hash[PL_SHA256_LEN];
		PlKeyRef	ref;
		uint64		key_hash;
		bool		found;

		items_next(&b->arrays, &item);
		if (item.key == NULL)
		{
			b->keys[i] = KEY_NONE;
			continue;
		}
		oldcxt = MemoryContextSwitchTo(b->scratch);
		ref.scope = NULL;
		ref.key = text_to_cstring(item.key);
		key_hash = PlKeyHash(&ref);
		(void) hash_search(seen, &key_hash, HASH_ENTER, &found);
		if (found)
			b->keys[i] = KEY_AGAIN;
		else
		{
			item_hash(&item, b->currency, b->empty, hash);
			if (PlIdemLookup(NULL, "transfer", ref.key, hash, NULL, &stored))
			{
				batch_keep_replay(b, &stored, oldcxt, &replays_size);
				b->keys[i] = KEY_STORED;
			}
			else
				b->keys[i] = KEY_NEW;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(b->scratch);
	}
	hash_destroy(seen);
}

/*
 * One item, as a transfer request of its own whose key is locked: replayed
 * (what step (3) found stored, or what an earlier item of this batch
 * stored), or posted or declined on the locked accounts and recorded.
 * Adds its result row.
 */
static void
batch_item(Batch *b, const BatchItem *item, BatchKeyState key)
{
	PlRequest	req;
	Datum		values[Natts_transfer_result];
	bool		nulls[Natts_transfer_result];
	bool		replayed;

	Assert((item->key == NULL) == (key == KEY_NONE));
	PlRequestInit(&req, "transfer", NULL,
				  item->key ? text_to_cstring(item->key) : NULL, NULL, NULL);
	if (key == KEY_STORED)
	{
		const BatchReplay *r = &b->replays[b->next_replay++];

		Assert(b->next_replay <= b->nreplays);
		req.replayed = true;
		PlRequestOutcome(&req, &r->result_id, r->status, r->reason, 0);
		replayed = true;
	}
	else
	{
		/* a replay kept from step (3) needs no hash: its outcome is known */
		item_hash(item, b->currency, b->empty, req.hash);
		replayed = key == KEY_AGAIN && PlRequestLookup(&req);
	}
	if (replayed)
		b->nreplayed++;
	else
	{
		TimestampTz now = GetCurrentTimestamp();
		pg_uuid_t	id;
		const char *reason;

		PlUuidV7(&id);
		reason = PlPostLocked(b->entries, PlFindAccount(b->locked, item->from_id),
							  PlFindAccount(b->locked, item->to_id), &id, "transfer",
							  item->amount, b->currency, req.key, req.hash, b->empty, NULL, now);
		PlRequestOutcome(&req, &id, reason ? "rejected" : "posted", reason, now);
		PlRequestRecord(&req);
		/* the next items' key lookups see this item's key */
		if (req.key != NULL)
			CommandCounterIncrement();
	}
	PlTransferResultValues(values, nulls, &req.result_id, req.status, req.reason,
						   req.replayed);
	tuplestore_putvalues(b->rsinfo->setResult, b->rsinfo->setDesc, values, nulls);
}

/*
 * The work of transfer_many, a request without a key of its own whose
 * items are requests: (3) the keys, (4) and (5) every account locked in id
 * order, in the batch's currency, then each item.
 */
static void
batch_work(PlRequest *req)
{
	Batch	   *b = req->arg;
	BatchItem	item;

	batch_lock_keys(b);
	b->accounts = PlOpenAccounts();
	b->entries = PlOpenEntries();
	/* an account the batch only credits takes one of its sub-balances */
	b->locked = PlLockAccountsFor(b->accounts, b->ids, b->nids, b->credit_only);
	for (int i = 0; i < b->locked->n; i++)
		PlCheckAccountCurrency(&b->locked->rows[i], b->currency);

	items_rewind(&b->arrays);
	for (int i = 0; i < b->n; i++)
	{
		MemoryContext oldcxt;

		items_next(&b->arrays, &item);
		oldcxt = MemoryContextSwitchTo(b->scratch);
		batch_item(b, &item, b->keys ? (BatchKeyState) b->keys[i] : KEY_NONE);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(b->scratch);
	}
	items_end(&b->arrays);
	PlFlushAccounts(b->accounts, b->locked, GetCurrentTimestamp());
	PlCountReplays(b->nreplayed);
	table_close(b->entries, NoLock);
	table_close(b->accounts, NoLock);
}

/*
 * payledger.transfer_many(from_accounts uuid[], to_accounts uuid[],
 *		amounts bigint[], currency text, idempotency_keys text[] DEFAULT NULL)
 *		RETURNS SETOF payledger.transfer_result
 *
 * One result per item, in order; each item posts or is declined on its
 * own, with its own key.  Malformed items raise for the whole call.
 *
 * Every key of the batch is locked before any account (PlLockKeys), so a
 * batch item and any other call with its key (a transfer, another batch's
 * item, legs, a hold) serialize on the key: the later one replays or
 * raises PY002, never a unique violation or a deadlock.  Keys are looked up
 * once all are locked, so that a key reused with other parameters raises
 * PY002 ahead of PY005 and PY004, and again for each item, with the command
 * counter advanced after every keyed item: a key that an earlier item of
 * the batch stored is then replayed, without a table of the batch's keys
 * in memory.
 */
PG_FUNCTION_INFO_V1(transfer_many);
Datum
transfer_many(PG_FUNCTION_ARGS)
{
	Batch		b;
	int			n_to,
				n_amounts;
	PlRequest	req;

	PlRequireArg(fcinfo, 0, "from_accounts");
	PlRequireArg(fcinfo, 1, "to_accounts");
	PlRequireArg(fcinfo, 2, "amounts");
	PlRequireArg(fcinfo, 3, "currency");
	InitMaterializedSRF(fcinfo, 0);

	memset(&b, 0, sizeof(b));
	b.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	b.arrays.from_it = NULL;
	b.arrays.from = get_array(fcinfo, 0, "from_accounts", &b.n);
	b.arrays.to = get_array(fcinfo, 1, "to_accounts", &n_to);
	b.arrays.amounts = get_array(fcinfo, 2, "amounts", &n_amounts);
	if (n_to != b.n || n_amounts != b.n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_accounts, to_accounts and amounts must have the same length")));
	if (!PG_ARGISNULL(4))
	{
		int			nkeys;

		b.arrays.keys = get_array(fcinfo, 4, "idempotency_keys", &nkeys);
		if (nkeys != b.n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_keys must have one key per item"),
					 errdetail("%d items, %d keys.", b.n, nkeys)));
	}
	b.currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	PlCheckCurrency(b.currency);
	b.empty = PlEmptyJsonb();
	b.scratch = AllocSetContextCreate(CurrentMemoryContext, "payledger transfer_many item",
									  ALLOCSET_DEFAULT_SIZES);

	/* (1) every item; (2) keys are required once every item is well formed */
	batch_check_items(&b);
	if (b.n > 0 && (b.arrays.keys == NULL || array_contains_nulls(b.arrays.keys)))
		PlRequireKey("transfer_many");
	if (b.n == 0)
		return (Datum) 0;

	PlRequestInit(&req, "transfer_many", NULL, NULL, batch_work, &b);
	req.scoped_debits = true;
	PlRunRequest(&req);
	MemoryContextDelete(b.scratch);
	return (Datum) 0;
}
