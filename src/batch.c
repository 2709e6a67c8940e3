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
 * transfer_many runs each item in a scratch memory context reset between
 * items, so memory does not grow with the batch beyond its result set
 * (a tuplestore, which spills to disk) and the locked accounts.
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

/* a key already used earlier in the same batch */
typedef struct SeenKey
{
	char		key[PL_MAX_KEY_LENGTH + 1];
	int			item;
	uint8		hash[PL_SHA256_LEN];
} SeenKey;

typedef struct BatchResult
{
	pg_uuid_t	id;
	const char *status;			/* a string constant */
	const char *reason;			/* a string constant or NULL */
} BatchResult;

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
	PlRejectPanInJsonb("transfer metadata", metadata);
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

/* The request hash of one item: the same as transfer() with empty metadata. */
static const uint8 *
item_hash(Datum from, Datum to, Datum amount, const char *currency, Jsonb *metadata)
{
	static uint8 hash[PL_SHA256_LEN];

	PlTransferHash(DatumGetUUIDP(from), DatumGetUUIDP(to), DatumGetInt64(amount),
				   currency, metadata, hash);
	return hash;
}

/* Deconstructs a one-dimensional array argument; NULL elements allowed. */
static int
get_array(FunctionCallInfo fcinfo, int argno, const char *name, Oid elemtype,
		  Datum **elems, bool **nulls)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(argno);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", name)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	return n;
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
 */
