/* sql/payledger--0.2.0--0.3.0.sql: payledger 0.2.0 -> 0.3.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.3.0'" to load this file. \quit

/* ---- access: roles, merchant scope, the read API ---- */

/*
 * The five roles of the access model, cluster-wide and NOLOGIN: grant them
 * to login roles.  Made here when missing (a fresh install runs this script
 * too); the privileges section at the end of this file grants each its
 * functions, after every other section has made its own.
 */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['payledger_app', 'payledger_reader', 'payledger_auditor',
							 'payledger_operator', 'payledger_monitor']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

-- The database role behind every audit row, whatever payledger.actor_id
-- claims.  Rows written before 0.3.0 keep NULL; the months inherit the column.
ALTER TABLE payledger.payment_audit_log ADD COLUMN db_role text;

-- Rows enter the ledger's tables only through payledger's functions (which
-- insert below the executor or with the internal-write flag raised), the
-- extension's scripts, and pg_restore's COPY (see guard_insert() in
-- src/protect.c).  The triggers themselves are made in the privileges
-- section, for every table of the schema.
CREATE FUNCTION payledger.guard_insert()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'guard_insert';
COMMENT ON FUNCTION payledger.guard_insert() IS
	'Trigger: rows enter payledger''s tables only through its functions or a restore (INSERT raises PY003)';

/*
 * Merchant scope.  An account may belong to a merchant (or customer):
 * owner_id.  payledger.role_scopes binds roles to merchants
 * (scope_role/unscope_role); a role with the privileges of a bound role
 * debits (transfer, hold, transfer_legs, transfer_many) only accounts its
 * merchants own, creates payments only for them, and sees only their
 * payments, settlements and accounts (src/access.c).  Accounts made before
 * 0.3.0 have no owner: no scoped role can debit or see them until an
 * operator gives them one.
 */
ALTER TABLE payledger.accounts ADD COLUMN owner_id uuid;

DROP FUNCTION payledger.create_account(text, text, bigint, jsonb, uuid);
CREATE FUNCTION payledger.create_account(
	currency text,
	kind text DEFAULT 'generic',
	min_balance bigint DEFAULT 0,
	metadata jsonb DEFAULT '{}',
	account_id uuid DEFAULT NULL,
	owner_id uuid DEFAULT NULL)
	RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'create_account';
COMMENT ON FUNCTION payledger.create_account(text, text, bigint, jsonb, uuid, uuid) IS
	'Opens an account in one currency with a floor (NULL: no floor), owned by owner_id; idempotent on a caller-supplied id';

CREATE TABLE payledger.role_scopes (
	role regrole NOT NULL,
	merchant_id uuid NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (role, merchant_id)
);
COMMENT ON TABLE payledger.role_scopes IS
	'Roles bound to merchants (scope_role): such a role debits, sees and acts on only its merchants'' accounts and payments';
SELECT pg_catalog.pg_extension_config_dump('payledger.role_scopes', '');

CREATE FUNCTION payledger.guard_scopes()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'guard_scopes';
COMMENT ON FUNCTION payledger.guard_scopes() IS
	'Trigger: role_scopes changes only through scope_role() and unscope_role() (PY003)';
CREATE TRIGGER role_scopes_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.role_scopes
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_scopes();
ALTER TABLE payledger.role_scopes ENABLE ALWAYS TRIGGER role_scopes_guard;

CREATE FUNCTION payledger.scope_role(role regrole, merchant_id uuid)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'scope_role';
COMMENT ON FUNCTION payledger.scope_role(regrole, uuid) IS
	'Binds a role to a merchant: it (and every role with its privileges) then debits, sees and acts on only its merchants'' accounts and payments';
CREATE FUNCTION payledger.unscope_role(role regrole, merchant_id uuid)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'unscope_role';
COMMENT ON FUNCTION payledger.unscope_role(regrole, uuid) IS
	'Removes the binding of a role to a merchant; a role left with none acts platform-wide again';

