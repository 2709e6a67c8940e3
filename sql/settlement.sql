-- disputes, settlement, reconciliation, limits and the risk hook
\set VERBOSITY terse
SELECT payledger.create_account('USD', 'system', NULL) AS net \gset
SELECT payledger.create_account('USD') AS cust \gset
SELECT payledger.create_account('USD') AS shop \gset
SELECT payledger.create_account('USD') AS fee \gset
SELECT payledger.create_account('USD') AS payout \gset
SELECT status FROM payledger.transfer(:'net', :'cust', 100000, 'USD', 'st-fund');
\set merchant '''00000000-0000-7000-8000-0000000000d1'''
\set customer '''00000000-0000-7000-8000-0000000000c1'''
-- a dispute holds the amount out of the merchant's funds; won: back as before
SELECT payledger.create_payment(:merchant, :customer, 3000, 'USD', :'cust', :'shop', 'd1') AS d1 \gset
SELECT payledger.authorize_payment(:'d1', 'd1-a');
SELECT payledger.capture_payment(:'d1', 'd1-c', NULL, jsonb_build_array(jsonb_build_object('account', :'fee', 'amount', 100)));
SELECT payledger.dispute_payment(:'d1', 3001, 'd1-d');
SELECT payledger.dispute_payment(:'d1', 1000, 'd1-d');
SELECT balance, pending_debits, available FROM payledger.get_balance(:'shop');
SELECT payledger.refund_payment(:'d1', 10, 'd1-r');
SELECT payledger.resolve_dispute(:'d1', true, 'd1-w');
SELECT state, disputed_amount FROM payledger.payments WHERE id = :'d1';
SELECT balance, pending_debits, available FROM payledger.get_balance(:'shop');
-- lost: the money goes back to the customer
SELECT payledger.dispute_payment(:'d1', 500, 'd1-d2');
SELECT payledger.resolve_dispute(:'d1', false, 'd1-l');
SELECT payledger.resolve_dispute(:'d1', true, 'd1-l2');
SELECT state, disputed_amount FROM payledger.payments WHERE id = :'d1';
SELECT (SELECT balance FROM payledger.get_balance(:'shop')) AS shop, (SELECT balance FROM payledger.get_balance(:'cust')) AS cust;
SELECT event_type, previous_state, new_state, success, amount_cents FROM payledger.payment_audit_log
 WHERE payment_id = :'d1' ORDER BY id;

-- settlement: captured and partially refunded payments up to the cutoff
SELECT payledger.create_payment(:merchant, :customer, 2000, 'USD', :'cust', :'shop', 's1') AS s1 \gset
SELECT payledger.authorize_payment(:'s1', 's1-a');
SELECT payledger.capture_payment(:'s1', 's1-c', NULL, jsonb_build_array(jsonb_build_object('account', :'fee', 'amount', 200)));
SELECT payledger.create_payment(:merchant, :customer, 1500, 'USD', :'cust', :'shop', 's2') AS s2 \gset
SELECT payledger.authorize_payment(:'s2', 's2-a');
SELECT payledger.capture_payment(:'s2', 's2-c');
SELECT payledger.refund_payment(:'s2', 500, 's2-r');
SELECT payledger.create_payment(:merchant, :customer, 700, 'USD', :'cust', :'shop', 's3') AS s3 \gset
SELECT payledger.authorize_payment(:'s3', 's3-a');
SELECT clock_timestamp() AS cutoff \gset
SELECT payledger.create_payment(:merchant, :customer, 900, 'USD', :'cust', :'shop', 's4') AS s4 \gset
SELECT payledger.authorize_payment(:'s4', 's4-a');
SELECT payledger.capture_payment(:'s4', 's4-c');
SELECT (SELECT balance FROM payledger.get_balance(:'shop')) AS shop_before;
SELECT payledger.settle_merchant(:merchant, :'cutoff', :'payout', 'settle-1') AS st \gset
SELECT payledger.settle_merchant(:merchant, :'cutoff', :'payout', 'settle-1') = :'st' AS settle_replays;
SELECT payment_count, gross_amount, fee_amount, refund_amount, net_amount, payout_transfer_id IS NOT NULL AS paid_out
  FROM payledger.settlements WHERE id = :'st';
