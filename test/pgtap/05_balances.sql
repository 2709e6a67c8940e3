-- 05_balances.sql: balances, versions, statements and the ledger check
-- (doc/reference.md sections 3 and 8)
--
-- Inside one transaction now() is constant, but entries carry the wall
-- clock, so the instants for balance_at() and account_entries() are taken
-- with clock_timestamp() between the transfers.

BEGIN;
\ir helpers.psql

SELECT plan(53);

CREATE TEMP TABLE marks (
	name text PRIMARY KEY,
	at timestamptz NOT NULL,
	ver_a bigint NOT NULL
);

-- a short sleep on each side keeps the mark strictly between two transfers
CREATE FUNCTION pg_temp.mark(p_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(0.002);
	INSERT INTO pg_temp.marks VALUES (p_name, clock_timestamp(), pg_temp.ver('a'));
	PERFORM pg_sleep(0.002);
END $$;

CREATE FUNCTION pg_temp.at(p_name text) RETURNS timestamptz LANGUAGE sql STABLE
	AS $$ SELECT at FROM pg_temp.marks WHERE name = p_name $$;

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
	PERFORM pg_temp.open('eursys', 'EUR', NULL, 'system');
	PERFORM pg_temp.open('e1', 'EUR');
END $$;

------------------------------------------------------------------------------
-- a new account
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(pg_temp.acct('a'))$$,
	$$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint)$$,
	'get_balance of a new account: balance, pending_debits, pending_credits and available are 0');
SELECT isnt(pg_temp.ver('a'), NULL, 'get_balance of a new account has a version');
SELECT is((SELECT count(*) FROM payledger.get_balance(pg_temp.acct('a'))), 1::bigint, 'get_balance returns one row');

------------------------------------------------------------------------------
-- a series of transfers, with instants taken in between
------------------------------------------------------------------------------

SELECT pg_temp.mark('t0') \gset
SELECT is(pg_temp.xfer('f1', 'sys', 'a', 1000), 'posted', 'setup: sys -> a 1000');
SELECT pg_temp.mark('t1') \gset
SELECT is(pg_temp.xfer('x1', 'a', 'b', 300), 'posted', 'setup: a -> b 300');
SELECT pg_temp.mark('t2') \gset
SELECT is(pg_temp.xfer('x2', 'b', 'a', 100), 'posted', 'setup: b -> a 100');
SELECT pg_temp.mark('t3') \gset
SELECT is(pg_temp.xfer('x3', 'a', 'b', 50), 'posted', 'setup: a -> b 50');
SELECT pg_temp.mark('t4') \gset
SELECT is(pg_temp.xfer('x4', 'a', 'b', 100000), 'rejected', 'setup: a -> b 100000 is declined');
SELECT pg_temp.mark('t5') \gset
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('a'), 'kyc')$$, 'setup: freeze a');
SELECT pg_temp.mark('t6') \gset
SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('a'))$$, 'setup: unfreeze a');
SELECT pg_temp.mark('t7') \gset
SELECT is(pg_temp.xfer('eur', 'eursys', 'e1', 42, 'EUR'), 'posted', 'setup: eursys -> e1 42 EUR');

------------------------------------------------------------------------------
-- get_balance and version
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(pg_temp.acct('a'))$$,
	$$VALUES (750::bigint, 0::bigint, 0::bigint, 750::bigint)$$,
	'get_balance(a) after the series: 750, nothing pending, 750 available');
SELECT results_eq(
	$$SELECT balance, available FROM payledger.get_balance(pg_temp.acct('b'))$$,
	$$VALUES (250::bigint, 250::bigint)$$,
	'get_balance(b) after the series: 250');
SELECT results_eq(
	$$SELECT balance, available FROM payledger.get_balance(pg_temp.acct('sys'))$$,
	$$VALUES (-1000::bigint, -1000::bigint)$$,
	'get_balance of the floorless source: -1000');
SELECT is((SELECT ver_a - (SELECT ver_a FROM pg_temp.marks WHERE name = 't0') FROM pg_temp.marks WHERE name = 't1'), 1::bigint,
	'a credit raises the version by one');
SELECT is((SELECT ver_a - (SELECT ver_a FROM pg_temp.marks WHERE name = 't1') FROM pg_temp.marks WHERE name = 't2'), 1::bigint,
	'a debit raises the version by one');
SELECT is(ARRAY(SELECT ver_a - first_value(ver_a) OVER (ORDER BY at) FROM pg_temp.marks ORDER BY at),
	ARRAY[0, 1, 2, 3, 4, 4, 5, 6]::bigint[],
	'the version grows by one per posting, freeze and unfreeze, and not for a declined transfer');
