-- 17_merchant_scope.sql: two merchants, two scoped roles, every call tried
-- across the boundary (doc/reference.md section 13)
--
-- regress_m1 is scoped to merchant M1, regress_m2 to M2.  A scoped role
-- debits only accounts its merchants own (42501, nothing written), creates
-- payments only for them (42501), and another merchant's accounts,
-- payments and settlements do not exist for it (PY005).

BEGIN;
\ir helpers.psql

SELECT plan(59);

\set m1 '''00000000-0000-7000-8000-0000000000a1'''
\set m2 '''00000000-0000-7000-8000-0000000000a2'''

CREATE ROLE regress_m1;
CREATE ROLE regress_m2;
CREATE ROLE regress_m1_login;		-- a member of regress_m1
CREATE ROLE regress_m1_ops;			-- an operator scoped to M1
GRANT payledger_app TO regress_m1, regress_m2;
GRANT regress_m1 TO regress_m1_login;
GRANT payledger_operator TO regress_m1_ops;
GRANT SELECT, INSERT ON fx, res TO regress_m1, regress_m2, regress_m1_login, regress_m1_ops;

CREATE FUNCTION pg_temp.own(p_name text, p_owner uuid, p_floor bigint DEFAULT 0) RETURNS uuid LANGUAGE sql AS $$
	INSERT INTO pg_temp.fx VALUES (p_name, payledger.create_account('USD', 'generic', p_floor, '{}', NULL, p_owner))
	RETURNING id $$;
SELECT ok(pg_temp.open('sys', 'USD', NULL, 'system') IS NOT NULL, 'setup: a system account without owner');
SELECT ok(pg_temp.own('shop1', :m1) IS NOT NULL, 'setup: M1''s account');
SELECT ok(pg_temp.own('shop1b', :m1) IS NOT NULL, 'setup: another account of M1');
SELECT ok(pg_temp.own('shop2', :m2) IS NOT NULL, 'setup: M2''s account');
SELECT ok(pg_temp.own('cust', '00000000-0000-7000-8000-0000000000c1') IS NOT NULL, 'setup: a customer''s account');
SELECT is(pg_temp.xfer('f1', 'sys', 'shop1', 1000), 'posted', 'setup: fund shop1');
SELECT is(pg_temp.xfer('f2', 'sys', 'shop2', 1000), 'posted', 'setup: fund shop2');
SELECT is(pg_temp.xfer('fc', 'sys', 'cust', 100000), 'posted', 'setup: fund the customer');
SELECT results_eq($$SELECT owner_id FROM payledger.accounts WHERE id = pg_temp.acct('shop2')$$,
	format('VALUES (%L::uuid)', :m2), 'create_account stores owner_id');

