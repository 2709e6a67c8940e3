/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *	  Idempotency keys and request hashes (idempotency.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/idempotency.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_H
#define IDEMPOTENCY_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

typedef struct PlIdemResult
{
	bool		found;
	pg_uuid_t	result_id;
	char	   *status;
	char	   *reason_code;
} PlIdemResult;

/* a key and its scope (a merchant, or NULL for the ledger's functions) */
typedef struct PlKeyRef
{
	const pg_uuid_t *scope;
	const char *key;
} PlKeyRef;

extern uint64 PlKeyHash(const PlKeyRef *ref);
extern void PlLockKeys(const PlKeyRef *keys, int n);
extern void PlLockKeyHashes(uint64 *hashes, int n);
extern bool PlIdemLookup(const pg_uuid_t *scope, const char *operation, const char *key,
						 const uint8 *request_hash, const pg_uuid_t *wanted_id,
						 PlIdemResult *result);
extern const char *PlKnownStatus(const char *status);
extern const char *PlConstStatus(const char *status);
extern const char *PlConstReason(const char *reason);
extern void PlIdemRecord(const pg_uuid_t *scope, const char *operation, const char *key,
						 const uint8 *request_hash, const pg_uuid_t *result_id,
						 const char *status, const char *reason_code, TimestampTz now);

/* request hashing */
typedef struct PlHasher PlHasher;
extern PlHasher *PlHashBegin(const char *operation);
extern void PlHashText(PlHasher *h, const char *s);
extern void PlHashInt64(PlHasher *h, int64 v);
extern void PlHashUuid(PlHasher *h, const pg_uuid_t *u);
extern void PlHashJsonb(PlHasher *h, Jsonb *jb);
extern void PlHashInterval(PlHasher *h, const Interval *iv);
extern void PlHashEnd(PlHasher *h, uint8 *out);

#endif							/* IDEMPOTENCY_H */
