/*-------------------------------------------------------------------------
 *
 * holds.c
 *	  Two-phase transfers: hold(), post_hold(), void_hold(), expire_holds().
 *
 * A hold reserves money: the source's pending_debits and the target's
 * pending_credits grow, balances do not move, and what the source has
 * available (balance - pending_debits) drops.  Posting moves up to the held
 * amount and releases the rest; voiding or expiring releases it all.
 *
 * Expiry is judged by the wall clock.  A hold past its expires_at no longer
 * counts against what is available even before expire_holds() sweeps it
 * (PlOverdueDebits), and post_hold()/void_hold() on an overdue hold expire
 * it on the spot and decline with HOLD_EXPIRED.
 *
 * Locks: key, then the hold row (FOR UPDATE), then the accounts in id
 * order (posting.c), so post, void and expire of one hold serialize on
 * the hold row and never deadlock with transfers.  Hold rows are locked and
 * rewritten directly (direct.c), without SPI.
 *
 * Hot targets: the target of a hold is only ever credited by it, so when it
 * has sub-balances (sub_balances.c) creating, posting and voiding the hold
 * lock one of its sub-balance rows, not the account's own row: the pending
 * credit goes onto the row the creating call locked and comes off the row
 * the settling call locked, so the account's pending credits are exact as
 * the sum over its rows (one row alone may read negative).  The source is
 * debited and locks its own row, so floors are judged exactly.  The
 * sweeps lock every account's own row up front and settle there.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/holds.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "layouts.h"
#include "spi_plans.h"
#include "metrics.h"
#include "idempotency.h"
#include "audit.h"
#include "pipeline.h"
#include "access.h"
#include "ledger.h"

typedef struct LockedHold
{
	pg_uuid_t	id;
	pg_uuid_t	from_id;
	pg_uuid_t	to_id;
	int64		amount;
	char	   *currency;
	char	   *status;
	TimestampTz expires_at;
	pg_uuid_t	correlation_id;	/* the payment's, or the hold's own id */
	HeapTuple	tuple;			/* the locked row, which set_hold_status replaces */
} LockedHold;

static Relation
open_holds(void)
{
	return PlOpenTable("holds");
}

/* Locks a hold row FOR UPDATE and reads it; false when there is none. */
static bool
lock_hold(const pg_uuid_t *id, LockedHold *hold)
{
	Relation	rel = open_holds();
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTuple	tup;
	bool		isnull;
	Datum		d;

	CommandCounterIncrement();
	tup = PlLockRow(rel, id, LockTupleExclusive);
	if (tup == NULL)
	{
		table_close(rel, NoLock);
		return false;
	}
	hold->tuple = tup;
	hold->id = *id;
	hold->from_id = *DatumGetUUIDP(heap_getattr(tup, Anum_holds_from_account, desc, &isnull));
	hold->to_id = *DatumGetUUIDP(heap_getattr(tup, Anum_holds_to_account, desc, &isnull));
	hold->amount = DatumGetInt64(heap_getattr(tup, Anum_holds_amount, desc, &isnull));
	/* for this call only: a sweep or a long transaction must not pile them up */
	hold->currency = TextDatumGetCString(heap_getattr(tup, Anum_holds_currency, desc, &isnull));
	hold->status = TextDatumGetCString(heap_getattr(tup, Anum_holds_status, desc, &isnull));
	hold->expires_at = DatumGetTimestampTz(heap_getattr(tup, Anum_holds_expires_at, desc, &isnull));
	d = heap_getattr(tup, Anum_holds_correlation_id, desc, &isnull);
	hold->correlation_id = *DatumGetUUIDP(isnull ? heap_getattr(tup, Anum_holds_id, desc, &isnull) : d);
	table_close(rel, NoLock);
	return true;
}

/*
 * Gives a locked hold its final status.  The status is in the predicates of
 * the pending-hold indexes, so this is never a HOT update: the row leaves
 * those indexes and gets a new primary key entry.
 */
