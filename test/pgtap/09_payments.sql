-- 09_payments.sql: every payment function's happy path, its declines and
-- its SQLSTATEs (doc/reference.md sections 1, 5, 6, 7 and 10)
--
-- create_payment, authorize_payment, capture_payment (partial, splits),
-- void_payment, refund_payment, dispute_payment, resolve_dispute,
-- fail_payment, expire_authorizations; idempotency scoped per merchant;
-- set_limits and the risk hook.  Money is checked on every step as
-- balance/pending_debits/pending_credits of each account involved.

BEGIN;
\ir helpers.psql

SELECT plan(279);

------------------------------------------------------------------------------
-- fixtures of this file
------------------------------------------------------------------------------

CREATE TEMP TABLE pays (
	label text PRIMARY KEY,
	id uuid NOT NULL
);

CREATE FUNCTION pg_temp.merchant(p_name text) RETURNS uuid LANGUAGE sql IMMUTABLE
	AS $$ SELECT md5('merchant ' || p_name)::uuid $$;

CREATE FUNCTION pg_temp.customer() RETURNS uuid LANGUAGE sql IMMUTABLE
	AS $$ SELECT md5('customer')::uuid $$;

-- a USD payment remembered under label; its create key is 'create-<label>'
CREATE FUNCTION pg_temp.pay(p_label text, p_amount bigint, p_src text DEFAULT 'cust',
							p_dst text DEFAULT 'shop', p_merchant text DEFAULT 'm1',
							p_metadata jsonb DEFAULT '{}', p_key text DEFAULT NULL)
	RETURNS uuid LANGUAGE sql
	AS $$ INSERT INTO pg_temp.pays
		  VALUES (p_label,
				  payledger.create_payment(pg_temp.merchant(p_merchant), pg_temp.customer(),
										   p_amount, 'USD', pg_temp.acct(p_src), pg_temp.acct(p_dst),
										   coalesce(p_key, 'create-' || p_label), p_metadata))
		  RETURNING id $$;

CREATE FUNCTION pg_temp.pid(p_label text) RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT id FROM pg_temp.pays WHERE label = p_label $$;

CREATE FUNCTION pg_temp.pstate(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT state::text FROM payledger.payments WHERE id = pg_temp.pid(p_label) $$;

-- captured/refunded/disputed amounts and version of a payment
CREATE FUNCTION pg_temp.pamounts(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT format('%s %s/%s/%s v%s', state, captured_amount, refunded_amount,
						disputed_amount, version)
			FROM payledger.payments WHERE id = pg_temp.pid(p_label) $$;

-- an account as balance/pending_debits/pending_credits
CREATE FUNCTION pg_temp.money(p_name text) RETURNS text LANGUAGE sql
	AS $$ SELECT format('%s/%s/%s', balance, pending_debits, pending_credits)
			FROM payledger.get_balance(pg_temp.acct(p_name)) $$;

-- the payment's latest audit row: 'TYPE previous->new success amount'
CREATE FUNCTION pg_temp.last_event(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT format('%s %s->%s %s %s', event_type, coalesce(previous_state, '()'),
						new_state, success::text, amount_cents)
			FROM payledger.payment_audit_log WHERE payment_id = pg_temp.pid(p_label)
		   ORDER BY id DESC LIMIT 1 $$;

CREATE FUNCTION pg_temp.last_change(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT format('%s %s->%s', event_type, coalesce(previous_state, '()'), new_state)
			FROM payledger.payment_audit_log WHERE payment_id = pg_temp.pid(p_label)
		   ORDER BY id DESC LIMIT 1 $$;

CREATE FUNCTION pg_temp.last_reason(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT reason_code FROM payledger.payment_audit_log
		   WHERE payment_id = pg_temp.pid(p_label) ORDER BY id DESC LIMIT 1 $$;

CREATE FUNCTION pg_temp.nevents(p_label text) RETURNS bigint LANGUAGE sql
	AS $$ SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id = pg_temp.pid(p_label) $$;


DO $$
BEGIN
	PERFORM pg_temp.open('net', 'USD', NULL, 'system');	-- no floor: the money source
	PERFORM pg_temp.open('cust');		-- the paying customer
	PERFORM pg_temp.open('poor');		-- a customer with 100
	PERFORM pg_temp.open('frozen');		-- a customer whose account is frozen
	PERFORM pg_temp.open('lim');		-- a customer with debit limits
	PERFORM pg_temp.open('shop');		-- merchant m1's account
	PERFORM pg_temp.open('shop2');		-- merchant m2's account
	PERFORM pg_temp.open('thin');		-- a merchant account that keeps little
	PERFORM pg_temp.open('shopd');		-- merchant account of the dispute section
	PERFORM pg_temp.open('fee');		-- the platform's fee account
	PERFORM pg_temp.open('eur', 'EUR');
	INSERT INTO pg_temp.fx VALUES ('ghost', '00000000-0000-7000-8000-0000000000ff');	-- never created
END $$;

SELECT is(pg_temp.xfer('fund-cust', 'net', 'cust', 100000), 'posted', 'setup: fund cust with 100000');
SELECT is(pg_temp.xfer('fund-poor', 'net', 'poor', 100), 'posted', 'setup: fund poor with 100');
SELECT is(pg_temp.xfer('fund-frozen', 'net', 'frozen', 1000), 'posted', 'setup: fund frozen with 1000');
SELECT is(pg_temp.xfer('fund-lim', 'net', 'lim', 10000), 'posted', 'setup: fund lim with 10000');
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('frozen'), 'chargeback review')$$,
	'setup: freeze the account frozen');

------------------------------------------------------------------------------
-- create_payment
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('p1', 5000)$$, 'create_payment p1: 5000 USD from cust to shop');
SELECT results_eq(
	$$SELECT state::text, merchant_id, customer_id, amount, currency, source_account, merchant_account,
	         captured_amount, refunded_amount, disputed_amount, version
	    FROM payledger.payments WHERE id = pg_temp.pid('p1')$$,
	$$VALUES ('pending', pg_temp.merchant('m1'), pg_temp.customer(), 5000::bigint, 'USD',
	          pg_temp.acct('cust'), pg_temp.acct('shop'), 0::bigint, 0::bigint, 0::bigint, 1::bigint)$$,
	'create_payment: the payment row is pending, with its parties, amount 5000 and version 1');
SELECT is(substr(pg_temp.pid('p1')::text, 15, 1), '7', 'create_payment: the payment id is a UUIDv7');
SELECT is(pg_temp.money('cust'), '100000/0/0', 'create_payment moves no money and reserves nothing');
SELECT results_eq(
	$$SELECT event_type, previous_state, new_state, success, amount_cents, currency, merchant_id, customer_id
	    FROM payledger.payment_audit_log WHERE payment_id = pg_temp.pid('p1')$$,
	$$VALUES ('PAYMENT_CREATED', NULL::text, 'pending', true, 5000::bigint, 'USD',
	          pg_temp.merchant('m1'), pg_temp.customer())$$,
	'create_payment writes one PAYMENT_CREATED audit row (-> pending, success, 5000 USD, merchant, customer)');
SELECT is(payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 5000, 'USD',
								   pg_temp.acct('cust'), pg_temp.acct('shop'), 'create-p1'),
	pg_temp.pid('p1'), 'create_payment replay: same key and parameters return the same payment id');
SELECT is((SELECT count(*) FROM payledger.payments WHERE merchant_id = pg_temp.merchant('m1')), 1::bigint,
	'create_payment replay: no second payment');
SELECT is(pg_temp.nevents('p1'), 1::bigint, 'create_payment replay: no audit row');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 5001, 'USD',
		pg_temp.acct('cust'), pg_temp.acct('shop'), 'create-p1')$$,
	'PY002', 'create_payment: same key, another amount raises PY002');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 5000, 'USD',
		pg_temp.acct('cust'), pg_temp.acct('shop'), 'create-p1', '{"order": "B-2"}')$$,
	'PY002', 'create_payment: same key, other metadata raises PY002');
