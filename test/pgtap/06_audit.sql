-- 06_audit.sql: the audit log (doc/reference.md sections 2 and 7)
--
-- One row per transfer and per account change, written in the same
-- transaction; the actor comes from the payledger.* context settings; the IP
-- is stored masked, the user agent and device id as SHA-256 hex; card data
-- is refused and e-mail addresses in metadata are masked.

BEGIN;
\ir helpers.psql

SELECT plan(48);

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
	PERFORM pg_temp.open('z');
END $$;

CREATE FUNCTION pg_temp.audit_of(p_label text) RETURNS SETOF payledger.payment_audit_log
	LANGUAGE sql STABLE
	AS $$ SELECT * FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid(p_label) $$;

------------------------------------------------------------------------------
-- account changes
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT event_type, success, actor_type, actor_id, currency
	    FROM payledger.payment_audit_log WHERE account_id = pg_temp.acct('a')$$,
	$$VALUES ('ACCOUNT_CREATED', true, 'SYSTEM', current_user::text COLLATE "default", 'USD')$$,
	'create_account writes one ACCOUNT_CREATED row, actor SYSTEM / current_user by default');

SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('z'), 'kyc review')$$, 'setup: freeze z');
SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('z'))$$, 'setup: unfreeze z');
SELECT lives_ok($$SELECT payledger.close_account(pg_temp.acct('z'))$$, 'setup: close z');
SELECT results_eq(
	$$SELECT event_type, success FROM payledger.payment_audit_log
	   WHERE account_id = pg_temp.acct('z') ORDER BY id$$,
	$$VALUES ('ACCOUNT_CREATED', true), ('ACCOUNT_FROZEN', true), ('ACCOUNT_UNFROZEN', true), ('ACCOUNT_CLOSED', true)$$,
	'create, freeze, unfreeze and close each write one row, in order');
SELECT results_eq(
	$$SELECT previous_state IS NOT NULL AND new_state IS NOT NULL AND previous_state <> new_state
	    FROM payledger.payment_audit_log
	   WHERE account_id = pg_temp.acct('z') AND event_type <> 'ACCOUNT_CREATED' ORDER BY id$$,
	$$VALUES (true), (true), (true)$$,
	'each status change records the previous and the new state');
SELECT ok((SELECT metadata::text LIKE '%kyc review%' FROM payledger.payment_audit_log
		   WHERE account_id = pg_temp.acct('z') AND event_type = 'ACCOUNT_FROZEN'),
	'the ACCOUNT_FROZEN row carries the reason');

------------------------------------------------------------------------------
-- transfers
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 1000), 'posted', 'setup: fund a');
SELECT is(pg_temp.xfer('p1', 'a', 'b', 250, 'USD', 'audit-p1', '{"order": "o-1", "lines": [1, 2]}'), 'posted',
	'setup: a posted transfer');
SELECT results_eq(
	$$SELECT event_type, success, reason_code, amount_cents, currency, idempotency_key, metadata
	    FROM pg_temp.audit_of('p1')$$,
	$$VALUES ('TRANSFER_POSTED', true, NULL::text, 250::bigint, 'USD', 'audit-p1', '{"order": "o-1", "lines": [1, 2]}'::jsonb)$$,
	'a posted transfer writes one TRANSFER_POSTED row: payment_id = transfer_id, amount, currency, key, metadata');
SELECT is((SELECT correlation_id FROM pg_temp.audit_of('p1')), pg_temp.tid('p1'),
	'without payledger.correlation_id, a transfer''s correlation_id is its transfer id');
SELECT ok((SELECT a.event_time BETWEEN r.called_at AND r.returned_at
		     FROM pg_temp.audit_of('p1') a, pg_temp.res r WHERE r.label = 'p1'),
	'event_time is the server''s wall clock during the call (not the transaction start)');
SELECT col_type_is('payledger', 'payment_audit_log', 'event_time', 'timestamp with time zone',
	'event_time is a timestamptz with full microsecond precision');

SELECT is(pg_temp.xfer('r1', 'a', 'b', 999999, 'USD', 'audit-r1'), 'rejected', 'setup: a declined transfer');
SELECT results_eq(
	$$SELECT event_type, success, reason_code, amount_cents, correlation_id FROM pg_temp.audit_of('r1')$$,
	$$VALUES ('TRANSFER_REJECTED', false, 'INSUFFICIENT_FUNDS', 999999::bigint, pg_temp.tid('r1'))$$,
	'a declined transfer writes one TRANSFER_REJECTED row with success = false and the reason');