static void
set_hold_status(LockedHold *hold, const char *status, bool has_posted,
				int64 posted, TimestampTz now)
{
	Relation	rel = open_holds();
	Datum		values[Natts_holds];
	bool		nulls[Natts_holds] = {false};
	bool		replace[Natts_holds] = {false};
	HeapTuple	newtup;

	values[Anum_holds_status - 1] = CStringGetTextDatum(status);
	replace[Anum_holds_status - 1] = true;
	values[Anum_holds_posted_amount - 1] = has_posted ? Int64GetDatum(posted) : (Datum) 0;
	nulls[Anum_holds_posted_amount - 1] = !has_posted;
	replace[Anum_holds_posted_amount - 1] = true;
	values[Anum_holds_updated_at - 1] = TimestampTzGetDatum(now);
	replace[Anum_holds_updated_at - 1] = true;
	newtup = heap_modify_tuple(hold->tuple, RelationGetDescr(rel), values, nulls, replace);
	PlDirectUpdate(rel, hold->tuple, newtup);
	table_close(rel, NoLock);
	hold->tuple = newtup;
}

static void
hold_event(PlAuditEvent *ev, const char *type, LockedHold *hold,
		   const char *new_state, TimestampTz now)
{
	PlAuditInit(ev, type, now);
	ev->previous_state = hold->status;
	ev->new_state = new_state;
	ev->payment_id = &hold->id;
	ev->correlation_id = &hold->correlation_id;
	ev->account_id = &hold->from_id;
	ev->counterparty_account_id = &hold->to_id;
	ev->has_amount = true;
	ev->amount = hold->amount;
	ev->currency = hold->currency;
}

/*
 * Releases the reservation of a locked, pending hold and gives it its final
 * status; posts "posted" of it first when posted > 0.  locked: the hold's
 * accounts as this call last locked them, or NULL to lock them here.
 */
static void
settle_hold(LockedHold *hold, const char *status, int64 posted, TimestampTz now,
			PlLockedSet *locked)
{
	Relation	accounts = PlOpenAccounts();
	pg_uuid_t	ids[2] = {hold->from_id, hold->to_id};
	PlAccountRow *src;
	PlAccountRow *dst;

	if (locked == NULL)
		locked = PlLockAccounts(accounts, ids, 2);
	src = PlFindAccount(locked, &hold->from_id);
	dst = PlFindAccount(locked, &hold->to_id);

	src->pending_debits -= hold->amount;
	dst->pending_credits -= hold->amount;
	/* a posting is counted as the transfer row it writes */
	if (strcmp(status, "posted") != 0)
		PlCountHold(status, hold->currency);
	if (posted > 0)
	{
		Relation	entries = PlOpenEntries();

		PlWriteEntry(entries, src, &hold->id, -posted, now);
		PlWriteEntry(entries, dst, &hold->id, posted, now);
		table_close(entries, NoLock);
	}
	else
	{
		/* a release is a change of the account too */
		src->version++;
		dst->version++;
		src->dirty = dst->dirty = true;
	}
	PlFlushAccounts(accounts, locked, now);
	table_close(accounts, NoLock);
	set_hold_status(hold, status, posted > 0, posted, now);
}

/* Expires an overdue hold inside post_hold/void_hold: HOLD_EXPIRED. */
static void
expire_now(LockedHold *hold, const char *key, TimestampTz now, bool declined,
		   PlLockedSet *locked)
{
	PlAuditEvent ev;

	settle_hold(hold, "expired", 0, now, locked);
	hold_event(&ev, "HOLD_EXPIRED", hold, "expired", now);
	ev.idempotency_key = key;
	if (declined)
	{
		ev.success = false;
		ev.reason_code = "HOLD_EXPIRED";
	}
	PlAuditWrite(&ev);
}

static void
audit_decline(LockedHold *hold, const char *reason, const char *key,
			  int64 amount, TimestampTz now)
{
	PlAuditEvent ev;

	hold_event(&ev, "TRANSFER_REJECTED", hold, hold->status, now);
	ev.success = false;
	ev.reason_code = reason;
	ev.idempotency_key = key;
	ev.amount = amount;
	PlAuditWrite(&ev);
}

/*
 * Reserves amount from one account to another under the hold id given,
 * or declines; writes the hold (or the rejected transfer) and its audit
 * row.  Returns the decline reason or NULL.  Part of a request's work
 * (pipeline.c), which records the key.
 */
