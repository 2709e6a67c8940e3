-- 18_read_transfers.sql: get_transfer and list_transfers: every kind of
-- transfer by its id (transfers, holds in each state, leg sets with their
-- legs, declined attempts, batch items, a payment's refund), PY005, the
-- filters of list_transfers, keyset pages without gaps or repeats, and
-- max_rows and status bounds (doc/reference.md, reading the ledger)

BEGIN;
\ir helpers.psql

SELECT plan(58);

-- the signatures, as the contract writes them
SELECT is(pg_get_function_arguments('payledger.get_transfer(uuid)'::regprocedure) || ' -> ' ||
		  pg_get_function_result('payledger.get_transfer(uuid)'::regprocedure),
	'transfer_id uuid -> TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text, amount bigint, from_account uuid, to_account uuid, legs jsonb, idempotency_key text, metadata jsonb, created_at timestamp with time zone)',
	'get_transfer(transfer_id) RETURNS TABLE(the twelve columns)');
SELECT is(pg_get_function_arguments('payledger.list_transfers(uuid, timestamptz, timestamptz, text, jsonb, uuid, integer)'::regprocedure) || ' -> ' ||
		  pg_get_function_result('payledger.list_transfers(uuid, timestamptz, timestamptz, text, jsonb, uuid, integer)'::regprocedure),
	$$account_id uuid DEFAULT NULL::uuid, since timestamp with time zone DEFAULT '-infinity'::timestamp with time zone, until timestamp with time zone DEFAULT 'infinity'::timestamp with time zone, status text DEFAULT NULL::text, metadata_contains jsonb DEFAULT NULL::jsonb, after_id uuid DEFAULT NULL::uuid, max_rows integer DEFAULT 100 -> TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text, amount bigint, from_account uuid, to_account uuid, legs jsonb, idempotency_key text, metadata jsonb, created_at timestamp with time zone)$$,
	'list_transfers(account_id, since, until, status, metadata_contains, after_id, max_rows DEFAULT 100), the same columns');

SELECT ok(pg_temp.open('sys', 'USD', NULL, 'system') IS NOT NULL
	AND pg_temp.open('a') IS NOT NULL AND pg_temp.open('b') IS NOT NULL
	AND pg_temp.open('c') IS NOT NULL AND pg_temp.open('other') IS NOT NULL, 'setup: accounts');
SELECT is(pg_temp.xfer('fund-a', 'sys', 'a', 10000, 'USD', 'auto', '{"order": "o-1", "tag": "fund"}'), 'posted', 'setup: fund a');
SELECT is(pg_temp.xfer('fund-other', 'sys', 'other', 500), 'posted', 'setup: fund other (not touching a, b or c)');

-- one of each kind, its result kept in res under a label
CREATE FUNCTION pg_temp.keep(p_label text, r payledger.transfer_result) RETURNS text LANGUAGE sql AS $$
	INSERT INTO pg_temp.res VALUES (p_label, r.transfer_id, r.status, r.reason_code, r.replayed, now(), now())
	RETURNING status $$;
SELECT is(pg_temp.xfer('ab', 'a', 'b', 300, 'USD', 'auto', '{"order": "o-2"}'), 'posted', 'setup: a transfer a -> b');
SELECT is(pg_temp.xfer('declined', 'b', 'c', 999999), 'rejected', 'setup: a declined transfer b -> c');
SELECT is(pg_temp.keep('hold-pending', payledger.hold(pg_temp.acct('a'), pg_temp.acct('c'), 40, 'USD', '1 day', 'k-hp', '{"order": "o-3"}')),
	'pending', 'setup: a pending hold a -> c');
SELECT is(pg_temp.keep('hold-posted', payledger.hold(pg_temp.acct('a'), pg_temp.acct('b'), 70, 'USD', '1 day', 'k-hq')),
	'pending', 'setup: a hold a -> b ...');
SELECT is((payledger.post_hold(pg_temp.tid('hold-posted'), 60, 'k-hq-post')).status, 'posted', '... posted for 60 of its 70');
SELECT is(pg_temp.keep('hold-voided', payledger.hold(pg_temp.acct('a'), pg_temp.acct('b'), 20, 'USD', '1 day', 'k-hv')),
	'pending', 'setup: a hold a -> b ...');
SELECT is((payledger.void_hold(pg_temp.tid('hold-voided'), 'k-hv-void')).status, 'voided', '... voided');
SELECT is(pg_temp.keep('hold-declined', payledger.hold(pg_temp.acct('c'), pg_temp.acct('a'), 5000, 'USD', '1 day', 'k-hd')),
	'rejected', 'setup: a declined hold c -> a');
