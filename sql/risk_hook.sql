-- the risk hook (payledger.risk_function): a verdict or a failure of its own
-- logic fails closed; a cancel, a timeout, a serialization failure, a
-- deadlock or running out of memory propagates with nothing written and
-- nothing stored under the key; it runs as the caller, under its own
-- search_path, and may not write
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
CREATE SCHEMA regress_risk;
CREATE TABLE regress_risk.verdicts (amount bigint PRIMARY KEY, score integer NOT NULL);
INSERT INTO regress_risk.verdicts VALUES (100, 10), (200, 95);
CREATE TABLE regress_risk.journal (note text);
CREATE ROLE regress_risk_caller;
GRANT USAGE ON SCHEMA payledger, regress_risk TO regress_risk_caller;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA payledger TO regress_risk_caller;
GRANT SELECT ON regress_risk.verdicts TO regress_risk_caller;
GRANT SELECT, INSERT ON regress_risk.journal TO regress_risk_caller;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS cust \gset
SELECT payledger.create_account('USD') AS shop \gset
SELECT status FROM payledger.transfer(:'sys', :'cust', 100000, 'USD');
\set merchant '''00000000-0000-0000-0000-0000000000a1'''
\set customer '''00000000-0000-0000-0000-0000000000b1'''

-- the hook's own SET search_path names its tables unqualified
CREATE FUNCTION regress_risk.score_own_path(p payledger.payments) RETURNS integer
  LANGUAGE sql SET search_path = regress_risk
  AS $$ SELECT score FROM verdicts WHERE amount = p.amount $$;
SET payledger.risk_function = 'regress_risk.score_own_path';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-1') AS p1 \gset
SELECT payledger.authorize_payment(:'p1', 'rk-1a');
SELECT payledger.create_payment(:merchant, :customer, 200, 'USD', :'cust', :'shop', 'rk-2') AS p2 \gset
SELECT payledger.authorize_payment(:'p2', 'rk-2a');

-- without a SET, the caller's search_path
SET check_function_bodies = off;
CREATE FUNCTION regress_risk.score_caller_path(p payledger.payments) RETURNS integer
  LANGUAGE sql AS $$ SELECT score FROM verdicts WHERE amount = p.amount $$;
RESET check_function_bodies;
SET payledger.risk_function = 'regress_risk.score_caller_path';
SET search_path = public, regress_risk;
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-3') AS p3 \gset
SELECT payledger.authorize_payment(:'p3', 'rk-3a');
RESET search_path;
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-4') AS p4 \gset
SELECT payledger.authorize_payment(:'p4', 'rk-4a');

-- the caller's rights, not the ledger owner's
CREATE FUNCTION regress_risk.score_by_user(p payledger.payments) RETURNS integer
  LANGUAGE sql AS $$ SELECT CASE WHEN current_user = 'regress_risk_caller' THEN 5 ELSE 99 END $$;
GRANT EXECUTE ON FUNCTION regress_risk.score_by_user(payledger.payments) TO regress_risk_caller;
SET payledger.risk_function = 'regress_risk.score_by_user';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-5') AS p5 \gset
SET ROLE regress_risk_caller;
SELECT payledger.authorize_payment(:'p5', 'rk-5a');
RESET ROLE;

-- a hook that writes fails closed, and its writes are undone
CREATE FUNCTION regress_risk.score_writes(p payledger.payments) RETURNS integer
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO regress_risk.journal VALUES ('scored ' || p.amount);
  RETURN 0;
END $$;
SET payledger.risk_function = 'regress_risk.score_writes';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-6') AS p6 \gset
SELECT payledger.authorize_payment(:'p6', 'rk-6a');
SELECT count(*) AS journal_rows FROM regress_risk.journal;
-- also when it moves money through payledger itself
CREATE FUNCTION regress_risk.score_transfers(p payledger.payments) RETURNS integer
  LANGUAGE plpgsql AS $$