/*
 * The read API (src/reads.c): keyset pages in id order, every one served by
 * an index.  A merchant's payments by (merchant_id, id), which also serves
 * settle_merchant's scan (it replaces the index on merchant_id alone), an
 * owner's accounts by (owner_id, id), metadata containment by GIN (rows
 * with metadata only: most have '{}', which no filter but '{}' itself,
 * which matches every row, can select, and whose entry would cost every
 * insert a GIN write).  None
 * of their columns ever changes, so payments and accounts keep their HOT
 * updates, and the transfer path writes none of them.
 */
DROP INDEX payledger.payments_merchant;
CREATE INDEX payments_merchant ON payledger.payments (merchant_id, id);
CREATE INDEX payments_metadata ON payledger.payments USING gin (metadata jsonb_path_ops)
	WHERE metadata OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb;
CREATE INDEX accounts_owner ON payledger.accounts (owner_id, id) WHERE owner_id IS NOT NULL;

CREATE FUNCTION payledger.get_payment(payment_id uuid)
	RETURNS SETOF payledger.payments
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'get_payment';
COMMENT ON FUNCTION payledger.get_payment(uuid) IS
	'One payment (PY005 when unknown, or another merchant''s to a scoped role)';
CREATE FUNCTION payledger.list_payments(
	merchant_id uuid DEFAULT NULL,
	state payledger.payment_state DEFAULT NULL,
	since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity',
	metadata_contains jsonb DEFAULT NULL,
	after_id uuid DEFAULT NULL,
	max_rows integer DEFAULT 100)
	RETURNS SETOF payledger.payments
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'list_payments';
COMMENT ON FUNCTION payledger.list_payments(uuid, payledger.payment_state, timestamptz, timestamptz, jsonb, uuid, integer) IS
	'A page of payments, oldest first, after after_id (max_rows 1..1000), within the caller''s merchant scope';
CREATE FUNCTION payledger.list_accounts(
	owner_id uuid DEFAULT NULL,
	kind text DEFAULT NULL,
	currency text DEFAULT NULL,
	after_id uuid DEFAULT NULL,
	max_rows integer DEFAULT 100)
	RETURNS TABLE(account_id uuid, currency text, kind text, owner_id uuid, status text,
				  balance bigint, pending_debits bigint, available bigint, min_balance bigint,
				  metadata jsonb, created_at timestamptz)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'list_accounts';
COMMENT ON FUNCTION payledger.list_accounts(uuid, text, text, uuid, integer) IS
	'A page of accounts in id order, after after_id (max_rows 1..1000), within the caller''s merchant scope';

/*
 * Transfers for the read API.  A leg set (transfer_legs) is one transfers
 * row of kind 'legs' without from/to: its legs are kept here, one row per
 * leg in the order given, posted or rejected, so that get_transfer can list
 * them and an account's page finds the leg sets touching it.  Written by
 * payledger only, never changed (append-only like entries).
 */
CREATE TABLE payledger.legs (
	transfer_id uuid NOT NULL,
	leg integer NOT NULL,		-- its index in the call's legs array, from 0
	from_account uuid NOT NULL,
	to_account uuid NOT NULL,
	amount bigint NOT NULL,
	PRIMARY KEY (transfer_id, leg)
);
COMMENT ON TABLE payledger.legs IS
	'The legs of every transfer_legs call, posted or rejected, in the order given (append-only)';
SELECT pg_catalog.pg_extension_config_dump('payledger.legs', '');
CREATE TRIGGER legs_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.legs
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
ALTER TABLE payledger.legs ENABLE ALWAYS TRIGGER legs_append_only;
CREATE INDEX legs_from_account ON payledger.legs (from_account, transfer_id);
CREATE INDEX legs_to_account ON payledger.legs (to_account, transfer_id);

