-- 10_marketplace.sql: a marketplace payment from authorization to a
-- reconciled settlement (doc/reference.md sections 6, 7 and 9)
--
-- authorize -> capture with three splits (platform fee and two sellers) ->
-- partial refund -> settle_merchant -> reconcile_settlement against a
-- processor statement with one amount mismatch and one payment missing.
-- Every balance is checked after every step; every event of a payment,
-- from create to settle, carries one correlation id.

BEGIN;
\ir helpers.psql

SELECT plan(80);

------------------------------------------------------------------------------
-- fixtures of this file
------------------------------------------------------------------------------

CREATE TEMP TABLE pays (
	label text PRIMARY KEY,
	id uuid NOT NULL
);

CREATE TEMP TABLE marks (
	name text PRIMARY KEY,
	val text NOT NULL
);

CREATE FUNCTION pg_temp.merchant(p_name text) RETURNS uuid LANGUAGE sql IMMUTABLE
	AS $$ SELECT md5('merchant ' || p_name)::uuid $$;

CREATE FUNCTION pg_temp.customer() RETURNS uuid LANGUAGE sql IMMUTABLE
	AS $$ SELECT md5('customer')::uuid $$;

-- a USD payment remembered under label; its create key is 'create-<label>'
CREATE FUNCTION pg_temp.pay(p_label text, p_amount bigint, p_src text DEFAULT 'cust',
							p_dst text DEFAULT 'shop', p_merchant text DEFAULT 'm1')
	RETURNS uuid LANGUAGE sql
	AS $$ INSERT INTO pg_temp.pays
		  VALUES (p_label,
				  payledger.create_payment(pg_temp.merchant(p_merchant), pg_temp.customer(),
										   p_amount, 'USD', pg_temp.acct(p_src), pg_temp.acct(p_dst),
										   'create-' || p_label))
		  RETURNING id $$;

CREATE FUNCTION pg_temp.pid(p_label text) RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT id FROM pg_temp.pays WHERE label = p_label $$;

