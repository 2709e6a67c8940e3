/*-------------------------------------------------------------------------
 *
 * direct.c
 *	  Direct heap and index access for the append-only tables.
 *
 * Rows of entries, transfers, legs and the audit log are only ever
 * inserted, by payledger itself, so on the hot path they skip the
 * executor: the tuple is formed, inserted with simple_heap_insert()
 * (WAL-logged, logically decodable, counted for autovacuum like any
 * insert) and added to each of the table's indexes.  That saves an
 * executor start and finish per row, which is most of what an INSERT
 * costs.  Indexes with expressions or predicates, which a DBA may add, are
 * evaluated through a small EState.
 * Insert triggers do not fire; payledger's tables have none (the guards
 * are UPDATE/DELETE/TRUNCATE triggers).
 *
 * Account rows are found by index probes and locked and updated in place;
 * the idempotency lookup is a plain index probe.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "miscadmin.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "optimizer/optimizer.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "payledger.h"
#include "layouts.h"
#include "direct.h"
#include "spi_plans.h"

/*
 * The shape of every table payledger writes without the executor, exactly
 * as its SQL scripts make it: columns (layouts.h), and the triggers,
 * indexes and CHECK constraints it has.  Direct writes fire no trigger, and
 * a rule or CHECK constraint would be skipped just the same, so a table
 * with anything else is refused (verify_table) rather than written behind
 * its back.  In the names of the audit log's months, "%s" is the month's
 * table name.
 */
typedef struct PlColumn
{
	const char *name;
	Oid			type;			/* InvalidOid: payledger.payment_state */
} PlColumn;

typedef struct PlTableShape
{
	const char *name;
	const PlColumn *columns;
	int			ncolumns;
	const char *const *triggers;
	const char *const *indexes;
	const char *const *checks;
} PlTableShape;

static const PlColumn accounts_columns[] = {
	{"id", UUIDOID},
	{"currency", TEXTOID},
	{"kind", TEXTOID},
	{"min_balance", INT8OID},
	{"status", TEXTOID},
	{"balance", INT8OID},
	{"pending_debits", INT8OID},
	{"pending_credits", INT8OID},
	{"version", INT8OID},
	{"metadata", JSONBOID},
	{"frozen_reason", TEXTOID},
	{"created_at", TIMESTAMPTZOID},
	{"updated_at", TIMESTAMPTZOID},
	{"has_limits", BOOLOID},
	{"owner_id", UUIDOID},
};

static const PlColumn entries_columns[] = {
	{"account_id", UUIDOID},
	{"account_version", INT8OID},
	{"transfer_id", UUIDOID},
	{"amount", INT8OID},
	{"balance_after", INT8OID},
	{"created_at", TIMESTAMPTZOID},
};

static const PlColumn holds_columns[] = {
	{"id", UUIDOID},
	{"from_account", UUIDOID},
	{"to_account", UUIDOID},
	{"amount", INT8OID},
	{"currency", TEXTOID},
	{"status", TEXTOID},
	{"expires_at", TIMESTAMPTZOID},
	{"posted_amount", INT8OID},
	{"idempotency_key", TEXTOID},
	{"metadata", JSONBOID},
	{"created_at", TIMESTAMPTZOID},
	{"updated_at", TIMESTAMPTZOID},
	{"correlation_id", UUIDOID},
};

static const PlColumn legs_columns[] = {
	{"transfer_id", UUIDOID},
	{"leg", INT4OID},
	{"from_account", UUIDOID},
	{"to_account", UUIDOID},
	{"amount", INT8OID},
};

static const PlColumn idempotency_keys_columns[] = {
	{"scope", UUIDOID},
	{"key", TEXTOID},
	{"operation", TEXTOID},
	{"request_hash", BYTEAOID},
	{"result_id", UUIDOID},
	{"status", TEXTOID},
	{"reason_code", TEXTOID},
	{"created_at", TIMESTAMPTZOID},
};

static const PlColumn audit_columns[] = {
	{"id", INT8OID},
	{"event_id", UUIDOID},
	{"correlation_id", UUIDOID},
	{"idempotency_key", TEXTOID},
	{"event_time", TIMESTAMPTZOID},
	{"server_time", TIMESTAMPTZOID},
	{"event_type", TEXTOID},
	{"previous_state", TEXTOID},
	{"new_state", TEXTOID},
	{"actor_type", TEXTOID},
	{"actor_id", TEXTOID},
	{"payment_id", UUIDOID},
	{"account_id", UUIDOID},
	{"counterparty_account_id", UUIDOID},
	{"amount_cents", INT8OID},
	{"currency", TEXTOID},
	{"merchant_id", UUIDOID},
	{"customer_id", UUIDOID},
	{"ip_address", TEXTOID},
	{"user_agent_hash", TEXTOID},
	{"device_id", TEXTOID},
	{"success", BOOLOID},
	{"reason_code", TEXTOID},
	{"error_message", TEXTOID},
	{"metadata", JSONBOID},
	{"created_at", TIMESTAMPTZOID},
	{"chain_id", UUIDOID},
	{"chain_seq", INT8OID},
	{"prev_hash", BYTEAOID},
	{"row_hash", BYTEAOID},
	{"txid", XID8OID},
	{"era", INT4OID},
	{"db_role", TEXTOID},
};

