-- transfer(): posting, declines, floors
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS alice \gset
SELECT payledger.create_account('USD') AS bob \gset
SELECT payledger.create_account('USD', 'credit', -1000) AS carol \gset

-- a posted transfer: both balances move, two entries, one transfer, one audit row
SELECT payledger.transfer(:'sys', :'alice', 10000, 'USD') AS r \gset
SELECT (:'r'::payledger.transfer_result).status,
       (:'r'::payledger.transfer_result).reason_code,
       (:'r'::payledger.transfer_result).replayed;
SELECT (:'r'::payledger.transfer_result).transfer_id AS t1 \gset
SELECT balance, available, version FROM payledger.get_balance(:'sys');
SELECT balance, available, version FROM payledger.get_balance(:'alice');
SELECT account_id = :'alice' AS is_alice, amount, balance_after
  FROM payledger.entries WHERE transfer_id = :'t1' ORDER BY amount;
SELECT kind, status, amount, currency, from_account = :'sys' AS from_ok, to_account = :'alice' AS to_ok
  FROM payledger.transfers WHERE id = :'t1';
SELECT event_type, new_state, success, amount_cents, currency, reason_code,
       account_id = :'sys' AS account_ok, counterparty_account_id = :'alice' AS counterparty_ok,
       correlation_id = :'t1' AS correlated, event_id <> :'t1' AS own_event_id
  FROM payledger.payment_audit_log WHERE payment_id = :'t1';

-- spending down to exactly the floor is allowed; one cent more is declined
SELECT status, reason_code FROM payledger.transfer(:'alice', :'bob', 9999, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'alice', :'bob', 2, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'alice', :'bob', 1, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'alice', :'bob', 1, 'USD');
SELECT balance FROM payledger.get_balance(:'alice');
SELECT balance FROM payledger.get_balance(:'bob');

-- a decline moves nothing, is stored and is audited with success = false
SELECT payledger.transfer(:'bob', :'alice', 1000000, 'USD') AS d \gset
SELECT (:'d'::payledger.transfer_result).status, (:'d'::payledger.transfer_result).reason_code;
SELECT (:'d'::payledger.transfer_result).transfer_id AS t2 \gset
SELECT status, reason_code FROM payledger.transfers WHERE id = :'t2';
SELECT count(*) AS entries FROM payledger.entries WHERE transfer_id = :'t2';
SELECT event_type, new_state, success, reason_code, correlation_id = :'t2' AS correlated, event_id <> :'t2' AS own_event_id
  FROM payledger.payment_audit_log WHERE payment_id = :'t2';
SELECT balance FROM payledger.get_balance(:'bob');

-- a credit line (negative floor) and no floor at all
SELECT status, reason_code FROM payledger.transfer(:'carol', :'bob', 1000, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'carol', :'bob', 1, 'USD');
SELECT balance FROM payledger.get_balance(:'carol');
SELECT balance FROM payledger.get_balance(:'sys');

-- frozen and closed accounts neither send nor receive
SELECT payledger.freeze_account(:'bob', 'kyc review');
SELECT status, reason_code FROM payledger.transfer(:'bob', :'alice', 1, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'sys', :'bob', 1, 'USD');
SELECT payledger.unfreeze_account(:'bob');
SELECT status, reason_code FROM payledger.transfer(:'bob', :'alice', 1, 'USD');
SELECT payledger.create_account('USD') AS gone \gset
SELECT payledger.close_account(:'gone');
SELECT status, reason_code FROM payledger.transfer(:'sys', :'gone', 1, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'gone', :'sys', 1, 'USD');
-- closed beats frozen when both apply
SELECT payledger.freeze_account(:'alice', 'x');
SELECT status, reason_code FROM payledger.transfer(:'alice', :'gone', 1, 'USD');
SELECT payledger.unfreeze_account(:'alice');

-- the ledger still balances
SELECT sum(balance) AS usd_total FROM payledger.accounts WHERE currency = 'USD';
SELECT bool_and(ok) AS all_ok FROM payledger.check_ledger();
