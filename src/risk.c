/*-------------------------------------------------------------------------
 *
 * risk.c
 *	  The risk hook: payledger.risk_function, called by authorize_payment.
 *
 * The hook is a function (payment payledger.payments) RETURNS integer named
 * by the setting, resolved like regproc under the caller's search_path.  A
 * score at or above payledger.risk_threshold is a verdict: the payment
 * fails FRAUD_SUSPECTED.  So is a broken hook (fail closed): an error of its
 * own logic, a NULL, a score outside 0-100, or an attempt to write.
 *
 * Some errors are not the hook's verdict but the state of the server or of
 * this transaction: a cancel or statement_timeout (57014, and the rest of
 * class 57), a lock_timeout (55P03), a serialization failure or deadlock
 * (class 40), running out of memory or disk (class 53), a system error
 * (class 58).  Those propagate unchanged: the authorization's transaction
 * aborts with nothing written and nothing stored under its key, so a retry
 * with the same key asks the hook again.
 *
 * The hook runs in a subtransaction of its own:
 *
 *	- as the caller, in a security-restricted operation, with payledger's
 *	  internal-write flag down (PlUnprivilegedBegin), so it borrows none of
 *	  the ledger owner's rights;
 *	- under its own search_path: payledger's pinned pg_catalog-only path is
 *	  set aside while it runs, so the function's SET search_path applies,
 *	  else the caller's;
 *	- read-only: the transaction is marked read-only while it runs (which
 *	  SQL writes and nextval() check, and which a subtransaction cannot
 *	  undo), and a hook whose subtransaction acquired a transaction id wrote
 *	  something by another way (a temporary table, a C function such as
 *	  payledger.transfer that writes below the executor): that fails closed
 *	  too, and the subtransaction's rollback undoes the write.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/risk.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "payledger.h"
#include "spi_plans.h"
#include "metrics.h"
#include "risk.h"

/*
 * The hook as last resolved: the setting's value, the search_path it was
 * resolved under, and the call it names.  Any change to pg_proc or
 * pg_namespace forgets it, so it is resolved again on the next call.
 */
static char *risk_setting = NULL;
static char *risk_path = NULL;
static char *risk_call = NULL;
static bool risk_callbacks_registered = false;

static void
forget_risk_function(Datum arg, int cacheid, uint32 hashvalue)
{
	if (risk_setting != NULL)
		pfree(risk_setting);
	if (risk_path != NULL)
		pfree(risk_path);
	if (risk_call != NULL)
		pfree(risk_call);
	risk_setting = NULL;
	risk_path = NULL;
	risk_call = NULL;
}

/* "SELECT schema.function($1)::integer" for the setting */
static char *
risk_function_call(void)
{
	Oid			fn;
	char	   *sql;

	if (risk_setting != NULL && strcmp(risk_setting, pl_risk_function) == 0 &&
		strcmp(risk_path, namespace_search_path) == 0)
		return pstrdup(risk_call);
	if (!risk_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_risk_function, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, forget_risk_function, (Datum) 0);
		risk_callbacks_registered = true;
	}
	forget_risk_function((Datum) 0, 0, 0);
	fn = DatumGetObjectId(DirectFunctionCall1(regprocin, CStringGetDatum(pl_risk_function)));
	sql = psprintf("SELECT %s.%s($1)::integer",
				   quote_identifier(get_namespace_name(get_func_namespace(fn))),
				   quote_identifier(get_func_name(fn)));
	risk_call = MemoryContextStrdup(TopMemoryContext, sql);
	risk_setting = MemoryContextStrdup(TopMemoryContext, pl_risk_function);
	risk_path = MemoryContextStrdup(TopMemoryContext, namespace_search_path);
	return sql;
}

/* Errors that are not the hook's verdict: they propagate. */
static bool
risk_error_propagates(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40001, 40P01 */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53200 out of memory */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57014 cancel, statement_timeout */
		case ERRCODE_SYSTEM_ERROR:
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;	/* lock_timeout */
	}
}

/* The score of the payment; errors fail closed in PlRiskSaysNo. */
static bool
risk_score(HeapTuple payment, TupleDesc desc, int *score)
{
	PlPrivState caller;
	char	   *sql = risk_function_call();
	bool		save_read_only = XactReadOnly;
	bool		isnull;
	Oid			argtypes[1];
	Datum		values[1];
	int			rc;

	argtypes[0] = desc->tdtypeid;
	values[0] = heap_copy_tuple_as_datum(payment, desc);
	PlUnprivilegedBegin(&caller);
	XactReadOnly = true;
	rc = SPI_execute_with_args(sql, 1, argtypes, values, NULL, true, 1);
	XactReadOnly = save_read_only;
	PlUnprivilegedEnd(&caller);
	if (TransactionIdIsValid(GetCurrentTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("risk function %s tried to write", pl_risk_function),
				 errdetail("A risk function may only read.")));
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "risk function returned no score");
	*score = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										 &isnull));
	return !isnull;
}

/*
 * True when the payment (its locked row, of the table whose descriptor is
 * desc) scores at or above the threshold, or when the hook fails closed.
 * Called inside PlSpiBegin.
 */
bool
PlRiskSaysNo(HeapTuple payment, TupleDesc desc)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		save_read_only = XactReadOnly;
	volatile bool fraud = false;
	ErrorData  *volatile edata = NULL;

	if (pl_risk_function == NULL || pl_risk_function[0] == '\0')
		return false;

	PlSafeSearchPathSuspend();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		int			score;

		if (!risk_score(payment, desc, &score))
			elog(ERROR, "risk function returned NULL");
		/* a score outside 0-100 is a broken hook: fail closed, as on an error */
		if (score < 0 || score > 100)
			elog(ERROR, "risk function returned %d, not a score from 0 to 100", score);
		fraud = score >= pl_risk_threshold;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		XactReadOnly = save_read_only;
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	PlSafeSearchPathResume();

	if (edata != NULL)
	{
		if (risk_error_propagates(edata->sqlerrcode))
			ReThrowError(edata);
		PlCountError(edata->sqlerrcode);
		ereport(WARNING,
				(errmsg("risk function failed, payment declined: %s", edata->message)));
		FreeErrorData(edata);
		fraud = true;
	}
	return fraud;
}
