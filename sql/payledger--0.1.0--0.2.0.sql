/* sql/payledger--0.1.0--0.2.0.sql: payledger 0.1.0 -> 0.2.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.2.0'" to load this file. \quit

/* ---- hot accounts: sub-balances ---- */

/*
 * A hot account (a merchant that thousands of sessions credit at once) can
 * spread its credits over sub-balance rows: each is an account of its own
 * in payledger.accounts (kind 'sub_balance', no floor, only ever credited),
 * so entries, versions and the double-entry checks work unchanged.  Reads
 * (get_balance, balance_at, account_entries, check_ledger) add them to the
 * account; debits lock the account's own row and count the committed
 * sub-balances toward its floor.  Slots that are switched off keep their
 * balance and keep counting.
 */
CREATE TABLE payledger.sub_balances (
	account_id uuid NOT NULL,
	slot integer NOT NULL,
	sub_account_id uuid NOT NULL UNIQUE,
	active boolean NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (account_id, slot)
);
COMMENT ON TABLE payledger.sub_balances IS
	'Sub-balance rows of hot accounts (set_sub_balances): credits spread over them, reads add them up';
SELECT pg_catalog.pg_extension_config_dump('payledger.sub_balances', '');
CREATE TRIGGER sub_balances_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.sub_balances
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
ALTER TABLE payledger.sub_balances ENABLE ALWAYS TRIGGER sub_balances_guard;

CREATE FUNCTION payledger.set_sub_balances(account_id uuid, sub_balances integer)
	RETURNS integer
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'set_sub_balances';
COMMENT ON FUNCTION payledger.set_sub_balances(uuid, integer) IS
	'Spreads credits to a hot account over this many sub-balance rows (0 = off); returns how many are active';
REVOKE EXECUTE ON FUNCTION payledger.set_sub_balances(uuid, integer) FROM PUBLIC;

/* ---- payment lifecycle performance ---- */

-- A payment is rewritten by every step (authorize, capture, refund, ...)
-- and no index covers a column those steps change: leave room on each page
-- for the new versions, so the rewrites stay HOT updates on the same page
-- instead of new heap and index tuples elsewhere.  Holds need none: their
-- status is in the predicates of the pending-hold indexes, so a hold that
-- ends (posted, voided, expired) is never a HOT update anyway.
ALTER TABLE payledger.payments SET (fillfactor = 80);

-- Only settled payments are looked up by settlement (reconcile_settlement):
-- leave the others, every payment until it settles, out of that index, which
-- saves an index entry per payment created.
DROP INDEX payledger.payments_settlement;
CREATE INDEX payments_settlement ON payledger.payments (settlement_id)
	WHERE settlement_id IS NOT NULL;

/* ---- audit log: monthly partitions, archives ---- */

/*
 * The audit log grows forever; a DBA keeps it in monthly partitions and
 * archives the old ones.  Event ids are UUIDv7, which begin with their
 * millisecond timestamp, so a month is a range of event ids:
 * payledger.create_audit_partitions() adds one child table per month,
 * payment_audit_log_YYYY_MM, that inherits from payledger.payment_audit_log
 * with a CHECK on its range, and the writer puts each row into the child of
 * its month (the parent itself keeps rows of months without a child, and
 * every row written before 0.2.0).  Reads of payledger.payment_audit_log
 * see all of them.  archive_audit_partition() verifies a month that has
 * ended, records its signed checkpoint in payledger.audit_archives and
 * detaches it (NO INHERIT); the rest of the log still verifies, and
 * verify_audit_archive() checks the detached month, or a copy restored
 * years later, against that checkpoint.
 *
 * Inheritance rather than declarative partitioning: the parent belongs to
 * the extension and the months do not, and pg_restore cannot rebuild the
 * indexes of declarative partitions under a parent that CREATE EXTENSION
 * made with its indexes already in place.  Children are ordinary tables
 * that pg_dump carries with their indexes, guards and data.
 */
