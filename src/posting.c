/*-------------------------------------------------------------------------
 *
 * posting.c
 *	  What every money-moving function shares: locking accounts in one
 *	  order, deciding declines, writing entries and transfer rows.
 *
 * Design note: lock order.
 *
 * Every call locks, in this order: its idempotency key(s) (idempotency.c),
 * then a hold row if it works on one (holds.c), then all the accounts it
 * touches, FOR NO KEY UPDATE, in ascending id order (PlLockAccounts).  A
 * call never takes a lock of an earlier kind after one of a later kind, and
 * within a kind always in ascending order, so two payledger calls can never
 * wait for each other in a cycle.  Under READ COMMITTED the lock returns
 * the newest committed version of each row, so floor checks see every
 * earlier debit and no update is lost; under REPEATABLE READ or
 * SERIALIZABLE a concurrent change raises a serialization failure.
 *
 * Balances are changed in memory while a call decides; each locked row is
 * written back once (PlFlushAccounts), its version advanced by one per
 * entry, so entries' (account_id, account_version) stay gapless per call.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/posting.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "payledger.h"
#include "util.h"
#include "layouts.h"
#include "spi_plans.h"
#include "metrics.h"
#include "ledger.h"
#include "access.h"

#ifdef USE_ASSERT_CHECKING
/*
 * What the entries written since the accounts were last locked add up to,
 * and their currency: every posting is balanced in one currency when its
 * account rows are written back (PlFlushAccounts).
 */
static int64 posting_sum = 0;
static const char *posting_currency = NULL;
#endif

/* qsort/bsearch order of account ids */
int
PlAccountIdCmp(const void *a, const void *b)
{
	return memcmp(((const pg_uuid_t *) a)->data, ((const pg_uuid_t *) b)->data, UUID_LEN);
}

static int
row_cmp(const void *key, const void *elem)
{
	return memcmp(((const pg_uuid_t *) key)->data,
				  ((const PlAccountRow *) elem)->id.data, UUID_LEN);
}

/*
 * Locks the accounts named in ids (duplicates allowed) in ascending id
 * order.  Raises PY005 naming the first unknown id in the caller's order.
 */
PlLockedSet *
PlLockAccounts(Relation rel, const pg_uuid_t *ids, int n)
{
	return PlLockAccountsFor(rel, ids, n, NULL);
}

/*
 * PlLockAccounts for a call that knows which of its accounts it only
 * credits (credit_only[i] for ids[i]; NULL: none).  An account that is only
 * credited and has sub-balances (sub_balances.c) is not locked itself: one
 * of its sub-balance rows is, after every plain account, so that sessions
 * crediting a hot account do not queue on one row.  The lock order stays
 * total: plain accounts by id, then one sub-balance per credited hot
 * account, by account id.
 */
PlLockedSet *
PlLockAccountsFor(Relation rel, const pg_uuid_t *ids, int n, const bool *credit_only)
{
	PlLockedSet *set = palloc(sizeof(PlLockedSet));
	pg_uuid_t  *sorted = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	bool	   *spread;
	int			nunique = 0;
	bool		missing = false;

	/* rows this call already changed must be seen as the newest versions */
	CommandCounterIncrement();

	memcpy(sorted, ids, sizeof(pg_uuid_t) * n);
	qsort(sorted, n, sizeof(pg_uuid_t), PlAccountIdCmp);
	for (int i = 0; i < n; i++)
		if (nunique == 0 || PlAccountIdCmp(&sorted[nunique - 1], &sorted[i]) != 0)
			sorted[nunique++] = sorted[i];
	/* the lock order: every account once, ascending */
	for (int i = 1; i < nunique; i++)
		Assert(PlAccountIdCmp(&sorted[i - 1], &sorted[i]) < 0);
#ifdef USE_ASSERT_CHECKING
	posting_sum = 0;
	posting_currency = NULL;
#endif

	set->rows = palloc0(sizeof(PlAccountRow) * Max(nunique, 1));
	set->n = nunique;
	spread = palloc0(sizeof(bool) * Max(nunique, 1));
	for (int i = 0; i < nunique; i++)
	{
		const PlSubBalances *sb = PlSubBalancesOf(&sorted[i]);

		if (sb == NULL)
			continue;
		if (sb->is_sub_balance)
			PlRejectSubBalance(&sorted[i]);
		set->rows[i].has_sub_balances = true;
		if (credit_only != NULL && sb->nactive > 0)
		{
			spread[i] = true;
			for (int j = 0; j < n; j++)
				if (!credit_only[j] && PlAccountIdCmp(&ids[j], &sorted[i]) == 0)
					spread[i] = false;
		}
	}
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < nunique; i++)
		{
			PlAccountRow *row = &set->rows[i];
			bool		has_sub = row->has_sub_balances;
			bool		found;

			if (spread[i] != (pass == 1))
				continue;
			if (pass == 0)
				found = PlLockAccountRow(rel, &sorted[i], row);
			else
				found = PlLockSubBalance(rel, &sorted[i], row);
			row->has_sub_balances = has_sub;
			if (!found)
			{
				row->id = sorted[i];
				row->tuple = NULL;
				missing = true;
			}
		}
	}
	if (missing)
	{
		for (int i = 0; i < n; i++)
		{
			PlAccountRow *row = PlFindAccount(set, &ids[i]);

			if (row->tuple == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
						 errmsg("account %s does not exist", PlUuidText(&ids[i]))));
		}
	}
	pfree(spread);
	pfree(sorted);
	return set;
}