PG_FUNCTION_INFO_V1(transfer_many);
Datum
transfer_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *from_d,
			   *to_d,
			   *amount_d,
			   *key_d = NULL;
	bool	   *from_n,
			   *to_n,
			   *amount_n,
			   *key_n = NULL;
	int			n,
				nkeys = 0;
	char	   *currency;
	PlPrivState priv;
	pg_uuid_t  *ids;
	int			nids = 0;
	bool	   *replayed;
	PlIdemResult *stored;
	Relation	accounts;
	Relation	entries;
	PlLockedSet *locked = NULL;
	MemoryContext scratch;
	MemoryContext oldcxt;
	Jsonb	   *empty = PlEmptyJsonb();
	HTAB	   *seen = NULL;
	BatchResult *results;

	PlRequireArg(fcinfo, 0, "from_accounts");
	PlRequireArg(fcinfo, 1, "to_accounts");
	PlRequireArg(fcinfo, 2, "amounts");
	PlRequireArg(fcinfo, 3, "currency");
	InitMaterializedSRF(fcinfo, 0);

	n = get_array(fcinfo, 0, "from_accounts", UUIDOID, &from_d, &from_n);
	if (get_array(fcinfo, 1, "to_accounts", UUIDOID, &to_d, &to_n) != n ||
		get_array(fcinfo, 2, "amounts", INT8OID, &amount_d, &amount_n) != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_accounts, to_accounts and amounts must have the same length")));
	if (!PG_ARGISNULL(4))
	{
		nkeys = get_array(fcinfo, 4, "idempotency_keys", TEXTOID, &key_d, &key_n);
		if (nkeys != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_keys must have one key per item"),
					 errdetail("%d items, %d keys.", n, nkeys)));
	}
	currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	PlCheckCurrency(currency);
	for (int i = 0; i < n; i++)
	{
		if (from_n[i])
			null_item("from_accounts", i);
		if (to_n[i])
			null_item("to_accounts", i);
		if (amount_n[i])
			null_item("amounts", i);
		if (DatumGetInt64(amount_d[i]) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount must be positive"),
					 errdetail("amounts[%d] is " INT64_FORMAT ".", i + 1,
							   DatumGetInt64(amount_d[i]))));
		if (memcmp(DatumGetUUIDP(from_d[i])->data, DatumGetUUIDP(to_d[i])->data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_account and to_account must differ"),
					 errdetail("Item %d names the same account twice.", i + 1)));
		if (key_d != NULL && !key_n[i])
			PlCheckKey(TextDatumGetCString(key_d[i]));
	}
	/* (2) keys are required: only once every argument is well formed */
	for (int i = 0; i < n; i++)
		if (key_d == NULL || key_n[i])
			PlRequireKey("transfer_many");
	if (n == 0)
		return (Datum) 0;

	PlSpiBegin(&priv);
	CommandCounterIncrement();

	/* replays first: they need no locks */
	replayed = palloc0(sizeof(bool) * n);
	stored = palloc0(sizeof(PlIdemResult) * n);
	ids = palloc(sizeof(pg_uuid_t) * n * 2);
	for (int i = 0; i < n; i++)
	{
		if (key_d != NULL && !key_n[i])
			replayed[i] = PlIdemPeek(NULL, "transfer", TextDatumGetCString(key_d[i]),
									 item_hash(from_d[i], to_d[i], amount_d[i], currency, empty),
									 &stored[i]);
		if (!replayed[i])
		{
			ids[nids++] = *DatumGetUUIDP(from_d[i]);
			ids[nids++] = *DatumGetUUIDP(to_d[i]);
		}
	}

	accounts = PlOpenAccounts();
	entries = PlOpenEntries();
	if (nids > 0)
	{
		locked = PlLockAccounts(accounts, ids, nids);
		for (int i = 0; i < locked->n; i++)
			PlCheckAccountCurrency(&locked->rows[i], currency);
	}

	results = palloc(sizeof(BatchResult) * n);
	if (key_d != NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = PL_MAX_KEY_LENGTH + 1;
		ctl.entrysize = sizeof(SeenKey);
		ctl.hcxt = CurrentMemoryContext;
		seen = hash_create("payledger transfer_many keys", Min(n, 1024), &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	scratch = AllocSetContextCreate(CurrentMemoryContext, "payledger transfer_many item",
									ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		SeenKey    *prior;
		pg_uuid_t	id;
		const char *status;
		const char *reason = NULL;

		oldcxt = MemoryContextSwitchTo(scratch);
		if (replayed[i])
		{
			id = stored[i].result_id;
			status = PlConstStatus(stored[i].status);
			reason = PlConstReason(stored[i].reason_code);
		}
		else if (seen != NULL &&
				 (prior = hash_search(seen, TextDatumGetCString(key_d[i]), HASH_FIND, NULL)) != NULL)
		{
			/* the same key earlier in this batch: replay that item or PY002 */
			if (memcmp(prior->hash, item_hash(from_d[i], to_d[i], amount_d[i], currency, empty),
					   PL_SHA256_LEN) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
						 errmsg("idempotency key \"%s\" was already used with different parameters",
								prior->key),
						 errdetail("Items %d and %d of the batch share the key.", prior->item + 1, i + 1)));
			id = results[prior->item].id;
			status = results[prior->item].status;
			reason = results[prior->item].reason;
			replayed[i] = true;
		}
		else
		{
			pg_uuid_t  *from_id = DatumGetUUIDP(from_d[i]);
			pg_uuid_t  *to_id = DatumGetUUIDP(to_d[i]);
			int64		amount = DatumGetInt64(amount_d[i]);
			PlAccountRow *src = PlFindAccount(locked, from_id);
			PlAccountRow *dst = PlFindAccount(locked, to_id);
			char	   *key = (key_d != NULL && !key_n[i]) ? TextDatumGetCString(key_d[i]) : NULL;
			TimestampTz now = GetCurrentTimestamp();
			uint8		hash[PL_SHA256_LEN];
			PlAuditEvent ev;

			memcpy(hash, item_hash(from_d[i], to_d[i], amount_d[i], currency, empty),
				   PL_SHA256_LEN);
			PlUuidV7(&id);
			reason = PlDeclineReason(src, dst, amount);
			status = reason ? "rejected" : "posted";
			if (key != NULL)
			{
				SeenKey    *entry = hash_search(seen, key, HASH_ENTER, NULL);

				entry->item = i;
				memcpy(entry->hash, hash, PL_SHA256_LEN);
				PlIdemRecord(NULL, "transfer", key, hash, &id, status, reason, now);
			}
			if (reason == NULL)
			{
				PlWriteEntry(entries, src, &id, -amount, now);
				PlWriteEntry(entries, dst, &id, amount, now);
			}
			PlStoreTransfer(&id, "transfer", reason, currency, amount, from_id, to_id,
							key, hash, empty, now);
			PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, &id, from_id, to_id,
							amount, currency, key, NULL, NULL, now);
			PlAuditWrite(&ev);
		}
		results[i].id = id;
		results[i].status = status;
		results[i].reason = reason;
		values[0] = UUIDPGetDatum(&id);
		values[1] = CStringGetTextDatum(status);
		if (reason)
			values[2] = CStringGetTextDatum(reason);
		else
			nulls[2] = true;
		values[3] = BoolGetDatum(replayed[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(scratch);
	}
	if (locked != NULL)
		PlFlushAccounts(accounts, locked, GetCurrentTimestamp());
	{
		int			nreplayed = 0;

		for (int i = 0; i < n; i++)
			nreplayed += replayed[i] ? 1 : 0;
		PlCountReplays(nreplayed);
	}
	table_close(entries, NoLock);
	table_close(accounts, NoLock);
	MemoryContextDelete(scratch);
	PlSpiEnd(&priv);
	return (Datum) 0;
}
