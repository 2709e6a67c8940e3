-- 08_audit_protection.sql: DDL protection (PY007) and tamper evidence
-- (doc/reference.md sections 1, 7 and 8)
--
-- ALTER TABLE, DISABLE TRIGGER and DROP on the ledger raise PY007, for a
-- superuser too; verify_audit_log() and check_ledger() catch what a
-- superuser does after switching the guards off.  Every forgery below runs
-- inside pg_temp.undone(), which rolls it back before the next test.

BEGIN;
\ir helpers.psql

SELECT plan(32);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
END $$;
SELECT is(pg_temp.xfer('t1', 'sys', 'a', 1000), 'posted', 'setup: a first transfer');
SELECT is(pg_temp.xfer('t2', 'a', 'b', 300), 'posted', 'setup: a second transfer');
SELECT is(pg_temp.xfer('t3', 'a', 'b', 5000), 'rejected', 'setup: a declined transfer');

------------------------------------------------------------------------------
-- PY007 protected_object
------------------------------------------------------------------------------

SELECT throws_ok($$ALTER TABLE payledger.payment_audit_log ADD COLUMN note text$$,
	'PY007', NULL, 'ALTER TABLE payledger.payment_audit_log raises PY007');
SELECT throws_ok($$ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only$$,
	'PY007', NULL, 'DISABLE TRIGGER on payledger.payment_audit_log raises PY007');
SELECT throws_ok($$ALTER TABLE payledger.accounts DISABLE TRIGGER ALL$$,
	'PY007', NULL, 'DISABLE TRIGGER ALL on payledger.accounts raises PY007');
SELECT throws_ok($$DROP TRIGGER transfers_append_only ON payledger.transfers$$,
	'PY007', NULL, 'DROP TRIGGER on payledger.transfers raises PY007');
SELECT throws_ok($$DROP TABLE payledger.payment_audit_log$$,
	'PY007', NULL, 'DROP TABLE payledger.payment_audit_log raises PY007');
SELECT throws_ok($$DROP TABLE payledger.entries$$,
	'PY007', NULL, 'DROP TABLE payledger.entries raises PY007');
-- what pg_restore may run on a monthly partition is still refused on the
-- extension's own tables, for a superuser too
SELECT throws_ok($$ALTER TABLE payledger.payment_audit_log OWNER TO pg_database_owner$$,
	'PY007', NULL, 'OWNER TO on payledger.payment_audit_log raises PY007');
SELECT throws_ok($$ALTER TABLE payledger.accounts ALTER COLUMN metadata SET DEFAULT '{"x": 1}'$$,
	'PY007', NULL, 'ALTER COLUMN ... SET DEFAULT on payledger.accounts raises PY007');
SELECT throws_ok($$ALTER TABLE payledger.payment_audit_log ADD CONSTRAINT one_per_payment UNIQUE (payment_id)$$,
	'PY007', NULL, 'ADD CONSTRAINT ... UNIQUE on payledger.payment_audit_log raises PY007');
SELECT throws_ok($$ALTER TABLE payledger.transfers ENABLE ALWAYS TRIGGER transfers_append_only$$,
	'PY007', NULL, 'ENABLE ALWAYS TRIGGER on payledger.transfers raises PY007');
SELECT throws_ok($$DROP EXTENSION payledger$$,
	'PY007', 'DROP EXTENSION payledger is not allowed while the ledger holds data',
	'DROP EXTENSION payledger while the ledger holds data raises PY007');
-- a rule or a trigger could swallow writes to the ledger without an error
SELECT throws_ok($$CREATE RULE swallow AS ON UPDATE TO payledger.payment_audit_log DO INSTEAD NOTHING$$,
	'PY007', 'CREATE RULE is not allowed on payledger''s objects',
	'CREATE RULE ... DO INSTEAD NOTHING on payledger.payment_audit_log raises PY007');
CREATE FUNCTION pg_temp.swallow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
SELECT throws_ok($$CREATE TRIGGER swallow BEFORE INSERT ON payledger.payment_audit_log
		FOR EACH ROW EXECUTE FUNCTION pg_temp.swallow()$$,
	'PY007', 'CREATE TRIGGER is not allowed on payledger''s objects',
	'CREATE TRIGGER on payledger.payment_audit_log raises PY007');
SELECT throws_ok($$CREATE TRIGGER swallow BEFORE UPDATE ON payledger.accounts
		FOR EACH ROW EXECUTE FUNCTION payledger.forbid_mutation()$$,
	'PY007', 'CREATE TRIGGER is not allowed on payledger''s objects',
	'CREATE TRIGGER on payledger.accounts raises PY007, even with a payledger function');