const char *
PlHoldCreate(const pg_uuid_t *id, const pg_uuid_t *from_id, const pg_uuid_t *to_id,
			 int64 amount, const char *currency, TimestampTz expires_at,
			 const char *key, const uint8 *request_hash, Jsonb *metadata,
			 const pg_uuid_t *correlation_id)
{
	static const bool only_target_credited[2] = {false, true};
	Relation	accounts;
	PlLockedSet *locked;
	PlAccountRow *src;
	PlAccountRow *dst;
	pg_uuid_t	ids[2];
	const char *reason;
	TimestampTz now;
	PlAuditEvent ev;

	accounts = PlOpenAccounts();
	ids[0] = *from_id;
	ids[1] = *to_id;
	/* the target's pending credit may ride on one of its sub-balances */
	locked = PlLockAccountsFor(accounts, ids, 2, only_target_credited);
	src = PlFindAccount(locked, from_id);
	dst = PlFindAccount(locked, to_id);
	PlCheckAccountCurrency(src, currency);
	PlCheckAccountCurrency(dst, currency);
	reason = PlDeclineReason(src, dst, amount);
	now = GetCurrentTimestamp();

	if (reason == NULL)
	{
		Datum		values[Natts_holds];
		bool		nulls[Natts_holds] = {false};
		Relation	holds = PlOpenTable("holds");

		if (pg_add_s64_overflow(src->pending_debits, amount, &src->pending_debits) ||
			pg_add_s64_overflow(dst->pending_credits, amount, &dst->pending_credits))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("pending amounts would overflow bigint")));
		src->version++;
		dst->version++;
		src->dirty = dst->dirty = true;
		PlFlushAccounts(accounts, locked, now);

		values[Anum_holds_id - 1] = UUIDPGetDatum((pg_uuid_t *) id);
		values[Anum_holds_from_account - 1] = UUIDPGetDatum((pg_uuid_t *) from_id);
		values[Anum_holds_to_account - 1] = UUIDPGetDatum((pg_uuid_t *) to_id);
		values[Anum_holds_amount - 1] = Int64GetDatum(amount);
		values[Anum_holds_currency - 1] = CStringGetTextDatum(currency);
		values[Anum_holds_status - 1] = CStringGetTextDatum("pending");
		values[Anum_holds_expires_at - 1] = TimestampTzGetDatum(expires_at);
		nulls[Anum_holds_posted_amount - 1] = true;
		if (key)
			values[Anum_holds_idempotency_key - 1] = CStringGetTextDatum(key);
		else
			nulls[Anum_holds_idempotency_key - 1] = true;
		values[Anum_holds_metadata - 1] = JsonbPGetDatum(metadata);
		values[Anum_holds_created_at - 1] = TimestampTzGetDatum(now);
		values[Anum_holds_updated_at - 1] = TimestampTzGetDatum(now);
		if (correlation_id)
			values[Anum_holds_correlation_id - 1] = UUIDPGetDatum((pg_uuid_t *) correlation_id);
		else
			nulls[Anum_holds_correlation_id - 1] = true;
		PlDirectInsert(holds, values, nulls);
		PlCountHold("pending", currency);
		table_close(holds, NoLock);
	}
	else
		PlStoreTransfer(id, "hold", reason, currency, amount, from_id, to_id,
						key, request_hash, metadata, now);
	table_close(accounts, NoLock);

	PlAuditMovement(&ev, "HOLD_CREATED", "pending", reason, id, from_id, to_id, amount,
					currency, key, metadata, correlation_id, now);
	PlAuditWrite(&ev);

	return reason;
}

/* what hold() hands its work */
typedef struct HoldArgs
{
	pg_uuid_t  *from_id;
	pg_uuid_t  *to_id;
	int64		amount;
	char	   *currency;
	TimestampTz expires_at;
	Jsonb	   *metadata;
} HoldArgs;

static void
hold_work(PlRequest *req)
{
	HoldArgs   *args = req->arg;
	pg_uuid_t	id;
	const char *reason;

	PlUuidV7(&id);
	reason = PlHoldCreate(&id, args->from_id, args->to_id, args->amount, args->currency,
						  args->expires_at, req->key, req->hash, args->metadata, NULL);
	PlRequestOutcome(req, &id, reason ? "rejected" : "pending", reason, 0);
}

