/*-------------------------------------------------------------------------
 *
 * sub_balances.c
 *	  Hot accounts: credits spread over sub-balance rows.
 *
 * A merchant account that every checkout credits is one row that every
 * transfer would lock until commit.  set_sub_balances() gives such an
 * account N sub-balance rows: accounts of their own (kind 'sub_balance', no
 * floor) that only ever receive credits.  A call that only credits the
 * account (a transfer, legs, batch items, a hold for it and its posting, a
 * capture, a split, a payout) locks one of them instead: this backend's
 * last one if it is free, else the next free one, and waits only when all
 * are taken.  A hold's pending credit rides on the row its call locked, so
 * the account's pending credits, like its balance, are the sum over its
 * rows.  Each
 * sub-balance row has its own version and entries, so the double-entry
 * checks hold row by row.
 *
 * Reads add them up: get_balance(), balance_at(), account_entries() and
 * check_ledger() report the account as the sum of its own row and its
 * sub-balances, from the statement's snapshot, so a balance is never stale
 * and nothing runs in the background.  A debit locks the account's own row
 * (debits of one account still queue, as they must for an exact floor) and,
 * when that row alone falls short, adds the committed sub-balances: they
 * never shrink, so counting only committed credits can only be stricter.
 *
 * Which accounts have sub-balances is cached per backend and dropped on a
 * relcache invalidation of payledger.sub_balances, which set_sub_balances()
 * sends.  A backend that has not seen a change yet behaves correctly either
 * way: it credits the account's own row, or a slot that still counts.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/sub_balances.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "common/int.h"
#include "fmgr.h"
#include "storage/backendid.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "payledger.h"
#include "util.h"
#include "layouts.h"
#include "spi_plans.h"
#include "audit.h"
#include "ledger.h"

#define PL_MAX_SUB_BALANCES 64

static HTAB *sb_hash = NULL;
static MemoryContext sb_cxt = NULL;
static bool sb_valid = false;
static Oid	sb_relid = InvalidOid;

typedef struct SlotRow
{
	pg_uuid_t	account_id;
	int32		slot;
	pg_uuid_t	sub_id;
	bool		active;
} SlotRow;

static void
sb_invalidate(Datum arg, Oid relid)
{
	/* before the table exists (older schema), any change may create it */
	if (relid == InvalidOid || relid == sb_relid || sb_relid == InvalidOid)
		sb_valid = false;
}

void
PlSubBalancesInit(void)
{
	CacheRegisterRelcacheCallback(sb_invalidate, (Datum) 0);
}

static int
slot_row_cmp(const void *a, const void *b)
{
	const SlotRow *x = a;
	const SlotRow *y = b;
	int			c = memcmp(x->account_id.data, y->account_id.data, UUID_LEN);

	if (c != 0)
		return c;
	return (x->slot > y->slot) - (x->slot < y->slot);
}

static PlSubBalances *
sb_entry(const pg_uuid_t *id)
{
	bool		found;
	PlSubBalances *e = hash_search(sb_hash, id, HASH_ENTER, &found);

	if (!found)
	{
		memset(((char *) e) + sizeof(pg_uuid_t), 0, sizeof(PlSubBalances) - sizeof(pg_uuid_t));
		e->last_used = -1;
	}
	return e;
}

