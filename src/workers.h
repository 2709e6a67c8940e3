/*-------------------------------------------------------------------------
 *
 * workers.h
 *	  Starting payledger's per-database background workers (workers.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/workers.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WORKERS_H
#define WORKERS_H

#include "datatype/timestamp.h"

/* a worker with nothing to do for this long exits */
#define PL_WORKER_IDLE_EXIT_MS		2000
/* a registered worker that has not started after this long is registered again */
#define PL_WORKER_START_TIMEOUT_MS	10000

extern bool PlWorkerClaimStart(bool *wanted, pid_t pid, TimestampTz *registered_at,
							   TimestampTz now);
extern bool PlStartDatabaseWorker(const char *function, const char *name,
								  const char *type, int32 arg);
extern Oid	PlDatabaseWorkerBegin(void);

#endif							/* WORKERS_H */
