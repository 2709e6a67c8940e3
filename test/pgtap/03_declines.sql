-- 03_declines.sql: business declines are returned, not raised (doc/reference.md sections 1, 3, 4, 7)
--
-- A declined transfer returns status 'rejected' with a reason_code and a
-- transfer_id, moves no money, writes no entry, and leaves one
-- TRANSFER_REJECTED audit row with success = false.

BEGIN;
\ir helpers.psql

SELECT plan(79);

-- the six checks every decline must pass
CREATE FUNCTION pg_temp.declined(p_label text, p_reason text, p_from text, p_to text,
								 p_amount bigint)
	RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	t	uuid := pg_temp.tid(p_label);
BEGIN
	RETURN NEXT results_eq(
		format('SELECT status, reason_code, replayed FROM pg_temp.res WHERE label = %L', p_label),
		format('VALUES (%L, %L, false)', 'rejected', p_reason),
		p_label || ': returns status rejected, ' || p_reason);
	RETURN NEXT isnt(t, NULL, p_label || ': the rejected call has a transfer_id');
	RETURN NEXT is_empty(
		format('SELECT * FROM payledger.account_entries(%L) WHERE transfer_id = %L
				UNION ALL
				SELECT * FROM payledger.account_entries(%L) WHERE transfer_id = %L',
			   pg_temp.acct(p_from), t, pg_temp.acct(p_to), t),
		p_label || ': no entry was posted for it');
	RETURN NEXT results_eq(
		format('SELECT event_type, success, reason_code, amount_cents
				FROM payledger.payment_audit_log WHERE payment_id = %L', t),
		format('VALUES (''TRANSFER_REJECTED'', false, %L, %s::bigint)', p_reason, p_amount),
		p_label || ': exactly one TRANSFER_REJECTED audit row, success = false, with the reason and amount');
	RETURN NEXT is(
		(SELECT substr(event_id::text, 15, 1) FROM payledger.payment_audit_log WHERE payment_id = t), '7',
		p_label || ': its audit record has an event id of its own, a UUIDv7 (the month it lands in)');
	RETURN NEXT is(
		(SELECT new_state FROM payledger.payment_audit_log WHERE payment_id = t),
		'rejected', p_label || ': the audit row''s new_state is rejected');
END $$;

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
	PERFORM pg_temp.open('z');
	PERFORM pg_temp.open('credit', 'USD', -500, 'credit_line');
	PERFORM pg_temp.open('external', 'USD', NULL, 'external');
END $$;

SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 1000), 'posted', 'setup: fund a with 1000');
SELECT pg_temp.ver('a') AS ver_a, pg_temp.ver('b') AS ver_b \gset

------------------------------------------------------------------------------
-- INSUFFICIENT_FUNDS: the default floor is 0
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT pg_temp.xfer('insufficient', 'a', 'b', 1001)$$,
	'a transfer above the balance does not raise');
SELECT * FROM pg_temp.declined('insufficient', 'INSUFFICIENT_FUNDS', 'a', 'b', 1001);
SELECT is(pg_temp.bal('a'), 1000::bigint, 'insufficient: the source balance is unchanged');
SELECT is(pg_temp.bal('b'), 0::bigint, 'insufficient: the destination balance is unchanged');
SELECT is(pg_temp.ver('a'), :ver_a::bigint, 'insufficient: the source version is unchanged');
SELECT is(pg_temp.ver('b'), :ver_b::bigint, 'insufficient: the destination version is unchanged');

SELECT is(pg_temp.xfer('exact', 'a', 'b', 1000), 'posted', 'a transfer of the whole balance down to the floor 0 posts');
SELECT is(pg_temp.bal('a'), 0::bigint, 'the source is at exactly 0');
SELECT is(pg_temp.xfer('one-more', 'a', 'b', 1), 'rejected', 'one cent below the floor is declined');
SELECT * FROM pg_temp.declined('one-more', 'INSUFFICIENT_FUNDS', 'a', 'b', 1);
SELECT is(pg_temp.bal('a'), 0::bigint, 'one-more: the source is still at 0');
SELECT is(pg_temp.bal('b'), 1000::bigint, 'one-more: the destination still has 1000');

------------------------------------------------------------------------------
-- ACCOUNT_FROZEN: a frozen account neither sends nor receives
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('b'), 'fraud review')$$, 'setup: freeze b');