static const PlColumn payments_columns[] = {
	{"id", UUIDOID},
	{"merchant_id", UUIDOID},
	{"customer_id", UUIDOID},
	{"amount", INT8OID},
	{"currency", TEXTOID},
	{"state", InvalidOid},
	{"source_account", UUIDOID},
	{"merchant_account", UUIDOID},
	{"captured_amount", INT8OID},
	{"refunded_amount", INT8OID},
	{"disputed_amount", INT8OID},
	{"fee_amount", INT8OID},
	{"hold_id", UUIDOID},
	{"state_before_dispute", InvalidOid},
	{"correlation_id", UUIDOID},
	{"version", INT8OID},
	{"metadata", JSONBOID},
	{"authorized_at", TIMESTAMPTZOID},
	{"captured_at", TIMESTAMPTZOID},
	{"settlement_id", UUIDOID},
	{"dispute_hold_id", UUIDOID},
	{"created_at", TIMESTAMPTZOID},
	{"updated_at", TIMESTAMPTZOID},
};

static const PlColumn transfers_columns[] = {
	{"id", UUIDOID},
	{"kind", TEXTOID},
	{"status", TEXTOID},
	{"reason_code", TEXTOID},
	{"currency", TEXTOID},
	{"amount", INT8OID},
	{"from_account", UUIDOID},
	{"to_account", UUIDOID},
	{"idempotency_key", TEXTOID},
	{"request_hash", BYTEAOID},
	{"metadata", JSONBOID},
	{"created_at", TIMESTAMPTZOID},
};

static const PlColumn metric_counters_columns[] = {
	{"backend", INT4OID},
	{"metric", TEXTOID},
	{"labels", JSONBOID},
	{"value", INT8OID},
};
static const char *const no_names[] = {NULL};

static const char *const accounts_triggers[] = {"accounts_guard", "payledger_insert_guard", NULL};
static const char *const accounts_indexes[] = {"accounts_owner", "accounts_pkey", NULL};
static const char *const entries_triggers[] = {"entries_append_only", "payledger_insert_guard", NULL};
static const char *const entries_indexes[] = {"entries_pkey", NULL};
static const char *const holds_triggers[] = {"holds_guard", "payledger_insert_guard", NULL};
static const char *const holds_indexes[] = {
	"holds_metadata", "holds_pending", "holds_pending_expiry", "holds_pending_from",
	"holds_pending_to", "holds_pkey", "holds_settled_from", "holds_settled_to", NULL
};
static const char *const legs_triggers[] = {"legs_append_only", "payledger_insert_guard", NULL};
static const char *const legs_indexes[] = {"legs_from_account", "legs_pkey", "legs_to_account", NULL};
static const char *const idempotency_keys_triggers[] = {"payledger_insert_guard", NULL};
static const char *const idempotency_keys_indexes[] = {"idempotency_keys_pkey", NULL};
static const char *const audit_triggers[] = {"audit_append_only", "payledger_insert_guard", NULL};
static const char *const audit_indexes[] = {
	"payment_audit_log_delivery", "payment_audit_log_event_id_key", "payment_audit_log_payment",
	"payment_audit_log_pkey", NULL
};
static const char *const month_indexes[] = {
	"%s_delivery", "%s_event_id_key", "%s_payment", NULL
};
static const char *const month_checks[] = {"%s_range", NULL};
static const char *const metric_counters_triggers[] = {
	"metric_counters_guard", "payledger_insert_guard", NULL
};
static const char *const metric_counters_indexes[] = {"metric_counters_pkey", NULL};
static const char *const payments_triggers[] = {
	"payledger_insert_guard", "payments_1_state", "payments_2_guard", "payments_no_delete", NULL
};
static const char *const payments_indexes[] = {
	"payments_merchant", "payments_metadata", "payments_pkey", "payments_settlement", NULL
};
static const char *const transfers_triggers[] = {"payledger_insert_guard", "transfers_append_only", NULL};
static const char *const transfers_indexes[] = {
	"transfers_from_account", "transfers_metadata", "transfers_pkey", "transfers_rejected",
	"transfers_to_account", NULL
};

#define SHAPE(name, cols, triggers, indexes, checks) \
	{name, cols, lengthof(cols), triggers, indexes, checks}

static const PlTableShape shapes[] = {
	SHAPE("accounts", accounts_columns, accounts_triggers, accounts_indexes, no_names),
	SHAPE("entries", entries_columns, entries_triggers, entries_indexes, no_names),
	SHAPE("holds", holds_columns, holds_triggers, holds_indexes, no_names),
	SHAPE("legs", legs_columns, legs_triggers, legs_indexes, no_names),
	SHAPE("metric_counters", metric_counters_columns, metric_counters_triggers,
		  metric_counters_indexes, no_names),
	SHAPE("idempotency_keys", idempotency_keys_columns, idempotency_keys_triggers,
		  idempotency_keys_indexes, no_names),
	SHAPE("payment_audit_log", audit_columns, audit_triggers, audit_indexes, no_names),
	SHAPE("payments", payments_columns, payments_triggers, payments_indexes, no_names),
	SHAPE("transfers", transfers_columns, transfers_triggers, transfers_indexes, no_names),
};

/* a month of the audit log: the log's columns, its own indexes and range */
static const PlTableShape month_shape =
SHAPE(NULL, audit_columns, audit_triggers, month_indexes, month_checks);

