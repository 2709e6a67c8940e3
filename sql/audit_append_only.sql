-- append-only tables and the accounts guard, for every role
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD');

-- as superuser
UPDATE payledger.payment_audit_log SET success = false;
DELETE FROM payledger.payment_audit_log;
TRUNCATE payledger.payment_audit_log;
UPDATE payledger.transfers SET amount = 1;
DELETE FROM payledger.transfers WHERE false;
TRUNCATE payledger.transfers;
UPDATE payledger.entries SET amount = 1;
DELETE FROM payledger.entries;
TRUNCATE payledger.entries CASCADE;
UPDATE payledger.accounts SET balance = 1000000 WHERE id = :'a';
DELETE FROM payledger.accounts WHERE id = :'a';
TRUNCATE payledger.accounts;

-- replica mode does not walk past ENABLE ALWAYS triggers
SET session_replication_role = replica;
UPDATE payledger.payment_audit_log SET success = false;
DELETE FROM payledger.transfers;
UPDATE payledger.accounts SET balance = 1000000 WHERE id = :'a';
RESET session_replication_role;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('payledger.accounts'::regclass, 'payledger.transfers'::regclass,
                   'payledger.entries'::regclass, 'payledger.payment_audit_log'::regclass)
 ORDER BY tgname;
SELECT balance FROM payledger.get_balance(:'a');

-- an application role needs only payledger_app; it cannot touch the tables
CREATE ROLE regress_app;
GRANT payledger_app TO regress_app;
RESET payledger.require_idempotency_key;
SET ROLE regress_app;
SET payledger.require_idempotency_key = off;
SET payledger.actor_type = 'API';
SELECT status FROM payledger.transfer(:'a', :'sys', 40, 'USD');
SELECT status FROM payledger.transfer(:'a', :'sys', 40, 'USD', 'app-1');
SELECT actor_type, actor_id FROM payledger.payment_audit_log ORDER BY id DESC LIMIT 1;
UPDATE payledger.accounts SET balance = 0;
SELECT count(*) FROM payledger.payment_audit_log;
-- operator functions are not granted to every role
SELECT payledger.define_state_machine('payment', '{"pending": []}');
SELECT payledger.set_limits(:'a', 1);
SELECT payledger.freeze_account(:'sys', 'x');
SELECT * FROM payledger.read_events('someone else');
RESET ROLE;
SELECT actor_type, actor_id FROM payledger.payment_audit_log ORDER BY id DESC LIMIT 1;
RESET payledger.actor_type;
DROP OWNED BY regress_app;
DROP ROLE regress_app;

-- forbid_mutation() makes any user table append-only
CREATE TABLE regress_journal (id int, note text);
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON regress_journal
  FOR EACH ROW EXECUTE FUNCTION payledger.forbid_mutation();
INSERT INTO regress_journal VALUES (1, 'first');
UPDATE regress_journal SET note = 'changed';
DELETE FROM regress_journal;
SELECT * FROM regress_journal;
DROP TABLE regress_journal;
SELECT payledger.forbid_mutation();
