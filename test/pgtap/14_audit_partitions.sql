-- 14_audit_partitions.sql: monthly partitions of the audit log
-- (create_audit_partitions, archive_audit_partition, verify_audit_archive)
--
-- Each month is a child table payment_audit_log_YYYY_MM (UTC) that inherits
-- from payledger.payment_audit_log, with its event id range as a CHECK, its
-- own indexes and the append-only guard ENABLE ALWAYS.  Every audit row
-- goes into the child of its month (the parent keeps the rest); the log
-- verifies across parent and months; the months are as protected as the
-- log, for their owner and for a superuser; archiving refuses what is not
-- an ended month.  Archiving an ended month needs a clock in the past
-- (t/ under libfaketime), so it is not done here.  The months made here
-- vanish with the test's transaction.

BEGIN;
\ir helpers.psql

SELECT plan(109);

-- The UTC month p_n months from now: its first instant (as a UTC
-- timestamp), its partition's name, and the partition itself (NULL if none).
CREATE FUNCTION pg_temp.month_start(p_n integer) RETURNS timestamp LANGUAGE sql STABLE
	AS $$ SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => p_n) $$;
CREATE FUNCTION pg_temp.month(p_n integer) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT 'payment_audit_log_' || to_char(pg_temp.month_start(p_n), 'YYYY_MM') $$;
CREATE FUNCTION pg_temp.child(p_n integer) RETURNS regclass LANGUAGE sql STABLE
	AS $$ SELECT to_regclass('payledger.' || pg_temp.month(p_n)) $$;
