-- transfer(): malformed requests raise with the contract's SQLSTATE and write nothing
SET payledger.require_idempotency_key = off;

-- prints SQLSTATE and message, with UUIDs masked, so both are checked
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM,
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END $$;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset
SELECT payledger.create_account('EUR') AS eur \gset
SELECT payledger.create_account('EUR', 'system', NULL) AS eursys \gset
SELECT count(*) AS n FROM payledger.payment_audit_log \gset
SELECT :n AS audit_rows_before \gset

-- 22004: required arguments
SELECT pg_temp.err(format('SELECT payledger.transfer(NULL, %L, 1, ''USD'')', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, NULL, 1, ''USD'')', :'sys'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, NULL, ''USD'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, NULL)', :'sys', :'a'));
-- 22023: amounts, currency, same account, key shape
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 0, ''USD'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, -5, ''USD'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''XYZ'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''usd'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'')', :'a', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', '''')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', repeat(''k'', 256))', :'sys', :'a'));
-- PY006: card data in metadata, at any depth, or in the key
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', NULL, ''{"note": "4111111111111111"}'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', NULL, ''{"a": {"b": ["5500-0000-0000-0004"]}}'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', NULL, ''{"CVV": "123"}'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', NULL, ''{"n": 4111111111111111}'')', :'sys', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'', ''order 4111 1111 1111 1111'')', :'sys', :'a'));
-- PY005: unknown accounts
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, ''00000000-0000-0000-0000-000000000000'', 1, ''USD'')', :'sys'));
SELECT pg_temp.err(format('SELECT payledger.transfer(''00000000-0000-0000-0000-000000000000'', %L, 1, ''USD'')', :'a'));
-- PY004: currency
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'')', :'sys', :'eur'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'')', :'eursys', :'eur'));
-- 22003: a balance would overflow bigint
SELECT status FROM payledger.transfer(:'eursys', :'eur', 9223372036854775807, 'EUR');
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''EUR'')', :'eursys', :'eur'));
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 9223372036854775807, ''EUR'')', :'eur', :'eursys'));
SELECT balance FROM payledger.get_balance(:'eur');

-- precedence: the argument check comes first, then unknown ids, then currency
SELECT pg_temp.err(format('SELECT payledger.transfer(''00000000-0000-0000-0000-000000000000'', %L, NULL, ''USD'')', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(''00000000-0000-0000-0000-000000000000'', %L, 0, ''USD'')', :'a'));
SELECT pg_temp.err(format('SELECT payledger.transfer(''00000000-0000-0000-0000-000000000000'', %L, 1, ''USD'')', :'eur'));

-- PY008: a key is required by default
RESET payledger.require_idempotency_key;
SHOW payledger.require_idempotency_key;
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 1, ''USD'')', :'sys', :'a'));
-- the argument check still comes first
SELECT pg_temp.err(format('SELECT payledger.transfer(%L, %L, 0, ''USD'')', :'sys', :'a'));

-- none of that wrote anything but the two transfers of the overflow setup
SELECT count(*) - :n AS new_audit_rows FROM payledger.payment_audit_log;
SELECT count(*) AS a_entries FROM payledger.entries WHERE account_id = :'a';
