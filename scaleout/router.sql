-- scaleout/router.sql: a router database whose payledger.* functions have
-- the signatures of the extension's and run each call on the shard that
-- owns its key, through PL/Proxy.  Applications connect to the router and
-- keep their SQL.
--
-- Before running this file in the router database:
--   CREATE EXTENSION plproxy;
--   CREATE SERVER payledger_shards FOREIGN DATA WRAPPER plproxy
--     OPTIONS (p0 'host=... dbname=...', p1 '...', ...);  -- a power of two
--   CREATE USER MAPPING FOR PUBLIC SERVER payledger_shards OPTIONS (user '...');
-- Each shard runs the extension, scaleout/shard.sql, and has
-- payledger.shard_id set to its partition number.
--
-- Routing needs no lookup: every id a shard makes carries the shard's
-- number in its last byte (payledger.shard_id), so a call about an account,
-- a hold, a payment, a transfer or a settlement goes to the shard that made
-- that id.  New accounts are placed by owner (all accounts of one owner on
-- one shard: a payment moves money between accounts of its merchant's
-- shard), otherwise on a random shard.  A transfer between shards is a saga
-- through the shards' clearing accounts (see scaleout/shard.sql).

\set ON_ERROR_STOP 1

CREATE SCHEMA payledger;
CREATE SCHEMA payledger_router;

CREATE TYPE payledger.transfer_result AS (
	transfer_id uuid,
	status text,
	reason_code text,
	replayed boolean
);

CREATE TYPE payledger.payment_state AS ENUM (
	'pending', 'authorized', 'captured', 'partially_refunded', 'refunded', 'settled',
	'failed', 'voided', 'expired', 'disputed', 'charged_back'
);

-- the columns of a shard's payledger.payments that the read API returns
CREATE TYPE payledger.payments AS (
	id uuid,
	merchant_id uuid,
	customer_id uuid,
	amount bigint,
	currency text,
	state payledger.payment_state,
	source_account uuid,
	merchant_account uuid,
	captured_amount bigint,
	refunded_amount bigint,
	disputed_amount bigint,
	correlation_id uuid,
	version bigint,
	metadata jsonb,
	created_at timestamptz,
	updated_at timestamptz
);

------------------------------------------------------------------------------
-- Routing
------------------------------------------------------------------------------

-- the shard that made an id (NULL goes to shard 0, which raises 22004)
CREATE FUNCTION payledger_router.shard_of(id uuid)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.get_byte(pg_catalog.uuid_send(id), 15), 0)
$$;

-- the number of shards (partitions p0 .. pN-1 of server payledger_shards)
CREATE FUNCTION payledger_router.shard_count()
RETURNS integer LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.count(*)::integer
	FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
	WHERE s.srvname OPERATOR(pg_catalog.=) 'payledger_shards'
	  AND o OPERATOR(pg_catalog.~) '^p[0-9]+='
$$;

-- the shard of an owner's accounts
CREATE FUNCTION payledger_router.owner_shard(owner_id uuid)
RETURNS integer LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (pg_catalog.hashtext(owner_id::text)::bigint OPERATOR(pg_catalog.&) 2147483647)::integer
		   OPERATOR(pg_catalog.%) payledger_router.shard_count()
$$;

-- A new time-ordered (version 7) id that routes to a shard: for callers
-- that supply their own account or transfer ids.
CREATE FUNCTION payledger_router.new_id(shard integer)
RETURNS uuid LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (pg_catalog.lpad(pg_catalog.to_hex((pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
											   OPERATOR(pg_catalog.*) 1000)::bigint), 12, '0')
			OPERATOR(pg_catalog.||) '7' OPERATOR(pg_catalog.||) pg_catalog.substr(h, 1, 3)
			OPERATOR(pg_catalog.||) pg_catalog.substr('89ab', 1 OPERATOR(pg_catalog.+)
								 (pg_catalog.get_byte(pg_catalog.decode(pg_catalog.substr(h, 4, 2), 'hex'), 0)
								  OPERATOR(pg_catalog.%) 4), 1)
			OPERATOR(pg_catalog.||) pg_catalog.substr(h, 6, 13)
			OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.to_hex(shard), 2, '0'))::uuid
	FROM (SELECT pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '') AS h) r
$$;

------------------------------------------------------------------------------
-- Calls on one shard chosen by the router (PL/Proxy, RUN ON the shard number)
------------------------------------------------------------------------------