SELECT lives_ok($$SELECT pg_temp.pay('p1-m2', 5000, 'cust', 'shop2', 'm2', '{}', 'create-p1')$$,
	'create_payment: merchant m2 may use m1''s key create-p1');
SELECT isnt(pg_temp.pid('p1-m2'), pg_temp.pid('p1'), 'the key is scoped per merchant: m2''s create-p1 is a new payment');
SELECT results_eq(
	$$SELECT state::text, merchant_id FROM payledger.payments WHERE id = pg_temp.pid('p1-m2')$$,
	$$VALUES ('pending', pg_temp.merchant('m2'))$$,
	'the other merchant''s payment is pending and belongs to m2');

-- 22004: every required argument
SELECT pg_temp.raises($$SELECT payledger.create_payment(NULL, pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'n1')$$,
	'22004', 'create_payment: NULL merchant_id raises 22004 naming it', 'merchant_id');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), NULL, 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'n2')$$,
	'22004', 'create_payment: NULL customer_id raises 22004 naming it', 'customer_id');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), NULL, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'n3')$$,
	'22004', 'create_payment: NULL amount raises 22004 naming it', 'amount');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, NULL, pg_temp.acct('cust'), pg_temp.acct('shop'), 'n4')$$,
	'22004', 'create_payment: NULL currency raises 22004 naming it', 'currency');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', NULL, pg_temp.acct('shop'), 'n5')$$,
	'22004', 'create_payment: NULL source_account raises 22004 naming it', 'source_account');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), NULL, 'n6')$$,
	'22004', 'create_payment: NULL merchant_account raises 22004 naming it', 'merchant_account');
-- 22023
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 0, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'i1')$$,
	'22023', 'create_payment: amount 0 raises 22023', 'amount');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), -1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'i2')$$,
	'22023', 'create_payment: a negative amount raises 22023', 'amount');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'XYZ', pg_temp.acct('cust'), pg_temp.acct('shop'), 'i3')$$,
	'22023', 'create_payment: an unknown currency raises 22023', 'XYZ');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('cust'), 'i4')$$,
	'22023', 'create_payment: the same account on both sides raises 22023');
-- PY006, PY008, PY005, PY004
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), 'i5', '{"card": "4111 1111 1111 1111"}')$$,
	'PY006', 'create_payment: a card number in metadata raises PY006');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop'), NULL)$$,
	'PY008', 'create_payment: no idempotency key raises PY008');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('ghost'), pg_temp.acct('shop'), 'i6')$$,
	'PY005', 'create_payment: an unknown source_account raises PY005', '00000000-0000-7000-8000-0000000000ff');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('ghost'), 'i7')$$,
	'PY005', 'create_payment: an unknown merchant_account raises PY005', '00000000-0000-7000-8000-0000000000ff');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('eur'), 'i8')$$,
	'PY004', 'create_payment: a EUR merchant account for a USD payment raises PY004');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'EUR', pg_temp.acct('cust'), pg_temp.acct('shop'), 'i9')$$,
	'PY004', 'create_payment: a EUR payment between USD accounts raises PY004');
-- precedence (section 1)
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 0, 'USD', pg_temp.acct('ghost'), pg_temp.acct('shop'), NULL)$$,
	'22023', 'create_payment: amount 0, no key and an unknown account: 22023 wins');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('ghost'), pg_temp.acct('eur'), NULL)$$,
	'PY008', 'create_payment: no key, an unknown and a EUR account: PY008 wins');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 7, 'USD', pg_temp.acct('ghost'), pg_temp.acct('shop'), 'create-p1')$$,
	'PY002', 'create_payment: a reused key and an unknown account: PY002 wins');
SELECT pg_temp.raises($$SELECT payledger.create_payment(pg_temp.merchant('m1'), pg_temp.customer(), 1, 'USD', pg_temp.acct('ghost'), pg_temp.acct('eur'), 'i10')$$,
	'PY005', 'create_payment: an unknown and a EUR account: PY005 wins over PY004');
SELECT is((SELECT count(*) FROM payledger.payments), 2::bigint, 'no failed create_payment left a payment behind');

------------------------------------------------------------------------------
-- authorize_payment
------------------------------------------------------------------------------

SELECT is(payledger.authorize_payment(pg_temp.pid('p1'), 'auth-p1'), 'authorized',
	'authorize_payment p1 returns authorized');
SELECT is(pg_temp.money('cust'), '100000/5000/0', 'authorize: cust''s balance stays, 5000 is reserved');
SELECT is((SELECT available FROM payledger.get_balance(pg_temp.acct('cust'))), 95000::bigint,
	'authorize: cust''s available drops to 95000');
SELECT is(pg_temp.money('shop'), '0/0/5000', 'authorize: shop has 5000 pending credit and no balance yet');
SELECT is(pg_temp.pamounts('p1'), 'authorized 0/0/0 v2', 'authorize: p1 is authorized, version 2');
SELECT is(pg_temp.last_event('p1'), 'PAYMENT_AUTHORIZED pending->authorized true 5000',
	'authorize: a PAYMENT_AUTHORIZED audit row pending -> authorized');
SELECT is(payledger.authorize_payment(pg_temp.pid('p1'), 'auth-p1'), 'authorized',
	'authorize replay: the same key returns authorized again');