BEGIN
  PERFORM payledger.transfer(p.source_account, p.merchant_account, 1, 'USD', 'rk-sneaky');
  RETURN 0;
END $$;
SET payledger.risk_function = 'regress_risk.score_transfers';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-7') AS p7 \gset
SELECT payledger.authorize_payment(:'p7', 'rk-7a');
SELECT count(*) AS sneaky_transfers FROM payledger.transfers WHERE idempotency_key = 'rk-sneaky';
-- and when it writes where a read-only transaction may (a temporary table)
CREATE TEMP TABLE regress_scratch (note text);
CREATE FUNCTION regress_risk.score_writes_temp(p payledger.payments) RETURNS integer
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pg_temp.regress_scratch VALUES ('scored ' || p.amount);
  RETURN 0;
END $$;
SET payledger.risk_function = 'regress_risk.score_writes_temp';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-7t') AS p7t \gset
SELECT payledger.authorize_payment(:'p7t', 'rk-7ta');
SELECT count(*) AS scratch_rows FROM pg_temp.regress_scratch;
SELECT reason_code, count(*) FROM payledger.payment_audit_log
 WHERE payment_id IN (:'p6', :'p7', :'p7t') AND event_type = 'PAYMENT_FAILED' GROUP BY 1;

-- transient failures propagate: nothing written, nothing stored under the key
CREATE FUNCTION regress_risk.score_raises(p payledger.payments) RETURNS integer
  LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('regress_risk.raise', true) <> '' THEN
    RAISE EXCEPTION 'simulated %', current_setting('regress_risk.raise')
      USING ERRCODE = current_setting('regress_risk.raise');
  END IF;
  IF current_setting('regress_risk.sleep', true) = 'on' THEN
    PERFORM pg_sleep(5);
  END IF;
  RETURN 1;
END $$;
SET payledger.risk_function = 'regress_risk.score_raises';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-8') AS p8 \gset
SET regress_risk.raise = '40001';
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
SET regress_risk.raise = '40P01';
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
SET regress_risk.raise = '55P03';
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
SET regress_risk.raise = '53200';
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
SET regress_risk.raise = '';
SET regress_risk.sleep = on;
SET statement_timeout = '200ms';
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
RESET statement_timeout;
SET regress_risk.sleep = off;
SELECT state FROM payledger.payments WHERE id = :'p8';
SELECT count(*) AS audit_rows FROM payledger.payment_audit_log WHERE payment_id = :'p8';
SELECT count(*) AS stored_keys FROM payledger.idempotency_keys WHERE key = 'rk-8a';
-- the retry asks the hook again
SELECT payledger.authorize_payment(:'p8', 'rk-8a');
-- an error of the hook's own logic still fails closed
SET regress_risk.raise = '22012';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-9') AS p9 \gset
SELECT payledger.authorize_payment(:'p9', 'rk-9a');
SET regress_risk.raise = '';
-- a NULL score fails closed
CREATE FUNCTION regress_risk.score_null(p payledger.payments) RETURNS integer
  LANGUAGE sql AS $$ SELECT NULL::integer $$;
SET payledger.risk_function = 'regress_risk.score_null';
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'cust', :'shop', 'rk-10') AS p10 \gset
SELECT payledger.authorize_payment(:'p10', 'rk-10a');
RESET payledger.risk_function;

SELECT id = :'p1' AS p1, id = :'p2' AS p2, state FROM payledger.payments
 WHERE id IN (:'p1', :'p2', :'p3', :'p4', :'p5', :'p6', :'p7', :'p8', :'p9', :'p10')
 ORDER BY created_at;
SELECT check_name, ok FROM payledger.check_ledger() WHERE NOT ok;
DROP SCHEMA regress_risk CASCADE;
REVOKE ALL ON SCHEMA payledger FROM regress_risk_caller;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA payledger FROM regress_risk_caller;
DROP ROLE regress_risk_caller;
