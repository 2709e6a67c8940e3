/* sql/payledger--0.1.0.sql: payledger 0.1.0, the ledger core */

\echo Use "CREATE EXTENSION payledger" to load this file. \quit

/*
 * The C functions validate every value they write and the guard triggers
 * keep everybody else from writing, so the hot tables carry no CHECK
 * constraints: each would be parsed and evaluated on every statement.
 *
 * Tables belong to the extension's owner and are granted to nobody: money
 * moves only through the functions below, which run their statements as the
 * owner (the C code switches user the way PostgreSQL's RI triggers do), so
 * an application role needs USAGE on the schema and EXECUTE, nothing more.
 */

CREATE TYPE payledger.transfer_result AS (
	transfer_id uuid,
	status text,
	reason_code text,
	replayed boolean
);
COMMENT ON TYPE payledger.transfer_result IS
	'Outcome of a money-moving call: id, posted/pending/voided/expired/rejected, decline reason, whether it was replayed';

CREATE TABLE payledger.accounts (
	id uuid PRIMARY KEY,
	currency text NOT NULL,
	kind text NOT NULL,
	min_balance bigint,
	status text NOT NULL,
	balance bigint NOT NULL DEFAULT 0,
	pending_debits bigint NOT NULL DEFAULT 0,
	pending_credits bigint NOT NULL DEFAULT 0,
	version bigint NOT NULL,
	metadata jsonb NOT NULL DEFAULT '{}',
	frozen_reason text,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	has_limits boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE payledger.accounts IS
	'Ledger accounts; balance = credits - debits, changed only by payledger functions';

CREATE TABLE payledger.account_limits (
	account_id uuid PRIMARY KEY,
	max_per_transfer bigint,
	max_daily_debit bigint,
	updated_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.account_limits IS
	'Per-account debit limits (set_limits); a debit above one is declined LIMIT_EXCEEDED';

CREATE TABLE payledger.transfers (
	id uuid PRIMARY KEY,
	kind text NOT NULL,
	status text NOT NULL,
	reason_code text,
	currency text NOT NULL,
	amount bigint NOT NULL,
	from_account uuid,
	to_account uuid,
	idempotency_key text,
	request_hash bytea NOT NULL,
	metadata jsonb NOT NULL,
	created_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.transfers IS
	'Every transfer attempt, posted or rejected (append-only)';

CREATE TABLE payledger.entries (
	account_id uuid NOT NULL,
	account_version bigint NOT NULL,
	transfer_id uuid NOT NULL,
	amount bigint NOT NULL,
	balance_after bigint NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (account_id, account_version)
);
COMMENT ON TABLE payledger.entries IS
	'Double-entry postings: one signed row per account a transfer touches (append-only)';

CREATE TABLE payledger.holds (
	id uuid PRIMARY KEY,
	from_account uuid NOT NULL,
	to_account uuid NOT NULL,
	amount bigint NOT NULL,
	currency text NOT NULL,
	status text NOT NULL,
	expires_at timestamptz NOT NULL,
	posted_amount bigint,
	idempotency_key text,
	metadata jsonb NOT NULL,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	correlation_id uuid
);
COMMENT ON TABLE payledger.holds IS
	'Two-phase transfers: pending reservations and how each ended (posted, voided, expired)';
CREATE INDEX holds_pending_from ON payledger.holds (from_account) WHERE status = 'pending';
CREATE INDEX holds_pending_to ON payledger.holds (to_account) WHERE status = 'pending';
CREATE INDEX holds_pending_expiry ON payledger.holds (expires_at) WHERE status = 'pending';

CREATE TYPE payledger.payment_state AS ENUM (
	'pending', 'authorized', 'captured', 'partially_refunded', 'refunded', 'settled',
	'failed', 'voided', 'expired', 'disputed', 'charged_back'
);

CREATE TABLE payledger.payments (
	id uuid PRIMARY KEY,
	merchant_id uuid NOT NULL,
	customer_id uuid NOT NULL,
	amount bigint NOT NULL,
	currency text NOT NULL,
	state payledger.payment_state NOT NULL,
	source_account uuid NOT NULL,
	merchant_account uuid NOT NULL,
	captured_amount bigint NOT NULL DEFAULT 0,
	refunded_amount bigint NOT NULL DEFAULT 0,
	disputed_amount bigint NOT NULL DEFAULT 0,
	fee_amount bigint NOT NULL DEFAULT 0,
	hold_id uuid,
	state_before_dispute payledger.payment_state,
	correlation_id uuid NOT NULL,
	version bigint NOT NULL DEFAULT 1,
	metadata jsonb NOT NULL DEFAULT '{}',
	authorized_at timestamptz,
	captured_at timestamptz,
	settlement_id uuid,
	dispute_hold_id uuid,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.payments IS
	'One row per payment; state changes follow the state machine "payment"';
-- by merchant only: a state column in an index would make every state change
-- a non-HOT update with new index entries
CREATE INDEX payments_merchant ON payledger.payments (merchant_id);

CREATE TABLE payledger.settlements (
	id uuid PRIMARY KEY,
	merchant_id uuid NOT NULL,
	cutoff timestamptz NOT NULL,
	currency text,
	payment_count integer NOT NULL,
	gross_amount bigint NOT NULL,
	fee_amount bigint NOT NULL,
	refund_amount bigint NOT NULL,
	net_amount bigint NOT NULL,
	payout_account uuid NOT NULL,
	payout_transfer_id uuid,
	created_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.settlements IS
	'Settlement batches: captured payments of a merchant paid out net of fees and refunds';
CREATE INDEX payments_settlement ON payledger.payments (settlement_id);

CREATE TABLE payledger.state_machines (
	name text PRIMARY KEY,
	transitions jsonb NOT NULL,
	updated_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.state_machines IS
	'Named state machines: state -> states it may move to (define_state_machine)';

CREATE TABLE payledger.idempotency_keys (
	scope uuid NOT NULL,
	key text COLLATE "C" NOT NULL,	-- opaque: compared byte by byte
	operation text NOT NULL,
	request_hash bytea NOT NULL,
	result_id uuid NOT NULL,
	status text NOT NULL,
	reason_code text,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (scope, key)
);
COMMENT ON TABLE payledger.idempotency_keys IS
	'Stored results of keyed calls; scope is the merchant for payment functions, the nil UUID for ledger functions';

CREATE TABLE payledger.payment_audit_log (
	id bigserial PRIMARY KEY,
	event_id uuid NOT NULL UNIQUE,
	correlation_id uuid,
	idempotency_key text,
	event_time timestamptz NOT NULL,
	server_time timestamptz NOT NULL,
	event_type text NOT NULL,
	previous_state text,
	new_state text,
	actor_type text NOT NULL,
	actor_id text NOT NULL,
	payment_id uuid,
	account_id uuid,
	counterparty_account_id uuid,
	amount_cents bigint,
	currency text,
	merchant_id uuid,
	customer_id uuid,
	ip_address text,
	user_agent_hash text,
	device_id text,
	success boolean NOT NULL,
	reason_code text,
	error_message text,
	metadata jsonb NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	chain_id uuid,
	chain_seq bigint,
	prev_hash bytea,
	row_hash bytea,
	txid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
	era integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE payledger.payment_audit_log IS
	'Append-only audit trail of every state change and every decline; each session''s rows form a hash chain';
CREATE INDEX payment_audit_log_payment ON payledger.payment_audit_log (payment_id);
CREATE INDEX payment_audit_log_delivery ON payledger.payment_audit_log (era, txid, id);

CREATE TABLE payledger.cluster_eras (
	system_identifier text PRIMARY KEY,
	era integer NOT NULL UNIQUE,
	first_seen timestamptz NOT NULL
);
COMMENT ON TABLE payledger.cluster_eras IS
	'The servers this ledger has lived on, numbered: transaction ids order events only within one era';

CREATE TABLE payledger.event_consumers (
	consumer text PRIMARY KEY,
	last_era integer NOT NULL,
	last_txid xid8 NOT NULL,
	last_id bigint NOT NULL,
	updated_at timestamptz NOT NULL
);
COMMENT ON TABLE payledger.event_consumers IS
	'How far each outbox consumer has acknowledged, in delivery order (era, txid, id)';

CREATE TABLE payledger.replay_counts (
	backend integer PRIMARY KEY,
	replays bigint NOT NULL
);
COMMENT ON TABLE payledger.replay_counts IS
	'Idempotent replays, one row per backend slot so that counting adds no contention';

-- pg_dump must carry the money: register every table and sequence
SELECT pg_catalog.pg_extension_config_dump('payledger.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.transfers', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.entries', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.holds', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.payments', '');
-- the "payment" machine comes with the extension; dump only the users' own
SELECT pg_catalog.pg_extension_config_dump('payledger.state_machines', 'WHERE name <> ''payment''');
SELECT pg_catalog.pg_extension_config_dump('payledger.settlements', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.account_limits', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.payment_audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.payment_audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.event_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.cluster_eras', '');
SELECT pg_catalog.pg_extension_config_dump('payledger.replay_counts', '');

-- Guards.  Statement-level, so that even a DELETE matching no row is refused,
-- and ENABLE ALWAYS, so that session_replication_role = replica does not
-- walk past them.
CREATE FUNCTION payledger.forbid_mutation()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'forbid_mutation';
COMMENT ON FUNCTION payledger.forbid_mutation() IS
	'Trigger: makes a table append-only (UPDATE, DELETE and TRUNCATE raise PY003)';

CREATE FUNCTION payledger.guard_internal()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'guard_internal';
COMMENT ON FUNCTION payledger.guard_internal() IS
	'Trigger: rows change only through payledger functions; DELETE and TRUNCATE never (PY003)';

CREATE TRIGGER transfers_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.transfers
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
CREATE TRIGGER entries_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.entries
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
CREATE TRIGGER audit_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.payment_audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
CREATE TRIGGER accounts_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.accounts
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
CREATE TRIGGER settlements_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.settlements
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
CREATE TRIGGER account_limits_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.account_limits
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();
CREATE TRIGGER holds_guard
	BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.holds
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_internal();

ALTER TABLE payledger.transfers ENABLE ALWAYS TRIGGER transfers_append_only;
ALTER TABLE payledger.entries ENABLE ALWAYS TRIGGER entries_append_only;
ALTER TABLE payledger.payment_audit_log ENABLE ALWAYS TRIGGER audit_append_only;
ALTER TABLE payledger.accounts ENABLE ALWAYS TRIGGER accounts_guard;
ALTER TABLE payledger.holds ENABLE ALWAYS TRIGGER holds_guard;
ALTER TABLE payledger.settlements ENABLE ALWAYS TRIGGER settlements_append_only;
ALTER TABLE payledger.account_limits ENABLE ALWAYS TRIGGER account_limits_guard;

-- Reusable state machines (src/state_machine.c); payments use "payment"
CREATE FUNCTION payledger.define_state_machine(name text, transitions jsonb)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'define_state_machine';
COMMENT ON FUNCTION payledger.define_state_machine(text, jsonb) IS
	'Creates or replaces a state machine: {"state": ["next", ...], ...}';

CREATE FUNCTION payledger.enforce_state_machine()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'enforce_state_machine';
COMMENT ON FUNCTION payledger.enforce_state_machine() IS
	'Trigger (BEFORE UPDATE FOR EACH ROW, args: machine, column): PY001 on a transition the machine does not allow';

CREATE FUNCTION payledger.guard_payments()
	RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'guard_payments';
COMMENT ON FUNCTION payledger.guard_payments() IS
	'Trigger: a payment''s amounts change only through payledger functions; every change bumps version';

SELECT payledger.define_state_machine('payment', '{
	"pending": ["authorized", "failed"],
	"authorized": ["captured", "voided", "expired", "failed"],
	"captured": ["partially_refunded", "refunded", "settled", "disputed"],
	"partially_refunded": ["partially_refunded", "refunded", "settled", "disputed"],
	"settled": ["partially_refunded", "refunded", "disputed"],
	"disputed": ["captured", "settled", "partially_refunded", "charged_back"],
	"failed": [], "voided": [], "expired": [], "refunded": [], "charged_back": []
}');

CREATE TRIGGER payments_1_state
	BEFORE UPDATE OF state ON payledger.payments
	FOR EACH ROW EXECUTE FUNCTION payledger.enforce_state_machine('payment', 'state');
CREATE TRIGGER payments_2_guard
	BEFORE UPDATE ON payledger.payments
	FOR EACH ROW EXECUTE FUNCTION payledger.guard_payments();
CREATE TRIGGER payments_no_delete
	BEFORE DELETE OR TRUNCATE ON payledger.payments
	FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation();
ALTER TABLE payledger.payments ENABLE ALWAYS TRIGGER payments_1_state;
ALTER TABLE payledger.payments ENABLE ALWAYS TRIGGER payments_2_guard;
ALTER TABLE payledger.payments ENABLE ALWAYS TRIGGER payments_no_delete;

-- DDL on the ledger raises PY007 (src/protect.c)
CREATE FUNCTION payledger.protect_ddl()
	RETURNS event_trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'protect_ddl';
COMMENT ON FUNCTION payledger.protect_ddl() IS
	'Event trigger: refuses ALTER/DROP of payledger objects and DROP EXTENSION while the ledger holds data';
CREATE EVENT TRIGGER payledger_protect_ddl ON ddl_command_start
	EXECUTE FUNCTION payledger.protect_ddl();
ALTER EVENT TRIGGER payledger_protect_ddl ENABLE ALWAYS;

-- Functions

CREATE FUNCTION payledger.uuid_v7()
	RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'uuid_v7';
COMMENT ON FUNCTION payledger.uuid_v7() IS 'A new time-ordered UUID (RFC 9562 version 7)';

CREATE FUNCTION payledger.create_account(
	currency text,
	kind text DEFAULT 'generic',
	min_balance bigint DEFAULT 0,
	metadata jsonb DEFAULT '{}',
	account_id uuid DEFAULT NULL)
	RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'create_account';
COMMENT ON FUNCTION payledger.create_account(text, text, bigint, jsonb, uuid) IS
	'Opens an account in one currency with a floor (NULL: no floor); idempotent on a caller-supplied id';

CREATE FUNCTION payledger.freeze_account(account_id uuid, reason text)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'freeze_account';
COMMENT ON FUNCTION payledger.freeze_account(uuid, text) IS
	'Stops an account from sending or receiving money';

CREATE FUNCTION payledger.unfreeze_account(account_id uuid)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'unfreeze_account';
COMMENT ON FUNCTION payledger.unfreeze_account(uuid) IS 'Lets a frozen account move money again';

CREATE FUNCTION payledger.close_account(account_id uuid)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'close_account';
COMMENT ON FUNCTION payledger.close_account(uuid) IS
	'Closes an account for good; only with a zero balance and nothing pending';

CREATE FUNCTION payledger.get_balance(account_id uuid)
	RETURNS TABLE(balance bigint, pending_debits bigint, pending_credits bigint,
				  available bigint, version bigint)
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'get_balance';
COMMENT ON FUNCTION payledger.get_balance(uuid) IS
	'Current balance, pending amounts, available (balance - pending_debits) and version of an account';

CREATE FUNCTION payledger.balance_at(account_id uuid, at timestamptz)
	RETURNS bigint
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'balance_at';
COMMENT ON FUNCTION payledger.balance_at(uuid, timestamptz) IS
	'Posted balance of an account as of a past instant';

CREATE FUNCTION payledger.account_entries(
	account_id uuid,
	since timestamptz DEFAULT '-infinity',
	until timestamptz DEFAULT 'infinity')
	RETURNS TABLE(transfer_id uuid, amount bigint, balance_after bigint,
				  posted_at timestamptz, account_version bigint)
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'account_entries';
COMMENT ON FUNCTION payledger.account_entries(uuid, timestamptz, timestamptz) IS
	'Statement of an account: every posting in [since, until] with its signed amount and the balance after it';

CREATE FUNCTION payledger.transfer(
	from_account uuid,
	to_account uuid,
	amount bigint,
	currency text,
	idempotency_key text DEFAULT NULL,
	metadata jsonb DEFAULT '{}',
	transfer_id uuid DEFAULT NULL)
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'transfer';
COMMENT ON FUNCTION payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid) IS
	'Moves amount from one account to another: double-entry, atomic, audited, idempotent';

CREATE FUNCTION payledger.hold(
	from_account uuid,
	to_account uuid,
	amount bigint,
	currency text,
	expires_in interval DEFAULT '7 days',
	idempotency_key text DEFAULT NULL,
	metadata jsonb DEFAULT '{}')
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'hold';
COMMENT ON FUNCTION payledger.hold(uuid, uuid, bigint, text, interval, text, jsonb) IS
	'Reserves amount on the source for the target until posted, voided or expired (status pending)';

CREATE FUNCTION payledger.post_hold(
	hold_id uuid,
	amount bigint DEFAULT NULL,
	idempotency_key text DEFAULT NULL)
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'post_hold';
COMMENT ON FUNCTION payledger.post_hold(uuid, bigint, text) IS
	'Posts a pending hold, in full (NULL) or in part, releasing the rest';

CREATE FUNCTION payledger.void_hold(hold_id uuid, idempotency_key text DEFAULT NULL)
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'void_hold';
COMMENT ON FUNCTION payledger.void_hold(uuid, text) IS 'Releases a pending hold (status voided)';

CREATE FUNCTION payledger.expire_holds()
	RETURNS integer
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'expire_holds';
COMMENT ON FUNCTION payledger.expire_holds() IS
	'Expires every pending hold past its expiry; returns how many';

CREATE FUNCTION payledger.transfer_legs(
	legs jsonb,
	currency text,
	idempotency_key text DEFAULT NULL,
	metadata jsonb DEFAULT '{}')
	RETURNS payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'transfer_legs';
COMMENT ON FUNCTION payledger.transfer_legs(jsonb, text, text, jsonb) IS
	'Posts [{"from": uuid, "to": uuid, "amount": n}, ...] atomically: every leg or none';

CREATE FUNCTION payledger.transfer_many(
	from_accounts uuid[],
	to_accounts uuid[],
	amounts bigint[],
	currency text,
	idempotency_keys text[] DEFAULT NULL)
	RETURNS SETOF payledger.transfer_result
	LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
	AS 'MODULE_PATHNAME', 'transfer_many';
COMMENT ON FUNCTION payledger.transfer_many(uuid[], uuid[], bigint[], text, text[]) IS
	'Independent transfers in one call: one result per item, in order';

CREATE FUNCTION payledger.create_payment(
	merchant_id uuid,
	customer_id uuid,
	amount bigint,
	currency text,
	source_account uuid,
	merchant_account uuid,
	idempotency_key text,
	metadata jsonb DEFAULT '{}')
	RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'create_payment';
COMMENT ON FUNCTION payledger.create_payment(uuid, uuid, bigint, text, uuid, uuid, text, jsonb) IS
	'A new payment in state pending';

CREATE FUNCTION payledger.authorize_payment(
	payment_id uuid,
	idempotency_key text,
	expires_in interval DEFAULT '7 days')
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'authorize_payment';
COMMENT ON FUNCTION payledger.authorize_payment(uuid, text, interval) IS
	'pending -> authorized (a hold from source to merchant account) or failed with the reason in the audit log';

CREATE FUNCTION payledger.capture_payment(
	payment_id uuid,
	idempotency_key text,
	amount bigint DEFAULT NULL,
	splits jsonb DEFAULT NULL)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'capture_payment';
COMMENT ON FUNCTION payledger.capture_payment(uuid, text, bigint, jsonb) IS
	'authorized -> captured, in full or in part; splits [{"account": uuid, "amount": n}] move out of the merchant account atomically';

CREATE FUNCTION payledger.void_payment(payment_id uuid, idempotency_key text)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'void_payment';
COMMENT ON FUNCTION payledger.void_payment(uuid, text) IS 'authorized -> voided: the hold is released';

CREATE FUNCTION payledger.refund_payment(
	payment_id uuid,
	amount bigint,
	idempotency_key text,
	reason_code text DEFAULT NULL)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'refund_payment';
COMMENT ON FUNCTION payledger.refund_payment(uuid, bigint, text, text) IS
	'Pays back from the merchant account; never more than captured';

CREATE FUNCTION payledger.fail_payment(payment_id uuid, reason_code text, idempotency_key text)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'fail_payment';
COMMENT ON FUNCTION payledger.fail_payment(uuid, text, text) IS
	'pending or authorized -> failed';

CREATE FUNCTION payledger.expire_authorizations()
	RETURNS integer
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'expire_authorizations';
COMMENT ON FUNCTION payledger.expire_authorizations() IS
	'Authorized payments whose hold is past expiry become expired; returns how many';

CREATE FUNCTION payledger.dispute_payment(
	payment_id uuid,
	amount bigint,
	idempotency_key text,
	reason_code text DEFAULT NULL)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'dispute_payment';
COMMENT ON FUNCTION payledger.dispute_payment(uuid, bigint, text, text) IS
	'-> disputed: the disputed amount is held out of the merchant''s available funds';

CREATE FUNCTION payledger.resolve_dispute(payment_id uuid, won boolean, idempotency_key text)
	RETURNS payledger.payment_state
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'resolve_dispute';
COMMENT ON FUNCTION payledger.resolve_dispute(uuid, boolean, text) IS
	'Won: back to the state before the dispute, funds released; lost: charged_back, funds returned to the customer';

CREATE FUNCTION payledger.settle_merchant(
	merchant_id uuid,
	cutoff timestamptz,
	payout_account uuid,
	idempotency_key text)
	RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'settle_merchant';
COMMENT ON FUNCTION payledger.settle_merchant(uuid, timestamptz, uuid, text) IS
	'Settles the merchant''s captured payments up to cutoff: net of fees and refunds to the payout account';

CREATE FUNCTION payledger.reconcile_settlement(settlement_id uuid, statement jsonb)
	RETURNS TABLE(payment_id uuid, ledger_amount bigint, statement_amount bigint, status text)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'reconcile_settlement';
COMMENT ON FUNCTION payledger.reconcile_settlement(uuid, jsonb) IS
	'Compares a processor statement [{"payment_id", "amount"}] with a settlement batch';

CREATE FUNCTION payledger.set_limits(
	account_id uuid,
	max_per_transfer bigint DEFAULT NULL,
	max_daily_debit bigint DEFAULT NULL)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'set_limits';
COMMENT ON FUNCTION payledger.set_limits(uuid, bigint, bigint) IS
	'Debit limits of an account (NULL = none); a debit above one is declined LIMIT_EXCEEDED';

CREATE FUNCTION payledger.purge_idempotency_keys()
	RETURNS bigint
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'purge_idempotency_keys';
COMMENT ON FUNCTION payledger.purge_idempotency_keys() IS
	'Deletes idempotency keys older than payledger.idempotency_retention; returns how many';

CREATE FUNCTION payledger.verify_audit_log()
	RETURNS TABLE(ok boolean, rows_checked bigint, first_bad_event_id uuid, problem text)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'verify_audit_log';
COMMENT ON FUNCTION payledger.verify_audit_log() IS
	'Recomputes every audit hash chain; reports the first row changed, deleted, inserted or reordered';

CREATE FUNCTION payledger.verify_audit_log(checkpoint jsonb)
	RETURNS TABLE(ok boolean, rows_checked bigint, first_bad_event_id uuid, problem text)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'verify_audit_log_checkpoint';
COMMENT ON FUNCTION payledger.verify_audit_log(jsonb) IS
	'verify_audit_log(), and also against a checkpoint kept outside the database (catches cut tails and rewritten chains)';

CREATE FUNCTION payledger.audit_checkpoint()
	RETURNS jsonb
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'audit_checkpoint';
COMMENT ON FUNCTION payledger.audit_checkpoint() IS
	'Every audit chain''s head, signed: store it outside the database and pass it to verify_audit_log() later';

CREATE FUNCTION payledger.read_events(consumer text, max_events integer DEFAULT 1000)
	RETURNS SETOF payledger.payment_audit_log
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'read_events';
COMMENT ON FUNCTION payledger.read_events(text, integer) IS
	'Outbox: events this consumer has not acknowledged, oldest first, never skipping a late commit';

CREATE FUNCTION payledger.ack_events(consumer text, up_to_event_id uuid)
	RETURNS void
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'ack_events';
COMMENT ON FUNCTION payledger.ack_events(text, uuid) IS
	'Outbox: acknowledges every event up to and including this one';

CREATE FUNCTION payledger.delivery_era()
	RETURNS integer
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'delivery_era';
COMMENT ON FUNCTION payledger.delivery_era() IS
	'This server''s era in the outbox''s delivery order (a restore onto another server starts a new one)';

CREATE FUNCTION payledger.check_ledger()
	RETURNS TABLE(check_name text, ok boolean, detail text)
	LANGUAGE c VOLATILE PARALLEL UNSAFE
	AS 'MODULE_PATHNAME', 'check_ledger';
COMMENT ON FUNCTION payledger.check_ledger() IS
	'Verifies the ledger''s invariants; one row per check';

CREATE FUNCTION payledger.error_counts()
	RETURNS TABLE(sqlstate text, errors bigint)
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'error_counts';
COMMENT ON FUNCTION payledger.error_counts() IS
	'Errors payledger raised since the server started, by SQLSTATE (needs shared_preload_libraries)';

-- Prometheus-style counters, derived from the ledger's tables: the money
-- path updates no shared counter row.
CREATE VIEW payledger.metrics AS
	SELECT 'payledger_transfers_total'::text AS metric,
		   pg_catalog.jsonb_build_object('status', t.status, 'reason_code', COALESCE(t.reason_code, '')) AS labels,
		   pg_catalog.count(*)::double precision AS value
	  FROM (SELECT status, reason_code FROM payledger.transfers
			UNION ALL
			SELECT status, NULL FROM payledger.holds WHERE status <> 'posted') t
	 GROUP BY t.status, t.reason_code
	UNION ALL
	SELECT 'payledger_payments_total',
		   pg_catalog.jsonb_build_object('event_type', event_type, 'success', success),
		   pg_catalog.count(*)::double precision
	  FROM payledger.payment_audit_log
	 WHERE event_type LIKE 'PAYMENT%' OR event_type = 'DISPUTE_WON'
	 GROUP BY event_type, success
	UNION ALL
	SELECT 'payledger_payment_success_ratio', '{}'::jsonb,
		   COALESCE(pg_catalog.avg(CASE WHEN success THEN 1.0 ELSE 0.0 END), 1.0)::double precision
	  FROM payledger.payment_audit_log
	 WHERE event_type IN ('PAYMENT_AUTHORIZED', 'PAYMENT_FAILED')
	UNION ALL
	SELECT 'payledger_idempotent_replays_total', '{}'::jsonb,
		   COALESCE(pg_catalog.sum(replays), 0)::double precision
	  FROM payledger.replay_counts
	UNION ALL
	SELECT 'payledger_holds_pending', pg_catalog.jsonb_build_object('currency', currency),
		   pg_catalog.count(*)::double precision
	  FROM payledger.holds WHERE status = 'pending' GROUP BY currency
	UNION ALL
	SELECT 'payledger_holds_pending_amount', pg_catalog.jsonb_build_object('currency', currency),
		   pg_catalog.sum(amount)::double precision
	  FROM payledger.holds WHERE status = 'pending' GROUP BY currency
	UNION ALL
	SELECT 'payledger_oldest_pending_hold_seconds', '{}'::jsonb,
		   COALESCE(EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.min(created_at)), 0)::double precision
	  FROM payledger.holds WHERE status = 'pending'
	UNION ALL
	SELECT 'payledger_audit_rows_total', '{}'::jsonb, pg_catalog.count(*)::double precision
	  FROM payledger.payment_audit_log
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

-- Operator and batch functions are not for every role with USAGE on the
-- schema: they change or reveal the whole ledger.  Grant them explicitly.
REVOKE EXECUTE ON FUNCTION
	payledger.define_state_machine(text, jsonb),
	payledger.set_limits(uuid, bigint, bigint),
	payledger.freeze_account(uuid, text),
	payledger.unfreeze_account(uuid),
	payledger.close_account(uuid),
	payledger.settle_merchant(uuid, timestamptz, uuid, text),
	payledger.purge_idempotency_keys(),
	payledger.expire_holds(),
	payledger.expire_authorizations(),
	payledger.audit_checkpoint(),
	payledger.verify_audit_log(),
	payledger.verify_audit_log(jsonb),
	payledger.check_ledger(),
	payledger.read_events(text, integer),
	payledger.ack_events(text, uuid)
FROM PUBLIC;
