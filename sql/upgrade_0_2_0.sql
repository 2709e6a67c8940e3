-- upgrade_0_2_0: a live 0.2.0 ledger (money, a hold, a month of the audit
-- log) updated to 0.3.0 gets the roles, loses every PUBLIC grant, gets
-- owner_id and db_role (NULL in the rows it had) and the INSERT guards, and
-- keeps its money, its keys and a verifying audit chain
\set VERBOSITY terse
CREATE DATABASE payledger_upgrade_02;
\c payledger_upgrade_02
SET client_min_messages = warning;
CREATE EXTENSION payledger VERSION '0.2.0';
SELECT extversion AS old_version FROM pg_extension WHERE extname = 'payledger';
SELECT count(*) AS months FROM payledger.create_audit_partitions(0);
SELECT payledger.create_account('EUR', 'system', NULL, '{}', '00000000-0000-0000-0000-0000000000a1') IS NOT NULL AS made_a1;
SELECT payledger.create_account('EUR', 'merchant', 0, '{}', '00000000-0000-0000-0000-0000000000b1') IS NOT NULL AS made_b1;
SELECT status FROM payledger.transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 500, 'EUR', 'before-upgrade');
SELECT status FROM payledger.hold('00000000-0000-0000-0000-0000000000b1',
	'00000000-0000-0000-0000-0000000000a1', 100, 'EUR', '1 day', 'hold-before-upgrade');
SELECT status FROM payledger.transfer_legs('[{"from": "00000000-0000-0000-0000-0000000000a1", "to": "00000000-0000-0000-0000-0000000000b1", "amount": 7},
	{"from": "00000000-0000-0000-0000-0000000000b1", "to": "00000000-0000-0000-0000-0000000000a1", "amount": 3}]', 'EUR', 'legs-before-upgrade');
-- under 0.2.0 PUBLIC could run the money functions
SELECT has_function_privilege('public', 'payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid)', 'EXECUTE') AS public_could_transfer;
SELECT count(*) AS audit_rows_before FROM payledger.payment_audit_log \gset
ALTER EXTENSION payledger UPDATE;
SELECT extversion AS new_version FROM pg_extension WHERE extname = 'payledger';
-- roles, and nothing for PUBLIC
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'payledger\_%' ORDER BY 1;
SELECT count(*) AS functions_for_public FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'payledger'::regnamespace AND a.grantee = 0;
SELECT count(*) AS functions_with_default_acl FROM pg_proc p
 WHERE p.pronamespace = 'payledger'::regnamespace AND p.proacl IS NULL;
SELECT has_function_privilege('payledger_app', 'payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid)', 'EXECUTE') AS app_may_transfer,
       has_function_privilege('payledger_reader', 'payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid)', 'EXECUTE') AS reader_may_transfer;
-- the new columns, NULL in the rows written before
SELECT count(*) FILTER (WHERE owner_id IS NULL) AS accounts_without_owner FROM payledger.accounts;
SELECT count(*) = :audit_rows_before AS old_rows_without_db_role
  FROM payledger.payment_audit_log WHERE db_role IS NULL;
SELECT c.relname ~ '^payment_audit_log_\d{4}_\d{2}$' AS is_month, a.attname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'payledger'::regnamespace AND a.attname = 'db_role' AND NOT a.attisdropped
 ORDER BY 1;
-- a leg set of 0.2.0 gets its legs back from its entries
SELECT kind, status, amount, legs = '[{"from": "00000000-0000-0000-0000-0000000000a1", "to": "00000000-0000-0000-0000-0000000000b1", "amount": 7},
	{"from": "00000000-0000-0000-0000-0000000000b1", "to": "00000000-0000-0000-0000-0000000000a1", "amount": 3}]' AS legs_rebuilt
  FROM payledger.get_transfer((SELECT id FROM payledger.transfers WHERE kind = 'legs'));
-- every table, the month included, refuses a hand-written INSERT
SELECT count(*) FILTER (WHERE t.tgname IS NULL) AS tables_without_insert_guard,
       count(*) FILTER (WHERE t.tgenabled = 'A') AS guards_enable_always
  FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'payledger_insert_guard'
 WHERE c.relnamespace = 'payledger'::regnamespace AND c.relkind = 'r';
INSERT INTO payledger.transfers SELECT * FROM payledger.transfers LIMIT 0;
-- the money and the keys of 0.2.0 still work
SELECT status, replayed FROM payledger.transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 500, 'EUR', 'before-upgrade');
SELECT status FROM payledger.post_hold((SELECT id FROM payledger.holds LIMIT 1), 40, 'post-after-upgrade');
SELECT status FROM payledger.transfer('00000000-0000-0000-0000-0000000000b1',
	'00000000-0000-0000-0000-0000000000a1', 200, 'EUR', 'after-upgrade');
SELECT balance, pending_debits, available FROM payledger.get_balance('00000000-0000-0000-0000-0000000000b1');
SELECT event_type, db_role IS NOT NULL AS has_db_role FROM payledger.payment_audit_log
 ORDER BY id DESC LIMIT 2;
-- merchant scope on the upgraded ledger: an account made now has an owner
SELECT payledger.create_account('EUR', 'merchant', 0, '{}', '00000000-0000-0000-0000-0000000000c1',
	'00000000-0000-0000-0000-00000000aaaa') IS NOT NULL AS made_owned;
SELECT owner_id FROM payledger.accounts WHERE id = '00000000-0000-0000-0000-0000000000c1';
SELECT check_name, ok FROM payledger.check_ledger() ORDER BY check_name;
SELECT ok, rows_checked FROM payledger.verify_audit_log();
\c contrib_regression
DROP DATABASE payledger_upgrade_02;
