-- 01_errors.sql: every SQLSTATE the ledger core raises (doc/reference.md sections 1, 3, 4, 5)
--
-- Malformed or impossible requests raise with the contract's SQLSTATE and a
-- message naming the problem; nothing is written.

BEGIN;
\ir helpers.psql

SELECT plan(117);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');	-- no floor: the money source
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
	PERFORM pg_temp.open('empty');
	PERFORM pg_temp.open('eursys', 'EUR', NULL, 'system');
	PERFORM pg_temp.open('e1', 'EUR');
	PERFORM pg_temp.open('e2', 'EUR');
	INSERT INTO pg_temp.fx VALUES ('ghost', gen_random_uuid());	-- never created
END $$;

SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 10000), 'posted', 'setup: fund a with 10000');
SELECT is(pg_temp.xfer('fund-e1', 'eursys', 'e1', 10000, 'EUR'), 'posted', 'setup: fund e1 with 10000 EUR');

------------------------------------------------------------------------------
-- 22004 null_value_not_allowed: every required argument
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.create_account(NULL)$$,
	'22004', 'currency must not be null', 'create_account: NULL currency raises 22004');
SELECT throws_ok($$SELECT payledger.transfer(NULL, pg_temp.acct('b'), 1, 'USD', 'k-null-from')$$,
	'22004', 'from_account must not be null', 'transfer: NULL from_account raises 22004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), NULL, 1, 'USD', 'k-null-to')$$,
	'22004', 'to_account must not be null', 'transfer: NULL to_account raises 22004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), NULL, 'USD', 'k-null-amount')$$,
	'22004', 'amount must not be null', 'transfer: NULL amount raises 22004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, NULL, 'k-null-currency')$$,
	'22004', 'currency must not be null', 'transfer: NULL currency raises 22004');
SELECT throws_ok($$SELECT payledger.freeze_account(NULL, 'fraud review')$$,
	'22004', 'account_id must not be null', 'freeze_account: NULL account_id raises 22004');
SELECT throws_ok($$SELECT payledger.freeze_account(pg_temp.acct('a'), NULL)$$,
	'22004', 'reason must not be null', 'freeze_account: NULL reason raises 22004');
SELECT throws_ok($$SELECT payledger.unfreeze_account(NULL)$$,
	'22004', 'account_id must not be null', 'unfreeze_account: NULL account_id raises 22004');
SELECT throws_ok($$SELECT payledger.close_account(NULL)$$,
	'22004', 'account_id must not be null', 'close_account: NULL account_id raises 22004');
SELECT throws_ok($$SELECT * FROM payledger.get_balance(NULL)$$,
	'22004', 'account_id must not be null', 'get_balance: NULL account_id raises 22004');
SELECT throws_ok($$SELECT payledger.balance_at(NULL, now())$$,
	'22004', 'account_id must not be null', 'balance_at: NULL account_id raises 22004');
SELECT throws_ok($$SELECT payledger.balance_at(pg_temp.acct('a'), NULL)$$,
	'22004', 'at must not be null', 'balance_at: NULL instant raises 22004');
SELECT throws_ok($$SELECT * FROM payledger.account_entries(NULL)$$,
	'22004', 'account_id must not be null', 'account_entries: NULL account_id raises 22004');

------------------------------------------------------------------------------
-- 22023 invalid_parameter_value
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 0, 'USD', 'k-zero')$$,
	'22023', 'amount must be positive', 'transfer: amount 0 raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), -5, 'USD', 'k-negative')$$,
	'22023', 'amount must be positive', 'transfer: a negative amount raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), -9223372036854775808, 'USD', 'k-min')$$,
	'22023', 'amount must be positive', 'transfer: the most negative bigint raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'XYZ', 'k-xyz')$$,
	'22023', 'unknown currency "XYZ"', 'transfer: unknown currency XYZ raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'usd', 'k-lower')$$,
	'22023', 'unknown currency "usd"', 'transfer: lower-case usd raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'US', 'k-short')$$,
	'22023', 'unknown currency "US"', 'transfer: a two-letter currency raises 22023');
SELECT throws_ok($$SELECT payledger.create_account('XYZ')$$,
	'22023', 'unknown currency "XYZ"', 'create_account: unknown currency XYZ raises 22023');
