-- 15_access_roles.sql: nothing for PUBLIC, each of the five roles exactly
-- what it may do, no hand-written INSERT into the ledger, the metadata
-- limit and db_role in the audit log (doc/reference.md sections 2, 3, 7 and 13)
--
-- Every function of schema payledger is called as each role (with NULL
-- arguments, undone): it raises 42501 exactly when the role may not call it.

BEGIN;
\ir helpers.psql

SELECT plan(42);

CREATE ROLE regress_usage_only;		-- USAGE on the schema, nothing else
GRANT USAGE ON SCHEMA payledger TO regress_usage_only;
CREATE ROLE regress_clerk;			-- a login role of the application
GRANT payledger_app TO regress_clerk;
GRANT SELECT, INSERT ON fx, res TO regress_clerk;

-- who may call what: the roles granted EXECUTE (app and auditor also get
-- what the reader may, by membership)
CREATE TEMP TABLE matrix (fn regprocedure PRIMARY KEY, roles text[] NOT NULL);
INSERT INTO matrix
SELECT f::regprocedure, r::text[] FROM (VALUES
	('payledger.get_balance(uuid)', '{reader}'),
	('payledger.balance_at(uuid, timestamptz)', '{reader}'),
	('payledger.account_entries(uuid, timestamptz, timestamptz)', '{reader}'),
	('payledger.get_transfer(uuid)', '{reader}'),
	('payledger.list_transfers(uuid, timestamptz, timestamptz, text, jsonb, uuid, integer)', '{reader}'),
	('payledger.get_payment(uuid)', '{reader}'),
	('payledger.list_payments(uuid, payledger.payment_state, timestamptz, timestamptz, jsonb, uuid, integer)', '{reader}'),
	('payledger.list_accounts(uuid, text, text, uuid, integer)', '{reader}'),
	('payledger.uuid_v7()', '{app}'),
	('payledger.create_account(text, text, bigint, jsonb, uuid, uuid)', '{app}'),
	('payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid)', '{app}'),
	('payledger.submit_transfer(uuid, uuid, bigint, text, text, jsonb)', '{app}'),
	('payledger.hold(uuid, uuid, bigint, text, interval, text, jsonb)', '{app}'),
	('payledger.post_hold(uuid, bigint, text)', '{app}'),
	('payledger.void_hold(uuid, text)', '{app}'),
	('payledger.transfer_legs(jsonb, text, text, jsonb)', '{app}'),
	('payledger.transfer_many(uuid[], uuid[], bigint[], text, text[])', '{app}'),
	('payledger.create_payment(uuid, uuid, bigint, text, uuid, uuid, text, jsonb)', '{app}'),
	('payledger.authorize_payment(uuid, text, interval)', '{app}'),
	('payledger.capture_payment(uuid, text, bigint, jsonb)', '{app}'),
	('payledger.void_payment(uuid, text)', '{app}'),
	('payledger.refund_payment(uuid, bigint, text, text)', '{app}'),
	('payledger.fail_payment(uuid, text, text)', '{app}'),
	('payledger.dispute_payment(uuid, bigint, text, text)', '{app}'),
	('payledger.resolve_dispute(uuid, boolean, text)', '{app}'),
	('payledger.verify_audit_log()', '{auditor}'),
	('payledger.verify_audit_log(jsonb)', '{auditor}'),
	('payledger.verify_audit_archive(regclass, jsonb)', '{auditor}'),
	('payledger.freeze_account(uuid, text)', '{operator}'),
	('payledger.unfreeze_account(uuid)', '{operator}'),
	('payledger.close_account(uuid)', '{operator}'),
	('payledger.set_limits(uuid, bigint, bigint)', '{operator}'),
	('payledger.set_sub_balances(uuid, integer)', '{operator}'),
	('payledger.expire_holds()', '{operator}'),
	('payledger.expire_authorizations()', '{operator}'),
	('payledger.settle_merchant(uuid, timestamptz, uuid, text)', '{operator}'),
	('payledger.reconcile_settlement(uuid, jsonb)', '{operator}'),
	('payledger.create_audit_partitions(integer)', '{operator}'),
	('payledger.archive_audit_partition(regclass)', '{operator}'),
	('payledger.audit_checkpoint()', '{operator}'),
	('payledger.define_state_machine(text, jsonb)', '{operator}'),
	('payledger.enforce_state_machine()', '{operator}'),
	('payledger.forbid_mutation()', '{operator}'),
	('payledger.purge_idempotency_keys()', '{operator}'),
	('payledger.check_ledger()', '{operator}'),
	('payledger.scope_role(regrole, uuid)', '{operator}'),
	('payledger.unscope_role(regrole, uuid)', '{operator}'),
	('payledger.read_events(text, integer)', '{operator}'),
	('payledger.ack_events(text, uuid)', '{operator}'),
	('payledger.delivery_era()', '{operator,monitor}'),
	('payledger.error_counts()', '{operator,monitor}'),
	-- trigger functions: fired by their triggers, never called
	('payledger.guard_internal()', '{}'),
	('payledger.guard_payments()', '{}'),
	('payledger.guard_insert()', '{}'),
	('payledger.guard_scopes()', '{}'),
	('payledger.protect_ddl()', '{}')
) m(f, r);