StaticAssertDecl(lengthof(accounts_columns) == Natts_accounts, "layout of accounts");
StaticAssertDecl(lengthof(entries_columns) == Natts_entries, "layout of entries");
StaticAssertDecl(lengthof(holds_columns) == Natts_holds, "layout of holds");
StaticAssertDecl(lengthof(legs_columns) == Natts_legs, "layout of legs");
StaticAssertDecl(lengthof(idempotency_keys_columns) == Natts_idempotency_keys, "layout of idempotency_keys");
StaticAssertDecl(lengthof(audit_columns) == Natts_audit, "layout of audit");
StaticAssertDecl(lengthof(metric_counters_columns) == Natts_metric_counters, "layout of metric_counters");
StaticAssertDecl(lengthof(payments_columns) == Natts_payments, "layout of payments");
StaticAssertDecl(lengthof(transfers_columns) == Natts_transfers, "layout of transfers");

/*
 * Tables verified since their last relcache invalidation: any DDL on a
 * table (a trigger, index or constraint added) invalidates it, so the next
 * call in every backend checks it again.
 */
#define MAX_VERIFIED 64
static Oid	verified[MAX_VERIFIED];
static int	nverified = 0;

static void invalidate_index_cache(Oid relid);

static void
forget_verified(Oid relid)
{
	if (!OidIsValid(relid))
	{
		nverified = 0;
		return;
	}
	for (int i = 0; i < nverified; i++)
		if (verified[i] == relid)
			verified[i] = verified[--nverified];
}

/* one relcache callback for what this file keeps about relations */
static void
relation_changed(Datum arg, Oid relid)
{
	forget_verified(relid);
	invalidate_index_cache(relid);
}

static void
watch_relations(void)
{
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(relation_changed, (Datum) 0);
		registered = true;
	}
}

static bool
is_verified(Oid relid)
{
	for (int i = 0; i < nverified; i++)
		if (verified[i] == relid)
			return true;
	return false;
}

/* Is name one of names, where "%s" in names stands for the table's name? */
static bool
known_name(const char *const *names, const char *name, const char *table)
{
	for (int i = 0; names[i] != NULL; i++)
	{
		const char *pct = strstr(names[i], "%s");

		if (pct == NULL ? strcmp(names[i], name) == 0 :
			strncmp(name, names[i], pct - names[i]) == 0 &&
			strncmp(name + (pct - names[i]), table, strlen(table)) == 0 &&
			strcmp(name + (pct - names[i]) + strlen(table), pct + 2) == 0)
			return true;
	}
	return false;
}

static void
refuse(Relation rel, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s on payledger.%s was not made by payledger", what,
					RelationGetRelationName(rel)),
			 errdetail("payledger writes this table without the executor, so triggers, rules, constraints and indexes it does not know would be bypassed."),
			 errhint("Drop it; payledger refuses to write the table while it is there.")));
}

/* the columns, in order, with their types */
static void
verify_columns(Relation rel, const PlTableShape *shape, Oid nsp)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;

	/* a 0.2.0 audit log (ALTER EXTENSION UPDATE not yet run) has no db_role */
	if (shape->columns == audit_columns && natts == Natts_audit_0_2)
		natts = Natts_audit;
	/* nor do its accounts have owner_id */
	if (shape->columns == accounts_columns && natts == Natts_accounts_0_2)
		natts = Natts_accounts;
	if (desc->natts > shape->ncolumns || natts != shape->ncolumns)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payledger.%s does not have the columns payledger made",
						RelationGetRelationName(rel)),
				 errdetail("It has %d columns; payledger writes %d.", desc->natts,
						   shape->ncolumns)));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			type = shape->columns[i].type;

		if (!OidIsValid(type))
			type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
								   CStringGetDatum("payment_state"), ObjectIdGetDatum(nsp));
		if (att->attisdropped || strcmp(NameStr(att->attname), shape->columns[i].name) != 0 ||
			att->atttypid != type)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column %d of payledger.%s is not the column payledger made",
							i + 1, RelationGetRelationName(rel)),
					 errdetail("payledger writes column \"%s\" of type %s there.",
							   shape->columns[i].name, format_type_be(type))));
	}
}

/* The first rule on rel, by name (rules are found in pg_rewrite). */
static void
refuse_rules(Relation rel)
{
	Relation	rewrite;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (rel->rd_rules == NULL)
		return;
	rewrite = table_open(RewriteRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_rewrite_ev_class, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationGetRelid(rel)));
	scan = systable_beginscan(rewrite, RewriteRelRulenameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		refuse(rel, psprintf("rule \"%s\"",
							 NameStr(((Form_pg_rewrite) GETSTRUCT(tup))->rulename)));
	refuse(rel, "a rule");
}

/*
 * Refuses a table payledger would write directly unless it is exactly as
 * payledger made it: see PlTableShape.  The relcache has what is checked.
 */