SELECT throws_ok($$SELECT payledger.create_account('usd')$$,
	'22023', 'unknown currency "usd"', 'create_account: lower-case usd raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('a'), 1, 'USD', 'k-self')$$,
	'22023', 'from_account and to_account must differ', 'transfer: the same account on both sides raises 22023');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'generic', 1)$$,
	'22023', 'min_balance must not be above zero', 'create_account: a floor above zero raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', '')$$,
	'22023', 'idempotency key must be 1 to 255 bytes long', 'transfer: an empty idempotency key raises 22023');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', repeat('k', 256))$$,
	'22023', 'idempotency key must be 1 to 255 bytes long', 'transfer: a 256-byte idempotency key raises 22023');
SELECT is(pg_temp.xfer('key255', 'a', 'b', 1, 'USD', repeat('k', 255)), 'posted',
	'transfer: a 255-byte idempotency key is accepted');

------------------------------------------------------------------------------
-- 22003 numeric_value_out_of_range: a balance would overflow bigint
------------------------------------------------------------------------------

DO $$
BEGIN
	PERFORM pg_temp.open('big1', 'USD', NULL, 'system');
	PERFORM pg_temp.open('big2', 'USD', NULL, 'system');
	PERFORM pg_temp.open('high');
	PERFORM pg_temp.open('low');
END $$;

SELECT is(pg_temp.xfer('near-max', 'big1', 'high', 9223372036854775800), 'posted',
	'setup: a floorless source can move 9223372036854775800');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('big2'), pg_temp.acct('high'), 8, 'USD', 'k-overflow-credit')$$,
	'22003', format('balance of account %s would overflow bigint', pg_temp.acct('high')),
	'transfer: a credit past 9223372036854775807 raises 22003');
SELECT is(pg_temp.xfer('to-max', 'big2', 'high', 7), 'posted',
	'transfer: a credit up to exactly 9223372036854775807 posts');
SELECT is(pg_temp.bal('high'), 9223372036854775807::bigint, 'the destination holds the largest bigint');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('big2'), pg_temp.acct('high'), 1, 'USD', 'k-overflow-credit-2')$$,
	'22003', NULL, 'transfer: one more cent into the full account raises 22003');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('big1'), pg_temp.acct('low'), 9223372036854775807, 'USD', 'k-overflow-debit')$$,
	'22003', format('balance of account %s would overflow bigint', pg_temp.acct('big1')),
	'transfer: a debit below -9223372036854775808 from a floorless source raises 22003');
SELECT is(pg_temp.bal('big1'), -9223372036854775800::bigint, 'the floorless source is unchanged after the 22003');
SELECT is(pg_temp.bal('low'), 0::bigint, 'the destination is unchanged after the 22003');

------------------------------------------------------------------------------
-- PY001 invalid_state_transition: account states
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.close_account(pg_temp.acct('a'))$$,
	'PY001', 'account cannot be closed while it holds money',
	'close_account: a non-zero balance raises PY001');
SELECT throws_ok($$SELECT payledger.close_account(pg_temp.acct('sys'))$$,
	'PY001', 'account cannot be closed while it holds money',
	'close_account: a negative balance raises PY001');
SELECT pg_temp.open('expecting') \gset
SELECT results_eq(
	$$SELECT status FROM payledger.hold(pg_temp.acct('a'), pg_temp.acct('expecting'), 10, 'USD', '7 days', 'k-hold-in')$$,
	$$VALUES ('pending')$$, 'setup: a hold of 10 towards an account with zero balance');
SELECT throws_ok($$SELECT payledger.close_account(pg_temp.acct('expecting'))$$,
	'PY001', 'account cannot be closed while it holds money',
	'close_account: a zero balance with a pending hold raises PY001');
SELECT lives_ok($$SELECT payledger.close_account(pg_temp.acct('empty'))$$,
	'close_account: an account with zero balance closes');
SELECT throws_ok($$SELECT payledger.freeze_account(pg_temp.acct('empty'), 'fraud review')$$,
	'PY001', 'account is closed', 'freeze_account: freezing a closed account raises PY001');
SELECT throws_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('empty'))$$,
	'PY001', 'account is closed', 'unfreeze_account: reopening a closed account raises PY001');

------------------------------------------------------------------------------
-- PY002 idempotency_key_reused
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('dup', 'a', 'b', 100, 'USD', 'dup-key', '{"order": "A-1"}'), 'posted',
	'setup: a first transfer with key dup-key posts');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 101, 'USD', 'dup-key', '{"order": "A-1"}')$$,
	'PY002', 'idempotency key "dup-key" was already used with different parameters',
	'transfer: same key, different amount raises PY002');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('low'), 100, 'USD', 'dup-key', '{"order": "A-1"}')$$,
	'PY002', 'idempotency key "dup-key" was already used with different parameters',
	'transfer: same key, different destination raises PY002');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('low'), pg_temp.acct('b'), 100, 'USD', 'dup-key', '{"order": "A-1"}')$$,
	'PY002', 'idempotency key "dup-key" was already used with different parameters',
	'transfer: same key, different source raises PY002');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'dup-key', '{"order": "A-2"}')$$,
	'PY002', 'idempotency key "dup-key" was already used with different parameters',
	'transfer: same key, different metadata raises PY002');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', 'dup-key', '{"order": "A-1"}', gen_random_uuid())$$,
	'PY002', 'idempotency key "dup-key" was already used with different parameters',
	'transfer: same key, a different caller-supplied transfer_id raises PY002');