SELECT is(pg_temp.keep('legs', payledger.transfer_legs(jsonb_build_array(
		jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('b'), 'amount', 11),
		jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('c'), 'amount', 22),
		jsonb_build_object('from', pg_temp.acct('b'), 'to', pg_temp.acct('c'), 'amount', 5)), 'USD', 'k-legs', '{"order": "o-4"}')),
	'posted', 'setup: a leg set a -> b, a -> c, b -> c');
SELECT is(pg_temp.keep('legs-declined', payledger.transfer_legs(jsonb_build_array(
		jsonb_build_object('from', pg_temp.acct('b'), 'to', pg_temp.acct('a'), 'amount', 1),
		jsonb_build_object('from', pg_temp.acct('c'), 'to', pg_temp.acct('a'), 'amount', 888888)), 'USD', 'k-legs-d')),
	'rejected', 'setup: a declined leg set');
SELECT is(pg_temp.keep('many', r), 'posted', 'setup: a transfer_many item b -> c')
  FROM payledger.transfer_many(ARRAY[pg_temp.acct('b')], ARRAY[pg_temp.acct('c')], ARRAY[3::bigint], 'USD', ARRAY['k-many']) r;

SELECT is(pg_temp.keep('hold-expired', payledger.hold(pg_temp.acct('a'), pg_temp.acct('b'), 9, 'USD', '1 millisecond', 'k-he')),
	'pending', 'setup: a hold of a millisecond ...');
SELECT ok(pg_sleep(0.01) IS NOT NULL AND payledger.expire_holds() = 1, '... expired');

-- a payment of a customer (d) to a merchant (m), captured, half refunded
SELECT ok(pg_temp.open('d') IS NOT NULL AND pg_temp.open('m') IS NOT NULL, 'setup: a customer and a merchant account');
SELECT is(pg_temp.xfer('fund-d', 'sys', 'd', 1000), 'posted', 'setup: fund the customer');
CREATE TEMP TABLE pay AS SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000a1', gen_random_uuid(), 100, 'USD',
	pg_temp.acct('d'), pg_temp.acct('m'), 'k-pay') AS id;
SELECT is(payledger.authorize_payment(id, 'k-pay-a')::text || ' ' || payledger.capture_payment(id, 'k-pay-c')::text
	|| ' ' || payledger.refund_payment(id, 50, 'k-pay-r')::text, 'authorized captured partially_refunded',
	'setup: the payment authorized, captured, half refunded') FROM pay;

-- get_transfer(id) as one text row
CREATE FUNCTION pg_temp.got(p_label text) RETURNS text LANGUAGE sql AS $$
	SELECT concat_ws(' | ', g.kind, g.status, coalesce(g.reason_code, '-'), g.currency, g.amount,
		   coalesce((SELECT name FROM pg_temp.fx WHERE id = g.from_account), '-'),
		   coalesce((SELECT name FROM pg_temp.fx WHERE id = g.to_account), '-'),
		   coalesce(g.idempotency_key, '-'), g.metadata::text)
	  FROM payledger.get_transfer(pg_temp.tid(p_label)) g $$;

SELECT is(pg_temp.got('ab'), 'transfer | posted | - | USD | 300 | a | b | key-ab | {"order": "o-2"}', 'a transfer');
SELECT is(pg_temp.got('declined'), 'transfer | rejected | INSUFFICIENT_FUNDS | USD | 999999 | b | c | key-declined | {}',
	'a declined transfer: its id, its reason');
SELECT is(pg_temp.got('hold-pending'), 'hold | pending | - | USD | 40 | a | c | k-hp | {"order": "o-3"}', 'a pending hold: the amount reserved');
SELECT is(pg_temp.got('hold-posted'), 'hold | posted | - | USD | 60 | a | b | k-hq | {}', 'a posted hold: the amount that moved');
SELECT is(pg_temp.got('hold-voided'), 'hold | voided | - | USD | 20 | a | b | k-hv | {}', 'a voided hold');
SELECT is(pg_temp.got('hold-declined'), 'hold | rejected | INSUFFICIENT_FUNDS | USD | 5000 | c | a | k-hd | {}', 'a declined hold');
SELECT is(pg_temp.got('legs'), 'legs | posted | - | USD | 38 | - | - | k-legs | {"order": "o-4"}',
	'a leg set: the total, no single from or to');
