-- 16_frozen_closed.sql: a frozen or closed account is neither debited nor
-- credited by any call; releasing what it reserved still works
-- (doc/reference.md section 3)

BEGIN;
\ir helpers.psql

SELECT plan(41);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('cust');
	PERFORM pg_temp.open('shop');
	PERFORM pg_temp.open('fee');
	PERFORM pg_temp.open('payout');
	PERFORM pg_temp.open('spare');
END $$;
SELECT is(pg_temp.xfer('fund', 'sys', 'cust', 100000), 'posted', 'setup: fund the customer');
SELECT is(pg_temp.xfer('fund-shop', 'sys', 'shop', 1000), 'posted', 'setup: fund the shop');

CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(p text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM pg_temp.ids WHERE name = p $$;
CREATE FUNCTION pg_temp.pay(p_name text, p_capture boolean) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	pid uuid := payledger.create_payment('00000000-0000-7000-8000-0000000000aa', gen_random_uuid(), 1000, 'USD',
										 pg_temp.acct('cust'), pg_temp.acct('shop'), p_name || '-c');
BEGIN
	PERFORM payledger.authorize_payment(pid, p_name || '-a');
	IF p_capture THEN
		PERFORM payledger.capture_payment(pid, p_name || '-k');
	END IF;
	INSERT INTO pg_temp.ids VALUES (p_name, pid);
	RETURN pid;
END $$;
CREATE FUNCTION pg_temp.hold_id(p_name text, p_from text, p_to text, p_amount bigint, p_expires interval DEFAULT '1 day')
	RETURNS uuid LANGUAGE sql AS $$
	INSERT INTO pg_temp.ids
	SELECT p_name, transfer_id FROM payledger.hold(pg_temp.acct(p_from), pg_temp.acct(p_to), p_amount, 'USD', p_expires, p_name)
	RETURNING id $$;
CREATE FUNCTION pg_temp.last_audit() RETURNS TABLE(event_type text, success boolean, reason_code text)
	LANGUAGE sql AS $$ SELECT event_type, success, reason_code FROM payledger.payment_audit_log ORDER BY id DESC LIMIT 1 $$;

-- made while the shop was active
SELECT ok(pg_temp.hold_id('h-in', 'cust', 'shop', 100) IS NOT NULL, 'setup: a hold into the shop');
SELECT ok(pg_temp.hold_id('h-out', 'shop', 'spare', 100) IS NOT NULL, 'setup: a hold out of the shop');
SELECT ok(pg_temp.hold_id('h-soon', 'shop', 'spare', 50, '1 millisecond') IS NOT NULL, 'setup: a hold out of the shop that expires at once');
SELECT ok(pg_temp.pay('p-auth', false) IS NOT NULL, 'setup: an authorized payment to the shop');
SELECT ok(pg_temp.pay('p-void', false) IS NOT NULL, 'setup: another one, to be voided');
SELECT ok(pg_temp.pay('p-cap', true) IS NOT NULL, 'setup: a captured payment to the shop');
SELECT ok(pg_temp.pay('p-ref', true) IS NOT NULL, 'setup: a captured payment to refund');
SELECT ok(pg_temp.pay('p-split', false) IS NOT NULL, 'setup: an authorized payment to capture with a split');
SELECT is(payledger.dispute_payment(pg_temp.id('p-cap'), 100, 'p-cap-d'), 'disputed', 'setup: a dispute on the captured payment');
SELECT results_eq($$SELECT balance, pending_debits FROM payledger.get_balance(pg_temp.acct('shop'))$$,
	$$VALUES (3000::bigint, 200::bigint)$$, 'setup: the shop holds 3000 with 200 reserved (the overdue hold no longer counts)');

SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('shop'), 'review')$$, 'the shop is frozen');

-- nothing debits or credits it
SELECT is(pg_temp.xfer('t-in', 'cust', 'shop', 10), 'rejected', 'transfer into the frozen account: rejected');
SELECT is((SELECT reason_code FROM res WHERE label = 't-in'), 'ACCOUNT_FROZEN', 'reason ACCOUNT_FROZEN');
SELECT is(pg_temp.xfer('t-out', 'shop', 'cust', 10), 'rejected', 'transfer out of it: rejected');
SELECT results_eq($$SELECT status, reason_code FROM payledger.transfer_legs(jsonb_build_array(
		jsonb_build_object('from', pg_temp.acct('cust'), 'to', pg_temp.acct('spare'), 'amount', 5),
		jsonb_build_object('from', pg_temp.acct('cust'), 'to', pg_temp.acct('shop'), 'amount', 5)), 'USD', 'legs')$$,
	$$VALUES ('rejected'::text, 'ACCOUNT_FROZEN'::text)$$, 'transfer_legs with a leg into it: all rejected ACCOUNT_FROZEN');
SELECT results_eq($$SELECT status, reason_code FROM payledger.transfer_many(ARRAY[pg_temp.acct('cust'), pg_temp.acct('cust')],
		ARRAY[pg_temp.acct('spare'), pg_temp.acct('shop')], ARRAY[5, 5]::bigint[], 'USD', ARRAY['m1', 'm2'])$$,
	$$VALUES ('posted'::text, NULL::text), ('rejected', 'ACCOUNT_FROZEN')$$, 'transfer_many: the item into it is rejected, the other posts');
