-- 18_read_api.sql: get_payment, list_payments, list_accounts: contract
-- columns, keyset pages, filters, max_rows bounds and merchant scope
-- (doc/reference.md section 13)

BEGIN;
\ir helpers.psql

SELECT plan(27);

\set m1 '''00000000-0000-7000-8000-0000000000a1'''
\set m2 '''00000000-0000-7000-8000-0000000000a2'''

CREATE ROLE regress_reader_m1;
GRANT payledger_reader TO regress_reader_m1;
CREATE ROLE regress_reader_all;
GRANT payledger_reader TO regress_reader_all;

CREATE FUNCTION pg_temp.own(p_name text, p_owner uuid, p_kind text DEFAULT 'merchant') RETURNS uuid LANGUAGE sql AS $$
	INSERT INTO pg_temp.fx VALUES (p_name, payledger.create_account('USD', p_kind, 0, '{}', NULL, p_owner))
	RETURNING id $$;
SELECT ok(pg_temp.open('sys', 'USD', NULL, 'system') IS NOT NULL, 'setup: system account');
SELECT ok(pg_temp.own('shop1', :m1) IS NOT NULL AND pg_temp.own('shop1b', :m1, 'payout') IS NOT NULL
	AND pg_temp.own('shop2', :m2) IS NOT NULL AND pg_temp.own('cust', NULL, 'customer') IS NOT NULL,
	'setup: two accounts of M1, one of M2, a customer''s');
SELECT is(pg_temp.xfer('fc', 'sys', 'cust', 100000), 'posted', 'setup: fund the customer');
SELECT is(pg_temp.xfer('f1', 'sys', 'shop1', 500), 'posted', 'setup: fund shop1');

CREATE TEMP TABLE pay (n int PRIMARY KEY, id uuid, merchant uuid);
GRANT SELECT ON pay, fx TO regress_reader_m1, regress_reader_all;
INSERT INTO pay
SELECT i, payledger.create_payment(CASE WHEN i <= 5 THEN :m1 ELSE :m2 END::uuid, gen_random_uuid(), 100 * i, 'USD',
		pg_temp.acct('cust'), CASE WHEN i <= 5 THEN pg_temp.acct('shop1') ELSE pg_temp.acct('shop2') END,
		'pay-' || i, jsonb_build_object('order', 'o' || i, 'tag', CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END)),
	   CASE WHEN i <= 5 THEN :m1 ELSE :m2 END::uuid
  FROM generate_series(1, 8) i;
SELECT is(payledger.authorize_payment((SELECT id FROM pay WHERE n = 2), 'pay-2-a')::text, 'authorized', 'setup: one payment authorized');
SELECT lives_ok(format($$SELECT payledger.scope_role('regress_reader_m1', %L)$$, :m1), 'setup: a reader scoped to M1');

-- get_payment
SELECT results_eq($$SELECT p.* FROM payledger.get_payment((SELECT id FROM pay WHERE n = 3)) p$$,
	$$SELECT * FROM payledger.payments WHERE id = (SELECT id FROM pay WHERE n = 3)$$,
	'get_payment returns the payments row');
SELECT throws_ok($$SELECT * FROM payledger.get_payment('00000000-0000-7000-8000-00000000dead')$$,
	'PY005', 'payment 00000000-0000-7000-8000-00000000dead does not exist', 'an unknown payment: PY005');

-- list_payments: pages, order, filters
SELECT results_eq($$SELECT id FROM payledger.list_payments()$$, $$SELECT id FROM pay ORDER BY id$$,
	'list_payments() lists every payment, oldest first');
SELECT results_eq(format($$SELECT id FROM payledger.list_payments(merchant_id => %L)$$, :m1),
	$$SELECT id FROM pay WHERE n <= 5 ORDER BY id$$, 'by merchant');
SELECT results_eq(format($$SELECT id FROM payledger.list_payments(merchant_id => %L, max_rows => 2)$$, :m1),
	$$SELECT id FROM pay WHERE n <= 5 ORDER BY id LIMIT 2$$, 'a page of 2');
SELECT results_eq(format($$SELECT id FROM payledger.list_payments(merchant_id => %L, max_rows => 2,
		after_id => (SELECT id FROM pay WHERE n <= 5 ORDER BY id OFFSET 1 LIMIT 1))$$, :m1),
	$$SELECT id FROM pay WHERE n <= 5 ORDER BY id OFFSET 2 LIMIT 2$$, 'the next page after the last id of the previous one');