CREATE FUNCTION payledger_router.on_create_account(shard integer, currency text, kind text,
												   min_balance bigint, metadata jsonb,
												   account_id uuid)
RETURNS uuid AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT payledger.create_account(currency, kind, min_balance, metadata, account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_create_owned_account(shard integer, currency text, kind text,
														 min_balance bigint, metadata jsonb,
														 account_id uuid, owner_id uuid)
RETURNS uuid AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT payledger.create_account(currency, kind, min_balance, metadata, account_id, owner_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_transfer(shard integer, from_account uuid, to_account uuid,
											 amount bigint, currency text, idempotency_key text,
											 metadata jsonb, transfer_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger.transfer(from_account, to_account, amount, currency,
									 idempotency_key, metadata, transfer_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_submit_transfer(shard integer, from_account uuid,
													to_account uuid, amount bigint, currency text,
													idempotency_key text, metadata jsonb)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger.submit_transfer(from_account, to_account, amount, currency,
											idempotency_key, metadata);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_hold(shard integer, from_account uuid, to_account uuid,
										 amount bigint, currency text, expires_in interval,
										 idempotency_key text, metadata jsonb)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger.hold(from_account, to_account, amount, currency, expires_in,
								 idempotency_key, metadata);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_transfer_legs(shard integer, legs jsonb, currency text,
												  idempotency_key text, metadata jsonb)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger.transfer_legs(legs, currency, idempotency_key, metadata);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_transfer_many(shard integer, from_accounts uuid[],
												  to_accounts uuid[], amounts bigint[],
												  currency text, idempotency_keys text[])
RETURNS SETOF payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger.transfer_many(from_accounts, to_accounts, amounts, currency,
										  idempotency_keys);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_create_payment(shard integer, merchant_id uuid,
												   customer_id uuid, amount bigint,
												   currency text, source_account uuid,
												   merchant_account uuid, idempotency_key text,
												   metadata jsonb)
RETURNS uuid AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT payledger.create_payment(merchant_id, customer_id, amount, currency, source_account,
									merchant_account, idempotency_key, metadata);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.on_account_info(shard integer, account_id uuid)
RETURNS TABLE(currency text, status text) AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.account_info(account_id);
$$ LANGUAGE plproxy;

------------------------------------------------------------------------------
-- Calls on every shard (PL/Proxy, RUN ON ALL); the router merges the rows
------------------------------------------------------------------------------

CREATE FUNCTION payledger_router.all_expire_holds()
RETURNS SETOF integer AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT payledger.expire_holds();
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_expire_authorizations()
RETURNS SETOF integer AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT payledger.expire_authorizations();
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_purge_idempotency_keys()
RETURNS SETOF bigint AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT payledger.purge_idempotency_keys();
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_check_ledger()
RETURNS TABLE(check_name text, ok boolean, detail text) AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT 'shard ' || current_setting('payledger.shard_id') || ': ' || c.check_name AS check_name,
		   c.ok, c.detail
	FROM payledger.check_ledger() c;
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_verify_audit_log()
RETURNS TABLE(shard integer, ok boolean, rows_checked bigint, first_bad_event_id uuid,
			  problem text) AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT current_setting('payledger.shard_id')::integer AS shard, v.ok, v.rows_checked,
		   v.first_bad_event_id, v.problem
	FROM payledger.verify_audit_log() v;
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_list_transfers(account_id uuid, since timestamptz,
													until timestamptz, status text,
													metadata_contains jsonb, after_id uuid,
													max_rows integer)
RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
			  amount bigint, from_account uuid, to_account uuid, legs jsonb,
			  idempotency_key text, metadata jsonb, created_at timestamptz) AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT * FROM payledger.list_transfers(account_id, since, until, status, metadata_contains,
										   after_id, max_rows);
$$ LANGUAGE plproxy;

-- one account's transfers: every one touching it is on its shard
CREATE FUNCTION payledger_router.shard_list_transfers(account_id uuid, since timestamptz,
													  until timestamptz, status text,
													  metadata_contains jsonb, after_id uuid,
													  max_rows integer)
RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
			  amount bigint, from_account uuid, to_account uuid, legs jsonb,
			  idempotency_key text, metadata jsonb, created_at timestamptz) AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
	SELECT * FROM payledger.list_transfers(account_id, since, until, status, metadata_contains,
										   after_id, max_rows);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_list_payments(merchant_id uuid,
												   state payledger.payment_state,
												   since timestamptz, until timestamptz,
												   metadata_contains jsonb, after_id uuid,
												   max_rows integer)
RETURNS SETOF payledger.payments AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT p.id, p.merchant_id, p.customer_id, p.amount, p.currency, p.state,
		   p.source_account, p.merchant_account, p.captured_amount, p.refunded_amount,
		   p.disputed_amount, p.correlation_id, p.version, p.metadata, p.created_at,
		   p.updated_at
	  FROM payledger.list_payments(merchant_id, state, since, until, metadata_contains,
								   after_id, max_rows) p;
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.all_list_accounts(owner_id uuid, kind text, currency text,
												   after_id uuid, max_rows integer)
RETURNS TABLE(account_id uuid, currency text, kind text, owner_id uuid, status text,
			  balance bigint, pending_debits bigint, available bigint, min_balance bigint,
			  metadata jsonb, created_at timestamptz) AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT * FROM payledger.list_accounts(owner_id, kind, currency, after_id, max_rows);
$$ LANGUAGE plproxy;

------------------------------------------------------------------------------
-- Saga steps (scaleout/shard.sql), each on its shard
------------------------------------------------------------------------------

CREATE FUNCTION payledger_router.saga_reserve(shard integer, saga_key text, from_account uuid,
											  to_account uuid, amount bigint, currency text,
											  metadata jsonb, expires_in interval,
											  correlation_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_reserve(saga_key, from_account, to_account, amount,
											   currency, metadata, expires_in, correlation_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_credit(shard integer, saga_key text, from_account uuid,
											 to_account uuid, amount bigint, currency text,
											 metadata jsonb, correlation_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_credit(saga_key, from_account, to_account, amount,
											  currency, metadata, correlation_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_reverse(shard integer, saga_key text, from_account uuid,
											  to_account uuid, amount bigint, currency text,
											  metadata jsonb, correlation_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_reverse(saga_key, from_account, to_account, amount,
											   currency, metadata, correlation_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_step(shard integer, saga_key text, step text)
RETURNS SETOF payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_step(saga_key, step);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_hold_status(shard integer, saga_key text)
RETURNS text AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT payledger_shard.saga_hold_status(saga_key);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_post(shard integer, saga_key text, correlation_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_post(saga_key, correlation_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_void(shard integer, saga_key text, correlation_id uuid)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT * FROM payledger_shard.saga_void(saga_key, correlation_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.saga_finish(shard integer, saga_key text, state text,
											 reason_code text)
RETURNS void AS $$
	CLUSTER 'payledger_shards';
	RUN ON shard;
	SELECT payledger_shard.saga_finish(saga_key, state, reason_code);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger_router.unfinished_sagas(older_than interval)
RETURNS TABLE(saga_key text, from_account uuid, to_account uuid, amount bigint, currency text,
			  metadata jsonb, expires_in interval, correlation_id uuid, state text,
			  created_at timestamptz) AS $$
	CLUSTER 'payledger_shards';
	RUN ON ALL;
	SELECT saga_key, from_account, to_account, amount, currency, metadata, expires_in,
		   correlation_id, state, created_at
	FROM payledger_shard.unfinished_sagas(older_than);
$$ LANGUAGE plproxy;

-- A test hook: payledger_router.saga_fault = '<step>' makes a saga fail
-- right after that step as if the router died there; 'wait:<step>' makes
-- it wait there for advisory lock 'payledger saga fault' (a test holds it
-- while it stops a server).
CREATE FUNCTION payledger_router.saga_fault_point(step text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fault text := pg_catalog.current_setting('payledger_router.saga_fault', true);
BEGIN
	IF fault OPERATOR(pg_catalog.=) step THEN
		RAISE EXCEPTION 'saga stopped after step %', step USING ERRCODE = '57P01';
	ELSIF fault OPERATOR(pg_catalog.=) ('wait:' OPERATOR(pg_catalog.||) step) THEN
		PERFORM pg_catalog.pg_advisory_lock(pg_catalog.hashtext('payledger saga fault'));
		PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('payledger saga fault'));
	END IF;
END
$$;

------------------------------------------------------------------------------
-- Cross-shard transfers
------------------------------------------------------------------------------

-- Runs (or resumes) the saga of one cross-shard transfer to its end.  Every
-- step is an idempotent call keyed from saga_key, so running it again, by a
-- retry of the caller or by recover_sagas(), replays what was done and does
-- what was not.  The result is the reservation's id with the saga's outcome.
CREATE FUNCTION payledger_router.run_saga(saga_key text, from_account uuid, to_account uuid,
										  amount bigint, currency text, metadata jsonb,
										  expires_in interval, correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src integer := payledger_router.shard_of(from_account);
	dst integer := payledger_router.shard_of(to_account);
	reserve payledger.transfer_result;
	credit payledger.transfer_result;
	post payledger.transfer_result;
	back payledger.transfer_result;
	hold_status text;
BEGIN
	reserve := payledger_router.saga_reserve(src, saga_key, from_account, to_account, amount,
											 currency, metadata, expires_in, correlation_id);
	IF reserve.status OPERATOR(pg_catalog.=) 'rejected' THEN
		RETURN reserve;
	END IF;
	PERFORM payledger_router.saga_fault_point('reserve');

	-- a reservation that ended before the credit was made: nothing to undo
	SELECT * INTO credit FROM payledger_router.saga_step(dst, saga_key, 'credit');
	IF credit.transfer_id IS NULL THEN
		hold_status := payledger_router.saga_hold_status(src, saga_key);
		IF hold_status OPERATOR(pg_catalog.<>) 'pending' THEN
			PERFORM payledger_router.saga_void(src, saga_key, correlation_id);
			PERFORM payledger_router.saga_finish(src, saga_key, 'compensated',
				CASE hold_status WHEN 'expired' THEN 'HOLD_EXPIRED' ELSE 'HOLD_NOT_PENDING' END);
			RETURN (reserve.transfer_id, 'rejected',
					CASE hold_status WHEN 'expired' THEN 'HOLD_EXPIRED' ELSE 'HOLD_NOT_PENDING' END,
					false)::payledger.transfer_result;
		END IF;
	END IF;
	credit := payledger_router.saga_credit(dst, saga_key, from_account, to_account, amount,
										   currency, metadata, correlation_id);
	IF credit.status OPERATOR(pg_catalog.=) 'rejected' THEN
		PERFORM payledger_router.saga_void(src, saga_key, correlation_id);
		PERFORM payledger_router.saga_finish(src, saga_key, 'rejected', credit.reason_code);
		RETURN (reserve.transfer_id, 'rejected', credit.reason_code,
				reserve.replayed AND credit.replayed)::payledger.transfer_result;
	END IF;
	PERFORM payledger_router.saga_fault_point('credit');

	post := payledger_router.saga_post(src, saga_key, correlation_id);
	IF post.status OPERATOR(pg_catalog.=) 'posted' THEN
		PERFORM payledger_router.saga_fault_point('post');
		RETURN (reserve.transfer_id, 'posted', NULL,
				reserve.replayed AND credit.replayed AND post.replayed)::payledger.transfer_result;
	END IF;

	-- the reservation can no longer be posted: take the credit back
	back := payledger_router.saga_reverse(dst, saga_key, from_account, to_account, amount,
										  currency, metadata, correlation_id);
	IF back.status OPERATOR(pg_catalog.<>) 'posted' THEN
		-- credited but neither posted nor taken back: recovery tries again
		PERFORM payledger_router.saga_finish(src, saga_key, 'stuck', back.reason_code);
		RETURN (reserve.transfer_id, 'pending', back.reason_code, false)::payledger.transfer_result;
	END IF;
	PERFORM payledger_router.saga_void(src, saga_key, correlation_id);
	PERFORM payledger_router.saga_finish(src, saga_key, 'compensated', post.reason_code);
	RETURN (reserve.transfer_id, 'rejected', post.reason_code, false)::payledger.transfer_result;
END
$$;

-- Completes or compensates every saga left half done (its router stopped,
-- a shard was unreachable, its caller gave up) that started at least
-- older_than ago; returns each with its outcome.  Safe to run at any time,
-- from any number of routers at once: it only repeats keyed steps.
CREATE FUNCTION payledger_router.recover_sagas(older_than interval DEFAULT '1 minute')
RETURNS TABLE(saga_key text, status text, reason_code text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
	r payledger.transfer_result;
BEGIN
	FOR s IN SELECT * FROM payledger_router.unfinished_sagas(older_than) u ORDER BY u.created_at
	LOOP
		r := payledger_router.run_saga(s.saga_key, s.from_account, s.to_account, s.amount,
									   s.currency, s.metadata, s.expires_in, s.correlation_id);
		saga_key := s.saga_key;
		status := r.status;
		reason_code := r.reason_code;
		RETURN NEXT;
	END LOOP;
END
$$;

-- how long a cross-shard transfer's reservation lasts: recovery must run
-- well within it (a setting of the router, default 1 hour)
CREATE FUNCTION payledger_router.saga_expiry()
RETURNS interval LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(NULLIF(pg_catalog.current_setting('payledger_router.saga_expiry', true), ''),
					'1 hour')::interval
$$;

CREATE FUNCTION payledger_router.cross_shard_transfer(from_account uuid, to_account uuid,
													  amount bigint, currency text,
													  idempotency_key text, metadata jsonb)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	info record;
	cid text := NULLIF(pg_catalog.current_setting('payledger.correlation_id', true), '');
BEGIN
	IF idempotency_key IS NULL THEN
		RAISE EXCEPTION 'a transfer between shards needs an idempotency key'
			USING ERRCODE = 'PY008',
				  DETAIL = 'Its steps on each shard are keyed from it, so that it can be resumed.';
	END IF;
	IF amount IS NULL OR currency IS NULL OR metadata IS NULL THEN
		RAISE EXCEPTION 'amount, currency and metadata must not be null'
			USING ERRCODE = '22004';
	END IF;
	-- the target must exist and take this currency before anything is reserved
	SELECT * INTO info FROM payledger_router.on_account_info(
		payledger_router.shard_of(to_account), to_account);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account % does not exist', to_account USING ERRCODE = 'PY005';
	END IF;
	IF info.currency OPERATOR(pg_catalog.<>) currency THEN
		RAISE EXCEPTION 'account % holds %, not %', to_account, info.currency, currency
			USING ERRCODE = 'PY004';
	END IF;
	RETURN payledger_router.run_saga(idempotency_key, from_account, to_account, amount, currency,
									 metadata, payledger_router.saga_expiry(),
									 COALESCE(cid::uuid,
											  pg_catalog.md5('payledger saga ' OPERATOR(pg_catalog.||)
															 idempotency_key)::uuid));
END
$$;

------------------------------------------------------------------------------
-- The application's functions
------------------------------------------------------------------------------

-- Accounts: an explicit id decides the shard (it must name one of them);
-- otherwise an owner's accounts share its shard, others go anywhere.
CREATE FUNCTION payledger.create_account(currency text, kind text DEFAULT 'generic',
										 min_balance bigint DEFAULT 0, metadata jsonb DEFAULT '{}',
										 account_id uuid DEFAULT NULL, owner_id uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer := payledger_router.shard_count();
	shard integer;
BEGIN
	IF account_id IS NOT NULL THEN
		shard := payledger_router.shard_of(account_id);
		IF shard OPERATOR(pg_catalog.>=) n THEN
			RAISE EXCEPTION 'account id % does not name one of the % shards', account_id, n
				USING ERRCODE = '22023',
					  HINT = 'The last byte of an id is its shard: make ids with payledger_router.new_id(shard).';
		END IF;
	ELSIF owner_id IS NOT NULL THEN
		shard := payledger_router.owner_shard(owner_id);
	ELSE
		shard := pg_catalog.floor(pg_catalog.random() OPERATOR(pg_catalog.*) n)::integer;
	END IF;
	IF owner_id IS NULL THEN
		RETURN payledger_router.on_create_account(shard, currency, kind, min_balance, metadata,
												  account_id);
	END IF;
	RETURN payledger_router.on_create_owned_account(shard, currency, kind, min_balance, metadata,
													account_id, owner_id);
END
$$;

CREATE FUNCTION payledger.freeze_account(account_id uuid, reason text)
RETURNS void AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.unfreeze_account(account_id uuid)
RETURNS void AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.close_account(account_id uuid)
RETURNS void AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.get_balance(account_id uuid)
RETURNS TABLE(balance bigint, pending_debits bigint, pending_credits bigint, available bigint,
			  version bigint) AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.balance_at(account_id uuid, at timestamptz)
RETURNS bigint AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.account_entries(account_id uuid, since timestamptz DEFAULT '-infinity',
										  until timestamptz DEFAULT 'infinity')
RETURNS TABLE(transfer_id uuid, amount bigint, balance_after bigint, posted_at timestamptz,
			  account_version bigint) AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.set_limits(account_id uuid, max_per_transfer bigint DEFAULT NULL,
									 max_daily_debit bigint DEFAULT NULL)
RETURNS void AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.set_sub_balances(account_id uuid, sub_balances integer)
RETURNS integer AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(account_id);
$$ LANGUAGE plproxy;

-- Transfers: on the source's shard when both accounts are there, else a saga.
CREATE FUNCTION payledger.transfer(from_account uuid, to_account uuid, amount bigint,
								   currency text, idempotency_key text DEFAULT NULL,
								   metadata jsonb DEFAULT '{}', transfer_id uuid DEFAULT NULL)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src integer := payledger_router.shard_of(from_account);
BEGIN
	IF to_account IS NULL OR payledger_router.shard_of(to_account) OPERATOR(pg_catalog.=) src THEN
		IF transfer_id IS NOT NULL
		   AND payledger_router.shard_of(transfer_id) OPERATOR(pg_catalog.<>) src THEN
			RAISE EXCEPTION 'transfer id % does not name the shard of its source account', transfer_id
				USING ERRCODE = '22023',
					  HINT = 'Make ids with payledger_router.new_id(shard), or let the ledger make them.';
		END IF;
		RETURN payledger_router.on_transfer(src, from_account, to_account, amount, currency,
											idempotency_key, metadata, transfer_id);
	END IF;
	IF transfer_id IS NOT NULL THEN
		RAISE EXCEPTION 'a transfer between shards takes no transfer id'
			USING ERRCODE = '0A000',
				  DETAIL = 'Its id is the id of the reservation on the source shard.';
	END IF;
	RETURN payledger_router.cross_shard_transfer(from_account, to_account, amount, currency,
												 idempotency_key, metadata);
END
$$;

CREATE FUNCTION payledger.submit_transfer(from_account uuid, to_account uuid, amount bigint,
										  currency text, idempotency_key text,
										  metadata jsonb DEFAULT '{}')
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src integer := payledger_router.shard_of(from_account);
BEGIN
	IF to_account IS NULL OR payledger_router.shard_of(to_account) OPERATOR(pg_catalog.=) src THEN
		RETURN payledger_router.on_submit_transfer(src, from_account, to_account, amount, currency,
												   idempotency_key, metadata);
	END IF;
	RETURN payledger_router.cross_shard_transfer(from_account, to_account, amount, currency,
												 idempotency_key, metadata);
END
$$;

CREATE FUNCTION payledger.hold(from_account uuid, to_account uuid, amount bigint, currency text,
							   expires_in interval DEFAULT '7 days',
							   idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src integer := payledger_router.shard_of(from_account);
BEGIN
	IF to_account IS NOT NULL
	   AND payledger_router.shard_of(to_account) OPERATOR(pg_catalog.<>) src THEN
		RAISE EXCEPTION 'a hold between accounts on different shards is not supported'
			USING ERRCODE = '0A000',
				  HINT = 'Hold within one shard, or transfer between shards (a saga).';
	END IF;
	RETURN payledger_router.on_hold(src, from_account, to_account, amount, currency, expires_in,
									idempotency_key, metadata);
END
$$;

CREATE FUNCTION payledger.post_hold(hold_id uuid, amount bigint DEFAULT NULL,
									idempotency_key text DEFAULT NULL)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(hold_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.void_hold(hold_id uuid, idempotency_key text DEFAULT NULL)
RETURNS payledger.transfer_result AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(hold_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.expire_holds()
RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.sum(n), 0)::integer FROM payledger_router.all_expire_holds() n
$$;

-- the accounts of one multi-leg transfer live on one shard
CREATE FUNCTION payledger.transfer_legs(legs jsonb, currency text,
										idempotency_key text DEFAULT NULL,
										metadata jsonb DEFAULT '{}')
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	shards integer[];
BEGIN
	IF pg_catalog.jsonb_typeof(legs) OPERATOR(pg_catalog.=) 'array' THEN
		SELECT pg_catalog.array_agg(DISTINCT payledger_router.shard_of(x::uuid)) INTO shards
		FROM pg_catalog.jsonb_array_elements(legs) l,
			 LATERAL (VALUES (l OPERATOR(pg_catalog.->>) 'from'), (l OPERATOR(pg_catalog.->>) 'to')) v(x)
		WHERE pg_catalog.jsonb_typeof(l) OPERATOR(pg_catalog.=) 'object'
		  AND x OPERATOR(pg_catalog.~*) '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$';
	END IF;
	IF pg_catalog.cardinality(shards) OPERATOR(pg_catalog.>) 1 THEN
		RAISE EXCEPTION 'the legs of one transfer must be on one shard'
			USING ERRCODE = '0A000',
				  DETAIL = pg_catalog.format('They touch shards %s.', shards);
	END IF;
	RETURN payledger_router.on_transfer_legs(COALESCE(shards[1], 0), legs, currency,
											 idempotency_key, metadata);
END
$$;

-- Items on one shard go there in one call; otherwise each item is a
-- transfer of its own (a saga when it crosses shards), in order.
CREATE FUNCTION payledger.transfer_many(from_accounts uuid[], to_accounts uuid[],
										amounts bigint[], currency text,
										idempotency_keys text[] DEFAULT NULL)
RETURNS SETOF payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	shards integer[];
	n integer := pg_catalog.cardinality(from_accounts);
BEGIN
	SELECT pg_catalog.array_agg(DISTINCT payledger_router.shard_of(a)) INTO shards
	FROM pg_catalog.unnest(from_accounts OPERATOR(pg_catalog.||) to_accounts) a;
	IF COALESCE(pg_catalog.cardinality(shards), 0) OPERATOR(pg_catalog.<=) 1 OR from_accounts IS NULL
	   OR to_accounts IS NULL OR amounts IS NULL OR currency IS NULL
	   OR pg_catalog.cardinality(to_accounts) OPERATOR(pg_catalog.<>) n
	   OR pg_catalog.cardinality(amounts) OPERATOR(pg_catalog.<>) n
	   OR (idempotency_keys IS NOT NULL
		   AND pg_catalog.cardinality(idempotency_keys) OPERATOR(pg_catalog.<>) n)
	   OR EXISTS (SELECT FROM pg_catalog.unnest(amounts) x
				  WHERE x IS NULL OR x OPERATOR(pg_catalog.<=) 0) THEN
		-- one shard, or a malformed call that the shard refuses as a whole
		RETURN QUERY SELECT * FROM payledger_router.on_transfer_many(
			COALESCE(shards[1], 0), from_accounts, to_accounts, amounts, currency,
			idempotency_keys);
		RETURN;
	END IF;
	FOR i IN 1 .. n LOOP
		RETURN NEXT payledger.transfer(from_accounts[i], to_accounts[i], amounts[i], currency,
									   idempotency_keys[i]);
	END LOOP;
END
$$;

-- Payments: on the shard of the merchant's account, which is also the
-- shard of every id the payment gets.
CREATE FUNCTION payledger.create_payment(merchant_id uuid, customer_id uuid, amount bigint,
										 currency text, source_account uuid,
										 merchant_account uuid, idempotency_key text,
										 metadata jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	shard integer := payledger_router.shard_of(merchant_account);
BEGIN
	IF source_account IS NOT NULL AND merchant_account IS NOT NULL
	   AND payledger_router.shard_of(source_account) OPERATOR(pg_catalog.<>) shard THEN
		RAISE EXCEPTION 'a payment''s source account must be on its merchant''s shard'
			USING ERRCODE = '0A000',
				  HINT = 'Fund a source account on the merchant''s shard with a transfer first.';
	END IF;
	RETURN payledger_router.on_create_payment(shard, merchant_id, customer_id, amount, currency,
											  source_account, merchant_account, idempotency_key,
											  metadata);
END
$$;

CREATE FUNCTION payledger.authorize_payment(payment_id uuid, idempotency_key text,
											expires_in interval DEFAULT '7 days')
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.capture_payment(payment_id uuid, idempotency_key text,
										  amount bigint DEFAULT NULL, splits jsonb DEFAULT NULL)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.void_payment(payment_id uuid, idempotency_key text)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.refund_payment(payment_id uuid, amount bigint, idempotency_key text,
										 reason_code text DEFAULT NULL)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.dispute_payment(payment_id uuid, amount bigint, idempotency_key text,
										  reason_code text DEFAULT NULL)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.resolve_dispute(payment_id uuid, won boolean, idempotency_key text)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.fail_payment(payment_id uuid, reason_code text, idempotency_key text)
RETURNS payledger.payment_state AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.expire_authorizations()
RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.sum(n), 0)::integer FROM payledger_router.all_expire_authorizations() n
$$;

-- settlement on the shard of the payout account (the merchant's shard)
CREATE FUNCTION payledger.settle_merchant(merchant_id uuid, cutoff timestamptz,
										  payout_account uuid, idempotency_key text)
RETURNS uuid AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payout_account);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.reconcile_settlement(settlement_id uuid, statement jsonb)
RETURNS TABLE(payment_id uuid, ledger_amount bigint, statement_amount bigint, status text) AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(settlement_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.purge_idempotency_keys()
RETURNS bigint LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.sum(n), 0)::bigint FROM payledger_router.all_purge_idempotency_keys() n
$$;

-- Reading: by id on the shard that made it; lists merge every shard's page
-- (ids are time-ordered, so the first max_rows by id are the oldest); one
-- account's transfers are all on its shard, which alone is asked.  Every
-- shard checks the arguments (22023, 22004) itself: the merged page's LIMIT
-- is at least 1, so that max_rows 0 still asks them and raises their 22023.
CREATE FUNCTION payledger.get_transfer(transfer_id uuid)
RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
			  amount bigint, from_account uuid, to_account uuid, legs jsonb,
			  idempotency_key text, metadata jsonb, created_at timestamptz) AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(transfer_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.get_payment(payment_id uuid)
RETURNS SETOF payledger.payments AS $$
	CLUSTER 'payledger_shards';
	RUN ON payledger_router.shard_of(payment_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION payledger.list_transfers(account_id uuid DEFAULT NULL,
										 since timestamptz DEFAULT '-infinity',
										 until timestamptz DEFAULT 'infinity',
										 status text DEFAULT NULL,
										 metadata_contains jsonb DEFAULT NULL,
										 after_id uuid DEFAULT NULL, max_rows integer DEFAULT 100)
RETURNS TABLE(transfer_id uuid, kind text, status text, reason_code text, currency text,
			  amount bigint, from_account uuid, to_account uuid, legs jsonb,
			  idempotency_key text, metadata jsonb, created_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM payledger_router.shard_list_transfers(account_id, since, until, status,
														metadata_contains, after_id, max_rows)
	 WHERE account_id IS NOT NULL
	UNION ALL
	(SELECT * FROM payledger_router.all_list_transfers(account_id, since, until, status,
													   metadata_contains, after_id, max_rows) t
	  WHERE account_id IS NULL
	  ORDER BY t.transfer_id LIMIT GREATEST(max_rows, 1))
$$;

CREATE FUNCTION payledger.list_payments(merchant_id uuid DEFAULT NULL,
										state payledger.payment_state DEFAULT NULL,
										since timestamptz DEFAULT '-infinity',
										until timestamptz DEFAULT 'infinity',
										metadata_contains jsonb DEFAULT NULL,
										after_id uuid DEFAULT NULL, max_rows integer DEFAULT 100)
RETURNS SETOF payledger.payments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM payledger_router.all_list_payments(merchant_id, state, since, until,
													 metadata_contains, after_id, max_rows) p
	ORDER BY p.id LIMIT GREATEST(max_rows, 1)
$$;

CREATE FUNCTION payledger.list_accounts(owner_id uuid DEFAULT NULL, kind text DEFAULT NULL,
										currency text DEFAULT NULL, after_id uuid DEFAULT NULL,
										max_rows integer DEFAULT 100)
RETURNS TABLE(account_id uuid, currency text, kind text, owner_id uuid, status text,
			  balance bigint, pending_debits bigint, available bigint, min_balance bigint,
			  metadata jsonb, created_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM payledger_router.all_list_accounts(owner_id, kind, currency, after_id,
													 max_rows) a
	ORDER BY a.account_id LIMIT GREATEST(max_rows, 1)
$$;

-- Health: every shard's checks, named by shard; one summary of the audit logs.
CREATE FUNCTION payledger.check_ledger()
RETURNS TABLE(check_name text, ok boolean, detail text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM payledger_router.all_check_ledger() c ORDER BY c.check_name
$$;

CREATE FUNCTION payledger.verify_audit_log()
RETURNS TABLE(ok boolean, rows_checked bigint, first_bad_event_id uuid, problem text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.bool_and(v.ok), pg_catalog.sum(v.rows_checked)::bigint,
		   (pg_catalog.array_agg(v.first_bad_event_id ORDER BY v.shard)
			FILTER (WHERE NOT v.ok))[1],
		   pg_catalog.string_agg('shard ' OPERATOR(pg_catalog.||) v.shard OPERATOR(pg_catalog.||)
								 ': ' OPERATOR(pg_catalog.||) v.problem, '; ' ORDER BY v.shard)
		   FILTER (WHERE NOT v.ok)
	FROM payledger_router.all_verify_audit_log() v
$$;
