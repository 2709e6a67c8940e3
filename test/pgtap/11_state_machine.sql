-- 11_state_machine.sql: only legal state changes, by function or by hand
-- (doc/reference.md sections 1 and 6)
--
-- The state machine "payment" also guards a hand-written UPDATE of
-- payledger.payments: every pair of states is tried on real payments
-- (brought to each state through the payment functions), legal changes
-- succeed, bump version and are audited as direct updates, everything else
-- raises PY001; the money columns cannot be changed by hand (PY003).
-- define_state_machine() and enforce_state_machine() guard a user table the
-- same way, and a redefinition takes effect at once in the same session.

BEGIN;
\ir helpers.psql

SELECT plan(50);

------------------------------------------------------------------------------
-- fixtures of this file
------------------------------------------------------------------------------

CREATE TEMP TABLE pays (
	label text PRIMARY KEY,
	id uuid NOT NULL
);

CREATE FUNCTION pg_temp.pid(p_label text) RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT id FROM pg_temp.pays WHERE label = p_label $$;

CREATE FUNCTION pg_temp.pstate(p_label text) RETURNS text LANGUAGE sql
	AS $$ SELECT state::text FROM payledger.payments WHERE id = pg_temp.pid(p_label) $$;

CREATE FUNCTION pg_temp.pversion(p_label text) RETURNS bigint LANGUAGE sql
	AS $$ SELECT version FROM payledger.payments WHERE id = pg_temp.pid(p_label) $$;

