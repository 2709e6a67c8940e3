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
#include "miscadmin.h"
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
#include "layouts.h"
#include "direct.h"

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
}

/*
 * Finds an account row through the primary key with the transaction's
 * snapshot (a new one per statement under READ COMMITTED) and, unless wait
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
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
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
	{
		List	   *indexes = RelationGetIndexList(rel);
		ListCell   *lc;

		foreach(lc, indexes)
		{
			Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

			insert_index_entry(rel, idx, newtup);
			index_close(idx, RowExclusiveLock);
		}
		list_free(indexes);
	}
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

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_UUID_EQ, UUIDPGetDatum(scope));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(key));
	scan = systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, snap, 2, keys);
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
 * transaction would see it now (no lock); a palloc'd copy or NULL.
 */
HeapTuple
PlFetchRow(Relation rel, const pg_uuid_t *id)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
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
	simple_heap_update(rel, &oldtup->t_self, newtup);
	if (!HeapTupleIsHeapOnly(newtup))
	{
		List	   *indexes = RelationGetIndexList(rel);
		ListCell   *lc;

		foreach(lc, indexes)
		{
			Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

			insert_index_entry(rel, idx, newtup);
			index_close(idx, RowExclusiveLock);
		}
		list_free(indexes);
	}
}

Relation
PlOpenEntries(void)
{
	Relation	rel = PlOpenTable("entries");

	if (RelationGetDescr(rel)->natts != Natts_entries)
		elog(ERROR, "payledger.entries does not have the expected columns");
	return rel;
}

Relation
PlOpenAccounts(void)
{
	Relation	rel = PlOpenTable("accounts");

	if (RelationGetDescr(rel)->natts != Natts_accounts)
		elog(ERROR, "payledger.accounts does not have the expected columns");
	return rel;
}