SELECT throws_ok($$ALTER EXTENSION payledger DROP TABLE payledger.payment_audit_log$$,
	'PY007', 'ALTER EXTENSION payledger ADD/DROP is not allowed on payledger''s objects',
	'ALTER EXTENSION payledger DROP TABLE raises PY007');
SET LOCAL session_replication_role = replica;
SELECT throws_ok($$ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only$$,
	'PY007', NULL, 'replica mode: DISABLE TRIGGER on the audit log still raises PY007');
SET LOCAL session_replication_role = origin;
SELECT is(pg_temp.undone($$SET LOCAL payledger.allow_drop = on; DROP EXTENSION payledger$$,
						 $$SELECT count(*)::text FROM pg_extension WHERE extname = 'payledger'$$),
	'0', 'with payledger.allow_drop = on a superuser can drop the extension (undone)');
SELECT is(current_setting('payledger.allow_drop'), 'off', 'payledger.allow_drop is off by default');
SELECT lives_ok($$CREATE TEMP TABLE regress_other (id int); ALTER TABLE regress_other ADD COLUMN note text; DROP TABLE regress_other$$,
	'DDL on other tables is not affected');

------------------------------------------------------------------------------
-- verify_audit_log(): a clean log verifies
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT ok, first_bad_event_id FROM payledger.verify_audit_log()$$,
	$$VALUES (true, NULL::uuid)$$,
	'verify_audit_log() returns one summary row: ok, no bad event');
SELECT cmp_ok((SELECT rows_checked FROM payledger.verify_audit_log()), '>=',
	(SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id IN (SELECT transfer_id FROM pg_temp.res)),
	'verify_audit_log() checked at least the rows this test wrote');

------------------------------------------------------------------------------
-- tampering behind the guards is detected
------------------------------------------------------------------------------

SELECT is(pg_temp.undone(format(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		  UPDATE payledger.payment_audit_log SET amount_cents = 3 WHERE payment_id = %L$$, pg_temp.tid('t2')),
		$$SELECT ok::text FROM payledger.verify_audit_log()$$),
	'false', 'a row changed by a superuser who switched the guards off: verify_audit_log() is not ok');
SELECT is(pg_temp.undone(format(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		  UPDATE payledger.payment_audit_log SET amount_cents = 3 WHERE payment_id = %L$$, pg_temp.tid('t2')),
		format($$SELECT (first_bad_event_id = (SELECT event_id FROM payledger.payment_audit_log WHERE payment_id = %L))::text
		         FROM payledger.verify_audit_log()$$, pg_temp.tid('t2'))),
	'true', 'and it names the changed row');
SELECT is(pg_temp.undone(format(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		  DELETE FROM payledger.payment_audit_log WHERE payment_id = %L$$, pg_temp.tid('t2')),
		$$SELECT ok::text FROM payledger.verify_audit_log()$$),
	'false', 'a row deleted from the middle of the log: verify_audit_log() is not ok');
SELECT is(pg_temp.undone(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER payledger_insert_guard;
		  INSERT INTO payledger.payment_audit_log (event_id, event_time, server_time, event_type, actor_type, actor_id, success)
		  VALUES (payledger.uuid_v7(), now(), now(), 'TRANSFER_POSTED', 'SYSTEM', 'mallory', true)$$,
		$$SELECT ok::text FROM payledger.verify_audit_log()$$),
	'false', 'a row inserted by hand: verify_audit_log() is not ok');
SELECT is(pg_temp.undone(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER payledger_insert_guard;
		  INSERT INTO payledger.payment_audit_log (event_id, event_time, server_time, event_type, actor_type, actor_id, success)
		  VALUES (payledger.uuid_v7(), now(), now(), 'TRANSFER_POSTED', 'SYSTEM', 'mallory', true)$$,
		$$SELECT bool_and(ok)::text FROM payledger.check_ledger()$$),
	'false', 'a row inserted by hand: check_ledger() reports a failed check (the audit chain)');

SELECT is(current_setting('session_replication_role'), 'origin', 'the forgeries left the session as it was');
SELECT results_eq($$SELECT ok FROM payledger.verify_audit_log()$$, $$VALUES (true)$$,
	'after the forgeries were undone the log verifies again');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes, the audit chain included');

SELECT * FROM finish();
ROLLBACK;
