/*-------------------------------------------------------------------------
 *
 * transfer.c
 *	  transfer(): moving money between two accounts.
 *
 * Order of checks (doc/reference.md section 1): arguments (22004, 22023, PY006),
 * PY008, the idempotency key (replay or PY002), unknown accounts (PY005),
 * currency (PY004), then business declines, which are returned with status
 * 'rejected', stored and audited, never raised.  Locks follow the order of
 * posting.c, so transfers never deadlock among themselves.
 *
 * transfer() is the SQL face of PlTransferRequest(), which takes plain C
 * arguments.  submit_transfer() (ledger_writer.c) checks its arguments
 * with PlTransferCheckArgs() and hashes them with PlTransferHash() in the
 * calling session; its writers then run the same pipeline steps per item
 * on a batch's locked accounts, as transfer_many does.
 *
 * The hot path runs no SQL: the key and account rows are found by index
 * probes, rows are locked with table_tuple_lock(), updated in place (HOT)
 * and the idempotency record, entries, transfer row and audit row are
 * inserted directly (direct.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/transfer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "audit.h"
#include "metrics.h"
#include "pipeline.h"
#include "ledger.h"

/* columns of PLAN_TRANSFER_GET */
enum
{
	TRANSFER_GET_HASH = 1, TRANSFER_GET_STATUS, TRANSFER_GET_REASON, TRANSFER_GET_KIND
};

/*
 * A caller-supplied transfer_id the ledger has used already: a transfer
 * with the same parameters replays (binding a new key to it); any other
 * transfer, or a hold, payment, settlement or account with that id, is
 * PY002.  False when the id is new.
 */
static bool
replay_existing_id(PlRequest *req)
{
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		hash;
	char	   *kind;
	char	   *rc;
	MemoryContext oldcxt;

	values[0] = UUIDPGetDatum((pg_uuid_t *) req->wanted_id);
	if (PlExec(PLAN_TRANSFER_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "transfer lookup failed");
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	kind = SPI_getvalue(tup, desc, TRANSFER_GET_KIND);
	if (strcmp(kind, "transfer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("transfer_id %s is already the id of a %s",
						PlUuidText(req->wanted_id), kind),
				 errhint("A caller-supplied transfer_id must be new to the ledger.")));
	hash = SPI_getbinval(tup, desc, TRANSFER_GET_HASH, &isnull);
	if (VARSIZE_ANY_EXHDR(DatumGetByteaPP(hash)) != PL_SHA256_LEN ||
		memcmp(VARDATA_ANY(DatumGetByteaPP(hash)), req->hash, PL_SHA256_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("transfer %s already exists with different parameters",
						PlUuidText(req->wanted_id)),
				 errhint("A caller-supplied transfer_id is unique forever.")));
	oldcxt = MemoryContextSwitchTo(req->caller_cxt);
	rc = SPI_getvalue(tup, desc, TRANSFER_GET_REASON);
	PlRequestOutcome(req, req->wanted_id, SPI_getvalue(tup, desc, TRANSFER_GET_STATUS), rc, 0);
	MemoryContextSwitchTo(oldcxt);
	SPI_freetuptable(SPI_tuptable);
	req->replayed = true;
	PlCountReplays(1);
	return true;
}

/*
 * Moves amount from src to dst, account rows already locked and in the
 * transfer's currency, under the transfer id given, or declines: the
 * entries (changing the rows in memory: the caller writes them back), the
 * transfer row and the audit row.  Returns the decline reason or NULL.
 * transfer(), transfer_many's items and the ledger writer's all post here.
 */