/*
 * The leg sets posted before 0.3.0 get their legs back from their entries:
 * transfer_legs wrote them in the order of the legs, debit then credit, so
 * in the order they were written (ctid) each leg is a debit followed by the
 * credit of the same amount.  A set whose entries do not pair up that way,
 * and a leg set rejected before 0.3.0 (it wrote no entries), keeps no legs:
 * get_transfer shows legs NULL for it.
 */
WITH e AS (
	SELECT e.transfer_id, COALESCE(sb.account_id, e.account_id) AS account_id, e.amount,
		   (pg_catalog.row_number() OVER (PARTITION BY e.transfer_id ORDER BY e.ctid) OPERATOR(pg_catalog.-) 1) AS n
	  FROM payledger.entries e
	  JOIN payledger.transfers t ON t.id OPERATOR(pg_catalog.=) e.transfer_id
	  LEFT JOIN payledger.sub_balances sb ON sb.sub_account_id OPERATOR(pg_catalog.=) e.account_id
	 WHERE t.kind OPERATOR(pg_catalog.=) 'legs' AND t.status OPERATOR(pg_catalog.=) 'posted'
), pairs AS (
	SELECT d.transfer_id, (d.n OPERATOR(pg_catalog./) 2)::integer AS leg, d.account_id AS from_account,
		   c.account_id AS to_account, d.amount AS debit, c.amount
	  FROM e d
	  JOIN e c ON c.transfer_id OPERATOR(pg_catalog.=) d.transfer_id
			  AND c.n OPERATOR(pg_catalog.=) (d.n OPERATOR(pg_catalog.+) 1)
	 WHERE (d.n OPERATOR(pg_catalog.%) 2) OPERATOR(pg_catalog.=) 0
), good AS (
	SELECT p.transfer_id FROM pairs p
	 GROUP BY p.transfer_id
	HAVING pg_catalog.bool_and(p.debit OPERATOR(pg_catalog.=) (OPERATOR(pg_catalog.-) p.amount)
							   AND p.amount OPERATOR(pg_catalog.>) 0
							   AND p.from_account OPERATOR(pg_catalog.<>) p.to_account)
	   AND (pg_catalog.count(*) OPERATOR(pg_catalog.*) 2) OPERATOR(pg_catalog.=)
		   (SELECT pg_catalog.count(*) FROM e x WHERE x.transfer_id OPERATOR(pg_catalog.=) p.transfer_id)
)
INSERT INTO payledger.legs (transfer_id, leg, from_account, to_account, amount)
SELECT p.transfer_id, p.leg, p.from_account, p.to_account, p.amount
  FROM pairs p JOIN good g ON g.transfer_id OPERATOR(pg_catalog.=) p.transfer_id;

/*
 * An account's transfers page by id: transfers and holds from it and to it,
 * leg sets through legs.  Metadata containment by GIN, for rows with
 * metadata (as payments_metadata).  Every one of these
 * is written on the money path (index entries per transfer, hold and leg);
 * bench/read_api measures what that costs the transfer path.
 */
CREATE INDEX transfers_from_account ON payledger.transfers (from_account, id);
CREATE INDEX transfers_to_account ON payledger.transfers (to_account, id);
CREATE INDEX transfers_metadata ON payledger.transfers USING gin (metadata jsonb_path_ops)
	WHERE metadata OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb;
