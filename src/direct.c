/*-------------------------------------------------------------------------
 *
 * direct.c
 *	  Direct heap and index access for the append-only tables.
 *
 * Rows of entries, transfers and the audit log are only ever inserted, by
 * payledger itself, so on the hot path they skip the executor: the tuple
 * is formed, inserted with simple_heap_insert() (WAL-logged, logically
 * decodable, counted for autovacuum like any insert) and added to each of
 * the table's indexes.  That saves an executor start and finish per row,
 * which is most of what an INSERT costs.  Indexes with expressions or
 * predicates, which a DBA may add, are evaluated through a small EState.
 * Insert triggers do not fire; payledger's tables have none (the guards
 * are UPDATE/DELETE/TRUNCATE triggers).
 *
 * The idempotency lookup is a plain index probe for the same reason.
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
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "payledger.h"

Relation
PlOpenTable(const char *relname)
{
	Oid			nsp = get_namespace_oid("payledger", false);
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "payledger.%s is missing", relname);
	return table_open(relid, RowExclusiveLock);
}

static void
insert_index_entry(Relation rel, Relation idx, HeapTuple tup)
{
	IndexInfo  *ii = BuildIndexInfo(idx);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	IndexUniqueCheck check;

	if (!idx->rd_index->indisready)
		return;
	check = idx->rd_index->indisunique ?
		(idx->rd_index->indimmediate ? UNIQUE_CHECK_YES : UNIQUE_CHECK_PARTIAL) :
		UNIQUE_CHECK_NO;

	if (ii->ii_Expressions == NIL && ii->ii_Predicate == NIL)
	{
		for (int i = 0; i < ii->ii_NumIndexAttrs; i++)
			values[i] = heap_getattr(tup, ii->ii_IndexAttrNumbers[i],
									 RelationGetDescr(rel), &isnull[i]);
	}
	else
	{
		EState	   *estate = CreateExecutorState();
		ExprContext *econtext = GetPerTupleExprContext(estate);
		TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
														&TTSOpsHeapTuple);

		ExecStoreHeapTuple(tup, slot, false);
		econtext->ecxt_scantuple = slot;
		if (ii->ii_Predicate != NIL)
		{
			ExprState  *pred = ExecPrepareQual(ii->ii_Predicate, estate);

			if (!ExecQual(pred, econtext))
			{
				ExecDropSingleTupleTableSlot(slot);
				FreeExecutorState(estate);
				return;
			}
		}
		FormIndexDatum(ii, slot, estate, values, isnull);
		ExecDropSingleTupleTableSlot(slot);
		FreeExecutorState(estate);
	}
	index_insert(idx, values, isnull, &tup->t_self, rel, check, false, ii);
}

/* Inserts one row into a payledger table and all of its indexes. */
void
PlDirectInsert(Relation rel, Datum *values, bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	List	   *indexes;
	ListCell   *lc;

	simple_heap_insert(rel, tup);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

		insert_index_entry(rel, idx, tup);
		index_close(idx, RowExclusiveLock);
	}
	list_free(indexes);
	heap_freetuple(tup);
}

/*
 * Looks up the idempotency row (scope, key) through its primary key with
 * the snapshot a new statement would get.  Returns a palloc'd copy or NULL.
 */
HeapTuple
PlIdemFetch(Relation rel, const pg_uuid_t *scope, const char *key,
			TupleDesc *desc)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	HeapTuple	result = NULL;
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_UUID_EQ, UUIDPGetDatum(scope));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(key));
	scan = systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, snap, 2, keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		result = heap_copytuple(tup);
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	*desc = RelationGetDescr(rel);
	return result;
}
