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
#include "ledger.h"

/* lock space of caller-supplied transfer ids: not a merchant, not the ledger */
static const pg_uuid_t transfer_id_scope = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

/*
 * A caller-supplied transfer_id that exists already: replay it when the
 * parameters match (binding a new key to it), PY002 otherwise.
 */
static bool
replay_existing_id(const pg_uuid_t *wanted_id, const uint8 *request_hash,
				   const char *key, char **status_out, char **reason_out)
{
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bytea	   *old;
	char	   *status;
	char	   *rc;

	values[0] = UUIDPGetDatum((pg_uuid_t *) wanted_id);
	if (PlExec(PLAN_TRANSFER_GET, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "transfer lookup failed");
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = DatumGetByteaPP(SPI_getbinval(tup, desc, 1, &isnull));
	if (VARSIZE_ANY_EXHDR(old) != PL_SHA256_LEN ||
		memcmp(VARDATA_ANY(old), request_hash, PL_SHA256_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("transfer %s already exists with different parameters",
						PlUuidText(wanted_id)),
				 errhint("A caller-supplied transfer_id is unique forever.")));
	status = MemoryContextStrdup(TopTransactionContext, SPI_getvalue(tup, desc, 2));
	rc = SPI_getvalue(tup, desc, 3);
	if (rc)
		rc = MemoryContextStrdup(TopTransactionContext, rc);
	PlCountReplays(1);
	/* a retry with a key the first call did not carry: remember it */
	if (key != NULL)
		PlIdemRecord(NULL, "transfer", key, request_hash, wanted_id,
					 status, rc, GetCurrentTimestamp());
	*status_out = status;
	*reason_out = rc;
	return true;
}

/*
 * Moves amount between two accounts under the transfer id given, or
 * declines: locks both accounts in the fixed order, checks their currency
 * (PY005, PY004 raise), writes entries, the transfer row and the audit row.
 * Returns the decline reason or NULL, and the time of the posting in *at.
 * Inside PlSpiBegin; the caller records idempotency.
 */
const char *
PlPostTransfer(const pg_uuid_t *id, const char *kind, const pg_uuid_t *from_id,
			   const pg_uuid_t *to_id, int64 amount, const char *currency,
			   const char *key, const uint8 *request_hash, Jsonb *metadata,
			   const pg_uuid_t *correlation_id, TimestampTz *at)
{
	Relation	accounts = PlOpenAccounts();
	pg_uuid_t	ids[2] = {*from_id, *to_id};
	static const bool credit_only[2] = {false, true};
	PlLockedSet *locked = PlLockAccountsFor(accounts, ids, 2, credit_only);
	PlAccountRow *src = PlFindAccount(locked, from_id);
	PlAccountRow *dst = PlFindAccount(locked, to_id);
	const char *reason;
	TimestampTz now;
	PlAuditEvent ev;

	PlCheckAccountCurrency(src, currency);
	PlCheckAccountCurrency(dst, currency);
	reason = PlDeclineReason(src, dst, amount);
	now = GetCurrentTimestamp();
	if (reason == NULL)
	{
		Relation	entries = PlOpenEntries();

		PlWriteEntry(entries, src, id, -amount, now);
		PlWriteEntry(entries, dst, id, amount, now);
		table_close(entries, NoLock);
		PlFlushAccounts(accounts, locked, now);
	}
	table_close(accounts, NoLock);
	PlStoreTransfer(id, kind, reason, currency, amount, from_id, to_id,
					key, request_hash, metadata, now);

	PlAuditMovement(&ev, "TRANSFER_POSTED", "posted", reason, id, from_id, to_id, amount,
					currency, key, metadata, correlation_id, now);
	PlAuditWrite(&ev);
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
	pg_uuid_t  *from_id;
	pg_uuid_t  *to_id;
	int64		amount;
	char	   *currency;
	char	   *key = NULL;
	Jsonb	   *metadata;
	pg_uuid_t  *wanted_id = NULL;
	pg_uuid_t	id;
	uint8		request_hash[PL_SHA256_LEN];
	PlPrivState priv;
	PlIdemResult stored;
	const char *reason;
	TimestampTz now;

	/* (1) the arguments themselves */
	PlRequireArg(fcinfo, 0, "from_account");
	PlRequireArg(fcinfo, 1, "to_account");
	PlRequireArg(fcinfo, 2, "amount");
	PlRequireArg(fcinfo, 3, "currency");
	from_id = PG_GETARG_UUID_P(0);
	to_id = PG_GETARG_UUID_P(1);
	amount = PG_GETARG_INT64(2);
	currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	metadata = PG_ARGISNULL(5) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(5);
	if (!PG_ARGISNULL(6))
		wanted_id = PG_GETARG_UUID_P(6);

	PlCheckAmount(amount);
	PlCheckCurrency(currency);
	if (memcmp(from_id->data, to_id->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_account and to_account must differ")));
	PlCheckMetadata("transfer metadata", metadata);
	if (!PG_ARGISNULL(4))
	{
		key = text_to_cstring(PG_GETARG_TEXT_PP(4));
		PlCheckKey(key);
	}

	/* (2) a key is required, unless the caller's own transfer_id serves */
	if (key == NULL && wanted_id == NULL)
		PlRequireKey("transfer");

	PlTransferHash(from_id, to_id, amount, currency, metadata, request_hash);
	/* stored with e-mail addresses masked; the hash covers what was sent */
	metadata = PlMaskJsonb(metadata);

	PlSpiBegin(&priv);

	/*
	 * Make what earlier calls in this same statement wrote visible, as SPI
	 * would before a query: e.g. two transfers with one key in one SELECT.
	 */
	CommandCounterIncrement();

	/* (3) a retry replays */
	if (key != NULL &&
		PlIdemBegin(NULL, "transfer", key, request_hash, wanted_id, &stored))
	{
		PlSpiEnd(&priv);
		return PlTransferResult(fcinfo, &stored.result_id, stored.status,
								stored.reason_code, true);
	}
	if (wanted_id != NULL)
	{
		char	   *status;
		char	   *rc;

		/* concurrent calls with one transfer_id queue here, as keys do */
		PlLockIdemKey(&transfer_id_scope, PlUuidText(wanted_id));
		if (replay_existing_id(wanted_id, request_hash, key, &status, &rc))
		{
			PlSpiEnd(&priv);
			return PlTransferResult(fcinfo, wanted_id, status, rc, true);
		}
		id = *wanted_id;
	}
	else
		PlUuidV7(&id);

	/* (4) unknown accounts, (5) currency, (8) declines */
	reason = PlPostTransfer(&id, "transfer", from_id, to_id, amount, currency, key,
							request_hash, metadata, NULL, &now);
	if (key != NULL)
		PlIdemRecord(NULL, "transfer", key, request_hash, &id,
					 reason ? "rejected" : "posted", reason, now);

	PlSpiEnd(&priv);
	return PlTransferResult(fcinfo, &id, reason ? "rejected" : "posted", reason, false);
}
