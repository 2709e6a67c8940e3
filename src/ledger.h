/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  Moving money: lock order, postings, sub-balances, transfers and holds.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/ledger.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_H
#define LEDGER_H

#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "direct.h"

/* posting.c: lock order, declines, entries, transfer rows */
typedef struct PlLeg
{
	pg_uuid_t	from_id;
	pg_uuid_t	to_id;
	int64		amount;
} PlLeg;

typedef struct PlLockedSet
{
	PlAccountRow *rows;			/* sorted by id */
	int			n;
} PlLockedSet;

extern PlLockedSet *PlLockAccounts(Relation rel, const pg_uuid_t *ids, int n);
extern PlLockedSet *PlLockAccountsFor(Relation rel, const pg_uuid_t *ids, int n,
									  const bool *credit_only);
extern PlAccountRow *PlFindAccount(PlLockedSet *set, const pg_uuid_t *id);
extern PlAccountRow *PlLockedAccount(PlLockedSet *set, const pg_uuid_t *id);
extern int	PlAccountIdCmp(const void *a, const void *b);
extern void PlCheckAccountCurrency(const PlAccountRow *row, const char *currency);
extern const char *PlDeclineReason(PlAccountRow *src, PlAccountRow *dst, int64 amount);
extern const char *PlStatusDecline(const PlLockedSet *set);
extern void PlWriteEntry(Relation entries, PlAccountRow *row, const pg_uuid_t *transfer_id,
						 int64 delta, TimestampTz now);
extern void PlFlushAccounts(Relation rel, PlLockedSet *set, TimestampTz now);
extern void PlStoreTransfer(const pg_uuid_t *id, const char *kind, const char *reason,
							const char *currency, int64 amount, const pg_uuid_t *from_id,
							const pg_uuid_t *to_id, const char *key,
							const uint8 *request_hash, Jsonb *metadata, TimestampTz now);
extern void PlStoreLegs(const pg_uuid_t *transfer_id, const PlLeg *legs, int nlegs);
extern int64 PlOverdueDebits(const pg_uuid_t *account_id);
extern int64 PlOverdueCredits(const pg_uuid_t *account_id);

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
extern int64 PlSubBalanceTotal(const pg_uuid_t *id, int64 *versions, int64 *pending_credits);

/* transfer.c */
extern void PlTransferHash(const pg_uuid_t *from_id, const pg_uuid_t *to_id, int64 amount,
						   const char *currency, Jsonb *metadata, uint8 *out);
/* a transfer request in plain C (transfer(); submit_transfer's checks) */
typedef struct PlTransferArgs
{
	pg_uuid_t	from_id;
	pg_uuid_t	to_id;
	int64		amount;
	const char *currency;
	const char *key;			/* NULL: none */
	Jsonb	   *metadata;		/* as sent; NULL: {} */
	const pg_uuid_t *transfer_id;	/* caller-supplied, or NULL */
	bool		always_keyed;	/* PY008 without a key, whatever the setting */
} PlTransferArgs;

typedef struct PlTransferOutcome
{
	pg_uuid_t	transfer_id;
	const char *status;			/* posted or rejected (or a replayed status) */
	const char *reason_code;	/* NULL unless rejected */
	bool		replayed;
} PlTransferOutcome;

extern void PlTransferArgsFrom(FunctionCallInfo fcinfo, PlTransferArgs *args);
extern void PlTransferCheckArgs(PlTransferArgs *args);
extern void PlTransferPrepare(PlTransferArgs *args, uint8 *hash);
extern void PlTransferRequest(const PlTransferArgs *args, PlTransferOutcome *out);
extern const char *PlPostLocked(Relation entries, PlAccountRow *src, PlAccountRow *dst,
								const pg_uuid_t *id, const char *kind, int64 amount,
								const char *currency, const char *key,
								const uint8 *request_hash, Jsonb *metadata,
								const pg_uuid_t *correlation_id, TimestampTz now);
extern const char *PlPostTransfer(const pg_uuid_t *id, const char *kind,
								  const pg_uuid_t *from_id, const pg_uuid_t *to_id,
								  int64 amount, const char *currency, const char *key,
								  const uint8 *request_hash, Jsonb *metadata,
								  const pg_uuid_t *correlation_id, TimestampTz *at);

/* holds.c */
extern const char *PlHoldCreate(const pg_uuid_t *id, const pg_uuid_t *from_id,
								const pg_uuid_t *to_id, int64 amount, const char *currency,
								TimestampTz expires_at, const char *key,
								const uint8 *request_hash, Jsonb *metadata,
								const pg_uuid_t *correlation_id);
/* PlHoldSettle flags */
#define PL_SETTLE_TARGET_DEBITED	0x01	/* the caller debits the target next */
#define PL_SETTLE_OWN_ROWS			0x02	/* every account's own row is locked */
#define PL_SETTLE_SWEEP				0x04	/* an expiry sweep: expiring is no decline */
extern const char *PlHoldSettle(const pg_uuid_t *hold_id, bool post, bool has_amount,
								int64 amount, const char *key, const uint8 *request_hash,
								TimestampTz now, const pg_uuid_t *more_accounts, int nmore,
								int flags);

#endif							/* LEDGER_H */
