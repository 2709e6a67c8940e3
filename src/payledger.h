/*-------------------------------------------------------------------------
 *
 * payledger.h
 *	  Declarations shared by the payledger modules.
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

#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* SQLSTATEs of the contract (API.md section 1) */
#define ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION	MAKE_SQLSTATE('P','Y','0','0','1')
#define ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED	MAKE_SQLSTATE('P','Y','0','0','2')
#define ERRCODE_PAYLEDGER_IMMUTABLE_RECORD			MAKE_SQLSTATE('P','Y','0','0','3')
#define ERRCODE_PAYLEDGER_CURRENCY_MISMATCH			MAKE_SQLSTATE('P','Y','0','0','4')
#define ERRCODE_PAYLEDGER_NOT_FOUND					MAKE_SQLSTATE('P','Y','0','0','5')
#define ERRCODE_PAYLEDGER_SENSITIVE_DATA			MAKE_SQLSTATE('P','Y','0','0','6')
#define ERRCODE_PAYLEDGER_PROTECTED_OBJECT			MAKE_SQLSTATE('P','Y','0','0','7')
#define ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REQUIRED	MAKE_SQLSTATE('P','Y','0','0','8')

#define PL_MAX_KEY_LENGTH	255
#define PL_SHA256_LEN		32

/* settings (payledger.c) */
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
extern void PlCheckContext(void);
extern char *pl_audit_signing_key;
extern bool pl_notify_events;

extern Interval *PlIdempotencyRetention(void);

/* spi_plans.c: kept plans, run as the ledger's owner */
typedef enum PlPlanId
{
	PLAN_ACCOUNT_INSERT,
	PLAN_ACCOUNT_GET,
	PLAN_ACCOUNT_LOCK,
	PLAN_ACCOUNT_SET_STATUS,
	PLAN_ACCOUNT_ENTRIES,
	PLAN_BALANCE_AT,
	PLAN_TRANSFER_GET,
	PLAN_IDEM_PURGE,
	PLAN_EVENTS_READ,
	PLAN_EVENT_READABLE,
	PLAN_EVENTS_ACK,
	PLAN_ERA_REGISTER,
	PLAN_ERA_GET,
	PLAN_COUNT_REPLAYS,
	PLAN_MACHINE_GET,
	PLAN_MACHINE_PUT,
	PLAN_AUTHS_OVERDUE,
	PLAN_HOLDS_LOCK_MANY,
	PLAN_LIMITS_CHECK,
	PLAN_LIMITS_SET,
	PLAN_PAYMENT_DISPUTE,
	PLAN_SETTLE_CANDIDATES,
	PLAN_PAYMENT_SETTLE,
	PLAN_SETTLEMENT_INSERT,
	PLAN_SETTLEMENT_GET,
	PLAN_SETTLEMENT_PAYMENTS,
	PLAN_HOLDS_OVERDUE,
	PLAN_OVERDUE_DEBITS,
	PLAN_OVERDUE_CREDITS,
	PLAN_SUB_BALANCES_COUNT,
	PLAN_SUB_BALANCE_INSERT,
	PLAN_SUB_BALANCES_ACTIVATE,
	PLAN_SUB_BALANCES_LOCK,
	PLAN_SUB_BALANCES_CLOSE,
	PLAN_BALANCE_AT_SUB,
	PLAN_ACCOUNT_ENTRIES_SUB,
	PLAN_COUNT					/* must be last */
} PlPlanId;

typedef struct PlPrivState
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_internal;
} PlPrivState;

extern void PlSpiBegin(PlPrivState *state);
extern void PlSpiEnd(PlPrivState *state);
extern int	PlExec(PlPlanId id, Datum *values, const char *nulls, long count);
extern bool PlInternalWrite(void);
extern Oid	PlCallerUserId(void);
extern Oid	PlLedgerOwner(void);
extern void PlUnprivilegedBegin(PlPrivState *state);
extern void PlUnprivilegedEnd(PlPrivState *state);
extern void SpiPlansInit(void);

/* direct.c: executor-free inserts and lookups */
#include "utils/relcache.h"
#include "access/htup.h"
#include "storage/itemptr.h"
extern Relation PlOpenTable(const char *relname);
extern void PlDirectInsert(Relation rel, Datum *values, bool *nulls);