SELECT results_eq($$SELECT id FROM payledger.list_payments(state => 'authorized')$$,
	$$SELECT id FROM pay WHERE n = 2$$, 'by state');
SELECT results_eq($$SELECT id FROM payledger.list_payments(metadata_contains => '{"tag": "even"}')$$,
	$$SELECT id FROM pay WHERE n % 2 = 0 ORDER BY id$$, 'by metadata containment');
SET LOCAL enable_seqscan = off;
SET LOCAL enable_indexscan = off;
CREATE TEMP TABLE gin_scans AS SELECT pg_stat_get_xact_numscans('payledger.payments_metadata'::regclass) AS n;
SELECT results_eq($$SELECT id FROM payledger.list_payments(metadata_contains => '{"tag": "even"}')$$,
	$$SELECT id FROM pay WHERE n % 2 = 0 ORDER BY id$$, 'by metadata containment, only bitmap scans allowed');
SELECT cmp_ok(pg_stat_get_xact_numscans('payledger.payments_metadata'::regclass), '>', (SELECT n FROM gin_scans),
	'through the GIN index on metadata (rows with metadata only)');
RESET enable_seqscan;
RESET enable_indexscan;
SELECT is_empty($$SELECT id FROM payledger.list_payments(since => clock_timestamp() + interval '1 hour')$$,
	'a window in the future is empty');
SELECT is_empty($$SELECT id FROM payledger.list_payments(until => '2000-01-01')$$, 'and one in the past');
SELECT throws_ok($$SELECT * FROM payledger.list_payments(max_rows => 0)$$, '22023', 'max_rows must be between 1 and 1000',
	'max_rows 0: 22023');
SELECT throws_ok($$SELECT * FROM payledger.list_accounts(max_rows => 1001)$$, '22023', NULL, 'max_rows 1001: 22023');

-- list_accounts: the contract's columns, balances as get_balance reports them
SELECT results_eq(format($$SELECT account_id, kind, owner_id, status, balance, available, min_balance FROM payledger.list_accounts(owner_id => %L)$$, :m1),
	format($$SELECT a.id, a.kind, %L::uuid, 'active'::text, g.balance, g.available, 0::bigint
	   FROM payledger.accounts a, payledger.get_balance(a.id) g WHERE a.id IN (%L, %L) ORDER BY a.id$$,
	   :m1, pg_temp.acct('shop1'), pg_temp.acct('shop1b')),
	'list_accounts(owner_id) lists the owner''s accounts with get_balance''s numbers');
SELECT results_eq($$SELECT account_id FROM payledger.list_accounts(kind => 'customer')$$,
	format($$VALUES (%L::uuid)$$, pg_temp.acct('cust')), 'by kind');

-- merchant scope
SET LOCAL ROLE regress_reader_m1;
SELECT results_eq($$SELECT id FROM payledger.list_payments()$$, $$SELECT id FROM pay WHERE n <= 5 ORDER BY id$$,
	'a reader scoped to M1 lists only M1''s payments');
SELECT throws_ok($$SELECT * FROM payledger.get_payment((SELECT id FROM pay WHERE n = 7))$$,
	'PY005', NULL, 'M2''s payment does not exist for it (PY005)');
SELECT results_eq($$SELECT account_id FROM payledger.list_accounts()$$,
	format($$SELECT id FROM (VALUES (%L::uuid), (%L::uuid)) v(id) ORDER BY id$$, pg_temp.acct('shop1'), pg_temp.acct('shop1b')),
	'and only M1''s accounts');
RESET ROLE;
SET LOCAL ROLE regress_reader_all;
SELECT is((SELECT count(*) FROM payledger.list_payments()), 8::bigint, 'an unscoped reader lists every payment');
RESET ROLE;

-- since bounds the ids too (UUIDv7: time first), which is exact because
-- a payment's created_at is read before its id is minted: a window that
-- starts at a payment's created_at holds it, for every one of 500
CREATE TEMP TABLE pay_many AS
SELECT payledger.create_payment(:m2, gen_random_uuid(), 1, 'USD', pg_temp.acct('cust'), pg_temp.acct('shop2'),
		'pay-many-' || i) AS id
  FROM generate_series(1, 500) i;
SELECT is((SELECT count(*) FROM pay_many m JOIN payledger.payments p USING (id)
	WHERE NOT EXISTS (SELECT FROM payledger.list_payments(since => p.created_at, until => p.created_at) l
					  WHERE l.id = p.id))::int, 0,
	'a window starting at a payment''s created_at lists it');

SELECT * FROM finish();
ROLLBACK;
