-- personal data: card numbers refused, e-mail and IP masked, agents hashed
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset

-- PAN shapes: 13 to 19 Luhn-valid digits, plain or grouped; non-Luhn passes
CREATE FUNCTION pg_temp.refused(meta jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM payledger.create_account('USD', 'generic', 0, meta);
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
SELECT shape, pg_temp.refused(jsonb_build_object('note', txt)) AS outcome
  FROM (VALUES ('13 digits', '4222222222222'),
               ('16 digits', '4111111111111111'),
               ('19 digits', '6011000990139424017'),
               ('spaces', 'card 4111 1111 1111 1111 ok'),
               ('dashes', '5500-0000-0000-0004'),
               ('not Luhn', '4111111111111112'),
               ('12 digits', '411111111111'),
               ('glued to letters', 'ref4111111111111111x')) AS s(shape, txt);
SELECT pg_temp.refused('{"deep": {"list": [1, {"x": "4111111111111111"}]}}') AS nested;
SELECT pg_temp.refused('{"n": 4111111111111111}') AS as_number;
SELECT pg_temp.refused('{"CVV": "123"}') AS cvv_key, pg_temp.refused('{"card_number": "x"}') AS card_number_key,
       pg_temp.refused('{"Pan": "x"}') AS pan_key, pg_temp.refused('{"cvc2": "x"}') AS cvc_key;

-- e-mail addresses are stored masked, in keys and values, at any depth
SELECT transfer_id AS t FROM payledger.transfer(:'sys', :'a', 5, 'USD', NULL,
  '{"customer": "eve@example.com", "cc": ["Bob.Smith+x@mail.example.co.uk"], "note": "mail carol@shop.io or x@y"}') \gset
SELECT metadata FROM payledger.payment_audit_log WHERE payment_id = :'t';
SELECT metadata FROM payledger.transfers WHERE id = :'t';
-- so are they in free text the ledger keeps: a freeze reason, in the account and its audit row
SELECT payledger.create_account('USD') AS fz \gset
SELECT payledger.freeze_account(:'fz', 'chargeback ring, reported by eve@example.com');
SELECT frozen_reason FROM payledger.accounts WHERE id = :'fz';
SELECT metadata FROM payledger.payment_audit_log WHERE account_id = :'fz' AND event_type = 'ACCOUNT_FROZEN';

-- context: IP masked, user agent and device id as SHA-256, actor from settings
BEGIN;
SET LOCAL payledger.actor_type = 'CUSTOMER';
SET LOCAL payledger.actor_id = 'cust-42';
SET LOCAL payledger.ip_address = '192.168.1.20';
SET LOCAL payledger.user_agent = 'Mozilla/5.0';
SET LOCAL payledger.device_id = 'device-1';
SET LOCAL payledger.correlation_id = '00000000-0000-7000-8000-00000000c0de';
SELECT transfer_id AS t2 FROM payledger.transfer(:'sys', :'a', 5, 'USD') \gset
COMMIT;
SELECT actor_type, actor_id, ip_address,
       user_agent_hash = encode(sha256('Mozilla/5.0'), 'hex') AS ua_hashed,
       device_id = encode(sha256('device-1'), 'hex') AS device_hashed,
       correlation_id
  FROM payledger.payment_audit_log WHERE payment_id = :'t2';
SET payledger.ip_address = '2001:db8:85a3::8a2e:370:7334';
SELECT transfer_id AS t3 FROM payledger.transfer(:'sys', :'a', 5, 'USD') \gset
SELECT ip_address FROM payledger.payment_audit_log WHERE payment_id = :'t3';
RESET payledger.ip_address;
SET payledger.actor_type = 'ROBOT';
SET payledger.ip_address = 'not-an-ip';
SET payledger.correlation_id = 'nope';
RESET payledger.actor_type;
RESET payledger.ip_address;
RESET payledger.correlation_id;

-- a UUID (8-4-4-4-12 hex) is never a card number, also when its digit
-- groups hold a Luhn-valid 13-19 digit run, alone or inside a key or a text;
-- card numbers grouped by spaces or dashes still are
CREATE FUNCTION pg_temp.key_refused(k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM payledger.transfer(payledger.create_account('USD', 'system', NULL),
							   payledger.create_account('USD'), 1, 'USD', k);
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
SELECT shape, pg_temp.key_refused(k) AS as_key, pg_temp.refused(jsonb_build_object('note', k)) AS in_metadata
  FROM (VALUES ('uuid', '41111111-1111-1111-a111-0123456789ab'),
               ('uuid, upper case', '41111111-1111-1111-A111-0123456789AB'),
               ('uuid, hex first group', 'ab111111-2222-3333-4444-123456789003'),
               ('prefixed uuid', 'order-41111111-1111-1111-a111-0123456789ab'),
               ('suffixed uuid', '41111111-1111-1111-a111-0123456789ab:capture'),
               ('uuid in text', 'retry of ab111111-2222-3333-4444-123456789003 at noon'),
               ('card, spaces', '4111 1111 1111 1111'),
               ('card, dashes', '4111-1111-1111-1111'),
               ('card after a uuid', '41111111-1111-1111-a111-0123456789ab 4111-1111-1111-1111')) AS s(shape, k);
