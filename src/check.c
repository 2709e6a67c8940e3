/*-------------------------------------------------------------------------
 *
 * check.c
 *	  check_ledger(): the ledger's invariants, verified from the tables.
 *
 * Each check is one query that returns a count of violations and a short
 * description of the first few; a healthy ledger answers ok for all.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/check.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "payledger.h"
#include "spi_plans.h"

typedef struct LedgerCheck
{
	const char *name;
	const char *sql;			/* returns (bad bigint, detail text) */
} LedgerCheck;

/* the columns of a check's query (SPI numbers them from 1) */
#define CHECK_COL_BAD		1
#define CHECK_COL_DETAIL	2

/* the columns of check_ledger()'s rows */
typedef enum CheckResultColumn
{
	RESULT_CHECK_NAME,
	RESULT_OK,
	RESULT_DETAIL,
	RESULT_NCOLS
} CheckResultColumn;

static const LedgerCheck checks[] = {
	{"currencies_sum_to_zero",
		"SELECT count(*), string_agg(currency || ' sums to ' || total, ', ') "
		"FROM (SELECT currency, sum(balance) AS total FROM payledger.accounts "
		"GROUP BY currency HAVING sum(balance) <> 0 ORDER BY currency) s"},
	{"balances_match_entries",
		"SELECT count(*), string_agg(id::text || ' has ' || balance || ' but entries sum to ' || total, ', ') "
		"FROM (SELECT a.id, a.balance, coalesce(e.total, 0) AS total "
		"FROM payledger.accounts a LEFT JOIN (SELECT account_id, sum(amount) AS total "
		"FROM payledger.entries GROUP BY account_id) e ON e.account_id = a.id "
		"WHERE a.balance <> coalesce(e.total, 0) ORDER BY a.id LIMIT 10) s"},
	{"entries_chain",
		"SELECT count(*), string_agg(account_id::text || ' version ' || account_version, ', ') "
		"FROM (SELECT account_id, account_version, balance_after, "
		"balance_after::numeric - amount AS before, "
		"lag(balance_after::numeric, 1, 0::numeric) OVER (PARTITION BY account_id ORDER BY account_version) AS prev "
		"FROM payledger.entries) s WHERE before <> prev"},
	/* as in get_balance and the floor check: overdue holds no longer count */
	{"no_account_below_floor",
		"SELECT count(*), string_agg(id::text || ' available ' || available || ' floor ' || min_balance, ', ') "
		"FROM (SELECT a.id, a.min_balance, a.balance::numeric - a.pending_debits + coalesce(("
		"SELECT sum(h.amount) FROM payledger.holds h WHERE h.from_account = a.id "
		"AND h.status = 'pending' AND h.expires_at <= (SELECT pg_catalog.clock_timestamp())), 0) "
		"+ coalesce(("
		"SELECT sum(b.balance) FROM payledger.sub_balances s JOIN payledger.accounts b "
		"ON b.id = s.sub_account_id WHERE s.account_id = a.id), 0) AS available "
		"FROM payledger.accounts a WHERE a.min_balance IS NOT NULL) x "
		"WHERE available < min_balance"},
	{"sub_balances_only_credited",
		"SELECT count(*), string_agg(s.sub_account_id::text || ' of ' || s.account_id, ', ') "
		"FROM payledger.sub_balances s JOIN payledger.accounts b ON b.id = s.sub_account_id "
		"WHERE b.balance < 0 OR b.pending_debits <> 0 OR EXISTS ("
		"SELECT 1 FROM payledger.entries e WHERE e.account_id = s.sub_account_id AND e.amount < 0)"},
	{"transfers_balanced",
		"SELECT count(*), string_agg(id::text, ', ') FROM ("
		"SELECT t.id FROM payledger.transfers t "
		"LEFT JOIN (SELECT transfer_id, sum(amount) AS net, sum(abs(amount)) AS moved, count(*) AS n "
		"FROM payledger.entries GROUP BY transfer_id) e ON e.transfer_id = t.id "
		"WHERE (t.status = 'posted' AND (e.n IS NULL OR e.net <> 0 OR e.moved <> 2::numeric * t.amount)) "
		"OR (t.status = 'rejected' AND e.n IS NOT NULL) "
		"UNION ALL SELECT e.transfer_id FROM payledger.entries e "
		"LEFT JOIN payledger.transfers t ON t.id = e.transfer_id WHERE t.id IS NULL "
		"LIMIT 10) s"},
	/* an account's pending credits are the sum over its own and sub-balance rows */
	{"pending_matches_holds",
		"SELECT count(*), string_agg(a.id::text || ' pending ' || a.pending_debits || '/' || "
		"a.pending_credits || ' holds ' || coalesce(d.total, 0) || '/' || coalesce(c.total, 0), ', ') "
		"FROM (SELECT o.id, o.pending_debits, o.pending_credits + coalesce(("
		"SELECT sum(b.pending_credits) FROM payledger.sub_balances s JOIN payledger.accounts b "
		"ON b.id = s.sub_account_id WHERE s.account_id = o.id), 0) AS pending_credits "
		"FROM payledger.accounts o WHERE NOT EXISTS ("
		"SELECT 1 FROM payledger.sub_balances s WHERE s.sub_account_id = o.id)) a "
		"LEFT JOIN (SELECT from_account, sum(amount) AS total FROM payledger.holds "
		"WHERE status = 'pending' GROUP BY from_account) d ON d.from_account = a.id "
		"LEFT JOIN (SELECT to_account, sum(amount) AS total FROM payledger.holds "
		"WHERE status = 'pending' GROUP BY to_account) c ON c.to_account = a.id "
		"WHERE a.pending_debits <> coalesce(d.total, 0) OR a.pending_credits <> coalesce(c.total, 0)"},
	/*
	 * Archived months are a prefix of time: what they covered is not here.
	 * Each transfer and hold looks its audit row up through the index on
	 * payment_id, in a scalar subquery: a NOT EXISTS would be planned as an
	 * anti-join, which stale statistics once made a nested loop over a
	 * materialized scan of the audit log, per hold.
	 */
	{"transfers_audited",
		"SELECT count(*), string_agg(id::text, ', ') FROM ("
		"SELECT t.id FROM payledger.transfers t WHERE t.created_at >= ("
		"SELECT coalesce(max(covers_until), '-infinity') FROM payledger.audit_archives) "
		"AND (SELECT 1 FROM payledger.payment_audit_log l WHERE l.payment_id = t.id "
		"AND l.event_type IN ('TRANSFER_POSTED', 'TRANSFER_REJECTED', 'HOLD_POSTED') "
		"LIMIT 1) IS NULL "
		"UNION ALL SELECT h.id FROM payledger.holds h WHERE h.created_at >= ("
		"SELECT coalesce(max(covers_until), '-infinity') FROM payledger.audit_archives) "
		"AND (SELECT 1 FROM payledger.payment_audit_log l WHERE l.payment_id = h.id "
		"AND l.event_type = 'HOLD_CREATED' LIMIT 1) IS NULL "
		"LIMIT 10) s"},
	/*
	 * Planned so that stale statistics cannot make it quadratic: the hold
	 * of each payment through the primary key of transfers (a correlated
	 * subquery, always an index probe), and refunds and splits compared as
	 * two sets (EXCEPT both ways: hashed or sorted, never a nested loop).
	 * A join here was once planned as a nested loop over a materialized
	 * scan of transfers, per payment.
	 */
	{"payments_match_transfers",
		"WITH paid AS (SELECT p.id::text AS id, p.refunded_amount::numeric AS refunds, "
		" p.fee_amount::numeric AS splits FROM payledger.payments p "
		" WHERE p.refunded_amount <> 0 OR p.fee_amount <> 0), "
		"moved AS (SELECT metadata->>'payment_id' AS id, "
		" coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) AS refunds, "
		" coalesce(sum(amount) FILTER (WHERE kind = 'split'), 0) AS splits "
		" FROM payledger.transfers WHERE kind IN ('refund', 'split') AND status = 'posted' "
		" GROUP BY 1) "
		"SELECT count(*), string_agg(id, ', ') FROM ("
		"SELECT p.id::text AS id FROM payledger.payments p "
		"WHERE p.captured_amount <> coalesce((SELECT h.amount FROM payledger.transfers h "
		" WHERE h.id = p.hold_id AND h.status = 'posted'), 0) "
		"OR (p.state = 'authorized' AND NOT EXISTS (SELECT 1 FROM payledger.holds x "
		" WHERE x.id = p.hold_id AND x.status IN ('pending', 'expired'))) "
		"UNION SELECT id FROM (SELECT * FROM paid EXCEPT SELECT * FROM moved) d "
		"UNION SELECT id FROM (SELECT * FROM moved EXCEPT SELECT * FROM paid) d "
		"LIMIT 10) s"},
	{"audit_chain_verifies",
		"SELECT CASE WHEN ok THEN 0 ELSE 1 END::bigint, problem || coalesce(' at event ' || first_bad_event_id, '') "
		"FROM payledger.verify_audit_log()"},
};