CREATE TEMP TABLE roles (role text PRIMARY KEY, short text[]);
INSERT INTO roles VALUES
	('payledger_app', '{app,reader}'),
	('payledger_reader', '{reader}'),
	('payledger_auditor', '{auditor,reader}'),
	('payledger_operator', '{operator}'),
	('payledger_monitor', '{monitor}'),
	('regress_usage_only', '{}');

SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
				   WHERE p.pronamespace = 'payledger'::regnamespace
				  EXCEPT SELECT fn FROM matrix$$,
	'every function of schema payledger has its line in the matrix of this test');
SELECT is_empty($$SELECT p.oid::regprocedure, a.grantee::regrole FROM pg_proc p, aclexplode(p.proacl) a
				   WHERE p.pronamespace = 'payledger'::regnamespace AND a.grantee = 0$$,
	'no function of schema payledger is granted to PUBLIC');
SELECT results_eq($$SELECT rolname::text COLLATE "default", rolcanlogin FROM pg_roles WHERE rolname::text LIKE 'payledger\_%' ORDER BY 1$$,
	$$VALUES ('payledger_app', false), ('payledger_auditor', false), ('payledger_monitor', false),
	         ('payledger_operator', false), ('payledger_reader', false)$$,
	'the five payledger roles exist and cannot log in');
SELECT results_eq($$SELECT r.role, has_schema_privilege(r.role, 'payledger', 'USAGE') FROM roles r ORDER BY 1$$,
	$$SELECT role, true FROM roles ORDER BY 1$$,
	'each of them has USAGE on schema payledger');

-- Calls fn as the role with NULL arguments and undoes whatever it did:
-- false when it raises 42501 permission denied, true otherwise.  Trigger
-- functions cannot be called; their EXECUTE privilege is read instead.
CREATE FUNCTION pg_temp.may_call(p_role text, p_fn regprocedure) RETURNS boolean
	LANGUAGE plpgsql AS $$
DECLARE
	st		text;
	msg		text;
	args	text;
BEGIN
	IF (SELECT prorettype IN ('trigger'::regtype, 'event_trigger'::regtype) FROM pg_proc WHERE oid = p_fn) THEN
		RETURN has_function_privilege(p_role, p_fn, 'EXECUTE');
	END IF;
	SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY n) INTO args
	  FROM pg_proc p, unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, n) WHERE p.oid = p_fn;
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', p_role);
		EXECUTE format('SELECT * FROM %s.%I(%s)', 'payledger',
					   (SELECT proname FROM pg_proc WHERE oid = p_fn), coalesce(args, ''));
		RAISE EXCEPTION USING ERRCODE = 'PTUND', MESSAGE = 'undo';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	END;
	RETURN NOT (st = '42501' AND msg LIKE 'permission denied for function %');
END $$;

-- one test per role: the functions it may call, by calling every one
SELECT results_eq(
	format($$SELECT fn::text FROM matrix WHERE pg_temp.may_call(%L, fn) ORDER BY 1$$, r.role),
	format($$SELECT fn::text FROM matrix WHERE roles && %L::text[] ORDER BY 1$$, r.short),
	format('%s may call exactly the functions section 13 gives it; every other raises 42501', r.role))
  FROM roles r ORDER BY r.role;

