-- audit_partitions: monthly partitions of the audit log; what the partition
-- functions refuse, and where rows go (rolled back at the end)
BEGIN;
SELECT count(*) AS months_made FROM payledger.create_audit_partitions(0);
SELECT count(*) AS again FROM payledger.create_audit_partitions(0);
SELECT payledger.create_account('EUR', 'system', NULL, '{}', '00000000-0000-0000-0000-00000000e001') IS NOT NULL AS made;
SELECT payledger.create_account('EUR', 'wallet', 0, '{}', '00000000-0000-0000-0000-00000000e002') IS NOT NULL AS made;
SELECT status FROM payledger.transfer('00000000-0000-0000-0000-00000000e001',
	'00000000-0000-0000-0000-00000000e002', 100, 'EUR', 'partitioned-1');
SELECT event_type, tableoid::regclass::text ~ '^payledger\.payment_audit_log_\d{4}_\d{2}$' AS in_month
  FROM payledger.payment_audit_log WHERE idempotency_key = 'partitioned-1';
SELECT c.check_name, c.ok FROM payledger.check_ledger() c WHERE c.check_name IN ('transfers_audited', 'audit_chain_verifies');
SAVEPOINT s;
SELECT payledger.create_audit_partitions(-1);
ROLLBACK TO s;
SELECT payledger.create_audit_partitions(121);
ROLLBACK TO s;
SELECT payledger.create_audit_partitions(NULL);
ROLLBACK TO s;
SELECT payledger.archive_audit_partition('payledger.payment_audit_log');
ROLLBACK TO s;
SELECT payledger.archive_audit_partition('payledger.accounts');
ROLLBACK TO s;
SELECT payledger.archive_audit_partition(NULL);
ROLLBACK TO s;
SELECT * FROM payledger.verify_audit_archive('payledger.entries');
ROLLBACK TO s;
CREATE TABLE public.lookalike (LIKE payledger.payment_audit_log);
SELECT * FROM payledger.verify_audit_archive('public.lookalike');
ROLLBACK TO s;
-- this month has not ended (the message names it, so only the SQLSTATE here)
DO $$
BEGIN
	PERFORM payledger.archive_audit_partition((SELECT ('payledger.' || partition_name)::regclass
		FROM payledger.audit_partitions ORDER BY range_from LIMIT 1));
EXCEPTION WHEN object_not_in_prerequisite_state THEN
	RAISE NOTICE 'this month: %', SQLSTATE;
END $$;
-- a month is as protected as the log
UPDATE payledger.audit_partitions SET range_to = range_from;
ROLLBACK TO s;
DO $$
DECLARE
	m text := (SELECT 'payledger.' || partition_name FROM payledger.audit_partitions ORDER BY range_from LIMIT 1);
BEGIN
	BEGIN
		EXECUTE format('DELETE FROM %s', m);
	EXCEPTION WHEN OTHERS THEN
		RAISE NOTICE 'DELETE: %', SQLSTATE;
	END;
	BEGIN
		EXECUTE format('ALTER TABLE %s NO INHERIT payledger.payment_audit_log', m);
	EXCEPTION WHEN OTHERS THEN
		RAISE NOTICE 'NO INHERIT: %', SQLSTATE;
	END;
	BEGIN
		EXECUTE format('DROP TABLE %s', m);
	EXCEPTION WHEN OTHERS THEN
		RAISE NOTICE 'DROP: %', SQLSTATE;
	END;
END $$;
ROLLBACK;
