-- upgrade: a ledger made by 0.1.0 keeps its money and its audit chain
-- through ALTER EXTENSION UPDATE, and ends with the same objects as a
-- fresh install
\set VERBOSITY terse
SELECT extversion AS fresh_install_version FROM pg_extension WHERE extname = 'payledger';
CREATE TEMP VIEW extension_members AS
SELECT pg_describe_object(classid, objid, objsubid) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'payledger');
SELECT count(*) AS members, md5(string_agg(member, ',' ORDER BY member)) AS fingerprint
FROM extension_members \gset fresh_
CREATE DATABASE payledger_upgrade;
\c payledger_upgrade
SET client_min_messages = warning;
CREATE EXTENSION payledger VERSION '0.1.0';
SELECT extversion AS old_version FROM pg_extension WHERE extname = 'payledger';
SELECT payledger.create_account('EUR', 'customer', NULL, '{}', '00000000-0000-0000-0000-0000000000a1') IS NOT NULL AS made_a1;
SELECT payledger.create_account('EUR', 'merchant', 0, '{}', '00000000-0000-0000-0000-0000000000b1') IS NOT NULL AS made_b1;
SELECT status FROM payledger.transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 500, 'EUR', 'before-upgrade');
ALTER EXTENSION payledger UPDATE;
SELECT extversion AS new_version FROM pg_extension WHERE extname = 'payledger';
-- the key stored by 0.1.0 still replays
SELECT status, replayed FROM payledger.transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 500, 'EUR', 'before-upgrade');
SELECT status, replayed FROM payledger.transfer('00000000-0000-0000-0000-0000000000b1',
	'00000000-0000-0000-0000-0000000000a1', 200, 'EUR', 'after-upgrade');
SELECT balance, available, version FROM payledger.get_balance('00000000-0000-0000-0000-0000000000b1');
-- what 0.2.0 adds works on the upgraded ledger: a hot account's sub-balances
SELECT payledger.set_sub_balances('00000000-0000-0000-0000-0000000000b1', 2);
SELECT status FROM payledger.transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 50, 'EUR', 'after-upgrade-2');
SELECT balance AS own_row FROM payledger.accounts WHERE id = '00000000-0000-0000-0000-0000000000b1';
SELECT balance, available, version FROM payledger.get_balance('00000000-0000-0000-0000-0000000000b1');
SELECT check_name, ok FROM payledger.check_ledger() ORDER BY check_name;
SELECT ok, rows_checked FROM payledger.verify_audit_log();
-- same objects as a fresh install of the new version
CREATE TEMP VIEW extension_members AS
SELECT pg_describe_object(classid, objid, objsubid) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'payledger');
SELECT count(*) = :fresh_members AS same_member_count,
       md5(string_agg(member, ',' ORDER BY member)) = :'fresh_fingerprint' AS same_members
FROM extension_members;
\c contrib_regression
DROP DATABASE payledger_upgrade;
