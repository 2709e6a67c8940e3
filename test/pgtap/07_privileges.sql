-- 07_privileges.sql: an application role moves money only through the functions
-- (doc/reference.md sections 1, 2, 4 and 7)
--
-- A role with USAGE on schema payledger and EXECUTE on its functions can
-- transfer and read balances, but cannot write the ledger's tables itself.
-- The roles are created inside the test's transaction and vanish with it.

BEGIN;
\ir helpers.psql

SELECT plan(26);

CREATE ROLE regress_app;
GRANT USAGE ON SCHEMA payledger TO regress_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA payledger TO regress_app;
CREATE ROLE regress_nobody;		-- no USAGE on the schema

-- the fixtures are the superuser's temp tables; let the roles use them
GRANT SELECT, INSERT ON fx, res TO regress_app, regress_nobody;

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
END $$;
SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 1000), 'posted', 'setup: fund a with 1000 as the superuser');
SELECT session_user AS admin \gset

SELECT ok(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_app'), 'regress_app is not a superuser');
SELECT ok(NOT has_table_privilege('regress_app', 'payledger.accounts', 'UPDATE'),
	'regress_app holds no UPDATE privilege on payledger.accounts');

------------------------------------------------------------------------------
-- as the application
------------------------------------------------------------------------------

SET LOCAL ROLE regress_app;
SELECT is(current_user::text, 'regress_app', 'now running as regress_app');

SET LOCAL payledger.actor_type = 'API';
SELECT is(pg_temp.xfer('app', 'a', 'b', 100, 'USD', 'app-1'), 'posted', 'the application role can transfer');
SELECT is((SELECT replayed FROM payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'app-1')), true,
	'and its retries replay');
SELECT is(pg_temp.xfer('app-declined', 'a', 'b', 5000, 'USD', 'app-2'), 'rejected',
	'a declined transfer returns rejected for the application role too');
SELECT results_eq($$SELECT balance, available FROM payledger.get_balance(pg_temp.acct('a'))$$,
	$$VALUES (900::bigint, 900::bigint)$$, 'the application role can read a balance');
SELECT is((SELECT count(*) FROM payledger.account_entries(pg_temp.acct('b'))), 1::bigint,
	'the application role can read a statement');
SELECT is(payledger.balance_at(pg_temp.acct('b'), clock_timestamp()), 100::bigint,
	'the application role can call balance_at');

SELECT throws_ok($$UPDATE payledger.accounts SET balance = balance + 1000000$$,
	'42501', 'permission denied for table accounts',
	'the application role cannot UPDATE payledger.accounts (42501)');
SELECT throws_ok($$DELETE FROM payledger.transfers$$,
	'42501', 'permission denied for table transfers',
	'the application role cannot DELETE FROM payledger.transfers (42501)');
SELECT throws_ok($$INSERT INTO payledger.entries (account_id, account_version, transfer_id, amount, balance_after, created_at)
				   VALUES (pg_temp.acct('a'), 1000, gen_random_uuid(), 1000000, 1000000, now())$$,
	'42501', 'permission denied for table entries',
	'the application role cannot INSERT INTO payledger.entries (42501)');
SELECT throws_ok($$DELETE FROM payledger.payment_audit_log$$,
	'42501', 'permission denied for table payment_audit_log',
	'the application role cannot DELETE FROM payledger.payment_audit_log (42501)');
SELECT throws_ok($$SET LOCAL payledger.require_idempotency_key = off$$,
	'42501', NULL, 'the application role cannot turn payledger.require_idempotency_key off');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD')$$,
	'PY008', NULL, 'so a call without a key still raises PY008');

RESET ROLE;
SELECT is(current_user::text, :'admin', 'back to the superuser after RESET ROLE');

------------------------------------------------------------------------------
-- a role without USAGE on the schema cannot reach the ledger
------------------------------------------------------------------------------

SET LOCAL ROLE regress_nobody;
SELECT throws_ok($$SELECT * FROM payledger.get_balance(pg_temp.acct('a'))$$,
	'42501', 'permission denied for schema payledger',
	'a role without USAGE on schema payledger cannot call its functions');
RESET ROLE;
SELECT is(current_user::text, :'admin', 'back to the superuser again');

------------------------------------------------------------------------------
-- what the application did, seen by the superuser
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT actor_type, actor_id FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('app')$$,
	$$VALUES ('API', 'regress_app')$$,
	'the audit row names the calling role as the actor, not the ledger''s owner');
SELECT results_eq(
	$$SELECT event_type, success, actor_id FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('app-declined')$$,
	$$VALUES ('TRANSFER_REJECTED', false, 'regress_app')$$,
	'the application''s declined transfer is audited too');
SELECT is(pg_temp.bal('a'), 900::bigint, 'the refused UPDATE left a''s balance alone');
SELECT is(pg_temp.bal('b'), 100::bigint, 'b received the one transfer');
SELECT is((SELECT count(*) FROM payledger.account_entries(pg_temp.acct('a'))), 2::bigint,
	'the refused INSERT left no entry behind');
SELECT is(current_setting('payledger.require_idempotency_key'), 'on', 'payledger.require_idempotency_key is still on');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes');

SELECT * FROM finish();
ROLLBACK;
