-- account statements: account_entries() and balance_at()
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT payledger.create_account('USD') AS b \gset

SELECT clock_timestamp() AS t0 \gset
SELECT transfer_id AS x1 FROM payledger.transfer(:'sys', :'a', 1000, 'USD') \gset
SELECT clock_timestamp() AS t1 \gset
SELECT transfer_id AS x2 FROM payledger.transfer(:'a', :'b', 300, 'USD') \gset
SELECT clock_timestamp() AS t2 \gset
SELECT status FROM payledger.transfer(:'a', :'b', 5000, 'USD');
SELECT transfer_id AS x3 FROM payledger.transfer(:'b', :'a', 50, 'USD') \gset
SELECT clock_timestamp() AS t3 \gset

SELECT CASE transfer_id WHEN :'x1' THEN 'x1' WHEN :'x2' THEN 'x2' WHEN :'x3' THEN 'x3' END AS transfer,
       amount, balance_after, account_version
  FROM payledger.account_entries(:'a');
SELECT count(*) AS in_window FROM payledger.account_entries(:'a', :'t1', :'t2');
SELECT count(*) AS open_ended FROM payledger.account_entries(:'a', :'t1');
SELECT count(*) AS null_bounds FROM payledger.account_entries(:'a', NULL, NULL);

SELECT payledger.balance_at(:'a', :'t0') AS at_t0,
       payledger.balance_at(:'a', :'t1') AS at_t1,
       payledger.balance_at(:'a', :'t2') AS at_t2,
       payledger.balance_at(:'a', :'t3') AS at_t3,
       payledger.balance_at(:'b', :'t3') AS b_at_t3;

SELECT payledger.balance_at(NULL, now());
SELECT payledger.balance_at(:'a', NULL);
SELECT payledger.balance_at('00000000-0000-0000-0000-000000000000', now());
SELECT * FROM payledger.account_entries(NULL);
SELECT * FROM payledger.account_entries('00000000-0000-0000-0000-000000000000');