-- a payment of 1000 from cust to shop, for a merchant of its own, brought to
-- p_state through the payment functions only
CREATE FUNCTION pg_temp.payment_in(p_state text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	m		uuid := payledger.uuid_v7();
	p		uuid;
	got		text;
BEGIN
	p := payledger.create_payment(m, md5('customer')::uuid, 1000, 'USD', pg_temp.acct('cust'),
								  pg_temp.acct('shop'), 'create');
	IF p_state = 'pending' THEN
		RETURN p;
	END IF;
	IF p_state = 'failed' THEN
		PERFORM payledger.fail_payment(p, 'TEST', 'fail');
		RETURN p;
	END IF;
	IF p_state = 'expired' THEN
		PERFORM payledger.authorize_payment(p, 'auth', '1 millisecond');
		PERFORM pg_sleep(0.003);
		PERFORM payledger.expire_authorizations();
		RETURN p;
	END IF;
	PERFORM payledger.authorize_payment(p, 'auth');
	IF p_state = 'voided' THEN
		PERFORM payledger.void_payment(p, 'void');
	ELSIF p_state <> 'authorized' THEN
		PERFORM payledger.capture_payment(p, 'capture');
		IF p_state = 'partially_refunded' THEN
			PERFORM payledger.refund_payment(p, 100, 'refund');
		ELSIF p_state = 'refunded' THEN
			PERFORM payledger.refund_payment(p, 1000, 'refund');
		ELSIF p_state = 'settled' THEN
			PERFORM payledger.settle_merchant(m, clock_timestamp(), pg_temp.acct('payout'), 'settle');
		ELSIF p_state IN ('disputed', 'charged_back') THEN
			PERFORM payledger.dispute_payment(p, 300, 'dispute');
			IF p_state = 'charged_back' THEN
				PERFORM payledger.resolve_dispute(p, false, 'resolve');
			END IF;
		END IF;
	END IF;
	SELECT state::text INTO got FROM payledger.payments WHERE id = p;
	IF got IS DISTINCT FROM p_state THEN
		RAISE EXCEPTION 'could not bring a payment to %: it is %', p_state, got;
	END IF;
	RETURN p;
END $$;

-- UPDATE payledger.payments SET state = p_to on a payment in p_from:
-- 'ok' when it succeeds with version + 1 and a direct_update audit row
-- (anything less is reported), else the SQLSTATE
CREATE FUNCTION pg_temp.try_transition(p_from text, p_to text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	p		uuid := pg_temp.payment_in(p_from);
	v0		bigint;
	v1		bigint;
	audited	bigint;
BEGIN
	SELECT version INTO v0 FROM payledger.payments WHERE id = p;
	BEGIN
		UPDATE payledger.payments SET state = p_to::payledger.payment_state WHERE id = p;
	EXCEPTION WHEN OTHERS THEN
		RETURN SQLSTATE;
	END;
	SELECT version INTO v1 FROM payledger.payments WHERE id = p;
	SELECT count(*) INTO audited FROM payledger.payment_audit_log
	 WHERE payment_id = p AND previous_state = p_from AND new_state = p_to
	   AND metadata @> '{"direct_update": true}';
	IF v1 <> v0 + 1 THEN
		RETURN 'ok, but version ' || v0 || ' -> ' || v1;
	END IF;
	IF audited <> 1 THEN
		RETURN 'ok, but ' || audited || ' direct_update audit rows';
	END IF;
	RETURN 'ok';
END $$;

-- every ordered pair of two different states, tried and rolled back:
-- from -> the states it could move to, and what the others raised
CREATE FUNCTION pg_temp.transition_table()
	RETURNS TABLE(from_state text, allowed text, refused text) LANGUAGE plpgsql AS $$
DECLARE
	result	jsonb;
BEGIN
	BEGIN
		SELECT jsonb_agg(jsonb_build_array(f, t, r)) INTO result
		  FROM (SELECT f::text AS f, t::text AS t, pg_temp.try_transition(f::text, t::text) AS r
				  FROM unnest(enum_range(NULL::payledger.payment_state)) f,
					   unnest(enum_range(NULL::payledger.payment_state)) t
				 WHERE f <> t) s;
		RAISE EXCEPTION USING ERRCODE = 'ZZ999', MESSAGE = 'roll the payments back';
	EXCEPTION WHEN SQLSTATE 'ZZ999' THEN
		NULL;
	END;
	RETURN QUERY
		SELECT e->>0,
			   coalesce(string_agg(e->>1, ', ' ORDER BY (e->>1)::payledger.payment_state)
						FILTER (WHERE e->>2 = 'ok'), ''),
			   coalesce(string_agg(DISTINCT e->>2, ', ') FILTER (WHERE e->>2 <> 'ok'), '')
		  FROM jsonb_array_elements(result) e
		 GROUP BY e->>0
		 ORDER BY (e->>0)::payledger.payment_state;
END $$;


DO $$
BEGIN
	PERFORM pg_temp.open('net', 'USD', NULL, 'system');
	PERFORM pg_temp.open('cust');
	PERFORM pg_temp.open('shop');
	PERFORM pg_temp.open('payout');
END $$;

SELECT is(pg_temp.xfer('fund-cust', 'net', 'cust', 1000000), 'posted', 'setup: fund cust');

------------------------------------------------------------------------------
-- the payment state machine, by hand-written UPDATE
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT from_state, allowed, refused FROM pg_temp.transition_table()$$,
	$$VALUES ('pending', 'authorized, failed', 'PY001'),
	         ('authorized', 'captured, failed, voided, expired', 'PY001'),
	         ('captured', 'partially_refunded, refunded, settled, disputed', 'PY001'),
	         ('partially_refunded', 'refunded, settled, disputed', 'PY001'),
	         ('refunded', '', 'PY001'),
	         ('settled', 'partially_refunded, refunded, disputed', 'PY001'),
	         ('failed', '', 'PY001'),
	         ('voided', '', 'PY001'),
	         ('expired', '', 'PY001'),
	         ('disputed', 'captured, partially_refunded, settled, charged_back', 'PY001'),
	         ('charged_back', '', 'PY001')$$,
	'UPDATE payments SET state: exactly the transitions of doc/reference.md section 6 succeed (audited, version + 1), all others raise PY001');

-- one legal change by hand, kept: pending -> failed moves no money
DO $$
BEGIN
	INSERT INTO pg_temp.pays VALUES ('h1', pg_temp.payment_in('pending'));
	INSERT INTO pg_temp.pays VALUES ('h2', pg_temp.payment_in('pending'));
	INSERT INTO pg_temp.pays VALUES ('c1', pg_temp.payment_in('captured'));
END $$;
SELECT lives_ok($$UPDATE payledger.payments SET state = 'failed' WHERE id = pg_temp.pid('h1')$$,
	'UPDATE payments SET state = failed on a pending payment succeeds');
SELECT is(pg_temp.pstate('h1') || ' v' || pg_temp.pversion('h1'), 'failed v2', 'the payment is failed, version 2');
SELECT results_eq(
	$$SELECT event_type, previous_state, new_state, success, metadata FROM payledger.payment_audit_log
	   WHERE payment_id = pg_temp.pid('h1') ORDER BY id$$,
	$$VALUES ('PAYMENT_CREATED', NULL, 'pending', true, '{}'::jsonb),
	         ('PAYMENT_FAILED', 'pending', 'failed', false, '{"direct_update": true}'::jsonb)$$,
	'the change by hand is audited as PAYMENT_FAILED (success = false) with metadata {"direct_update": true}');
SELECT pg_temp.raises($$UPDATE payledger.payments SET state = 'pending' WHERE id = pg_temp.pid('h1')$$,
	'PY001', 'UPDATE of a failed payment back to pending raises PY001 naming both states', 'failed.*pending');
SELECT pg_temp.raises($$UPDATE payledger.payments SET state = 'captured' WHERE id = pg_temp.pid('h2')$$,
	'PY001', 'UPDATE of a pending payment to captured raises PY001', 'pending.*captured');
SELECT pg_temp.raises($$UPDATE payledger.payments SET state = 'authorized' WHERE id IN (pg_temp.pid('h1'), pg_temp.pid('h2'))$$,
	'PY001', 'an UPDATE of two payments, one of them illegal, raises PY001');
SELECT is(pg_temp.pstate('h1') || ' ' || pg_temp.pstate('h2') || ' v' || pg_temp.pversion('h2'), 'failed pending v1',
	'the refused UPDATEs changed neither payment');

-- the money columns cannot be changed by hand
SELECT pg_temp.raises($$UPDATE payledger.payments SET captured_amount = 999 WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'UPDATE of captured_amount raises PY003');
SELECT pg_temp.raises($$UPDATE payledger.payments SET refunded_amount = 1 WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'UPDATE of refunded_amount raises PY003');
SELECT pg_temp.raises($$UPDATE payledger.payments SET amount = 1 WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'UPDATE of amount raises PY003');
SELECT pg_temp.raises($$UPDATE payledger.payments SET currency = 'EUR' WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'UPDATE of currency raises PY003');
SELECT pg_temp.raises($$UPDATE payledger.payments SET merchant_account = pg_temp.acct('cust') WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'UPDATE of merchant_account raises PY003');
SELECT pg_temp.raises($$UPDATE payledger.payments SET state = 'refunded', refunded_amount = 1000 WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'a legal state change together with a money column raises PY003');
SELECT pg_temp.raises($$DELETE FROM payledger.payments WHERE id = pg_temp.pid('c1')$$,
	'PY003', 'DELETE of a payment raises PY003');
SELECT pg_temp.raises($$TRUNCATE payledger.payments CASCADE$$,
	'PY003', 'TRUNCATE of payments raises PY003');
SELECT results_eq(
	$$SELECT state::text, amount, captured_amount, refunded_amount, version FROM payledger.payments WHERE id = pg_temp.pid('c1')$$,
	$$VALUES ('captured', 1000::bigint, 1000::bigint, 0::bigint, 3::bigint)$$,
	'the captured payment is as the functions left it');

-- the functions go through the same machine
SELECT pg_temp.raises($$SELECT payledger.authorize_payment(pg_temp.pid('h1'), 'auth-h1')$$,
	'PY001', 'authorize_payment of the payment failed by hand raises PY001');

------------------------------------------------------------------------------
-- a user table guarded by enforce_state_machine
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT payledger.define_state_machine('pgtap_order', '{
		"new": ["paid", "cancelled"], "paid": ["shipped", "refunded"],
		"shipped": [], "cancelled": [], "refunded": []}')$$,
	'define_state_machine pgtap_order');