-- The smallest UUIDv7 of a UTC instant's millisecond: 48 bits of Unix time
-- in milliseconds, then zeros.
CREATE FUNCTION pg_temp.bound(p_at timestamp) RETURNS uuid LANGUAGE sql IMMUTABLE
	AS $$ SELECT (lpad(to_hex((extract(epoch FROM p_at) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid $$;

-- months are UTC whatever the session's time zone: run at UTC+14
SET LOCAL TimeZone = 'Pacific/Kiritimati';

CREATE ROLE regress_owner;		-- will own a month
CREATE ROLE regress_nopriv;		-- USAGE on the schema and what PUBLIC may run
GRANT USAGE ON SCHEMA payledger TO regress_owner, regress_nopriv;

DO $$
BEGIN
	PERFORM pg_temp.open('sys', 'USD', NULL, 'system');
	PERFORM pg_temp.open('a');
	PERFORM pg_temp.open('b');
END $$;

------------------------------------------------------------------------------
-- before any month exists
------------------------------------------------------------------------------

SELECT is_empty($$SELECT * FROM payledger.audit_partitions$$, 'setup: no month exists yet');
SELECT is(pg_temp.xfer('before', 'sys', 'a', 1000), 'posted', 'setup: a transfer before any month exists');
SELECT results_eq(
	$$SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('before')$$,
	ARRAY['payledger.payment_audit_log'],
	'without a month, the audit row goes into payledger.payment_audit_log itself');
CREATE TEMP TABLE cp AS SELECT payledger.audit_checkpoint() AS checkpoint;

SELECT is(pg_temp.undone(
		$q$SELECT payledger.create_audit_partitions(0);
		   SELECT pg_temp.xfer('in-undone', 'sys', 'a', 10)$q$,
		$q$SELECT tableoid::regclass::text FROM payledger.payment_audit_log
		    WHERE idempotency_key = 'key-in-undone'$q$),
	'payledger.' || pg_temp.month(0),
	'a row written right after create_audit_partitions() goes into the new month (undone)');
SELECT is(pg_temp.xfer('after-undone', 'sys', 'a', 10), 'posted', 'a transfer after the month was rolled back posts');
SELECT results_eq(
	$$SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('after-undone')$$,
	ARRAY['payledger.payment_audit_log'],
	'and its audit row goes into the parent again (the rolled-back month is forgotten)');

------------------------------------------------------------------------------
-- create_audit_partitions()
------------------------------------------------------------------------------

SELECT results_eq(
	$$SELECT p::text FROM payledger.create_audit_partitions(0) p$$,
	ARRAY['payledger.' || pg_temp.month(0)],
	'create_audit_partitions(0) makes and returns this month (UTC)');
CREATE TEMP TABLE mark AS
	SELECT (SELECT max(id) FROM payledger.payment_audit_log) AS max_id,
		   (SELECT count(*) FROM ONLY payledger.payment_audit_log) AS parent_rows;
SELECT results_eq(
	$$SELECT p::text FROM payledger.create_audit_partitions(2) p ORDER BY 1$$,
	ARRAY['payledger.' || pg_temp.month(1), 'payledger.' || pg_temp.month(2)],
	'create_audit_partitions(2) returns only the two months it made, not this one again');
SELECT is_empty($$SELECT * FROM payledger.create_audit_partitions(2)$$,
	'asked again, it makes and returns none');
SELECT is_empty($$SELECT * FROM payledger.create_audit_partitions()$$,
	'the default is 2 months ahead: nothing new either');

SELECT results_eq(
	$$SELECT partition_name, range_from, range_to, covers_from, covers_until
	    FROM payledger.audit_partitions ORDER BY range_from$$,
	$$SELECT pg_temp.month(n), pg_temp.bound(pg_temp.month_start(n)), pg_temp.bound(pg_temp.month_start(n + 1)),
	         pg_temp.month_start(n) AT TIME ZONE 'UTC', pg_temp.month_start(n + 1) AT TIME ZONE 'UTC'
	    FROM generate_series(0, 2) n ORDER BY n$$,
	'payledger.audit_partitions records each month: name, UUIDv7 bounds of its first millisecond and the next month''s, UTC times');
SELECT ok((SELECT bool_and(created_at IS NOT NULL AND created_at <= clock_timestamp()) FROM payledger.audit_partitions),
	'and when each was made');
SELECT results_eq(
	$$SELECT inhrelid::regclass::text FROM pg_inherits
	   WHERE inhparent = 'payledger.payment_audit_log'::regclass ORDER BY 1$$,
	$$SELECT 'payledger.' || pg_temp.month(n) FROM generate_series(0, 2) n ORDER BY 1$$,
	'the three months inherit from payledger.payment_audit_log');
SELECT results_eq(
	$$SELECT DISTINCT c.relkind::text, c.relispartition FROM pg_class c
	   WHERE c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'payledger.payment_audit_log'::regclass)$$,
	$$VALUES ('r', false)$$,
	'they are ordinary tables (inheritance, not declarative partitions)');
SELECT results_eq(
	$$SELECT conrelid::regclass::text, conname::text COLLATE "default", pg_get_constraintdef(oid) FROM pg_constraint
	   WHERE contype = 'c' AND conrelid IN (SELECT inhrelid FROM pg_inherits
	                                         WHERE inhparent = 'payledger.payment_audit_log'::regclass)
	   ORDER BY 1, 2$$,
	$$SELECT 'payledger.' || pg_temp.month(n), pg_temp.month(n) || '_range',
	         format('CHECK (((event_id >= %L::uuid) AND (event_id < %L::uuid)))',
	                pg_temp.bound(pg_temp.month_start(n)), pg_temp.bound(pg_temp.month_start(n + 1)))
	    FROM generate_series(0, 2) n ORDER BY 1, 2$$,
	'each month has CHECK <name>_range: lower bound <= event_id < the next month''s bound');
SELECT results_eq(
	$$SELECT conrelid::regclass::text, conname::text COLLATE "default", pg_get_constraintdef(oid) FROM pg_constraint
	   WHERE contype = 'u' AND conrelid IN (SELECT inhrelid FROM pg_inherits
	                                         WHERE inhparent = 'payledger.payment_audit_log'::regclass)
	   ORDER BY 1, 2$$,
	$$SELECT 'payledger.' || pg_temp.month(n), pg_temp.month(n) || '_event_id_key', 'UNIQUE (event_id)'
	    FROM generate_series(0, 2) n ORDER BY 1, 2$$,
	'each month has UNIQUE <name>_event_id_key (event_id)');
SELECT results_eq(
	$$SELECT pg_get_indexdef(indexrelid) FROM pg_index
	   WHERE NOT indisunique AND indrelid IN (SELECT inhrelid FROM pg_inherits
	                                           WHERE inhparent = 'payledger.payment_audit_log'::regclass)
	   ORDER BY 1$$,
	$$SELECT format('CREATE INDEX %s_%s ON payledger.%s USING btree (%s)', pg_temp.month(n), i.name, pg_temp.month(n), i.cols)
	    FROM generate_series(0, 2) n,
	         (VALUES ('payment', 'payment_id'), ('delivery', 'era, txid, id')) i(name, cols)
	   ORDER BY 1$$,
	'each month has the indexes <name>_payment (payment_id) and <name>_delivery (era, txid, id)');
SELECT results_eq(
	$$SELECT tgrelid::regclass::text, tgenabled::text, pg_get_triggerdef(oid) FROM pg_trigger
	   WHERE NOT tgisinternal AND tgrelid IN (SELECT inhrelid FROM pg_inherits
	                                           WHERE inhparent = 'payledger.payment_audit_log'::regclass)
	   ORDER BY 1, 3$$,
	$$SELECT 'payledger.' || pg_temp.month(n), 'A', t.def
	    FROM generate_series(0, 2) n,
	         LATERAL (VALUES (format('CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE OR TRUNCATE ON payledger.%s'
	                                 ' FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation()', pg_temp.month(n))),
	                         (format('CREATE TRIGGER payledger_insert_guard BEFORE INSERT ON payledger.%s'
	                                 ' FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_insert()', pg_temp.month(n)))) t(def)
	   ORDER BY 1, 3$$,
	'each month has the statement triggers audit_append_only (forbid_mutation) and payledger_insert_guard (guard_insert), ENABLE ALWAYS, and no other');

-- the range CHECK at work (rows inserted by hand with the INSERT guard off, undone)
SELECT is(pg_temp.undone(format(
		$q$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		   ALTER TABLE %1$s DISABLE TRIGGER payledger_insert_guard;
		   INSERT INTO %1$s (event_id, event_time, server_time, event_type, actor_type, actor_id, success)
		   VALUES (%2$L, now(), now(), 'TRANSFER_POSTED', 'SYSTEM', 'mallory', true)$q$,
		pg_temp.child(0), pg_temp.bound(pg_temp.month_start(0)))),
	'ok', 'the range CHECK takes the month''s lower bound itself');
SELECT pg_temp.raises(format(
		$q$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		   ALTER TABLE %1$s DISABLE TRIGGER payledger_insert_guard;
		   INSERT INTO %1$s (event_id, event_time, server_time, event_type, actor_type, actor_id, success)
		   VALUES (%2$L, now(), now(), 'TRANSFER_POSTED', 'SYSTEM', 'mallory', true)$q$,
		pg_temp.child(0), pg_temp.bound(pg_temp.month_start(1))),
	'23514', 'the range CHECK refuses the next month''s lower bound (23514)',
	format('violates check constraint "%s_range"', pg_temp.month(0)));

-- the bounds of months_ahead
SELECT pg_temp.raises($$SELECT payledger.create_audit_partitions(NULL)$$,
	'22004', 'create_audit_partitions(NULL) raises 22004', 'months_ahead must not be null');
SELECT pg_temp.raises($$SELECT payledger.create_audit_partitions(-1)$$,
	'22023', 'create_audit_partitions(-1) raises 22023', 'months_ahead must be between 0 and 120');
SELECT pg_temp.raises($$SELECT payledger.create_audit_partitions(121)$$,
	'22023', 'create_audit_partitions(121) raises 22023', 'months_ahead must be between 0 and 120');
SELECT is(pg_temp.undone(
		$q$CREATE TEMP TABLE made120 AS SELECT p::text AS p FROM payledger.create_audit_partitions(120) p$q$,
		$q$SELECT count(*) || ' ' || max(p) FROM made120$q$),
	'118 payledger.' || pg_temp.month(120),
	'create_audit_partitions(120) is allowed and makes the 118 missing months, ten years ahead (undone)');

-- the list of months is append-only
SELECT pg_temp.raises($$UPDATE payledger.audit_partitions SET range_to = range_from$$,
	'PY003', 'UPDATE of payledger.audit_partitions raises PY003');
SELECT pg_temp.raises($$DELETE FROM payledger.audit_partitions$$,
	'PY003', 'DELETE FROM payledger.audit_partitions raises PY003');
SELECT pg_temp.raises($$TRUNCATE payledger.audit_archives$$,
	'PY003', 'TRUNCATE payledger.audit_archives raises PY003');

------------------------------------------------------------------------------
-- every writer routes into this month's child
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('now', 'sys', 'a', 500), 'posted', 'setup: a transfer after the months were made');
SELECT isnt(pg_temp.open('c'), NULL, 'setup: an account opened after the months were made');
SELECT is(pg_temp.xfer('dec', 'a', 'b', 100000), 'rejected', 'setup: a declined transfer');
SELECT is((payledger.hold(pg_temp.acct('a'), pg_temp.acct('b'), 100, 'USD', '1 day', 'key-hold')).status,
	'pending', 'setup: a hold');

SELECT results_eq(
	$$SELECT event_type, tableoid::regclass::text FROM payledger.payment_audit_log
	   WHERE id > (SELECT max_id FROM mark) ORDER BY id$$,
	format($$VALUES ('TRANSFER_POSTED', %1$L), ('ACCOUNT_CREATED', %1$L), ('TRANSFER_REJECTED', %1$L),
	                ('HOLD_CREATED', %1$L)$$, 'payledger.' || pg_temp.month(0)),
	'transfer, create_account, a declined transfer and hold all write into this month''s child');
SELECT is((SELECT count(*) FROM ONLY payledger.payment_audit_log), (SELECT parent_rows FROM mark),
	'no row went into the parent once this month existed');
SELECT is_empty(
	$$SELECT * FROM payledger.payment_audit_log WHERE tableoid IN (pg_temp.child(1), pg_temp.child(2))$$,
	'the months ahead are still empty');
SELECT is(
	(SELECT count(*) FROM payledger.payment_audit_log l
	   JOIN payledger.audit_partitions p ON l.tableoid = to_regclass('payledger.' || p.partition_name)
	  WHERE l.event_id >= p.range_from AND l.event_id < p.range_to),
	(SELECT count(*) FROM payledger.payment_audit_log WHERE tableoid <> 'payledger.payment_audit_log'::regclass),
	'every row in a month lies in that month''s range (the writer bypasses the CHECK)');

SELECT results_eq(
	$$SELECT payment_id = pg_temp.tid('dec'), event_id <> pg_temp.tid('dec'),
	         substr(event_id::text, 15, 1), substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')
	    FROM payledger.payment_audit_log WHERE idempotency_key = 'key-dec'$$,
	$$VALUES (true, true, '7', true)$$,
	'the TRANSFER_REJECTED row names the transfer as payment_id and has an event id of its own, a UUIDv7');

------------------------------------------------------------------------------
-- verifying, checking and counting across parent and months
------------------------------------------------------------------------------

SELECT ok((SELECT count(*) FROM ONLY payledger.payment_audit_log) > 0
		  AND (SELECT count(*) FROM payledger.payment_audit_log WHERE tableoid = pg_temp.child(0)) > 0,
	'the log now has rows in the parent and in this month');
SELECT results_eq(
	$$SELECT ok, rows_checked, first_bad_event_id FROM payledger.verify_audit_log()$$,
	$$SELECT true, count(*), NULL::uuid FROM payledger.payment_audit_log$$,
	'verify_audit_log() checks every row, parent and month, and they verify');
SELECT results_eq(
	$$SELECT ok, first_bad_event_id FROM payledger.verify_audit_log((SELECT checkpoint FROM cp))$$,
	$$VALUES (true, NULL::uuid)$$,
	'verify_audit_log(checkpoint) with a checkpoint taken before the months existed is ok');
SELECT is(pg_temp.undone(format(
		$q$ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		   ALTER TABLE %s DISABLE TRIGGER audit_append_only;
		   UPDATE %s SET amount_cents = 3 WHERE payment_id = %L$q$,
		pg_temp.child(0), pg_temp.child(0), pg_temp.tid('now')),
		format($q$SELECT ok || ' ' || (first_bad_event_id = (SELECT event_id FROM payledger.payment_audit_log
		                                                   WHERE payment_id = %L))
		          FROM payledger.verify_audit_log()$q$, pg_temp.tid('now'))),
	'false true', 'a row changed in a month behind the guards: verify_audit_log() is not ok and names it (undone)');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes with rows in parent and month');
SELECT is(
	(SELECT value FROM payledger.metrics WHERE metric = 'payledger_audit_rows_total'),
	(SELECT count(*)::double precision FROM payledger.payment_audit_log),
	'payledger_audit_rows_total counts the rows of parent and months');

------------------------------------------------------------------------------
-- archive_audit_partition() and verify_audit_archive() refuse
------------------------------------------------------------------------------

SELECT pg_temp.raises(format($$SELECT payledger.archive_audit_partition(%L)$$, pg_temp.child(0)),
	'55000', 'archiving this month raises 55000',
	format('^partition %s is not over yet$', pg_temp.month(0)));
SELECT pg_temp.raises(format($$SELECT payledger.archive_audit_partition(%L)$$, pg_temp.child(1)),
	'55000', 'archiving next month raises 55000',
	format('^partition %s is not over yet$', pg_temp.month(1)));
SELECT pg_temp.raises($$SELECT payledger.archive_audit_partition('payledger.payment_audit_log')$$,
	'22023', 'archiving the parent raises 22023',
	'^payment_audit_log is not a monthly partition of payledger\.payment_audit_log$');
SELECT pg_temp.raises($$SELECT payledger.archive_audit_partition('payledger.accounts')$$,
	'22023', 'archiving payledger.accounts raises 22023',
	'^accounts is not a monthly partition of payledger\.payment_audit_log$');
SELECT pg_temp.raises(format(
		$q$CREATE TABLE public.%1$I () INHERITS (payledger.payment_audit_log);
		   SELECT payledger.archive_audit_partition('public.%1$I')$q$, pg_temp.month(0)),
	'22023', 'archiving a look-alike of this month in schema public (same name, inherits) raises 22023',
	'is not a monthly partition of payledger\.payment_audit_log$');
SELECT pg_temp.raises($$SELECT payledger.archive_audit_partition(NULL)$$,
	'22004', 'archive_audit_partition(NULL) raises 22004', 'partition must not be null');
SELECT pg_temp.raises($$CREATE VIEW public.month_view AS SELECT * FROM payledger.payment_audit_log;
		SELECT * FROM payledger.verify_audit_archive('public.month_view')$$,
	'22023', 'verify_audit_archive() of a view raises 22023',
	'^"month_view" is not a table with the columns of payledger\.payment_audit_log$');
SELECT pg_temp.raises($$CREATE TABLE public.retyped (LIKE payledger.payment_audit_log);
		ALTER TABLE public.retyped ALTER COLUMN txid TYPE bigint USING txid::text::bigint;
		SELECT * FROM payledger.verify_audit_archive('public.retyped')$$,
	'22023', 'verify_audit_archive() of a table with a column of another type raises 22023',
	'^"retyped" is not a table with the columns of payledger\.payment_audit_log$');
SELECT pg_temp.raises($$CREATE TABLE public.shorter (LIKE payledger.payment_audit_log);
		ALTER TABLE public.shorter DROP COLUMN era;
		SELECT * FROM payledger.verify_audit_archive('public.shorter')$$,
	'22023', 'verify_audit_archive() of a table missing a column raises 22023',
	'^"shorter" is not a table with the columns of payledger\.payment_audit_log$');
SELECT pg_temp.raises($$SELECT * FROM payledger.verify_audit_archive(0::regclass)$$,
	'22023', 'verify_audit_archive() of an OID naming no relation raises 22023',
	'^relation with OID 0 does not exist$');
SELECT pg_temp.raises($$SELECT * FROM payledger.verify_audit_archive('payledger.accounts')$$,
	'22023', 'verify_audit_archive() of a ledger table that is not the log raises 22023',
	'^"accounts" is not a table with the columns of payledger\.payment_audit_log$');
SELECT pg_temp.raises(format($$SELECT * FROM payledger.verify_audit_archive(%L)$$, pg_temp.child(0)),
	'22023', 'verify_audit_archive() of a month that was never archived raises 22023',
	format('has no archive named "%s"', pg_temp.month(0)));
SELECT is_empty($$SELECT * FROM payledger.audit_archives$$, 'the refused calls archived nothing');
SELECT is((SELECT count(*) FROM pg_inherits WHERE inhparent = 'payledger.payment_audit_log'::regclass),
	3::bigint, 'and the three months are still attached');

------------------------------------------------------------------------------
-- a month is protected like the log: as superuser
------------------------------------------------------------------------------

SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'running as a superuser');
SELECT pg_temp.raises(format($$UPDATE %s SET amount_cents = 1$$, pg_temp.child(0)),
	'PY003', 'superuser: UPDATE of this month raises PY003',
	format('UPDATE of "%s" is not allowed', pg_temp.month(0)));
SELECT pg_temp.raises(format($$DELETE FROM %s$$, pg_temp.child(0)),
	'PY003', 'superuser: DELETE FROM this month raises PY003');
SELECT pg_temp.raises(format($$TRUNCATE %s$$, pg_temp.child(0)),
	'PY003', 'superuser: TRUNCATE of this month raises PY003');
SELECT pg_temp.raises(format($$DELETE FROM %s$$, pg_temp.child(2)),
	'PY003', 'superuser: DELETE FROM an empty month ahead raises PY003 too');
SELECT pg_temp.raises(format($$ALTER TABLE %s DISABLE TRIGGER audit_append_only$$, pg_temp.child(0)),
	'PY007', 'superuser: DISABLE TRIGGER audit_append_only on a month raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ENABLE REPLICA TRIGGER audit_append_only$$, pg_temp.child(0)),
	'PY007', 'superuser: ENABLE REPLICA TRIGGER on a month raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s NO INHERIT payledger.payment_audit_log$$, pg_temp.child(0)),
	'PY007', 'superuser: NO INHERIT of a month raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ADD COLUMN note text$$, pg_temp.child(0)),
	'PY007', 'superuser: ADD COLUMN to a month raises PY007');
SELECT pg_temp.raises(format($$DROP TRIGGER audit_append_only ON %s$$, pg_temp.child(0)),
	'PY007', 'superuser: DROP TRIGGER audit_append_only on a month raises PY007');
SELECT pg_temp.raises(format($$DROP TABLE %s$$, pg_temp.child(0)),
	'PY007', 'superuser: DROP TABLE of a month raises PY007');
SELECT pg_temp.raises(format($$DROP TABLE %s$$, pg_temp.child(2)),
	'PY007', 'superuser: DROP TABLE of an empty month ahead raises PY007');

SET LOCAL session_replication_role = replica;
SELECT pg_temp.raises(format($$UPDATE %s SET amount_cents = 1$$, pg_temp.child(0)),
	'PY003', 'replica mode: UPDATE of this month still raises PY003');
SELECT pg_temp.raises(format($$DELETE FROM %s$$, pg_temp.child(0)),
	'PY003', 'replica mode: DELETE FROM this month still raises PY003');
SELECT pg_temp.raises(format($$TRUNCATE %s$$, pg_temp.child(0)),
	'PY003', 'replica mode: TRUNCATE of this month still raises PY003');
SELECT pg_temp.raises(format($$ALTER TABLE %s DISABLE TRIGGER audit_append_only$$, pg_temp.child(0)),
	'PY007', 'replica mode: DISABLE TRIGGER on this month still raises PY007');
SET LOCAL session_replication_role = origin;

-- what pg_restore runs on a month passes
SELECT lives_ok(format($$ALTER TABLE %s ENABLE ALWAYS TRIGGER audit_append_only$$, pg_temp.child(0)),
	'ENABLE ALWAYS TRIGGER on a month passes');
SELECT lives_ok(format($$ALTER TABLE %s ALTER COLUMN era SET DEFAULT 0$$, pg_temp.child(0)),
	'SET DEFAULT of the parent''s default (era 0) on a month passes');
SELECT lives_ok(format($$ALTER TABLE ONLY %s ALTER COLUMN id SET DEFAULT nextval('payledger.payment_audit_log_id_seq'::regclass)$$,
		pg_temp.child(0)),
	'SET DEFAULT of the parent''s id default, as pg_dump prints it, passes');
SELECT lives_ok(format($$ALTER TABLE %s ALTER COLUMN metadata SET DEFAULT '{}'::jsonb$$, pg_temp.child(0)),
	'SET DEFAULT of the parent''s metadata default passes');
SELECT lives_ok(format($$ALTER TABLE %s OWNER TO %I$$, pg_temp.child(0),
		(SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'payledger')),
	'a superuser can give a month back to the role payledger writes as (OWNER TO)');

-- ... and nothing else of the kind
SELECT pg_temp.raises(format($$ALTER TABLE %s ALTER COLUMN era SET DEFAULT 1$$, pg_temp.child(0)),
	'PY007', 'superuser: SET DEFAULT other than the parent''s raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ALTER COLUMN amount_cents SET DEFAULT 0$$, pg_temp.child(0)),
	'PY007', 'superuser: SET DEFAULT on a column the parent has none for raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ALTER COLUMN created_at DROP DEFAULT$$, pg_temp.child(0)),
	'PY007', 'superuser: DROP DEFAULT raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s OWNER TO regress_owner$$, pg_temp.child(0)),
	'PY007', 'superuser: OWNER TO another role raises PY007');
SELECT results_eq(
	format($$SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = %L::regclass ORDER BY adnum$$,
		pg_temp.child(0)),
	$$SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'payledger.payment_audit_log'::regclass ORDER BY adnum$$,
	'the month''s defaults are still the parent''s');

-- planned maintenance (payledger.allow_drop) may hand a month to another role
SELECT lives_ok(format($$SET LOCAL payledger.allow_drop = on; ALTER TABLE %s OWNER TO regress_owner;
		SET LOCAL payledger.allow_drop = off$$, pg_temp.child(0)),
	'with payledger.allow_drop a superuser gives a month to regress_owner');

------------------------------------------------------------------------------
-- ... and as its owner
------------------------------------------------------------------------------

SET LOCAL ROLE regress_owner;
SELECT is(current_user::text, 'regress_owner', 'now running as regress_owner, not a superuser');
SELECT ok(has_table_privilege(pg_temp.child(0), 'UPDATE, DELETE, TRUNCATE'),
	'regress_owner owns this month, so privileges do not stop it');
SELECT pg_temp.raises(format($$UPDATE %s SET amount_cents = 1$$, pg_temp.child(0)),
	'PY003', 'owner: UPDATE of the month raises PY003');
SELECT pg_temp.raises(format($$DELETE FROM %s$$, pg_temp.child(0)),
	'PY003', 'owner: DELETE FROM the month raises PY003');
SELECT pg_temp.raises(format($$TRUNCATE %s$$, pg_temp.child(0)),
	'PY003', 'owner: TRUNCATE of the month raises PY003');
SELECT pg_temp.raises(format($$ALTER TABLE %s DISABLE TRIGGER audit_append_only$$, pg_temp.child(0)),
	'PY007', 'owner: DISABLE TRIGGER audit_append_only raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s NO INHERIT payledger.payment_audit_log$$, pg_temp.child(0)),
	'PY007', 'owner: NO INHERIT raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ADD COLUMN note text$$, pg_temp.child(0)),
	'PY007', 'owner: ADD COLUMN raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s OWNER TO regress_nopriv$$, pg_temp.child(0)),
	'PY007', 'owner: OWNER TO (only a superuser may) raises PY007');
SELECT pg_temp.raises(format($$ALTER TABLE %s ALTER COLUMN era DROP DEFAULT$$, pg_temp.child(0)),
	'PY007', 'owner: DROP DEFAULT raises PY007');
SELECT pg_temp.raises(format($$DROP TABLE %s$$, pg_temp.child(0)),
	'PY007', 'owner: DROP TABLE raises PY007');
RESET ROLE;
SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'back to the superuser');