------------------------------------------------------------------------------
-- the actor context (section 2)
------------------------------------------------------------------------------

SET LOCAL payledger.actor_type = 'CUSTOMER';
SET LOCAL payledger.actor_id = 'cust-42';
SET LOCAL payledger.ip_address = '192.168.1.20';
SET LOCAL payledger.user_agent = 'Mozilla/5.0 (X11; Linux x86_64) payledger-pgtap';
SET LOCAL payledger.device_id = 'device-abc-123';

SELECT is(pg_temp.xfer('ctx', 'a', 'b', 10, 'USD', 'audit-ctx'), 'posted', 'setup: a transfer with the full actor context');
SELECT results_eq(
	$$SELECT actor_type, actor_id, ip_address FROM pg_temp.audit_of('ctx')$$,
	$$VALUES ('CUSTOMER', 'cust-42', '192.168.xxx.xxx')$$,
	'the row records actor_type and actor_id, and the IPv4 address masked to 192.168.xxx.xxx');
SELECT is((SELECT user_agent_hash FROM pg_temp.audit_of('ctx')),
	encode(sha256(convert_to('Mozilla/5.0 (X11; Linux x86_64) payledger-pgtap', 'UTF8')), 'hex'),
	'the user agent is stored as its SHA-256 hex');
SELECT is((SELECT device_id FROM pg_temp.audit_of('ctx')),
	encode(sha256(convert_to('device-abc-123', 'UTF8')), 'hex'),
	'the device id is stored as its SHA-256 hex');
SELECT is_empty(
	$$SELECT 1 FROM payledger.payment_audit_log l
	   WHERE l.payment_id = pg_temp.tid('ctx')
	     AND (l::text LIKE '%192.168.1.20%' OR l::text LIKE '%Mozilla%' OR l::text LIKE '%device-abc-123%')$$,
	'the raw IP, user agent and device id appear nowhere in the row');

SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('b'), 'chargeback')$$, 'setup: freeze b under the context');
SELECT results_eq(
	$$SELECT actor_type, actor_id, ip_address FROM payledger.payment_audit_log
	   WHERE account_id = pg_temp.acct('b') AND event_type = 'ACCOUNT_FROZEN'$$,
	$$VALUES ('CUSTOMER', 'cust-42', '192.168.xxx.xxx')$$,
	'account changes record the same actor context');
SELECT lives_ok($$SELECT payledger.unfreeze_account(pg_temp.acct('b'))$$, 'setup: unfreeze b');

SET LOCAL payledger.ip_address = '2001:db8:85a3::8a2e:370:7334';
SELECT is(pg_temp.xfer('ctx6', 'a', 'b', 11, 'USD', 'audit-ctx6'), 'posted', 'setup: a transfer from an IPv6 address');
SELECT ok((SELECT ip_address LIKE '2001:db8:85a3:%' AND ip_address NOT LIKE '%8a2e%'
				  AND ip_address NOT LIKE '%370%' AND ip_address NOT LIKE '%7334%'
		     FROM pg_temp.audit_of('ctx6')),
	'an IPv6 address keeps its first three groups only');

SELECT lives_ok($$SET LOCAL payledger.actor_type = 'OPERATOR'$$, 'actor_type OPERATOR is accepted');
SELECT lives_ok($$SET LOCAL payledger.actor_type = 'API'$$, 'actor_type API is accepted');
SELECT lives_ok($$SET LOCAL payledger.actor_type = 'SYSTEM'$$, 'actor_type SYSTEM is accepted');
SELECT throws_ok($$SET LOCAL payledger.actor_type = 'HACKER'$$,
	'22023', 'invalid value for parameter "payledger.actor_type": "HACKER"',
	'an unknown actor_type raises 22023 on SET');
SELECT is(current_setting('payledger.actor_type'), 'SYSTEM', 'the refused value left actor_type at the last accepted one');

SET LOCAL payledger.actor_type = 'OPERATOR';
SELECT is(pg_temp.xfer('op', 'a', 'b', 12, 'USD', 'audit-op'), 'posted', 'setup: a transfer by an operator');
SELECT is((SELECT actor_type FROM pg_temp.audit_of('op')), 'OPERATOR', 'the row records actor_type OPERATOR');

