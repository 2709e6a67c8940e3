-- payledger.metrics: each counter moves by exactly one for one event
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset

CREATE TEMP TABLE m0 AS SELECT metric, labels, value FROM payledger.metrics;
CREATE FUNCTION pg_temp.moved() RETURNS TABLE(metric text, labels jsonb, delta double precision)
LANGUAGE sql AS $$
	SELECT m.metric, m.labels, m.value - coalesce(o.value, 0)
	  FROM payledger.metrics m LEFT JOIN m0 o USING (metric, labels)
	 WHERE m.value IS DISTINCT FROM o.value
	   AND m.metric <> 'payledger_oldest_pending_hold_seconds'
	 ORDER BY 1, 2::text;
$$;
CREATE FUNCTION pg_temp.snap() RETURNS void LANGUAGE sql AS $$
	TRUNCATE m0;
	INSERT INTO m0 SELECT metric, labels, value FROM payledger.metrics;
$$;

-- one posted transfer
SELECT status FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'metrics-1');
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- one decline
SELECT status FROM payledger.transfer(:'a', :'sys', 1000, 'USD');
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- one replay: no audit row, one replay
SELECT replayed FROM payledger.transfer(:'sys', :'a', 100, 'USD', 'metrics-1');
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- one new hold
SELECT status, transfer_id AS h1 FROM payledger.hold(:'a', :'sys', 30, 'USD') \gset
SELECT :'status' AS hold_status;
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- voiding it: counters only grow (voided +1, pending stays), the gauges go to 0
SELECT status FROM payledger.void_hold(:'h1');
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- posting a second hold: pending +1 when made, posted +1 when posted
SELECT transfer_id AS h2 FROM payledger.hold(:'a', :'sys', 20, 'USD') \gset
SELECT pg_temp.snap();
SELECT status FROM payledger.post_hold(:'h2');
SELECT * FROM pg_temp.moved();
SELECT pg_temp.snap();
-- a consumer's unacknowledged events
SELECT count(*) > 0 AS has_events FROM payledger.read_events('regress_metrics', 1);
SELECT payledger.ack_events('regress_metrics', (SELECT event_id FROM payledger.read_events('regress_metrics', 1)));
SELECT value > 0 AS unacked FROM payledger.metrics
 WHERE metric = 'payledger_events_unacked' AND labels = '{"consumer": "regress_metrics"}';
SELECT count(*) AS error_rows_without_preload FROM payledger.metrics WHERE metric = 'payledger_errors_total';

-- a declined authorization: the payment fails (payments_total
-- PAYMENT_FAILED), and its hold, declined by the money, is a rejected
-- transfer like any declined hold() (a transfers row and a
-- TRANSFER_REJECTED audit row), counted once in transfers_total; a
-- successful one is a pending transfer (its hold); a fraud decline moves
-- no money and writes no transfer, so only the payment counts it
SELECT payledger.create_account('USD') AS shop \gset
SELECT payledger.create_payment('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1',
  1000000, 'USD', :'a', :'shop', 'metrics-pay-1') AS pay1 \gset
SELECT pg_temp.snap();
SELECT payledger.authorize_payment(:'pay1', 'metrics-auth-1');
SELECT * FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_payments_total');
SELECT kind, status, reason_code FROM payledger.transfers WHERE idempotency_key = 'metrics-auth-1';
SELECT payledger.create_payment('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1',
  5, 'USD', :'a', :'shop', 'metrics-pay-2') AS pay2 \gset
SELECT pg_temp.snap();
SELECT payledger.authorize_payment(:'pay2', 'metrics-auth-2');
SELECT * FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_payments_total');
CREATE FUNCTION pg_temp.always_fraud(p payledger.payments) RETURNS integer
  LANGUAGE sql AS $$ SELECT 100 $$;
SET payledger.risk_function = 'pg_temp.always_fraud';
SELECT payledger.create_payment('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1',
  5, 'USD', :'a', :'shop', 'metrics-pay-3') AS pay3 \gset
SELECT pg_temp.snap();
SELECT payledger.authorize_payment(:'pay3', 'metrics-auth-3');
SELECT * FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_payments_total');
RESET payledger.risk_function;

-- several calls in one transaction, three of them in one statement and one
-- in a savepoint rolled back: each call adds to the rows the calls before
-- it updated, and the counters move by what committed (3 + 1 + 1 posted)
SELECT pg_temp.snap();
BEGIN;
SELECT count(*) AS posted FROM generate_series(1, 3) g,
	payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-stmt-' || g) t WHERE t.status = 'posted';
SAVEPOINT before_x;
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-x1');
ROLLBACK TO SAVEPOINT before_x;
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-x2');
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-x3');
COMMIT;
SELECT * FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_audit_rows_total');
-- a transaction rolled back moves nothing
SELECT pg_temp.snap();
BEGIN;
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-gone');
ROLLBACK;
SELECT count(*) AS moved FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_audit_rows_total');
-- and the next call after it counts from the committed rows
SELECT status FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'metrics-after');
SELECT * FROM pg_temp.moved() WHERE metric IN ('payledger_transfers_total', 'payledger_audit_rows_total');