/* (Re)reads payledger.sub_balances into the backend's cache. */
static void
sb_load(void)
{
	HASHCTL		ctl;
	Oid			nsp;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	SlotRow    *rows;
	int			nrows = 0;
	int			maxrows = 16;
	MemoryContext old;

	if (sb_cxt == NULL)
		sb_cxt = AllocSetContextCreate(CacheMemoryContext, "payledger sub-balances",
									   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(sb_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(PlSubBalances);
	ctl.hcxt = sb_cxt;
	sb_hash = hash_create("payledger sub-balances", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* an invalidation that arrives while we read makes the next call reload */
	sb_valid = true;
	nsp = get_namespace_oid("payledger", true);
	sb_relid = OidIsValid(nsp) ? get_relname_relid("sub_balances", nsp) : InvalidOid;
	if (!OidIsValid(sb_relid))
		return;					/* a schema from before 0.2.0 */

	old = MemoryContextSwitchTo(sb_cxt);
	rows = palloc(sizeof(SlotRow) * maxrows);
	rel = table_open(sb_relid, AccessShareLock);
	snap = RegisterSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;

		if (nrows == maxrows)
		{
			maxrows *= 2;
			rows = repalloc(rows, sizeof(SlotRow) * maxrows);
		}
		rows[nrows].account_id = *DatumGetUUIDP(heap_getattr(tup, Anum_sub_balances_account_id,
															   desc, &isnull));
		rows[nrows].slot = DatumGetInt32(heap_getattr(tup, Anum_sub_balances_slot, desc, &isnull));
		rows[nrows].sub_id = *DatumGetUUIDP(heap_getattr(tup, Anum_sub_balances_sub_account_id,
														   desc, &isnull));
		rows[nrows].active = DatumGetBool(heap_getattr(tup, Anum_sub_balances_active, desc, &isnull));
		nrows++;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);

	qsort(rows, nrows, sizeof(SlotRow), slot_row_cmp);
	for (int i = 0; i < nrows;)
	{
		PlSubBalances *acc = sb_entry(&rows[i].account_id);
		int			j = i;

		while (j < nrows && memcmp(rows[j].account_id.data, rows[i].account_id.data, UUID_LEN) == 0)
			j++;
		acc->all = palloc(sizeof(pg_uuid_t) * (j - i));
		acc->active = palloc(sizeof(pg_uuid_t) * (j - i));
		for (int k = i; k < j; k++)
		{
			PlSubBalances *sub = sb_entry(&rows[k].sub_id);

			sub->is_sub_balance = true;
			sub->account_id = rows[k].account_id;
			acc->all[acc->nall++] = rows[k].sub_id;
			if (rows[k].active)
				acc->active[acc->nactive++] = rows[k].sub_id;
		}
		i = j;
	}
	MemoryContextSwitchTo(old);
}

/*
 * The sub-balance facts of an account: NULL for a plain account.  The
 * result points into the cache and is valid until the next call.
 */
const PlSubBalances *
PlSubBalancesOf(const pg_uuid_t *id)
{
	if (!sb_valid)
		sb_load();
	return hash_search(sb_hash, id, HASH_FIND, NULL);
}

/*
 * Sub-balance rows are changed only through the account they belong to:
 * 22023 when a caller names one.
 */
void
PlRejectSubBalance(const pg_uuid_t *id)
{
	const PlSubBalances *sb = PlSubBalancesOf(id);

	if (sb != NULL && sb->is_sub_balance)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("account %s is a sub-balance of account %s",
						PlUuidText(id), PlUuidText(&sb->account_id)),
				 errhint("Name the account itself.")));
}

/*
 * Locks one active sub-balance row of account id for a credit and returns
 * it in *row as a row of that account: the account's own status, currency
 * and id, the sub-balance's amounts, version and tuple (row_id).  false
 * when the account does not exist.
 */
bool
PlLockSubBalance(Relation rel, const pg_uuid_t *id, PlAccountRow *row)
{
	const PlSubBalances *sb = PlSubBalancesOf(id);
	PlAccountRow account;
	pg_uuid_t  *slots;
	int			nactive;
	int			start;
	int			chosen = -1;
	PlRowResult res = PL_ROW_BUSY;

	if (sb == NULL || sb->nactive == 0)
		elog(ERROR, "account %s has no active sub-balances", PlUuidText(id));
	/* copy: reading rows can process invalidations and reload the cache */
	nactive = sb->nactive;
	slots = palloc(sizeof(pg_uuid_t) * nactive);
	memcpy(slots, sb->active, sizeof(pg_uuid_t) * nactive);
	start = (sb->last_used >= 0 && sb->last_used < nactive) ? sb->last_used :
		MyBackendId % nactive;

	if (PlFetchAccountRow(rel, id, &account, PL_ROW_READ) != PL_ROW_FOUND)
		return false;

	/* trying a row without waiting adds no edge to anybody's wait graph */
	for (int k = 0; k < nactive && res == PL_ROW_BUSY; k++)
	{
		chosen = (start + k) % nactive;
		res = PlFetchAccountRow(rel, &slots[chosen], row, PL_ROW_TRY);
	}
	if (res == PL_ROW_BUSY)
	{
		chosen = start;
		res = PlFetchAccountRow(rel, &slots[chosen], row, PL_ROW_LOCK);
	}
	if (res != PL_ROW_FOUND)
		elog(ERROR, "sub-balance %s of account %s is missing",
			 PlUuidText(&slots[chosen]), PlUuidText(id));

	sb = PlSubBalancesOf(id);
	if (sb != NULL && sb->nactive == nactive)
		((PlSubBalances *) sb)->last_used = chosen;

	row->id = *id;
	row->row_id = slots[chosen];
	row->currency = account.currency;
	/* a closed sub-balance means its account was closed meanwhile */
	if (strcmp(row->status, "active") == 0)
		row->status = account.status;
	row->has_floor = false;
	row->has_limits = false;
	heap_freetuple(account.tuple);
	pfree(slots);
	return true;
}

/*
 * The committed balance of all of an account's sub-balances, active or
 * not, as of the transaction's snapshot; *versions (if not NULL) gets how
 * many changes they have had, *pending_credits (if not NULL) the pending
 * credits they carry (holds for the account reserve on one of them).
 */