------------------------------------------------------------------------------
-- privileges: the partition functions are not for PUBLIC
------------------------------------------------------------------------------

SELECT ok(NOT has_function_privilege('regress_nopriv', 'payledger.uuid_v7()', 'EXECUTE'),
	'nothing is granted to PUBLIC, not even uuid_v7()');
SELECT ok(NOT has_function_privilege('regress_nopriv', 'payledger.create_audit_partitions(integer)', 'EXECUTE'),
	'EXECUTE on create_audit_partitions(integer) is revoked from PUBLIC');
SELECT ok(NOT has_function_privilege('regress_nopriv', 'payledger.archive_audit_partition(regclass)', 'EXECUTE'),
	'EXECUTE on archive_audit_partition(regclass) is revoked from PUBLIC');
SELECT ok(NOT has_function_privilege('regress_nopriv', 'payledger.verify_audit_archive(regclass, jsonb)', 'EXECUTE'),
	'EXECUTE on verify_audit_archive(regclass, jsonb) is revoked from PUBLIC');
SET LOCAL ROLE regress_nopriv;
SELECT pg_temp.raises($$SELECT payledger.create_audit_partitions(3)$$,
	'42501', 'regress_nopriv cannot call create_audit_partitions (42501)',
	'permission denied for function create_audit_partitions');
