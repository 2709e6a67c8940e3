-- 02_error_precedence.sql: with several problems, the first check in
-- doc/reference.md section 1's order decides:
--   (1) arguments: 22004, 22023, 22003, PY006  (2) PY008
--   (3) the idempotency key: replay or PY002   (4) PY005  (5) PY004
--   (8) business declines (returned, not raised)

BEGIN;
\ir helpers.psql

SELECT plan(30);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');			-- stays empty
	PERFORM pg_temp.open('frozen');
	PERFORM pg_temp.open('closed');
	PERFORM pg_temp.open('eursys', 'EUR', NULL, 'system');
	PERFORM pg_temp.open('e1', 'EUR');
	INSERT INTO pg_temp.fx VALUES ('ghost', gen_random_uuid());
END $$;

SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 1000), 'posted', 'setup: fund a');
SELECT is(pg_temp.xfer('fund-frozen', 'sys', 'frozen', 1000), 'posted', 'setup: fund the account to freeze');
SELECT is(pg_temp.xfer('fund-e1', 'eursys', 'e1', 1000, 'EUR'), 'posted', 'setup: fund e1');
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('frozen'), 'review'),
						  payledger.close_account(pg_temp.acct('closed'))$$,
	'setup: freeze one account and close another');
SELECT is(pg_temp.xfer('keyed', 'a', 'b', 100, 'USD', 'used-key'), 'posted', 'setup: key used-key is taken');

SELECT count(*) AS audit_before FROM payledger.payment_audit_log \gset

-- (1) within the argument checks: 22004, then 22023, then PY006
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), NULL, 'USD', 'p-1')$$,
	'22004', 'amount must not be null', 'NULL amount and an unknown account: 22004 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('ghost'), 0, NULL, 'p-2')$$,
	'22004', 'currency must not be null', 'NULL currency, amount 0 and an unknown account: 22004 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), NULL, 'USD', 'p-3', '{"card": "4111111111111111"}')$$,
	'22004', 'amount must not be null', 'NULL amount and a PAN in metadata: 22004 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), 0, 'USD', 'p-4')$$,
	'22023', 'amount must be positive', 'amount 0 and an unknown account: 22023 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), 1, 'XYZ', 'p-5')$$,
	'22023', 'unknown currency "XYZ"', 'unknown currency and an unknown account: 22023 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('ghost'), 1, 'USD', 'p-6')$$,
	'22023', 'from_account and to_account must differ', 'the same unknown account on both sides: 22023 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), -1, 'USD', 'p-7', '{"cvv": "123"}')$$,
	'22023', 'amount must be positive', 'a negative amount and a cvv key: 22023 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'usd', 'card 4111111111111111')$$,
	'22023', 'unknown currency "usd"', 'a bad currency and a PAN in the key: 22023 wins');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), 1, 'USD', 'p-8', '{"card": "4111111111111111"}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'a PAN in metadata and an unknown account: PY006 wins');

-- (1) before (2): argument problems beat a missing key
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 0, 'USD')$$,
	'22023', 'amount must be positive', 'amount 0 and no key: 22023 wins over PY008');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', NULL, '{"card": "4111-1111-1111-1111"}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'a PAN in metadata and no key: PY006 wins over PY008');

-- (2) before (4) and (5)
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), 1, 'USD')$$,
	'PY008', 'transfer requires an idempotency key', 'no key and an unknown account: PY008 wins over PY005');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('e1'), pg_temp.acct('b'), 1, 'USD')$$,
	'PY008', 'transfer requires an idempotency key', 'no key and a currency mismatch: PY008 wins over PY004');

-- (3) before (4), (5) and (8)
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('ghost'), 100, 'USD', 'used-key')$$,
	'PY002', 'idempotency key "used-key" was already used with different parameters',
	'a reused key with other parameters and an unknown account: PY002 wins over PY005');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('e1'), 100, 'USD', 'used-key')$$,
	'PY002', 'idempotency key "used-key" was already used with different parameters',
	'a reused key with other parameters and a currency mismatch: PY002 wins over PY004');
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('a'), 'review')$$, 'setup: freeze the source of used-key');
SELECT results_eq(
	$$SELECT transfer_id, status, reason_code, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'used-key')$$,
	$$VALUES (pg_temp.tid('keyed'), 'posted', NULL::text, true)$$,
	'a retry of used-key after its source froze replays posted: the stored result wins over ACCOUNT_FROZEN');
SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('a'))$$, 'setup: unfreeze it again');

-- (4) before (5)
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('e1'), pg_temp.acct('ghost'), 1, 'USD', 'p-9')$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')),
	'an unknown destination and a source in another currency: PY005 wins over PY004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('e1'), 1, 'USD', 'p-10')$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')),
	'an unknown source and a destination in another currency: PY005 wins over PY004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('frozen'), pg_temp.acct('ghost'), 1, 'USD', 'p-11')$$,
	'PY005', NULL, 'a frozen source and an unknown destination: PY005 is raised, not a decline');

-- (5) before (8): a currency mismatch raises even where the money would decline
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('b'), pg_temp.acct('e1'), 5000, 'EUR', 'p-12')$$,
	'PY004', format('account %s holds USD, not EUR', pg_temp.acct('b')),
	'a currency mismatch and insufficient funds: PY004 is raised, not INSUFFICIENT_FUNDS');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('frozen'), pg_temp.acct('e1'), 1, 'USD', 'p-13')$$,
	'PY004', NULL, 'a currency mismatch and a frozen source: PY004 is raised, not ACCOUNT_FROZEN');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('e1'), pg_temp.acct('closed'), 1, 'EUR', 'p-14')$$,
	'PY004', NULL, 'a currency mismatch and a closed destination: PY004 is raised, not ACCOUNT_CLOSED');

SELECT is((SELECT count(*) FROM payledger.payment_audit_log), :audit_before::bigint + 2,
	'the raised requests wrote no audit row (only the freeze and unfreeze did)');

SELECT * FROM finish();
ROLLBACK;