CREATE TEMP TABLE orders (id integer PRIMARY KEY, status text NOT NULL, note text);
CREATE TRIGGER orders_state BEFORE UPDATE ON orders
	FOR EACH ROW EXECUTE FUNCTION payledger.enforce_state_machine('pgtap_order', 'status');
INSERT INTO orders VALUES (1, 'new'), (2, 'new'), (3, 'new'), (4, 'new');

CREATE FUNCTION pg_temp.orders() RETURNS text LANGUAGE sql
	AS $$ SELECT string_agg(id || ' ' || status, ', ' ORDER BY id) FROM orders $$;

SELECT lives_ok($$UPDATE orders SET status = 'paid' WHERE id = 1$$, 'order 1: new -> paid is allowed');
SELECT lives_ok($$UPDATE orders SET status = 'shipped' WHERE id = 1$$, 'order 1: paid -> shipped is allowed');
SELECT pg_temp.raises($$UPDATE orders SET status = 'new' WHERE id = 1$$,
	'PY001', 'order 1: shipped -> new raises PY001 naming both states', 'shipped.*new');
SELECT pg_temp.raises($$UPDATE orders SET status = 'shipped' WHERE id = 2$$,
	'PY001', 'order 2: new -> shipped (skipping paid) raises PY001', 'new.*shipped');