SET LOCAL payledger.actor_type TO DEFAULT;
SET LOCAL payledger.actor_id TO DEFAULT;
SET LOCAL payledger.ip_address TO DEFAULT;
SET LOCAL payledger.user_agent TO DEFAULT;
SET LOCAL payledger.device_id TO DEFAULT;
SELECT is(pg_temp.xfer('plain', 'a', 'b', 13, 'USD', 'audit-plain'), 'posted', 'setup: a transfer with no context');
SELECT results_eq(
	$$SELECT actor_type, actor_id, ip_address, user_agent_hash, device_id FROM pg_temp.audit_of('plain')$$,
	$$VALUES ('SYSTEM', current_user::text COLLATE "default", NULL::text, NULL::text, NULL::text)$$,
	'without context: actor SYSTEM / current_user, no IP, user agent or device');

------------------------------------------------------------------------------
-- correlation_id
------------------------------------------------------------------------------

INSERT INTO fx VALUES ('corr', payledger.uuid_v7());
SELECT set_config('payledger.correlation_id', pg_temp.acct('corr')::text, true) \gset
SELECT is(pg_temp.xfer('corr1', 'a', 'b', 14, 'USD', 'audit-corr1'), 'posted', 'setup: a transfer under a correlation id');
SELECT is(pg_temp.xfer('corr2', 'a', 'b', 15, 'USD', 'audit-corr2'), 'posted', 'setup: another one');
SELECT lives_ok($$SELECT payledger.freeze_account(pg_temp.acct('a'), 'flow'), payledger.unfreeze_account(pg_temp.acct('a'))$$,
	'setup: freeze and unfreeze under it');
SELECT results_eq(
	$$SELECT correlation_id FROM pg_temp.audit_of('corr1')
	  UNION ALL SELECT correlation_id FROM pg_temp.audit_of('corr2')
	  UNION ALL (SELECT correlation_id FROM payledger.payment_audit_log
	              WHERE account_id = pg_temp.acct('a') AND event_type IN ('ACCOUNT_FROZEN', 'ACCOUNT_UNFROZEN') ORDER BY id)$$,
	$$VALUES (pg_temp.acct('corr')), (pg_temp.acct('corr')), (pg_temp.acct('corr')), (pg_temp.acct('corr'))$$,
	'with payledger.correlation_id set, every event carries it');
SET LOCAL payledger.correlation_id TO DEFAULT;
SELECT is(pg_temp.xfer('corr3', 'a', 'b', 16, 'USD', 'audit-corr3'), 'posted', 'setup: a transfer after the reset');
SELECT is((SELECT correlation_id FROM pg_temp.audit_of('corr3')), pg_temp.tid('corr3'),
	'after the reset the correlation_id is the transfer id again');

------------------------------------------------------------------------------
-- one row per transfer; unique event ids
------------------------------------------------------------------------------

SELECT is_empty(
	$$SELECT r.label FROM pg_temp.res r LEFT JOIN payledger.payment_audit_log l ON l.payment_id = r.transfer_id
	   GROUP BY r.label HAVING count(l.id) <> 1$$,
	'every transfer of this test has exactly one audit row');
SELECT is_empty(
	$$SELECT event_id FROM payledger.payment_audit_log GROUP BY event_id HAVING count(*) > 1 OR event_id IS NULL$$,
	'every audit row has its own event_id');

------------------------------------------------------------------------------
-- sensitive data (section 7)
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('mail', 'a', 'b', 17, 'USD', 'audit-mail',
		'{"customer": {"email": "eve@example.com"}, "note": "receipt sent to eve@example.com today", "emails": ["bob@shop.co.uk"]}'),
	'posted', 'setup: a transfer whose metadata holds e-mail addresses');
SELECT is((SELECT metadata #>> '{customer,email}' FROM pg_temp.audit_of('mail')), 'e***@***.com',
	'an e-mail address in the audit metadata is stored masked (eve@example.com -> e***@***.com)');
SELECT is((SELECT metadata ->> 'note' FROM pg_temp.audit_of('mail')), 'receipt sent to e***@***.com today',
	'an address inside text is masked and the rest of the text is kept');
SELECT is((SELECT metadata #>> '{emails,0}' FROM pg_temp.audit_of('mail')), 'b***@***.uk',
	'an address in an array is masked to its top-level domain');
SELECT is_empty($$SELECT 1 FROM payledger.payment_audit_log WHERE metadata::text LIKE '%eve@example.com%'$$,
	'the clear address is stored nowhere in the audit log');
SELECT throws_ok(
	$$SET LOCAL payledger.actor_id = 'agent 4111111111111111';
	  SELECT payledger.transfer(pg_temp.acct('a'), pg_temp.acct('b'), 1, 'USD', 'audit-pan-actor')$$,
	'PY006', NULL,
	'a PAN in payledger.actor_id, which the audit row would store, raises PY006');

SELECT * FROM finish();
ROLLBACK;