-- A hold's status change is never a HOT update (status is in the partial
-- indexes' predicates), so every index on holds is written again when it is
-- posted, voided or expired.  By account, holds are therefore indexed in two
-- halves: the pending ones (0.1.0's indexes, now in id order as well) and
-- the settled ones, so that making a hold writes one entry per account and
-- settling it one more, not two each.
DROP INDEX payledger.holds_pending_from;
DROP INDEX payledger.holds_pending_to;
CREATE INDEX holds_pending_from ON payledger.holds (from_account, id)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX holds_pending_to ON payledger.holds (to_account, id)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX holds_settled_from ON payledger.holds (from_account, id)
	WHERE status OPERATOR(pg_catalog.<>) 'pending';
CREATE INDEX holds_settled_to ON payledger.holds (to_account, id)
	WHERE status OPERATOR(pg_catalog.<>) 'pending';
CREATE INDEX holds_metadata ON payledger.holds USING gin (metadata jsonb_path_ops)
	WHERE metadata OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb;
-- a page of pending holds or of declined attempts, in id order: only the
-- rows in that state have an entry
CREATE INDEX holds_pending ON payledger.holds (id) WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX transfers_rejected ON payledger.transfers (id) WHERE status OPERATOR(pg_catalog.=) 'rejected';

CREATE FUNCTION payledger.get_transfer(transfer_id uuid)
	RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
				  amount bigint, from_account uuid, to_account uuid, legs jsonb,
				  idempotency_key text, metadata jsonb, created_at timestamptz)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'get_transfer';
COMMENT ON FUNCTION payledger.get_transfer(uuid) IS
	'One transfer, hold, leg set or declined attempt (PY005 when unknown, or touching none of a scoped role''s accounts)';
CREATE FUNCTION payledger.list_transfers(
	account_id uuid DEFAULT NULL,
	since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity',
	status text DEFAULT NULL,
	metadata_contains jsonb DEFAULT NULL,
	after_id uuid DEFAULT NULL,
	max_rows integer DEFAULT 100)
	RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
				  amount bigint, from_account uuid, to_account uuid, legs jsonb,
				  idempotency_key text, metadata jsonb, created_at timestamptz)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'list_transfers';
COMMENT ON FUNCTION payledger.list_transfers(uuid, timestamptz, timestamptz, text, jsonb, uuid, integer) IS
	'A page of transfers, holds and leg sets in id order, after after_id (max_rows 1..1000), within the caller''s merchant scope';

/* ---- correctness findings ---- */

/*
 * A dispute stays reserved until resolve_dispute: open disputes' holds no
 * longer expire.  An authorization's hold names its payment in its
 * metadata, as authorize_payment now writes it, so that expire_holds()
 * leaves it to expire_authorizations().
 */
ALTER TABLE payledger.holds DISABLE TRIGGER holds_guard;
UPDATE payledger.holds h SET expires_at = 'infinity'
  FROM payledger.payments p
 WHERE h.id OPERATOR(pg_catalog.=) p.dispute_hold_id
   AND p.state OPERATOR(pg_catalog.=) 'disputed'::payledger.payment_state
   AND h.status OPERATOR(pg_catalog.=) 'pending';
UPDATE payledger.holds h
   SET metadata = h.metadata OPERATOR(pg_catalog.||)
       pg_catalog.jsonb_build_object('payment_id', p.id::pg_catalog.text)
  FROM payledger.payments p
 WHERE h.id OPERATOR(pg_catalog.=) p.hold_id
   AND p.state OPERATOR(pg_catalog.=) 'authorized'::payledger.payment_state
   AND h.status OPERATOR(pg_catalog.=) 'pending';
ALTER TABLE payledger.holds ENABLE ALWAYS TRIGGER holds_guard;

/*
 * Metrics kept, not recounted: a scrape costs the same whatever the
 * history.  The money path adds what each call did to its backend slot's
 * rows (src/metrics.c): no two live sessions share a row, so no contention.
 * The counts of the ledger as it stands are the starting point.
 */
CREATE TABLE payledger.metric_counters (
	backend integer NOT NULL,
	metric text NOT NULL,
	labels jsonb NOT NULL,
	value bigint NOT NULL,
	PRIMARY KEY (backend, metric, labels)
);
COMMENT ON TABLE payledger.metric_counters IS
	'Cumulative counters of payledger.metrics, one row per backend slot, metric and labels';
SELECT pg_catalog.pg_extension_config_dump('payledger.metric_counters', '');
CREATE TRIGGER metric_counters_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.metric_counters
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
ALTER TABLE payledger.metric_counters ENABLE ALWAYS TRIGGER metric_counters_guard;

