-- DDL protection (PY007) and tamper evidence: the verifier catches what a
-- superuser does behind the guards.  Runs in a database of its own, since
-- it damages the log on purpose.
\set VERBOSITY terse
CREATE DATABASE regress_tamper;
\c regress_tamper
CREATE EXTENSION payledger;
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT s.status FROM generate_series(1, 5) n, payledger.transfer(:'sys', :'a', 100 + 0 * n, 'USD') s;
SELECT status FROM payledger.transfer(:'a', :'sys', 1000, 'USD');
-- an aborted transaction leaves no hole: the session starts a new chain
BEGIN;
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD');
ROLLBACK;
SELECT status FROM payledger.transfer(:'sys', :'a', 7, 'USD');
SELECT ok, rows_checked, first_bad_event_id IS NULL AS no_bad_event, problem FROM payledger.verify_audit_log();
SELECT count(DISTINCT chain_id) AS chains, bool_and(row_hash IS NOT NULL) AS all_hashed
  FROM payledger.payment_audit_log;

-- DDL on the ledger is refused for everyone, superusers included
ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
ALTER TABLE payledger.accounts ADD COLUMN note text;
ALTER TABLE payledger.transfers RENAME TO old_transfers;
ALTER TRIGGER audit_append_only ON payledger.payment_audit_log RENAME TO x;
DROP TRIGGER accounts_guard ON payledger.accounts;
DROP TABLE payledger.entries;
DROP INDEX payledger.payment_audit_log_payment;
DROP SCHEMA payledger CASCADE;
DROP EXTENSION payledger;
SET session_replication_role = replica;
ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
RESET session_replication_role;
-- other tables are not affected
CREATE TABLE regress_other (id int);
ALTER TABLE regress_other ADD COLUMN note text;
DROP TABLE regress_other;

-- a checkpoint, kept outside the database
SELECT payledger.audit_checkpoint() AS cp \gset
SELECT jsonb_typeof(:'cp'::jsonb -> 'chains') AS chains, length(:'cp'::jsonb ->> 'signature') AS signature_length;
SELECT ok FROM payledger.verify_audit_log(:'cp');
-- a checkpoint edited after the fact is refused
SELECT ok, problem FROM payledger.verify_audit_log(
  jsonb_set(:'cp'::jsonb, '{max_id}', to_jsonb((:'cp'::jsonb ->> 'max_id')::bigint - 1)));
SELECT ok FROM payledger.verify_audit_log(:'cp'::jsonb - 'signature');

-- a superuser switches the guards off and edits a row: caught
ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER payledger_insert_guard;
UPDATE payledger.payment_audit_log SET amount_cents = 1 WHERE event_type = 'TRANSFER_POSTED' AND amount_cents = 7;
SELECT ok, first_bad_event_id = (SELECT event_id FROM payledger.payment_audit_log WHERE amount_cents = 1) AS names_the_row, problem
  FROM payledger.verify_audit_log();
UPDATE payledger.payment_audit_log SET amount_cents = 7 WHERE amount_cents = 1;
SELECT ok FROM payledger.verify_audit_log();

-- a row deleted from the middle of a chain: caught
CREATE TEMP TABLE saved AS SELECT * FROM payledger.payment_audit_log
 WHERE (chain_id, chain_seq) = (SELECT chain_id, 2 FROM payledger.payment_audit_log
                                 GROUP BY chain_id ORDER BY count(*) DESC LIMIT 1);
DELETE FROM payledger.payment_audit_log WHERE id = (SELECT id FROM saved);
SELECT ok, problem FROM payledger.verify_audit_log();
INSERT INTO payledger.payment_audit_log SELECT * FROM saved;
SELECT ok FROM payledger.verify_audit_log();

-- reordered rows (ids swapped): caught
UPDATE payledger.payment_audit_log SET id = -id WHERE id IN (2, 3);
UPDATE payledger.payment_audit_log SET id = CASE id WHEN -2 THEN 3 ELSE 2 END WHERE id IN (-2, -3);
SELECT ok, problem FROM payledger.verify_audit_log();
UPDATE payledger.payment_audit_log SET id = -id WHERE id IN (2, 3);
UPDATE payledger.payment_audit_log SET id = CASE id WHEN -2 THEN 3 ELSE 2 END WHERE id IN (-2, -3);
SELECT ok FROM payledger.verify_audit_log();

-- the delivery columns are covered too: moving an event in the outbox order is caught
UPDATE payledger.payment_audit_log SET era = 99 WHERE id = 2;
SELECT ok, problem FROM payledger.verify_audit_log();
UPDATE payledger.payment_audit_log SET era = (SELECT era FROM payledger.payment_audit_log WHERE id = 3) WHERE id = 2;
SELECT ok FROM payledger.verify_audit_log();

-- a forged row inserted by hand: caught
INSERT INTO payledger.payment_audit_log (event_id, event_time, server_time, event_type, actor_type, actor_id, success)
VALUES (payledger.uuid_v7(), now(), now(), 'TRANSFER_POSTED', 'SYSTEM', 'mallory', true);
SELECT ok, problem FROM payledger.verify_audit_log();
DELETE FROM payledger.payment_audit_log WHERE actor_id = 'mallory';
SELECT ok FROM payledger.verify_audit_log();

-- the tail of a chain cut off: only a checkpoint can tell
CREATE TEMP TABLE tail AS SELECT * FROM payledger.payment_audit_log ORDER BY id DESC LIMIT 1;
DELETE FROM payledger.payment_audit_log WHERE id = (SELECT id FROM tail);
SELECT ok AS ok_without_checkpoint FROM payledger.verify_audit_log();
SELECT ok, problem LIKE '%was cut%' OR problem LIKE '%missing its head%' AS tail_detected FROM payledger.verify_audit_log(:'cp');
INSERT INTO payledger.payment_audit_log SELECT * FROM tail;
SELECT ok FROM payledger.verify_audit_log(:'cp');
SELECT check_name, ok FROM payledger.check_ledger() WHERE check_name = 'audit_chain_verifies';

ALTER TABLE payledger.payment_audit_log ENABLE ALWAYS TRIGGER audit_append_only;
ALTER TABLE payledger.payment_audit_log ENABLE ALWAYS TRIGGER payledger_insert_guard;
ALTER EVENT TRIGGER payledger_protect_ddl ENABLE ALWAYS;
SELECT payledger.verify_audit_log('[]');

\c contrib_regression
DROP DATABASE regress_tamper;
