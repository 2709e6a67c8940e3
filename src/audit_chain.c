/*-------------------------------------------------------------------------
 *
 * audit_chain.c
 *	  Tamper evidence for the audit log: hash chains, the verifier and
 *	  checkpoints.
 *
 * Design note: chains.
 *
 * Each session appends its audit rows to a chain of its own: a UUID
 * chain_id, a chain_seq counting 1, 2, 3, ... and, per row, prev_hash (the
 * previous row's row_hash, 32 zero bytes for the first) and row_hash =
 * SHA-256 over every other column of the row, id, txid, era and db_role
 * included.  A column added after 0.2.0 (db_role) is left out of the hash
 * only where it is NULL, as in every row written before it existed, so
 * those rows still verify; new rows always have it, so it is covered.  A session never
 * waits for another to extend its chain, so unrelated payments never
 * serialize on a global lock.  When a transaction or subtransaction of the
 * session aborts, the rows it wrote vanish, so the session starts a new
 * chain rather than continue one with a hole; after a PREPARE TRANSACTION
 * it does the same, since ROLLBACK PREPARED may still make them vanish.
 *
 * verify_audit_log() walks every chain and reports the first row whose
 * hash, sequence or link is wrong, or that belongs to no chain: a row
 * changed, deleted, inserted or reordered behind the triggers' back.  What
 * a superuser who rewrites a whole chain consistently, or cuts its tail,
 * leaves behind is caught against a checkpoint taken earlier and kept
 * outside the database: audit_checkpoint() returns every chain's head and
 * an HMAC over all of them; verify_audit_log(checkpoint) checks that each
 * head is still there, unchanged, and that no chain appeared among the rows
 * the checkpoint covered.  Chains that went with an archived month are
 * vouched for by its record in payledger.audit_archives, and only by a
 * record that checks out; a checkpoint lists the records' signatures, so
 * one deleted or replaced later is caught too.
 *
 * Hashing is over the stored binary form of each column (fixed-width
 * values as stored, varlena contents detoasted), so the writer and the
 * verifier agree without printing anything.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/audit_chain.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "layouts.h"
#include "spi_plans.h"
#include "audit.h"

/* this session's chain; chain_seq 0 means "start a new chain" */
static Oid	chain_relid = InvalidOid;	/* the audit table it lives in */
static pg_uuid_t chain_id;
static int64 chain_seq = 0;
static uint8 chain_head[PL_SHA256_LEN];

/*
 * After an abort the rows the transaction wrote are gone.  After a PREPARE
 * they are neither committed nor gone: COMMIT PREPARED or ROLLBACK PREPARED
 * decides, later, maybe in another session.  Either way the next row of
 * this session starts a new chain, so that the prepared transaction's rows
 * are the tail of their chain: a ROLLBACK PREPARED cuts that tail off and
 * leaves no hole in the middle of a chain.
 */
static void
restart_chain_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		chain_seq = 0;
}

static void
restart_chain_on_subabort(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		chain_seq = 0;
}

void
AuditChainInit(void)
{
	RegisterXactCallback(restart_chain_on_abort, NULL);
	RegisterSubXactCallback(restart_chain_on_subabort, NULL);
}

/*
 * SHA-256 over every column of a row but row_hash itself, each as a tag, a
 * length and its stored bytes.
 */
static void
hash_row(TupleDesc desc, Datum *values, bool *nulls, uint8 *out)
{
	int			nhash = desc->natts;

	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not start SHA-256");
	for (int i = 0; i < nhash; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		uint8		tag[5];
		const uint8 *data;
		uint32		len;
		char		fixed[8];

		if (att->attisdropped || i == Anum_audit_row_hash - 1)
			continue;
		/* columns added since 0.2.0 are NULL in older rows, hashed without them */
		if (i >= Natts_audit_0_2 && nulls[i])
			continue;
		if (nulls[i])
		{
			data = NULL;
			len = 0;
			tag[0] = 'N';
		}
		else if (att->attlen == -1)
		{
			struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[i]));

			data = (const uint8 *) VARDATA_ANY(v);
			len = VARSIZE_ANY_EXHDR(v);
			tag[0] = 'V';
		}
		else if (att->attbyval)
		{
			store_att_byval(fixed, values[i], att->attlen);
			data = (const uint8 *) fixed;
			len = att->attlen;
			tag[0] = 'B';
		}
		else
		{
			data = (const uint8 *) DatumGetPointer(values[i]);
			len = att->attlen;
			tag[0] = 'F';
		}
		memcpy(tag + 1, &len, 4);
		if (pg_cryptohash_update(ctx, tag, 5) < 0 ||
			(len > 0 && pg_cryptohash_update(ctx, data, len) < 0))
			elog(ERROR, "could not hash an audit row");
	}
	if (pg_cryptohash_final(ctx, out, PL_SHA256_LEN) < 0)
		elog(ERROR, "could not finish SHA-256");
	pg_cryptohash_free(ctx);
}

