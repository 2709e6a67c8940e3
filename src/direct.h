/*-------------------------------------------------------------------------
 *
 * direct.h
 *	  Executor-free access to payledger's tables (direct.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/direct.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIRECT_H
#define DIRECT_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/lockoptions.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

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
	bool		limits_read;	/* the limits below were read (posting.c) */
	bool		has_max_per_transfer;
	bool		has_max_daily_debit;
	int64		max_per_transfer;
	int64		max_daily_debit;
	int64		debited_today;	/* posted and pending debits of the UTC day */
	bool		dirty;			/* changed in memory, not yet written */
	bool		has_sub_balances;	/* committed sub-balances count toward its floor */
	bool		has_owner;		/* owner_id is set: the merchant it belongs to */
	pg_uuid_t	owner_id;
} PlAccountRow;

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
extern HeapTuple PlIdemFetchLatest(Relation rel, const pg_uuid_t *scope, const char *key,
								   TupleDesc *desc);

extern Relation PlOpenTable(const char *relname);
extern Relation PlTryOpenTable(const char *relname);
extern void PlVerifyAuditMonth(Relation rel);
extern Relation PlOpenAccounts(void);
extern Relation PlOpenEntries(void);
extern void PlDirectInsert(Relation rel, Datum *values, bool *nulls);
extern HeapTuple PlFetchRow(Relation rel, const pg_uuid_t *id);
extern HeapTuple PlLockRow(Relation rel, const pg_uuid_t *id, LockTupleMode mode);
extern void PlDirectUpdate(Relation rel, HeapTuple oldtup, HeapTuple newtup);

/* a count to add to a row of metric_counters (PlAddCounters) */
typedef struct PlCounterDelta
{
	const char *metric;
	Datum		labels;			/* jsonb */
	int64		delta;
	ItemPointerData where;		/* where the row was last seen, or invalid; then its new version */
} PlCounterDelta;

extern void PlAddCounters(Relation rel, int32 backend, PlCounterDelta *counts, int n);

#endif							/* DIRECT_H */
