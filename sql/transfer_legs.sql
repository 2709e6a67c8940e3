-- transfer_legs(): all legs or none; transfer_many(): each item on its own
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS buyer \gset
SELECT payledger.create_account('USD') AS seller \gset
SELECT payledger.create_account('USD') AS fee \gset
SELECT payledger.create_account('EUR') AS eur \gset
SELECT status FROM payledger.transfer(:'sys', :'buyer', 1000, 'USD');

-- a marketplace split: buyer pays seller, seller pays the platform fee
SELECT transfer_id AS t1, status, reason_code FROM payledger.transfer_legs(
  jsonb_build_array(
    jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 600),
    jsonb_build_object('from', :'seller', 'to', :'fee', 'amount', 60)), 'USD') \gset
SELECT :'status' AS status;
SELECT (SELECT balance FROM payledger.get_balance(:'buyer')) AS buyer,
       (SELECT balance FROM payledger.get_balance(:'seller')) AS seller,
       (SELECT balance FROM payledger.get_balance(:'fee')) AS fee;
SELECT kind, status, amount FROM payledger.transfers WHERE id = :'t1';
SELECT count(*) AS entries, sum(amount) AS net FROM payledger.entries WHERE transfer_id = :'t1';

-- legs are checked in order: the fee cannot come out before the seller is paid
SELECT status, reason_code FROM payledger.transfer_legs(
  jsonb_build_array(
    jsonb_build_object('from', :'fee', 'to', :'sys', 'amount', 100),
    jsonb_build_object('from', :'buyer', 'to', :'fee', 'amount', 100)), 'USD');
-- one leg short: nothing posts, the audit row names the leg
SELECT transfer_id AS t2, status, reason_code FROM payledger.transfer_legs(
  jsonb_build_array(
    jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 100),
    jsonb_build_object('from', :'buyer', 'to', :'fee', 'amount', 1000)), 'USD') \gset
SELECT :'status' AS status, :'reason_code' AS reason_code;
SELECT error_message, success FROM payledger.payment_audit_log WHERE payment_id = :'t2';
SELECT balance FROM payledger.get_balance(:'buyer');

-- malformed legs: 22023 with the leg's index
\set VERBOSITY default
SELECT * FROM payledger.transfer_legs('{"from": 1}', 'USD');
SELECT * FROM payledger.transfer_legs('[]', 'USD');
SELECT * FROM payledger.transfer_legs('[1]', 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 1),
  jsonb_build_object('from', :'buyer', 'amount', 1)), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 1, 'note', 'x')), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', 'not-a-uuid', 'to', :'seller', 'amount', 1)), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 1.5)), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 0)), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', '5')), 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'buyer', 'amount', 5)), 'USD');
SET payledger.max_legs = 2;
SELECT * FROM payledger.transfer_legs((SELECT jsonb_agg(jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 1)) FROM generate_series(1, 3)), 'USD');
RESET payledger.max_legs;
\set VERBOSITY terse
SELECT * FROM payledger.transfer_legs(NULL, 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', '00000000-0000-0000-0000-000000000000', 'amount', 1)), 'USD');
\set VERBOSITY sqlstate
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'eur', 'amount', 1)), 'USD');
\set VERBOSITY terse
SELECT balance FROM payledger.get_balance(:'buyer');

-- transfer_many: one result per item, in order, posted or declined on its own
SELECT ordinality, status, reason_code, replayed
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer', :'seller']::uuid[],
                               ARRAY[:'seller', :'fee', :'buyer']::uuid[],
                               ARRAY[100, 100000, 5]::bigint[], 'USD') WITH ORDINALITY;
SELECT (SELECT balance FROM payledger.get_balance(:'buyer')) AS buyer,
       (SELECT balance FROM payledger.get_balance(:'seller')) AS seller;
-- keys replay per item, also a key used twice in one batch
SELECT ordinality, status, replayed
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer']::uuid[], ARRAY[:'seller', :'seller']::uuid[],
                               ARRAY[1, 1]::bigint[], 'USD', ARRAY['m-1', 'm-1']) WITH ORDINALITY;
SELECT ordinality, status, replayed
  FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY[:'seller']::uuid[],
                               ARRAY[1]::bigint[], 'USD', ARRAY['m-1']) WITH ORDINALITY;
SELECT status, replayed FROM payledger.transfer(:'buyer', :'seller', 1, 'USD', 'm-1');
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY[:'seller']::uuid[],
                                      ARRAY[2]::bigint[], 'USD', ARRAY['m-1']);
