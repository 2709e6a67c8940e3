-- sub_balances: a hot account spreads its credits over sub-balance rows;
-- reads add them up, debits count them toward the floor
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD', 'merchant') AS shop \gset
SELECT payledger.create_account('USD') AS payout \gset
SELECT payledger.create_account('USD') AS alice \gset
SELECT status FROM payledger.transfer(:'sys', :'alice', 100000, 'USD');

-- bad requests raise and change nothing
SELECT payledger.set_sub_balances(NULL, 4);
SELECT payledger.set_sub_balances(:'shop', NULL);
SELECT payledger.set_sub_balances(:'shop', -1);
SELECT payledger.set_sub_balances(:'shop', 65);
SELECT payledger.set_sub_balances('00000000-0000-0000-0000-00000000dead', 4);
\set VERBOSITY sqlstate
SELECT payledger.set_sub_balances('00000000-0000-0000-0000-00000000dead', 4);
\set VERBOSITY terse
SELECT count(*) AS sub_balances FROM payledger.sub_balances;

-- four sub-balance rows: accounts of their own, without a floor
SELECT payledger.set_sub_balances(:'shop', 4);
SELECT slot, active, a.kind, a.currency, a.min_balance, a.balance, a.status,
       a.metadata->>'slot' AS meta_slot, a.metadata->>'sub_balance_of' = :'shop' AS meta_points_back
FROM payledger.sub_balances s JOIN payledger.accounts a ON a.id = s.sub_account_id
WHERE s.account_id = :'shop' ORDER BY slot;
SELECT sub_account_id AS slot1 FROM payledger.sub_balances WHERE account_id = :'shop' AND slot = 1 \gset
SELECT event_type, count(*) FROM payledger.payment_audit_log
WHERE correlation_id = :'shop' AND event_type IN ('ACCOUNT_CREATED', 'ACCOUNT_SUB_BALANCES_SET')
GROUP BY event_type ORDER BY event_type;
SELECT metadata FROM payledger.payment_audit_log
WHERE account_id = :'shop' AND event_type = 'ACCOUNT_SUB_BALANCES_SET';

-- a sub-balance row is not an account one can name (22023; the message names both ids)
\set VERBOSITY sqlstate
SELECT payledger.set_sub_balances(:'slot1', 2);
SELECT status FROM payledger.transfer(:'alice', :'slot1', 1, 'USD');
SELECT status FROM payledger.transfer(:'slot1', :'alice', 1, 'USD');
SELECT payledger.freeze_account(:'slot1', 'no');
SELECT payledger.close_account(:'slot1');
\set VERBOSITY terse

-- credits land on a sub-balance row, not on the account's own row
SELECT status FROM payledger.transfer(:'alice', :'shop', 300, 'USD');
SELECT status FROM payledger.transfer(:'alice', :'shop', 200, 'USD');
SELECT balance AS own_row_balance FROM payledger.accounts WHERE id = :'shop';
SELECT sum(a.balance) AS in_sub_balances, count(*) FILTER (WHERE a.balance > 0) >= 1 AS used
FROM payledger.sub_balances s JOIN payledger.accounts a ON a.id = s.sub_account_id
WHERE s.account_id = :'shop';
-- the entries name the sub-balance row; the transfer and audit row name the account
SELECT count(*) AS entries_on_sub_balances FROM payledger.entries e
JOIN payledger.sub_balances s ON s.sub_account_id = e.account_id WHERE s.account_id = :'shop';
SELECT count(*) AS transfers_to_shop FROM payledger.transfers WHERE to_account = :'shop';
SELECT count(*) AS audit_rows_for_shop FROM payledger.payment_audit_log
WHERE counterparty_account_id = :'shop' AND event_type = 'TRANSFER_POSTED';
-- reads add them up, and the version counts every change
SELECT balance, pending_debits, pending_credits, available, version FROM payledger.get_balance(:'shop');

-- a debit counts the sub-balances toward the floor, exactly
SELECT status, reason_code FROM payledger.transfer(:'shop', :'payout', 501, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'shop', :'payout', 450, 'USD');
SELECT balance AS own_row_balance FROM payledger.accounts WHERE id = :'shop';
SELECT balance, available, version FROM payledger.get_balance(:'shop');
SELECT status, reason_code FROM payledger.transfer(:'shop', :'payout', 51, 'USD');
SELECT status, reason_code FROM payledger.transfer(:'shop', :'payout', 50, 'USD');
SELECT balance, available FROM payledger.get_balance(:'shop');

-- a hold from the account reserves against the sum too (its own row)
SELECT status FROM payledger.transfer(:'alice', :'shop', 1000, 'USD');
SELECT transfer_id AS h1, status FROM payledger.hold(:'shop', :'payout', 800, 'USD') \gset
SELECT :'status' AS hold_status;
SELECT status, reason_code FROM payledger.transfer(:'shop', :'payout', 201, 'USD');
SELECT status FROM payledger.post_hold(:'h1');
SELECT transfer_id AS h2 FROM payledger.hold(:'alice', :'shop', 70, 'USD') \gset
SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(:'shop');
SELECT status FROM payledger.void_hold(:'h2');