int64
PlSubBalanceTotal(const pg_uuid_t *id, int64 *versions, int64 *pending_credits)
{
	const PlSubBalances *sb = PlSubBalancesOf(id);
	Relation	rel;
	pg_uuid_t  *slots;
	int			nall;
	int64		total = 0;
	int64		changes = 0;
	int64		pending = 0;

	if (versions)
		*versions = 0;
	if (pending_credits)
		*pending_credits = 0;
	if (sb == NULL || sb->nall == 0)
		return 0;
	nall = sb->nall;
	slots = palloc(sizeof(pg_uuid_t) * nall);
	memcpy(slots, sb->all, sizeof(pg_uuid_t) * nall);
	rel = PlOpenAccounts();
	for (int i = 0; i < nall; i++)
	{
		PlAccountRow row;

		if (PlFetchAccountRow(rel, &slots[i], &row, PL_ROW_READ) != PL_ROW_FOUND)
			continue;			/* created after our snapshot: nothing in it yet */
		if (pg_add_s64_overflow(total, row.balance, &total) ||
			pg_add_s64_overflow(pending, row.pending_credits, &pending))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("balance of account %s would overflow bigint", PlUuidText(id))));
		/* a sub-balance starts at version 1, like any account */
		changes += row.version - 1;
		heap_freetuple(row.tuple);
	}
	table_close(rel, NoLock);
	pfree(slots);
	if (versions)
		*versions = changes;
	if (pending_credits)
		*pending_credits = pending;
	return total;
}

/* parameters and results of the kept plans set_sub_balances() runs, 0-based */
enum
{
	ACCOUNT_LOCK_ID, ACCOUNT_LOCK_NARGS
};
#define ACCOUNT_LOCK_COL_CURRENCY 1	/* result columns, 1-based as SPI_getvalue */
#define ACCOUNT_LOCK_COL_STATUS 4
enum
{
	ACCOUNT_INSERT_ID, ACCOUNT_INSERT_CURRENCY, ACCOUNT_INSERT_KIND, ACCOUNT_INSERT_MIN_BALANCE,
	ACCOUNT_INSERT_METADATA, ACCOUNT_INSERT_AT, ACCOUNT_INSERT_NARGS
};
enum
{
	SUB_INSERT_ACCOUNT, SUB_INSERT_SLOT, SUB_INSERT_SUB_ACCOUNT, SUB_INSERT_AT, SUB_INSERT_NARGS
};
enum
{
	SUB_COUNT_ACCOUNT, SUB_COUNT_NARGS
};
#define SUB_COUNT_COL_MAX_SLOT 1	/* result column, 1-based as SPI_getbinval */
enum
{
	SUB_ACTIVATE_ACCOUNT, SUB_ACTIVATE_WANTED, SUB_ACTIVATE_NARGS
};

/* 22023 unless 0..PL_MAX_SUB_BALANCES */
static void
check_sub_balance_count(int32 wanted)
{
	if (wanted < 0 || wanted > PL_MAX_SUB_BALANCES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sub_balances must be between 0 and %d", PL_MAX_SUB_BALANCES),
				 errhint("About one per session that credits the account at the same time is enough.")));
}

/* payledger.sub_balances, which a schema older than the library lacks */
static Oid
sub_balances_relid(void)
{
	Oid			relid = get_relname_relid("sub_balances", get_namespace_oid("payledger", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payledger's schema is older than its library"),
				 errhint("Run ALTER EXTENSION payledger UPDATE.")));
	return relid;
}

/*
 * Locks the account's own row and returns its currency: PY005 when there
 * is no such account, PY001 when it is closed.
 */
static char *
lock_hot_account(pg_uuid_t *id)
{
	Datum		values[ACCOUNT_LOCK_NARGS];
	char	   *status;

	values[ACCOUNT_LOCK_ID] = UUIDPGetDatum(id);
	if (PlExec(PLAN_ACCOUNT_LOCK, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("account %s does not exist", PlUuidText(id))));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, ACCOUNT_LOCK_COL_STATUS);
	if (strcmp(status, "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
				 errmsg("account %s is closed", PlUuidText(id))));
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, ACCOUNT_LOCK_COL_CURRENCY);
}

/* How many sub-balance rows the account has (its highest slot). */
static int32
sub_balance_count(pg_uuid_t *id)
{
	Datum		values[SUB_COUNT_NARGS];
	bool		isnull;

	values[SUB_COUNT_ACCOUNT] = UUIDPGetDatum(id);
	if (PlExec(PLAN_SUB_BALANCES_COUNT, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "sub-balance lookup failed");
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   SUB_COUNT_COL_MAX_SLOT, &isnull));
}

/*
 * Opens sub-balance row number slot of the account: an account of kind
 * 'sub_balance' without a floor, its payledger.sub_balances row, and its
 * ACCOUNT_CREATED audit row.
 */
