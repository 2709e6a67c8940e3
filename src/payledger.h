/*-------------------------------------------------------------------------
 *
 * payledger.h
 *	  Settings and SQLSTATEs: what every payledger module includes first.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/payledger.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYLEDGER_H
#define PAYLEDGER_H

#include "postgres.h"

#include "utils/timestamp.h"

/* SQLSTATEs of the contract */
#define ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION	MAKE_SQLSTATE('P','Y','0','0','1')
#define ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED	MAKE_SQLSTATE('P','Y','0','0','2')
#define ERRCODE_PAYLEDGER_IMMUTABLE_RECORD			MAKE_SQLSTATE('P','Y','0','0','3')
#define ERRCODE_PAYLEDGER_CURRENCY_MISMATCH			MAKE_SQLSTATE('P','Y','0','0','4')
#define ERRCODE_PAYLEDGER_NOT_FOUND					MAKE_SQLSTATE('P','Y','0','0','5')
#define ERRCODE_PAYLEDGER_SENSITIVE_DATA			MAKE_SQLSTATE('P','Y','0','0','6')
#define ERRCODE_PAYLEDGER_PROTECTED_OBJECT			MAKE_SQLSTATE('P','Y','0','0','7')
#define ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REQUIRED	MAKE_SQLSTATE('P','Y','0','0','8')
#define ERRCODE_PAYLEDGER_LEDGER_BUSY				MAKE_SQLSTATE('P','Y','0','0','9')

#define PL_MAX_KEY_LENGTH	255
#define PL_SHA256_LEN		32

/* settings (settings.c) */
extern bool pl_require_idempotency_key;
extern char *pl_idempotency_retention;
extern bool pl_allow_drop;
extern int	pl_max_legs;
extern char *pl_risk_function;
extern int	pl_risk_threshold;
extern char *pl_actor_type;
extern char *pl_actor_id;
extern char *pl_ip_address;
extern char *pl_user_agent;
extern char *pl_device_id;
extern char *pl_correlation_id;
extern char *pl_audit_signing_key;
extern char *pl_audit_signing_key_file;
extern bool pl_notify_events;
extern bool pl_preloaded;		/* loaded by shared_preload_libraries */
extern int	pl_max_metadata_bytes;
extern int	pl_shard_id;
extern int	pl_submit_queue_size;
extern int	pl_submit_timeout;
extern int	pl_ledger_writers;

/* most ledger writers of one database (payledger.ledger_writers) */
#define PL_MAX_LEDGER_WRITERS	4

extern void SettingsInit(void);
extern void PlCheckContext(void);
extern Interval *PlIdempotencyRetention(void);

#endif							/* PAYLEDGER_H */