-- a hold for the account reserves its pending credit on a sub-balance row,
-- the sweep releases it on the account's own row: exact as the sum
SELECT transfer_id AS h3 FROM payledger.hold(:'alice', :'shop', 40, 'USD', '0.2 seconds') \gset
SELECT pending_credits FROM payledger.get_balance(:'shop');
SELECT (SELECT pending_credits FROM payledger.accounts WHERE id = :'shop') AS own_row_pending,
       (SELECT sum(a.pending_credits) FROM payledger.sub_balances s
        JOIN payledger.accounts a ON a.id = s.sub_account_id WHERE s.account_id = :'shop') AS sub_rows_pending;
SELECT pg_sleep(0.3);
SELECT payledger.expire_holds() AS expired;
SELECT pending_credits FROM payledger.get_balance(:'shop');
SELECT (SELECT pending_credits FROM payledger.accounts WHERE id = :'shop') AS own_row_pending,
       (SELECT sum(a.pending_credits) FROM payledger.sub_balances s
        JOIN payledger.accounts a ON a.id = s.sub_account_id WHERE s.account_id = :'shop') AS sub_rows_pending;
SELECT ok FROM payledger.check_ledger() WHERE check_name = 'pending_matches_holds';

-- a replay of a spread credit replays
SELECT status, replayed FROM payledger.transfer(:'alice', :'shop', 25, 'USD', 'sb-key');
SELECT status, replayed FROM payledger.transfer(:'alice', :'shop', 25, 'USD', 'sb-key');

-- the statement: every row's postings in time order with the running total
SELECT account_version, amount, balance_after FROM payledger.account_entries(:'shop');
SELECT payledger.balance_at(:'shop', 'infinity') AS balance_now,
       payledger.balance_at(:'shop', '-infinity') AS balance_before;

-- switched off: credits go to the account's own row, the old rows keep counting
SELECT payledger.set_sub_balances(:'shop', 0);
SELECT count(*) FILTER (WHERE active) AS active, count(*) AS kept FROM payledger.sub_balances WHERE account_id = :'shop';
SELECT status FROM payledger.transfer(:'alice', :'shop', 5, 'USD');
SELECT balance AS own_row_balance FROM payledger.accounts WHERE id = :'shop';
SELECT balance, version FROM payledger.get_balance(:'shop');
-- and back on: the existing rows are reused, one more is added
SELECT payledger.set_sub_balances(:'shop', 5);
SELECT count(*) FILTER (WHERE active) AS active, count(*) AS kept FROM payledger.sub_balances WHERE account_id = :'shop';

-- closing: refused while money is anywhere in it; then it closes the sub-balances too
SELECT payledger.close_account(:'shop');
SELECT balance FROM payledger.get_balance(:'shop') \gset
SELECT status FROM payledger.transfer(:'shop', :'payout', :balance, 'USD');
SELECT balance FROM payledger.get_balance(:'shop');
-- a pending credit on a sub-balance row keeps it open too
SELECT transfer_id AS h4 FROM payledger.hold(:'alice', :'shop', 10, 'USD') \gset
SELECT payledger.close_account(:'shop');
SELECT status FROM payledger.void_hold(:'h4');
SELECT payledger.close_account(:'shop');
SELECT DISTINCT a.status FROM payledger.sub_balances s JOIN payledger.accounts a ON a.id = s.sub_account_id
WHERE s.account_id = :'shop';
SELECT status, reason_code FROM payledger.transfer(:'alice', :'shop', 1, 'USD');
\set VERBOSITY sqlstate
SELECT payledger.set_sub_balances(:'shop', 2);
\set VERBOSITY terse

-- operators only
CREATE ROLE sb_app;
GRANT USAGE ON SCHEMA payledger TO sb_app;
SET ROLE sb_app;
SELECT payledger.set_sub_balances(:'payout', 2);
RESET ROLE;
DROP OWNED BY sb_app;
DROP ROLE sb_app;
-- nobody edits the table by hand
UPDATE payledger.sub_balances SET active = true;
DELETE FROM payledger.sub_balances;

-- a settlement pays out to a payout account with sub-balances on one of them
SELECT payledger.create_account('USD', 'merchant') AS shop2 \gset
SELECT payledger.create_account('USD', 'payout') AS bank \gset
SELECT payledger.set_sub_balances(:'bank', 2);
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000005b1', '00000000-0000-7000-8000-0000000005c1',
	300, 'USD', :'alice', :'shop2', 'sb-pay') AS pay \gset
SELECT payledger.authorize_payment(:'pay', 'sb-auth');
SELECT payledger.capture_payment(:'pay', 'sb-capture');
SELECT count(*) AS settlements FROM (SELECT payledger.settle_merchant('00000000-0000-7000-8000-0000000005b1',
	now() + interval '1 day', :'bank', 'sb-settle')) s;
SELECT balance, pending_credits FROM payledger.get_balance(:'bank');
SELECT balance AS own_row FROM payledger.accounts WHERE id = :'bank';
SELECT sum(a.balance) AS in_sub_balances FROM payledger.sub_balances s
JOIN payledger.accounts a ON a.id = s.sub_account_id WHERE s.account_id = :'bank';

SELECT check_name, ok FROM payledger.check_ledger() WHERE check_name IN
	('no_account_below_floor', 'sub_balances_only_credited', 'balances_match_entries',
	 'currencies_sum_to_zero', 'entries_chain')
ORDER BY check_name;
SELECT count(*) AS failing_checks FROM payledger.check_ledger() WHERE NOT ok;
