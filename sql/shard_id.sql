-- payledger.shard_id: a shard stamps its number into the last byte of every id it makes
SET payledger.require_idempotency_key = off;
SELECT payledger.uuid_v7() IS NOT NULL AS loaded;
SHOW payledger.shard_id;
SET payledger.shard_id = 3;
SELECT right(payledger.uuid_v7()::text, 2) AS last_byte;
SELECT payledger.create_account('USD', 'system', NULL) AS src \gset
SELECT payledger.create_account('USD') AS dst \gset
SELECT right(:'src', 2) AS source, right(:'dst', 2) AS destination;
SELECT transfer_id AS tid, status FROM payledger.transfer(:'src', :'dst', 5, 'USD') \gset
SELECT right(:'tid', 2) AS transfer, :'status' AS status;
SELECT event_type, right(event_id::text, 2) AS event
FROM payledger.payment_audit_log WHERE payment_id IN (:'tid', :'src', :'dst') ORDER BY id;
-- ids stay version 7, RFC variant, and ascending within the backend
WITH ids AS (SELECT n, payledger.uuid_v7() AS id FROM generate_series(1, 1000) n)
SELECT count(DISTINCT id) AS distinct_ids,
       bool_and(substr(id::text, 15, 1) = '7' AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS v7,
       bool_and(right(id::text, 2) = '03') AS stamped,
       bool_and(id > prev OR prev IS NULL) AS ascending
FROM (SELECT n, id, lag(id) OVER (ORDER BY n) AS prev FROM ids) s;
SET payledger.shard_id = 255;
SELECT right(payledger.uuid_v7()::text, 2) AS last_byte;
-- unset (the default): the last byte is random again
RESET payledger.shard_id;
SELECT count(DISTINCT right(payledger.uuid_v7()::text, 2)) > 10 AS random_again
FROM generate_series(1, 200);
\set VERBOSITY terse
SET payledger.shard_id = 256;
SET payledger.shard_id = -2;
-- only a superuser (or ALTER DATABASE ... SET) decides which shard a database is
CREATE ROLE payledger_shard_id_tester;
SET ROLE payledger_shard_id_tester;
SET payledger.shard_id = 1;
RESET ROLE;
DROP ROLE payledger_shard_id_tester;
