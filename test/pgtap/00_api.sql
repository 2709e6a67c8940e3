-- 00_api.sql: the names, arguments and results doc/reference.md sections 3, 4, 5, 7
-- and 8 fix for the ledger core, and the audit log's columns

BEGIN;

SELECT plan(21);

SELECT has_schema('payledger', 'schema payledger exists');

-- pg_get_function_arguments/result print the signature as the contract writes it
CREATE FUNCTION pg_temp.signature(p_fn regprocedure) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT pg_get_function_arguments(p_fn) || ' -> ' || pg_get_function_result(p_fn) $$;

SELECT is(pg_temp.signature('payledger.create_account(text, text, bigint, jsonb, uuid, uuid)'),
	$$currency text, kind text DEFAULT 'generic'::text, min_balance bigint DEFAULT 0, metadata jsonb DEFAULT '{}'::jsonb, account_id uuid DEFAULT NULL::uuid, owner_id uuid DEFAULT NULL::uuid -> uuid$$,
	'create_account(currency, kind, min_balance, metadata, account_id, owner_id) RETURNS uuid');
SELECT is(pg_temp.signature('payledger.freeze_account(uuid, text)'),
	'account_id uuid, reason text -> void', 'freeze_account(account_id, reason)');
SELECT is(pg_temp.signature('payledger.unfreeze_account(uuid)'),
	'account_id uuid -> void', 'unfreeze_account(account_id)');
SELECT is(pg_temp.signature('payledger.close_account(uuid)'),
	'account_id uuid -> void', 'close_account(account_id)');
SELECT is(pg_temp.signature('payledger.get_balance(uuid)'),
	'account_id uuid -> TABLE(balance bigint, pending_debits bigint, pending_credits bigint, available bigint, version bigint)',
	'get_balance(account_id) RETURNS TABLE(balance, pending_debits, pending_credits, available, version)');
SELECT is(pg_temp.signature('payledger.balance_at(uuid, timestamptz)'),
	'account_id uuid, at timestamp with time zone -> bigint', 'balance_at(account_id, at) RETURNS bigint');
SELECT is(pg_get_function_arguments('payledger.account_entries(uuid, timestamptz, timestamptz)'::regprocedure),
	$$account_id uuid, since timestamp with time zone DEFAULT '-infinity'::timestamp with time zone, until timestamp with time zone DEFAULT 'infinity'::timestamp with time zone$$,
	'account_entries(account_id, since DEFAULT -infinity, until DEFAULT infinity)');
SELECT is(pg_temp.signature('payledger.transfer(uuid, uuid, bigint, text, text, jsonb, uuid)'),
	$$from_account uuid, to_account uuid, amount bigint, currency text, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT '{}'::jsonb, transfer_id uuid DEFAULT NULL::uuid -> payledger.transfer_result$$,
	'transfer(from_account, to_account, amount, currency, idempotency_key, metadata, transfer_id) RETURNS transfer_result');
SELECT is(pg_temp.signature('payledger.purge_idempotency_keys()'),
	' -> bigint', 'purge_idempotency_keys() RETURNS bigint');
SELECT is(pg_temp.signature('payledger.check_ledger()'),
	' -> TABLE(check_name text, ok boolean, detail text)', 'check_ledger() RETURNS TABLE(check_name, ok, detail)');
SELECT is(pg_temp.signature('payledger.uuid_v7()'), ' -> uuid', 'uuid_v7() RETURNS uuid');

SELECT results_eq(
	$$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
	   WHERE attrelid = 'payledger.transfer_result'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum$$,
	$$VALUES ('transfer_id', 'uuid'), ('status', 'text'), ('reason_code', 'text'), ('replayed', 'boolean')$$,
	'transfer_result is (transfer_id uuid, status text, reason_code text, replayed boolean)');

-- uuid_v7: version 7, RFC 9562 variant, time-ordered
SELECT is(substr(payledger.uuid_v7()::text, 15, 1), '7', 'uuid_v7() sets version 7');
SELECT ok(substr(payledger.uuid_v7()::text, 20, 1) IN ('8', '9', 'a', 'b'), 'uuid_v7() sets the RFC variant');
SELECT is((SELECT count(*) FROM (SELECT payledger.uuid_v7() AS u FROM generate_series(1, 1000)) s), 1000::bigint,
	'uuid_v7() returns a value per call');
SELECT ok((SELECT bool_and(u < lead_u) FROM (
			SELECT u, lead(u) OVER (ORDER BY g) AS lead_u
			  FROM (SELECT g, payledger.uuid_v7() AS u FROM generate_series(1, 1000) g) s) t
		   WHERE lead_u IS NOT NULL),
	'successive uuid_v7() values in one session increase');

-- the audit log's columns (section 7)
SELECT is_empty(
	$$SELECT c FROM unnest(ARRAY['id', 'event_id', 'correlation_id', 'idempotency_key', 'event_time',
	    'server_time', 'event_type', 'previous_state', 'new_state', 'actor_type', 'actor_id',
	    'payment_id', 'amount_cents', 'currency', 'merchant_id', 'customer_id', 'ip_address',
	    'user_agent_hash', 'device_id', 'success', 'reason_code', 'error_message', 'metadata',
	    'created_at']) c
	  EXCEPT SELECT attname::text FROM pg_attribute
	   WHERE attrelid = 'payledger.payment_audit_log'::regclass AND attnum > 0 AND NOT attisdropped$$,
	'payment_audit_log has every column the contract lists');
SELECT results_eq(
	$$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
	   WHERE attrelid = 'payledger.payment_audit_log'::regclass
	     AND attname IN ('id', 'event_id', 'correlation_id', 'payment_id', 'amount_cents',
	                     'ip_address', 'success', 'metadata', 'event_time')
	   ORDER BY attname$$,
	$$VALUES ('amount_cents', 'bigint'), ('correlation_id', 'uuid'), ('event_id', 'uuid'),
	         ('event_time', 'timestamp with time zone'), ('id', 'bigint'), ('ip_address', 'text'),
	         ('metadata', 'jsonb'), ('payment_id', 'uuid'), ('success', 'boolean')$$,
	'payment_audit_log column types: id bigint, event_id uuid, ip_address text, metadata jsonb, ...');
SELECT col_is_unique('payledger', 'payment_audit_log', 'event_id', 'payment_audit_log.event_id is unique');
SELECT col_default_is('payledger', 'payment_audit_log', 'id',
	$$nextval('payledger.payment_audit_log_id_seq'::regclass)$$, 'payment_audit_log.id is a bigserial');

SELECT * FROM finish();
ROLLBACK;
