/*-------------------------------------------------------------------------
 *
 * spi_plans.c
 *	  Kept SPI plans and the privileged, search_path-safe way to run them.
 *
 * The statements of payledger's functions are listed here, prepared on first
 * use in a backend and kept (SPI_prepare_cursor with a generic plan, then
 * SPI_keepplan), so no call parses or plans them again; only the once-off
 * checks (check_ledger, verify_audit_log, checkpoints) run ad-hoc SQL, and
 * the transfer hot path runs none (direct.c).  Statements run:
 *
 *	- as the owner of the payledger schema, like ri_triggers.c runs its
 *	  checks as the table owner, so that applications need EXECUTE only and
 *	  never privileges on the tables;
 *	- under search_path = 'pg_catalog, pg_temp', set for the duration of the
 *	  call, so a hostile search_path cannot capture an operator or function,
 *	  and so the caller's search_path never invalidates a kept plan;
 *	- with a backend-local flag raised, which the accounts guard trigger reads
 *	  to tell our writes from anybody else's.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/spi_plans.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "payledger.h"
#include "spi_plans.h"

#define MAX_PLAN_ARGS 26

typedef struct PlPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[MAX_PLAN_ARGS];
} PlPlanDef;

static const PlPlanDef plan_defs[PLAN_COUNT] = {
	[PLAN_ACCOUNT_INSERT] = {
		"INSERT INTO payledger.accounts (id, currency, kind, min_balance, status, "
		"version, metadata, created_at, updated_at) "
		"VALUES ($1, $2, $3, $4, 'active', 1, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
		6, {UUIDOID, TEXTOID, TEXTOID, INT8OID, JSONBOID, TIMESTAMPTZOID}
	},
	[PLAN_ACCOUNT_INSERT_OWNED] = {
		"INSERT INTO payledger.accounts (id, currency, kind, min_balance, status, "
		"version, metadata, created_at, updated_at, owner_id) "
		"VALUES ($1, $2, $3, $4, 'active', 1, $5, $6, $6, $7) ON CONFLICT (id) DO NOTHING",
		7, {UUIDOID, TEXTOID, TEXTOID, INT8OID, JSONBOID, TIMESTAMPTZOID, UUIDOID}
	},
	[PLAN_ACCOUNT_GET] = {
		"SELECT currency, kind, min_balance, status, balance, pending_debits, "
		"pending_credits, version, metadata FROM payledger.accounts WHERE id = $1",
		1, {UUIDOID}
	},
	[PLAN_ACCOUNT_LOCK] = {
		"SELECT currency, kind, min_balance, status, balance, pending_debits, "
		"pending_credits, version, metadata FROM payledger.accounts WHERE id = $1 "
		"FOR NO KEY UPDATE",
		1, {UUIDOID}
	},
	[PLAN_ACCOUNT_SET_STATUS] = {
		"UPDATE payledger.accounts SET status = $2, frozen_reason = $3, "
		"version = version + 1, updated_at = $4 WHERE id = $1 RETURNING version",
		4, {UUIDOID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
	},
	[PLAN_ACCOUNT_ENTRIES] = {
		"SELECT transfer_id, amount, balance_after, created_at, account_version "
		"FROM payledger.entries WHERE account_id = $1 AND created_at >= $2 "
		"AND created_at <= $3 ORDER BY account_version",
		3, {UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[PLAN_BALANCE_AT] = {
		"SELECT balance_after FROM payledger.entries WHERE account_id = $1 "
		"AND created_at <= $2 ORDER BY account_version DESC LIMIT 1",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	/* a transfer by id, or what else of the ledger already has that id */
	[PLAN_TRANSFER_GET] = {
		"SELECT request_hash, status, reason_code, 'transfer' FROM payledger.transfers WHERE id = $1"
		" UNION ALL SELECT NULL, NULL, NULL, o.kind FROM ("
		"  SELECT 'hold' AS kind FROM payledger.holds WHERE id = $1"
		"  UNION ALL SELECT 'payment' FROM payledger.payments WHERE id = $1"
		"  UNION ALL SELECT 'settlement' FROM payledger.settlements WHERE id = $1"
		"  UNION ALL SELECT 'account' FROM payledger.accounts WHERE id = $1) o"
		" WHERE NOT EXISTS (SELECT 1 FROM payledger.transfers t WHERE t.id = $1)",
		1, {UUIDOID}
	},
	/*
	 * an authorization's hold (its metadata names the payment) expires only
	 * with its payment, in expire_authorizations()
	 */
	[PLAN_HOLDS_OVERDUE] = {
		"SELECT h.id, h.from_account, h.to_account FROM payledger.holds h"
		" WHERE h.status = 'pending' AND h.expires_at <= $1"
		" AND NOT EXISTS (SELECT 1 FROM payledger.payments p"
		"  WHERE p.id = CASE WHEN h.metadata->>'payment_id' ~"
		"   '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
		"   THEN (h.metadata->>'payment_id')::uuid END"
		"  AND p.hold_id = h.id AND p.state = 'authorized')"
		" ORDER BY h.id FOR UPDATE OF h",
		1, {TIMESTAMPTZOID}
	},
	[PLAN_OVERDUE_DEBITS] = {
		"SELECT coalesce(sum(amount), 0)::bigint FROM payledger.holds"
		" WHERE from_account = $1 AND status = 'pending' AND expires_at <= $2",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_OVERDUE_CREDITS] = {
		"SELECT coalesce(sum(amount), 0)::bigint FROM payledger.holds"
		" WHERE to_account = $1 AND status = 'pending' AND expires_at <= $2",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_CONSUMER_POSITION] = {
		"SELECT last_era, last_txid, last_id FROM payledger.event_consumers WHERE consumer = $1",
		1, {TEXTOID}
	},
	/* see events.c: from the consumer's position to the delivery horizon */
	[PLAN_EVENTS_READ] = {
		"SELECT a.* FROM payledger.payment_audit_log a"
		" WHERE (a.era, a.txid, a.id) > ($1, $2, $3) AND (a.era, a.txid) < ($4, $5)"
		" ORDER BY a.era, a.txid, a.id LIMIT $6",
		6, {INT4OID, XID8OID, INT8OID, INT4OID, XID8OID, INT4OID}
	},
	[PLAN_EVENT_READABLE] = {
		"SELECT (era, txid) < ($2, $3) FROM payledger.payment_audit_log WHERE event_id = $1",
		3, {UUIDOID, INT4OID, XID8OID}
	},
	[PLAN_EVENTS_ACK] = {
		"INSERT INTO payledger.event_consumers AS c (consumer, last_era, last_txid, last_id, updated_at)"
		" SELECT $1, era, txid, id, clock_timestamp() FROM payledger.payment_audit_log"
		" WHERE event_id = $2"
		" ON CONFLICT (consumer) DO UPDATE SET last_era = excluded.last_era,"
		" last_txid = excluded.last_txid, last_id = excluded.last_id, updated_at = excluded.updated_at"
		" WHERE (excluded.last_era, excluded.last_txid, excluded.last_id)"
		" > (c.last_era, c.last_txid, c.last_id)",
		2, {TEXTOID, UUIDOID}
	},
	[PLAN_ERA_REGISTER] = {
		"INSERT INTO payledger.cluster_eras (system_identifier, era, first_seen)"
		" SELECT $1, coalesce(max(era), 0) + 1, clock_timestamp() FROM payledger.cluster_eras"
		" ON CONFLICT DO NOTHING",
		1, {TEXTOID}
	},
	[PLAN_ERA_GET] = {
		"SELECT era FROM payledger.cluster_eras WHERE system_identifier = $1",
		1, {TEXTOID}
	},
	[PLAN_ERA_NEXT] = {
		"SELECT coalesce(max(era), 0) + 1 FROM payledger.cluster_eras",
		0, {InvalidOid}
	},
	[PLAN_COUNT_REPLAYS] = {
		"INSERT INTO payledger.replay_counts AS r (backend, replays) VALUES ($1, $2)"
		" ON CONFLICT (backend) DO UPDATE SET replays = r.replays + excluded.replays",
		2, {INT4OID, INT8OID}
	},
	[PLAN_MACHINE_GET] = {
		"SELECT transitions FROM payledger.state_machines WHERE name = $1",
		1, {TEXTOID}
	},
	[PLAN_MACHINE_PUT] = {
		"INSERT INTO payledger.state_machines (name, transitions, updated_at)"
		" VALUES ($1, $2, clock_timestamp()) ON CONFLICT (name) DO UPDATE"
		" SET transitions = excluded.transitions, updated_at = excluded.updated_at",
		2, {TEXTOID, JSONBOID}
	},
	[PLAN_AUTHS_OVERDUE] = {
		"SELECT p.id, h.id, h.from_account, h.to_account FROM payledger.payments p"
		" JOIN payledger.holds h ON h.id = p.hold_id"
		" WHERE p.state = 'authorized' AND h.expires_at <= $1 ORDER BY p.id FOR UPDATE OF p",
		1, {TIMESTAMPTZOID}
	},
	/* today's debits: posted entries and holds still pending, since 00:00 UTC */
	[PLAN_LIMITS_CHECK] = {
		"SELECT l.max_per_transfer, l.max_daily_debit,"
		" (SELECT coalesce(-sum(e.amount), 0) FROM payledger.entries e"
		"   WHERE e.account_id = $1 AND e.amount < 0"
		"   AND e.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::bigint"
		" + (SELECT coalesce(sum(h.amount), 0) FROM payledger.holds h"
		"   WHERE h.from_account = $1 AND h.status = 'pending'"
		"   AND h.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::bigint"
		" FROM payledger.account_limits l WHERE l.account_id = $1",
		1, {UUIDOID}
	},
	[PLAN_LIMITS_SET] = {
		"WITH l AS (INSERT INTO payledger.account_limits AS x (account_id, max_per_transfer,"
		"  max_daily_debit, updated_at) VALUES ($1, $2, $3, clock_timestamp())"
		"  ON CONFLICT (account_id) DO UPDATE SET max_per_transfer = excluded.max_per_transfer,"
		"  max_daily_debit = excluded.max_daily_debit, updated_at = excluded.updated_at)"
		" UPDATE payledger.accounts SET has_limits = ($2 IS NOT NULL OR $3 IS NOT NULL),"
		" version = version + 1, updated_at = clock_timestamp() WHERE id = $1",
		3, {UUIDOID, INT8OID, INT8OID}
	},
	[PLAN_PAYMENT_DISPUTE] = {
		"UPDATE payledger.payments SET state = $2::payledger.payment_state,"
		" disputed_amount = $3, dispute_hold_id = $4,"
		" state_before_dispute = $5::payledger.payment_state WHERE id = $1",
		5, {UUIDOID, TEXTOID, INT8OID, UUIDOID, TEXTOID}
	},
	[PLAN_SETTLE_CANDIDATES] = {
		"SELECT id, merchant_account, currency, captured_amount, fee_amount, refunded_amount,"
		" state::text, customer_id, correlation_id"
		" FROM payledger.payments WHERE merchant_id = $1 AND settlement_id IS NULL"
		" AND state IN ('captured', 'partially_refunded') AND captured_at <= $2"
		" ORDER BY id FOR UPDATE",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_PAYMENT_SETTLE] = {
		"UPDATE payledger.payments SET state = 'settled', settlement_id = $2 WHERE id = $1",
		2, {UUIDOID, UUIDOID}
	},
	[PLAN_SETTLEMENT_INSERT] = {
		"INSERT INTO payledger.settlements (id, merchant_id, cutoff, currency, payment_count,"
		" gross_amount, fee_amount, refund_amount, net_amount, payout_account,"
		" payout_transfer_id, created_at)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp())",
		11, {UUIDOID, UUIDOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID,
		INT8OID, UUIDOID, UUIDOID}
	},
	[PLAN_SETTLEMENT_GET] = {
		"SELECT merchant_id FROM payledger.settlements WHERE id = $1",
		1, {UUIDOID}
	},
	[PLAN_SETTLEMENT_PAYMENTS] = {
		"WITH s AS (SELECT (e->>'payment_id')::uuid AS payment_id, (e->>'amount')::bigint AS amount"
		"  FROM jsonb_array_elements($2) e),"
		" l AS (SELECT id AS payment_id, captured_amount - refunded_amount AS amount"
		"  FROM payledger.payments WHERE settlement_id = $1)"
		" SELECT coalesce(l.payment_id, s.payment_id), l.amount, s.amount,"
		"  CASE WHEN l.payment_id IS NULL THEN 'missing_in_ledger'"
		"   WHEN s.payment_id IS NULL THEN 'missing_in_statement'"
		"   WHEN l.amount = s.amount THEN 'matched' ELSE 'amount_mismatch' END"
		" FROM l FULL JOIN s ON s.payment_id = l.payment_id ORDER BY 1",
		2, {UUIDOID, JSONBOID}
	},
	/* hold rows in id order (LockRows above the sort) */
	[PLAN_HOLDS_LOCK_MANY] = {
		"SELECT id FROM payledger.holds WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
		1, {UUIDARRAYOID}
	},
	[PLAN_IDEM_PURGE] = {
		"DELETE FROM payledger.idempotency_keys WHERE created_at < $1",
		1, {TIMESTAMPTZOID}
	},
	[PLAN_SUB_BALANCES_COUNT] = {
		"SELECT coalesce(max(slot), 0) FROM payledger.sub_balances WHERE account_id = $1",
		1, {UUIDOID}
	},
	[PLAN_SUB_BALANCE_INSERT] = {
		"INSERT INTO payledger.sub_balances (account_id, slot, sub_account_id, active, created_at) "
		"VALUES ($1, $2, $3, true, $4)",
		4, {UUIDOID, INT4OID, UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_SUB_BALANCES_ACTIVATE] = {
		"UPDATE payledger.sub_balances SET active = (slot <= $2) "
		"WHERE account_id = $1 AND active <> (slot <= $2)",
		2, {UUIDOID, INT4OID}
	},
	[PLAN_SUB_BALANCES_LOCK] = {
		"SELECT a.balance, a.pending_debits, a.pending_credits FROM payledger.accounts a "
		"WHERE a.id IN (SELECT sub_account_id FROM payledger.sub_balances WHERE account_id = $1) "
		"ORDER BY a.id FOR NO KEY UPDATE OF a",
		1, {UUIDOID}
	},
	[PLAN_SUB_BALANCES_CLOSE] = {
		"UPDATE payledger.accounts SET status = 'closed', updated_at = $2 "
		"WHERE id IN (SELECT sub_account_id FROM payledger.sub_balances WHERE account_id = $1)",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_BALANCE_AT_SUB] = {
		"SELECT coalesce(sum(b.balance_after), 0)::bigint FROM "
		"(SELECT $1 AS id UNION ALL SELECT sub_account_id FROM payledger.sub_balances "
		"WHERE account_id = $1) a, LATERAL (SELECT balance_after FROM payledger.entries e "
		"WHERE e.account_id = a.id AND e.created_at <= $2 "
		"ORDER BY e.account_version DESC LIMIT 1) b",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[PLAN_ACCOUNT_ENTRIES_SUB] = {
		"SELECT transfer_id, amount, balance_after, created_at, n FROM ("
		"SELECT e.transfer_id, e.amount, e.created_at, "
		"(sum(e.amount) OVER w)::bigint AS balance_after, row_number() OVER w AS n "
		"FROM payledger.entries e WHERE e.account_id = $1 OR e.account_id IN "
		"(SELECT sub_account_id FROM payledger.sub_balances WHERE account_id = $1) "
		"WINDOW w AS (ORDER BY e.created_at, e.transfer_id ROWS UNBOUNDED PRECEDING)) s "
		"WHERE created_at >= $2 AND created_at <= $3 ORDER BY n",
		3, {UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
};

static SPIPlanPtr plans[PLAN_COUNT];

/* raised while payledger itself writes; see guard_internal() */
static int	internal_depth = 0;

/*
 * Inside a read function (PlSpiBeginRead): statements and row reads use the
 * calling statement's snapshot, so that every call of one statement sees
 * the same ledger.
 */
static bool statement_reads = false;

/* run when the outermost call begins, and before it ends (metrics.c) */
static void (*call_begin_hook) (void) = NULL;
static void (*call_end_hook) (void) = NULL;

/* who called the outermost payledger function: the audit log's actor */
static Oid	caller_userid = InvalidOid;

/* flag depth at the start of each open subtransaction, innermost first */
typedef struct SubDepth
{
	SubTransactionId subid;
	int			depth;
	bool		reads;
	struct SubDepth *next;
} SubDepth;

static SubDepth *sub_depths = NULL;

static void
reset_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		internal_depth = 0;
		statement_reads = false;
	}
	/* the list lives in TopTransactionContext, which goes away now */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		sub_depths = NULL;
}

/*
 * A subtransaction that aborts (a caller's EXCEPTION block, or the risk
 * hook's own) puts the flag back where it was when it started.
 */
static void
reset_on_subabort(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			{
				SubDepth   *d = MemoryContextAlloc(TopTransactionContext, sizeof(SubDepth));

				d->subid = mySubid;
				d->depth = internal_depth;
				d->reads = statement_reads;
				d->next = sub_depths;
				sub_depths = d;
			}
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
		case SUBXACT_EVENT_ABORT_SUB:
			while (sub_depths != NULL && sub_depths->subid >= mySubid)
			{
				if (event == SUBXACT_EVENT_ABORT_SUB && sub_depths->subid == mySubid)
				{
					internal_depth = sub_depths->depth;
					statement_reads = sub_depths->reads;
				}
				sub_depths = sub_depths->next;
			}
			break;
		default:
			break;
	}
}