-- the view and the audit log
CREATE FUNCTION pg_temp.may_select(p_role text, p_what text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st		text := 'ok';
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', p_role);
		EXECUTE format('SELECT count(*) FROM %s', p_what);
		RAISE EXCEPTION USING ERRCODE = 'PTUND', MESSAGE = 'undo';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
	END;
	RETURN CASE st WHEN 'PTUND' THEN 'ok' ELSE st END;
END $$;
SELECT results_eq($$SELECT role, pg_temp.may_select(role, 'payledger.metrics') FROM roles ORDER BY 1$$,
	$$SELECT role, CASE role WHEN 'payledger_monitor' THEN 'ok' ELSE '42501' END FROM roles ORDER BY 1$$,
	'only payledger_monitor may read payledger.metrics (helpers included); everybody else gets 42501');
SELECT results_eq($$SELECT role, pg_temp.may_select(role, 'payledger.payment_audit_log') FROM roles ORDER BY 1$$,
	$$SELECT role, CASE role WHEN 'payledger_auditor' THEN 'ok' ELSE '42501' END FROM roles ORDER BY 1$$,
	'only payledger_auditor may read payledger.payment_audit_log');
SELECT results_eq($$SELECT t, pg_temp.may_select('payledger_app', 'payledger.' || t)
					  FROM unnest('{accounts,transfers,entries,holds,payments,settlements,idempotency_keys}'::text[]) t ORDER BY 1$$,
	$$SELECT t, '42501' FROM unnest('{accounts,transfers,entries,holds,payments,settlements,idempotency_keys}'::text[]) t ORDER BY 1$$,
	'payledger_app reads no table directly (42501): it reads through the functions');

-- a login role granted payledger_app moves money and reads, nothing more
DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
END $$;
SELECT is(pg_temp.xfer('fund', 'sys', 'a', 1000), 'posted', 'setup: fund a');
SET LOCAL ROLE regress_clerk;
SET LOCAL payledger.actor_id = 'mallory-claims-to-be-admin';
SELECT is(pg_temp.xfer('clerk', 'a', 'b', 100), 'posted', 'a role granted payledger_app can transfer');
SELECT is(pg_temp.bal('b'), 100::bigint, 'and read a balance');
SELECT throws_ok(format($$SELECT payledger.freeze_account(%L, 'x')$$, pg_temp.acct('b')),
	'42501', 'permission denied for function freeze_account', 'but cannot freeze an account (42501)');
RESET ROLE;
RESET payledger.actor_id;

-- db_role: the calling role, whatever payledger.actor_id claims
SELECT results_eq(format($$SELECT actor_id, db_role FROM payledger.payment_audit_log WHERE payment_id = %L$$, pg_temp.tid('clerk')),
	$$VALUES ('mallory-claims-to-be-admin'::text, 'regress_clerk'::text)$$,
	'the audit row records the claimed actor_id and, in db_role, the role that really called');
SELECT results_eq(format($$SELECT db_role FROM payledger.payment_audit_log WHERE payment_id = %L$$, pg_temp.tid('fund')),
	$$SELECT current_user::text COLLATE "default"$$, 'a superuser''s call records the superuser');
SELECT is_empty($$SELECT id FROM payledger.payment_audit_log WHERE db_role IS NULL$$,
	'every audit row written by this version has db_role');
SELECT results_eq($$SELECT ok FROM payledger.verify_audit_log()$$, $$VALUES (true)$$,
	'the log verifies with db_role in it');
SELECT is(pg_temp.undone(format(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		  UPDATE payledger.payment_audit_log SET db_role = 'postgres' WHERE payment_id = %L$$, pg_temp.tid('clerk')),
		$$SELECT ok::text FROM payledger.verify_audit_log()$$),
	'false', 'db_role is covered by the hash chain: changing it behind the guards is caught');
SELECT is(pg_temp.undone(format(
		$$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		  ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		  UPDATE payledger.payment_audit_log SET db_role = NULL WHERE payment_id = %L$$, pg_temp.tid('clerk')),
		$$SELECT ok::text FROM payledger.verify_audit_log()$$),
	'false', 'and so is blanking it (a NULL db_role is not a pre-0.3.0 row)');

-- no hand-written INSERT into any table of the ledger, superuser included
SELECT lives_ok($$SELECT payledger.create_audit_partitions(0)$$, 'setup: this month''s audit partition exists');
CREATE FUNCTION pg_temp.insert_state(p_table regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st		text;
BEGIN
	BEGIN
		EXECUTE format('INSERT INTO %s SELECT * FROM %s LIMIT 0', p_table, p_table);
		RAISE EXCEPTION USING ERRCODE = 'PTUND', MESSAGE = 'undo';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
	END;
	RETURN st;
END $$;
SELECT results_eq($$SELECT c.relname::text COLLATE "default", pg_temp.insert_state(c.oid) FROM pg_class c
				   WHERE c.relnamespace = 'payledger'::regnamespace AND c.relkind = 'r' ORDER BY 1$$,
	$$SELECT c.relname::text COLLATE "default", 'PY003' FROM pg_class c
	   WHERE c.relnamespace = 'payledger'::regnamespace AND c.relkind = 'r' ORDER BY 1$$,
	'a superuser''s INSERT into any table of schema payledger (the audit log''s months included) raises PY003, even one inserting no row');
SELECT cmp_ok((SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'payledger'::regnamespace AND c.relkind = 'r'),
	'>=', 17::bigint, 'that is every table: accounts, transfers, entries, holds, payments, settlements, keys, the log, its months, archives, ...');
SELECT results_eq($$SELECT DISTINCT tgenabled::text FROM pg_trigger WHERE tgname = 'payledger_insert_guard'$$,
	$$VALUES ('A')$$, 'every INSERT guard is ENABLE ALWAYS');
SET LOCAL session_replication_role = replica;
SELECT throws_ok($$INSERT INTO payledger.transfers SELECT * FROM payledger.transfers LIMIT 0$$,
	'PY003', NULL, 'replica mode does not switch the INSERT guard off');
RESET session_replication_role;
SELECT throws_ok($q$DO $d$ BEGIN EXECUTE 'COPY payledger.accounts FROM PROGRAM ''true'''; END $d$$q$,
	'PY003', NULL, 'a COPY run from inside a function is not a restore: PY003');
SELECT throws_ok($$INSERT INTO payledger.state_machines VALUES ('mine', '{}', now())$$,
	'PY003', 'INSERT into "state_machines" is not allowed outside payledger functions',
	'state machines are defined only through define_state_machine()');
SELECT lives_ok($$SELECT payledger.define_state_machine('regress_machine', '{"a": ["b"]}')$$,
	'while payledger''s own inserts pass');
SET LOCAL ROLE regress_clerk;
SELECT throws_ok($$INSERT INTO payledger.accounts SELECT * FROM payledger.accounts LIMIT 0$$,
	'42501', NULL, 'an application role cannot even reach the table (42501)');
RESET ROLE;

-- metadata above payledger.max_metadata_bytes (as jsonb text) raises 22023 on every call that takes it
SELECT is(current_setting('payledger.max_metadata_bytes'), '16kB', 'payledger.max_metadata_bytes defaults to 16384 bytes');
SELECT throws_ok($$SET LOCAL payledger.max_metadata_bytes = 100000$$ || '; SET LOCAL ROLE regress_clerk; SET LOCAL payledger.max_metadata_bytes = 1000000',
	'42501', NULL, 'only a superuser may change payledger.max_metadata_bytes');
RESET ROLE;
SET LOCAL payledger.max_metadata_bytes = 40;
SELECT is(length('{"note": "0123456789012345678901234567"}'::jsonb::text), 40, 'fixture: 40 bytes of metadata');
SELECT lives_ok(format($$SELECT payledger.transfer(%L, %L, 1, 'USD', 'md-40', '{"note": "0123456789012345678901234567"}')$$,
	pg_temp.acct('a'), pg_temp.acct('b')), 'metadata of exactly the limit passes');
CREATE TEMP TABLE big AS SELECT '{"note": "01234567890123456789012345678"}'::jsonb AS m;
SELECT throws_ok(format($$SELECT payledger.transfer(%L, %L, 1, 'USD', 'md-41', (SELECT m FROM big))$$,
	pg_temp.acct('a'), pg_temp.acct('b')), '22023', 'transfer metadata is too large', 'transfer: one byte above raises 22023');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'x', 0, (SELECT m FROM big))$$,
	'22023', 'account metadata is too large', 'create_account: 22023');
SELECT throws_ok(format($$SELECT payledger.hold(%L, %L, 1, 'USD', '1 day', 'md-h', (SELECT m FROM big))$$,
	pg_temp.acct('a'), pg_temp.acct('b')), '22023', 'hold metadata is too large', 'hold: 22023');
SELECT throws_ok(format($$SELECT payledger.transfer_legs(jsonb_build_array(jsonb_build_object('from', %L::uuid, 'to', %L::uuid, 'amount', 1)),
	'USD', 'md-l', (SELECT m FROM big))$$, pg_temp.acct('a'), pg_temp.acct('b')),
	'22023', 'transfer metadata is too large', 'transfer_legs: 22023');
SELECT throws_ok(format($$SELECT payledger.create_payment(gen_random_uuid(), gen_random_uuid(), 1, 'USD', %L, %L, 'md-p', (SELECT m FROM big))$$,
	pg_temp.acct('a'), pg_temp.acct('b')), '22023', 'payment metadata is too large', 'create_payment: 22023');
SELECT is((SELECT count(*) FROM payledger.transfers WHERE idempotency_key LIKE 'md-%'), 1::bigint,
	'nothing was written by the refused calls');
RESET payledger.max_metadata_bytes;

SELECT * FROM finish();
ROLLBACK;
