-- idempotency keys and caller-supplied transfer ids
\set VERBOSITY terse

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT payledger.create_account('USD') AS b \gset
SELECT count(*) AS audit0 FROM payledger.payment_audit_log \gset

-- first call works, the retry replays the same id and moves nothing
SELECT transfer_id AS t1, status, replayed FROM payledger.transfer(:'sys', :'a', 500, 'USD', 'order-1') \gset
SELECT :'status' AS status, :'replayed' AS replayed;
SELECT transfer_id = :'t1' AS same_id, status, replayed
  FROM payledger.transfer(:'sys', :'a', 500, 'USD', 'order-1');
SELECT balance FROM payledger.get_balance(:'a');
SELECT count(*) - :audit0 AS audit_rows_written FROM payledger.payment_audit_log;

-- one key twice within one statement: the second call replays the first
SELECT n, status, replayed
  FROM generate_series(1, 2) n, payledger.transfer(:'sys', :'a', 5 + 0 * n, 'USD', 'same-statement');
SELECT count(*) AS transfers_made FROM payledger.transfers WHERE idempotency_key = 'same-statement';

-- metadata is part of the request: equal jsonb documents match
SELECT status, replayed FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'order-2', '{"x": 1, "y": [1, 2]}');
SELECT status, replayed FROM payledger.transfer(:'sys', :'a', 1, 'USD', 'order-2', '{"y": [1, 2],  "x": 1}');

-- a decline is stored and replayed as a decline
SELECT transfer_id AS t3 FROM payledger.transfer(:'a', :'b', 1000000, 'USD', 'order-3') \gset
SELECT transfer_id = :'t3' AS same_id, status, reason_code, replayed
  FROM payledger.transfer(:'a', :'b', 1000000, 'USD', 'order-3');
-- even after the account could now cover it
SELECT status FROM payledger.transfer(:'sys', :'a', 2000000, 'USD', 'top-up');
SELECT status, reason_code, replayed FROM payledger.transfer(:'a', :'b', 1000000, 'USD', 'order-3');

-- the same key with other parameters is refused, and nothing moves
SELECT balance AS a_before FROM payledger.get_balance(:'a') \gset
SELECT * FROM payledger.transfer(:'sys', :'a', 501, 'USD', 'order-1');
SELECT * FROM payledger.transfer(:'sys', :'b', 500, 'USD', 'order-1');
SELECT * FROM payledger.transfer(:'sys', :'a', 500, 'USD', 'order-1', '{"note": "other"}');
SELECT * FROM payledger.transfer(:'sys', :'a', 500, 'USD', 'order-1', '{}', payledger.uuid_v7());
SELECT balance = :a_before AS unchanged FROM payledger.get_balance(:'a');
-- the key check comes before the account check
SELECT * FROM payledger.transfer(:'sys', '00000000-0000-0000-0000-000000000000', 500, 'USD', 'order-1');

-- a caller-supplied transfer_id is idempotent by itself, forever
SELECT status, replayed FROM payledger.transfer(:'sys', :'b', 70, 'USD', NULL, '{}', '00000000-0000-7000-8000-0000000000aa');
SELECT transfer_id, status, replayed FROM payledger.transfer(:'sys', :'b', 70, 'USD', NULL, '{}', '00000000-0000-7000-8000-0000000000aa');
SELECT * FROM payledger.transfer(:'sys', :'b', 71, 'USD', NULL, '{}', '00000000-0000-7000-8000-0000000000aa');
-- the same id with a fresh key replays too and binds the key to it
SELECT transfer_id, status, replayed FROM payledger.transfer(:'sys', :'b', 70, 'USD', 'late-key', '{}', '00000000-0000-7000-8000-0000000000aa');
SELECT transfer_id, status, replayed FROM payledger.transfer(:'sys', :'b', 70, 'USD', 'late-key');
SELECT balance FROM payledger.get_balance(:'b');

-- keys are required by default; the transfer id can stand in for one
SELECT * FROM payledger.transfer(:'sys', :'b', 1, 'USD');
SELECT status FROM payledger.transfer(:'sys', :'b', 1, 'USD', NULL, '{}', '00000000-0000-7000-8000-0000000000bb');

-- retention: keys younger than the retention stay
SHOW payledger.idempotency_retention;
SELECT payledger.purge_idempotency_keys() AS purged_fresh;
SET payledger.idempotency_retention = '-1 day';
SET payledger.idempotency_retention = 'soon';
SET payledger.idempotency_retention = '1 microsecond';
SELECT pg_sleep(0.01);
SELECT payledger.purge_idempotency_keys() > 0 AS purged_old;
SELECT count(*) AS keys_left FROM payledger.idempotency_keys;
RESET payledger.idempotency_retention;
-- a purged key is a new request again, but a transfer id stays unique forever
SELECT replayed FROM payledger.transfer(:'sys', :'a', 500, 'USD', 'order-1');
SELECT replayed FROM payledger.transfer(:'sys', :'b', 70, 'USD', NULL, '{}', '00000000-0000-7000-8000-0000000000aa');
SELECT bool_and(ok) AS all_ok FROM payledger.check_ledger();
