/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  The request pipeline every money-moving and payment function runs
 *	  through (pipeline.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/pipeline.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PIPELINE_H
#define PIPELINE_H

#include "utils/palloc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "idempotency.h"

typedef struct PlRequest PlRequest;

/* a step of a request, run as the ledger's owner inside SPI */
typedef void (*PlRequestStep) (PlRequest *req);

/*
 * A request: what the caller describes (PlRequestInit, then the optional
 * fields), and its outcome, set by a replay or by the work.  Strings of
 * the outcome stay valid in the caller's memory context.
 */
struct PlRequest
{
	/* the request */
	const char *operation;		/* stored with the key: "transfer", ... */
	const pg_uuid_t *scope;		/* the key's scope: a merchant, or NULL */
	const char *key;			/* the idempotency key, or NULL */
	uint8		hash[PL_SHA256_LEN];	/* what a retry must repeat */
	const pg_uuid_t *wanted_id; /* a caller-supplied result id, or NULL */
	PlRequestStep prepare;		/* optional: runs before the key lock, e.g.
								 * to find the key's scope */
	PlRequestStep work;			/* does the work and sets the outcome */
	PlRequestStep replay;		/* optional: runs when the key replays */
	void	   *arg;			/* the steps' own state */
	bool		scoped_debits;	/* a scoped caller debits only its merchants'
								 * accounts (transfer, hold, legs, batches) */

	/* the outcome */
	bool		replayed;		/* from the idempotency store, or the id's */
	pg_uuid_t	result_id;
	const char *status;
	const char *reason;			/* decline reason, or NULL */
	TimestampTz at;				/* when it was decided (0: now) */

	MemoryContext caller_cxt;	/* where the outcome is kept */
};

extern void PlRequestInit(PlRequest *req, const char *operation, const pg_uuid_t *scope,
						  const char *key, PlRequestStep work, void *arg);
extern void PlRunRequest(PlRequest *req);
extern void PlRequestOutcome(PlRequest *req, const pg_uuid_t *id, const char *status,
							 const char *reason, TimestampTz at);

/* the steps of PlRunRequest, for a batch whose items are requests */
extern void PlRequestKeyRefs(const PlRequest *req, PlKeyRef *refs, int *n);
extern bool PlRequestLookup(PlRequest *req);
extern void PlRequestRecord(PlRequest *req);

#endif							/* PIPELINE_H */
