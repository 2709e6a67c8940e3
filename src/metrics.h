/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Counters of section 12 kept in shared memory (metrics.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/metrics.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef METRICS_H
#define METRICS_H

extern void MetricsInit(void);
extern void PlCountReplays(int n);
extern void PlCountTransfer(const char *reason);
extern void PlCountHold(const char *status, const char *currency);
extern void PlCountAudit(const char *event_type, bool success);
extern void PlCountError(int sqlstate);

#endif							/* METRICS_H */