static void
verify_table(Relation rel, const PlTableShape *shape, Oid nsp)
{
	const char *relname = RelationGetRelationName(rel);
	List	   *indexes;
	ListCell   *lc;

	verify_columns(rel, shape, nsp);
	if (rel->trigdesc != NULL)
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *trig = &rel->trigdesc->triggers[i];

			if (!known_name(shape->triggers, trig->tgname, relname) ||
				get_func_namespace(trig->tgfoid) != nsp)
				refuse(rel, psprintf("trigger \"%s\"", trig->tgname));
		}
	refuse_rules(rel);
	if (rel->rd_att->constr != NULL)
		for (int i = 0; i < rel->rd_att->constr->num_check; i++)
			if (!known_name(shape->checks, rel->rd_att->constr->check[i].ccname, relname))
				refuse(rel, psprintf("constraint \"%s\"", rel->rd_att->constr->check[i].ccname));
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		char	   *name = get_rel_name(lfirst_oid(lc));

		if (name == NULL || !known_name(shape->indexes, name, relname))
			refuse(rel, psprintf("index \"%s\"", name ? name : "?"));
	}
	list_free(indexes);
}

/* Verifies rel against shape once per backend and relcache invalidation. */
static void
verify_once(Relation rel, const PlTableShape *shape, Oid nsp)
{
	if (is_verified(RelationGetRelid(rel)))
		return;
	watch_relations();
	verify_table(rel, shape, nsp);
	if (nverified == MAX_VERIFIED)
		nverified = 0;
	verified[nverified++] = RelationGetRelid(rel);
}

/*
 * Opens a table of the ledger (RowExclusiveLock).  A table payledger writes
 * directly is verified on its first open in a backend (and after any DDL on
 * it): see PlTableShape.
 */
Relation
PlOpenTable(const char *relname)
{
	Relation	rel = PlTryOpenTable(relname);

	if (rel == NULL)
		elog(ERROR, "payledger.%s is missing", relname);
	return rel;
}

/* PlOpenTable, or NULL when the schema has no such table (not yet updated) */
Relation
PlTryOpenTable(const char *relname)
{
	Oid			nsp = get_namespace_oid("payledger", false);
	Oid			relid = get_relname_relid(relname, nsp);
	Relation	rel;

	if (!OidIsValid(relid))
		return NULL;
	rel = table_open(relid, RowExclusiveLock);
	if (!is_verified(relid))
		for (int i = 0; i < (int) lengthof(shapes); i++)
			if (strcmp(shapes[i].name, relname) == 0)
				verify_once(rel, &shapes[i], nsp);
	return rel;
}

/* Verifies a month of the audit log before a row is written into it. */
void
PlVerifyAuditMonth(Relation rel)
{
	if (!is_verified(RelationGetRelid(rel)))
		verify_once(rel, &month_shape, RelationGetNamespace(rel));
}

/* how the index checks uniqueness of a new entry */
static IndexUniqueCheck
unique_check(Relation idx)
{
	if (!idx->rd_index->indisunique)
		return UNIQUE_CHECK_NO;
	return idx->rd_index->indimmediate ? UNIQUE_CHECK_YES : UNIQUE_CHECK_PARTIAL;
}

/*
 * What inserting into an index needs beyond the tuple, per index and
 * backend: its IndexInfo and, for a partial index, its predicate ready to
 * run.  Building them is a catalog-cache walk and an expression
 * compilation, which every row would otherwise pay for every index.  Any
 * invalidation of a cached index drops the whole cache at the next insert
 * (never while an entry is in use).
 */
#define INDEX_CACHE_SIZE 32

typedef struct IndexCacheEntry
{
	Oid			indexoid;
	IndexInfo  *ii;
	ExprState  *predicate;		/* NULL unless a partial index */
} IndexCacheEntry;

static MemoryContext index_cache_cxt = NULL;
static IndexCacheEntry index_cache[INDEX_CACHE_SIZE];
static int	index_cache_used = 0;
static bool index_cache_stale = false;

static void
invalidate_index_cache(Oid relid)
{
	for (int i = 0; i < index_cache_used; i++)
		if (!OidIsValid(relid) || index_cache[i].indexoid == relid)
			index_cache_stale = true;
}

/*
 * The cached entry of idx (made now if missing); NULL for an index with
 * expressions, whose evaluation needs an EState of its own.
 */
static IndexCacheEntry *
index_cache_entry(Relation idx)
{
	IndexCacheEntry *entry;
	MemoryContext old;

	if (index_cache_cxt == NULL)
	{
		index_cache_cxt = AllocSetContextCreate(CacheMemoryContext, "payledger index cache",
												ALLOCSET_SMALL_SIZES);
		watch_relations();
	}
	if (index_cache_stale || index_cache_used == INDEX_CACHE_SIZE)
	{
		MemoryContextReset(index_cache_cxt);
		index_cache_used = 0;
		index_cache_stale = false;
	}
	for (int i = 0; i < index_cache_used; i++)
		if (index_cache[i].indexoid == RelationGetRelid(idx))
			return &index_cache[i];
	if (!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
		return NULL;

	old = MemoryContextSwitchTo(index_cache_cxt);
	entry = &index_cache[index_cache_used++];
	entry->indexoid = RelationGetRelid(idx);
	entry->ii = BuildIndexInfo(idx);
	entry->predicate = entry->ii->ii_Predicate == NIL ? NULL :
		ExecInitQual((List *) expression_planner((Expr *) entry->ii->ii_Predicate), NULL);
	MemoryContextSwitchTo(old);
	return entry;
}

/* where a row's partial-index predicates run: made at the row's first one */
typedef struct PredicateContext
{
	ExprContext *econtext;
	TupleTableSlot *slot;
} PredicateContext;

/* Does tup qualify for the partial index of entry? */
static bool
satisfies_predicate(IndexCacheEntry *entry, Relation rel, HeapTuple tup, PredicateContext *pc)
{
	if (pc->econtext == NULL)
	{
		pc->econtext = CreateStandaloneExprContext();
		pc->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tup, pc->slot, false);
		pc->econtext->ecxt_scantuple = pc->slot;
	}
	ResetExprContext(pc->econtext);
	return ExecQual(entry->predicate, pc->econtext);
}