INSERT INTO payledger.metric_counters (backend, metric, labels, value)
SELECT 0, 'payledger_transfers_total',
	   pg_catalog.jsonb_build_object('status', t.status, 'reason_code', COALESCE(t.reason_code, '')),
	   pg_catalog.count(*)
  FROM (SELECT status, reason_code FROM payledger.transfers
		UNION ALL
		SELECT 'pending', NULL FROM payledger.holds
		UNION ALL
		SELECT status, NULL FROM payledger.holds
		 WHERE status OPERATOR(pg_catalog.=) ANY (ARRAY['voided', 'expired'])) t
 GROUP BY t.status, t.reason_code;
INSERT INTO payledger.metric_counters (backend, metric, labels, value)
SELECT 0, 'hold_currencies', pg_catalog.jsonb_build_object('currency', currency), pg_catalog.count(*)
  FROM payledger.holds GROUP BY currency;
INSERT INTO payledger.metric_counters (backend, metric, labels, value)
SELECT 0, m.metric, m.labels, pg_catalog.sum(m.n)
  FROM (SELECT c.event_type, c.success, c.n
		  FROM (SELECT l.event_type, l.success, pg_catalog.count(*) AS n
				  FROM payledger.payment_audit_log l GROUP BY l.event_type, l.success
				UNION ALL
				SELECT r.event_type, r.success, r.n
				  FROM payledger.audit_archives a,
					   pg_catalog.jsonb_to_recordset(a.event_counts)
						 AS r(event_type text, success boolean, n bigint)) c) e,
	   LATERAL (SELECT 'payledger_audit_rows_total'::text AS metric, '{}'::jsonb AS labels, e.n
				UNION ALL
				SELECT 'payledger_payments_total',
					   pg_catalog.jsonb_build_object('event_type', e.event_type, 'success', e.success), e.n
				 WHERE e.event_type OPERATOR(pg_catalog.~~) 'PAYMENT%'
					OR e.event_type OPERATOR(pg_catalog.=) 'DISPUTE_WON') m
 GROUP BY m.metric, m.labels;

CREATE OR REPLACE VIEW payledger.metrics AS
	WITH c AS (
		SELECT k.metric, k.labels, pg_catalog.sum(k.value) AS value
		  FROM payledger.metric_counters k
		 GROUP BY k.metric, k.labels
	), pending AS (
		SELECT h.currency, pg_catalog.count(*) AS n, pg_catalog.sum(h.amount) AS amount,
			   pg_catalog.min(h.created_at) AS oldest
		  FROM payledger.holds h
		 WHERE h.status OPERATOR(pg_catalog.=) 'pending'
		 GROUP BY h.currency
	)
	SELECT c.metric, c.labels, c.value::double precision AS value
	  FROM c
	 WHERE c.metric OPERATOR(pg_catalog.=) ANY (ARRAY['payledger_transfers_total',
		   'payledger_payments_total', 'payledger_audit_rows_total'])
	UNION ALL
	SELECT 'payledger_payment_success_ratio', '{}'::jsonb,
		   COALESCE(pg_catalog.sum(c.value) FILTER (WHERE (c.labels OPERATOR(pg_catalog.->>) 'success')::boolean)
					OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(c.value), 0), 1.0)::double precision
	  FROM c
	 WHERE c.metric OPERATOR(pg_catalog.=) 'payledger_payments_total'
	   AND c.labels OPERATOR(pg_catalog.->>) 'event_type' OPERATOR(pg_catalog.=) ANY (ARRAY['PAYMENT_AUTHORIZED', 'PAYMENT_FAILED'])
	UNION ALL
	SELECT 'payledger_idempotent_replays_total', '{}'::jsonb,
		   COALESCE(pg_catalog.sum(replays), 0)::double precision
	  FROM payledger.replay_counts
	UNION ALL
	SELECT 'payledger_holds_pending', pg_catalog.jsonb_build_object('currency', k.currency),
		   COALESCE(p.n, 0)::double precision
	  FROM (SELECT c.labels OPERATOR(pg_catalog.->>) 'currency' AS currency FROM c
			 WHERE c.metric OPERATOR(pg_catalog.=) 'hold_currencies') k
	  LEFT JOIN pending p ON p.currency OPERATOR(pg_catalog.=) k.currency
	UNION ALL
	SELECT 'payledger_holds_pending_amount', pg_catalog.jsonb_build_object('currency', k.currency),
		   COALESCE(p.amount, 0)::double precision
	  FROM (SELECT c.labels OPERATOR(pg_catalog.->>) 'currency' AS currency FROM c
			 WHERE c.metric OPERATOR(pg_catalog.=) 'hold_currencies') k
	  LEFT JOIN pending p ON p.currency OPERATOR(pg_catalog.=) k.currency
	UNION ALL
	SELECT 'payledger_oldest_pending_hold_seconds', '{}'::jsonb,
		   COALESCE(EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.min(p.oldest)), 0)::double precision
	  FROM pending p
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