SELECT is(pg_temp.money('cust'), '100000/5000/0', 'authorize replay reserves nothing more');
SELECT is(pg_temp.nevents('p1'), 2::bigint, 'authorize replay writes no audit row');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1'), 'auth-p1-again')$$,
	'PY001', 'authorize_payment of an authorized payment raises PY001 naming the state', 'authorized');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1'), 'auth-p1', '1 day')$$,
	'PY002', 'authorize_payment: same key, another expires_in raises PY002');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1'), 'create-p1')$$,
	'PY002', 'authorize_payment: the key of the merchant''s create_payment raises PY002 (another operation)');

-- declines: the payment fails, nothing is reserved, the reason is audited
SELECT lives_ok($$SELECT pg_temp.pay('poor1', 5000, 'poor')$$, 'create poor1: 5000 from an account holding 100');
SELECT is(payledger.authorize_payment(pg_temp.pid('poor1'), 'auth-poor1'), 'failed',
	'authorize without the funds returns failed (no error)');
SELECT is(pg_temp.pstate('poor1'), 'failed', 'the declined payment is failed');
SELECT is(pg_temp.money('poor'), '100/0/0', 'the decline reserved nothing');
SELECT is(pg_temp.last_event('poor1'), 'PAYMENT_FAILED pending->failed false 5000',
	'the decline is a PAYMENT_FAILED audit row with success = false');
SELECT is(pg_temp.last_reason('poor1'), 'INSUFFICIENT_FUNDS', 'the decline''s reason is INSUFFICIENT_FUNDS');
SELECT is(payledger.authorize_payment(pg_temp.pid('poor1'), 'auth-poor1'), 'failed', 'a declined authorization replays as failed');
SELECT is(pg_temp.nevents('poor1'), 2::bigint, 'the replayed decline writes no audit row');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('poor1'), 'auth-poor1-again')$$,
	'PY001', 'authorize_payment of a failed payment raises PY001', 'failed');
SELECT lives_ok($$SELECT pg_temp.pay('frz1', 100, 'frozen')$$, 'create frz1 from the frozen account');
SELECT is(payledger.authorize_payment(pg_temp.pid('frz1'), 'auth-frz1'), 'failed', 'authorize from a frozen account returns failed');
SELECT is(pg_temp.last_reason('frz1'), 'ACCOUNT_FROZEN', 'the decline''s reason is ACCOUNT_FROZEN');
SELECT is(pg_temp.money('frozen'), '1000/0/0', 'the frozen account is untouched');

SELECT pg_temp.raises($$SELECT payledger.authorize_payment(NULL, 'a-null')$$,
	'22004', 'authorize_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1-m2'), 'a-null-exp', NULL)$$,
	'22004', 'authorize_payment: NULL expires_in raises 22004', 'expires_in');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1-m2'), 'a-zero', '0 seconds')$$,
	'22023', 'authorize_payment: expires_in 0 raises 22023', 'expires_in');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1-m2'), 'a-neg', '-1 day')$$,
	'22023', 'authorize_payment: a negative expires_in raises 22023', 'expires_in');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.acct('ghost'), 'a-ghost')$$,
	'PY005', 'authorize_payment: an unknown payment raises PY005', 'payment');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('p1-m2'), NULL)$$,
	'PY008', 'authorize_payment: no idempotency key raises PY008');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.acct('ghost'), NULL)$$,
	'PY008', 'authorize_payment: no key and an unknown payment: PY008 wins');
SELECT is(pg_temp.pstate('p1-m2'), 'pending', 'the refused authorizations left p1-m2 pending');

------------------------------------------------------------------------------
-- capture_payment: errors first, p1 stays authorized through them
------------------------------------------------------------------------------

SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-big', 5001)$$,
	'22023', 'capture above the authorized amount raises 22023; the detail says 5000 is left',
	NULL, ARRAY['left', '\m5000\M']);
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x1', 1000,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 600),
		                  jsonb_build_object('account', pg_temp.acct('shop2'), 'amount', 401)))$$,
	'22023', 'capture: splits above the captured amount raise 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x2', NULL,
		jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 1))$$,
	'22023', 'capture: splits that are not an array raise 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x3', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'))))$$,
	'22023', 'capture: a split without amount raises 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x4', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 0)))$$,
	'22023', 'capture: a split of amount 0 raises 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x5', NULL,
		'[{"account": "fee", "amount": 10}]')$$,
	'22023', 'capture: a split account that is not a uuid raises 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x6', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 1.5)))$$,
	'22023', 'capture: a fractional split amount raises 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x7', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('shop'), 'amount', 10)))$$,
	'22023', 'capture: a split to the merchant account itself (same account on both sides) raises 22023');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x8', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('ghost'), 'amount', 10)))$$,
	'PY005', 'capture: a split to an unknown account raises PY005');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-x9', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('eur'), 'amount', 10)))$$,
	'PY004', 'capture: a split to a EUR account raises PY004');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(NULL, 'cap-null')$$,
	'22004', 'capture_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-zero', 0)$$,
	'22023', 'capture_payment: amount 0 raises 22023', 'amount');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.acct('ghost'), 'cap-ghost')$$,
	'PY005', 'capture_payment: an unknown payment raises PY005');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), NULL)$$,
	'PY008', 'capture_payment: no idempotency key raises PY008');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.acct('ghost'), 'cap-ghost0', 0)$$,
	'22023', 'capture_payment: amount 0 and an unknown payment: 22023 wins');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'auth-p1', 99999)$$,
	'PY002', 'capture_payment: the key of the authorization and too big an amount: PY002 wins');
SELECT is(pg_temp.pamounts('p1'), 'authorized 0/0/0 v2', 'after the refused captures p1 is still authorized, version 2');
SELECT is(pg_temp.money('cust'), '100000/5000/0', 'after the refused captures cust still has 5000 reserved');

-- full capture with a platform fee split
SELECT is(payledger.capture_payment(pg_temp.pid('p1'), 'cap-p1', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 500))),
	'captured', 'capture_payment p1 in full with a 500 fee split returns captured');
SELECT is(pg_temp.money('cust'), '95000/0/0', 'capture: cust pays 5000, nothing reserved any more');
SELECT is(pg_temp.money('shop'), '4500/0/0', 'capture: shop keeps 5000 - 500');
SELECT is(pg_temp.money('fee'), '500/0/0', 'capture: the fee account gets its 500 split');
SELECT is(pg_temp.pamounts('p1'), 'captured 5000/0/0 v3', 'capture: p1 captured 5000, version 3');
SELECT is(pg_temp.last_event('p1'), 'PAYMENT_CAPTURED authorized->captured true 5000',
	'capture: a PAYMENT_CAPTURED audit row authorized -> captured for 5000');
SELECT is(payledger.capture_payment(pg_temp.pid('p1'), 'cap-p1', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 500))),
	'captured', 'capture replay returns captured');
