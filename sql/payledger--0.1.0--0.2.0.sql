/* sql/payledger--0.1.0--0.2.0.sql: payledger 0.1.0 -> 0.2.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.2.0'" to load this file. \quit

/* ---- hot accounts: sub-balances ---- */

/*
 * A hot account (a merchant that thousands of sessions credit at once) can
 * spread its credits over sub-balance rows: each is an account of its own
 * in payledger.accounts (kind 'sub_balance', no floor, only ever credited),
 * so entries, versions and the double-entry checks work unchanged.  Reads
 * (get_balance, balance_at, account_entries, check_ledger) add them to the
 * account; debits lock the account's own row and count the committed
 * sub-balances toward its floor.  Slots that are switched off keep their
 * balance and keep counting.
 */
CREATE TABLE payledger.sub_balances (
	account_id uuid NOT NULL,
	slot integer NOT NULL,
	sub_account_id uuid NOT NULL UNIQUE,
	active boolean NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (account_id, slot)
);
COMMENT ON TABLE payledger.sub_balances IS
	'Sub-balance rows of hot accounts (set_sub_balances): credits spread over them, reads add them up';
SELECT pg_catalog.pg_extension_config_dump('payledger.sub_balances', '');
CREATE TRIGGER sub_balances_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.sub_balances
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
ALTER TABLE payledger.sub_balances ENABLE ALWAYS TRIGGER sub_balances_guard;

CREATE FUNCTION payledger.set_sub_balances(account_id uuid, sub_balances integer)
	RETURNS integer
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'set_sub_balances';
COMMENT ON FUNCTION payledger.set_sub_balances(uuid, integer) IS
	'Spreads credits to a hot account over this many sub-balance rows (0 = off); returns how many are active';
REVOKE EXECUTE ON FUNCTION payledger.set_sub_balances(uuid, integer) FROM PUBLIC;

/* ---- payment lifecycle performance ---- */

-- A payment is rewritten by every step (authorize, capture, refund, ...)
-- and no index covers a column those steps change: leave room on each page
-- for the new versions, so the rewrites stay HOT updates on the same page
-- instead of new heap and index tuples elsewhere.  Holds need none: their
-- status is in the predicates of the pending-hold indexes, so a hold that
-- ends (posted, voided, expired) is never a HOT update anyway.
ALTER TABLE payledger.payments SET (fillfactor = 80);

-- Only settled payments are looked up by settlement (reconcile_settlement):
-- leave the others, every payment until it settles, out of that index, which
-- saves an index entry per payment created.
DROP INDEX payledger.payments_settlement;
CREATE INDEX payments_settlement ON payledger.payments (settlement_id)
	WHERE settlement_id IS NOT NULL;