SELECT is(pg_temp.xfer('frozen-src', 'b', 'a', 10), 'rejected', 'a transfer out of a frozen account is declined');
SELECT * FROM pg_temp.declined('frozen-src', 'ACCOUNT_FROZEN', 'b', 'a', 10);
SELECT is(pg_temp.xfer('frozen-dst', 'sys', 'b', 10), 'rejected', 'a transfer into a frozen account is declined');
SELECT * FROM pg_temp.declined('frozen-dst', 'ACCOUNT_FROZEN', 'sys', 'b', 10);
SELECT is(pg_temp.bal('b'), 1000::bigint, 'the frozen account still has 1000');
SELECT is(pg_temp.bal('a'), 0::bigint, 'the other side of the frozen-source transfer is unchanged');
SELECT is(pg_temp.bal('sys'), -1000::bigint, 'the other side of the frozen-destination transfer is unchanged');

SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('b'))$$, 'setup: unfreeze b');
SELECT is(pg_temp.xfer('after-unfreeze', 'b', 'a', 10), 'posted', 'after unfreeze_account the account sends again');
SELECT is(pg_temp.bal('b'), 990::bigint, 'and its balance moved');

------------------------------------------------------------------------------
-- ACCOUNT_CLOSED
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT payledger.close_account(pg_temp.acct('z'))$$, 'setup: close z (zero balance)');
SELECT is(pg_temp.xfer('closed-dst', 'b', 'z', 10), 'rejected', 'a transfer into a closed account is declined');
SELECT * FROM pg_temp.declined('closed-dst', 'ACCOUNT_CLOSED', 'b', 'z', 10);
SELECT is(pg_temp.xfer('closed-src', 'z', 'b', 10), 'rejected', 'a transfer out of a closed account is declined');
SELECT * FROM pg_temp.declined('closed-src', 'ACCOUNT_CLOSED', 'z', 'b', 10);
SELECT is(pg_temp.bal('z'), 0::bigint, 'the closed account is still at 0');
SELECT is(pg_temp.bal('b'), 990::bigint, 'the open side is unchanged');

------------------------------------------------------------------------------
-- floors: a negative floor is a credit line, NULL is no floor
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('credit-ok', 'credit', 'b', 500), 'posted', 'a credit line of 500 lends down to -500');
SELECT results_eq($$SELECT balance, available FROM payledger.get_balance(pg_temp.acct('credit'))$$,
	$$VALUES (-500::bigint, -500::bigint)$$, 'the credit-line account is at -500');
SELECT is(pg_temp.xfer('credit-over', 'credit', 'b', 1), 'rejected', 'one cent past the credit line is declined');
SELECT * FROM pg_temp.declined('credit-over', 'INSUFFICIENT_FUNDS', 'credit', 'b', 1);
SELECT is(pg_temp.bal('credit'), -500::bigint, 'the credit-line account stays at -500');

SELECT is(pg_temp.xfer('nofloor-1', 'external', 'b', 1000000000000), 'posted', 'an account without a floor can go far below zero');
SELECT is(pg_temp.xfer('nofloor-2', 'external', 'b', 9000000000000000000), 'posted', 'and further still');
SELECT is(pg_temp.bal('external'), -9000001000000000000::bigint, 'the floorless account holds the sum of what it sent, negated');

------------------------------------------------------------------------------
-- declines are durable and left the ledger consistent
------------------------------------------------------------------------------

SELECT is((SELECT count(*) FROM pg_temp.res WHERE status = 'rejected'), 7::bigint,
	'seven declines were returned');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log
		   WHERE event_type = 'TRANSFER_REJECTED' AND NOT success
			 AND payment_id IN (SELECT transfer_id FROM pg_temp.res)), 7::bigint,
	'each left one TRANSFER_REJECTED audit row with success = false');
SELECT is((SELECT count(*) FROM payledger.payment_audit_log
		   WHERE NOT success AND payment_id IN (SELECT transfer_id FROM pg_temp.res WHERE status = 'posted')), 0::bigint,
	'no posted transfer has an audit row with success = false');
SELECT is((SELECT sum(balance) FROM pg_temp.fx, payledger.get_balance(fx.id)), 0::numeric,
	'the USD balances still sum to zero');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes after the declines');

SELECT * FROM finish();
ROLLBACK;