/* The entry of an index with expressions, which a DBA may add, evaluated through an EState. */
static void
insert_expression_index_entry(Relation rel, Relation idx, HeapTuple tup)
{
	IndexInfo  *ii = BuildIndexInfo(idx);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	bool		qualifies = true;

	ExecStoreHeapTuple(tup, slot, false);
	econtext->ecxt_scantuple = slot;
	if (ii->ii_Predicate != NIL)
		qualifies = ExecQual(ExecPrepareQual(ii->ii_Predicate, estate), econtext);
	if (qualifies)
	{
		FormIndexDatum(ii, slot, estate, values, isnull);
		index_insert(idx, values, isnull, &tup->t_self, rel, unique_check(idx), false, ii);
	}
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
}

static void
insert_index_entry(Relation rel, Relation idx, HeapTuple tup, PredicateContext *pc)
{
	IndexCacheEntry *entry;
	IndexInfo	ii;
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	if (!idx->rd_index->indisready)
		return;
	entry = index_cache_entry(idx);
	if (entry == NULL)
	{
		insert_expression_index_entry(rel, idx, tup);
		return;
	}
	if (entry->predicate != NULL && !satisfies_predicate(entry, rel, tup, pc))
		return;
	for (int i = 0; i < entry->ii->ii_NumIndexAttrs; i++)
		values[i] = heap_getattr(tup, entry->ii->ii_IndexAttrNumbers[i],
								 RelationGetDescr(rel), &isnull[i]);

	/*
	 * An access method may keep state of its own in the IndexInfo (GIN its
	 * GinState, which points at the open relation): each insert gets a copy
	 * whose state lives only as long as the call's memory.
	 */
	ii = *entry->ii;
	ii.ii_AmCache = NULL;
	ii.ii_Context = CurrentMemoryContext;
	index_insert(idx, values, isnull, &tup->t_self, rel, unique_check(idx), false, &ii);
}

/* Adds tup, just written to rel, to each of rel's indexes. */
static void
insert_index_entries(Relation rel, HeapTuple tup)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	PredicateContext pc = {NULL, NULL};

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

		insert_index_entry(rel, idx, tup, &pc);
		index_close(idx, RowExclusiveLock);
	}
	if (pc.econtext != NULL)
	{
		ExecDropSingleTupleTableSlot(pc.slot);
		FreeExprContext(pc.econtext, true);
	}
	list_free(indexes);
}

/*
 * Every direct write and row lock of a request is behind PlRunRequest's
 * read-only check; a write that is not would, on a hot standby, fail for
 * want of a transaction id rather than as a write.
 */
static void
require_writable(Relation rel)
{
	if (XactReadOnly)
		PreventCommandIfReadOnly(psprintf("a write to payledger.%s", RelationGetRelationName(rel)));
}

/* Inserts one row into a payledger table and all of its indexes. */
void
PlDirectInsert(Relation rel, Datum *values, bool *nulls)
{
	HeapTuple	tup;

	require_writable(rel);
	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	simple_heap_insert(rel, tup);
	insert_index_entries(rel, tup);
	heap_freetuple(tup);
}

/* Copies the columns the posting code works with out of an account row. */
static void
read_account_columns(Relation rel, const pg_uuid_t *id, PlAccountRow *row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		isnull;

	row->id = *id;
	row->row_id = *id;
	row->currency = TextDatumGetCString(heap_getattr(row->tuple, Anum_accounts_currency, desc, &isnull));
	row->status = TextDatumGetCString(heap_getattr(row->tuple, Anum_accounts_status, desc, &isnull));
	row->min_balance = DatumGetInt64(heap_getattr(row->tuple, Anum_accounts_min_balance, desc, &isnull));
	row->has_floor = !isnull;
	row->balance = DatumGetInt64(heap_getattr(row->tuple, Anum_accounts_balance, desc, &isnull));
	row->pending_debits = DatumGetInt64(heap_getattr(row->tuple, Anum_accounts_pending_debits, desc, &isnull));
	row->pending_credits = DatumGetInt64(heap_getattr(row->tuple, Anum_accounts_pending_credits, desc, &isnull));
	row->version = DatumGetInt64(heap_getattr(row->tuple, Anum_accounts_version, desc, &isnull));
	row->has_limits = DatumGetBool(heap_getattr(row->tuple, Anum_accounts_has_limits, desc, &isnull));
	row->has_owner = false;
	if (desc->natts >= Anum_accounts_owner_id)
	{
		Datum		owner = heap_getattr(row->tuple, Anum_accounts_owner_id, desc, &isnull);

		row->has_owner = !isnull;
		if (!isnull)
			row->owner_id = *DatumGetUUIDP(owner);
	}
}