SELECT is(pg_temp.money('shop') || ' ' || pg_temp.money('fee') || ' ' || pg_temp.nevents('p1'),
	'4500/0/0 500/0/0 3', 'capture replay moves nothing and writes no audit row');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-p1', 4000)$$,
	'PY002', 'capture: same key, another amount raises PY002');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p1'), 'cap-p1-again')$$,
	'PY001', 'capture of a captured payment raises PY001', 'captured');

-- partial capture releases the rest
SELECT lives_ok($$SELECT pg_temp.pay('p2', 3000)$$, 'create p2: 3000');
SELECT is(payledger.authorize_payment(pg_temp.pid('p2'), 'auth-p2'), 'authorized', 'authorize p2');
SELECT is(pg_temp.money('cust'), '95000/3000/0', 'p2 reserves 3000');
SELECT is(payledger.capture_payment(pg_temp.pid('p2'), 'cap-p2', 1200), 'captured', 'capture 1200 of p2''s 3000');
SELECT is(pg_temp.money('cust'), '93800/0/0', 'partial capture: cust pays 1200 and the other 1800 is released');
SELECT is(pg_temp.money('shop'), '5700/0/0', 'partial capture: shop gets 1200');
SELECT is(pg_temp.pamounts('p2'), 'captured 1200/0/0 v3', 'partial capture: captured_amount 1200');
SELECT is(pg_temp.last_event('p2'), 'PAYMENT_CAPTURED authorized->captured true 1200', 'partial capture audits 1200');

------------------------------------------------------------------------------
-- void_payment
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('p3', 700)$$, 'create p3: 700');
SELECT pg_temp.raises($$SELECT payledger.void_payment(pg_temp.pid('p3'), 'void-p3-early')$$,
	'PY001', 'void of a pending payment raises PY001', 'pending');
SELECT is(payledger.authorize_payment(pg_temp.pid('p3'), 'auth-p3'), 'authorized', 'authorize p3');
SELECT is(payledger.void_payment(pg_temp.pid('p3'), 'void-p3'), 'voided', 'void_payment p3 returns voided');
SELECT is(pg_temp.money('cust'), '93800/0/0', 'void releases the 700 reservation');
SELECT is(pg_temp.money('shop'), '5700/0/0', 'void leaves shop without pending credit');
SELECT is(pg_temp.last_event('p3'), 'PAYMENT_VOIDED authorized->voided true 700', 'void writes PAYMENT_VOIDED');
SELECT is(payledger.void_payment(pg_temp.pid('p3'), 'void-p3'), 'voided', 'void replay returns voided');
SELECT is(pg_temp.nevents('p3'), 3::bigint, 'void replay writes no audit row');
SELECT pg_temp.raises($$SELECT payledger.void_payment(pg_temp.pid('p3'), 'void-p3-again')$$,
	'PY001', 'void of a voided payment raises PY001', 'voided');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p3'), 'cap-p3')$$,
	'PY001', 'capture of a voided payment raises PY001', 'voided');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p3'), 'cap-p3-big', 999999)$$,
	'PY001', 'capture of a voided payment, too big an amount too: PY001 wins over 22023');
SELECT pg_temp.raises($$SELECT payledger.void_payment(pg_temp.pid('p1'), 'void-p1')$$,
	'PY001', 'void of a captured payment raises PY001', 'captured');
SELECT pg_temp.raises($$SELECT payledger.void_payment(NULL, 'void-null')$$,
	'22004', 'void_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.void_payment(pg_temp.acct('ghost'), 'void-ghost')$$,
	'PY005', 'void_payment: an unknown payment raises PY005');
SELECT pg_temp.raises($$SELECT payledger.void_payment(pg_temp.pid('p3'), NULL)$$,
	'PY008', 'void_payment: no idempotency key raises PY008');

------------------------------------------------------------------------------
-- a pending payment allows none of the money operations
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('p4', 100)$$, 'create p4: 100, left pending');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p4'), 'cap-p4')$$,
	'PY001', 'capture of a pending payment raises PY001', 'pending');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p4'), 1, 'ref-p4')$$,
	'PY001', 'refund of a pending payment raises PY001', 'pending');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p4'), 999999, 'ref-p4-big')$$,
	'PY001', 'refund of a pending payment, above its amount too: PY001 wins over 22023');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p4'), 1, 'dis-p4')$$,
	'PY001', 'dispute of a pending payment raises PY001', 'pending');
SELECT pg_temp.raises($$SELECT payledger.resolve_dispute(pg_temp.pid('p4'), true, 'res-p4')$$,
	'PY001', 'resolve_dispute of a pending payment raises PY001', 'pending');

------------------------------------------------------------------------------
-- expiry: at capture time and by expire_authorizations()
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('p5', 200)$$, 'create p5: 200');
SELECT is(payledger.authorize_payment(pg_temp.pid('p5'), 'auth-p5', '1 millisecond'), 'authorized',
	'authorize p5 for one millisecond');
DO $$ BEGIN PERFORM pg_sleep(0.02); END $$;
SELECT is(payledger.capture_payment(pg_temp.pid('p5'), 'cap-p5'), 'expired',
	'capture of an overdue authorization returns expired (judged by the wall clock)');
SELECT is(pg_temp.money('cust'), '93800/0/0', 'the overdue authorization''s reservation is released');
SELECT is(pg_temp.pamounts('p5'), 'expired 0/0/0 v3', 'p5 is expired and captured nothing');

SELECT lives_ok($$SELECT pg_temp.pay('p6', 300), pg_temp.pay('p7', 400)$$, 'create p6: 300 and p7: 400');
SELECT is(payledger.authorize_payment(pg_temp.pid('p6'), 'auth-p6', '1 second'), 'authorized', 'authorize p6 for one second');
SELECT is(payledger.authorize_payment(pg_temp.pid('p7'), 'auth-p7'), 'authorized', 'authorize p7 for the default 7 days');
SELECT is(pg_temp.money('cust'), '93800/700/0', 'p6 and p7 reserve 700');
DO $$ BEGIN PERFORM pg_sleep(1.05); END $$;
SELECT is(payledger.expire_authorizations(), 1, 'expire_authorizations() expires exactly the one overdue authorization');
SELECT is(pg_temp.pstate('p6') || ' ' || pg_temp.pstate('p7'), 'expired authorized', 'p6 is expired, p7 still authorized');
SELECT is(pg_temp.money('cust'), '93800/400/0', 'p6''s 300 is released, p7''s 400 still reserved');
SELECT is(pg_temp.last_event('p6'), 'PAYMENT_EXPIRED authorized->expired true 300', 'p6 gets a PAYMENT_EXPIRED audit row');
SELECT is((SELECT string_agg(l.success || '/' || coalesce(l.reason_code, '-'), ',')
			 FROM payledger.payment_audit_log l JOIN payledger.payments p ON l.payment_id = p.hold_id
			WHERE p.id = pg_temp.pid('p6') AND l.event_type = 'HOLD_EXPIRED'),
	'true/-', 'the sweep''s HOLD_EXPIRED row of p6''s hold is a success without a reason, as expire_holds() writes it');
