/*-------------------------------------------------------------------------
 *
 * workers.c
 *	  Starting payledger's per-database background workers.
 *
 * The notify worker and the ledger writers are dynamic background workers
 * of one database, started on demand by a backend of that database and
 * never restarted by the postmaster: the next backend that needs one
 * starts it again.  Their database's oid travels in bgw_extra.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/workers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "workers.h"

/*
 * Under the lock of a worker's shared state (wanted, pid, registered_at):
 * true, and the worker marked wanted now, when the caller is to start it
 * (nobody wants it yet, or its registration timed out without it running).
 */
bool
PlWorkerClaimStart(bool *wanted, pid_t pid, TimestampTz *registered_at, TimestampTz now)
{
	if (*wanted &&
		!(pid == 0 && TimestampDifferenceExceeds(*registered_at, now, PL_WORKER_START_TIMEOUT_MS)))
		return false;
	*wanted = true;
	*registered_at = now;
	return true;
}

/*
 * Registers a worker of this database running payledger's function, named
 * "<name> for database <oid>", with main_arg arg.  False when no worker
 * slot is free.
 */
bool
PlStartDatabaseWorker(const char *function, const char *name, const char *type, int32 arg)
{
	BackgroundWorker worker;
	Oid			dboid = MyDatabaseId;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "payledger");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %u", name, dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(arg);
	memcpy(worker.bgw_extra, &dboid, sizeof(dboid));
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, NULL);
}

/*
 * The first steps of such a worker: reload on SIGHUP, end on SIGTERM,
 * signals unblocked.  Returns the database it is to connect to.
 */
Oid
PlDatabaseWorkerBegin(void)
{
	Oid			dboid;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(dboid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	return dboid;
}