static void
add_sub_balance(pg_uuid_t *id, int32 slot, const char *currency, TimestampTz now)
{
	pg_uuid_t	sub;
	Jsonb	   *meta;
	Datum		account[ACCOUNT_INSERT_NARGS];
	char		account_nulls[ACCOUNT_INSERT_NARGS];
	Datum		row[SUB_INSERT_NARGS];
	PlAuditEvent ev;

	PlUuidV7(&sub);
	meta = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(
															psprintf("{\"sub_balance_of\": \"%s\", \"slot\": %d}",
																	 PlUuidText(id), slot))));
	memset(account_nulls, ' ', sizeof(account_nulls));
	account[ACCOUNT_INSERT_ID] = UUIDPGetDatum(&sub);
	account[ACCOUNT_INSERT_CURRENCY] = CStringGetTextDatum(currency);
	account[ACCOUNT_INSERT_KIND] = CStringGetTextDatum("sub_balance");
	account[ACCOUNT_INSERT_MIN_BALANCE] = (Datum) 0;
	account_nulls[ACCOUNT_INSERT_MIN_BALANCE] = 'n';	/* no floor */
	account[ACCOUNT_INSERT_METADATA] = JsonbPGetDatum(meta);
	account[ACCOUNT_INSERT_AT] = TimestampTzGetDatum(now);
	if (PlExec(PLAN_ACCOUNT_INSERT, account, account_nulls, 0) != SPI_OK_INSERT ||
		SPI_processed != 1)
		elog(ERROR, "sub-balance account insert failed");

	row[SUB_INSERT_ACCOUNT] = UUIDPGetDatum(id);
	row[SUB_INSERT_SLOT] = Int32GetDatum(slot);
	row[SUB_INSERT_SUB_ACCOUNT] = UUIDPGetDatum(&sub);
	row[SUB_INSERT_AT] = TimestampTzGetDatum(now);
	if (PlExec(PLAN_SUB_BALANCE_INSERT, row, NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "sub-balance insert failed");

	PlAuditInit(&ev, "ACCOUNT_CREATED", now);
	ev.new_state = "active";
	ev.account_id = &sub;
	ev.correlation_id = id;
	ev.currency = currency;
	ev.metadata = meta;
	PlAuditWrite(&ev);
}

/* Slots 1..wanted take credits, the others not; ACCOUNT_SUB_BALANCES_SET. */
static void
activate_sub_balances(pg_uuid_t *id, int32 wanted, const char *currency, TimestampTz now)
{
	Datum		values[SUB_ACTIVATE_NARGS];
	PlAuditEvent ev;

	values[SUB_ACTIVATE_ACCOUNT] = UUIDPGetDatum(id);
	values[SUB_ACTIVATE_WANTED] = Int32GetDatum(wanted);
	if (PlExec(PLAN_SUB_BALANCES_ACTIVATE, values, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "sub-balance update failed");

	PlAuditInit(&ev, "ACCOUNT_SUB_BALANCES_SET", now);
	ev.account_id = id;
	ev.correlation_id = id;
	ev.currency = currency;
	ev.metadata = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(
																   psprintf("{\"sub_balances\": %d}", wanted))));
	PlAuditWrite(&ev);
}

/*
 * payledger.set_sub_balances(account_id uuid, sub_balances integer)
 *		RETURNS integer
 *
 * Spreads credits to account_id over this many sub-balance rows, creating
 * the missing ones; 0 switches spreading off.  Rows beyond the number are
 * only switched off: they keep their balance, which keeps counting.
 * Audited as ACCOUNT_CREATED for each new row and ACCOUNT_SUB_BALANCES_SET.
 */
PG_FUNCTION_INFO_V1(set_sub_balances);
Datum
set_sub_balances(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	int32		wanted;
	PlPrivState priv;
	char	   *currency;
	Oid			relid;
	TimestampTz now = GetCurrentTimestamp();

	PlRequireArg(fcinfo, 0, "account_id");
	PlRequireArg(fcinfo, 1, "sub_balances");
	id = PG_GETARG_UUID_P(0);
	wanted = PG_GETARG_INT32(1);
	check_sub_balance_count(wanted);

	PlSpiBegin(&priv);
	relid = sub_balances_relid();
	PlRejectSubBalance(id);
	currency = lock_hot_account(id);
	for (int32 slot = sub_balance_count(id) + 1; slot <= wanted; slot++)
		add_sub_balance(id, slot, currency, now);
	activate_sub_balances(id, wanted, currency, now);

	/* every backend rereads the table at its next transaction */
	CacheInvalidateRelcacheByRelid(relid);
	PlSpiEnd(&priv);
	PG_RETURN_INT32(wanted);
}