/*
 * payledger.hold(from_account uuid, to_account uuid, amount bigint,
 *		currency text, expires_in interval DEFAULT '7 days',
 *		idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT '{}')
 *		RETURNS payledger.transfer_result
 *
 * Reserves amount on the source for the target: status 'pending', or
 * 'rejected' with the same declines as transfer().
 */
PG_FUNCTION_INFO_V1(hold);
Datum
hold(PG_FUNCTION_ARGS)
{
	HoldArgs	args;
	Interval   *expires_in;
	Jsonb	   *metadata;
	PlHasher   *h;
	PlRequest	req;
	TimestampTz now;

	PlRequireArg(fcinfo, 0, "from_account");
	PlRequireArg(fcinfo, 1, "to_account");
	PlRequireArg(fcinfo, 2, "amount");
	PlRequireArg(fcinfo, 3, "currency");
	PlRequireArg(fcinfo, 4, "expires_in");
	args.from_id = PG_GETARG_UUID_P(0);
	args.to_id = PG_GETARG_UUID_P(1);
	args.amount = PG_GETARG_INT64(2);
	args.currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	expires_in = PG_GETARG_INTERVAL_P(4);
	metadata = PG_ARGISNULL(6) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(6);

	PlCheckAmount(args.amount);
	PlCheckCurrency(args.currency);
	if (memcmp(args.from_id->data, args.to_id->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_account and to_account must differ")));
	now = GetCurrentTimestamp();
	args.expires_at = PlExpiryAfter(now, expires_in);
	PlCheckMetadata("hold metadata", metadata);
	PlRequestInit(&req, "hold", NULL, PlKeyArg(fcinfo, 5, "hold"), hold_work, &args);

	h = PlHashBegin("hold");
	PlHashUuid(h, args.from_id);
	PlHashUuid(h, args.to_id);
	PlHashInt64(h, args.amount);
	PlHashText(h, args.currency);
	PlHashInterval(h, expires_in);
	PlHashJsonb(h, metadata);
	PlHashEnd(h, req.hash);
	/* stored with e-mail addresses masked; the hash covers what was sent */
	args.metadata = PlMaskJsonb(metadata);

	req.scoped_debits = true;
	PlRunRequest(&req);
	return PlTransferResult(fcinfo, &req.result_id, req.status, req.reason, req.replayed);
}

/*
 * Declines that post and void share: a hold no longer pending, or past its
 * expiry (which expires it now; a decline of the call, unless the call is
 * an expiry sweep).  Returns the reason, or NULL to go on.
 */
static const char *
hold_not_usable(LockedHold *hold, const char *key, int64 amount, TimestampTz now,
				PlLockedSet *locked, bool sweep)
{
	if (strcmp(hold->status, "pending") != 0)
	{
		audit_decline(hold, "HOLD_NOT_PENDING", key, amount, now);
		return "HOLD_NOT_PENDING";
	}
	if (now >= hold->expires_at)
	{
		expire_now(hold, key, now, !sweep, locked);
		return "HOLD_EXPIRED";
	}
	return NULL;
}

/*
 * Locks the accounts of a hold and those the caller credits next
 * (more_accounts, a capture's split recipients) in one sorted pass, so the
 * lock order holds.  The hold's target and the others are credit-only, and
 * so may lock a sub-balance row, unless flags say otherwise.
 */
static PlLockedSet *
lock_hold_accounts(LockedHold *hold, const pg_uuid_t *more_accounts, int nmore, int flags)
{
	Relation	accounts = PlOpenAccounts();
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * (2 + nmore));
	bool	   *credit_only = palloc(sizeof(bool) * (2 + nmore));
	bool		own_rows = (flags & PL_SETTLE_OWN_ROWS) != 0;
	PlLockedSet *locked;

	ids[0] = hold->from_id;
	ids[1] = hold->to_id;
	credit_only[0] = false;
	credit_only[1] = !own_rows && (flags & PL_SETTLE_TARGET_DEBITED) == 0;
	for (int i = 0; i < nmore; i++)
	{
		ids[2 + i] = more_accounts[i];
		credit_only[2 + i] = !own_rows;
	}
	locked = PlLockAccountsFor(accounts, ids, 2 + nmore, credit_only);
	table_close(accounts, NoLock);
	pfree(ids);
	pfree(credit_only);
	return locked;
}

/*
 * Posts (all, or amount) or voids a hold.  Returns the decline reason or
 * NULL.  Raises PY005 for an unknown hold.  more_accounts are accounts the
 * caller credits next (a capture's splits): they are locked with the
 * hold's own in one sorted pass, so the lock order holds.  flags:
 * PL_SETTLE_TARGET_DEBITED when the caller debits the hold's target next
 * (a capture's splits come out of the merchant account), so its own row is
 * locked; PL_SETTLE_OWN_ROWS when the caller locked every account's own
 * row already (the sweeps); PL_SETTLE_SWEEP when an expiry sweep voids an
 * overdue hold, whose expiry is then no decline.  Part of a request's work (pipeline.c), which
 * records the key.
 */
const char *
PlHoldSettle(const pg_uuid_t *hold_id, bool post, bool has_amount, int64 amount,
			 const char *key, const uint8 *request_hash, TimestampTz now,
			 const pg_uuid_t *more_accounts, int nmore, int flags)
{
	LockedHold	hold;
	const char *reason;
	PlAuditEvent ev;
	int64		posted;
	PlLockedSet *locked;

	if (!lock_hold(hold_id, &hold))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("hold %s does not exist", PlUuidText(hold_id))));

	/*
	 * Judge expiry only once the accounts are locked: a transfer that ran
	 * while this call waited may have treated the hold as overdue and spent
	 * what it reserved.
	 */
	locked = lock_hold_accounts(&hold, more_accounts, nmore, flags);
	now = GetCurrentTimestamp();
	posted = (post && has_amount) ? amount : hold.amount;
	reason = hold_not_usable(&hold, key, posted, now, locked, (flags & PL_SETTLE_SWEEP) != 0);
	if (reason == NULL && post && posted > hold.amount)
	{
		reason = "EXCEEDS_AVAILABLE_AMOUNT";
		audit_decline(&hold, reason, key, posted, now);
	}
	/* posting moves money: not from or to a frozen or closed account */
	if (reason == NULL && post && (reason = PlStatusDecline(locked)) != NULL)
		audit_decline(&hold, reason, key, posted, now);
	if (reason != NULL)
		return reason;

	if (post)
	{
		settle_hold(&hold, "posted", posted, now, locked);
		PlStoreTransfer(&hold.id, "hold", NULL, hold.currency, posted, &hold.from_id,
						&hold.to_id, key, request_hash, PlEmptyJsonb(), now);
		hold_event(&ev, "HOLD_POSTED", &hold, "posted", now);
		ev.amount = posted;
	}
	else
	{
		settle_hold(&hold, "voided", 0, now, locked);
		hold_event(&ev, "HOLD_VOIDED", &hold, "voided", now);
	}
	ev.idempotency_key = key;
	PlAuditWrite(&ev);
	return NULL;
}