CREATE FUNCTION pg_temp.pstate(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT state::text FROM payledger.payments WHERE id = pg_temp.pid(p_label) $$;

CREATE FUNCTION pg_temp.mark(p_name text, p_val text) RETURNS text LANGUAGE sql
	AS $$ INSERT INTO pg_temp.marks VALUES (p_name, p_val) RETURNING val $$;

CREATE FUNCTION pg_temp.marked(p_name text) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT val FROM pg_temp.marks WHERE name = p_name $$;

-- the named accounts, in the order given, as 'name balance/pending_debits/pending_credits'
CREATE FUNCTION pg_temp.book(VARIADIC p_names text[]) RETURNS text LANGUAGE sql
	AS $$ SELECT string_agg(format('%s %s/%s/%s', n.name, b.balance, b.pending_debits, b.pending_credits),
							', ' ORDER BY n.ord)
			FROM unnest(p_names) WITH ORDINALITY n(name, ord)
			CROSS JOIN LATERAL payledger.get_balance(pg_temp.acct(n.name)) b $$;

-- the whole marketplace: customer, merchant, platform, sellers, payout, the other merchant
CREATE FUNCTION pg_temp.market() RETURNS text LANGUAGE sql
	AS $$ SELECT pg_temp.book('cust', 'shop', 'platform', 'seller1', 'seller2', 'payout', 'shop2') $$;


-- settle_merchant, or NULL and a diagnostic when it raises, so that the
-- checks after it fail one by one instead of aborting the file
CREATE FUNCTION pg_temp.settle(p_label text, p_merchant text, p_cutoff timestamptz,
							   p_payout text, p_key text)
	RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	s		uuid;
BEGIN
	s := payledger.settle_merchant(pg_temp.merchant(p_merchant), p_cutoff, pg_temp.acct(p_payout), p_key);
	INSERT INTO pg_temp.marks VALUES (p_label, s::text);
	RETURN s;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'settle_merchant % raised %: %', p_label, SQLSTATE, SQLERRM;
	RETURN NULL;
END $$;

CREATE FUNCTION pg_temp.sid(p_label text) RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT val::uuid FROM pg_temp.marks WHERE name = p_label $$;

CREATE FUNCTION pg_temp.batch(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT format('count %s gross %s fee %s refund %s net %s', payment_count, gross_amount,
						fee_amount, refund_amount, net_amount)
			FROM payledger.settlements WHERE id = pg_temp.sid(p_label) $$;

DO $$
BEGIN
	PERFORM pg_temp.open('net', 'USD', NULL, 'system');	-- no floor: the money source
	PERFORM pg_temp.open('cust');		-- the buyer
	PERFORM pg_temp.open('shop');		-- marketplace m1's merchant account
	PERFORM pg_temp.open('platform');	-- the platform fee
	PERFORM pg_temp.open('seller1');
	PERFORM pg_temp.open('seller2');
	PERFORM pg_temp.open('payout');		-- m1's bank payout account
	PERFORM pg_temp.open('shop2');		-- another merchant, m2
	PERFORM pg_temp.open('shop3');		-- merchant m3, settled twice below
	PERFORM pg_temp.open('payout3');
	PERFORM pg_temp.open('eur', 'EUR');
	INSERT INTO pg_temp.fx VALUES ('ghost', '00000000-0000-7000-8000-0000000000ff');	-- never created
	INSERT INTO pg_temp.fx VALUES ('corr', payledger.uuid_v7());	-- the caller's correlation id
END $$;

SELECT is(pg_temp.xfer('fund-cust', 'net', 'cust', 100000), 'posted', 'setup: fund cust with 100000');

------------------------------------------------------------------------------
-- the marketplace payment P1: 10000, created under the caller's correlation id
------------------------------------------------------------------------------

DO $$ BEGIN PERFORM set_config('payledger.correlation_id', pg_temp.acct('corr')::text, true); END $$;
SELECT lives_ok($$SELECT pg_temp.pay('P1', 10000)$$, 'create P1: 10000 from cust to shop, under a correlation id');
SET LOCAL payledger.correlation_id TO DEFAULT;
SELECT is(pg_temp.pstate('P1'), 'pending', 'P1 is pending');
SELECT is((SELECT correlation_id FROM payledger.payments WHERE id = pg_temp.pid('P1')), pg_temp.acct('corr'),
	'P1''s correlation_id is the caller''s payledger.correlation_id at create');
SELECT is(pg_temp.market(),
	'cust 100000/0/0, shop 0/0/0, platform 0/0/0, seller1 0/0/0, seller2 0/0/0, payout 0/0/0, shop2 0/0/0',
	'after create: no money moved');

SELECT is(payledger.authorize_payment(pg_temp.pid('P1'), 'auth-P1'), 'authorized', 'authorize P1');
SELECT is(pg_temp.market(),
	'cust 100000/10000/0, shop 0/0/10000, platform 0/0/0, seller1 0/0/0, seller2 0/0/0, payout 0/0/0, shop2 0/0/0',
	'after authorize: 10000 reserved from cust for shop');

SELECT is(payledger.capture_payment(pg_temp.pid('P1'), 'cap-P1', NULL, jsonb_build_array(
		jsonb_build_object('account', pg_temp.acct('platform'), 'amount', 1000),
		jsonb_build_object('account', pg_temp.acct('seller1'), 'amount', 4000),
		jsonb_build_object('account', pg_temp.acct('seller2'), 'amount', 3000))),
	'captured', 'capture P1 in full with three splits: platform 1000, seller1 4000, seller2 3000');
SELECT is(pg_temp.market(),
	'cust 90000/0/0, shop 2000/0/0, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 0/0/0, shop2 0/0/0',
	'after capture: cust paid 10000, the splits came out of shop, which keeps 2000');
SELECT results_eq(
	$$SELECT state::text, captured_amount, refunded_amount FROM payledger.payments WHERE id = pg_temp.pid('P1')$$,
	$$VALUES ('captured', 10000::bigint, 0::bigint)$$,
	'P1 is captured for 10000');

SELECT is(payledger.refund_payment(pg_temp.pid('P1'), 1500, 'ref-P1', 'item_returned'), 'partially_refunded',
	'refund 1500 of P1');
SELECT is(pg_temp.market(),
	'cust 91500/0/0, shop 500/0/0, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 0/0/0, shop2 0/0/0',
	'after the refund: shop paid 1500 back to cust; the splits stay with their recipients');
SELECT results_eq(
	$$SELECT state::text, captured_amount, refunded_amount FROM payledger.payments WHERE id = pg_temp.pid('P1')$$,
	$$VALUES ('partially_refunded', 10000::bigint, 1500::bigint)$$,
	'P1 is partially_refunded: 1500 of 10000');

------------------------------------------------------------------------------
-- more of m1's payments around the cutoff, and one of merchant m2
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('P2', 3000), pg_temp.pay('P3', 2000), pg_temp.pay('P4', 700),
						 pg_temp.pay('P5', 400), pg_temp.pay('P6', 900, 'cust', 'shop2', 'm2'),
						 pg_temp.pay('P7', 600)$$,
	'create P2 3000, P3 2000, P4 700, P5 400, P7 600 (m1) and P6 900 (m2)');
SELECT is(payledger.authorize_payment(pg_temp.pid('P2'), 'auth-P2') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('P2'), 'cap-P2', 2500),
	'authorized captured', 'P2: authorize 3000, capture 2500');