SELECT id = :'s1' AS is_s1, id = :'s2' AS is_s2, state FROM payledger.payments
 WHERE id IN (:'s1', :'s2', :'s3', :'s4') ORDER BY created_at;
SELECT (SELECT balance FROM payledger.get_balance(:'shop')) AS shop_after,
       (SELECT balance FROM payledger.get_balance(:'payout')) AS payout;
-- a settled payment can still be refunded
SELECT payledger.refund_payment(:'s1', 100, 's1-r');
UPDATE payledger.settlements SET net_amount = 0;

-- reconciliation: one match, one mismatch, one missing in the statement, one unknown to the ledger
SELECT status, ledger_amount, statement_amount, payment_id = :'s1' AS is_s1
  FROM payledger.reconcile_settlement(:'st', jsonb_build_array(
    jsonb_build_object('payment_id', :'s1', 'amount', 2000),
    jsonb_build_object('payment_id', '00000000-0000-7000-8000-00000000ffff', 'amount', 5)))
 ORDER BY status;
SELECT count(*) AS reconciled_events FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED';
SELECT count(*) FROM payledger.reconcile_settlement(:'st', jsonb_build_array(
    jsonb_build_object('payment_id', :'s1', 'amount', 2000),
    jsonb_build_object('payment_id', '00000000-0000-7000-8000-00000000ffff', 'amount', 5)));
SELECT count(*) AS reconciled_events_after_repeat FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED';
SELECT success, metadata FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED';
SELECT * FROM payledger.reconcile_settlement('00000000-0000-0000-0000-000000000000', '[]');
SELECT * FROM payledger.reconcile_settlement(:'st', '{"a": 1}');
SELECT * FROM payledger.reconcile_settlement(:'st', '[{"payment_id": "x", "amount": 1}]');
-- amounts are whole, non-negative cents that fit a bigint; a payment is listed once
SELECT * FROM payledger.reconcile_settlement(:'st', jsonb_build_array(jsonb_build_object('payment_id', :'s1', 'amount', 1.5)));
SELECT * FROM payledger.reconcile_settlement(:'st', jsonb_build_array(jsonb_build_object('payment_id', :'s1', 'amount', -5)));
SELECT * FROM payledger.reconcile_settlement(:'st', jsonb_build_array(jsonb_build_object('payment_id', :'s1', 'amount', 99999999999999999999)));
SELECT * FROM payledger.reconcile_settlement(:'st', jsonb_build_array(
    jsonb_build_object('payment_id', :'s1', 'amount', 1900),
    jsonb_build_object('payment_id', :'s1', 'amount', 1900)));
SELECT count(*) AS reconciled_events_after_bad_input FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED';

-- limits: per transfer and per day (posted and pending debits since 00:00 UTC)
SELECT payledger.create_account('USD') AS lim \gset
SELECT status FROM payledger.transfer(:'net', :'lim', 10000, 'USD', 'lim-fund');
SELECT payledger.set_limits(:'lim', 1000, 1500);
SELECT status, reason_code FROM payledger.transfer(:'lim', :'shop', 1001, 'USD', 'lim-1');
SELECT status, reason_code FROM payledger.transfer(:'lim', :'shop', 1000, 'USD', 'lim-2');
SELECT status, reason_code FROM payledger.hold(:'lim', :'shop', 400, 'USD', '1 day', 'lim-3');
SELECT status, reason_code FROM payledger.transfer(:'lim', :'shop', 101, 'USD', 'lim-4');
SELECT status, reason_code FROM payledger.transfer(:'lim', :'shop', 100, 'USD', 'lim-5');
SELECT status, reason_code FROM payledger.transfer(:'shop', :'lim', 100, 'USD', 'lim-credit');
SELECT event_type, metadata FROM payledger.payment_audit_log
 WHERE account_id = :'lim' AND event_type = 'ACCOUNT_LIMITS_CHANGED';