SELECT is((SELECT legs FROM payledger.get_transfer(pg_temp.tid('legs'))),
	jsonb_build_array(jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('b'), 'amount', 11),
		jsonb_build_object('from', pg_temp.acct('a'), 'to', pg_temp.acct('c'), 'amount', 22),
		jsonb_build_object('from', pg_temp.acct('b'), 'to', pg_temp.acct('c'), 'amount', 5)),
	'its legs, in the order given');
SELECT is(pg_temp.got('legs-declined') || ' | ' || (SELECT jsonb_array_length(legs) FROM payledger.get_transfer(pg_temp.tid('legs-declined'))),
	'legs | rejected | INSUFFICIENT_FUNDS | USD | 888889 | - | - | k-legs-d | {} | 2', 'a declined leg set, with its legs');
SELECT is(pg_temp.got('many'), 'transfer | posted | - | USD | 3 | b | c | k-many | {}', 'a transfer_many item is a transfer');
SELECT is(pg_temp.got('hold-expired'), 'hold | expired | - | USD | 9 | a | b | k-he | {}', 'an expired hold');
SELECT is((SELECT string_agg(kind || ' ' || status || ' ' || amount, ', ') FROM payledger.list_transfers(pg_temp.acct('d'))),
	'transfer posted 1000, hold posted 100, refund posted 50',
	'a payment''s money: its authorization''s hold, posted by the capture, and the refund');
SELECT is((SELECT created_at FROM payledger.get_transfer(pg_temp.tid('ab'))),
	(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('ab')), 'created_at is when it was recorded');
SELECT is((SELECT count(*) FROM payledger.get_transfer(pg_temp.tid('legs')) WHERE legs IS NOT NULL)
	+ (SELECT count(*) FROM payledger.get_transfer(pg_temp.tid('ab')) WHERE legs IS NOT NULL), 1::bigint,
	'legs is NULL for anything but a leg set');
SELECT throws_ok($$SELECT * FROM payledger.get_transfer('00000000-0000-7000-8000-00000000dead')$$,
	'PY005', 'transfer 00000000-0000-7000-8000-00000000dead does not exist', 'an unknown id: PY005');
SELECT throws_ok($$SELECT * FROM payledger.get_transfer(NULL)$$, '22004', NULL, 'a NULL id: 22004');

-- list_transfers: the ids it lists, as labels in list order
CREATE FUNCTION pg_temp.listed(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	out		text;
BEGIN
	EXECUTE format($q$SELECT string_agg(coalesce(r.label, '?'), ',' ORDER BY l.n)
		FROM (SELECT t.transfer_id, row_number() OVER () AS n FROM (%s) t) l
		LEFT JOIN pg_temp.res r ON r.transfer_id = l.transfer_id$q$, p_sql) INTO out;
	RETURN out;
END $$;

SELECT is(pg_temp.listed(format('SELECT * FROM payledger.list_transfers(%L)', pg_temp.acct('c'))),
	'declined,hold-pending,hold-declined,legs,legs-declined,many',
	'an account''s transfers, oldest first: from it and to it, holds, leg sets touching it in any leg');
SELECT is(pg_temp.listed(format('SELECT * FROM payledger.list_transfers(%L, status => %L)', pg_temp.acct('b'), 'rejected')),
	'declined,legs-declined', 'by status: rejected');
SELECT is(pg_temp.listed(format('SELECT * FROM payledger.list_transfers(%L, status => %L)', pg_temp.acct('b'), 'voided')),
	'hold-voided', 'by status: voided');
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(status => 'pending')$$),
	'hold-pending', 'every pending hold (no account)');
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(status => 'rejected')$$),
	'declined,hold-declined,legs-declined', 'every declined attempt, of every kind (no account)');
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(status => 'expired')$$),
	'hold-expired', 'every expired hold (no account)');
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(metadata_contains => '{"order": "o-3"}')$$),
	'hold-pending', 'by metadata containment (a hold''s metadata)');
SELECT is(pg_temp.listed(format($$SELECT * FROM payledger.list_transfers(%L, metadata_contains => '{"tag": "fund"}')$$, pg_temp.acct('a'))),
	'fund-a', 'by account and metadata');
-- the GIN indexes cover rows with metadata only: a filter other than '{}'
-- is served by them (the only other plan is a scan of the whole table), and
-- '{}' matches every row, those without metadata too
SET LOCAL enable_seqscan = off;
SET LOCAL enable_indexscan = off;
CREATE TEMP TABLE gin_scans AS SELECT pg_stat_get_xact_numscans('payledger.transfers_metadata'::regclass)
	+ pg_stat_get_xact_numscans('payledger.holds_metadata'::regclass) AS n;
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(metadata_contains => '{"order": "o-3"}')$$),
	'hold-pending', 'by metadata containment, only bitmap scans allowed');