static bytea *
make_bytea(const uint8 *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/*
 * Fills the chain columns of an audit row (all other columns already set)
 * and advances this session's chain.
 */
void
PlAuditChainFill(Oid relid, TupleDesc desc, Datum *values, bool *nulls)
{
	static pg_uuid_t id_copy;
	uint8		row_hash[PL_SHA256_LEN];

	/* the extension was dropped and created again in this session */
	if (relid != chain_relid)
	{
		chain_relid = relid;
		chain_seq = 0;
	}
	if (chain_seq == 0)
	{
		PlUuidV7(&chain_id);
		memset(chain_head, 0, sizeof(chain_head));
	}
	id_copy = chain_id;
	values[Anum_audit_chain_id - 1] = UUIDPGetDatum(&id_copy);
	nulls[Anum_audit_chain_id - 1] = false;
	values[Anum_audit_chain_seq - 1] = Int64GetDatum(chain_seq + 1);
	nulls[Anum_audit_chain_seq - 1] = false;
	values[Anum_audit_prev_hash - 1] = PointerGetDatum(make_bytea(chain_head, PL_SHA256_LEN));
	nulls[Anum_audit_prev_hash - 1] = false;
	hash_row(desc, values, nulls, row_hash);
	values[Anum_audit_row_hash - 1] = PointerGetDatum(make_bytea(row_hash, PL_SHA256_LEN));
	nulls[Anum_audit_row_hash - 1] = false;

	/* the row is about to be inserted; a later abort restarts the chain */
	chain_seq++;
	memcpy(chain_head, row_hash, PL_SHA256_LEN);
}

typedef struct VerifyState
{
	bool		ok;
	int64		rows;
	pg_uuid_t	bad_event;
	bool		has_bad_event;
	char	   *problem;
} VerifyState;

static void
verify_init(VerifyState *st)
{
	st->ok = true;
	st->rows = 0;
	st->has_bad_event = false;
	st->problem = NULL;
}

static void
fail(VerifyState *st, Datum event_id, bool event_null, const char *problem)
{
	if (!st->ok)
		return;
	st->ok = false;
	if (!event_null)
	{
		st->bad_event = *DatumGetUUIDP(event_id);
		st->has_bad_event = true;
	}
	st->problem = pstrdup(problem);
}

static bool
bytea_eq(Datum d, const uint8 *expect)
{
	bytea	   *b = DatumGetByteaPP(d);

	return VARSIZE_ANY_EXHDR(b) == PL_SHA256_LEN &&
		memcmp(VARDATA_ANY(b), expect, PL_SHA256_LEN) == 0;
}

/* a checkpoint's view of one chain */
typedef struct CheckpointChain
{
	pg_uuid_t	chain_id;
	int64		seq;
	uint8		hash[PL_SHA256_LEN];
	bool		seen;
} CheckpointChain;

/* an archive record of payledger.audit_archives that checked out */
typedef struct ArchiveRecord
{
	char	   *partition;
	char	   *signature;
	CheckpointChain *chains;
	int			nchains;
	bool		listed;			/* the checkpoint being verified lists it */
} ArchiveRecord;

typedef struct ArchiveSet
{
	ArchiveRecord *records;
	int			n;
} ArchiveSet;

static CheckpointChain *
find_chain(CheckpointChain *chains, int n, const pg_uuid_t *id)
{
	for (int i = 0; i < n; i++)
		if (memcmp(chains[i].chain_id.data, id->data, UUID_LEN) == 0)
			return &chains[i];
	return NULL;
}

/* The member "name" of a JSON object, or NULL when it has none. */
static JsonbValue *
json_field(Jsonb *obj, const char *name)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	return findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
}