SELECT is(payledger.expire_authorizations(), 0, 'a second expire_authorizations() finds nothing');
SELECT pg_temp.raises($$SELECT payledger.capture_payment(pg_temp.pid('p6'), 'cap-p6')$$,
	'PY001', 'capture of an expired payment raises PY001', 'expired');

------------------------------------------------------------------------------
-- fail_payment
------------------------------------------------------------------------------

SELECT is(payledger.fail_payment(pg_temp.pid('p7'), 'CUSTOMER_CANCELLED', 'fail-p7'), 'failed',
	'fail_payment of an authorized payment returns failed');
SELECT is(pg_temp.money('cust'), '93800/0/0', 'failing p7 releases its 400 reservation');
SELECT is(pg_temp.last_event('p7'), 'PAYMENT_FAILED authorized->failed false 400', 'fail writes PAYMENT_FAILED, success = false');
SELECT is(pg_temp.last_reason('p7'), 'CUSTOMER_CANCELLED', 'the failure''s reason_code is the caller''s');
SELECT is(payledger.fail_payment(pg_temp.pid('p7'), 'CUSTOMER_CANCELLED', 'fail-p7'), 'failed', 'fail replay returns failed');
SELECT is(pg_temp.nevents('p7'), 3::bigint, 'fail replay writes no audit row');
SELECT is(payledger.fail_payment(pg_temp.pid('p4'), 'ABANDONED', 'fail-p4'), 'failed', 'fail_payment of a pending payment returns failed');
SELECT is(pg_temp.last_event('p4'), 'PAYMENT_FAILED pending->failed false 100', 'pending -> failed is audited');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p4'), 'AGAIN', 'fail-p4-again')$$,
	'PY001', 'fail of a failed payment raises PY001', 'failed');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p2'), 'TOO_LATE', 'fail-p2')$$,
	'PY001', 'fail of a captured payment raises PY001', 'captured');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p7'), 'OTHER', 'fail-p7')$$,
	'PY002', 'fail: same key, another reason raises PY002');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(NULL, 'X', 'fail-null')$$,
	'22004', 'fail_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p2'), NULL, 'fail-null-reason')$$,
	'22004', 'fail_payment: NULL reason_code raises 22004', 'reason_code');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p2'), 'card 4111111111111111', 'fail-pan')$$,
	'PY006', 'fail_payment: a card number in reason_code raises PY006');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.acct('ghost'), 'X', 'fail-ghost')$$,
	'PY005', 'fail_payment: an unknown payment raises PY005');
SELECT pg_temp.raises($$SELECT payledger.fail_payment(pg_temp.pid('p2'), 'X', NULL)$$,
	'PY008', 'fail_payment: no idempotency key raises PY008');

------------------------------------------------------------------------------
-- refund_payment
------------------------------------------------------------------------------

-- p1: captured 5000, shop 5700 (p1 4500 + p2 1200), cust 93800
SELECT is(payledger.refund_payment(pg_temp.pid('p1'), 1000, 'ref-p1-1', 'requested_by_customer'), 'partially_refunded',
	'refund 1000 of p1 returns partially_refunded');
SELECT is(pg_temp.money('cust') || ' ' || pg_temp.money('shop'), '94800/0/0 4700/0/0',
	'refund: 1000 goes from shop back to cust');
SELECT is(pg_temp.money('fee'), '500/0/0', 'refund: the fee split is not charged back');
SELECT is(pg_temp.pamounts('p1'), 'partially_refunded 5000/1000/0 v4', 'refund: refunded_amount 1000, version 4');
SELECT is(pg_temp.last_event('p1'), 'PAYMENT_REFUNDED captured->partially_refunded true 1000', 'refund writes PAYMENT_REFUNDED');
SELECT is(payledger.refund_payment(pg_temp.pid('p1'), 1000, 'ref-p1-1', 'requested_by_customer'), 'partially_refunded',
	'refund replay returns partially_refunded');
SELECT is(pg_temp.money('cust') || ' ' || pg_temp.pamounts('p1') || ' ' || pg_temp.nevents('p1'),
	'94800/0/0 partially_refunded 5000/1000/0 v4 4', 'refund replay moves nothing and writes no audit row');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p1'), 4001, 'ref-p1-big')$$,
	'22023', 'refund above captured minus refunded raises 22023; the detail says 4000 is left',
	NULL, ARRAY['left', '\m4000\M']);
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p1'), 999, 'ref-p1-1', 'requested_by_customer')$$,
	'PY002', 'refund: same key, another amount raises PY002');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p2'), 1000, 'ref-p1-1', 'requested_by_customer')$$,
	'PY002', 'refund: same key and amount for another payment of the merchant raises PY002');
SELECT is(payledger.refund_payment(pg_temp.pid('p1'), 4000, 'ref-p1-2'), 'refunded', 'refunding the 4000 left returns refunded');
SELECT is(pg_temp.money('cust') || ' ' || pg_temp.money('shop'), '98800/0/0 700/0/0', 'the second refund moves 4000');
SELECT is(pg_temp.pamounts('p1'), 'refunded 5000/5000/0 v5', 'p1 is refunded in full');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p1'), 1, 'ref-p1-3')$$,
	'PY001', 'refund of a refunded payment raises PY001', 'refunded');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p3'), 1, 'ref-p3')$$,
	'PY001', 'refund of a voided payment raises PY001', 'voided');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(NULL, 1, 'ref-null')$$,
	'22004', 'refund_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p2'), NULL, 'ref-null-amount')$$,
	'22004', 'refund_payment: NULL amount raises 22004', 'amount');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p2'), 0, 'ref-zero')$$,
	'22023', 'refund_payment: amount 0 raises 22023', 'amount');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p2'), 1, 'ref-pan', '4111-1111-1111-1111')$$,
	'PY006', 'refund_payment: a card number in reason_code raises PY006');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.acct('ghost'), 1, 'ref-ghost')$$,
	'PY005', 'refund_payment: an unknown payment raises PY005');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p2'), 1, NULL)$$,
	'PY008', 'refund_payment: no idempotency key raises PY008');

