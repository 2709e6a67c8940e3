/*-------------------------------------------------------------------------
 *
 * notify_worker.h
 *	  The payledger notify worker: coalesced NOTIFY payledger_events.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/notify_worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYLEDGER_NOTIFY_WORKER_H
#define PAYLEDGER_NOTIFY_WORKER_H

#include "postgres.h"

/* payledger.notify_delay, in milliseconds (settings.c) */
extern int	pl_notify_delay;

extern void NotifyWorkerInit(void);
extern bool PlNotifyWorkerSignal(void);

#endif							/* PAYLEDGER_NOTIFY_WORKER_H */
