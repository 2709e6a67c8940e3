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

extern bool PlStartDatabaseWorker(const char *function, const char *name,
								  const char *type, int32 arg);
extern Oid	PlDatabaseWorkerBegin(void);

#endif							/* WORKERS_H */