SELECT pg_temp.raises($$UPDATE orders SET status = 'lost' WHERE id = 2$$,
	'PY001', 'order 2: new -> a state the machine does not know raises PY001');
SELECT lives_ok($$UPDATE orders SET note = 'gift wrap' WHERE id = 1$$,
	'an UPDATE that leaves the state as it is is not a transition');
SELECT lives_ok($$UPDATE orders SET status = 'paid' WHERE id IN (2, 3)$$, 'orders 2 and 3: new -> paid in one statement');
SELECT pg_temp.raises($$UPDATE orders SET status = 'cancelled' WHERE id IN (3, 4)$$,
	'PY001', 'orders 3 (paid -> cancelled, illegal) and 4 (new -> cancelled) in one statement raise PY001');
SELECT is(pg_temp.orders(), '1 shipped, 2 paid, 3 paid, 4 new', 'the refused statement changed no row');

-- a redefinition in a rolled-back subtransaction leaves the old machine in force
SELECT pg_temp.raises($q$DO $do$ BEGIN
		PERFORM payledger.define_state_machine('pgtap_order', '{"shipped": ["new"]}');
		RAISE EXCEPTION USING ERRCODE = 'ZZ998', MESSAGE = 'undo the redefinition';
	END $do$$q$,
	'ZZ998', 'setup: a redefinition that is rolled back');
SELECT pg_temp.raises($$UPDATE orders SET status = 'new' WHERE id = 1$$,
	'PY001', 'after the rolled-back redefinition shipped -> new is still refused');

-- the redefinition takes effect at once, in the same session
SELECT lives_ok($$SELECT payledger.define_state_machine('pgtap_order', '{
		"new": ["cancelled"], "paid": ["shipped", "refunded", "cancelled"],
		"shipped": [], "cancelled": [], "refunded": []}')$$,
	'redefine pgtap_order: paid may be cancelled, new may no longer be paid');
SELECT lives_ok($$UPDATE orders SET status = 'cancelled' WHERE id = 3$$,
	'order 3: paid -> cancelled, refused before, is allowed now');
SELECT pg_temp.raises($$UPDATE orders SET status = 'paid' WHERE id = 4$$,
	'PY001', 'order 4: new -> paid, allowed before, raises PY001 now');
SELECT is(pg_temp.orders(), '1 shipped, 2 paid, 3 cancelled, 4 new', 'the orders after the redefinition');