SELECT payledger.set_limits(:'lim', NULL, NULL);
SELECT status, reason_code FROM payledger.transfer(:'lim', :'shop', 2000, 'USD', 'lim-6');
-- the legs of one transfer_legs call count together against the daily limit
SELECT payledger.create_account('USD') AS lim2 \gset
SELECT status FROM payledger.transfer(:'net', :'lim2', 10000, 'USD', 'lim2-fund');
SELECT payledger.set_limits(:'lim2', NULL, 100);
SELECT status, reason_code FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'lim2', 'to', :'shop', 'amount', 60),
  jsonb_build_object('from', :'lim2', 'to', :'fee', 'amount', 60)), 'USD', 'lim2-legs');
SELECT status, reason_code FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'lim2', 'to', :'shop', 'amount', 60),
  jsonb_build_object('from', :'lim2', 'to', :'fee', 'amount', 40)), 'USD', 'lim2-legs-ok');
SELECT payledger.set_limits(:'lim', 0);
SELECT payledger.set_limits('00000000-0000-0000-0000-000000000000', 1);

-- the risk hook: a score at or above the threshold fails the payment; an error fails closed
CREATE FUNCTION public.regress_score(p payledger.payments) RETURNS integer LANGUAGE sql
  AS $$ SELECT CASE WHEN p.amount >= 5000 THEN 95 ELSE 10 END $$;
SET payledger.risk_function = 'public.regress_score';
SELECT payledger.create_payment(:merchant, :customer, 6000, 'USD', :'cust', :'shop', 'r1') AS r1 \gset
SELECT payledger.authorize_payment(:'r1', 'r1-a');
SELECT reason_code FROM payledger.payment_audit_log WHERE payment_id = :'r1' AND event_type = 'PAYMENT_FAILED';
SELECT payledger.create_payment(:merchant, :customer, 60, 'USD', :'cust', :'shop', 'r2') AS r2 \gset
SELECT payledger.authorize_payment(:'r2', 'r2-a');
CREATE OR REPLACE FUNCTION public.regress_score(p payledger.payments) RETURNS integer LANGUAGE sql
  AS $$ SELECT 1 / 0 $$;
SELECT payledger.create_payment(:merchant, :customer, 60, 'USD', :'cust', :'shop', 'r3') AS r3 \gset
SELECT payledger.authorize_payment(:'r3', 'r3-a');
-- the hook follows the setting from one call to the next (rolled back:
-- later tests count the ledger's rows)
BEGIN;
CREATE FUNCTION public.regress_score_low(p payledger.payments) RETURNS integer LANGUAGE sql
  AS $$ SELECT 0 $$;
SET payledger.risk_function = 'public.regress_score_low';
SELECT payledger.create_payment(:merchant, :customer, 6000, 'USD', :'cust', :'shop', 'r4') AS r4 \gset
SELECT payledger.authorize_payment(:'r4', 'r4-a');
SET payledger.risk_function = 'public.regress_score';
SELECT payledger.create_payment(:merchant, :customer, 60, 'USD', :'cust', :'shop', 'r5') AS r5 \gset
SELECT payledger.authorize_payment(:'r5', 'r5-a');
-- a score outside 0-100 is a broken hook: the payment fails closed
CREATE FUNCTION public.regress_score_negative(p payledger.payments) RETURNS integer LANGUAGE sql
  AS $$ SELECT -5 $$;
SET payledger.risk_function = 'public.regress_score_negative';
SELECT payledger.create_payment(:merchant, :customer, 60, 'USD', :'cust', :'shop', 'r6') AS r6 \gset
SELECT payledger.authorize_payment(:'r6', 'r6-a');
SELECT reason_code FROM payledger.payment_audit_log WHERE payment_id = :'r6' AND event_type = 'PAYMENT_FAILED';
ROLLBACK;
RESET payledger.risk_function;
DROP FUNCTION public.regress_score(payledger.payments);
SELECT check_name, ok FROM payledger.check_ledger() WHERE NOT ok;