/* the locked row of id, or NULL when the set does not hold it */
PlAccountRow *
PlLockedAccount(PlLockedSet *set, const pg_uuid_t *id)
{
	return bsearch(id, set->rows, set->n, sizeof(PlAccountRow), row_cmp);
}

PlAccountRow *
PlFindAccount(PlLockedSet *set, const pg_uuid_t *id)
{
	PlAccountRow *row = PlLockedAccount(set, id);

	if (row == NULL)
		elog(ERROR, "account %s was not locked", PlUuidText(id));
	return row;
}

void
PlCheckAccountCurrency(const PlAccountRow *row, const char *currency)
{
	if (strcmp(row->currency, currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_CURRENCY_MISMATCH),
				 errmsg("account %s holds %s, not %s",
						PlUuidText(&row->id), row->currency, currency)));
}

/* columns of PLAN_LIMITS_CHECK */
enum
{
	LIMITS_MAX_PER_TRANSFER = 1, LIMITS_MAX_DAILY_DEBIT, LIMITS_DEBITED_TODAY
};

/*
 * Is a debit of amount above the account's per-transfer limit, or would it
 * take today's (UTC) posted and pending debits above the daily limit?
 *
 * The limits and the day's debits are read once per locked set: the row
 * lock keeps every other debit of the account out until the transaction
 * ends, and PlWriteEntry adds the debits this call posts, so a batch
 * checks each item in constant time and memory instead of summing the
 * day's entries again for every item.
 */
static bool
over_limit(PlAccountRow *src, int64 amount)
{
	if (!src->limits_read)
	{
		Datum		values[1];
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;

		values[0] = UUIDPGetDatum(&src->id);
		if (PlExec(PLAN_LIMITS_CHECK, values, NULL, 1) != SPI_OK_SELECT)
			elog(ERROR, "limit lookup failed");
		src->limits_read = true;
		if (SPI_processed == 0)
		{
			SPI_freetuptable(SPI_tuptable);
			src->has_max_per_transfer = false;
			src->has_max_daily_debit = false;
			return false;
		}
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		src->max_per_transfer = DatumGetInt64(SPI_getbinval(tup, desc, LIMITS_MAX_PER_TRANSFER,
															&isnull));
		src->has_max_per_transfer = !isnull;
		src->max_daily_debit = DatumGetInt64(SPI_getbinval(tup, desc, LIMITS_MAX_DAILY_DEBIT,
														   &isnull));
		src->has_max_daily_debit = !isnull;
		src->debited_today = DatumGetInt64(SPI_getbinval(tup, desc, LIMITS_DEBITED_TODAY,
														 &isnull));
		SPI_freetuptable(SPI_tuptable);
	}
	if (src->has_max_per_transfer && amount > src->max_per_transfer)
		return true;
	if (src->has_max_daily_debit && src->debited_today > src->max_daily_debit - amount)
		return true;
	return false;
}

/*
 * ACCOUNT_CLOSED or ACCOUNT_FROZEN when any account of a locked set may be
 * neither debited nor credited (closed decides over frozen), else NULL.
 * For calls that move money between accounts they locked earlier (posting
 * a hold, a capture and its splits).
 */
const char *
PlStatusDecline(const PlLockedSet *set)
{
	const char *reason = NULL;

	for (int i = 0; i < set->n; i++)
	{
		if (set->rows[i].status[0] == 'c')
			return "ACCOUNT_CLOSED";
		if (set->rows[i].status[0] == 'f')
			reason = "ACCOUNT_FROZEN";
	}
	return reason;
}

