/*
 * bench/raw_transfer.sql: the hand-written baseline that bench/run compares
 * payledger against.
 *
 * This is what a competent developer writes without payledger: an accounts
 * table with a balance and an optional floor, an append-only-by-convention
 * transfers table, and one LANGUAGE sql function that moves money with two
 * UPDATEs and one INSERT in a single transaction.
 *
 * It is meant to be a fair, honest baseline:
 *   - the balance floor is enforced (CHECK constraint on the debited row), so
 *     no transfer can take an account below min_balance;
 *   - unknown accounts cannot create or destroy money: the INSERT's foreign
 *     keys fail the transaction when either id does not exist;
 *   - rows are locked in ascending id order (the lower id is updated first),
 *     so concurrent transfers over the same pair cannot deadlock.
 * What it does NOT do (and payledger does): double-entry postings per
 * account, idempotency keys, an audit log, declines returned as results
 * instead of errors, currencies, frozen/closed accounts, tamper protection.
 * The ratio printed by bench/run is the price of those guarantees.
 *
 * Declines: a debit below the floor violates balance_floor (SQLSTATE 23514)
 * and the whole transfer rolls back.  bench/run funds every account so that
 * neither side ever declines during a run.
 *
 * Load with: psql -X -v ON_ERROR_STOP=1 -f bench/raw_transfer.sql
 * (drops and recreates schema bench_raw).
 */

DROP SCHEMA IF EXISTS bench_raw CASCADE;
CREATE SCHEMA bench_raw;

CREATE TABLE bench_raw.accounts (
	id uuid PRIMARY KEY,
	balance bigint NOT NULL DEFAULT 0,
	min_balance bigint DEFAULT 0,	-- NULL: no floor (system accounts)
	CONSTRAINT balance_floor CHECK (min_balance IS NULL OR balance >= min_balance)
);

CREATE TABLE bench_raw.transfers (
	id bigserial PRIMARY KEY,
	from_account uuid NOT NULL REFERENCES bench_raw.accounts (id),
	to_account uuid NOT NULL REFERENCES bench_raw.accounts (id),
	amount bigint NOT NULL CHECK (amount > 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK (from_account <> to_account)
);

/*
 * bench_raw.transfer(from, to, amount) RETURNS bigint (the transfer id)
 *
 * Each UPDATE adds the signed amount for whichever side its row is: -amount
 * on the debited row (where balance_floor is the floor check), +amount on the
 * credited row.  The first UPDATE touches LEAST(from, to), the second
 * GREATEST(from, to): every transfer locks its two rows in ascending uuid
 * order (the same order payledger uses), whichever direction money moves.
 */
CREATE FUNCTION bench_raw.transfer(from_account uuid, to_account uuid, amount bigint)
	RETURNS bigint
	LANGUAGE sql
	VOLATILE STRICT PARALLEL UNSAFE
	AS $$
	UPDATE bench_raw.accounts a
	   SET balance = a.balance + CASE WHEN a.id = transfer.from_account
									  THEN -transfer.amount ELSE transfer.amount END
	 WHERE a.id = LEAST(transfer.from_account, transfer.to_account);

	UPDATE bench_raw.accounts a
	   SET balance = a.balance + CASE WHEN a.id = transfer.from_account
									  THEN -transfer.amount ELSE transfer.amount END
	 WHERE a.id = GREATEST(transfer.from_account, transfer.to_account);

	INSERT INTO bench_raw.transfers (from_account, to_account, amount)
	VALUES (transfer.from_account, transfer.to_account, transfer.amount)
	RETURNING id;
$$;
COMMENT ON FUNCTION bench_raw.transfer(uuid, uuid, bigint) IS
	'Baseline: two UPDATEs in id order (floor checked by balance_floor) and one INSERT';