/*
 * Finds an account row through the primary key with the transaction's
 * snapshot (a new one per statement under READ COMMITTED; for PL_ROW_READ
 * inside a read function, the calling statement's) and, unless wait
 * is PL_ROW_READ, locks it FOR NO KEY UPDATE as SELECT ... FOR NO KEY UPDATE
 * would: a row updated after our snapshot is followed to its newest version
 * under READ COMMITTED, and is a serialization failure under REPEATABLE
 * READ and SERIALIZABLE.  PL_ROW_TRY gives up at once (PL_ROW_BUSY) on a
 * row another transaction has locked, or has changed since a REPEATABLE
 * READ snapshot.
 */
PlRowResult
PlFetchAccountRow(Relation rel, const pg_uuid_t *id, PlAccountRow *row, PlRowMode mode)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	found;
	ItemPointerData tid;
	Snapshot	snap = RegisterSnapshot(mode == PL_ROW_READ ? PlReadSnapshot() :
										GetTransactionSnapshot());
	TupleTableSlot *slot;
	TM_FailureData tmfd;
	TM_Result	res;
	bool		should_free;
	HeapTuple	tup;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_UUID_EQ, UUIDPGetDatum(id));
	scan = systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, snap, 1, &key);
	found = systable_getnext(scan);
	if (!HeapTupleIsValid(found))
	{
		systable_endscan(scan);
		UnregisterSnapshot(snap);
		return PL_ROW_MISSING;
	}
	if (mode == PL_ROW_READ)
	{
		row->tuple = heap_copytuple(found);
		row->tid = found->t_self;
		systable_endscan(scan);
		UnregisterSnapshot(snap);
		read_account_columns(rel, id, row);
		return PL_ROW_FOUND;
	}
	tid = found->t_self;
	systable_endscan(scan);

	require_writable(rel);
	slot = table_slot_create(rel, NULL);
	/*
	 * READ COMMITTED follows the row to its newest version; REPEATABLE READ
	 * and SERIALIZABLE must not use a version their snapshot cannot see.
	 */
	res = table_tuple_lock(rel, &tid, snap, slot, GetCurrentCommandId(true),
						   LockTupleNoKeyExclusive,
						   mode == PL_ROW_TRY ? LockWaitSkip : LockWaitBlock,
						   IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
						   &tmfd);
	/*
	 * A row we may skip is skipped, too, when our snapshot is too old for
	 * it: the caller has another row that may do.
	 */
	if (res == TM_WouldBlock ||
		(mode == PL_ROW_TRY && IsolationUsesXactSnapshot() &&
		 (res == TM_Updated || res == TM_Deleted)))
	{
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snap);
		return PL_ROW_BUSY;
	}
	if ((res == TM_Updated || res == TM_Deleted) && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (res != TM_Ok)
		elog(ERROR, "could not lock account row (result %d)", (int) res);
	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
	row->tuple = heap_copytuple(tup);
	row->tid = slot->tts_tid;
	row->tuple->t_self = slot->tts_tid;
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	read_account_columns(rel, id, row);
	return PL_ROW_FOUND;
}

/* Locks an account row, waiting for other lockers; false when it does not exist. */
bool
PlLockAccountRow(Relation rel, const pg_uuid_t *id, PlAccountRow *row)
{
	return PlFetchAccountRow(rel, id, row, PL_ROW_LOCK) == PL_ROW_FOUND;
}

/*
 * Writes a locked account row back with its new amounts and version.  The
 * row lock we hold means nobody else can have updated it.
 */
void
PlUpdateAccountRow(Relation rel, PlAccountRow *row, TimestampTz now)
{
	Datum		values[Natts_accounts];
	bool		nulls[Natts_accounts] = {false};
	bool		replace[Natts_accounts] = {false};
	HeapTuple	newtup;

	/*
	 * A row this call locked and changed; holds release what they reserved
	 * (the pending credits of an account with sub-balances are exact as the
	 * sum over its rows, holds.c).
	 */
	Assert(row->tuple != NULL && row->dirty);
	Assert(row->pending_debits >= 0 && (row->pending_credits >= 0 || row->has_sub_balances));
	values[Anum_accounts_balance - 1] = Int64GetDatum(row->balance);
	replace[Anum_accounts_balance - 1] = true;
	values[Anum_accounts_pending_debits - 1] = Int64GetDatum(row->pending_debits);
	replace[Anum_accounts_pending_debits - 1] = true;
	values[Anum_accounts_pending_credits - 1] = Int64GetDatum(row->pending_credits);
	replace[Anum_accounts_pending_credits - 1] = true;
	values[Anum_accounts_version - 1] = Int64GetDatum(row->version);
	replace[Anum_accounts_version - 1] = true;
	values[Anum_accounts_updated_at - 1] = TimestampTzGetDatum(now);
	replace[Anum_accounts_updated_at - 1] = true;

	newtup = heap_modify_tuple(row->tuple, RelationGetDescr(rel), values, nulls, replace);
	simple_heap_update(rel, &row->tid, newtup);

	/* a HOT update needs no new index entries; otherwise add them */
	if (!HeapTupleIsHeapOnly(newtup))
		insert_index_entries(rel, newtup);
	heap_freetuple(row->tuple);
	row->tuple = newtup;
	row->tid = newtup->t_self;
}

/*
 * Looks up the idempotency row (scope, key) through its primary key,
 * seeing everything committed up to now.  Returns a palloc'd copy or NULL.
 */