/* The int8 field "name" of a checkpoint, or -1 when it has none. */
static int64
checkpoint_int(Jsonb *cp, const char *name)
{
	JsonbValue *v = json_field(cp, name);

	if (v == NULL || v->type != jbvNumeric)
		return -1;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

/* The string field "name" of a JSON object, or NULL when it has none. */
static char *
checkpoint_text(Jsonb *obj, const char *name)
{
	JsonbValue *v = json_field(obj, name);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static void
parse_checkpoint(Jsonb *cp, CheckpointChain **chains, int *nchains, int64 *max_id)
{
	JsonbValue	k;
	JsonbValue *arr;
	int			n;

	if (!JB_ROOT_IS_OBJECT(cp))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint must be a JSON object from audit_checkpoint()")));
	*max_id = checkpoint_int(cp, "max_id");
	if (*max_id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint has no max_id")));
	k.type = jbvString;
	k.val.string.val = "chains";
	k.val.string.len = 6;
	arr = findJsonbValueFromContainer(&cp->root, JB_FOBJECT, &k);
	if (arr == NULL || arr->type != jbvBinary || !JsonContainerIsArray(arr->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint has no chains array")));
	n = JsonContainerSize(arr->val.binary.data);
	*chains = palloc0(sizeof(CheckpointChain) * Max(n, 1));
	*nchains = n;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(arr->val.binary.data, i);
		JsonbValue *f;
		char	   *s;

		if (elem == NULL || elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint chain %d is not an object", i)));
		k.val.string.val = "chain_id";
		k.val.string.len = 8;
		f = findJsonbValueFromContainer(elem->val.binary.data, JB_FOBJECT, &k);
		if (f == NULL || f->type != jbvString ||
			!PlParseUuid(pnstrdup(f->val.string.val, f->val.string.len), &(*chains)[i].chain_id))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint chain %d has no chain_id", i)));
		k.val.string.val = "last_seq";
		k.val.string.len = 8;
		f = findJsonbValueFromContainer(elem->val.binary.data, JB_FOBJECT, &k);
		if (f == NULL || f->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint chain %d has no last_seq", i)));
		(*chains)[i].seq = DatumGetInt64(DirectFunctionCall1(numeric_int8,
															 NumericGetDatum(f->val.numeric)));
		k.val.string.val = "last_hash";
		k.val.string.len = 9;
		f = findJsonbValueFromContainer(elem->val.binary.data, JB_FOBJECT, &k);
		if (f == NULL || f->type != jbvString || f->val.string.len != PL_SHA256_LEN * 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint chain %d has no last_hash", i)));
		s = pnstrdup(f->val.string.val, f->val.string.len);
		if (hex_decode(s, PL_SHA256_LEN * 2, (char *) (*chains)[i].hash) != PL_SHA256_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint chain %d has a malformed last_hash", i)));
	}
}

static bool checkpoint_signed(Jsonb *checkpoint);

/* audit_archives came with 0.2.0: a database still on 0.1.0 has none */
static bool
archives_exist(void)
{
	return OidIsValid(get_relname_relid("audit_archives", get_namespace_oid("payledger", false)));
}

/*
 * Reads the records of payledger.audit_archives and keeps those that check
 * out: the signature matches; the signed checkpoint names the record's
 * month, range, row count and event counts; the range is the one
 * create_audit_partitions() gave the month; and the month is no longer
 * attached to the log.  A record failing any of these is reported and not
 * used: a forged record must not vouch for chains deleted from the log.
 */
/* columns of load_archives()'s query */
enum
{
	ARCHIVE_NAME = 1, ARCHIVE_CHECKPOINT, ARCHIVE_RECORD_MATCHES, ARCHIVE_RANGE_MATCHES,
	ARCHIVE_STILL_ATTACHED
};

static void
load_archives(VerifyState *st, ArchiveSet *set)
{
	set->n = 0;
	set->records = NULL;
	if (!archives_exist())
		return;
	if (SPI_execute("SELECT a.partition_name, a.checkpoint,"
					"  a.checkpoint->>'kind' IS NOT DISTINCT FROM 'archive'"
					"  AND a.checkpoint->>'partition' IS NOT DISTINCT FROM a.partition_name"
					"  AND a.checkpoint->>'range_from' IS NOT DISTINCT FROM a.range_from::text"
					"  AND a.checkpoint->>'range_to' IS NOT DISTINCT FROM a.range_to::text"
					"  AND a.checkpoint->>'rows' IS NOT DISTINCT FROM a.row_count::text"
					"  AND a.checkpoint->'event_counts' IS NOT DISTINCT FROM a.event_counts,"
					"  p.range_from IS NOT DISTINCT FROM a.range_from"
					"  AND p.range_to IS NOT DISTINCT FROM a.range_to,"
					"  EXISTS (SELECT FROM pg_catalog.pg_inherits i"
					"          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
					"          WHERE c.relname = a.partition_name"
					"            AND c.relnamespace = 'payledger'::pg_catalog.regnamespace"
					"            AND i.inhparent = 'payledger.payment_audit_log'::pg_catalog.regclass)"
					" FROM payledger.audit_archives a"
					" LEFT JOIN payledger.audit_partitions p USING (partition_name)"
					" ORDER BY a.partition_name", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read payledger.audit_archives");
	set->records = palloc0(sizeof(ArchiveRecord) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = SPI_getvalue(tup, desc, ARCHIVE_NAME);
		Jsonb	   *cp = DatumGetJsonbP(SPI_getbinval(tup, desc, ARCHIVE_CHECKPOINT, &isnull));
		ArchiveRecord *rec = &set->records[set->n];
		int64		max_id;

		if (!checkpoint_signed(cp) ||
			!DatumGetBool(SPI_getbinval(tup, desc, ARCHIVE_RECORD_MATCHES, &isnull)))
			fail(st, (Datum) 0, true, psprintf("the archive record of %s does not match its signature (edited or forged)",
											   name));
		else if (!DatumGetBool(SPI_getbinval(tup, desc, ARCHIVE_RANGE_MATCHES, &isnull)))
			fail(st, (Datum) 0, true, psprintf("the archive record of %s does not match the month create_audit_partitions() made (forged)",
											   name));
		else if (DatumGetBool(SPI_getbinval(tup, desc, ARCHIVE_STILL_ATTACHED, &isnull)))
			fail(st, (Datum) 0, true, psprintf("the archive record of %s names a month still attached to the log (forged)",
											   name));
		else
		{
			rec->partition = name;
			rec->signature = checkpoint_text(cp, "signature");
			parse_checkpoint(cp, &rec->chains, &rec->nchains, &max_id);
			set->n++;
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Chains of the checkpoint that are not in the log any more are fine when
 * an archived month took them: its checkpoint has them, at or past the
 * head this checkpoint saw.  Only a record that the checkpoint itself lists
 * may vouch: anything written into the database after the checkpoint, a
 * forged archive record for a month detached by hand included, cannot
 * account for rows missing from the log.
 */
static void
match_archived_chains(VerifyState *st, const ArchiveSet *set,
					  CheckpointChain *cp_chains, int cp_n)
{
	for (int r = 0; r < set->n; r++)
	{
		const ArchiveRecord *rec = &set->records[r];

		if (!rec->listed)
			continue;
		for (int i = 0; i < cp_n; i++)
		{
			CheckpointChain *a;

			if (cp_chains[i].seen ||
				(a = find_chain(rec->chains, rec->nchains, &cp_chains[i].chain_id)) == NULL)
				continue;
			cp_chains[i].seen = true;
			if (a->seq < cp_chains[i].seq)
				fail(st, (Datum) 0, true, psprintf("chain %s was cut after row %lld before it was archived; the checkpoint has %lld",
												   PlUuidText(&a->chain_id), (long long) a->seq,
												   (long long) cp_chains[i].seq));
			else if (a->seq == cp_chains[i].seq &&
					 memcmp(a->hash, cp_chains[i].hash, PL_SHA256_LEN) != 0)
				fail(st, (Datum) 0, true, psprintf("chain %s was archived with another head than the checkpoint has (chain rewritten)",
												   PlUuidText(&a->chain_id)));
		}
	}
}

/*
 * Every archive record a checkpoint lists ("archives", since 0.2.0) must
 * still be there with the signature it had; those are marked listed.
 */
static void
match_checkpoint_archives(VerifyState *st, ArchiveSet *set, Jsonb *checkpoint)
{
	JsonbValue *arr = json_field(checkpoint, "archives");
	int			n;

	if (arr == NULL)
		return;
	if (arr->type != jbvBinary || !JsonContainerIsArray(arr->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint's archives is not an array")));
	n = JsonContainerSize(arr->val.binary.data);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(arr->val.binary.data, i);
		Jsonb	   *obj;
		char	   *partition;
		char	   *signature;
		bool		found = false;

		if (elem == NULL || elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint archive %d is not an object", i)));
		obj = JsonbValueToJsonb(elem);
		partition = checkpoint_text(obj, "partition");
		signature = checkpoint_text(obj, "signature");
		if (partition == NULL || signature == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint archive %d has no partition or signature", i)));
		for (int r = 0; r < set->n && !found; r++)
		{
			found = strcmp(set->records[r].partition, partition) == 0 &&
				set->records[r].signature != NULL &&
				pg_strcasecmp(set->records[r].signature, signature) == 0;
			if (found)
				set->records[r].listed = true;
		}
		if (!found)
			fail(st, (Datum) 0, true, psprintf("the archive record of %s that the checkpoint lists is missing or was replaced",
											   partition));
	}
}

/* where verify() is in its walk over the rows of one source */
typedef struct ChainWalk
{
	const char *source;
	Jsonb	   *checkpoint;		/* NULL without one */
	CheckpointChain *cp_chains;
	int			cp_n;
	int64		cp_max_id;
	bool		in_chain;		/* cur_chain, prev_seq, prev_hash are set */
	pg_uuid_t	cur_chain;
	int64		prev_seq;
	uint8		prev_hash[PL_SHA256_LEN];
} ChainWalk;

/* The chain walked so far ends here: it must reach the checkpoint's head. */
static void
walk_end_chain(VerifyState *st, ChainWalk *w)
{
	CheckpointChain *c;

	if (!w->in_chain || w->checkpoint == NULL)
		return;
	c = find_chain(w->cp_chains, w->cp_n, &w->cur_chain);
	if (c && w->prev_seq < c->seq)
		fail(st, (Datum) 0, true, psprintf("chain %s was cut after row %lld; the checkpoint has %lld",
										   PlUuidText(&w->cur_chain), (long long) w->prev_seq,
										   (long long) c->seq));
}

/* A row of chain follows: when it starts another chain, end the one before. */
static void
walk_enter_chain(VerifyState *st, ChainWalk *w, const pg_uuid_t *chain)
{
	if (w->in_chain && memcmp(w->cur_chain.data, chain->data, UUID_LEN) == 0)
		return;
	walk_end_chain(st, w);
	w->cur_chain = *chain;
	w->in_chain = true;
	w->prev_seq = 0;
	memset(w->prev_hash, 0, sizeof(w->prev_hash));
}

/*
 * A row (chain, seq, id, its recomputed hash expect) against the
 * checkpoint: a row the checkpoint covers belongs to one of its chains, and
 * the row at a chain's head in the checkpoint still has that hash.
 */
static void
walk_check_checkpoint(VerifyState *st, ChainWalk *w, Datum event_id,
					  const pg_uuid_t *chain, int64 seq, int64 id, const uint8 *expect)
{
	CheckpointChain *c;

	if (w->checkpoint == NULL)
		return;
	c = find_chain(w->cp_chains, w->cp_n, chain);
	if (c == NULL && id <= w->cp_max_id)
		fail(st, event_id, false, "row is older than the checkpoint but its chain is not in it (inserted)");
	else if (c != NULL && seq == c->seq)
	{
		c->seen = true;
		if (memcmp(expect, c->hash, PL_SHA256_LEN) != 0)
			fail(st, event_id, false, "chain head differs from the checkpoint (chain rewritten)");
	}
}

/* The row's stored row_hash is what the next row of its chain links to. */
static void
walk_advance(ChainWalk *w, int64 seq, Datum row_hash)
{
	bytea	   *stored = DatumGetByteaPP(row_hash);

	w->prev_seq = seq;
	if (VARSIZE_ANY_EXHDR(stored) == PL_SHA256_LEN)
		memcpy(w->prev_hash, VARDATA_ANY(stored), PL_SHA256_LEN);
	else
		memset(w->prev_hash, 0xFF, PL_SHA256_LEN);
}

/*
 * One row of the walk, in chain order: it belongs to a chain, follows the
 * previous row of its chain in sequence and link, still has the hash it
 * was written with, and agrees with the checkpoint.
 */
static void
walk_row(VerifyState *st, ChainWalk *w, HeapTuple tup, TupleDesc desc)
{
	Datum		values[Natts_audit];
	bool		nulls[Natts_audit];
	uint8		expect[PL_SHA256_LEN];
	Datum		event_id;
	pg_uuid_t  *chain;
	int64		seq;

	if (desc->natts != Natts_audit && desc->natts != Natts_audit_0_2)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s does not have the columns of payledger.payment_audit_log", w->source)));
	heap_deform_tuple(tup, desc, values, nulls);
	st->rows++;
	event_id = values[Anum_audit_event_id - 1];
	if (nulls[Anum_audit_chain_id - 1] || nulls[Anum_audit_chain_seq - 1] ||
		nulls[Anum_audit_prev_hash - 1] || nulls[Anum_audit_row_hash - 1])
	{
		fail(st, event_id, nulls[Anum_audit_event_id - 1], "row belongs to no chain (inserted behind the triggers' back)");
		return;
	}
	chain = DatumGetUUIDP(values[Anum_audit_chain_id - 1]);
	seq = DatumGetInt64(values[Anum_audit_chain_seq - 1]);

	walk_enter_chain(st, w, chain);
	if (seq != w->prev_seq + 1)
		fail(st, event_id, false, psprintf("chain sequence jumps from %lld to %lld (a row was deleted or reordered)",
										   (long long) w->prev_seq, (long long) seq));
	else if (!bytea_eq(values[Anum_audit_prev_hash - 1], w->prev_hash))
		fail(st, event_id, false, "row does not link to the previous row of its chain");
	hash_row(desc, values, nulls, expect);
	if (!bytea_eq(values[Anum_audit_row_hash - 1], expect))
		fail(st, event_id, false, "row was changed after it was written");
	walk_check_checkpoint(st, w, event_id, chain, seq,
						  DatumGetInt64(values[Anum_audit_id - 1]), expect);
	walk_advance(w, seq, values[Anum_audit_row_hash - 1]);
}

/*
 * After the last row: the last chain reaches its head, and every chain of
 * the checkpoint was seen, here or (with archives) in an archived month.
 */
static void
walk_finish(VerifyState *st, ChainWalk *w, const ArchiveSet *archives)
{
	if (w->checkpoint == NULL)
		return;
	walk_end_chain(st, w);
	if (archives)
		match_archived_chains(st, archives, w->cp_chains, w->cp_n);
	for (int i = 0; i < w->cp_n; i++)
		if (!w->cp_chains[i].seen)
			fail(st, (Datum) 0, true, psprintf("chain %s of the checkpoint is missing its head (rows deleted)",
											   PlUuidText(&w->cp_chains[i].chain_id)));
}

/*
 * Walks every chain of source (a qualified table name): the audit log or
 * one archived month of it.  With a checkpoint, also checks that each of
 * its chain heads is still there (or, with archives, was archived).
 */
static void
verify(VerifyState *st, const char *source, Jsonb *checkpoint, const ArchiveSet *archives)
{
	ChainWalk	w;
	Portal		portal;
	SPIPlanPtr	plan;

	memset(&w, 0, sizeof(w));
	w.source = source;
	w.checkpoint = checkpoint;
	if (checkpoint)
		parse_checkpoint(checkpoint, &w.cp_chains, &w.cp_n, &w.cp_max_id);

	plan = SPI_prepare(psprintf("SELECT * FROM %s ORDER BY chain_id NULLS FIRST, chain_seq, id",
								source), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the audit scan");
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
			walk_row(st, &w, SPI_tuptable->vals[r], SPI_tuptable->tupdesc);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
	walk_finish(st, &w, archives);
}

/*
 * The signing key: the contents of payledger.audit_signing_key_file (a
 * file the server's user alone may read, its trailing newline dropped),
 * else payledger.audit_signing_key; NULL without either.
 */
static char *
signing_key(void)
{
	const char *path = pl_audit_signing_key_file;
	FILE	   *f;
	struct stat st;
	StringInfoData buf;
	char		chunk[1024];
	size_t		n;

	if (path == NULL || path[0] == '\0')
		return (pl_audit_signing_key && pl_audit_signing_key[0]) ? pl_audit_signing_key : NULL;
	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open audit signing key file \"%s\": %m", path)));
	if (fstat(fileno(f), &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat audit signing key file \"%s\": %m", path)));
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("audit signing key file \"%s\" is accessible to other users", path),
				 errdetail("It must be readable by the server's operating system user only (mode 0600 or 0400).")));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, n);
	FreeFile(f);
	while (buf.len > 0 && (buf.data[buf.len - 1] == '\n' || buf.data[buf.len - 1] == '\r'))
		buf.data[--buf.len] = '\0';
	if (buf.len == 0 || memchr(buf.data, '\0', buf.len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("audit signing key file \"%s\" holds no usable key", path),
				 errdetail("The key is the file's text without its trailing newline, and may not contain NUL bytes.")));
	return buf.data;
}

/* HMAC-SHA256 (or SHA-256 without a key) of a checkpoint's canonical text */
static void
sign_checkpoint(Jsonb *body, char *hex)
{
	char	   *text = JsonbToCString(NULL, &body->root, VARSIZE(body));
	uint8		sig[PL_SHA256_LEN];
	char	   *key = signing_key();

	if (key != NULL)
	{
		pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

		if (pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
			pg_hmac_update(ctx, (const uint8 *) text, strlen(text)) < 0 ||
			pg_hmac_final(ctx, sig, sizeof(sig)) < 0)
			elog(ERROR, "could not sign the checkpoint");
		pg_hmac_free(ctx);
	}
	else
		PlSha256(text, strlen(text), sig);
	hex_encode((const char *) sig, PL_SHA256_LEN, hex);
	hex[PL_SHA256_LEN * 2] = '\0';
}

/* Does the checkpoint carry the signature its content should have? */
static bool
checkpoint_signed(Jsonb *checkpoint)
{
	Jsonb	   *body = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete,
														  JsonbPGetDatum(checkpoint),
														  CStringGetTextDatum("signature")));
	JsonbValue *v = json_field(checkpoint, "signature");
	char		hex[PL_SHA256_LEN * 2 + 1];

	if (v == NULL || v->type != jbvString || v->val.string.len != PL_SHA256_LEN * 2)
		return false;
	sign_checkpoint(body, hex);
	return pg_strncasecmp(hex, v->val.string.val, PL_SHA256_LEN * 2) == 0;
}

bool
PlAuditVerifySource(const char *source, char **problem)
{
	VerifyState st;

	verify_init(&st);
	verify(&st, source, NULL, NULL);
	*problem = st.problem;
	return st.ok;
}

/*
 * columns of verify_audit_log()'s and verify_audit_archive()'s result,
 * 0-based
 */
enum
{
	RESULT_OK, RESULT_ROWS_CHECKED, RESULT_FIRST_BAD_EVENT, RESULT_PROBLEM, RESULT_NCOLS
};

/*
 * Verifies source (archive: a detached month, else the audit log with its
 * archive records) and returns the summary row.
 */
static Datum
verify_result(FunctionCallInfo fcinfo, const char *source, Jsonb *checkpoint, bool archive)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PlPrivState priv;
	VerifyState st;
	Datum		values[RESULT_NCOLS];
	bool		nulls[RESULT_NCOLS] = {false, false, false, false};

	InitMaterializedSRF(fcinfo, 0);
	PlSpiBegin(&priv);
	verify_init(&st);
	if (archive)
	{
		PlPrivState caller;
		int64		checkpoint_rows;

		/* the month is any table the caller names: read it with the caller's rights */
		PlUnprivilegedBegin(&caller);
		verify(&st, source, checkpoint, NULL);
		PlUnprivilegedEnd(&caller);
		checkpoint_rows = checkpoint_int(checkpoint, "rows");
		if (checkpoint_rows >= 0 && st.rows != checkpoint_rows)
			fail(&st, (Datum) 0, true, psprintf("the archive has %lld rows; its checkpoint has %lld (rows added or deleted)",
												(long long) st.rows, (long long) checkpoint_rows));
	}
	else
	{
		VerifyState records;
		ArchiveSet	set;

		verify_init(&records);
		load_archives(&records, &set);
		if (checkpoint)
			match_checkpoint_archives(&records, &set, checkpoint);
		verify(&st, source, checkpoint, &set);
		/* a bad archive record explains the chains it no longer vouches for */
		if (!records.ok)
		{
			st.ok = false;
			st.has_bad_event = false;
			st.problem = records.problem;
		}
	}
	if (checkpoint && !checkpoint_signed(checkpoint))
	{
		st.ok = false;
		st.has_bad_event = false;
		st.problem = "the checkpoint's signature does not match its content (forged or edited checkpoint, or another signing key)";
	}
	values[RESULT_OK] = BoolGetDatum(st.ok);
	values[RESULT_ROWS_CHECKED] = Int64GetDatum(st.rows);
	if (st.has_bad_event)
		values[RESULT_FIRST_BAD_EVENT] = UUIDPGetDatum(&st.bad_event);
	else
		nulls[RESULT_FIRST_BAD_EVENT] = true;
	if (st.problem)
		values[RESULT_PROBLEM] = CStringGetTextDatum(st.problem);
	else
		nulls[RESULT_PROBLEM] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	PlSpiEnd(&priv);
	return (Datum) 0;
}

/*
 * payledger.verify_audit_log() RETURNS TABLE(ok boolean, rows_checked
 *		bigint, first_bad_event_id uuid, problem text)
 */
PG_FUNCTION_INFO_V1(verify_audit_log);
Datum
verify_audit_log(PG_FUNCTION_ARGS)
{
	return verify_result(fcinfo, "payledger.payment_audit_log", NULL, false);
}

/*
 * payledger.verify_audit_log(checkpoint jsonb) RETURNS TABLE(...)
 *
 * Also checks the log against a checkpoint taken earlier.
 */
PG_FUNCTION_INFO_V1(verify_audit_log_checkpoint);
Datum
verify_audit_log_checkpoint(PG_FUNCTION_ARGS)
{
	PlRequireArg(fcinfo, 0, "checkpoint");
	return verify_result(fcinfo, "payledger.payment_audit_log", PG_GETARG_JSONB_P(0), false);
}

/*
 * An archive to verify is a plain table with the columns of the audit log,
 * type for type: what the hashes were computed over.  Any other relation is
 * a bad argument (22023), as archive_audit_partition() says of a table that
 * is not a month.
 */
static void
require_audit_columns(Oid relid, const char *relname)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	Relation	log = relation_open(get_relname_relid("payment_audit_log",
												   get_namespace_oid("payledger", false)),
									AccessShareLock);
	TupleDesc	have = RelationGetDescr(rel);
	TupleDesc	want = RelationGetDescr(log);
	bool		same = rel->rd_rel->relkind == RELKIND_RELATION &&
		(have->natts == want->natts || have->natts == Natts_audit_0_2);

	/* a month archived before 0.3.0 lacks the columns added since */
	for (int i = 0; same && i < have->natts; i++)
		same = !TupleDescAttr(have, i)->attisdropped &&
			TupleDescAttr(have, i)->atttypid == TupleDescAttr(want, i)->atttypid;
	relation_close(log, AccessShareLock);
	relation_close(rel, AccessShareLock);
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a table with the columns of payledger.payment_audit_log", relname),
				 errhint("Pass the month archive_audit_partition() detached, or a copy restored with its definition.")));
}

/*
 * payledger.verify_audit_archive(archive regclass, checkpoint jsonb DEFAULT
 *		NULL) RETURNS TABLE(ok boolean, rows_checked bigint,
 *		first_bad_event_id uuid, problem text)
 *
 * Checks a month detached by archive_audit_partition(), where it is or
 * restored anywhere else, against its archive checkpoint: the one given,
 * or the one payledger.audit_archives keeps under the table's name.
 */
PG_FUNCTION_INFO_V1(verify_audit_archive);
Datum
verify_audit_archive(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;
	char	   *source;
	Jsonb	   *checkpoint = NULL;

	PlRequireArg(fcinfo, 0, "archive");
	relid = PG_GETARG_OID(0);
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, relname);
	require_audit_columns(relid, relname);
	source = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
	if (!PG_ARGISNULL(1))
		checkpoint = PG_GETARG_JSONB_P(1);
	else
	{
		PlPrivState priv;
		MemoryContext caller = CurrentMemoryContext;
		Datum		arg = CStringGetTextDatum(relname);
		Oid			argtype = TEXTOID;

		PlSpiBegin(&priv);
		if (SPI_execute_with_args("SELECT checkpoint FROM payledger.audit_archives WHERE partition_name = $1",
								  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read payledger.audit_archives");
		if (SPI_processed == 1)
		{
			bool		isnull;
			Jsonb	   *cp = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));

			checkpoint = MemoryContextAlloc(caller, VARSIZE(cp));
			memcpy(checkpoint, cp, VARSIZE(cp));
		}
		PlSpiEnd(&priv);
		if (checkpoint == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("payledger.audit_archives has no archive named \"%s\"", relname),
					 errhint("Pass the checkpoint archive_audit_partition() returned.")));
	}
	return verify_result(fcinfo, source, checkpoint, true);
}

/*
 * payledger.audit_checkpoint() RETURNS jsonb
 *
 * {"max_id": n, "taken_at": ..., "rows": n, "chains": [{"chain_id",
 * "last_seq", "last_hash"}, ...], "archives": [{"partition", "signature"},
 * ...], "signature": hex} -- keep it outside the database.  "archives"
 * lists the archive records there are, so that one removed or replaced
 * later is caught.  The signature is an HMAC-SHA256 of the canonical jsonb
 * text of the rest under payledger.audit_signing_key when that is set, else
 * a plain SHA-256; verify_audit_log(checkpoint) refuses a checkpoint whose
 * signature does not match.
 */
PG_FUNCTION_INFO_V1(audit_checkpoint);
Datum
audit_checkpoint(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	MemoryContext caller = CurrentMemoryContext;
	Jsonb	   *extra = NULL;
	Jsonb	   *cp;
	Jsonb	   *result;

	PlSpiBegin(&priv);
	if (archives_exist())
	{
		bool		isnull;

		if (SPI_execute("SELECT pg_catalog.jsonb_build_object('archives', coalesce(pg_catalog.jsonb_agg("
						"  pg_catalog.jsonb_build_object('partition', partition_name,"
						"   'signature', checkpoint->>'signature') ORDER BY partition_name), '[]'))"
						" FROM payledger.audit_archives", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read payledger.audit_archives");
		extra = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	cp = PlAuditSourceCheckpoint("payledger.payment_audit_log", extra);
	result = MemoryContextAlloc(caller, VARSIZE(cp));
	memcpy(result, cp, VARSIZE(cp));
	PlSpiEnd(&priv);
	PG_RETURN_JSONB_P(result);
}

/*
 * The signed checkpoint of source (a qualified table name): its largest
 * id, row count and chain heads, and the members of extra (or NULL).
 * Runs inside PlSpiBegin/PlSpiEnd.
 */
Jsonb *
PlAuditSourceCheckpoint(const char *source, Jsonb *extra)
{
	Datum		arg = extra ? JsonbPGetDatum(extra) : (Datum) 0;
	Oid			type = JSONBOID;
	bool		isnull;
	Jsonb	   *body;
	char		hex[PL_SHA256_LEN * 2 + 1];

	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.jsonb_build_object("
									   " 'max_id', coalesce((SELECT pg_catalog.max(id) FROM %s), 0),"
									   " 'taken_at', pg_catalog.clock_timestamp(),"
									   " 'rows', (SELECT pg_catalog.count(*) FROM %s),"
									   " 'chains', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
									   "  'chain_id', chain_id, 'last_seq', chain_seq,"
									   "  'last_hash', pg_catalog.encode(row_hash, 'hex')) ORDER BY chain_id)"
									   "  FROM (SELECT DISTINCT ON (chain_id) chain_id, chain_seq, row_hash"
									   "        FROM %s WHERE chain_id IS NOT NULL"
									   "        ORDER BY chain_id, chain_seq DESC) h), '[]'))"
									   " OPERATOR(pg_catalog.||) coalesce($1, '{}')",
									   source, source, source),
							  1, &type, &arg, extra ? NULL : "n", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read the chain heads");
	body = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	sign_checkpoint(body, hex);
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(body),
											  DirectFunctionCall1(jsonb_in,
																  CStringGetDatum(psprintf("{\"signature\": \"%s\"}", hex)))));
}
