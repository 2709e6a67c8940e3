/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  The one sequence every money-moving and payment request runs.
 *
 * A function checks its arguments (contract order (1) and (2): 22004,
 * 22023, 22003, PY006, PY008), computes its request hash, fills a PlRequest
 * and calls PlRunRequest(), which does, in this order:
 *
 *	1. the switch to the ledger's owner: a GUC nest level with search_path
 *	   pinned to pg_catalog, the owner's user id, SPI (PlSpiBegin);
 *	2. CommandCounterIncrement(), so that what earlier calls of the same
 *	   statement wrote (their keys, their rows) is seen;
 *	3. the key lock (and the lock of a caller-supplied id), before any row
 *	   lock (PlLockKeys); a request whose key is scoped by what it works on
 *	   (a payment's merchant) finds its scope first (the prepare step);
 *	4. replay or PY002: a key stored before replays its result, or raises
 *	   when the operation, the parameters or the id differ (PlIdemLookup);
 *	5. the work (the request's callback), which decides the outcome: the
 *	   later checks of the contract (PY005, PY004, PY001, 22023) raise in
 *	   it, declines are outcomes;
 *	6. the idempotency record of that outcome, in the same transaction;
 *	7. the cleanup: SPI closed, the GUC level rolled back, the caller's user
 *	   id restored (PlSpiEnd).  An error anywhere unwinds the same things
 *	   through the abort of the transaction or subtransaction.
 *
 * The replay counter is kept by the ledger (metrics.c), through SPI, which is
 * why the owner switch comes first.  Batches run the steps themselves, one
 * request per item (PlRequestKeyRefs, PlRequestLookup, PlRequestRecord),
 * with every item's key locked before any account.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "metrics.h"
#include "pipeline.h"
#include "access.h"

/* scope of the locks of caller-supplied result ids: not a merchant, not the ledger */
static const pg_uuid_t result_id_scope = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

void
PlRequestInit(PlRequest *req, const char *operation, const pg_uuid_t *scope,
			  const char *key, PlRequestStep work, void *arg)
{
	memset(req, 0, sizeof(PlRequest));
	req->operation = operation;
	req->scope = scope;
	req->key = key;
	req->work = work;
	req->arg = arg;
	req->caller_cxt = CurrentMemoryContext;
}

/* Sets the outcome of a request (from its work). */
void
PlRequestOutcome(PlRequest *req, const pg_uuid_t *id, const char *status,
				 const char *reason, TimestampTz at)
{
	req->result_id = *id;
	req->status = status;
	req->reason = reason;
	req->at = at;
}

/*
 * The keys a request locks: its idempotency key and its caller-supplied
 * id (as a key of a scope of its own), at most two.
 */
void
PlRequestKeyRefs(const PlRequest *req, PlKeyRef *refs, int *n)
{
	*n = 0;
	if (req->key != NULL)
	{
		refs[*n].scope = req->scope;
		refs[*n].key = req->key;
		(*n)++;
	}
	if (req->wanted_id != NULL)
	{
		refs[*n].scope = &result_id_scope;
		refs[*n].key = PlUuidText(req->wanted_id);
		(*n)++;
	}
}

/*
 * Replay or PY002 for a request whose keys are locked: true, with the
 * stored outcome (in the caller's memory context), when its key was used
 * before for the same request.
 */
bool
PlRequestLookup(PlRequest *req)
{
	PlIdemResult stored;
	MemoryContext oldcxt;

	if (req->key == NULL)
		return false;
	oldcxt = MemoryContextSwitchTo(req->caller_cxt);
	if (PlIdemLookup(req->scope, req->operation, req->key, req->hash, req->wanted_id,
					 &stored))
	{
		req->replayed = true;
		PlRequestOutcome(req, &stored.result_id, stored.status, stored.reason_code, 0);
	}
	MemoryContextSwitchTo(oldcxt);
	return req->replayed;
}

/* Stores the outcome of a keyed request under its key. */
void
PlRequestRecord(PlRequest *req)
{
	if (req->key == NULL)
		return;
	Assert(req->status != NULL);
	PlIdemRecord(req->scope, req->operation, req->key, req->hash, &req->result_id,
				 req->status, req->reason, req->at != 0 ? req->at : GetCurrentTimestamp());
}

/*
 * Runs one request: see the file header (and 25006 first in a read-only
 * transaction).  On return the outcome is set:
 * replayed from the store, or decided by the work and recorded.  A request
 * without a key (the expiry sweeps) only runs its work as the owner.
 */
void
PlRunRequest(PlRequest *req)
{
	PlPrivState priv;
	PlKeyRef	refs[2];
	int			nrefs;

	Assert(req->work != NULL && req->operation != NULL);

	/*
	 * A read-only transaction, and every transaction of a hot standby, is
	 * refused before anything runs: on a standby the first row lock would
	 * otherwise fail for want of a transaction id, not as a write.
	 */
	PreventCommandIfReadOnly(req->operation);
	PlSpiBegin(&priv);
	CommandCounterIncrement();
	if (req->prepare != NULL)
		req->prepare(req);
	PlRequestKeyRefs(req, refs, &nrefs);
	PlLockKeys(refs, nrefs);
	if (PlRequestLookup(req))
	{
		PlCountReplays(1);
		if (req->replay != NULL)
			req->replay(req);
	}
	else
	{
		PlScopeDebits(req->scoped_debits);
		req->work(req);
		PlScopeDebits(false);
		PlRequestRecord(req);
	}
	PlSpiEnd(&priv);
}
