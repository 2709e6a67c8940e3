-- uuid_v7(): version 7, RFC variant, time-ordered within a backend
SELECT substr(payledger.uuid_v7()::text, 15, 1) AS version_nibble;
SELECT substr(payledger.uuid_v7()::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant;
-- the first 48 bits are the Unix time in milliseconds
SELECT abs(('x' || lpad(replace(substr(payledger.uuid_v7()::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint
           - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 5000 AS carries_the_clock;
-- 10,000 ids from one backend are distinct and come out in ascending order
WITH ids AS (SELECT n, payledger.uuid_v7() AS id FROM generate_series(1, 10000) n)
SELECT count(DISTINCT id) AS distinct_ids,
       bool_and(id > prev) AS ascending
FROM (SELECT n, id, lag(id) OVER (ORDER BY n) AS prev FROM ids) s
WHERE prev IS NOT NULL OR n = 1;