SELECT count(*) FROM payledger.transfer_many('{}', '{}', '{}', 'USD');
-- with keys optional, a batch may key some items and not others
SELECT ordinality, status, replayed
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer']::uuid[], ARRAY[:'seller', :'seller']::uuid[],
                               ARRAY[1, 1]::bigint[], 'USD', ARRAY['m-2', NULL]) WITH ORDINALITY;
-- malformed batches raise and post nothing
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY[:'seller', :'fee']::uuid[], ARRAY[1]::bigint[], 'USD');
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer']::uuid[], ARRAY[:'seller', :'fee']::uuid[], ARRAY[1, 0]::bigint[], 'USD');
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer', NULL]::uuid[], ARRAY[:'seller', :'fee']::uuid[], ARRAY[1, 1]::bigint[], 'USD');
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY[:'seller']::uuid[], ARRAY[1]::bigint[], 'USD', ARRAY['a', 'b']);
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY['00000000-0000-0000-0000-000000000000']::uuid[], ARRAY[1]::bigint[], 'USD');
RESET payledger.require_idempotency_key;
SELECT * FROM payledger.transfer_many(ARRAY[:'buyer']::uuid[], ARRAY[:'seller']::uuid[], ARRAY[1]::bigint[], 'USD');
SELECT * FROM payledger.transfer_legs(jsonb_build_array(
  jsonb_build_object('from', :'buyer', 'to', :'seller', 'amount', 1)), 'USD');
SELECT (SELECT balance FROM payledger.get_balance(:'buyer')) AS buyer;
SELECT check_name, ok FROM payledger.check_ledger() WHERE NOT ok;

-- transfer_many looks each key up once (index scans of the key store
-- during the call): new keys, the same batch replayed, and a key used
-- twice in one batch, whose second item is looked up at its turn; a
-- repeated key with other parameters, or a key of an earlier call with
-- other parameters, is PY002 and writes nothing
CREATE FUNCTION pg_temp.key_scans() RETURNS bigint LANGUAGE sql AS $$
	SELECT pg_catalog.pg_stat_get_xact_numscans('payledger.idempotency_keys_pkey'::regclass) $$;
BEGIN;
SELECT pg_temp.key_scans() AS scans0 \gset
SELECT string_agg(status || '/' || replayed, ',' ORDER BY ordinality) AS results
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer', :'buyer', :'buyer', :'buyer']::uuid[],
                               ARRAY[:'seller', :'seller', :'seller', :'seller', :'seller']::uuid[],
                               ARRAY[1, 2, 3, 4, 5]::bigint[], 'USD',
                               ARRAY['once-1', 'once-2', 'once-3', 'once-4', 'once-5']) WITH ORDINALITY;
SELECT pg_temp.key_scans() - :scans0 AS new_keys_scans;
COMMIT;
BEGIN;
SELECT pg_temp.key_scans() AS scans0 \gset
SELECT string_agg(status || '/' || replayed, ',' ORDER BY ordinality) AS results
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer', :'buyer', :'buyer', :'buyer']::uuid[],
                               ARRAY[:'seller', :'seller', :'seller', :'seller', :'seller']::uuid[],
                               ARRAY[1, 2, 3, 4, 5]::bigint[], 'USD',
                               ARRAY['once-1', 'once-2', 'once-3', 'once-4', 'once-5']) WITH ORDINALITY;
SELECT pg_temp.key_scans() - :scans0 AS replayed_batch_scans;
COMMIT;
BEGIN;
SELECT pg_temp.key_scans() AS scans0 \gset
SELECT string_agg(status || '/' || replayed, ',' ORDER BY ordinality) AS results
  FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer', :'buyer']::uuid[],
                               ARRAY[:'seller', :'seller', :'seller']::uuid[],
                               ARRAY[7, 7, 8]::bigint[], 'USD',
                               ARRAY['twice-1', 'twice-1', 'once-6']) WITH ORDINALITY;
SELECT pg_temp.key_scans() - :scans0 AS repeated_key_scans;
COMMIT;
\set VERBOSITY sqlstate
SELECT status FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer']::uuid[], ARRAY[:'seller', :'seller']::uuid[],
                                           ARRAY[9, 10]::bigint[], 'USD', ARRAY['twice-2', 'twice-2']);
SELECT status FROM payledger.transfer_many(ARRAY[:'buyer', :'buyer']::uuid[], ARRAY[:'seller', :'seller']::uuid[],
                                           ARRAY[9, 9]::bigint[], 'USD', ARRAY['twice-3', 'once-1']);
\set VERBOSITY terse
SELECT count(*) AS written FROM payledger.transfers WHERE idempotency_key IN ('twice-2', 'twice-3');