/*
 * Why moving amount from src to dst is declined, or NULL.  Reserving
 * (a hold) and posting check the same floor: what is available is the
 * balance less open holds, where holds past their expiry no longer count.
 * Raises 22003 when a balance would overflow.
 */
const char *
PlDeclineReason(PlAccountRow *src, PlAccountRow *dst, int64 amount)
{
	int64		after;

	Assert(src != dst && amount > 0);
	if (memcmp(src->row_id.data, src->id.data, UUID_LEN) != 0)
		elog(ERROR, "a sub-balance row cannot be debited");
	PlCheckDebitScope(&src->id, src->has_owner, &src->owner_id);
	if (src->status[0] == 'c' || dst->status[0] == 'c')
		return "ACCOUNT_CLOSED";
	if (src->status[0] == 'f' || dst->status[0] == 'f')
		return "ACCOUNT_FROZEN";
	if (pg_add_s64_overflow(dst->balance, amount, &after))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint", PlUuidText(&dst->id))));
	if (src->has_limits && over_limit(src, amount + src->call_debits))
		return "LIMIT_EXCEEDED";
	if (src->has_floor)
	{
		int64		available;
		int64		pending = src->pending_debits;

		if (pending > 0)
			pending -= PlOverdueDebits(&src->id);
		if (pg_sub_s64_overflow(src->balance, pending, &available) ||
			pg_sub_s64_overflow(available, amount, &after) ||
			after < src->min_balance)
		{
			/*
			 * Sub-balances are only ever credited, so they are consulted
			 * only when the account's own row falls short; credits not yet
			 * committed do not count, which can only make this stricter.
			 */
			if (!src->has_sub_balances)
				return "INSUFFICIENT_FUNDS";
			if (pg_add_s64_overflow(src->balance, PlSubBalanceTotal(&src->id, NULL, NULL), &available) ||
				pg_sub_s64_overflow(available, pending, &available) ||
				pg_sub_s64_overflow(available, amount, &after) ||
				after < src->min_balance)
				return "INSUFFICIENT_FUNDS";
		}
	}
	else if (pg_sub_s64_overflow(src->balance, amount, &after))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint", PlUuidText(&src->id))));
	return NULL;
}

/* One posting: moves the in-memory balance and writes its entry. */
void
PlWriteEntry(Relation entries, PlAccountRow *row, const pg_uuid_t *transfer_id,
			 int64 delta, TimestampTz now)
{
	Datum		values[Natts_entries];
	bool		nulls[Natts_entries] = {false};

	if (pg_add_s64_overflow(row->balance, delta, &row->balance))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint", PlUuidText(&row->id))));
#ifdef USE_ASSERT_CHECKING
	Assert(delta != 0 && row->tuple != NULL);
	Assert(posting_currency == NULL || strcmp(posting_currency, row->currency) == 0);
	posting_currency = row->currency;
	posting_sum += delta;
#endif
	/* the day's debits, for the next limit check of this locked set */
	if (delta < 0 && row->limits_read &&
		pg_sub_s64_overflow(row->debited_today, delta, &row->debited_today))
		row->debited_today = PG_INT64_MAX;
	row->version++;
	row->dirty = true;
	values[Anum_entries_account_id - 1] = UUIDPGetDatum(&row->row_id);
	values[Anum_entries_account_version - 1] = Int64GetDatum(row->version);
	values[Anum_entries_transfer_id - 1] = UUIDPGetDatum((pg_uuid_t *) transfer_id);
	values[Anum_entries_amount - 1] = Int64GetDatum(delta);
	values[Anum_entries_balance_after - 1] = Int64GetDatum(row->balance);
	values[Anum_entries_created_at - 1] = TimestampTzGetDatum(now);
	PlDirectInsert(entries, values, nulls);
}

/* Writes back every row of the set that changed. */
void
PlFlushAccounts(Relation rel, PlLockedSet *set, TimestampTz now)
{
	/* every entry has its counter-entry, in the same currency */
	Assert(posting_sum == 0);
	for (int i = 0; i < set->n; i++)
		if (set->rows[i].dirty)
		{
			PlUpdateAccountRow(rel, &set->rows[i], now);
			set->rows[i].dirty = false;
		}
}

