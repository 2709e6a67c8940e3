-- scaleout/shard.sql: what every shard of a sharded payledger holds besides
-- the extension itself: its clearing accounts and the steps of cross-shard
-- transfers (sagas) that touch it.
--
-- Run in each shard database after CREATE EXTENSION payledger and
--   ALTER DATABASE <shard database> SET payledger.shard_id = <its number>;
-- (numbers 0 .. N-1, in the order of the router's partitions p0 .. pN-1).
-- The router (scaleout/router.sql) calls these functions through PL/Proxy;
-- applications never call them.
--
-- A cross-shard transfer of amount X from account A (shard s) to account B
-- (shard t) is a saga keyed by the caller's idempotency key K:
--   reserve  on s: hold A -> clearing(s), key K:reserve, recorded in
--                  payledger_shard.sagas in the same transaction;
--   credit   on t: transfer clearing(t) -> B, key K:credit;
--   post     on s: post_hold, key K:post, marking the saga posted in the
--                  same transaction.
-- Compensation: void the hold (K:void) when the credit is declined; reverse
-- the credit (B -> clearing(t), key K:reverse) when the hold can no longer
-- be posted.  Every step is an idempotent payledger call, so a step
-- repeated by a retry or by recovery replays instead of moving money twice.
-- Each shard balances on its own; the clearing accounts of all shards sum
-- to zero once no saga is half done.  The steps carry the caller's metadata
-- unchanged: ids and keys stay out of it, where a run of their digits could
-- pass for a card number (PY006); the keys and payledger_shard tie them
-- together.

\set ON_ERROR_STOP 1

CREATE SCHEMA payledger_shard;

-- the saga record, on the source shard, written with the reservation
CREATE TABLE payledger_shard.sagas (
	saga_key text COLLATE "C" PRIMARY KEY,
	from_account uuid NOT NULL,
	to_account uuid NOT NULL,
	amount bigint NOT NULL,
	currency text NOT NULL,
	metadata jsonb NOT NULL,
	expires_in interval NOT NULL,
	correlation_id uuid NOT NULL,
	hold_id uuid NOT NULL,
	state text NOT NULL CHECK (state IN ('open', 'posted', 'rejected', 'compensated', 'stuck')),
	reason_code text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX sagas_unfinished ON payledger_shard.sagas (created_at)
	WHERE state IN ('open', 'stuck');

-- every saga step done on this shard, written with the step itself
CREATE TABLE payledger_shard.saga_steps (
	saga_key text COLLATE "C" NOT NULL,
	step text NOT NULL,
	transfer_id uuid NOT NULL,
	status text NOT NULL,
	reason_code text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	PRIMARY KEY (saga_key, step)
);

-- The clearing account of this shard for a currency: no floor, a fixed id
-- per (currency, shard), created on first use.
CREATE FUNCTION payledger_shard.clearing_account(currency text)
RETURNS uuid LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	shard integer := pg_catalog.current_setting('payledger.shard_id')::integer;
	clearing_id uuid;
BEGIN
	IF shard < 0 THEN
		RAISE EXCEPTION 'this database is not a shard'
			USING ERRCODE = '55000',
				  HINT = 'ALTER DATABASE ... SET payledger.shard_id, then reconnect.';
	END IF;
	clearing_id := pg_catalog.overlay(pg_catalog.md5('payledger clearing ' OPERATOR(pg_catalog.||) currency),
									  pg_catalog.lpad(pg_catalog.to_hex(shard), 2, '0'), 31)::uuid;
	IF NOT EXISTS (SELECT FROM payledger.accounts a WHERE a.id OPERATOR(pg_catalog.=) clearing_id) THEN
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('payledger clearing'));
		IF NOT EXISTS (SELECT FROM payledger.accounts a WHERE a.id OPERATOR(pg_catalog.=) clearing_id) THEN
			PERFORM payledger.create_account(currency, 'clearing', NULL,
											 '{"clearing": true}', clearing_id);
		END IF;
	END IF;
	RETURN clearing_id;
END
$$;

CREATE FUNCTION payledger_shard.record_step(saga_key text, step text,
											r payledger.transfer_result)
RETURNS void LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO payledger_shard.saga_steps (saga_key, step, transfer_id, status, reason_code)
	VALUES (saga_key, step, r.transfer_id, r.status, r.reason_code)
	ON CONFLICT DO NOTHING
$$;

-- Everything about a target account that a saga checks before reserving:
-- its currency and status (no row: unknown here).
CREATE FUNCTION payledger_shard.account_info(account_id uuid,
											 OUT currency text, OUT status text)
RETURNS SETOF record LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.currency, a.status FROM payledger.accounts a
	WHERE a.id OPERATOR(pg_catalog.=) account_id
$$;

-- step 1, on the source shard
CREATE FUNCTION payledger_shard.saga_reserve(saga_key text, from_account uuid,
											 to_account uuid, amount bigint, currency text,
											 metadata jsonb, expires_in interval,
											 correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r payledger.transfer_result;
	first payledger_shard.sagas;
BEGIN
	-- a retry reserves as the first call did, whatever the router's settings now
	SELECT * INTO first FROM payledger_shard.sagas s
	WHERE s.saga_key OPERATOR(pg_catalog.=) saga_reserve.saga_key;
	IF FOUND THEN
		expires_in := first.expires_in;
		correlation_id := first.correlation_id;
	END IF;
	PERFORM pg_catalog.set_config('payledger.correlation_id', correlation_id::text, true);
	r := payledger.hold(from_account, payledger_shard.clearing_account(currency), amount,
						currency, expires_in, saga_key OPERATOR(pg_catalog.||) ':reserve',
						metadata);
	INSERT INTO payledger_shard.sagas AS s
		(saga_key, from_account, to_account, amount, currency, metadata, expires_in,
		 correlation_id, hold_id, state, reason_code)
	VALUES (saga_key, from_account, to_account, amount, currency, metadata, expires_in,
			correlation_id, r.transfer_id,
			CASE WHEN r.status OPERATOR(pg_catalog.=) 'rejected' THEN 'rejected' ELSE 'open' END,
			r.reason_code)
	ON CONFLICT DO NOTHING;
	PERFORM payledger_shard.record_step(saga_key, 'reserve', r);
	RETURN r;
END
$$;

-- step 2, on the target shard
CREATE FUNCTION payledger_shard.saga_credit(saga_key text, from_account uuid,
											to_account uuid, amount bigint, currency text,
											metadata jsonb, correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r payledger.transfer_result;
BEGIN
	PERFORM pg_catalog.set_config('payledger.correlation_id', correlation_id::text, true);
	r := payledger.transfer(payledger_shard.clearing_account(currency), to_account, amount,
							currency, saga_key OPERATOR(pg_catalog.||) ':credit', metadata);
	PERFORM payledger_shard.record_step(saga_key, 'credit', r);
	RETURN r;
END
$$;

-- compensation of step 2, on the target shard.  A declined reversal (the
-- target was frozen, or spent the money) leaves the saga stuck; the next
-- attempt gets a key of its own, since the decline is stored under the last.
CREATE FUNCTION payledger_shard.saga_reverse(saga_key text, from_account uuid,
											 to_account uuid, amount bigint, currency text,
											 metadata jsonb, correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r payledger.transfer_result;
	step text := 'reverse';
	declined integer;
BEGIN
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(saga_key));
	SELECT pg_catalog.count(*) INTO declined FROM payledger_shard.saga_steps s
	WHERE s.saga_key OPERATOR(pg_catalog.=) saga_reverse.saga_key
	  AND s.step OPERATOR(pg_catalog.~) '^reverse' AND s.status OPERATOR(pg_catalog.=) 'rejected';
	IF declined OPERATOR(pg_catalog.>) 0 THEN
		step := 'reverse:' OPERATOR(pg_catalog.||) (declined OPERATOR(pg_catalog.+) 1);
	END IF;
	PERFORM pg_catalog.set_config('payledger.correlation_id', correlation_id::text, true);
	r := payledger.transfer(to_account, payledger_shard.clearing_account(currency), amount,
							currency, saga_key OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) step,
							metadata);
	PERFORM payledger_shard.record_step(saga_key, step, r);
	RETURN r;
END
$$;

-- the outcome of a step done on this shard, if it was done
CREATE FUNCTION payledger_shard.saga_step(saga_key text, step text)
RETURNS SETOF payledger.transfer_result LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.transfer_id, s.status, s.reason_code, true
	FROM payledger_shard.saga_steps s
	WHERE s.saga_key OPERATOR(pg_catalog.=) saga_step.saga_key
	  AND s.step OPERATOR(pg_catalog.=) saga_step.step
$$;

-- where the reservation of a saga stands now (pending, posted, voided, expired)
CREATE FUNCTION payledger_shard.saga_hold_status(saga_key text)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN h.status OPERATOR(pg_catalog.=) 'pending'
				 AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
			THEN 'expired' ELSE h.status END
	FROM payledger_shard.sagas s JOIN payledger.holds h ON h.id OPERATOR(pg_catalog.=) s.hold_id
	WHERE s.saga_key OPERATOR(pg_catalog.=) saga_hold_status.saga_key
$$;

-- step 3, on the source shard: the saga is posted in the same transaction
CREATE FUNCTION payledger_shard.saga_post(saga_key text, correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s payledger_shard.sagas;
	r payledger.transfer_result;
BEGIN
	SELECT * INTO STRICT s FROM payledger_shard.sagas x
	WHERE x.saga_key OPERATOR(pg_catalog.=) saga_post.saga_key;
	PERFORM pg_catalog.set_config('payledger.correlation_id', correlation_id::text, true);
	r := payledger.post_hold(s.hold_id, NULL, saga_key OPERATOR(pg_catalog.||) ':post');
	IF r.status OPERATOR(pg_catalog.=) 'posted' THEN
		UPDATE payledger_shard.sagas x SET state = 'posted', updated_at = pg_catalog.clock_timestamp()
		WHERE x.saga_key OPERATOR(pg_catalog.=) saga_post.saga_key AND x.state <> 'posted';
	END IF;
	PERFORM payledger_shard.record_step(saga_key, 'post', r);
	RETURN r;
END
$$;

-- compensation of step 1, on the source shard (a hold no longer pending is
-- left as it is: the call is declined HOLD_NOT_PENDING or HOLD_EXPIRED)
CREATE FUNCTION payledger_shard.saga_void(saga_key text, correlation_id uuid)
RETURNS payledger.transfer_result LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s payledger_shard.sagas;
	r payledger.transfer_result;
BEGIN
	SELECT * INTO STRICT s FROM payledger_shard.sagas x
	WHERE x.saga_key OPERATOR(pg_catalog.=) saga_void.saga_key;
	PERFORM pg_catalog.set_config('payledger.correlation_id', correlation_id::text, true);
	r := payledger.void_hold(s.hold_id, saga_key OPERATOR(pg_catalog.||) ':void');
	PERFORM payledger_shard.record_step(saga_key, 'void', r);
	RETURN r;
END
$$;

-- the end of a saga that did not post: rejected, compensated or stuck
CREATE FUNCTION payledger_shard.saga_finish(saga_key text, state text, reason_code text)
RETURNS void LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE payledger_shard.sagas x
	SET state = saga_finish.state, reason_code = saga_finish.reason_code,
		updated_at = pg_catalog.clock_timestamp()
	WHERE x.saga_key OPERATOR(pg_catalog.=) saga_finish.saga_key
	  AND x.state IN ('open', 'stuck')
$$;

-- sagas this shard started that have not ended, older than a moment (a
-- younger one may still be on its way)
CREATE FUNCTION payledger_shard.unfinished_sagas(older_than interval)
RETURNS SETOF payledger_shard.sagas LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM payledger_shard.sagas s
	WHERE s.state IN ('open', 'stuck')
	  AND s.created_at OPERATOR(pg_catalog.<=) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) older_than)
	ORDER BY s.created_at
$$;
