-- 04_idempotency.sql: retries never move money twice (doc/reference.md section 5)
--
-- Same key and parameters replay the stored result (replayed = true),
-- move nothing and write no audit row; rejected outcomes replay too; a
-- caller-supplied transfer_id is itself idempotent; keys are purged after
-- payledger.idempotency_retention.

BEGIN;
\ir helpers.psql

SELECT plan(54);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
END $$;

SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 1000), 'posted', 'setup: fund a with 1000');

------------------------------------------------------------------------------
-- a posted transfer replays
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('first', 'a', 'b', 100, 'USD', 'idem-1', '{"order": "A-1"}'), 'posted', 'the first call with key idem-1 posts');
SELECT is((SELECT replayed FROM pg_temp.res WHERE label = 'first'), false, 'the first call is not a replay');

SELECT count(*) AS audit_before FROM payledger.payment_audit_log \gset
SELECT pg_temp.ver('a') AS ver_a, pg_temp.ver('b') AS ver_b \gset

SELECT results_eq(
	$$SELECT transfer_id, status, reason_code, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'idem-1', '{"order": "A-1"}')$$,
	$$VALUES (pg_temp.tid('first'), 'posted', NULL::text, true)$$,
	'a retry with the same key and parameters returns the same transfer_id, posted, replayed = true');
SELECT results_eq(
	$$SELECT transfer_id, status, reason_code, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'idem-1', '{"order": "A-1"}')$$,
	$$VALUES (pg_temp.tid('first'), 'posted', NULL::text, true)$$,
	'and so does a second retry');
SELECT is(pg_temp.bal('a'), 900::bigint, 'the money left the source once');
SELECT is(pg_temp.bal('b'), 100::bigint, 'the money reached the destination once');
SELECT is(pg_temp.ver('a'), :ver_a::bigint, 'replays did not change the source''s version');
SELECT is(pg_temp.ver('b'), :ver_b::bigint, 'replays did not change the destination''s version');
SELECT is((SELECT count(*) FROM payledger.account_entries(pg_temp.acct('b'))), 1::bigint,
	'the destination has one entry');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log), :audit_before::bigint,
	'replays wrote no audit row');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('first')), 1::bigint,
	'the transfer has exactly one audit row');

-- keys of ledger functions are unique in the database, across operations
SELECT throws_ok(
	$$SELECT payledger.hold(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', '7 days', 'idem-1', '{"order": "A-1"}')$$,
	'PY002', 'idempotency key "idem-1" was already used for another operation',
	'the key of a transfer reused by another operation (hold) raises PY002');
SELECT throws_ok(
	$$SELECT payledger.transfer_legs(jsonb_build_array(jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('b'), 'amount', 100)),
	                                 'USD', 'idem-1', '{"order": "A-1"}')$$,
	'PY002', 'idempotency key "idem-1" was already used for another operation',
	'the key of a transfer reused by transfer_legs raises PY002');
SELECT results_eq($$SELECT balance, available FROM payledger.get_balance(pg_temp.acct('a'))$$,
	$$VALUES (900::bigint, 900::bigint)$$, 'the refused operations moved and reserved nothing');

-- parameters are compared by value: jsonb key order and the default metadata do not matter
SELECT is(pg_temp.xfer('meta-order', 'a', 'b', 7, 'USD', 'idem-meta', '{"x": 1, "y": [1, 2]}'), 'posted',
	'setup: a transfer with metadata {"x": 1, "y": [1, 2]}');
SELECT results_eq(
	$$SELECT transfer_id, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 7, 'USD', 'idem-meta', '{"y": [1, 2], "x": 1}')$$,
	$$VALUES (pg_temp.tid('meta-order'), true)$$,
	'the same metadata with its keys in another order replays');
SELECT is(pg_temp.xfer('meta-default', 'a', 'b', 3, 'USD', 'idem-default'), 'posted',
	'setup: a transfer with the default metadata');
SELECT results_eq(
	$$SELECT transfer_id, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 3, 'USD', 'idem-default', '{}')$$,
	$$VALUES (pg_temp.tid('meta-default'), true)$$,
	'an explicit {} replays a call that used the default metadata');

-- two calls with one key in one statement: the second sees the first
SELECT is(
	(SELECT array_agg((payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 20, 'USD', 'idem-stmt')).replayed ORDER BY g)
	   FROM generate_series(1, 2) g),
	ARRAY[false, true],
	'two calls with one key in one statement: the first works, the second replays');
SELECT is(pg_temp.bal('a'), 900::bigint - 7 - 3 - 20, 'and the source was debited once');

------------------------------------------------------------------------------
-- a rejected outcome is stored and replays as rejected
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('rej', 'a', 'b', 5000, 'USD', 'idem-rej'), 'rejected', 'setup: a transfer above the balance is declined');
SELECT is(pg_temp.xfer('refill', 'sys', 'a', 10000), 'posted', 'setup: the source now has enough money');
SELECT pg_temp.bal('a') AS bal_a, pg_temp.bal('b') AS bal_b \gset
SELECT count(*) AS audit_before FROM payledger.payment_audit_log \gset
SELECT results_eq(
	$$SELECT transfer_id, status, reason_code, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 5000, 'USD', 'idem-rej')$$,
	$$VALUES (pg_temp.tid('rej'), 'rejected', 'INSUFFICIENT_FUNDS', true)$$,
	'a retry of a declined call replays the decline (same id, rejected, same reason, replayed)');
SELECT is(pg_temp.bal('a'), :bal_a::bigint, 'the replayed decline moved nothing out of the source');
SELECT is(pg_temp.bal('b'), :bal_b::bigint, 'the replayed decline moved nothing into the destination');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log), :audit_before::bigint,
	'the replayed decline wrote no audit row');