/* what post_hold and void_hold hand their work */
typedef struct HoldCallArgs
{
	pg_uuid_t  *hold_id;
	bool		post;
	bool		has_amount;
	int64		amount;
} HoldCallArgs;

static void
hold_call_work(PlRequest *req)
{
	HoldCallArgs *args = req->arg;
	LockedHold	locked;
	const char *reason;
	TimestampTz now;
	bool		found = lock_hold(args->hold_id, &locked);

	/* a payment's holds move with the payment, never on their own */
	if (found && memcmp(locked.correlation_id.data, args->hold_id->data, UUID_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
				 errmsg("hold %s belongs to a payment", PlUuidText(args->hold_id)),
				 errhint("Use capture_payment(), void_payment() or resolve_dispute().")));
	/* another merchant's hold does not exist for a scoped role */
	if (found)
		PlCheckTransferVisible("hold", args->hold_id, &locked.from_id, &locked.to_id);
	now = GetCurrentTimestamp();
	reason = PlHoldSettle(args->hold_id, args->post, args->has_amount, args->amount, req->key,
						  req->hash, now, NULL, 0, 0);
	PlRequestOutcome(req, args->hold_id,
					 reason ? "rejected" : (args->post ? "posted" : "voided"), reason, now);
}

/* post_hold and void_hold: arguments, request hash, then the pipeline */
static Datum
hold_call(FunctionCallInfo fcinfo, bool post)
{
	const char *operation = post ? "post_hold" : "void_hold";
	HoldCallArgs args;
	PlHasher   *h;
	PlRequest	req;

	args.post = post;
	args.has_amount = post && !PG_ARGISNULL(1);
	args.amount = args.has_amount ? PG_GETARG_INT64(1) : 0;
	PlRequireArg(fcinfo, 0, "hold_id");
	args.hold_id = PG_GETARG_UUID_P(0);
	if (args.has_amount)
		PlCheckAmount(args.amount);
	PlRequestInit(&req, operation, NULL, PlKeyArg(fcinfo, post ? 2 : 1, operation),
				  hold_call_work, &args);

	h = PlHashBegin(operation);
	PlHashUuid(h, args.hold_id);
	if (args.has_amount)
		PlHashInt64(h, args.amount);
	else
		PlHashText(h, NULL);
	PlHashEnd(h, req.hash);

	PlRunRequest(&req);
	return PlTransferResult(fcinfo, &req.result_id, req.status, req.reason, req.replayed);
}