const char *
PlPostLocked(Relation entries, PlAccountRow *src, PlAccountRow *dst, const pg_uuid_t *id,
			 const char *kind, int64 amount, const char *currency, const char *key,
			 const uint8 *request_hash, Jsonb *metadata, const pg_uuid_t *correlation_id,
			 TimestampTz now)
{
	const char *reason = PlDeclineReason(src, dst, amount);
	PlAuditEvent ev;

	if (reason == NULL)
	{
		PlWriteEntry(entries, src, id, -amount, now);
		PlWriteEntry(entries, dst, id, amount, now);
	}
	PlStoreTransfer(id, kind, reason, currency, amount, &src->id, &dst->id,
					key, request_hash, metadata, now);
	PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, id, &src->id, &dst->id, amount,
					currency, key, metadata, correlation_id, now);
	PlAuditWrite(&ev);
	return reason;
}

/*
 * Moves amount between two accounts under the transfer id given, or
 * declines: locks both accounts in the fixed order, checks their currency
 * (PY005, PY004 raise), then PlPostLocked and the rows written back.
 * Returns the decline reason or NULL, and the time of the posting in *at.
 * Part of a request's work (pipeline.c), which records the key.
 */
const char *
PlPostTransfer(const pg_uuid_t *id, const char *kind, const pg_uuid_t *from_id,
			   const pg_uuid_t *to_id, int64 amount, const char *currency,
			   const char *key, const uint8 *request_hash, Jsonb *metadata,
			   const pg_uuid_t *correlation_id, TimestampTz *at)
{
	Relation	accounts = PlOpenAccounts();
	Relation	entries = PlOpenEntries();
	pg_uuid_t	ids[2] = {*from_id, *to_id};
	static const bool credit_only[2] = {false, true};
	PlLockedSet *locked = PlLockAccountsFor(accounts, ids, 2, credit_only);
	PlAccountRow *src = PlFindAccount(locked, from_id);
	PlAccountRow *dst = PlFindAccount(locked, to_id);
	const char *reason;
	TimestampTz now;

	PlCheckAccountCurrency(src, currency);
	PlCheckAccountCurrency(dst, currency);
	now = GetCurrentTimestamp();
	reason = PlPostLocked(entries, src, dst, id, kind, amount, currency, key, request_hash,
						  metadata, correlation_id, now);
	if (reason == NULL)
		PlFlushAccounts(accounts, locked, now);
	table_close(entries, NoLock);
	table_close(accounts, NoLock);
	if (at)
		*at = now;
	return reason;
}

/*
 * The request hash of a transfer: what a retry must repeat.  transfer_many
 * items use it too, so a batch item and a single call with one key replay
 * each other.
 */
void
PlTransferHash(const pg_uuid_t *from_id, const pg_uuid_t *to_id, int64 amount,
			   const char *currency, Jsonb *metadata, uint8 *out)
{
	PlHasher   *h = PlHashBegin("transfer");

	PlHashUuid(h, from_id);
	PlHashUuid(h, to_id);
	PlHashInt64(h, amount);
	PlHashText(h, currency);
	PlHashJsonb(h, metadata);
	PlHashEnd(h, out);
}

/*
 * The work of a transfer request: (4) unknown accounts, (5) currency,
 * (8) declines, under the caller's id (replayed when it exists) or a new one.
 */
static void
transfer_work(PlRequest *req)
{
	const PlTransferArgs *args = req->arg;
	pg_uuid_t	id;
	const char *reason;
	TimestampTz now;

	if (req->wanted_id != NULL)
	{
		if (replay_existing_id(req))
			return;
		id = *req->wanted_id;
	}
	else
		PlUuidV7(&id);
	reason = PlPostTransfer(&id, "transfer", &args->from_id, &args->to_id, args->amount,
							args->currency, req->key, req->hash, args->metadata, NULL, &now);
	PlRequestOutcome(req, &id, reason ? "rejected" : "posted", reason, now);
}

/*
 * Contract steps (1) and (2) of a transfer request, which need no ledger
 * state: the arguments themselves (22023, PY006), then the key (PY008).
 * Fills in the empty metadata when none was given.  submit_transfer() runs
 * them in the calling session before it queues the request.
 */