------------------------------------------------------------------------------
-- a caller-supplied transfer_id is idempotent
------------------------------------------------------------------------------

INSERT INTO fx VALUES ('own', payledger.uuid_v7());
SELECT is(pg_temp.xfer('own-id', 'a', 'b', 10, 'USD', 'idem-own', '{}', pg_temp.acct('own')), 'posted',
	'a transfer with a caller-supplied transfer_id posts');
SELECT is(pg_temp.tid('own-id'), pg_temp.acct('own'), 'and returns that transfer_id');
SELECT results_eq(
	$$SELECT transfer_id, status, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 10, 'USD', 'idem-own', '{}', pg_temp.acct('own'))$$,
	$$VALUES (pg_temp.acct('own'), 'posted', true)$$,
	'the same key and transfer_id replay');
SELECT results_eq(
	$$SELECT transfer_id, status, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 10, 'USD', 'idem-own-2', '{}', pg_temp.acct('own'))$$,
	$$VALUES (pg_temp.acct('own'), 'posted', true)$$,
	'the same transfer_id under a new key replays');
SELECT is(pg_temp.bal('a'), :bal_a::bigint - 10, 'the caller-identified transfer moved money once');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id = pg_temp.acct('own')), 1::bigint,
	'the caller-identified transfer has one audit row');

------------------------------------------------------------------------------
-- create_account with a caller-supplied id is idempotent
------------------------------------------------------------------------------

INSERT INTO fx VALUES ('fixed', payledger.uuid_v7());
SELECT is(payledger.create_account('EUR', 'wallet', -100, '{"owner": "u1"}', pg_temp.acct('fixed')), pg_temp.acct('fixed'),
	'create_account with a caller-supplied id returns it');
SELECT is(payledger.create_account('EUR', 'wallet', -100, '{"owner": "u1"}', pg_temp.acct('fixed')), pg_temp.acct('fixed'),
	'repeating it with the same attributes returns the same id');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log
		   WHERE event_type = 'ACCOUNT_CREATED' AND account_id = pg_temp.acct('fixed')), 1::bigint,
	'the repeat wrote no second ACCOUNT_CREATED row');
SELECT results_eq($$SELECT balance, version FROM payledger.get_balance(pg_temp.acct('fixed'))$$,
	$$SELECT 0::bigint, version FROM payledger.get_balance(pg_temp.acct('fixed'))$$,
	'the account exists once, at zero');

------------------------------------------------------------------------------
-- purge_idempotency_keys() and payledger.idempotency_retention
------------------------------------------------------------------------------

SELECT is(current_setting('payledger.idempotency_retention'), '7 days', 'the default retention is 7 days');
SELECT is(payledger.purge_idempotency_keys(), 0::bigint, 'purge with the default retention deletes none of the fresh keys');
SET LOCAL payledger.idempotency_retention = '1 hour';
SELECT is(payledger.purge_idempotency_keys(), 0::bigint, 'purge with a one-hour retention deletes none either');
SELECT results_eq(
	$$SELECT transfer_id, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'idem-1', '{"order": "A-1"}')$$,
	$$VALUES (pg_temp.tid('first'), true)$$,
	'a kept key still replays after the purge');

SELECT throws_ok($$SET LOCAL payledger.idempotency_retention = '0'$$, '22023', NULL,
	'a zero retention is refused (22023)');
SELECT throws_ok($$SET LOCAL payledger.idempotency_retention = '-1 day'$$, '22023', NULL,
	'a negative retention is refused (22023)');
SELECT throws_ok($$SET LOCAL payledger.idempotency_retention = 'soon'$$, '22023', NULL,
	'a retention that is not an interval is refused (22023)');
SELECT is(current_setting('payledger.idempotency_retention'), '1 hour', 'the refused values left the retention alone');

-- keys age by the wall clock: wait past a one-second retention
SET LOCAL payledger.idempotency_retention = '1 second';
SELECT pg_sleep(1.5) \gset
SELECT is(pg_temp.xfer('fresh', 'a', 'b', 1, 'USD', 'idem-fresh'), 'posted', 'setup: a key made after the wait');
SELECT cmp_ok(payledger.purge_idempotency_keys(), '>', 0::bigint,
	'purge with a one-second retention deletes the keys made before the wait');
SELECT is(payledger.purge_idempotency_keys(), 0::bigint, 'a second purge right after finds nothing old');
SELECT results_eq(
	$$SELECT transfer_id, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'idem-fresh')$$,
	$$VALUES (pg_temp.tid('fresh'), true)$$,
	'the key younger than the retention survived the purge and replays');
SELECT is(pg_temp.xfer('reuse', 'a', 'b', 55, 'USD', 'idem-1'), 'posted',
	'a purged key is forgotten: reusing it with other parameters is a new transfer, not PY002');
SELECT isnt(pg_temp.tid('reuse'), pg_temp.tid('first'), 'with a new transfer_id');
SELECT results_eq(
	$$SELECT transfer_id, replayed
	    FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 10, 'USD', 'idem-own-after-purge', '{}', pg_temp.acct('own'))$$,
	$$VALUES (pg_temp.acct('own'), true)$$,
	'a caller-supplied transfer_id outlives the purge of its keys and still replays');
SELECT throws_ok(
	$$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 11, 'USD', 'idem-own-3', '{}', pg_temp.acct('own'))$$,
	'PY002', NULL, 'and is still refused with other parameters');

SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes after the replays');

SELECT * FROM finish();
ROLLBACK;
