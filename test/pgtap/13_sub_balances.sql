-- 13_sub_balances.sql: hot accounts with sub-balance rows behave like any
-- account for every function that touches them (freeze, limits, holds,
-- transfer_legs, transfer_many, payments)

BEGIN;
\ir helpers.psql

SELECT plan(27);

SET LOCAL payledger.require_idempotency_key = off;
SELECT pg_temp.open('sys', 'USD', NULL, 'system');
SELECT pg_temp.open('hot', 'USD', 0, 'merchant');
SELECT pg_temp.open('a');
SELECT pg_temp.open('b');
SELECT pg_temp.xfer('fund-a', 'sys', 'a', 100000);
SELECT pg_temp.xfer('fund-b', 'sys', 'b', 100000);

CREATE FUNCTION pg_temp.own_row(p_name text) RETURNS bigint LANGUAGE sql
	AS $$ SELECT balance FROM payledger.accounts WHERE id = pg_temp.acct(p_name) $$;
CREATE FUNCTION pg_temp.in_sub_balances(p_name text) RETURNS bigint LANGUAGE sql
	AS $$ SELECT coalesce(sum(a.balance), 0)::bigint FROM payledger.sub_balances s
		  JOIN payledger.accounts a ON a.id = s.sub_account_id
		  WHERE s.account_id = pg_temp.acct(p_name) $$;

-- setting up
SELECT is(payledger.set_sub_balances(pg_temp.acct('hot'), 3), 3, 'set_sub_balances returns the number');
SELECT is(payledger.set_sub_balances(pg_temp.acct('hot'), 3), 3, 'asking again is fine');
SELECT is((SELECT count(*) FROM payledger.sub_balances WHERE account_id = pg_temp.acct('hot')),
	3::bigint, 'asking again adds no rows');

-- a credit goes to a sub-balance row
SELECT is(pg_temp.xfer('c1', 'a', 'hot', 1000), 'posted', 'a credit posts');
SELECT is(pg_temp.in_sub_balances('hot'), 1000::bigint, 'the credit is in a sub-balance row');
SELECT is(pg_temp.bal('hot'), 1000::bigint, 'get_balance counts it');

-- a frozen hot account takes no credits, also not into its sub-balances
SELECT payledger.freeze_account(pg_temp.acct('hot'), 'review');
SELECT is(pg_temp.xfer('c2', 'a', 'hot', 10), 'rejected', 'a credit to a frozen hot account is declined');
SELECT is((SELECT reason_code FROM pg_temp.res WHERE label = 'c2'), 'ACCOUNT_FROZEN', 'with ACCOUNT_FROZEN');
SELECT is(pg_temp.in_sub_balances('hot'), 1000::bigint, 'and nothing reached a sub-balance row');
SELECT payledger.unfreeze_account(pg_temp.acct('hot'));
SELECT is(pg_temp.xfer('c3', 'a', 'hot', 10), 'posted', 'after unfreezing it takes credits again');

-- limits apply to its debits
SELECT payledger.set_limits(pg_temp.acct('hot'), 500);
SELECT is(pg_temp.xfer('d1', 'hot', 'b', 501), 'rejected', 'a debit above the limit is declined');
SELECT is((SELECT reason_code FROM pg_temp.res WHERE label = 'd1'), 'LIMIT_EXCEEDED', 'with LIMIT_EXCEEDED');
SELECT is(pg_temp.xfer('d2', 'hot', 'b', 500), 'posted', 'a debit at the limit, funded by the sub-balances, posts');
SELECT is(pg_temp.own_row('hot'), -500::bigint, 'the debit is on the account''s own row');

-- holds against it reserve on the sum
SELECT is((SELECT status FROM payledger.hold(pg_temp.acct('hot'), pg_temp.acct('b'), 511, 'USD')),
	'rejected', 'a hold above what the sum holds is declined');
SELECT is((SELECT status FROM payledger.hold(pg_temp.acct('hot'), pg_temp.acct('b'), 500, 'USD')),
	'pending', 'a hold within the sum is made');
SELECT is((SELECT available FROM payledger.get_balance(pg_temp.acct('hot'))), 10::bigint,
	'available is the sum less the hold');

-- transfer_legs and transfer_many credit the account's own row
SELECT is((SELECT status FROM payledger.transfer_legs(jsonb_build_array(
	jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('hot'), 'amount', 300),
	jsonb_build_object('from', pg_temp.acct('b'), 'to', pg_temp.acct('hot'), 'amount', 200)), 'USD')),
	'posted', 'transfer_legs crediting the hot account posts');
SELECT is((SELECT array_agg(status) FROM payledger.transfer_many(
	ARRAY[pg_temp.acct('a'), pg_temp.acct('b')], ARRAY[pg_temp.acct('hot'), pg_temp.acct('hot')],
	ARRAY[7, 8]::bigint[], 'USD')), ARRAY['posted', 'posted'], 'transfer_many crediting it posts');
SELECT is(pg_temp.bal('hot'), 1025::bigint, 'the balance is the sum of every row');

-- a payment to it
SELECT is((SELECT payledger.authorize_payment(payledger.create_payment(gen_random_uuid(), gen_random_uuid(),
	250, 'USD', pg_temp.acct('a'), pg_temp.acct('hot'), 'sb-pay'), 'sb-auth')::text),
	'authorized', 'a payment to the hot account is authorized');
SELECT is((SELECT payledger.capture_payment(id, 'sb-cap')::text FROM payledger.payments
	WHERE merchant_account = pg_temp.acct('hot')), 'captured', 'and captured');
SELECT is(pg_temp.bal('hot'), 1275::bigint, 'the capture counts in the balance');

-- the sub-balance rows cannot be named, not even for a hold
SELECT pg_temp.raises(format($$SELECT payledger.hold(%L, %L, 1, 'USD')$$, pg_temp.acct('a'),
	(SELECT sub_account_id FROM payledger.sub_balances WHERE account_id = pg_temp.acct('hot') AND slot = 1)),
	'22023', 'a hold to a sub-balance row raises 22023', 'is a sub-balance of');

SELECT pg_temp.raises(format($$SELECT payledger.create_payment(gen_random_uuid(), gen_random_uuid(), 1, 'USD', %L, %L, 'sb-pay-2')$$,
	pg_temp.acct('a'),
	(SELECT sub_account_id FROM payledger.sub_balances WHERE account_id = pg_temp.acct('hot') AND slot = 2)),
	'22023', 'a payment to a sub-balance row raises 22023', 'is a sub-balance of');

SELECT is((SELECT count(*) FROM payledger.check_ledger() WHERE NOT ok), 0::bigint,
	'check_ledger() is all ok');
SELECT is((SELECT count(*) FROM payledger.entries e JOIN payledger.sub_balances s
	ON s.sub_account_id = e.account_id WHERE s.account_id = pg_temp.acct('hot') AND e.amount < 0),
	0::bigint, 'no sub-balance row was ever debited');

SELECT * FROM finish();
ROLLBACK;