SELECT is(pg_temp.bal('a'), 10000::bigint - 1 - 100, 'no PY002 moved money out of a');

INSERT INTO fx VALUES ('tid1', payledger.uuid_v7());
SELECT is(pg_temp.xfer('tid-first', 'a', 'b', 10, 'USD', 'tid-key-1', '{}', pg_temp.acct('tid1')), 'posted',
	'setup: a transfer with a caller-supplied transfer_id posts');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 20, 'USD', 'tid-key-2', '{}', pg_temp.acct('tid1'))$$,
	'PY002', format('transfer %s already exists with different parameters', pg_temp.acct('tid1')),
	'transfer: a reused transfer_id with a different amount raises PY002');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('b'), pg_temp.acct('a'), 10, 'USD', 'tid-key-3', '{}', pg_temp.acct('tid1'))$$,
	'PY002', format('transfer %s already exists with different parameters', pg_temp.acct('tid1')),
	'transfer: a reused transfer_id with the accounts swapped raises PY002');

INSERT INTO fx VALUES ('fixed', payledger.uuid_v7());
SELECT is(payledger.create_account('USD', 'wallet', 0, '{"owner": "u1"}', pg_temp.acct('fixed')), pg_temp.acct('fixed'),
	'setup: create_account with a caller-supplied id returns it');
SELECT throws_ok($$SELECT payledger.create_account('EUR', 'wallet', 0, '{"owner": "u1"}', pg_temp.acct('fixed'))$$,
	'PY002', format('account %s already exists with other attributes', pg_temp.acct('fixed')),
	'create_account: an existing id with another currency raises PY002');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'merchant', 0, '{"owner": "u1"}', pg_temp.acct('fixed'))$$,
	'PY002', NULL, 'create_account: an existing id with another kind raises PY002');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'wallet', -100, '{"owner": "u1"}', pg_temp.acct('fixed'))$$,
	'PY002', NULL, 'create_account: an existing id with another floor raises PY002');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'wallet', NULL, '{"owner": "u1"}', pg_temp.acct('fixed'))$$,
	'PY002', NULL, 'create_account: an existing id without a floor raises PY002');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'wallet', 0, '{"owner": "u2"}', pg_temp.acct('fixed'))$$,
	'PY002', NULL, 'create_account: an existing id with other metadata raises PY002');

------------------------------------------------------------------------------
-- PY003 immutable_record: append-only tables and the accounts guard,
-- refused for a superuser, and in replica mode too
------------------------------------------------------------------------------

SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
	'the PY003 checks below run as a superuser');

SELECT throws_ok($$UPDATE payledger.transfers SET amount = amount + 1$$,
	'PY003', 'UPDATE of "transfers" is not allowed: the table is append-only', 'UPDATE payledger.transfers raises PY003');
SELECT throws_ok($$DELETE FROM payledger.transfers$$,
	'PY003', 'DELETE of "transfers" is not allowed: the table is append-only', 'DELETE FROM payledger.transfers raises PY003');
SELECT throws_ok($$TRUNCATE payledger.transfers$$,
	'PY003', 'TRUNCATE of "transfers" is not allowed: the table is append-only', 'TRUNCATE payledger.transfers raises PY003');
SELECT throws_ok($$UPDATE payledger.entries SET amount = amount + 1$$,
	'PY003', 'UPDATE of "entries" is not allowed: the table is append-only', 'UPDATE payledger.entries raises PY003');
SELECT throws_ok($$DELETE FROM payledger.entries$$,
	'PY003', 'DELETE of "entries" is not allowed: the table is append-only', 'DELETE FROM payledger.entries raises PY003');
SELECT throws_ok($$TRUNCATE payledger.entries$$,
	'PY003', 'TRUNCATE of "entries" is not allowed: the table is append-only', 'TRUNCATE payledger.entries raises PY003');
SELECT throws_ok($$UPDATE payledger.payment_audit_log SET success = true$$,
	'PY003', 'UPDATE of "payment_audit_log" is not allowed: the table is append-only', 'UPDATE payledger.payment_audit_log raises PY003');