-- M2's payment, captured, and a settlement of it
CREATE TEMP TABLE pay (name text PRIMARY KEY, id uuid);
GRANT SELECT, INSERT ON pay TO regress_m1, regress_m2, regress_m1_login, regress_m1_ops;
INSERT INTO pay SELECT 'p2', payledger.create_payment(:m2, gen_random_uuid(), 100, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop2'), 'p2');
INSERT INTO pay SELECT 'p2b', payledger.create_payment(:m2, gen_random_uuid(), 100, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop2'), 'p2b');
SELECT is(payledger.authorize_payment((SELECT id FROM pay WHERE name = 'p2'), 'p2-a')::text, 'authorized', 'setup: M2''s payment authorized');
SELECT is(payledger.authorize_payment((SELECT id FROM pay WHERE name = 'p2b'), 'p2b-a')::text, 'authorized', 'setup: another one');
SELECT is(payledger.capture_payment((SELECT id FROM pay WHERE name = 'p2b'), 'p2b-c')::text, 'captured', 'setup: and captured');
INSERT INTO pay SELECT 's2', payledger.settle_merchant(:m2, 'infinity', pg_temp.acct('sys'), 's2');

SELECT lives_ok(format($$SELECT payledger.scope_role('regress_m1', %L); SELECT payledger.scope_role('regress_m2', %L)$$, :m1, :m2),
	'each role is scoped to its merchant');
SELECT results_eq($$SELECT role::text, merchant_id FROM payledger.role_scopes WHERE role::text LIKE 'regress%' ORDER BY 1$$,
	format('VALUES (%L, %L::uuid), (%L, %L::uuid)', 'regress_m1', :m1, 'regress_m2', :m2),
	'the bindings are recorded');
SELECT results_eq($$SELECT event_type, metadata->>'role', merchant_id, new_state, db_role = current_user, success
					 FROM payledger.payment_audit_log WHERE event_type LIKE 'ROLE%' ORDER BY id$$,
	format($$VALUES ('ROLE_SCOPED', 'regress_m1', %L::uuid, 'scoped', true, true),
					('ROLE_SCOPED', 'regress_m2', %L::uuid, 'scoped', true, true)$$, :m1, :m2),
	'each binding is audited ROLE_SCOPED: the role, the merchant, who bound it');
SELECT is(pg_temp.undone(format($$SELECT payledger.scope_role('regress_m1', %L)$$, :m1),
		$$SELECT count(*)::text FROM payledger.payment_audit_log WHERE event_type LIKE 'ROLE%'$$), '2',
	'binding again changes nothing and writes no audit row');

-- the SQLSTATE of a call on M2's payment p2 ('ok' when it worked)
CREATE FUNCTION pg_temp.state_of(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st		text := 'ok';
BEGIN
	BEGIN
		EXECUTE format(p_sql, (SELECT id FROM pg_temp.pay WHERE name = 'p2'));
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
	END;
	RETURN st;
END $$;
SELECT count(*) AS transfers_before FROM payledger.transfers \gset

------------------------------------------------------------------------------
SET LOCAL ROLE regress_m1;
------------------------------------------------------------------------------
SELECT is(pg_temp.xfer('m1-ok', 'shop1', 'shop2', 10), 'posted', 'M1 pays from its own account, to anyone');
SELECT is(pg_temp.xfer('m1-own', 'shop1', 'shop1b', 10), 'posted', 'and between its own accounts');
SELECT throws_ok(format($$SELECT payledger.transfer(%L, %L, 10, 'USD', 'm1-steal')$$, pg_temp.acct('shop2'), pg_temp.acct('shop1')),
	'42501', 'role "regress_m1" may not debit account ' || pg_temp.acct('shop2'), 'transfer debiting M2''s account: 42501');
SELECT throws_ok(format($$SELECT payledger.transfer(%L, %L, 10, 'USD', 'm1-sys')$$, pg_temp.acct('sys'), pg_temp.acct('shop1')),
	'42501', NULL, 'transfer debiting an account without owner: 42501');
SELECT throws_ok(format($$SELECT payledger.hold(%L, %L, 10, 'USD', '1 day', 'm1-hold')$$, pg_temp.acct('shop2'), pg_temp.acct('shop1')),
	'42501', NULL, 'hold debiting M2''s account: 42501');
SELECT throws_ok(format($$SELECT payledger.transfer_legs(jsonb_build_array(
		jsonb_build_object('from', %L::uuid, 'to', %L::uuid, 'amount', 5),
		jsonb_build_object('from', %L::uuid, 'to', %L::uuid, 'amount', 5)), 'USD', 'm1-legs')$$,
		pg_temp.acct('shop1'), pg_temp.acct('shop2'), pg_temp.acct('shop2'), pg_temp.acct('shop1')),
	'42501', NULL, 'transfer_legs with one leg debiting M2''s account: 42501');
SELECT throws_ok(format($$SELECT * FROM payledger.transfer_many(ARRAY[%L, %L]::uuid[], ARRAY[%L, %L]::uuid[], ARRAY[5, 5]::bigint[], 'USD', ARRAY['m1-b1', 'm1-b2'])$$,
		pg_temp.acct('shop1'), pg_temp.acct('shop2'), pg_temp.acct('shop2'), pg_temp.acct('shop1')),
	'42501', NULL, 'transfer_many with one item debiting M2''s account: 42501');
SELECT throws_ok(format($$SELECT payledger.create_account('USD', 'x', 0, '{}', NULL, %L)$$, :m2),
	'42501', NULL, 'an account for M2: 42501');
SELECT throws_ok($$SELECT payledger.create_account('USD')$$, '42501', NULL, 'an account without owner: 42501');
SELECT lives_ok(format($$SELECT payledger.create_account('USD', 'x', 0, '{}', NULL, %L)$$, :m1), 'an account for M1: fine');
SELECT lives_ok(format($$SELECT payledger.get_balance(%L)$$, pg_temp.acct('shop1')), 'M1 reads its balance');
SELECT throws_ok(format($$SELECT * FROM payledger.get_balance(%L)$$, pg_temp.acct('shop2')),
	'PY005', 'account ' || pg_temp.acct('shop2') || ' does not exist', 'M2''s balance does not exist for M1 (PY005)');
SELECT throws_ok(format($$SELECT payledger.balance_at(%L, now())$$, pg_temp.acct('shop2')), 'PY005', NULL, 'balance_at: PY005');
SELECT throws_ok(format($$SELECT * FROM payledger.account_entries(%L)$$, pg_temp.acct('shop2')), 'PY005', NULL, 'account_entries: PY005');
SELECT throws_ok(format($$SELECT payledger.create_payment(%L, gen_random_uuid(), 100, 'USD', %L, %L, 'm1-p2')$$, :m2, pg_temp.acct('cust'), pg_temp.acct('shop2')),
	'42501', 'role "regress_m1" may not create payments for merchant ' || :m2, 'a payment for M2: 42501');
INSERT INTO pay SELECT 'p1', payledger.create_payment(:m1, gen_random_uuid(), 100, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop1'), 'p1');
SELECT is(payledger.authorize_payment((SELECT id FROM pay WHERE name = 'p1'), 'p1-a')::text, 'authorized',
	'M1 creates and authorizes its own payment (the customer''s account is debited by the payment, not by M1)');
SELECT results_eq($$SELECT c, s FROM (VALUES
		('authorize', pg_temp.state_of($q$SELECT payledger.authorize_payment(%L, 'x-a')$q$)),
		('capture', pg_temp.state_of($q$SELECT payledger.capture_payment(%L, 'x-c')$q$)),
		('void', pg_temp.state_of($q$SELECT payledger.void_payment(%L, 'x-v')$q$)),
		('refund', pg_temp.state_of($q$SELECT payledger.refund_payment(%L, 1, 'x-r')$q$)),
		('fail', pg_temp.state_of($q$SELECT payledger.fail_payment(%L, 'x', 'x-f')$q$)),
		('dispute', pg_temp.state_of($q$SELECT payledger.dispute_payment(%L, 1, 'x-d')$q$)),
		('resolve', pg_temp.state_of($q$SELECT payledger.resolve_dispute(%L, true, 'x-w')$q$))) v(c, s) ORDER BY 1$$,
	$$SELECT c, 'PY005' FROM unnest('{authorize,capture,void,refund,fail,dispute,resolve}'::text[]) c ORDER BY 1$$,
	'every payment function on M2''s payment: PY005, as if it did not exist');
RESET ROLE;
-- a hold between M2's accounts and the customer's
INSERT INTO pay SELECT 'h2', transfer_id FROM payledger.hold(pg_temp.acct('shop2'), pg_temp.acct('cust'), 5, 'USD', '1 day', 'h2');
SET LOCAL ROLE regress_m1;
SELECT throws_ok(format($$SELECT payledger.post_hold(%L, NULL, 'm1-post-h2')$$, (SELECT id FROM pay WHERE name = 'h2')),
	'PY005', 'hold ' || (SELECT id FROM pay WHERE name = 'h2') || ' does not exist', 'post_hold of M2''s hold: PY005');
SELECT throws_ok(format($$SELECT payledger.void_hold(%L, 'm1-void-h2')$$, (SELECT id FROM pay WHERE name = 'h2')),
	'PY005', NULL, 'void_hold of M2''s hold: PY005');
RESET ROLE;

SELECT results_eq($$SELECT balance FROM payledger.accounts a JOIN pg_temp.fx f ON f.id = a.id
				   WHERE f.name IN ('shop1', 'shop1b', 'shop2') ORDER BY f.name$$,
	$$VALUES (980::bigint), (10::bigint), (1010::bigint)$$,
	'nothing but the two allowed transfers moved money');
SELECT is((SELECT count(*) FROM payledger.transfers) - :transfers_before, 2::bigint,
	'the refused calls wrote no transfer row (the hold made as the superuser is in holds)');

------------------------------------------------------------------------------
-- M2 acts on its own payment; a member of regress_m1 is scoped like it
------------------------------------------------------------------------------
SET LOCAL ROLE regress_m2;
SELECT is(payledger.capture_payment((SELECT id FROM pay WHERE name = 'p2'), 'p2-c')::text, 'captured', 'M2 captures its payment');
SELECT throws_ok(format($$SELECT * FROM payledger.get_balance(%L)$$, pg_temp.acct('shop1')), 'PY005', NULL, 'and cannot see M1''s account');
RESET ROLE;
SET LOCAL ROLE regress_m1_login;
SELECT throws_ok(format($$SELECT payledger.transfer(%L, %L, 10, 'USD', 'login-steal')$$, pg_temp.acct('shop2'), pg_temp.acct('shop1')),
	'42501', NULL, 'a login role that is a member of regress_m1 is scoped like it');
RESET ROLE;

-- reading transfers across the boundary: a leg set crediting M1 in one leg
-- touches M1; one between the customer and M2 does not
INSERT INTO pay SELECT 'legs-shared', transfer_id FROM payledger.transfer_legs(jsonb_build_array(
	jsonb_build_object('from', pg_temp.acct('cust'), 'to', pg_temp.acct('shop2'), 'amount', 5),
	jsonb_build_object('from', pg_temp.acct('cust'), 'to', pg_temp.acct('shop1b'), 'amount', 3)), 'USD', 'legs-shared');
INSERT INTO pay SELECT 'legs-m2', transfer_id FROM payledger.transfer_legs(jsonb_build_array(
	jsonb_build_object('from', pg_temp.acct('cust'), 'to', pg_temp.acct('shop2'), 'amount', 5)), 'USD', 'legs-m2');
-- what touches M1's accounts, read from the tables
CREATE TEMP TABLE m1_sees AS
SELECT v.id FROM (SELECT id, from_account, to_account FROM payledger.transfers
				  WHERE NOT (kind = 'hold' AND status = 'posted')
				  UNION ALL SELECT id, from_account, to_account FROM payledger.holds) v
 WHERE EXISTS (SELECT FROM payledger.accounts a WHERE a.owner_id = :m1
				 AND (a.id IN (v.from_account, v.to_account)
					  OR a.id IN (SELECT l.from_account FROM payledger.legs l WHERE l.transfer_id = v.id
								  UNION ALL SELECT l.to_account FROM payledger.legs l WHERE l.transfer_id = v.id)));
GRANT SELECT ON m1_sees TO regress_m1;
SET LOCAL ROLE regress_m1;
SELECT throws_ok(format($$SELECT * FROM payledger.get_transfer(%L)$$, pg_temp.tid('f2')),
	'PY005', 'transfer ' || pg_temp.tid('f2') || ' does not exist', 'get_transfer of M2''s transfer: PY005');
SELECT throws_ok(format($$SELECT * FROM payledger.get_transfer(%L)$$, (SELECT id FROM pay WHERE name = 'h2')),
	'PY005', NULL, 'get_transfer of M2''s hold: PY005');
SELECT throws_ok(format($$SELECT * FROM payledger.get_transfer(%L)$$, (SELECT id FROM pay WHERE name = 'legs-m2')),
	'PY005', NULL, 'get_transfer of a leg set touching none of M1''s accounts: PY005');
SELECT is((SELECT kind || ' ' || amount FROM payledger.get_transfer((SELECT id FROM pay WHERE name = 'legs-shared'))),
	'legs 8', 'a leg set crediting M1 in one leg is M1''s to see');
SELECT is((SELECT status FROM payledger.get_transfer(pg_temp.tid('m1-ok'))), 'posted',
	'and so is its transfer to M2''s account');
SELECT results_eq($$SELECT transfer_id FROM payledger.list_transfers(max_rows => 1000)$$,
	$$SELECT id FROM m1_sees ORDER BY id$$, 'list_transfers lists exactly the transfers touching M1''s accounts');
SELECT ok((SELECT count(*) FROM m1_sees) >= 5, 'and there are some (f1, m1-ok, m1-own, legs-shared, ...)');
SELECT is_empty(format($$SELECT * FROM payledger.list_transfers(%L)$$, pg_temp.acct('shop2')),
	'M2''s account lists nothing to M1, not even M1''s transfer to it');
SELECT is_empty(format($$SELECT * FROM payledger.list_transfers(metadata_contains => '{}', status => 'pending') t
	WHERE t.transfer_id = %L$$, (SELECT id FROM pay WHERE name = 'h2')), 'M2''s pending hold is never listed to M1');
RESET ROLE;

-- an operator scoped to M1 settles and reconciles only M1
SELECT lives_ok(format($$SELECT payledger.scope_role('regress_m1_ops', %L)$$, :m1), 'an operator role scoped to M1');
SET LOCAL ROLE regress_m1_ops;
SELECT throws_ok(format($$SELECT payledger.settle_merchant(%L, 'infinity', %L, 'ops-s2')$$, :m2, pg_temp.acct('sys')),
	'42501', NULL, 'it cannot settle M2 (42501)');
SELECT throws_ok(format($$SELECT * FROM payledger.reconcile_settlement(%L, '[]')$$, (SELECT id FROM pay WHERE name = 's2')),
	'PY005', NULL, 'M2''s settlement does not exist for it (PY005)');
RESET ROLE;

-- bindings change only through the functions, and take effect at once
SELECT throws_ok($$DELETE FROM payledger.role_scopes$$, 'PY003', NULL, 'a hand-written DELETE of role_scopes: PY003');
SELECT throws_ok(format($$INSERT INTO payledger.role_scopes VALUES ('regress_m2', %L, now())$$, :m1), 'PY003', NULL,
	'a hand-written INSERT into role_scopes: PY003');
SELECT throws_ok(format($$SELECT payledger.scope_role(0::regrole, %L)$$, :m1), '22023', 'role with OID 0 does not exist',
	'scope_role of no role: 22023');
SELECT lives_ok(format($$SELECT payledger.unscope_role('regress_m1', %L)$$, :m1), 'unscope_role removes M1''s binding');
SELECT results_eq($$SELECT event_type, metadata->>'role', merchant_id, new_state FROM payledger.payment_audit_log
					 WHERE event_type = 'ROLE_UNSCOPED'$$,
	format($$VALUES ('ROLE_UNSCOPED', 'regress_m1', %L::uuid, 'unscoped')$$, :m1), 'unscope_role is audited ROLE_UNSCOPED');
SET LOCAL ROLE regress_m1;
SELECT is(pg_temp.xfer('m1-free', 'shop2', 'shop1', 10), 'posted', 'regress_m1 without bindings acts platform-wide again');
RESET ROLE;
SELECT is_empty($$SELECT check_name FROM payledger.check_ledger() WHERE NOT ok$$, 'check_ledger() passes');

SELECT * FROM finish();
ROLLBACK;
