-- state machines are cached per backend; a redefinition that rolls back
-- empties the cache during abort without touching the catalogs there
\set VERBOSITY terse
SELECT payledger.define_state_machine('regress_door', '{"open": ["closed"], "closed": ["open"]}');
CREATE TABLE regress_doors (id int PRIMARY KEY, state text NOT NULL);
CREATE TRIGGER regress_doors_state BEFORE UPDATE ON regress_doors
  FOR EACH ROW EXECUTE FUNCTION payledger.enforce_state_machine('regress_door', 'state');
INSERT INTO regress_doors VALUES (1, 'open');
UPDATE regress_doors SET state = 'closed' WHERE id = 1;
-- redefined and used in one transaction, then rolled back
BEGIN;
SELECT payledger.define_state_machine('regress_door', '{"open": [], "closed": []}');
UPDATE regress_doors SET state = 'open' WHERE id = 1;
ROLLBACK;
-- the same after an error
BEGIN;
SELECT payledger.define_state_machine('regress_door', '{"open": [], "closed": []}');
SELECT 1 / 0;
ROLLBACK;
-- a rolled-back transaction that also renamed the schema: the abort must not
-- look the schema up (it would cache that "payledger" does not exist)
BEGIN;
SELECT payledger.define_state_machine('regress_door', '{"open": [], "closed": []}');
ALTER SCHEMA payledger RENAME TO regress_payledger_renamed;
ROLLBACK;
SELECT count(*) > 0 AS found FROM payledger.state_machines;
SELECT payledger.define_state_machine('regress_door', '{"open": ["closed"], "closed": ["open"]}');
-- the committed definition holds again
UPDATE regress_doors SET state = 'open' WHERE id = 1;
SELECT state FROM regress_doors;
-- and a committed redefinition is seen at once
SELECT payledger.define_state_machine('regress_door', '{"open": [], "closed": []}');
UPDATE regress_doors SET state = 'closed' WHERE id = 1;
SELECT state FROM regress_doors;
DROP TABLE regress_doors;