HeapTuple
PlIdemFetchLatest(Relation rel, const pg_uuid_t *scope, const char *key,
				  TupleDesc *desc)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	HeapTuple	result = NULL;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	ScanKeyEntryInitialize(&keys[0], 0, Inum_idempotency_keys_pkey_scope, BTEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_UUID_EQ, UUIDPGetDatum(scope));
	ScanKeyEntryInitialize(&keys[1], 0, Inum_idempotency_keys_pkey_key, BTEqualStrategyNumber,
						   InvalidOid, C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(key));
	scan = systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, snap, lengthof(keys), keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		result = heap_copytuple(tup);
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	*desc = RelationGetDescr(rel);
	return result;
}

/*
 * Rows of payments and holds, by their uuid primary key.  payments.c and
 * holds.c read, lock and rewrite them here rather than through SPI: each
 * statement would cost an executor start, a plan check and, for the
 * UPDATEs, the row triggers, on every step of a payment.
 */

/* index probe of rel's uuid primary key under snapshot; returns the TID */
static bool
probe_uuid_pkey(Relation rel, const pg_uuid_t *id, Snapshot snap, ItemPointer tid,
				HeapTuple *copy)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	found;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_UUID_EQ, UUIDPGetDatum(id));
	scan = systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, snap, 1, &key);
	found = systable_getnext(scan);
	if (HeapTupleIsValid(found))
	{
		*tid = found->t_self;
		if (copy)
			*copy = heap_copytuple(found);
	}
	systable_endscan(scan);
	return HeapTupleIsValid(found);
}

/*
 * The row of rel whose primary key is id, as a statement of this
 * transaction would see it now, or inside a read function as the calling
 * statement sees it (no lock); a palloc'd copy or NULL.
 */
HeapTuple
PlFetchRow(Relation rel, const pg_uuid_t *id)
{
	Snapshot	snap = RegisterSnapshot(PlReadSnapshot());
	ItemPointerData tid;
	HeapTuple	copy = NULL;

	(void) probe_uuid_pkey(rel, id, snap, &tid, &copy);
	UnregisterSnapshot(snap);
	return copy;
}

/*
 * Locks the newest version of rel's row with primary key id in the given
 * mode, like SELECT ... FOR UPDATE would (see PlLockAccountRow), and
 * returns a palloc'd copy with t_self set, or NULL when there is no such
 * row.
 */
HeapTuple
PlLockRow(Relation rel, const pg_uuid_t *id, LockTupleMode mode)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	ItemPointerData tid;
	TupleTableSlot *slot;
	TM_FailureData tmfd;
	TM_Result	res;
	bool		should_free;
	HeapTuple	copy;

	if (!probe_uuid_pkey(rel, id, snap, &tid, NULL))
	{
		UnregisterSnapshot(snap);
		return NULL;
	}
	require_writable(rel);
	slot = table_slot_create(rel, NULL);
	res = table_tuple_lock(rel, &tid, snap, slot, GetCurrentCommandId(true), mode,
						   LockWaitBlock,
						   IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
						   &tmfd);
	if ((res == TM_Updated || res == TM_Deleted) && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (res == TM_Deleted)
	{
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snap);
		return NULL;
	}
	if (res != TM_Ok)
		elog(ERROR, "could not lock row of \"%s\" (result %d)",
			 RelationGetRelationName(rel), (int) res);
	copy = heap_copytuple(ExecFetchSlotHeapTuple(slot, false, &should_free));
	copy->t_self = slot->tts_tid;
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	return copy;
}

/*
 * Replaces a row this transaction has locked (oldtup, from PlLockRow) by
 * newtup: a HOT update when no indexed column changed and the page has
 * room, otherwise new entries in every index (partial ones only where the
 * new row qualifies).  Row triggers do not fire: the callers do what
 * payments' and holds' triggers would (state machine, version).
 */
void
PlDirectUpdate(Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	require_writable(rel);
	simple_heap_update(rel, &oldtup->t_self, newtup);
	if (!HeapTupleIsHeapOnly(newtup))
		insert_index_entries(rel, newtup);
}

/* Is tup the counter row of (backend, metric, labels)? */
static bool
is_counter_row(Relation rel, HeapTuple tup, int32 backend, const char *metric, Datum labels)
{
	Datum		values[Natts_metric_counters];
	bool		isnull[Natts_metric_counters];
	Datum		row_labels;

	heap_deform_tuple(tup, RelationGetDescr(rel), values, isnull);
	Assert(!isnull[Anum_metric_counters_backend - 1] && !isnull[Anum_metric_counters_metric - 1] &&
		   !isnull[Anum_metric_counters_labels - 1]);
	if (DatumGetInt32(values[Anum_metric_counters_backend - 1]) != backend ||
		strcmp(TextDatumGetCString(values[Anum_metric_counters_metric - 1]), metric) != 0)
		return false;
	/* the same jsonb_in() of the same text made both, as a rule */
	row_labels = values[Anum_metric_counters_labels - 1];
	if (!VARATT_IS_EXTENDED(DatumGetPointer(labels)) &&
		!VARATT_IS_COMPRESSED(DatumGetPointer(row_labels)) &&
		!VARATT_IS_EXTERNAL(DatumGetPointer(row_labels)) &&
		VARSIZE_ANY_EXHDR(DatumGetPointer(row_labels)) == VARSIZE_ANY_EXHDR(DatumGetPointer(labels)) &&
		memcmp(VARDATA_ANY(DatumGetPointer(row_labels)), VARDATA_ANY(DatumGetPointer(labels)),
			   VARSIZE_ANY_EXHDR(DatumGetPointer(labels))) == 0)
		return true;
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, row_labels, labels));
}