typedef struct PlAccountRow
{
	pg_uuid_t	id;				/* the account */
	pg_uuid_t	row_id;			/* the row written: id, or one of its sub-balances */
	HeapTuple	tuple;			/* latest version, locked */
	ItemPointerData tid;
	char	   *currency;
	char	   *status;
	bool		has_floor;
	int64		min_balance;
	int64		balance;
	int64		pending_debits;
	int64		pending_credits;
	int64		version;
	bool		has_limits;		/* see account_limits */
	int64		call_debits;	/* debits this call decided but not yet wrote */
	bool		dirty;			/* changed in memory, not yet written */
	bool		has_sub_balances;	/* committed sub-balances count toward its floor */
} PlAccountRow;

/* posting.c: lock order, declines, entries, transfer rows */
typedef struct PlLockedSet
{
	PlAccountRow *rows;			/* sorted by id */
	int			n;
} PlLockedSet;

extern char *PlUuidText(const pg_uuid_t *u);
extern PlLockedSet *PlLockAccounts(Relation rel, const pg_uuid_t *ids, int n);
extern PlLockedSet *PlLockAccountsFor(Relation rel, const pg_uuid_t *ids, int n,
									  const bool *credit_only);
extern PlAccountRow *PlFindAccount(PlLockedSet *set, const pg_uuid_t *id);
extern void PlCheckAccountCurrency(const PlAccountRow *row, const char *currency);
extern const char *PlDeclineReason(PlAccountRow *src, PlAccountRow *dst, int64 amount);
extern void PlWriteEntry(Relation entries, PlAccountRow *row, const pg_uuid_t *transfer_id,
						 int64 delta, TimestampTz now);
extern void PlFlushAccounts(Relation rel, PlLockedSet *set, TimestampTz now);
extern Relation PlOpenEntries(void);
extern Relation PlOpenAccounts(void);
extern void PlStoreTransfer(const pg_uuid_t *id, const char *kind, const char *reason,
							const char *currency, int64 amount, const pg_uuid_t *from_id,
							const pg_uuid_t *to_id, const char *key,
							const uint8 *request_hash, Jsonb *metadata, TimestampTz now);

/* sub_balances.c: hot accounts */
typedef struct PlSubBalances
{
	pg_uuid_t	key;			/* an account id (hash key) */
	bool		is_sub_balance; /* key is a sub-balance row ... */
	pg_uuid_t	account_id;		/* ... of this account */
	int			nall;			/* key's sub-balances, in slot order */
	pg_uuid_t  *all;
	int			nactive;		/* those that take credits now */
	pg_uuid_t  *active;
	int			last_used;		/* index into active this backend locked last */
} PlSubBalances;

extern void PlSubBalancesInit(void);
extern const PlSubBalances *PlSubBalancesOf(const pg_uuid_t *id);
extern void PlRejectSubBalance(const pg_uuid_t *id);
extern bool PlLockSubBalance(Relation rel, const pg_uuid_t *id, PlAccountRow *row);
extern int64 PlSubBalanceTotal(const pg_uuid_t *id, int64 *versions);

/* transfer.c */
extern void PlTransferHash(const pg_uuid_t *from_id, const pg_uuid_t *to_id, int64 amount,
						   const char *currency, Jsonb *metadata, uint8 *out);
extern const char *PlPostTransfer(const pg_uuid_t *id, const char *kind,
								  const pg_uuid_t *from_id, const pg_uuid_t *to_id,
								  int64 amount, const char *currency, const char *key,
								  const uint8 *request_hash, Jsonb *metadata,
								  const pg_uuid_t *correlation_id, TimestampTz *at);

/* state_machine.c */
extern void PlCheckTransition(const char *machine, const char *from, const char *to);

/* holds.c */
extern int64 PlOverdueDebits(const pg_uuid_t *account_id);
extern int64 PlOverdueCredits(const pg_uuid_t *account_id);
extern const char *PlHoldCreate(const pg_uuid_t *id, const pg_uuid_t *from_id,
								const pg_uuid_t *to_id, int64 amount, const char *currency,
								TimestampTz expires_at, const char *key,
								const uint8 *request_hash, Jsonb *metadata,
								const pg_uuid_t *correlation_id);
extern const char *PlHoldSettle(const pg_uuid_t *hold_id, bool post, bool has_amount,
								int64 amount, const char *key, const uint8 *request_hash,
								TimestampTz now, const pg_uuid_t *more_accounts, int nmore);