SELECT results_eq($$SELECT status, reason_code FROM payledger.hold(pg_temp.acct('cust'), pg_temp.acct('shop'), 5, 'USD', '1 day', 'h-new')$$,
	$$VALUES ('rejected'::text, 'ACCOUNT_FROZEN'::text)$$, 'a new hold into it: rejected');
SELECT results_eq($$SELECT status, reason_code FROM payledger.post_hold(pg_temp.id('h-in'), NULL, 'h-in-post')$$,
	$$VALUES ('rejected'::text, 'ACCOUNT_FROZEN'::text)$$, 'post_hold of a hold into it: rejected ACCOUNT_FROZEN');
SELECT results_eq($$SELECT * FROM pg_temp.last_audit()$$, $$VALUES ('TRANSFER_REJECTED'::text, false, 'ACCOUNT_FROZEN'::text)$$,
	'and audited as a decline');
SELECT results_eq($$SELECT status, reason_code FROM payledger.post_hold(pg_temp.id('h-out'), 10, 'h-out-post')$$,
	$$VALUES ('rejected'::text, 'ACCOUNT_FROZEN'::text)$$, 'post_hold (in part) of a hold out of it: rejected');
SELECT is(payledger.capture_payment(pg_temp.id('p-auth'), 'p-auth-k')::text, 'authorized',
	'capture_payment into it: declined, the payment stays authorized');
SELECT results_eq($$SELECT * FROM pg_temp.last_audit()$$, $$VALUES ('PAYMENT_CAPTURED'::text, false, 'ACCOUNT_FROZEN'::text)$$,
	'and audited PAYMENT_CAPTURED success = false ACCOUNT_FROZEN');
SELECT is(payledger.capture_payment(pg_temp.id('p-auth'), 'p-auth-k')::text, 'authorized', 'its retry replays the decline');
SELECT is(payledger.refund_payment(pg_temp.id('p-ref'), 100, 'p-ref-r')::text, 'captured',
	'refund_payment out of it: declined, the payment unchanged');
SELECT is(payledger.resolve_dispute(pg_temp.id('p-cap'), false, 'p-cap-lost')::text, 'disputed',
	'a lost dispute cannot charge it back: declined, the dispute stays open');
SELECT results_eq($$SELECT * FROM pg_temp.last_audit()$$, $$VALUES ('PAYMENT_CHARGED_BACK'::text, false, 'ACCOUNT_FROZEN'::text)$$,
	'and audited as a decline');
SELECT is(payledger.settle_merchant('00000000-0000-7000-8000-0000000000aa', 'infinity', pg_temp.acct('payout'), 's1'), NULL,
	'settle_merchant out of it: declined, no settlement');
SELECT results_eq($$SELECT * FROM pg_temp.last_audit()$$, $$VALUES ('TRANSFER_REJECTED'::text, false, 'ACCOUNT_FROZEN'::text)$$,
	'and audited as a decline');
SELECT results_eq($$SELECT balance, pending_debits, pending_credits FROM payledger.get_balance(pg_temp.acct('shop'))$$,
	$$VALUES (3000::bigint, 200::bigint, 3100::bigint)$$, 'none of it moved a cent of the shop, nor released a reservation');

-- releasing what it reserved still works
SELECT results_eq($$SELECT status FROM payledger.void_hold(pg_temp.id('h-out'), 'h-out-void')$$,
	$$VALUES ('voided'::text)$$, 'void_hold out of it works');
SELECT is(payledger.void_payment(pg_temp.id('p-void'), 'p-void-v')::text, 'voided', 'void_payment into it works');
SELECT is(payledger.expire_holds() >= 1, true, 'expire_holds() expires its overdue hold');
SELECT results_eq($$SELECT pending_debits FROM payledger.get_balance(pg_temp.acct('shop'))$$,
	$$VALUES (100::bigint)$$, 'its reservations are released but the dispute''s');

-- a capture that would pay a split into a frozen account
SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('shop')); SELECT payledger.freeze_account(pg_temp.acct('spare'), 'x')$$,
	'the shop is active again, the split recipient frozen');
SELECT is(payledger.capture_payment(pg_temp.id('p-split'), 'p-split-k', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('spare'), 'amount', 100)))::text, 'authorized',
	'capture_payment with a split into a frozen account: declined, the payment stays authorized');

-- closed: same, with ACCOUNT_CLOSED
SELECT lives_ok($$SELECT payledger.close_account(pg_temp.acct('fee'))$$, 'an empty account is closed');
SELECT is(pg_temp.xfer('t-closed', 'cust', 'fee', 10), 'rejected', 'transfer into a closed account: rejected');
SELECT results_eq($$SELECT reason_code FROM res WHERE label = 't-closed'$$, $$VALUES ('ACCOUNT_CLOSED'::text)$$,
	'reason ACCOUNT_CLOSED');

SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes: every decline has its transfer and audit rows');

SELECT * FROM finish();
ROLLBACK;