/*
 * The counter row at tid if it is there and it is the newest version of
 * (backend, metric, labels) (see PlAddCounters): a palloc'd copy, or NULL.
 */
static HeapTuple
counter_at(Relation rel, ItemPointer tid, int32 backend, const char *metric, Datum labels)
{
	HeapTupleData tuple;
	Buffer		buf;
	HeapTuple	copy = NULL;

	tuple.t_self = *tid;
	if (!heap_fetch(rel, SnapshotSelf, &tuple, &buf, false))
		return NULL;
	if (is_counter_row(rel, &tuple, backend, metric, labels))
		copy = heap_copytuple(&tuple);

	/*
	 * An index scan would prune the page's dead versions on the way; do as
	 * it does, so that the next version finds room on the page (HOT).
	 */
	heap_page_prune_opt(rel, buf);
	ReleaseBuffer(buf);
	return copy;
}

/* The counter row of (backend, metric, labels) by the primary key, or NULL. */
static HeapTuple
probe_counter(Relation rel, Relation pkey, int32 backend, const char *metric, Datum labels)
{
	ScanKeyData keys[3];
	SysScanDesc scan;
	HeapTuple	found;
	HeapTuple	copy = NULL;

	ScanKeyEntryInitialize(&keys[0], 0, Inum_metric_counters_pkey_backend, BTEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_INT4EQ, Int32GetDatum(backend));
	ScanKeyEntryInitialize(&keys[1], 0, Inum_metric_counters_pkey_metric, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[Inum_metric_counters_pkey_metric - 1],
						   F_TEXTEQ, CStringGetTextDatum(metric));
	ScanKeyEntryInitialize(&keys[2], 0, Inum_metric_counters_pkey_labels, BTEqualStrategyNumber,
						   InvalidOid, InvalidOid, F_JSONB_EQ, labels);
	scan = systable_beginscan(rel, RelationGetRelid(pkey), true, SnapshotSelf, lengthof(keys), keys);
	found = systable_getnext(scan);
	if (HeapTupleIsValid(found))
		copy = heap_copytuple(found);
	systable_endscan(scan);
	return copy;
}

/*
 * Adds each delta to its counter row (backend, metric, labels) of
 * metric_counters, or makes the row.  Only the transaction holding the
 * advisory lock of backend (metrics.c) writes its rows, so the one version
 * SnapshotSelf sees is the newest: committed, or written earlier by this
 * transaction (also within this command), and nobody else can be updating
 * it.  value is not indexed, so updates are HOT while the page has room,
 * and the index entry then leads through the whole chain of versions: a
 * row is looked for first where the caller last saw it (where, which is
 * set to its new version), and through the index only when that is not
 * it (the version there was rolled back, or pruned and its slot reused).
 */
void
PlAddCounters(Relation rel, int32 backend, PlCounterDelta *counts, int n)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	Relation	pkey = NULL;

	for (int i = 0; i < n; i++)
	{
		PlCounterDelta *c = &counts[i];
		HeapTuple	old = NULL;
		Datum		values[Natts_metric_counters];
		bool		nulls[Natts_metric_counters] = {false};
		bool		replace[Natts_metric_counters] = {false};

		if (ItemPointerIsValid(&c->where) && ItemPointerGetBlockNumber(&c->where) < nblocks)
			old = counter_at(rel, &c->where, backend, c->metric, c->labels);
		if (old == NULL)
		{
			if (pkey == NULL)
				pkey = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
			old = probe_counter(rel, pkey, backend, c->metric, c->labels);
		}
		if (old != NULL)
		{
			bool		isnull;
			int64		value = DatumGetInt64(heap_getattr(old, Anum_metric_counters_value,
														   RelationGetDescr(rel), &isnull));
			HeapTuple	newtup;

			Assert(!isnull);
			values[Anum_metric_counters_value - 1] = Int64GetDatum(value + c->delta);
			replace[Anum_metric_counters_value - 1] = true;
			newtup = heap_modify_tuple(old, RelationGetDescr(rel), values, nulls, replace);
			PlDirectUpdate(rel, old, newtup);
			c->where = newtup->t_self;
			heap_freetuple(newtup);
			heap_freetuple(old);
		}
		else
		{
			values[Anum_metric_counters_backend - 1] = Int32GetDatum(backend);
			values[Anum_metric_counters_metric - 1] = CStringGetTextDatum(c->metric);
			values[Anum_metric_counters_labels - 1] = c->labels;
			values[Anum_metric_counters_value - 1] = Int64GetDatum(c->delta);
			PlDirectInsert(rel, values, nulls);
			ItemPointerSetInvalid(&c->where);
		}
	}
	if (pkey != NULL)
		index_close(pkey, AccessShareLock);
}

Relation
PlOpenEntries(void)
{
	return PlOpenTable("entries");
}

Relation
PlOpenAccounts(void)
{
	return PlOpenTable("accounts");
}