typedef enum PlRowMode
{
	PL_ROW_READ,				/* no lock */
	PL_ROW_LOCK,				/* FOR NO KEY UPDATE, waiting */
	PL_ROW_TRY					/* FOR NO KEY UPDATE unless somebody holds it */
} PlRowMode;
typedef enum PlRowResult
{
	PL_ROW_FOUND,
	PL_ROW_MISSING,
	PL_ROW_BUSY
} PlRowResult;
extern PlRowResult PlFetchAccountRow(Relation rel, const pg_uuid_t *id, PlAccountRow *row,
									 PlRowMode mode);
extern bool PlLockAccountRow(Relation rel, const pg_uuid_t *id, PlAccountRow *row);
extern void PlUpdateAccountRow(Relation rel, PlAccountRow *row, TimestampTz now);
extern void PlLockIdemKey(const pg_uuid_t *scope, const char *key);
extern HeapTuple PlIdemFetchLatest(Relation rel, const pg_uuid_t *scope, const char *key,
								   TupleDesc *desc);

/* direct.c: rows of payments and holds by primary key */
#include "nodes/lockoptions.h"
extern HeapTuple PlFetchRow(Relation rel, const pg_uuid_t *id);
extern HeapTuple PlLockRow(Relation rel, const pg_uuid_t *id, LockTupleMode mode);
extern void PlDirectUpdate(Relation rel, HeapTuple oldtup, HeapTuple newtup);

/* lock space of idempotency-key locks (advisory lock field 4) */
#define PL_IDEM_LOCK_SPACE	0x504C

/* column counts the direct inserts are written for */
#define PL_NATTS_ACCOUNTS	14
#define PL_NATTS_TRANSFERS	12
#define PL_NATTS_ENTRIES	6
#define PL_NATTS_AUDIT		32
/* 0-based positions of the audit log's chain columns */
#define AUDIT_COL_CHAIN_ID	26
#define AUDIT_COL_CHAIN_SEQ	27
#define AUDIT_COL_PREV_HASH	28
#define AUDIT_COL_ROW_HASH	29
#define AUDIT_COL_TXID		30
#define AUDIT_COL_ERA		31
#define PL_NATTS_HOLDS		13
#define PL_NATTS_PAYMENTS	23

/* uuid_v7.c */
extern void PlUuidV7(pg_uuid_t *out);
extern Datum PlUuidV7Datum(void);
extern bool PlParseUuid(const char *text, pg_uuid_t *out);

/* currency.c */
extern void PlCheckCurrency(const char *code);

/* pii.c */
extern void PlRejectPanInText(const char *what, const char *text);
extern void PlRejectPanInJsonb(const char *what, Jsonb *jb);
extern char *PlMaskIp(const char *ip);
extern Jsonb *PlMaskJsonb(Jsonb *jb);
extern char *PlMaskText(char *text);
extern char *PlSha256Hex(const char *text);
extern void PlSha256(const char *data, size_t len, uint8 *out);

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

/* metrics.c */
extern void MetricsInit(void);
extern void PlCountReplays(int n);

/* events.c */
extern void EventsInit(void);
extern void PlNotifyEvents(void);
extern int32 PlCurrentEra(void);

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

/* idempotency.c */
typedef struct PlIdemResult
{
	bool		found;
	pg_uuid_t	result_id;
	char	   *status;
	char	   *reason_code;
} PlIdemResult;

extern void PlCheckKey(const char *key);
extern bool PlIdemBegin(const pg_uuid_t *scope, const char *operation, const char *key,
						const uint8 *request_hash, const pg_uuid_t *wanted_id,
						PlIdemResult *result);
extern bool PlIdemPeek(const pg_uuid_t *scope, const char *operation, const char *key,
					   const uint8 *request_hash, PlIdemResult *result);
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

/* helpers for argument checking */
extern void PlRequireArg(FunctionCallInfo fcinfo, int argno, const char *name);
extern void PlCheckAmount(int64 amount);
extern void PlRequireKey(const char *function);
extern char *PlKeyArg(FunctionCallInfo fcinfo, int argno, const char *function);
extern Jsonb *PlEmptyJsonb(void);
extern Datum PlTransferResult(FunctionCallInfo fcinfo, const pg_uuid_t *id,
							  const char *status, const char *reason_code,
							  bool replayed);

#endif							/* PAYLEDGER_H */