/* ---- throughput: notify worker, group commit ---- */

/*
 * submit_transfer: transfer() for callers that commit each call on their
 * own, applied by the ledger writer (a background worker) together with
 * other sessions' submissions, many per transaction (group commit).  Always
 * keyed; refused inside a transaction block (25001) and on a server that
 * does not preload payledger (55000); PY009 when the queue stays full,
 * 40003 when the writer is lost while the call waits.
 */
CREATE FUNCTION payledger.submit_transfer(
	from_account uuid,
	to_account uuid,
	amount bigint,
	currency text,
	idempotency_key text,
	metadata jsonb DEFAULT '{}')
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'submit_transfer';
COMMENT ON FUNCTION payledger.submit_transfer(uuid, uuid, bigint, text, text, jsonb) IS
	'transfer() applied by the ledger writer with other submissions, one commit for many: always keyed, never inside a transaction block, needs payledger preloaded';
REVOKE ALL ON FUNCTION payledger.submit_transfer(uuid, uuid, bigint, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION payledger.submit_transfer(uuid, uuid, bigint, text, text, jsonb)
	TO payledger_app;

/* ---- state machines ---- */

-- Machines change only through define_state_machine() (which refuses the
-- machine "payment" outside the extension's scripts): a hand-written UPDATE,
-- DELETE or TRUNCATE of payledger.state_machines raises PY003, or a
-- superuser could rewrite the payments' allowed transitions.
CREATE TRIGGER state_machines_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.state_machines
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
ALTER TABLE payledger.state_machines ENABLE ALWAYS TRIGGER state_machines_guard;

/* ---- privileges: nothing for PUBLIC, each role what section 13 grants ---- */

-- A hand-written INSERT into any table of the ledger raises PY003, for every
-- role (statement-level, ENABLE ALWAYS: also in replica mode).  Made here, at
-- the end, so that it covers the tables every section above made, and the
-- audit log's months.
DO $guards$
DECLARE
	t regclass;
BEGIN
	FOR t IN
		SELECT c.oid::regclass FROM pg_catalog.pg_class c
		 WHERE c.relnamespace OPERATOR(pg_catalog.=) 'payledger'::regnamespace
		   AND c.relkind OPERATOR(pg_catalog.=) 'r'
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g
						    WHERE g.tgrelid OPERATOR(pg_catalog.=) c.oid
							  AND g.tgname OPERATOR(pg_catalog.=) 'payledger_insert_guard')
		 ORDER BY c.relname
	LOOP
		EXECUTE pg_catalog.format('CREATE TRIGGER payledger_insert_guard BEFORE INSERT ON %s'
								  ' FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_insert()', t);
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER payledger_insert_guard', t);
	END LOOP;
END
$guards$;

-- Nothing for PUBLIC: every function is granted to the roles that need it.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA payledger FROM PUBLIC;

GRANT USAGE ON SCHEMA payledger TO payledger_app, payledger_reader, payledger_auditor,
	payledger_operator, payledger_monitor;

-- payledger_reader: balances, statements and the read API
GRANT EXECUTE ON FUNCTION
	payledger.get_balance(uuid),
	payledger.balance_at(uuid, timestamptz),
	payledger.account_entries(uuid, timestamptz, timestamptz),
	payledger.get_transfer(uuid),
	payledger.list_transfers(uuid, timestamptz, timestamptz, text, jsonb, uuid, integer),
	payledger.get_payment(uuid),
	payledger.list_payments(uuid, payledger.payment_state, timestamptz, timestamptz, jsonb, uuid, integer),
	payledger.list_accounts(uuid, text, text, uuid, integer)
TO payledger_reader;

-- payledger_app: what the reader may, accounts, money and payments
GRANT payledger_reader TO payledger_app;
GRANT EXECUTE ON FUNCTION
	payledger.uuid_v7(),
	payledger.create_account(text, text, bigint, jsonb, uuid, uuid),
	payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid),
	payledger.hold(uuid, uuid, bigint, text, interval, text, jsonb),
	payledger.post_hold(uuid, bigint, text),
	payledger.void_hold(uuid, text),
	payledger.transfer_legs(jsonb, text, text, jsonb),
	payledger.transfer_many(uuid[], uuid[], bigint[], text, text[]),
	payledger.create_payment(uuid, uuid, bigint, text, uuid, uuid, text, jsonb),
	payledger.authorize_payment(uuid, text, interval),
	payledger.capture_payment(uuid, text, bigint, jsonb),
	payledger.void_payment(uuid, text),
	payledger.refund_payment(uuid, bigint, text, text),
	payledger.fail_payment(uuid, text, text),
	payledger.dispute_payment(uuid, bigint, text, text),
	payledger.resolve_dispute(uuid, boolean, text)
