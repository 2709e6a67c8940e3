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

#endif							/* METRICS_H */
