-- payledger writes its tables without the executor, so a trigger, rule,
-- CHECK constraint, index or column it did not make would be bypassed: the
-- next call that writes such a table refuses, naming the object, and works
-- again once it is gone.  All in one transaction that rolls back.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-1');
-- what the ledger's DDL guard would refuse, made behind its back
ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;

-- an index
CREATE INDEX regress_by_amount ON payledger.transfers (amount);
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-2');
DROP INDEX payledger.regress_by_amount;
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-2');

-- a trigger
CREATE FUNCTION pg_temp.regress_count() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER regress_count AFTER INSERT ON payledger.entries
	FOR EACH ROW EXECUTE FUNCTION pg_temp.regress_count();
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-3');
DROP TRIGGER regress_count ON payledger.entries;
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-3');

-- a trigger named like payledger's own, running another function
CREATE TRIGGER payledger_insert_guard_2 BEFORE INSERT ON payledger.idempotency_keys
	FOR EACH ROW EXECUTE FUNCTION pg_temp.regress_count();
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-4');
DROP TRIGGER payledger_insert_guard_2 ON payledger.idempotency_keys;

-- a CHECK constraint
ALTER TABLE payledger.accounts ADD CONSTRAINT regress_small CHECK (balance < 1000000);
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-5');
ALTER TABLE payledger.accounts DROP CONSTRAINT regress_small;
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-5');

-- a rule
CREATE RULE regress_also AS ON INSERT TO payledger.holds DO ALSO NOTIFY regress_holds;
SELECT status FROM payledger.hold(:'a', :'sys', 10, 'USD', '1 hour', 'shape-6');
DROP RULE regress_also ON payledger.holds;
SELECT status FROM payledger.hold(:'a', :'sys', 10, 'USD', '1 hour', 'shape-6');

-- an index on a month of the audit log
SELECT count(*) > 0 AS months_made FROM payledger.create_audit_partitions(0);
SELECT format('payledger.%I', partition_name) AS month FROM payledger.audit_partitions
 ORDER BY range_from DESC LIMIT 1 \gset
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-7');
CREATE INDEX regress_month_amount ON :month (amount_cents);
-- (the message names the month: shown as YYYY_MM)
CREATE FUNCTION pg_temp.try_transfer(f uuid, t uuid, k text) RETURNS text LANGUAGE plpgsql
AS $$
BEGIN
	RETURN (payledger.transfer(f, t, 100, 'USD', k)).status;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
	RETURN regexp_replace(SQLERRM, '_[0-9]{4}_[0-9]{2}', '_YYYY_MM');
END
$$;
SELECT pg_temp.try_transfer(:'sys', :'a', 'shape-8');
DROP INDEX payledger.regress_month_amount;
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-8');

-- a column: refused for good (dropping it leaves a dropped column behind)
ALTER TABLE payledger.payments ADD COLUMN regress_note text;
SELECT payledger.create_payment(payledger.uuid_v7(), payledger.uuid_v7(), 10, 'USD', :'a', :'sys',
	'shape-9') IS NOT NULL AS created;
ALTER TABLE payledger.payments DROP COLUMN regress_note;
SELECT payledger.create_payment(payledger.uuid_v7(), payledger.uuid_v7(), 10, 'USD', :'a', :'sys',
	'shape-9') IS NOT NULL AS created;

-- a trigger on the metric counters, which every call updates
CREATE TRIGGER regress_count AFTER UPDATE ON payledger.metric_counters
	FOR EACH ROW EXECUTE FUNCTION pg_temp.regress_count();
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-10');
DROP TRIGGER regress_count ON payledger.metric_counters;
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'shape-10');

-- the refused calls wrote nothing: each key that posted did so once
SELECT count(*) AS transfers_made FROM payledger.transfers WHERE idempotency_key LIKE 'shape-%';
ALTER EVENT TRIGGER payledger_protect_ddl ENABLE;
ROLLBACK;