SELECT throws_ok($$DELETE FROM payledger.payment_audit_log$$,
	'PY003', 'DELETE of "payment_audit_log" is not allowed: the table is append-only', 'DELETE FROM payledger.payment_audit_log raises PY003');
SELECT throws_ok($$TRUNCATE payledger.payment_audit_log$$,
	'PY003', 'TRUNCATE of "payment_audit_log" is not allowed: the table is append-only', 'TRUNCATE payledger.payment_audit_log raises PY003');
SELECT throws_ok($$UPDATE payledger.accounts SET balance = balance + 1000000$$,
	'PY003', 'UPDATE of "accounts" is not allowed outside payledger functions', 'UPDATE payledger.accounts raises PY003');
SELECT throws_ok($$DELETE FROM payledger.accounts$$,
	'PY003', 'DELETE of "accounts" is not allowed outside payledger functions', 'DELETE FROM payledger.accounts raises PY003');
SELECT throws_ok($$TRUNCATE payledger.accounts$$,
	'PY003', 'TRUNCATE of "accounts" is not allowed outside payledger functions', 'TRUNCATE payledger.accounts raises PY003');
SELECT throws_ok($$DELETE FROM payledger.payment_audit_log WHERE false$$,
	'PY003', NULL, 'a DELETE of the audit log that matches no row raises PY003 too');

SET LOCAL session_replication_role = replica;

SELECT throws_ok($$UPDATE payledger.transfers SET amount = amount + 1$$,
	'PY003', NULL, 'replica mode: UPDATE payledger.transfers raises PY003');
SELECT throws_ok($$DELETE FROM payledger.transfers$$,
	'PY003', NULL, 'replica mode: DELETE FROM payledger.transfers raises PY003');
SELECT throws_ok($$TRUNCATE payledger.transfers$$,
	'PY003', NULL, 'replica mode: TRUNCATE payledger.transfers raises PY003');
SELECT throws_ok($$UPDATE payledger.entries SET amount = amount + 1$$,
	'PY003', NULL, 'replica mode: UPDATE payledger.entries raises PY003');
SELECT throws_ok($$DELETE FROM payledger.entries$$,
	'PY003', NULL, 'replica mode: DELETE FROM payledger.entries raises PY003');
SELECT throws_ok($$TRUNCATE payledger.entries$$,
	'PY003', NULL, 'replica mode: TRUNCATE payledger.entries raises PY003');
SELECT throws_ok($$UPDATE payledger.payment_audit_log SET success = true$$,
	'PY003', NULL, 'replica mode: UPDATE payledger.payment_audit_log raises PY003');
SELECT throws_ok($$DELETE FROM payledger.payment_audit_log$$,
	'PY003', NULL, 'replica mode: DELETE FROM payledger.payment_audit_log raises PY003');
SELECT throws_ok($$TRUNCATE payledger.payment_audit_log$$,
	'PY003', NULL, 'replica mode: TRUNCATE payledger.payment_audit_log raises PY003');
SELECT throws_ok($$UPDATE payledger.accounts SET balance = balance + 1000000$$,
	'PY003', NULL, 'replica mode: UPDATE payledger.accounts raises PY003');
SELECT throws_ok($$DELETE FROM payledger.accounts$$,
	'PY003', NULL, 'replica mode: DELETE FROM payledger.accounts raises PY003');
SELECT throws_ok($$TRUNCATE payledger.accounts$$,
	'PY003', NULL, 'replica mode: TRUNCATE payledger.accounts raises PY003');

SET LOCAL session_replication_role = origin;

------------------------------------------------------------------------------
-- PY004 currency_mismatch
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('e1'), pg_temp.acct('e2'), 10, 'USD', 'k-usd-between-eur')$$,
	'PY004', format('account %s holds EUR, not USD', pg_temp.acct('e1')),
	'transfer: USD between two EUR accounts raises PY004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('e2'), 10, 'USD', 'k-usd-to-eur')$$,
	'PY004', format('account %s holds EUR, not USD', pg_temp.acct('e2')),
	'transfer: USD from a USD account to a EUR account raises PY004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('e2'), 10, 'EUR', 'k-eur-from-usd')$$,
	'PY004', format('account %s holds USD, not EUR', pg_temp.acct('a')),
	'transfer: EUR from a USD account to a EUR account raises PY004');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 10, 'GBP', 'k-gbp')$$,
	'PY004', NULL, 'transfer: GBP between two USD accounts raises PY004');