TO payledger_app;

-- payledger_auditor: what the reader may, the audit log and its verifiers
GRANT payledger_reader TO payledger_auditor;
GRANT SELECT ON payledger.payment_audit_log TO payledger_auditor;
GRANT EXECUTE ON FUNCTION
	payledger.verify_audit_log(),
	payledger.verify_audit_log(jsonb),
	payledger.verify_audit_archive(regclass, jsonb)
TO payledger_auditor;

-- payledger_operator: running the ledger
GRANT EXECUTE ON FUNCTION
	payledger.freeze_account(uuid, text),
	payledger.unfreeze_account(uuid),
	payledger.close_account(uuid),
	payledger.set_limits(uuid, bigint, bigint),
	payledger.set_sub_balances(uuid, integer),
	payledger.expire_holds(),
	payledger.expire_authorizations(),
	payledger.settle_merchant(uuid, timestamptz, uuid, text),
	payledger.reconcile_settlement(uuid, jsonb),
	payledger.create_audit_partitions(integer),
	payledger.archive_audit_partition(regclass),
	payledger.audit_checkpoint(),
	payledger.define_state_machine(text, jsonb),
	payledger.enforce_state_machine(),
	payledger.forbid_mutation(),
	payledger.purge_idempotency_keys(),
	payledger.check_ledger(),
	payledger.scope_role(regrole, uuid),
	payledger.unscope_role(regrole, uuid),
	payledger.read_events(text, integer),
	payledger.ack_events(text, uuid),
	payledger.delivery_era(),
	payledger.error_counts()
TO payledger_operator;

-- payledger_monitor: the metrics view, and the two functions the view calls
-- (PostgreSQL checks a view's function calls against the querying role)
GRANT SELECT ON payledger.metrics TO payledger_monitor;
GRANT EXECUTE ON FUNCTION
	payledger.delivery_era(),
	payledger.error_counts()
TO payledger_monitor;
