-- the outbox: read_events(), ack_events() (NOTIFY: events_late_commit.spec)
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT transfer_id AS t1 FROM payledger.transfer(:'sys', :'a', 10, 'USD') \gset
UN
-- a new consumer reads everything from the start, oldest first
SELECT count(*) AS events, bool_and(event_type IS NOT NULL) AS typed
  FROM payledger.read_events('regress_consumer');
SELECT event_type FROM payledger.read_events('regress_consumer', 2);
SELECT event_id AS second FROM payledger.read_events('regress_consumer', 2) OFFSET 1 \gset
SELECT payledger.ack_events('regress_consumer', :'second');
SELECT count(*) AS after_ack FROM payledger.read_events('regress_consumer');
-- acknowledging an older event does not move the consumer back
SELECT event_id AS first FROM payledger.payment_audit_log ORDER BY txid, id LIMIT 1 \gset
SELECT payledger.ack_events('regress_consumer', :'first');
SELECT count(*) AS still_after_ack FROM payledger.read_events('regress_consumer');
-- consumers are independent
SELECT count(*) AS other_consumer FROM payledger.read_events('regress_other');
-- events written by the reader's own open transaction are not readable yet
BEGIN;
SELECT status FROM payledger.transfer(:'sys', :'a', 10, 'USD');
SELECT count(*) AS readable_in_own_transaction FROM payledger.read_events('regress_consumer');
COMMIT;
SELECT count(*) AS readable_after_commit FROM payledger.read_events('regress_consumer');

SELECT * FROM payledger.read_events(NULL);
SELECT * FROM payledger.read_events('');
SELECT * FROM payledger.read_events('x', 0);
SELECT payledger.ack_events('x', '00000000-0000-0000-0000-000000000000');
SELECT payledger.ack_events('x', NULL);