-- the merchant account cannot cover the refund: declined, returned, audited
SELECT lives_ok($$SELECT pg_temp.pay('p9', 1000, 'cust', 'thin')$$, 'create p9: 1000 to the merchant account thin');
SELECT is(payledger.authorize_payment(pg_temp.pid('p9'), 'auth-p9'), 'authorized', 'authorize p9');
SELECT is(payledger.capture_payment(pg_temp.pid('p9'), 'cap-p9', NULL,
		jsonb_build_array(jsonb_build_object('account', pg_temp.acct('fee'), 'amount', 900))),
	'captured', 'capture p9 with a 900 split: thin keeps 100');
SELECT is(pg_temp.money('thin') || ' ' || pg_temp.money('fee') || ' ' || pg_temp.money('cust'),
	'100/0/0 1400/0/0 97800/0/0', 'after p9''s capture: thin 100, fee 1400, cust 97800');
SELECT is(payledger.refund_payment(pg_temp.pid('p9'), 500, 'ref-p9'), 'captured',
	'a refund thin cannot cover raises nothing and returns the unchanged state captured');
SELECT is(pg_temp.money('thin') || ' ' || pg_temp.money('fee') || ' ' || pg_temp.money('cust'),
	'100/0/0 1400/0/0 97800/0/0', 'the declined refund moves nothing; the split recipient is not charged back');
SELECT is(pg_temp.pamounts('p9'), 'captured 1000/0/0 v3', 'the declined refund leaves refunded_amount 0 and the version');
SELECT is(pg_temp.last_event('p9'), 'PAYMENT_REFUNDED captured->captured false 500',
	'the declined refund is a PAYMENT_REFUNDED audit row with success = false');
SELECT is(pg_temp.last_reason('p9'), 'INSUFFICIENT_FUNDS', 'the declined refund''s reason is INSUFFICIENT_FUNDS');
SELECT is(payledger.refund_payment(pg_temp.pid('p9'), 500, 'ref-p9'), 'captured', 'the declined refund replays as captured');
SELECT is(pg_temp.nevents('p9'), 4::bigint, 'the replayed decline writes no audit row');
SELECT is(payledger.refund_payment(pg_temp.pid('p9'), 100, 'ref-p9-small'), 'partially_refunded',
	'a refund thin can cover goes through');
SELECT is(pg_temp.money('thin') || ' ' || pg_temp.money('cust'), '0/0/0 97900/0/0', 'thin pays the 100 back to cust');

------------------------------------------------------------------------------
-- dispute_payment and resolve_dispute
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('p10', 3000, 'cust', 'shopd')$$, 'create p10: 3000 to shopd');
SELECT is(payledger.authorize_payment(pg_temp.pid('p10'), 'auth-p10') || ' ' ||
		  payledger.capture_payment(pg_temp.pid('p10'), 'cap-p10'),
	'authorized captured', 'authorize and capture p10');
SELECT is(pg_temp.money('shopd') || ' ' || pg_temp.money('cust'), '3000/0/0 94900/0/0', 'shopd has 3000, cust 94900');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p10'), 3001, 'dis-p10-big')$$,
	'22023', 'dispute above what is left raises 22023; the detail says 3000 is left',
	NULL, ARRAY['left', '\m3000\M']);
SELECT is(payledger.dispute_payment(pg_temp.pid('p10'), 1000, 'dis-p10', 'fraudulent'), 'disputed',
	'dispute 1000 of p10 returns disputed');
SELECT is(pg_temp.money('shopd'), '3000/1000/0', 'the dispute holds 1000 of shopd''s funds');
SELECT is((SELECT available FROM payledger.get_balance(pg_temp.acct('shopd'))), 2000::bigint, 'shopd has 2000 available');
SELECT is(pg_temp.bal('cust'), 94900::bigint, 'the dispute moves nothing to the customer yet');
SELECT is(pg_temp.pamounts('p10'), 'disputed 3000/0/1000 v4', 'p10 is disputed for 1000');
SELECT is(pg_temp.last_event('p10'), 'PAYMENT_DISPUTED captured->disputed true 1000', 'the dispute writes PAYMENT_DISPUTED');
SELECT is(payledger.dispute_payment(pg_temp.pid('p10'), 1000, 'dis-p10', 'fraudulent'), 'disputed', 'dispute replay returns disputed');
SELECT is(pg_temp.money('shopd') || ' ' || pg_temp.nevents('p10'), '3000/1000/0 4', 'dispute replay holds nothing more, no audit row');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p10'), 100, 'dis-p10-again')$$,
	'PY001', 'dispute of a disputed payment raises PY001', 'disputed');
SELECT pg_temp.raises($$SELECT payledger.resolve_dispute(pg_temp.pid('p10'), NULL, 'res-null')$$,
	'22004', 'resolve_dispute: NULL won raises 22004', 'won');
SELECT pg_temp.raises($$SELECT payledger.resolve_dispute(pg_temp.pid('p10'), true, NULL)$$,
	'PY008', 'resolve_dispute: no idempotency key raises PY008');
SELECT pg_temp.raises($$SELECT payledger.resolve_dispute(pg_temp.acct('ghost'), true, 'res-ghost')$$,
	'PY005', 'resolve_dispute: an unknown payment raises PY005');
SELECT is(payledger.resolve_dispute(pg_temp.pid('p10'), true, 'won-p10'), 'captured',
	'a won dispute returns the payment to captured, its state before the dispute');
SELECT is(pg_temp.money('shopd') || ' ' || pg_temp.money('cust'), '3000/0/0 94900/0/0', 'the won dispute releases the held 1000');
SELECT is(pg_temp.last_change('p10'), 'DISPUTE_WON disputed->captured', 'the won dispute writes DISPUTE_WON');
SELECT pg_temp.raises($$SELECT payledger.resolve_dispute(pg_temp.pid('p10'), true, 'won-p10-again')$$,
	'PY001', 'resolve_dispute of a payment not disputed raises PY001', 'captured');
SELECT is(payledger.refund_payment(pg_temp.pid('p10'), 500, 'ref-p10'), 'partially_refunded', 'refund 500 of p10');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p10'), 2501, 'dis-p10-2-big')$$,
	'22023', 'after the refund, disputing 2501 raises 22023; the detail says 2500 is left',
	NULL, ARRAY['left', '\m2500\M']);
SELECT is(payledger.dispute_payment(pg_temp.pid('p10'), 2500, 'dis-p10-2'), 'disputed', 'dispute the 2500 left');
SELECT is(pg_temp.money('shopd'), '2500/2500/0', 'the second dispute holds shopd''s 2500');
SELECT is(payledger.resolve_dispute(pg_temp.pid('p10'), true, 'won-p10-2'), 'partially_refunded',
	'a won dispute returns the payment to partially_refunded, its state before the dispute');