-- two tables, two machines, each with its own column
SELECT lives_ok($$SELECT payledger.define_state_machine('pgtap_ticket', '{"open": ["closed"], "closed": ["open"]}')$$,
	'define_state_machine pgtap_ticket');
CREATE TEMP TABLE tickets (id integer PRIMARY KEY, phase text);
CREATE TRIGGER tickets_phase BEFORE UPDATE ON tickets
	FOR EACH ROW EXECUTE FUNCTION payledger.enforce_state_machine('pgtap_ticket', 'phase');
INSERT INTO tickets VALUES (1, 'open');
SELECT lives_ok($$UPDATE tickets SET phase = 'closed' WHERE id = 1$$, 'ticket: open -> closed');
SELECT lives_ok($$UPDATE tickets SET phase = 'open' WHERE id = 1$$, 'ticket: closed -> open, allowed by its own machine');
SELECT pg_temp.raises($$UPDATE tickets SET phase = 'paid' WHERE id = 1$$,
	'PY001', 'ticket: open -> paid (a state of the other machine) raises PY001');

-- a trigger naming a machine that does not exist refuses every change
CREATE TEMP TABLE widgets (id integer PRIMARY KEY, status text);
CREATE TRIGGER widgets_state BEFORE UPDATE ON widgets
	FOR EACH ROW EXECUTE FUNCTION payledger.enforce_state_machine('pgtap_no_such_machine', 'status');
INSERT INTO widgets VALUES (1, 'a');
SELECT pg_temp.raises($$UPDATE widgets SET status = 'b'$$, NULL,
	'an UPDATE under an undefined machine raises, naming the machine', 'pgtap_no_such_machine');

-- define_state_machine's arguments
SELECT pg_temp.raises($$SELECT payledger.define_state_machine(NULL, '{}')$$,
	'22004', 'define_state_machine: NULL name raises 22004', 'name');
SELECT pg_temp.raises($$SELECT payledger.define_state_machine('pgtap_x', NULL)$$,
	'22004', 'define_state_machine: NULL transitions raises 22004', 'transitions');
SELECT pg_temp.raises($$SELECT payledger.define_state_machine('pgtap_x', '["new", "paid"]')$$,
	'22023', 'define_state_machine: transitions that are not an object raise 22023');
SELECT pg_temp.raises($$SELECT payledger.define_state_machine('pgtap_x', '{"new": "paid"}')$$,
	'22023', 'define_state_machine: a state whose targets are not an array raises 22023');

------------------------------------------------------------------------------
-- the machine "payment" is the extension's: nobody redefines or edits it
------------------------------------------------------------------------------

CREATE TEMP TABLE payment_machine AS
	SELECT transitions FROM payledger.state_machines WHERE name = 'payment';
SELECT pg_temp.raises($$SELECT payledger.define_state_machine('payment', '{"pending": ["settled"]}')$$,
	'PY007', 'define_state_machine: the machine "payment" cannot be redefined (PY007)');
SELECT pg_temp.raises($$UPDATE payledger.state_machines SET transitions = '{"pending": ["settled"]}' WHERE name = 'payment'$$,
	'PY003', 'nor edited by hand, by a superuser either (PY003)');
SELECT pg_temp.raises($$DELETE FROM payledger.state_machines WHERE name = 'payment'$$,
	'PY003', 'nor deleted (PY003)');
SELECT results_eq($$SELECT transitions FROM payledger.state_machines WHERE name = 'payment'$$,
	$$SELECT transitions FROM payment_machine$$, 'so the payment machine is still the one payledger ships');
SELECT lives_ok($$SELECT payledger.define_state_machine('pgtap_order', '{
		"new": ["paid", "cancelled"], "paid": ["shipped", "refunded"],
		"shipped": [], "cancelled": [], "refunded": []}')$$,
	'a machine of the user''s is still redefined through define_state_machine()');

------------------------------------------------------------------------------
-- the ledger agrees with itself
------------------------------------------------------------------------------

SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() reports every check ok');

SELECT * FROM finish();
ROLLBACK;