/* Records a transfer, posted (reason NULL) or rejected. */
void
PlStoreTransfer(const pg_uuid_t *id, const char *kind, const char *reason,
				const char *currency, int64 amount, const pg_uuid_t *from_id,
				const pg_uuid_t *to_id, const char *key, const uint8 *request_hash,
				Jsonb *metadata, TimestampTz now)
{
	Datum		values[Natts_transfers];
	bool		nulls[Natts_transfers] = {false};
	Relation	rel = PlOpenTable("transfers");
	bytea	   *hash = palloc(VARHDRSZ + PL_SHA256_LEN);

	SET_VARSIZE(hash, VARHDRSZ + PL_SHA256_LEN);
	memcpy(VARDATA(hash), request_hash, PL_SHA256_LEN);

	values[Anum_transfers_id - 1] = UUIDPGetDatum((pg_uuid_t *) id);
	values[Anum_transfers_kind - 1] = CStringGetTextDatum(kind);
	values[Anum_transfers_status - 1] = CStringGetTextDatum(reason ? "rejected" : "posted");
	if (reason)
		values[Anum_transfers_reason_code - 1] = CStringGetTextDatum(reason);
	else
		nulls[Anum_transfers_reason_code - 1] = true;
	values[Anum_transfers_currency - 1] = CStringGetTextDatum(currency);
	values[Anum_transfers_amount - 1] = Int64GetDatum(amount);
	if (from_id)
		values[Anum_transfers_from_account - 1] = UUIDPGetDatum((pg_uuid_t *) from_id);
	else
		nulls[Anum_transfers_from_account - 1] = true;
	if (to_id)
		values[Anum_transfers_to_account - 1] = UUIDPGetDatum((pg_uuid_t *) to_id);
	else
		nulls[Anum_transfers_to_account - 1] = true;
	if (key)
		values[Anum_transfers_idempotency_key - 1] = CStringGetTextDatum(key);
	else
		nulls[Anum_transfers_idempotency_key - 1] = true;
	values[Anum_transfers_request_hash - 1] = PointerGetDatum(hash);
	values[Anum_transfers_metadata - 1] = JsonbPGetDatum(metadata);
	values[Anum_transfers_created_at - 1] = TimestampTzGetDatum(now);
	PlDirectInsert(rel, values, nulls);
	PlCountTransfer(reason);
	table_close(rel, NoLock);
	pfree(hash);
}

/*
 * Records the legs of a leg set (transfer_legs), posted or rejected, in the
 * order given.  A ledger not yet updated to 0.3.0 has no table for them.
 */
void
PlStoreLegs(const pg_uuid_t *transfer_id, const PlLeg *legs, int nlegs)
{
	Datum		values[Natts_legs];
	bool		nulls[Natts_legs] = {false};
	Relation	rel;

	rel = PlTryOpenTable("legs");
	if (rel == NULL)
		return;
	values[Anum_legs_transfer_id - 1] = UUIDPGetDatum((pg_uuid_t *) transfer_id);
	for (int i = 0; i < nlegs; i++)
	{
		Assert(legs[i].amount > 0);
		values[Anum_legs_leg - 1] = Int32GetDatum(i);
		values[Anum_legs_from_account - 1] = UUIDPGetDatum((pg_uuid_t *) &legs[i].from_id);
		values[Anum_legs_to_account - 1] = UUIDPGetDatum((pg_uuid_t *) &legs[i].to_id);
		values[Anum_legs_amount - 1] = Int64GetDatum(legs[i].amount);
		PlDirectInsert(rel, values, nulls);
	}
	table_close(rel, NoLock);
}

/* parameters of PLAN_OVERDUE_DEBITS and PLAN_OVERDUE_CREDITS, 0-based */
enum
{
	OVERDUE_ACCOUNT, OVERDUE_AT, OVERDUE_NARGS
};

static int64
overdue_sum(PlPlanId plan, const pg_uuid_t *account_id)
{
	Datum		values[OVERDUE_NARGS];
	bool		isnull;
	int64		sum;

	values[OVERDUE_ACCOUNT] = UUIDPGetDatum((pg_uuid_t *) account_id);
	values[OVERDUE_AT] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (PlExec(plan, values, NULL, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "overdue hold lookup failed");
	sum = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* batches call this per item: do not let SPI results pile up */
	SPI_freetuptable(SPI_tuptable);
	return sum;
}

/* Sum of the account's pending holds past expiry (inside PlSpiBegin). */
int64
PlOverdueDebits(const pg_uuid_t *account_id)
{
	return overdue_sum(PLAN_OVERDUE_DEBITS, account_id);
}

int64
PlOverdueCredits(const pg_uuid_t *account_id)
{
	return overdue_sum(PLAN_OVERDUE_CREDITS, account_id);
}