void
SpiPlansInit(void)
{
	RegisterXactCallback(reset_on_abort, NULL);
	RegisterSubXactCallback(reset_on_subabort, NULL);
}

/*
 * Runs code that is not payledger's (the risk hook) without payledger's
 * privileges: as the caller, in a security-restricted operation, with the
 * internal-write flag down.  PlUnprivilegedEnd restores all of it.
 */
void
PlUnprivilegedBegin(PlPrivState *state)
{
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	state->save_internal = internal_depth;
	internal_depth = 0;
	SetUserIdAndSecContext(caller_userid,
						   state->save_sec_context | SECURITY_RESTRICTED_OPERATION);
}

void
PlUnprivilegedEnd(PlPrivState *state)
{
	internal_depth = state->save_internal;
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

Oid
PlCallerUserId(void)
{
	return internal_depth > 0 ? caller_userid : GetUserId();
}

bool
PlInternalWrite(void)
{
	return internal_depth > 0;
}

/* The owner of schema payledger, the role its functions write as. */
Oid
PlLedgerOwner(void)
{
	Oid			nsp = get_namespace_oid("payledger", false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The caller's search_path while a call runs (its string is kept alive by
 * the GUC stack entry of PlSpiBegin's nest level), and the nest level of
 * PlSafeSearchPathSuspend.
 */
static const char *caller_search_path = NULL;
static int	suspend_nestlevel = 0;

/*
 * Sets the pinned search_path of PlSpiBegin aside while code that is not
 * payledger's runs (the risk hook): the caller's search_path, in a GUC nest
 * level of its own, until PlSafeSearchPathResume.
 */
void
PlSafeSearchPathSuspend(void)
{
	Assert(internal_depth > 0 && caller_search_path != NULL);
	suspend_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", caller_search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
PlSafeSearchPathResume(void)
{
	AtEOXact_GUC(false, suspend_nestlevel);
}

/*
 * Opens SPI as the ledger's owner with search_path pinned to pg_catalog
 * (and pg_temp last), as contrib/amcheck pins it around index functions:
 * in a GUC nest level of its own, which PlSpiEnd() (or, on an error, the
 * abort of the transaction or subtransaction) rolls back with every other
 * setting changed inside.  Errors unwind all of it: the abort also restores
 * the user id, closes SPI and resets the flag.
 */
void
PlSpiBegin(PlPrivState *state)
{
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	if (internal_depth == 0)
	{
		caller_userid = state->save_userid;
		caller_search_path = namespace_search_path;
		if (call_begin_hook)
			call_begin_hook();
	}
	state->save_internal = internal_depth;
	state->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	state->owner = PlLedgerOwner();
	SetUserIdAndSecContext(state->owner,
						   state->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	internal_depth++;
	state->save_reads = statement_reads;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
PlSpiEnd(PlPrivState *state)
{
	if (internal_depth == 1 && call_end_hook)
		call_end_hook();
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	/* what ran inside gave back every user switch and flag it took */
	Assert(internal_depth == state->save_internal + 1);
	Assert(GetUserId() == state->owner);
	internal_depth--;
#ifdef USE_ASSERT_CHECKING
	{
		/* ... and closed every GUC nest level it opened */
		int			level = NewGUCNestLevel();

		Assert(level == state->save_nestlevel + 1);
	}
#endif
	AtEOXact_GUC(false, state->save_nestlevel);
	statement_reads = state->save_reads;
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * Hooks around the outermost payledger call: on_begin as it starts, on_end
 * inside SPI, as the ledger's owner, just before it ends (not when it fails).
 */
void
PlSetCallHooks(void (*on_begin) (void), void (*on_end) (void))
{
	call_begin_hook = on_begin;
	call_end_hook = on_end;
}

/*
 * PlSpiBegin for a read function (get_balance, balance_at, ...): until
 * PlSpiEnd, kept plans run read-only with the active snapshot and row reads
 * use it too (PlReadSnapshot), so a statement that calls the function for
 * many accounts sees them all as of its own snapshot, as a plain SELECT
 * would, rather than each call taking a newer one under READ COMMITTED.
 */
void
PlSpiBeginRead(PlPrivState *state)
{
	PlSpiBegin(state);
	statement_reads = true;
}

/*
 * The snapshot for reading rows without locking them: the calling
 * statement's inside a read function, else the transaction snapshot (a new
 * one per call under READ COMMITTED).
 */
Snapshot
PlReadSnapshot(void)
{
	if (statement_reads && ActiveSnapshotSet())
		return GetActiveSnapshot();
	return GetTransactionSnapshot();
}

/*
 * Runs one kept plan; returns the SPI result code.  Any failure of the
 * statement itself has already raised an error.
 */
int
PlExec(PlPlanId id, Datum *values, const char *nulls, long count)
{
	MemoryContext oldcxt;
	int			rc;

	if (plans[id] == NULL)
	{
		const PlPlanDef *def = &plan_defs[id];
		SPIPlanPtr	plan;

		/*
		 * Always the generic plan: every statement here is a keyed lookup or
		 * write whose best plan does not depend on the values, and a custom
		 * plan would be planned again on every call.
		 */
		plan = SPI_prepare_cursor(def->sql, def->nargs, (Oid *) def->argtypes,
								  CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for payledger plan %d: %s",
				 (int) id, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed for payledger plan %d", (int) id);
		plans[id] = plan;
	}
	/*
	 * SPI leaves CurrentMemoryContext at its procedure context, which lives
	 * until PlSpiEnd; put back the caller's (transfer_many's per-item
	 * context) so that what the caller allocates next goes with it.
	 */
	oldcxt = CurrentMemoryContext;
	rc = SPI_execute_plan(plans[id], values, nulls, statement_reads, count);
	MemoryContextSwitchTo(oldcxt);
	if (rc < 0)
		elog(ERROR, "payledger plan %d failed: %s", (int) id,
			 SPI_result_code_string(rc));
	return rc;
}