/*
 * payledger.check_ledger() RETURNS TABLE(check_name text, ok boolean,
 *		detail text)
 */
PG_FUNCTION_INFO_V1(check_ledger);
Datum
check_ledger(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PlPrivState priv;

	InitMaterializedSRF(fcinfo, 0);
	PlSpiBegin(&priv);
	for (int i = 0; i < (int) lengthof(checks); i++)
	{
		Datum		values[RESULT_NCOLS];
		bool		nulls[RESULT_NCOLS] = {false};
		bool		isnull;
		int64		bad;
		char	   *detail;

		if (SPI_execute(checks[i].sql, true, 0) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "ledger check %s failed", checks[i].name);
		bad = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  CHECK_COL_BAD, &isnull));
		detail = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, CHECK_COL_DETAIL);

		values[RESULT_CHECK_NAME] = CStringGetTextDatum(checks[i].name);
		values[RESULT_OK] = BoolGetDatum(bad == 0);
		if (bad == 0)
			values[RESULT_DETAIL] = CStringGetTextDatum("ok");
		else
			values[RESULT_DETAIL] = CStringGetTextDatum(psprintf(INT64_FORMAT " problem(s): %s",
																 bad, detail ? detail : ""));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PlSpiEnd(&priv);
	return (Datum) 0;
}