SELECT is(payledger.authorize_payment(pg_temp.pid('P3'), 'auth-P3') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('P3'), 'cap-P3'),
	'authorized captured', 'P3: authorize and capture 2000');
SELECT is(payledger.authorize_payment(pg_temp.pid('P4'), 'auth-P4'), 'authorized', 'P4: authorized only');
SELECT is(payledger.authorize_payment(pg_temp.pid('P5'), 'auth-P5') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('P5'), 'cap-P5') || ' ' ||
		  payledger.refund_payment(pg_temp.pid('P5'), 400, 'ref-P5'),
	'authorized captured refunded', 'P5: captured and refunded in full');
SELECT is(payledger.authorize_payment(pg_temp.pid('P6'), 'auth-P6') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('P6'), 'cap-P6'),
	'authorized captured', 'P6 (merchant m2): authorize and capture 900');
SELECT is(pg_temp.market(),
	'cust 86100/700/0, shop 5000/0/700, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 0/0/0, shop2 900/0/0',
	'before the cutoff: shop 500 + 2500 + 2000 (+400 -400), P4''s 700 reserved, shop2 900');
DO $$
BEGIN
	PERFORM pg_sleep(0.002);
	PERFORM pg_temp.mark('cutoff', clock_timestamp()::text);
	PERFORM pg_sleep(0.002);
END $$;
SELECT is(payledger.authorize_payment(pg_temp.pid('P7'), 'auth-P7') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('P7'), 'cap-P7'),
	'authorized captured', 'P7: authorized and captured after the cutoff');
SELECT is(pg_temp.market(),
	'cust 85500/700/0, shop 5600/0/700, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 0/0/0, shop2 900/0/0',
	'after P7: shop 5600');

------------------------------------------------------------------------------
-- settle_merchant: P1, P2 and P3 (captured or partially refunded by the cutoff)
------------------------------------------------------------------------------

SELECT isnt(pg_temp.settle('S1', 'm1', pg_temp.marked('cutoff')::timestamptz, 'payout', 'settle-m1-1'), NULL,
	'settle_merchant(m1, cutoff, payout) returns the settlement id');
SELECT is(pg_temp.batch('S1'), 'count 3 gross 14500 fee 8000 refund 1500 net 5000',
	'the batch: 3 payments, gross 10000 + 2500 + 2000, fees 8000 (P1''s splits), refunds 1500, net 5000');