SELECT is(payledger.dispute_payment(pg_temp.pid('p10'), 2000, 'dis-p10-3'), 'disputed', 'dispute 2000 a third time');
SELECT is(payledger.resolve_dispute(pg_temp.pid('p10'), false, 'lost-p10'), 'charged_back', 'a lost dispute returns charged_back');
SELECT is(pg_temp.money('shopd') || ' ' || pg_temp.money('cust'), '500/0/0 97400/0/0',
	'the lost dispute moves the held 2000 from shopd to the customer');
SELECT is(pg_temp.last_event('p10'), 'PAYMENT_CHARGED_BACK disputed->charged_back true 2000', 'the lost dispute writes PAYMENT_CHARGED_BACK');
SELECT is(payledger.resolve_dispute(pg_temp.pid('p10'), false, 'lost-p10'), 'charged_back', 'resolve replay returns charged_back');
SELECT is(pg_temp.money('shopd') || ' ' || pg_temp.money('cust'), '500/0/0 97400/0/0', 'resolve replay moves nothing');
SELECT pg_temp.raises($$SELECT payledger.refund_payment(pg_temp.pid('p10'), 1, 'ref-p10-cb')$$,
	'PY001', 'refund of a charged_back payment raises PY001', 'charged_back');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p10'), 1, 'dis-p10-cb')$$,
	'PY001', 'dispute of a charged_back payment raises PY001', 'charged_back');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(NULL, 1, 'dis-null')$$,
	'22004', 'dispute_payment: NULL payment_id raises 22004', 'payment_id');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p2'), NULL, 'dis-null-amount')$$,
	'22004', 'dispute_payment: NULL amount raises 22004', 'amount');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p2'), -5, 'dis-neg')$$,
	'22023', 'dispute_payment: a negative amount raises 22023', 'amount');
SELECT pg_temp.raises($$SELECT payledger.dispute_payment(pg_temp.pid('p2'), 1, NULL)$$,
	'PY008', 'dispute_payment: no idempotency key raises PY008');
SELECT results_eq(
	$$SELECT event_type, previous_state, new_state FROM payledger.payment_audit_log
	   WHERE payment_id = pg_temp.pid('p10') ORDER BY id$$,
	$$VALUES ('PAYMENT_CREATED', NULL, 'pending'), ('PAYMENT_AUTHORIZED', 'pending', 'authorized'),
	         ('PAYMENT_CAPTURED', 'authorized', 'captured'), ('PAYMENT_DISPUTED', 'captured', 'disputed'),
	         ('DISPUTE_WON', 'disputed', 'captured'), ('PAYMENT_REFUNDED', 'captured', 'partially_refunded'),
	         ('PAYMENT_DISPUTED', 'partially_refunded', 'disputed'), ('DISPUTE_WON', 'disputed', 'partially_refunded'),
	         ('PAYMENT_DISPUTED', 'partially_refunded', 'disputed'), ('PAYMENT_CHARGED_BACK', 'disputed', 'charged_back')$$,
	'p10''s audit trail: one row per state change, in order');

------------------------------------------------------------------------------
-- idempotency keys of payment functions are scoped per merchant
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.pay('k1', 100), pg_temp.pay('k2', 100, 'cust', 'shop2', 'm2'),
						 pg_temp.pay('k3', 100)$$,
	'create k1 and k3 (merchant m1) and k2 (merchant m2)');
SELECT is(payledger.authorize_payment(pg_temp.pid('k1'), 'shared-auth'), 'authorized', 'm1 authorizes k1 with key shared-auth');
SELECT is(payledger.authorize_payment(pg_temp.pid('k2'), 'shared-auth'), 'authorized',
	'm2 authorizes k2 with the same key: independent, not a replay');
SELECT is(pg_temp.pstate('k2') || ' ' || pg_temp.money('cust'), 'authorized 97400/200/0',
	'both authorizations reserved their money');
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('k3'), 'shared-auth')$$,
	'PY002', 'm1 reusing shared-auth for another of its payments raises PY002');
SELECT is(payledger.void_payment(pg_temp.pid('k1'), 'shared-void') || ' ' ||
		  payledger.void_payment(pg_temp.pid('k2'), 'shared-void'),
	'voided voided', 'both merchants void with the same key');
SELECT is(pg_temp.money('cust'), '97400/0/0', 'both voids released their reservation');

------------------------------------------------------------------------------
-- limits (section 10): a debit above a limit is declined LIMIT_EXCEEDED
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT payledger.set_limits(pg_temp.acct('lim'), 1000, 1500)$$,
	'set_limits(lim, max_per_transfer 1000, max_daily_debit 1500)');
SELECT lives_ok($$SELECT pg_temp.pay('l1', 1001, 'lim'), pg_temp.pay('l2', 1000, 'lim'),
						 pg_temp.pay('l3', 600, 'lim'), pg_temp.pay('l4', 500, 'lim'),
						 pg_temp.pay('l5', 2000, 'lim')$$,
	'create l1..l5 from lim');
SELECT is(payledger.authorize_payment(pg_temp.pid('l1'), 'auth-l1'), 'failed', 'authorizing 1001 above the per-transfer limit fails');
SELECT is(pg_temp.last_reason('l1'), 'LIMIT_EXCEEDED', 'its reason is LIMIT_EXCEEDED');
SELECT is(payledger.authorize_payment(pg_temp.pid('l2'), 'auth-l2'), 'authorized', 'authorizing 1000, at the limit, succeeds');
SELECT is(payledger.authorize_payment(pg_temp.pid('l3'), 'auth-l3'), 'failed',
	'authorizing 600 more fails: 1600 today would exceed the daily 1500 (pending debits count)');
SELECT is(pg_temp.last_reason('l3'), 'LIMIT_EXCEEDED', 'its reason is LIMIT_EXCEEDED');
SELECT is(payledger.authorize_payment(pg_temp.pid('l4'), 'auth-l4'), 'authorized', 'authorizing 500, exactly the daily 1500, succeeds');
SELECT is(pg_temp.money('lim'), '10000/1500/0', 'lim has 1500 reserved');
SELECT is(pg_temp.xfer('lim-out', 'lim', 'shop', 1), 'rejected', 'a plain transfer of 1 from lim is rejected now');
SELECT is((SELECT reason_code FROM pg_temp.res WHERE label = 'lim-out'), 'LIMIT_EXCEEDED', 'its reason is LIMIT_EXCEEDED');
SELECT is(pg_temp.xfer('lim-in', 'net', 'lim', 5000), 'posted', 'credits to lim are not limited');
SELECT lives_ok($$SELECT payledger.set_limits(pg_temp.acct('lim'), NULL, NULL)$$, 'set_limits(lim, NULL, NULL) lifts the limits');
SELECT is(payledger.authorize_payment(pg_temp.pid('l5'), 'auth-l5'), 'authorized', 'authorizing 2000 succeeds without limits');
SELECT is(pg_temp.money('lim'), '15000/3500/0', 'lim: 15000, 3500 reserved');
-- a batch checks each item on the day's debits as its earlier items leave
-- them (it reads them once and counts its own): 3500 pending, 1500 left
SELECT lives_ok($$SELECT payledger.set_limits(pg_temp.acct('lim'), 1000, 5000)$$,
	'set_limits(lim, 1000, 5000): 1500 left today');