SELECT pg_temp.raises(format($$SELECT payledger.archive_audit_partition(%L)$$, pg_temp.child(0)),
	'42501', 'regress_nopriv cannot call archive_audit_partition (42501)',
	'permission denied for function archive_audit_partition');
SELECT pg_temp.raises(format($$SELECT * FROM payledger.verify_audit_archive(%L)$$, pg_temp.child(0)),
	'42501', 'regress_nopriv cannot call verify_audit_archive (42501)',
	'permission denied for function verify_audit_archive');
RESET ROLE;

-- what pg_restore may add to a month does not include a constraint that
-- could refuse the ledger's own rows, and a stray table never passes for a month
SELECT throws_ok(format($$ALTER TABLE payledger.%I ADD CONSTRAINT one_per_payment UNIQUE (payment_id)$$,
		pg_temp.month(0)),
	'PY007', NULL, 'ADD CONSTRAINT UNIQUE (payment_id) on a month raises PY007');
SELECT throws_ok(format($q$DO $d$ BEGIN CREATE TABLE payledger.%I (x int);
		PERFORM payledger.create_audit_partitions(5); END $d$$q$, pg_temp.month(5)),
	'42P07', format('relation "payledger.%s" exists but is not a month of the audit log', pg_temp.month(5)),
	'create_audit_partitions() refuses a table of a month''s name that it did not make (42P07)');

------------------------------------------------------------------------------
-- after all that
------------------------------------------------------------------------------

SELECT is(pg_temp.xfer('last', 'a', 'b', 50), 'posted', 'a transfer after the refusals posts');
SELECT results_eq(
	$$SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE payment_id = pg_temp.tid('last')$$,
	ARRAY['payledger.' || pg_temp.month(0)],
	'into this month, whose owner changed');
SELECT is(current_setting('session_replication_role'), 'origin', 'the session is as it was');
SELECT results_eq(
	$$SELECT ok, rows_checked FROM payledger.verify_audit_log()$$,
	$$SELECT true, count(*) FROM payledger.payment_audit_log$$,
	'verify_audit_log() still verifies every row');
SELECT is_empty($$SELECT check_name, detail FROM payledger.check_ledger() WHERE NOT ok$$,
	'check_ledger() passes');

SELECT * FROM finish();
ROLLBACK;
