/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  The audit log: rows, hash chain, monthly partitions, protection.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/audit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUDIT_H
#define AUDIT_H

#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* audit.c */
typedef struct PlAuditEvent
{
	const char *event_type;
	const char *previous_state;
	const char *new_state;
	pg_uuid_t  *payment_id;
	pg_uuid_t  *account_id;
	pg_uuid_t  *counterparty_account_id;
	pg_uuid_t  *correlation_id; /* used when payledger.correlation_id is unset */
	pg_uuid_t  *merchant_id;
	pg_uuid_t  *customer_id;
	const char *idempotency_key;
	bool		has_amount;
	int64		amount;
	const char *currency;
	bool		success;
	const char *reason_code;
	const char *error_message;
	Jsonb	   *metadata;		/* NULL: '{}' */
	TimestampTz event_time;
} PlAuditEvent;

extern void PlAuditInit(PlAuditEvent *ev, const char *event_type, TimestampTz at);
extern void PlAuditWrite(const PlAuditEvent *ev);
extern void PlAuditMovement(PlAuditEvent *ev, const char *event_type, const char *new_state,
							const char *reason, const pg_uuid_t *id, const pg_uuid_t *from_id,
							const pg_uuid_t *to_id, int64 amount, const char *currency,
							const char *key, Jsonb *metadata, const pg_uuid_t *correlation_id,
							TimestampTz now);

/* audit_chain.c */
extern void AuditChainInit(void);
extern void PlAuditChainFill(Oid relid, TupleDesc desc, Datum *values, bool *nulls);
extern bool PlAuditVerifySource(const char *source, char **problem);
extern Jsonb *PlAuditSourceCheckpoint(const char *source, Jsonb *extra);

/* audit_partitions.c */
extern void AuditPartitionsInit(void);
extern Relation PlAuditLeafFor(Relation parent, const pg_uuid_t *event_id);

/* protect.c */
extern void PlAllowAuditDdl(bool allow);

#endif							/* AUDIT_H */