CREATE TABLE payledger.audit_partitions (
	partition_name text PRIMARY KEY,
	range_from uuid NOT NULL,
	range_to uuid NOT NULL,
	covers_from timestamptz NOT NULL,
	covers_until timestamptz NOT NULL,
	created_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.audit_partitions IS
	'Monthly partitions of the audit log made by create_audit_partitions(): the event id range each one takes';
SELECT pg_catalog.pg_extension_config_dump('payledger.audit_partitions', '');
CREATE TRIGGER audit_partitions_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.audit_partitions
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
ALTER TABLE payledger.audit_partitions ENABLE ALWAYS TRIGGER audit_partitions_append_only;

CREATE TABLE payledger.audit_archives (
	partition_name text PRIMARY KEY,
	range_from uuid NOT NULL,
	range_to uuid NOT NULL,
	covers_from timestamptz NOT NULL,
	covers_until timestamptz NOT NULL,
	row_count bigint NOT NULL,
	event_counts jsonb NOT NULL,
	checkpoint jsonb NOT NULL,
	archived_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.audit_archives IS
	'Months of the audit log that were detached for archiving, each with the signed checkpoint that verifies it';
SELECT pg_catalog.pg_extension_config_dump('payledger.audit_archives', '');
CREATE TRIGGER audit_archives_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.audit_archives
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
ALTER TABLE payledger.audit_archives ENABLE ALWAYS TRIGGER audit_archives_append_only;

CREATE FUNCTION payledger.create_audit_partitions(months_ahead integer DEFAULT 2)
	RETURNS SETOF regclass
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'create_audit_partitions';
COMMENT ON FUNCTION payledger.create_audit_partitions(integer) IS
	'Adds the audit log''s monthly partitions from this month (UTC) to months_ahead months ahead; returns the new ones';

CREATE FUNCTION payledger.archive_audit_partition(partition regclass)
	RETURNS jsonb
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'archive_audit_partition';
COMMENT ON FUNCTION payledger.archive_audit_partition(regclass) IS
	'Verifies an ended month of the audit log, records its signed checkpoint in audit_archives and detaches it for archiving';

CREATE FUNCTION payledger.verify_audit_archive(archive regclass, checkpoint jsonb DEFAULT NULL)
	RETURNS TABLE(ok boolean, rows_checked bigint, first_bad_event_id uuid, problem text)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'verify_audit_archive';
COMMENT ON FUNCTION payledger.verify_audit_archive(regclass, jsonb) IS
	'Verifies a detached (or restored) month of the audit log against its archive checkpoint (from audit_archives when not given)';

REVOKE EXECUTE ON FUNCTION
	payledger.create_audit_partitions(integer),
	payledger.archive_audit_partition(regclass),
	payledger.verify_audit_archive(regclass, jsonb)
FROM PUBLIC;

-- The counters that come from the audit log add what archived months
-- counted, so they never go down when a month is detached.  Every counter
-- only grows: payledger_transfers_total counts a hold once as pending when it
-- is made and again under the state it ends in (its posting is a transfer
-- row).  The hold gauges report 0, not nothing, for a currency whose holds
-- have all ended.
DROP VIEW payledger.metrics;
CREATE VIEW payledger.metrics AS
	WITH audit_counts AS (
		SELECT l.event_type, l.success, pg_catalog.count(*) AS n
		  FROM payledger.payment_audit_log l
		 GROUP BY l.event_type, l.success
		UNION ALL
		SELECT c.event_type, c.success, c.n
		  FROM payledger.audit_archives a,
			   pg_catalog.jsonb_to_recordset(a.event_counts) AS c(event_type text, success boolean, n bigint)
	)
	SELECT 'payledger_transfers_total'::text AS metric,
		   pg_catalog.jsonb_build_object('status', t.status, 'reason_code', COALESCE(t.reason_code, '')) AS labels,
		   pg_catalog.count(*)::double precision AS value
	  FROM (SELECT status, reason_code FROM payledger.transfers
			UNION ALL
			SELECT 'pending', NULL FROM payledger.holds
			UNION ALL
			SELECT status, NULL FROM payledger.holds WHERE status IN ('voided', 'expired')) t
	 GROUP BY t.status, t.reason_code
	UNION ALL
	SELECT 'payledger_payments_total',
		   pg_catalog.jsonb_build_object('event_type', event_type, 'success', success),
		   pg_catalog.sum(n)::double precision
	  FROM audit_counts
	 WHERE event_type LIKE 'PAYMENT%' OR event_type = 'DISPUTE_WON'
	 GROUP BY event_type, success
	UNION ALL
	SELECT 'payledger_payment_success_ratio', '{}'::jsonb,
		   COALESCE(pg_catalog.sum(n) FILTER (WHERE success)
					OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(n), 0), 1.0)::double precision
	  FROM audit_counts
	 WHERE event_type IN ('PAYMENT_AUTHORIZED', 'PAYMENT_FAILED')
	UNION ALL
	SELECT 'payledger_idempotent_replays_total', '{}'::jsonb,
		   COALESCE(pg_catalog.sum(replays), 0)::double precision
	  FROM payledger.replay_counts
	UNION ALL
	SELECT 'payledger_holds_pending', pg_catalog.jsonb_build_object('currency', currency),
		   (pg_catalog.count(*) FILTER (WHERE status = 'pending'))::double precision
	  FROM payledger.holds GROUP BY currency
	UNION ALL
	SELECT 'payledger_holds_pending_amount', pg_catalog.jsonb_build_object('currency', currency),
		   COALESCE(pg_catalog.sum(amount) FILTER (WHERE status = 'pending'), 0)::double precision
	  FROM payledger.holds GROUP BY currency
	UNION ALL
	SELECT 'payledger_oldest_pending_hold_seconds', '{}'::jsonb,
		   COALESCE(EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.min(created_at)), 0)::double precision
	  FROM payledger.holds WHERE status = 'pending'
	UNION ALL
	SELECT 'payledger_audit_rows_total', '{}'::jsonb, COALESCE(pg_catalog.sum(n), 0)::double precision
	  FROM audit_counts
	UNION ALL
	SELECT 'payledger_events_unacked', pg_catalog.jsonb_build_object('consumer', c.consumer),
		   (SELECT pg_catalog.count(*) FROM payledger.payment_audit_log a
			 WHERE (a.era, a.txid, a.id) OPERATOR(pg_catalog.>) (c.last_era, c.last_txid, c.last_id)
			   AND (a.era OPERATOR(pg_catalog.<) payledger.delivery_era()
					OR a.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())))::double precision
	  FROM payledger.event_consumers c
	UNION ALL
	SELECT 'payledger_errors_total', pg_catalog.jsonb_build_object('sqlstate', e.sqlstate),
		   e.errors::double precision
	  FROM payledger.error_counts() e;
COMMENT ON VIEW payledger.metrics IS
	'Counters for a Prometheus exporter: metric, labels, value';