SELECT results_eq(
	$$SELECT merchant_id, cutoff, payout_transfer_id IS NOT NULL FROM payledger.settlements WHERE id = pg_temp.sid('S1')$$,
	$$VALUES (pg_temp.merchant('m1'), pg_temp.marked('cutoff')::timestamptz, true)$$,
	'the batch records merchant m1, the cutoff and its payout transfer');
SELECT is(pg_temp.market(),
	'cust 85500/700/0, shop 600/0/700, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 5000/0/0, shop2 900/0/0',
	'after settling: the net 5000 moved from shop to payout; P7''s 600 stays in shop');
SELECT results_eq(
	$$SELECT transfer_id, amount FROM payledger.account_entries(pg_temp.acct('payout'))$$,
	$$SELECT payout_transfer_id, 5000::bigint FROM payledger.settlements WHERE id = pg_temp.sid('S1')$$,
	'the payout account has one entry: +5000 by the batch''s payout transfer');
SELECT results_eq(
	$$SELECT p.label, pg_temp.pstate(p.label) FROM pg_temp.pays p ORDER BY p.label$$,
	$$VALUES ('P1', 'settled'), ('P2', 'settled'), ('P3', 'settled'), ('P4', 'authorized'),
	         ('P5', 'refunded'), ('P6', 'captured'), ('P7', 'captured')$$,
	'P1-P3 are settled; authorized P4, refunded P5, m2''s P6 and P7 (after the cutoff) are not');
SELECT results_eq(
	$$SELECT p.label, l.previous_state, l.new_state
	    FROM pg_temp.pays p JOIN payledger.payment_audit_log l ON l.payment_id = p.id
	   WHERE l.event_type = 'PAYMENT_SETTLED' ORDER BY p.label$$,
	$$VALUES ('P1', 'partially_refunded', 'settled'), ('P2', 'captured', 'settled'), ('P3', 'captured', 'settled')$$,
	'one PAYMENT_SETTLED audit row per settled payment, from the state it had before');
SELECT is(payledger.settle_merchant(pg_temp.merchant('m1'), pg_temp.marked('cutoff')::timestamptz,
									pg_temp.acct('payout'), 'settle-m1-1'),
	pg_temp.sid('S1'), 'settle_merchant replay: same key and parameters return the same settlement');
SELECT is(pg_temp.book('shop', 'payout') || ' ' ||
		  (SELECT count(*) FROM payledger.settlements WHERE merchant_id = pg_temp.merchant('m1')),
	'shop 600/0/700, payout 5000/0/0 1', 'the replay moved nothing and recorded no second batch');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m1'), clock_timestamp(), pg_temp.acct('payout'), 'settle-m1-1')$$,
	'PY002', 'settle_merchant: same key, another cutoff raises PY002');

------------------------------------------------------------------------------
-- correlation_id: every event of a payment, create to settle, carries one id
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT event_type, correlation_id FROM payledger.payment_audit_log
	   WHERE payment_id = pg_temp.pid('P1') ORDER BY id$$,
	$$VALUES ('PAYMENT_CREATED', pg_temp.acct('corr')), ('PAYMENT_AUTHORIZED', pg_temp.acct('corr')),
	         ('PAYMENT_CAPTURED', pg_temp.acct('corr')), ('PAYMENT_REFUNDED', pg_temp.acct('corr')),
	         ('PAYMENT_SETTLED', pg_temp.acct('corr'))$$,
	'P1''s events from create to settle all carry the caller''s correlation id set at create');
SELECT results_eq(
	$$SELECT event_type, count(*) FROM payledger.payment_audit_log
	   WHERE correlation_id = pg_temp.acct('corr') AND payment_id <> pg_temp.pid('P1')
	   GROUP BY event_type ORDER BY event_type$$,
	$$VALUES ('HOLD_CREATED', 1::bigint), ('HOLD_POSTED', 1::bigint), ('TRANSFER_POSTED', 4::bigint)$$,
	'the ledger events of P1 (its hold, three splits, the refund) carry the same correlation id');
