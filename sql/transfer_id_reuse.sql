-- a caller-supplied transfer_id is unique among every id the ledger has
-- used: an id of a payment, hold, settlement or account is PY002 and
-- writes nothing.  All in one transaction that rolls back, so that later
-- tests' counts of events stay as they were.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT payledger.create_account('USD') AS shop \gset
SELECT payledger.create_account('USD', 'system', NULL) AS payout \gset
\set merchant '''00000000-0000-7000-8000-0000000000aa'''
\set customer '''00000000-0000-7000-8000-0000000000cc'''
SELECT status FROM payledger.transfer(:'sys', :'a', 1000, 'USD', 'reuse-fund');
SELECT payledger.create_payment(:merchant, :customer, 100, 'USD', :'a', :'shop', 'reuse-pay') AS pay \gset
SELECT transfer_id AS hold FROM payledger.hold(:'a', :'shop', 10, 'USD', '1 hour', 'reuse-hold') \gset
SELECT payledger.settle_merchant(:merchant, now(), :'payout', 'reuse-settle') AS settlement \gset
SELECT count(*) AS transfers0 FROM payledger.transfers \gset
SELECT count(*) AS audit0 FROM payledger.payment_audit_log \gset

-- (the error messages name the ids: print only the SQLSTATE)
\set VERBOSITY sqlstate
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-1', '{}', :'pay');
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', NULL, '{}', :'pay');
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-2', '{}', :'hold');
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-3', '{}', :'settlement');
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-4', '{}', :'shop');
SELECT * FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-5', '{}', :'a');
\set VERBOSITY terse

-- nothing was written, and no key was stored
SELECT count(*) - :transfers0 AS transfers_written FROM payledger.transfers;
SELECT count(*) - :audit0 AS audit_rows_written FROM payledger.payment_audit_log;
SELECT count(*) AS keys_stored FROM payledger.idempotency_keys WHERE key LIKE 'reuse-_';
-- the payment's audit trail is only its own
SELECT array_agg(DISTINCT event_type ORDER BY event_type) AS payment_events
  FROM payledger.payment_audit_log WHERE payment_id = :'pay';

-- a fresh id still works, and its retry replays
SELECT payledger.uuid_v7() AS fresh \gset
SELECT status, replayed FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'reuse-6', '{}', :'fresh');
SELECT transfer_id = :'fresh' AS same_id, status, replayed
  FROM payledger.transfer(:'sys', :'a', 5, 'USD', NULL, '{}', :'fresh');
ROLLBACK;
