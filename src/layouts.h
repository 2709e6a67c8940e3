/*-------------------------------------------------------------------------
 *
 * layouts.h
 *	  Column counts and positions of the tables payledger writes directly.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/layouts.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef LAYOUTS_H
#define LAYOUTS_H

/* column counts the direct inserts are written for */
#define PL_NATTS_ACCOUNTS	14
#define PL_NATTS_TRANSFERS	12
#define PL_NATTS_ENTRIES	6
#define PL_NATTS_AUDIT		33
#define PL_NATTS_AUDIT_0_2	32	/* the log before 0.3.0 added db_role */
/* 0-based positions of the audit log's chain columns */
#define AUDIT_COL_CHAIN_ID	26
#define AUDIT_COL_CHAIN_SEQ	27
#define AUDIT_COL_PREV_HASH	28
#define AUDIT_COL_ROW_HASH	29
#define AUDIT_COL_TXID		30
#define AUDIT_COL_ERA		31
#define AUDIT_COL_DB_ROLE	32
#define PL_NATTS_HOLDS		13
#define PL_NATTS_PAYMENTS	23

#endif							/* LAYOUTS_H */