SELECT is(
	(SELECT array_agg(DISTINCT coalesce(l.correlation_id::text, 'NULL'))
	   FROM payledger.payment_audit_log l WHERE l.payment_id = pg_temp.pid('P2')),
	(SELECT ARRAY[correlation_id::text] FROM payledger.payments WHERE id = pg_temp.pid('P2')),
	'without a caller''s id, all of P2''s events, create to settle, carry the payment''s one correlation id');
SELECT is((SELECT substr(correlation_id::text, 15, 1) FROM payledger.payments WHERE id = pg_temp.pid('P2')), '7',
	'P2''s correlation id is a new UUIDv7');
SELECT is((SELECT count(DISTINCT correlation_id) FROM payledger.payments
		    WHERE id IN (pg_temp.pid('P1'), pg_temp.pid('P2'), pg_temp.pid('P3'))),
	3::bigint, 'P1, P2 and P3 each have a correlation id of their own');

------------------------------------------------------------------------------
-- reconcile_settlement: P1's amount differs, P2 is missing, P3 matches,
-- and the statement has a payment the batch does not
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT payment_id, ledger_amount, statement_amount, status
	    FROM payledger.reconcile_settlement(pg_temp.sid('S1'), jsonb_build_array(
	           jsonb_build_object('payment_id', pg_temp.pid('P1'), 'amount', 8000),
	           jsonb_build_object('payment_id', pg_temp.pid('P3'), 'amount', 2000),
	           jsonb_build_object('payment_id', pg_temp.acct('ghost'), 'amount', 123)))
	   ORDER BY status$$,
	$$VALUES (pg_temp.pid('P1'), 8500::bigint, 8000::bigint, 'amount_mismatch'),
	         (pg_temp.pid('P3'), 2000::bigint, 2000::bigint, 'matched'),
	         (pg_temp.acct('ghost'), NULL::bigint, 123::bigint, 'missing_in_ledger'),
	         (pg_temp.pid('P2'), 2500::bigint, NULL::bigint, 'missing_in_statement')$$,
	'reconcile: P1 amount_mismatch (ledger 10000 - 1500 refunded, gross of splits), P3 matched, the unknown one missing_in_ledger, P2 missing_in_statement');
SELECT results_eq(
	$$SELECT metadata->'matched', metadata->'amount_mismatch', metadata->'missing_in_statement', metadata->'missing_in_ledger'
	    FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED'$$,
	$$VALUES ('1'::jsonb, '1'::jsonb, '1'::jsonb, '1'::jsonb)$$,
	'the run is recorded: one SETTLEMENT_RECONCILED audit row with the counts');
SELECT is((SELECT count(*) FROM payledger.reconcile_settlement(pg_temp.sid('S1'), jsonb_build_array(
			jsonb_build_object('payment_id', pg_temp.pid('P1'), 'amount', 8000),
			jsonb_build_object('payment_id', pg_temp.pid('P3'), 'amount', 2000),
			jsonb_build_object('payment_id', pg_temp.acct('ghost'), 'amount', 123)))
		   WHERE status <> 'matched'), 3::bigint,
	'reconciling the same statement again gives the same three differences');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED'), 1::bigint,
	'reconciling the same statement again is idempotent: no second audit row');
SELECT results_eq(
	$$SELECT payment_id, ledger_amount, statement_amount, status
	    FROM payledger.reconcile_settlement(pg_temp.sid('S1'), jsonb_build_array(
	           jsonb_build_object('payment_id', pg_temp.pid('P3'), 'amount', 2000),
	           jsonb_build_object('payment_id', pg_temp.pid('P2'), 'amount', 2500),
	           jsonb_build_object('payment_id', pg_temp.pid('P1'), 'amount', 8500)))
	   ORDER BY ledger_amount$$,
	$$VALUES (pg_temp.pid('P3'), 2000::bigint, 2000::bigint, 'matched'),
	         (pg_temp.pid('P2'), 2500::bigint, 2500::bigint, 'matched'),
	         (pg_temp.pid('P1'), 8500::bigint, 8500::bigint, 'matched')$$,
	'the corrected statement matches all three payments');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log WHERE event_type = 'SETTLEMENT_RECONCILED'), 2::bigint,
	'the corrected statement is a new run with its own audit row');