SELECT ok(pg_stat_get_xact_numscans('payledger.transfers_metadata'::regclass)
	+ pg_stat_get_xact_numscans('payledger.holds_metadata'::regclass) >= (SELECT n FROM gin_scans) + 2,
	'through the GIN indexes on metadata of transfers and holds');
RESET enable_seqscan;
RESET enable_indexscan;
SELECT is(pg_temp.listed($$SELECT * FROM payledger.list_transfers(metadata_contains => '{}')$$),
	pg_temp.listed($$SELECT * FROM payledger.list_transfers()$$), 'the filter ''{}'' lists every transfer');
SELECT is(pg_temp.listed(format($$SELECT * FROM payledger.list_transfers(since => %L, until => %L)$$,
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('ab')),
		(SELECT created_at FROM payledger.holds WHERE id = pg_temp.tid('hold-pending')))),
	'ab,declined,hold-pending', 'since and until bound created_at, both inclusive');
SELECT is(pg_temp.listed(format($$SELECT * FROM payledger.list_transfers(%L, since => %L, until => %L)$$, pg_temp.acct('a'),
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('ab')),
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('legs')))),
	'ab,hold-pending,hold-posted,hold-voided,hold-declined,legs', 'an account''s window, leg sets and holds included');
-- a hold posted after since but made before it is outside the window: its
-- created_at is when it was made, whatever its post's transfers row says
SELECT results_eq(format($$SELECT transfer_id FROM payledger.list_transfers(%L, since => %L)$$, pg_temp.acct('b'),
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('hold-posted'))),
	format($$SELECT transfer_id FROM payledger.list_transfers(%L, max_rows => 1000) WHERE created_at >= %L$$, pg_temp.acct('b'),
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('hold-posted'))),
	'since is about the hold''s created_at, not its post''s, with an account ...');
SELECT results_eq(format($$SELECT transfer_id FROM payledger.list_transfers(since => %L)$$,
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('hold-posted'))),
	format($$SELECT transfer_id FROM payledger.list_transfers(max_rows => 1000) WHERE created_at >= %L$$,
		(SELECT created_at FROM payledger.transfers WHERE id = pg_temp.tid('hold-posted'))),
	'... and without');
SELECT is_empty($$SELECT * FROM payledger.list_transfers(since => clock_timestamp() + interval '1 hour')$$, 'a window in the future is empty');

-- keyset pages of 2 over the whole ledger: every transfer once, in order
CREATE FUNCTION pg_temp.paged(p_account uuid, p_size int) RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
	cursor_id	uuid;
	n			int;
	t			uuid;
BEGIN
	LOOP
		n := 0;
		FOR t IN SELECT transfer_id FROM payledger.list_transfers(p_account, after_id => cursor_id, max_rows => p_size) LOOP
			RETURN NEXT t;
			cursor_id := t;
			n := n + 1;
		END LOOP;
		EXIT WHEN n < p_size;
	END LOOP;
END $$;
SELECT results_eq($$SELECT * FROM pg_temp.paged(NULL, 2)$$,
	$$SELECT id FROM (SELECT id FROM payledger.transfers WHERE NOT (kind = 'hold' AND status = 'posted')
					  UNION ALL SELECT id FROM payledger.holds) x ORDER BY id$$,
	'pages of 2 with after_id: every transfer and hold exactly once, in id order');
SELECT results_eq(format($$SELECT * FROM pg_temp.paged(%L, 1)$$, pg_temp.acct('b')),
	format($$SELECT transfer_id FROM payledger.list_transfers(%L, max_rows => 1000)$$, pg_temp.acct('b')),
	'pages of 1 of one account: the same as one page of all');
SELECT throws_ok($$SELECT * FROM payledger.list_transfers(max_rows => 0)$$, '22023', 'max_rows must be between 1 and 1000', 'max_rows 0: 22023');
SELECT throws_ok($$SELECT * FROM payledger.list_transfers(max_rows => 1001)$$, '22023', NULL, 'max_rows 1001: 22023');
SELECT throws_ok($$SELECT * FROM payledger.list_transfers(status => 'done')$$, '22023', 'unknown transfer status "done"', 'an unknown status: 22023');

SELECT * FROM finish();
ROLLBACK;