SELECT is(pg_temp.ver('a') - (SELECT ver_a FROM pg_temp.marks WHERE name = 't7'), 0::bigint,
	'a transfer between other accounts leaves the version alone');

------------------------------------------------------------------------------
-- account_entries: the statement
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT transfer_id, amount, balance_after FROM payledger.account_entries(pg_temp.acct('a'))$$,
	$$VALUES (pg_temp.tid('f1'), 1000::bigint, 1000::bigint),
	         (pg_temp.tid('x1'), -300::bigint, 700::bigint),
	         (pg_temp.tid('x2'), 100::bigint, 800::bigint),
	         (pg_temp.tid('x3'), -50::bigint, 750::bigint)$$,
	'account_entries(a): every posting in order, credits positive, debits negative, with the balance after');
SELECT results_eq(
	$$SELECT transfer_id, amount, balance_after FROM payledger.account_entries(pg_temp.acct('b'))$$,
	$$VALUES (pg_temp.tid('x1'), 300::bigint, 300::bigint),
	         (pg_temp.tid('x2'), -100::bigint, 200::bigint),
	         (pg_temp.tid('x3'), 50::bigint, 250::bigint)$$,
	'account_entries(b): the other side of the same transfers');
SELECT is((SELECT sum(amount) FROM payledger.account_entries(pg_temp.acct('a'))), 750::numeric,
	'the entries of a sum to its balance');
SELECT is_empty(
	$$SELECT transfer_id FROM (
	      SELECT * FROM payledger.account_entries(pg_temp.acct('a'))
	      UNION ALL SELECT * FROM payledger.account_entries(pg_temp.acct('b'))
	      UNION ALL SELECT * FROM payledger.account_entries(pg_temp.acct('sys'))) e
	  GROUP BY transfer_id HAVING sum(amount) <> 0 OR count(*) <> 2$$,
	'every transfer has two entries that sum to zero');
SELECT is_empty(
	$$SELECT 1 FROM payledger.account_entries(pg_temp.acct('a')) e
	  WHERE e.transfer_id = pg_temp.tid('x4')$$,
	'the declined transfer has no entry');
SELECT is_empty(
	$$SELECT e.transfer_id FROM payledger.account_entries(pg_temp.acct('a')) e
	  JOIN pg_temp.res r ON r.transfer_id = e.transfer_id
	  WHERE e.posted_at NOT BETWEEN r.called_at AND r.returned_at$$,
	'each entry is stamped with the wall clock of its transfer');
SELECT results_eq(
	$$SELECT transfer_id, amount, balance_after FROM payledger.account_entries(pg_temp.acct('a'), pg_temp.at('t1'), pg_temp.at('t3'))$$,
	$$VALUES (pg_temp.tid('x1'), -300::bigint, 700::bigint),
	         (pg_temp.tid('x2'), 100::bigint, 800::bigint)$$,
	'account_entries(a, since, until) returns only the postings in between');
SELECT results_eq(
	$$SELECT transfer_id FROM payledger.account_entries(pg_temp.acct('a'), pg_temp.at('t3'))$$,
	$$VALUES (pg_temp.tid('x3'))$$,
	'account_entries(a, since) returns the postings from then on');
SELECT results_eq(
	$$SELECT transfer_id FROM payledger.account_entries(pg_temp.acct('a'), until => pg_temp.at('t1'))$$,
	$$VALUES (pg_temp.tid('f1'))$$,
	'account_entries(a, until => ...) returns the postings up to then');
SELECT is_empty($$SELECT * FROM payledger.account_entries(pg_temp.acct('a'), pg_temp.at('t4'))$$,
	'account_entries after the last posting is empty');
SELECT is_empty($$SELECT * FROM payledger.account_entries(pg_temp.acct('a'), '-infinity', pg_temp.at('t0'))$$,
	'account_entries before the first posting is empty');
SELECT is_empty($$SELECT * FROM payledger.account_entries(pg_temp.acct('e1'), pg_temp.at('t0'), pg_temp.at('t7'))$$,
	'account_entries of an account with no posting in the window is empty');

------------------------------------------------------------------------------
-- balance_at: the posted balance as of a past instant
------------------------------------------------------------------------------

SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t0')), 0::bigint, 'balance_at(a) before any posting is 0');
SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t1')), 1000::bigint, 'balance_at(a) after the funding is 1000');
SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t2')), 700::bigint, 'balance_at(a) after the first debit is 700');
SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t3')), 800::bigint, 'balance_at(a) after the credit back is 800');
SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t4')), 750::bigint, 'balance_at(a) after the last debit is 750');
SELECT is(payledger.balance_at(pg_temp.acct('a'), pg_temp.at('t5')), 750::bigint, 'balance_at(a) after the declined transfer is still 750');
SELECT is(payledger.balance_at(pg_temp.acct('a'), '-infinity'), 0::bigint, 'balance_at(a, -infinity) is 0');
SELECT is(payledger.balance_at(pg_temp.acct('a'), clock_timestamp()), 750::bigint, 'balance_at(a, clock_timestamp()) is the current balance');
SELECT is(payledger.balance_at(pg_temp.acct('b'), pg_temp.at('t2')), 300::bigint, 'balance_at(b) between its postings is 300');
SELECT is(payledger.balance_at(pg_temp.acct('sys'), pg_temp.at('t1')), -1000::bigint, 'balance_at of the floorless source is negative');
SELECT is(payledger.balance_at(pg_temp.acct('e1'), pg_temp.at('t7')), 0::bigint, 'balance_at(e1) before its first posting is 0');

------------------------------------------------------------------------------
-- pending amounts: a hold reserves without posting
------------------------------------------------------------------------------

SELECT pg_temp.open('c') \gset
SELECT pg_temp.ver('a') AS ver_before_hold \gset
SELECT results_eq(
	$$SELECT status FROM payledger.hold(pg_temp.acct('a'), pg_temp.acct('c'), 100, 'USD', '7 days', 'hold-1')$$,
	$$VALUES ('pending')$$, 'setup: a hold of 100 from a to c is pending');
SELECT results_eq(
	$$SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(pg_temp.acct('a'))$$,
	$$VALUES (750::bigint, 100::bigint, 0::bigint, 650::bigint)$$,
	'the source of a hold: balance unchanged, pending_debits 100, available = balance - pending_debits');
SELECT results_eq(
	$$SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(pg_temp.acct('c'))$$,
	$$VALUES (0::bigint, 0::bigint, 100::bigint, 0::bigint)$$,
	'the destination of a hold: pending_credits 100, nothing available yet');
SELECT is(pg_temp.ver('a'), :ver_before_hold::bigint + 1, 'the hold raised the source''s version by one');
SELECT is(payledger.balance_at(pg_temp.acct('a'), clock_timestamp()), 750::bigint,
	'balance_at is the posted balance: the hold does not count');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes with a hold open');

------------------------------------------------------------------------------
-- the double-entry invariant and check_ledger()
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT c.currency, sum(g.balance)
	    FROM (VALUES ('USD', 'sys'), ('USD', 'a'), ('USD', 'b'), ('USD', 'c'), ('EUR', 'eursys'), ('EUR', 'e1')) c(currency, name),
	         payledger.get_balance(pg_temp.acct(c.name)) g
	   GROUP BY c.currency ORDER BY c.currency$$,
	$$VALUES ('EUR', 0::numeric), ('USD', 0::numeric)$$,
	'the balances of each currency sum to zero');
SELECT isnt_empty($$SELECT * FROM payledger.check_ledger()$$, 'check_ledger() returns its checks');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE ok IS NOT TRUE$$,
	'check_ledger() reports every check ok after the series');

-- check_ledger() must be able to fail: forge rows behind the functions' back
-- (a superuser who switches the INSERT guards off) and count the failed
-- checks, then undo the forgery
CREATE FUNCTION pg_temp.failed_checks_after(p_forgery text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n	bigint;
BEGIN
	BEGIN
		ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		ALTER TABLE payledger.entries DISABLE TRIGGER payledger_insert_guard;
		ALTER TABLE payledger.accounts DISABLE TRIGGER payledger_insert_guard;
		EXECUTE p_forgery;
		SELECT count(*) INTO n FROM payledger.check_ledger() WHERE NOT ok;
		RAISE EXCEPTION 'undo the forgery';
	EXCEPTION WHEN raise_exception THEN
		NULL;				-- n survives the rollback of the block
	END;
	RETURN n;
END $$;

SELECT cmp_ok(pg_temp.failed_checks_after(format(
		$$INSERT INTO payledger.entries (account_id, account_version, transfer_id, amount, balance_after, created_at)
		  VALUES (%L, %s, gen_random_uuid(), 5, 755, clock_timestamp())$$,
		pg_temp.acct('a'), pg_temp.ver('a') + 1)), '>', 0::bigint,
	'check_ledger() flags an entry that no balance or transfer accounts for');
SELECT cmp_ok(pg_temp.failed_checks_after(
		$$INSERT INTO payledger.accounts (id, currency, kind, min_balance, status, balance, version, created_at, updated_at)
		  VALUES (gen_random_uuid(), 'USD', 'forged', 0, 'active', 1000000, 1, now(), now())$$), '>', 0::bigint,
	'check_ledger() flags an account holding money that came from nowhere');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() is clean again once the forgeries are undone');

SELECT * FROM finish();
ROLLBACK;