SELECT pg_temp.raises($$SELECT * FROM payledger.reconcile_settlement(NULL, '[]')$$,
	'22004', 'reconcile_settlement: NULL settlement_id raises 22004', 'settlement_id');
SELECT pg_temp.raises($$SELECT * FROM payledger.reconcile_settlement(pg_temp.sid('S1'), NULL)$$,
	'22004', 'reconcile_settlement: NULL statement raises 22004', 'statement');
SELECT pg_temp.raises($$SELECT * FROM payledger.reconcile_settlement(pg_temp.sid('S1'), '{"payment_id": 1}')$$,
	'22023', 'reconcile_settlement: a statement that is not an array raises 22023');
SELECT pg_temp.raises($$SELECT * FROM payledger.reconcile_settlement(pg_temp.sid('S1'), '[{"payment_id": "nope", "amount": 1}]')$$,
	'22023', 'reconcile_settlement: a payment_id that is not a uuid raises 22023');
SELECT pg_temp.raises($$SELECT * FROM payledger.reconcile_settlement(pg_temp.acct('ghost'), '[]')$$,
	'PY005', 'reconcile_settlement: an unknown settlement raises PY005');

------------------------------------------------------------------------------
-- a cutoff in the future takes all captured so far; settled payments
-- can still be refunded
------------------------------------------------------------------------------

SELECT isnt(pg_temp.settle('S2', 'm1', clock_timestamp() + interval '1 hour', 'payout', 'settle-m1-2'), NULL,
	'settle m1 again with a cutoff in the future');
SELECT is(pg_temp.batch('S2'), 'count 1 gross 600 fee 0 refund 0 net 600', 'the second batch is P7 alone');
SELECT is(pg_temp.pstate('P7') || ' ' || pg_temp.pstate('P6') || ' ' || pg_temp.pstate('P4'),
	'settled captured authorized', 'P7 is settled; m2''s P6 and the authorized P4 are untouched');
SELECT is(pg_temp.market(),
	'cust 85500/700/0, shop 0/0/700, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 5600/0/0, shop2 900/0/0',
	'after the second batch: shop paid out P7''s 600');
SELECT is(pg_temp.xfer('topup-shop', 'net', 'shop', 1000), 'posted', 'the merchant tops up shop with 1000');
SELECT is(payledger.refund_payment(pg_temp.pid('P3'), 500, 'ref-P3'), 'partially_refunded',
	'a settled payment can be refunded: settled -> partially_refunded');
SELECT is(pg_temp.book('cust', 'shop', 'payout'), 'cust 86000/700/0, shop 500/0/700, payout 5600/0/0',
	'the refund of the settled P3 comes out of shop, not out of the payout');
SELECT is(payledger.void_payment(pg_temp.pid('P4'), 'void-P4'), 'voided', 'void P4');
SELECT is(pg_temp.market(),
	'cust 86000/0/0, shop 500/0/0, platform 1000/0/0, seller1 4000/0/0, seller2 3000/0/0, payout 5600/0/0, shop2 900/0/0',
	'after voiding P4 nothing is reserved any more');

------------------------------------------------------------------------------
-- settle_merchant's errors
------------------------------------------------------------------------------