void
PlTransferCheckArgs(PlTransferArgs *args)
{
	/* (1) the arguments themselves */
	if (args->metadata == NULL)
		args->metadata = PlEmptyJsonb();
	PlCheckAmount(args->amount);
	PlCheckCurrency(args->currency);
	if (memcmp(args->from_id.data, args->to_id.data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_account and to_account must differ")));
	PlCheckMetadata("transfer metadata", args->metadata);
	if (args->key != NULL)
		PlCheckKey(args->key);

	/* (2) a key is required, unless the caller's own transfer_id serves */
	if (args->key == NULL && args->always_keyed)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REQUIRED),
				 errmsg("submit_transfer requires an idempotency key"),
				 errhint("A submission is always keyed, whatever payledger.require_idempotency_key says.")));
	if (args->key == NULL && args->transfer_id == NULL)
		PlRequireKey("transfer");
}

/*
 * The request hash of checked arguments, over the metadata as sent, and
 * the metadata as stored: with e-mail addresses masked.
 */
void
PlTransferPrepare(PlTransferArgs *args, uint8 *hash)
{
	PlTransferHash(&args->from_id, &args->to_id, args->amount, args->currency, args->metadata,
				   hash);
	args->metadata = PlMaskJsonb(args->metadata);
}

/*
 * One transfer request from plain C arguments: the checks of the
 * arguments, then the pipeline.  Raises what transfer() raises; returns
 * the outcome (posted, rejected with a reason, or replayed).
 */
void
PlTransferRequest(const PlTransferArgs *args, PlTransferOutcome *out)
{
	PlTransferArgs work_args = *args;
	PlRequest	req;

	PlTransferCheckArgs(&work_args);
	PlRequestInit(&req, "transfer", NULL, args->key, transfer_work, &work_args);
	req.wanted_id = args->transfer_id;
	PlTransferPrepare(&work_args, req.hash);

	/* (3) replay or PY002, then the work */
	req.scoped_debits = true;
	PlRunRequest(&req);
	out->transfer_id = req.result_id;
	out->status = req.status;
	out->reason_code = req.reason;
	out->replayed = req.replayed;
}

/*
 * The arguments transfer() and submit_transfer() share, in the same
 * positions: the accounts, amount and currency (22004 when NULL), the key
 * and the metadata.
 */
void
PlTransferArgsFrom(FunctionCallInfo fcinfo, PlTransferArgs *args)
{
	PlRequireArg(fcinfo, 0, "from_account");
	PlRequireArg(fcinfo, 1, "to_account");
	PlRequireArg(fcinfo, 2, "amount");
	PlRequireArg(fcinfo, 3, "currency");
	args->from_id = *PG_GETARG_UUID_P(0);
	args->to_id = *PG_GETARG_UUID_P(1);
	args->amount = PG_GETARG_INT64(2);
	args->currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	args->key = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	args->metadata = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
}

/*
 * payledger.transfer(from_account uuid, to_account uuid, amount bigint,
 *		currency text, idempotency_key text DEFAULT NULL,
 *		metadata jsonb DEFAULT '{}', transfer_id uuid DEFAULT NULL)
 *		RETURNS payledger.transfer_result
 *
 * Posts amount from one account to the other, or declines it with a
 * reason code; either way the outcome is stored, audited and, with a key or
 * a caller-supplied transfer_id, replayed on retry.
 */
PG_FUNCTION_INFO_V1(transfer);
Datum
transfer(PG_FUNCTION_ARGS)
{
	PlTransferArgs args;
	PlTransferOutcome out;

	PlTransferArgsFrom(fcinfo, &args);
	args.transfer_id = PG_ARGISNULL(6) ? NULL : PG_GETARG_UUID_P(6);
	args.always_keyed = false;

	PlTransferRequest(&args, &out);
	return PlTransferResult(fcinfo, &out.transfer_id, out.status, out.reason_code,
							out.replayed);
}