/*
 * payledger.post_hold(hold_id uuid, amount bigint DEFAULT NULL,
 *		idempotency_key text DEFAULT NULL) RETURNS payledger.transfer_result
 *
 * Posts the held amount (or less: the rest is released in the same
 * transaction).  More than held is declined EXCEEDS_AVAILABLE_AMOUNT; a hold
 * no longer pending HOLD_NOT_PENDING; an overdue one is expired on the spot
 * and declined HOLD_EXPIRED.
 */
PG_FUNCTION_INFO_V1(post_hold);
Datum
post_hold(PG_FUNCTION_ARGS)
{
	return hold_call(fcinfo, true);
}

/*
 * payledger.void_hold(hold_id uuid, idempotency_key text DEFAULT NULL)
 *		RETURNS payledger.transfer_result
 *
 * Releases a pending hold: status 'voided'.
 */
PG_FUNCTION_INFO_V1(void_hold);
Datum
void_hold(PG_FUNCTION_ARGS)
{
	return hold_call(fcinfo, false);
}

/* columns of PLAN_HOLDS_OVERDUE */
enum
{
	OVERDUE_HOLD = 1, OVERDUE_FROM, OVERDUE_TO
};

/* the work of expire_holds(): a request without a key */
static void
expire_holds_work(PlRequest *req)
{
	int		   *expired = req->arg;
	Datum		values[1];
	pg_uuid_t  *ids;
	pg_uuid_t  *accounts;
	uint64		n;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	/* all the holds first, in id order, then all their accounts */
	if (PlExec(PLAN_HOLDS_OVERDUE, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "overdue hold scan failed");
	n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	accounts = palloc(sizeof(pg_uuid_t) * Max(2 * n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ids[i] = *DatumGetUUIDP(SPI_getbinval(tup, desc, OVERDUE_HOLD, &isnull));
		accounts[2 * i] = *DatumGetUUIDP(SPI_getbinval(tup, desc, OVERDUE_FROM, &isnull));
		accounts[2 * i + 1] = *DatumGetUUIDP(SPI_getbinval(tup, desc, OVERDUE_TO, &isnull));
	}
	if (n > 0)
	{
		Relation	rel = PlOpenAccounts();

		(void) PlLockAccounts(rel, accounts, 2 * n);
		table_close(rel, NoLock);
	}
	for (uint64 i = 0; i < n; i++)
	{
		LockedHold	hold;
		TimestampTz now = GetCurrentTimestamp();

		if (!lock_hold(&ids[i], &hold) || strcmp(hold.status, "pending") != 0 ||
			now < hold.expires_at)
			continue;
		expire_now(&hold, NULL, now, false, NULL);
		(*expired)++;
	}
}

/*
 * payledger.expire_holds() RETURNS integer
 *
 * Expires every pending hold past its expiry and releases its reservation;
 * returns how many.  Holds that a concurrent post or void settles first are
 * left to it.
 */
PG_FUNCTION_INFO_V1(expire_holds);
Datum
expire_holds(PG_FUNCTION_ARGS)
{
	PlRequest	req;
	int			expired = 0;

	PlRequestInit(&req, "expire_holds", NULL, NULL, expire_holds_work, &expired);
	PlRunRequest(&req);
	PG_RETURN_INT32(expired);
}