SELECT is((SELECT string_agg(r.status || coalesce(':' || r.reason_code, ''), ' ' ORDER BY n)
			 FROM payledger.transfer_many(ARRAY[pg_temp.acct('lim'), pg_temp.acct('lim'), pg_temp.acct('lim'), pg_temp.acct('lim')],
										  ARRAY[pg_temp.acct('shop'), pg_temp.acct('shop'), pg_temp.acct('shop'), pg_temp.acct('shop')],
										  ARRAY[1000, 400, 200, 100]::bigint[], 'USD',
										  ARRAY['blim-1', 'blim-2', 'blim-3', 'blim-4']) WITH ORDINALITY AS r(transfer_id, status, reason_code, replayed, n)),
	'posted posted rejected:LIMIT_EXCEEDED posted',
	'transfer_many: 1000 and 400 post, 200 more would exceed the day''s 5000, 100 reaches it exactly');
SELECT is((SELECT status || ':' || reason_code
			 FROM payledger.transfer_legs(jsonb_build_array(
					jsonb_build_object('from', pg_temp.acct('net'), 'to', pg_temp.acct('lim'), 'amount', 300),
					jsonb_build_object('from', pg_temp.acct('lim'), 'to', pg_temp.acct('shop'), 'amount', 1)),
					'USD', 'blim-legs')),
	'rejected:LIMIT_EXCEEDED', 'transfer_legs: a leg of 1 from lim is declined once the day''s 5000 are reached');
SELECT is(pg_temp.money('lim'), '13500/3500/0', 'lim: the batch posted 1500 of its 1700');
SELECT pg_temp.raises($$SELECT payledger.set_limits(NULL, 1, 1)$$,
	'22004', 'set_limits: NULL account_id raises 22004', 'account_id');
SELECT pg_temp.raises($$SELECT payledger.set_limits(pg_temp.acct('ghost'), 1, 1)$$,
	'PY005', 'set_limits: an unknown account raises PY005');
SELECT pg_temp.raises($$SELECT payledger.set_limits(pg_temp.acct('lim'), 0)$$,
	'22023', 'set_limits: a per-transfer limit of 0 raises 22023');
SELECT pg_temp.raises($$SELECT payledger.set_limits(pg_temp.acct('lim'), NULL, -1)$$,
	'22023', 'set_limits: a negative daily limit raises 22023');

------------------------------------------------------------------------------
-- the risk hook (section 10)
------------------------------------------------------------------------------

-- the score comes from the payment row the hook is given; 'boom' makes it fail
CREATE FUNCTION public.pgtap_risk_score(p payledger.payments) RETURNS integer LANGUAGE plpgsql
	AS $$ BEGIN
		IF p.metadata ? 'boom' THEN RAISE EXCEPTION 'risk engine unavailable'; END IF;
		RETURN (p.metadata->>'score')::integer;
	END $$;
SET LOCAL payledger.risk_function = 'public.pgtap_risk_score';
SELECT lives_ok($$SELECT pg_temp.pay('r80', 100, 'cust', 'shop', 'm1', '{"score": 80}'),
						 pg_temp.pay('r79', 100, 'cust', 'shop', 'm1', '{"score": 79}'),
						 pg_temp.pay('rboom', 100, 'cust', 'shop', 'm1', '{"boom": true}'),
						 pg_temp.pay('r60', 100, 'cust', 'shop', 'm1', '{"score": 60}'),
						 pg_temp.pay('r49', 100, 'cust', 'shop', 'm1', '{"score": 49}'),
						 pg_temp.pay('r100', 100, 'cust', 'shop', 'm1', '{"score": 100}')$$,
	'create the risk payments, each carrying its score');
SELECT is(payledger.authorize_payment(pg_temp.pid('r80'), 'auth-r80'), 'failed',
	'a score of 80, the default threshold, fails the payment');
SELECT is(pg_temp.last_event('r80') || ' ' || pg_temp.last_reason('r80'),
	'PAYMENT_FAILED pending->failed false 100 FRAUD_SUSPECTED', 'it is audited as PAYMENT_FAILED with FRAUD_SUSPECTED');
SELECT is(pg_temp.money('cust'), '97400/0/0', 'the fraud decline reserved nothing');
SELECT is(payledger.authorize_payment(pg_temp.pid('r79'), 'auth-r79'), 'authorized', 'a score of 79 authorizes');
SELECT is(pg_temp.money('cust'), '97400/100/0', 'the authorized r79 reserves 100');
SET LOCAL client_min_messages = error;	-- the failing hook's WARNING is not test output
SELECT is(payledger.authorize_payment(pg_temp.pid('rboom'), 'auth-rboom'), 'failed',
	'an error inside the hook fails the payment (fails closed)');
SET LOCAL client_min_messages = notice;
SELECT is(pg_temp.last_reason('rboom'), 'FRAUD_SUSPECTED', 'the hook''s error is declined as FRAUD_SUSPECTED');
SELECT is(pg_temp.money('cust'), '97400/100/0', 'the failed hook reserved nothing');
SET LOCAL payledger.risk_threshold = 50;
SELECT is(payledger.authorize_payment(pg_temp.pid('r60'), 'auth-r60'), 'failed', 'with payledger.risk_threshold = 50 a score of 60 fails');
SELECT is(payledger.authorize_payment(pg_temp.pid('r49'), 'auth-r49'), 'authorized', 'with threshold 50 a score of 49 authorizes');
SET LOCAL payledger.risk_threshold = 80;
SET LOCAL payledger.risk_function = '';
SELECT is(payledger.authorize_payment(pg_temp.pid('r100'), 'auth-r100'), 'authorized', 'without a risk function even score 100 authorizes');
SELECT is(pg_temp.money('cust'), '97400/300/0', 'r79, r49 and r100 reserve 300');

------------------------------------------------------------------------------
-- the ledger agrees with itself after all of it
------------------------------------------------------------------------------

SELECT is((SELECT sum(pg_temp.bal(name)) FROM pg_temp.fx WHERE name NOT IN ('eur', 'ghost')), 0::numeric,
	'the balances of this file''s USD accounts sum to zero');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() reports every check ok');

SELECT * FROM finish();
ROLLBACK;