SELECT pg_temp.raises($$SELECT payledger.settle_merchant(NULL, clock_timestamp(), pg_temp.acct('payout'), 'st-null-1')$$,
	'22004', 'settle_merchant: NULL merchant_id raises 22004', 'merchant_id');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), NULL, pg_temp.acct('payout'), 'st-null-2')$$,
	'22004', 'settle_merchant: NULL cutoff raises 22004', 'cutoff');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), clock_timestamp(), NULL, 'st-null-3')$$,
	'22004', 'settle_merchant: NULL payout_account raises 22004', 'payout_account');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), clock_timestamp(), pg_temp.acct('payout'), NULL)$$,
	'PY008', 'settle_merchant: no idempotency key raises PY008');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), clock_timestamp(), pg_temp.acct('ghost'), 'st-ghost')$$,
	'PY005', 'settle_merchant: an unknown payout account raises PY005');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m9'), clock_timestamp(), pg_temp.acct('ghost'), 'st-ghost-empty')$$,
	'PY005', 'settle_merchant: an unknown payout account raises PY005 also when there is nothing to settle');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), clock_timestamp(), pg_temp.acct('eur'), 'st-eur')$$,
	'PY004', 'settle_merchant: a EUR payout account for USD payments raises PY004');
SELECT pg_temp.raises($$SELECT payledger.settle_merchant(pg_temp.merchant('m2'), clock_timestamp(), pg_temp.acct('shop2'), 'st-self')$$,
	'22023', 'settle_merchant: paying out to the merchant account itself (same account on both sides) raises 22023');
SELECT is(pg_temp.pstate('P6') || ' ' || pg_temp.book('shop2'), 'captured shop2 900/0/0',
	'the refused settlements left m2''s P6 captured and shop2 untouched');

------------------------------------------------------------------------------
-- a payment is settled once: refunded after its settlement, it is not
-- paid out again by the next batch
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('Q1', 1000, 'cust', 'shop3', 'm3')$$, 'create Q1: 1000 to m3''s shop3');
SELECT is(payledger.authorize_payment(pg_temp.pid('Q1'), 'auth-Q1') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('Q1'), 'cap-Q1'),
	'authorized captured', 'Q1: authorize and capture 1000');
SELECT isnt(pg_temp.settle('T1', 'm3', clock_timestamp(), 'payout3', 'settle-m3-1'), NULL, 'settle m3');
SELECT is(pg_temp.batch('T1'), 'count 1 gross 1000 fee 0 refund 0 net 1000', 'm3''s first batch: Q1, net 1000');
SELECT is(pg_temp.book('shop3', 'payout3'), 'shop3 0/0/0, payout3 1000/0/0', 'Q1''s 1000 is paid out');
SELECT is(pg_temp.xfer('topup-shop3', 'net', 'shop3', 1000), 'posted', 'm3 tops up shop3 with 1000');
SELECT is(payledger.refund_payment(pg_temp.pid('Q1'), 300, 'ref-Q1'), 'partially_refunded', 'refund 300 of the settled Q1');
SELECT is(pg_temp.book('shop3', 'payout3'), 'shop3 700/0/0, payout3 1000/0/0', 'the refund came out of shop3');
SELECT isnt(pg_temp.settle('T2', 'm3', clock_timestamp() + interval '1 hour', 'payout3', 'settle-m3-2'), NULL,
	'settle m3 again');
SELECT is(pg_temp.batch('T2'), 'count 0 gross 0 fee 0 refund 0 net 0',
	'the second batch is empty: Q1 was settled already and is not settled twice');
SELECT is(pg_temp.book('shop3', 'payout3'), 'shop3 700/0/0, payout3 1000/0/0',
	'the second batch pays nothing out again');
SELECT is(pg_temp.pstate('Q1'), 'partially_refunded', 'Q1 stays partially_refunded');

------------------------------------------------------------------------------
-- the ledger agrees with itself
------------------------------------------------------------------------------

SELECT is((SELECT sum(pg_temp.bal(name)) FROM pg_temp.fx WHERE name NOT IN ('eur', 'ghost', 'corr')), 0::numeric,
	'the balances of this file''s USD accounts sum to zero');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() reports every check ok');

SELECT * FROM finish();
ROLLBACK;