------------------------------------------------------------------------------
-- PY005 not_found: unknown accounts
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('ghost'), pg_temp.acct('b'), 1, 'USD', 'k-ghost-from')$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'transfer: an unknown from_account raises PY005');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('ghost'), 1, 'USD', 'k-ghost-to')$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'transfer: an unknown to_account raises PY005');
SELECT throws_ok($$SELECT * FROM payledger.get_balance(pg_temp.acct('ghost'))$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'get_balance: an unknown account raises PY005');
SELECT throws_ok($$SELECT payledger.freeze_account(pg_temp.acct('ghost'), 'fraud review')$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'freeze_account: an unknown account raises PY005');
SELECT throws_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('ghost'))$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'unfreeze_account: an unknown account raises PY005');
SELECT throws_ok($$SELECT payledger.close_account(pg_temp.acct('ghost'))$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'close_account: an unknown account raises PY005');
SELECT throws_ok($$SELECT payledger.balance_at(pg_temp.acct('ghost'), now())$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'balance_at: an unknown account raises PY005');
SELECT throws_ok($$SELECT * FROM payledger.account_entries(pg_temp.acct('ghost'))$$,
	'PY005', format('account %s does not exist', pg_temp.acct('ghost')), 'account_entries: an unknown account raises PY005');

------------------------------------------------------------------------------
-- PY006 sensitive_data_rejected: card numbers and CVVs
------------------------------------------------------------------------------

SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-1', '{"card": "4111111111111111"}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN in metadata raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-2', '{"card": "4111 1111 1111 1111"}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN with spaces in metadata raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-3', '{"card": "4111-1111-1111-1111"}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN with dashes in metadata raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-4', '{"a": {"b": [1, {"c": "paid with 4111111111111111 today"}]}}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN deep inside metadata raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-5', '{"n": 4111111111111111}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN as a JSON number raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-6', '{"4111111111111111": true}')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN as a JSON key raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-pan-7', '["x", ["5500 0000 0000 0004"]]')$$,
	'PY006', 'transfer metadata looks like it holds a card number', 'transfer: a PAN in a JSON array raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-cvv-1', '{"cvv": "123"}')$$,
	'PY006', 'transfer metadata has a card security field', 'transfer: a cvv key in metadata raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'k-cvv-2', '{"payment": {"card": {"CVV": 123}}}')$$,
	'PY006', 'transfer metadata has a card security field', 'transfer: a nested CVV key in metadata raises PY006');
SELECT throws_ok($$SELECT payledger.freeze_account(pg_temp.acct('a'), 'chargeback on card 4111111111111111')$$,
	'PY006', 'freeze reason looks like it holds a card number', 'freeze_account: a PAN in the reason raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'retry-4111111111111111')$$,
	'PY006', 'idempotency key looks like it holds a card number', 'transfer: a PAN in the idempotency key raises PY006');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', '4111 1111 1111 1111')$$,
	'PY006', 'idempotency key looks like it holds a card number', 'transfer: a spaced PAN as the idempotency key raises PY006');
SELECT throws_ok($$SELECT payledger.create_account('USD', 'wallet', 0, '{"card": "4111-1111-1111-1111"}')$$,
	'PY006', 'account metadata looks like it holds a card number', 'create_account: a PAN in metadata raises PY006');
SELECT is(pg_temp.xfer('non-luhn', 'a', 'b', 1, 'USD', 'auto', '{"ref": "4111111111111112", "n": 4111111111111112}'), 'posted',
	'transfer: a 16-digit number that fails Luhn is not a PAN and posts');
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('b'), 'ticket 4111111111111112'); SELECT payledger.unfreeze_account(pg_temp.acct('b'))$$,
	'freeze_account: a 16-digit non-Luhn number in the reason is accepted');

------------------------------------------------------------------------------
-- PY008 idempotency_key_required
------------------------------------------------------------------------------

SELECT is(current_setting('payledger.require_idempotency_key'), 'on',
	'payledger.require_idempotency_key is on by default');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD')$$,
	'PY008', 'transfer requires an idempotency key', 'transfer: no key raises PY008');
SELECT throws_ok($$SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', NULL, '{}')$$,
	'PY008', 'transfer requires an idempotency key', 'transfer: a NULL key raises PY008');
SET LOCAL payledger.require_idempotency_key = off;
SELECT is(pg_temp.xfer('no-key', 'a', 'b', 1, 'USD', NULL), 'posted',
	'transfer: without a key posts once payledger.require_idempotency_key is off');
SET LOCAL payledger.require_idempotency_key = on;

------------------------------------------------------------------------------
-- nothing above broke the ledger
------------------------------------------------------------------------------

SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes after all the refused requests');

SELECT * FROM finish();
ROLLBACK;
