/*-------------------------------------------------------------------------
 *
 * accounts.c
 *	  Accounts: opening, freezing, closing, balances and statements.
 *
 * An account's status moves active <-> frozen -> closed (closed is final);
 * every change bumps the account's version and writes an audit row.  Asking
 * for the status an account already has is a no-op, so operators can retry.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/accounts.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "spi_plans.h"
#include "audit.h"
#include "pipeline.h"
#include "ledger.h"
#include "access.h"

typedef struct PlAccount
{
	char	   *currency;
	char	   *kind;
	bool		has_floor;
	int64		min_balance;
	char	   *status;
	int64		balance;
	int64		pending_debits;
	int64		pending_credits;
	int64		version;
	Jsonb	   *metadata;
} PlAccount;

static void
raise_not_found(const pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
			 errmsg("account %s does not exist",
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))))));
}

/* columns of PLAN_ACCOUNT_GET and PLAN_ACCOUNT_LOCK */
enum
{
	GET_CURRENCY = 1, GET_KIND, GET_MIN_BALANCE, GET_STATUS, GET_BALANCE,
	GET_PENDING_DEBITS, GET_PENDING_CREDITS, GET_VERSION, GET_METADATA
};

/* Reads one account (PLAN_ACCOUNT_GET or _LOCK) into *acc; false if none. */
static bool
fetch_account(PlPlanId plan, pg_uuid_t *id, PlAccount *acc)
{
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	if (PlExec(plan, values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	acc->currency = SPI_getvalue(tup, desc, GET_CURRENCY);
	acc->kind = SPI_getvalue(tup, desc, GET_KIND);
	acc->min_balance = DatumGetInt64(SPI_getbinval(tup, desc, GET_MIN_BALANCE, &isnull));
	acc->has_floor = !isnull;
	acc->status = SPI_getvalue(tup, desc, GET_STATUS);
	acc->balance = DatumGetInt64(SPI_getbinval(tup, desc, GET_BALANCE, &isnull));
	acc->pending_debits = DatumGetInt64(SPI_getbinval(tup, desc, GET_PENDING_DEBITS, &isnull));
	acc->pending_credits = DatumGetInt64(SPI_getbinval(tup, desc, GET_PENDING_CREDITS, &isnull));
	acc->version = DatumGetInt64(SPI_getbinval(tup, desc, GET_VERSION, &isnull));
	acc->metadata = DatumGetJsonbP(SPI_getbinval(tup, desc, GET_METADATA, &isnull));
	/* another merchant's account is unknown to a scoped role */
	PlCheckAccountVisible(id);
	return true;
}

static bool
jsonb_equal(Jsonb *a, Jsonb *b)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(a),
											JsonbPGetDatum(b)));
}

/* what create_account() is asked to open */
typedef struct NewAccount
{
	pg_uuid_t  *id;
	char	   *currency;
	char	   *kind;
	bool		has_floor;
	int64		min_balance;
	Jsonb	   *metadata;
	pg_uuid_t  *owner;			/* NULL: none */
	TimestampTz now;
} NewAccount;

/* 22023 for a bad kind or floor; the currency, PAN and metadata checks */
static void
check_new_account(NewAccount *na)
{
	PlCheckCurrency(na->currency);
	if (na->kind[0] == '\0' || strlen(na->kind) > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("account kind must be 1 to 64 bytes long")));
	if (na->has_floor && na->min_balance > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_balance must not be above zero"),
				 errdetail("A new account starts at zero, so a floor of " INT64_FORMAT " would leave it below its floor.",
						   na->min_balance),
				 errhint("Use 0 for no overdraft, a negative floor for a credit line, or NULL for no floor.")));
	PlRejectPanInText("account kind", na->kind);
	PlCheckMetadata("account metadata", na->metadata);
	na->metadata = PlMaskJsonb(na->metadata);
}

/* A role scoped to merchants creates accounts only for them (42501). */
static void
check_owner_scope(const NewAccount *na)
{
	if (PlCallerScoped() && (na->owner == NULL || !PlMerchantVisible(na->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may create accounts only for its merchants",
						GetUserNameFromId(PlCallerUserId(), false)),
				 errhint("Pass owner_id: one of the merchants the role is scoped to.")));
}

/*
 * parameters of PLAN_ACCOUNT_INSERT_OWNED, 0-based; PLAN_ACCOUNT_INSERT
 * takes all but the owner
 */
enum
{
	INSERT_ID, INSERT_CURRENCY, INSERT_KIND, INSERT_MIN_BALANCE, INSERT_METADATA,
	INSERT_AT, INSERT_OWNER, INSERT_NARGS
};

/*
 * Inserts the account, with its owner when owned (0.3.0's table); false
 * when an account with its id exists already.
 */
static bool
insert_account(const NewAccount *na, bool owned)
{
	Datum		values[INSERT_NARGS];
	char		nulls[INSERT_NARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[INSERT_ID] = UUIDPGetDatum(na->id);
	values[INSERT_CURRENCY] = CStringGetTextDatum(na->currency);
	values[INSERT_KIND] = CStringGetTextDatum(na->kind);
	values[INSERT_MIN_BALANCE] = Int64GetDatum(na->min_balance);
	if (!na->has_floor)
		nulls[INSERT_MIN_BALANCE] = 'n';
	values[INSERT_METADATA] = JsonbPGetDatum(na->metadata);
	values[INSERT_AT] = TimestampTzGetDatum(na->now);
	if (na->owner != NULL)
		values[INSERT_OWNER] = UUIDPGetDatum(na->owner);
	else
		nulls[INSERT_OWNER] = 'n';
	if (PlExec(owned ? PLAN_ACCOUNT_INSERT_OWNED : PLAN_ACCOUNT_INSERT,
			   values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "account insert failed");
	return SPI_processed > 0;
}

/* A caller-supplied id given again must come with the same attributes (PY002). */
static void
check_same_account(const NewAccount *na)
{
	PlAccount	acc;

	if (!fetch_account(PLAN_ACCOUNT_GET, na->id, &acc))
		elog(ERROR, "account vanished after a conflicting insert");
	if (strcmp(acc.currency, na->currency) != 0 || strcmp(acc.kind, na->kind) != 0 ||
		acc.has_floor != na->has_floor || (na->has_floor && acc.min_balance != na->min_balance) ||
		!jsonb_equal(acc.metadata, na->metadata))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_IDEMPOTENCY_KEY_REUSED),
				 errmsg("account %s already exists with other attributes",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(na->id)))),
				 errhint("A caller-supplied account id must be repeated with the same currency, kind, floor and metadata.")));
}

static void
audit_account_created(const NewAccount *na)
{
	PlAuditEvent ev;

	PlAuditInit(&ev, "ACCOUNT_CREATED", na->now);
	ev.new_state = "active";
	ev.account_id = na->id;
	ev.merchant_id = na->owner;
	ev.correlation_id = na->id;
	ev.currency = na->currency;
	ev.metadata = na->metadata;
	PlAuditWrite(&ev);
}

/*
 * payledger.create_account(currency text, kind text DEFAULT 'generic',
 *		min_balance bigint DEFAULT 0, metadata jsonb DEFAULT '{}',
 *		account_id uuid DEFAULT NULL, owner_id uuid DEFAULT NULL) RETURNS uuid
 *
 * owner_id is the merchant (or customer) the account belongs to; a role
 * scoped to merchants may create accounts only for them (42501).
 * min_balance NULL means no floor (system accounts); a negative floor is a
 * credit line; a floor above zero is refused since a new account holds
 * zero.  A caller-supplied id makes the call idempotent: the same id with
 * the same attributes returns it again, with others raises PY002.
 */
PG_FUNCTION_INFO_V1(create_account);
Datum
create_account(PG_FUNCTION_ARGS)
{
	NewAccount	na;
	PlPrivState priv;
	/* 0.3.0's signature: the table has owner_id (see the upgrade script) */
	bool		owned = PG_NARGS() > 5;

	PlRequireArg(fcinfo, 0, "currency");
	PlRequireArg(fcinfo, 1, "kind");
	na.currency = text_to_cstring(PG_GETARG_TEXT_PP(0));
	na.kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	na.has_floor = !PG_ARGISNULL(2);
	na.min_balance = na.has_floor ? PG_GETARG_INT64(2) : 0;
	na.metadata = PG_ARGISNULL(3) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(3);
	na.owner = (owned && !PG_ARGISNULL(5)) ? PG_GETARG_UUID_P(5) : NULL;
	check_new_account(&na);
	na.id = palloc(sizeof(pg_uuid_t));
	if (PG_ARGISNULL(4))
		PlUuidV7(na.id);
	else
		*na.id = *PG_GETARG_UUID_P(4);
	na.now = GetCurrentTimestamp();

	PlSpiBegin(&priv);
	if (owned)
		check_owner_scope(&na);
	if (insert_account(&na, owned))
		audit_account_created(&na);
	else
		check_same_account(&na);
	PlSpiEnd(&priv);
	PG_RETURN_UUID_P(na.id);
}

/* a status change of an account */
typedef struct StatusChange
{
	pg_uuid_t  *id;
	const char *new_status;
	const char *event_type;
	const char *reason;
	PlAccount	acc;
	bool		has_sub_balances;
} StatusChange;

/* columns of PLAN_SUB_BALANCES_LOCK */
enum
{
	SUB_BALANCE = 1, SUB_PENDING_DEBITS, SUB_PENDING_CREDITS
};

/* *sum += column col of the current sub-balance row, 22003 on overflow */
static void
add_sub_balance_column(StatusChange *sc, uint64 row, int col, int64 *sum)
{
	bool		isnull;
	int64		v = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
												SPI_tuptable->tupdesc, col, &isnull));

	if (pg_add_s64_overflow(*sum, v, sum))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("balance of account %s would overflow bigint",
						PlUuidText(sc->id))));
}

/*
 * Closing an account with sub-balances: their rows, locked after the
 * account's own like every other lock of them, count toward its balance.
 */
static void
add_sub_balance_totals(StatusChange *sc)
{
	Datum		arg[1];

	arg[0] = UUIDPGetDatum(sc->id);
	if (PlExec(PLAN_SUB_BALANCES_LOCK, arg, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "sub-balance lookup failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		add_sub_balance_column(sc, i, SUB_BALANCE, &sc->acc.balance);
		add_sub_balance_column(sc, i, SUB_PENDING_DEBITS, &sc->acc.pending_debits);
		add_sub_balance_column(sc, i, SUB_PENDING_CREDITS, &sc->acc.pending_credits);
	}
}

/* PY001 for a closed account, or for closing one that holds money */
static void
check_status_change(const StatusChange *sc)
{
	const PlAccount *acc = &sc->acc;

	if (strcmp(acc->status, "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
				 errmsg("account is closed"),
				 errdetail("A closed account cannot become %s.", sc->new_status)));
	if (strcmp(sc->new_status, "closed") == 0 &&
		(acc->balance != 0 || acc->pending_debits != 0 || acc->pending_credits != 0))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
				 errmsg("account cannot be closed while it holds money"),
				 errdetail("Balance is " INT64_FORMAT ", pending debits " INT64_FORMAT ", pending credits " INT64_FORMAT ".",
						   acc->balance, acc->pending_debits, acc->pending_credits),
				 errhint("Move the balance out and settle or void its holds first.")));
}

/* parameters of PLAN_ACCOUNT_SET_STATUS, 0-based */
enum
{
	SET_STATUS_ID, SET_STATUS_STATUS, SET_STATUS_REASON, SET_STATUS_AT, SET_STATUS_NARGS
};

/* parameters of PLAN_SUB_BALANCES_CLOSE, 0-based */
enum
{
	SUB_CLOSE_ACCOUNT, SUB_CLOSE_AT, SUB_CLOSE_NARGS
};

/* The new status on the account's row (and on its sub-balances' when closed). */
static void
write_status(const StatusChange *sc, TimestampTz now)
{
	Datum		values[SET_STATUS_NARGS];
	char		nulls[SET_STATUS_NARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[SET_STATUS_ID] = UUIDPGetDatum(sc->id);
	values[SET_STATUS_STATUS] = CStringGetTextDatum(sc->new_status);
	if (strcmp(sc->new_status, "frozen") == 0 && sc->reason)
		values[SET_STATUS_REASON] = CStringGetTextDatum(sc->reason);
	else
		nulls[SET_STATUS_REASON] = 'n';
	values[SET_STATUS_AT] = TimestampTzGetDatum(now);
	if (PlExec(PLAN_ACCOUNT_SET_STATUS, values, nulls, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "account status update failed");
	if (sc->has_sub_balances && strcmp(sc->new_status, "closed") == 0)
	{
		Datum		args[SUB_CLOSE_NARGS];

		args[SUB_CLOSE_ACCOUNT] = UUIDPGetDatum(sc->id);
		args[SUB_CLOSE_AT] = TimestampTzGetDatum(now);
		if (PlExec(PLAN_SUB_BALANCES_CLOSE, args, NULL, 0) != SPI_OK_UPDATE)
			elog(ERROR, "sub-balance status update failed");
	}
}

/* The audit row of a status change; a freeze's reason is its metadata. */
static void
audit_status_change(const StatusChange *sc, TimestampTz now)
{
	PlAuditEvent ev;

	PlAuditInit(&ev, sc->event_type, now);
	ev.previous_state = sc->acc.status;
	ev.new_state = sc->new_status;
	ev.account_id = sc->id;
	ev.correlation_id = sc->id;
	ev.currency = sc->acc.currency;
	if (sc->reason)
		ev.metadata = PlJsonbPair("reason", sc->reason);
	PlAuditWrite(&ev);
}

/*
 * The work of a status change, a request without a key: the account locked
 * (PY005), the checks, the new status and its audit row; nothing when the
 * account already has that status.
 */
static void
change_status_work(PlRequest *req)
{
	StatusChange *sc = req->arg;
	const PlSubBalances *sb;
	TimestampTz now;

	PlRejectSubBalance(sc->id);
	if (!fetch_account(PLAN_ACCOUNT_LOCK, sc->id, &sc->acc))
		raise_not_found(sc->id);
	sb = PlSubBalancesOf(sc->id);
	sc->has_sub_balances = (sb != NULL && sb->nall > 0);
	if (sc->has_sub_balances && strcmp(sc->new_status, "closed") == 0)
		add_sub_balance_totals(sc);
	if (strcmp(sc->acc.status, sc->new_status) == 0)
		return;
	check_status_change(sc);
	now = GetCurrentTimestamp();
	write_status(sc, now);
	audit_status_change(sc, now);
}

/*
 * Moves an account to new_status.  Returns quietly when it already has it;
 * PY001 when the move is not allowed.
 */
static void
change_status(const char *function, pg_uuid_t *id, const char *new_status,
			  const char *event_type, const char *reason)
{
	StatusChange sc;
	PlRequest	req;

	memset(&sc, 0, sizeof(sc));
	sc.id = id;
	sc.new_status = new_status;
	sc.event_type = event_type;
	sc.reason = reason;
	PlRequestInit(&req, function, NULL, NULL, change_status_work, &sc);
	PlRunRequest(&req);
}

/*
 * payledger.freeze_account(account_id uuid, reason text) RETURNS void
 *
 * A frozen account neither sends nor receives: transfers touching it are
 * declined ACCOUNT_FROZEN.
 */
PG_FUNCTION_INFO_V1(freeze_account);
Datum
freeze_account(PG_FUNCTION_ARGS)
{
	char	   *reason;

	PlRequireArg(fcinfo, 0, "account_id");
	PlRequireArg(fcinfo, 1, "reason");
	reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PlRejectPanInText("freeze reason", reason);
	reason = PlMaskText(reason);
	change_status("freeze_account", PG_GETARG_UUID_P(0), "frozen", "ACCOUNT_FROZEN", reason);
	PG_RETURN_VOID();
}

/* payledger.unfreeze_account(account_id uuid) RETURNS void */
PG_FUNCTION_INFO_V1(unfreeze_account);
Datum
unfreeze_account(PG_FUNCTION_ARGS)
{
	PlRequireArg(fcinfo, 0, "account_id");
	change_status("unfreeze_account", PG_GETARG_UUID_P(0), "active", "ACCOUNT_UNFROZEN", NULL);
	PG_RETURN_VOID();
}

/*
 * payledger.close_account(account_id uuid) RETURNS void
 *
 * Only an account with a zero balance and nothing pending can close;
 * otherwise PY001.  Closing is final.
 */
PG_FUNCTION_INFO_V1(close_account);
Datum
close_account(PG_FUNCTION_ARGS)
{
	PlRequireArg(fcinfo, 0, "account_id");
	change_status("close_account", PG_GETARG_UUID_P(0), "closed", "ACCOUNT_CLOSED", NULL);
	PG_RETURN_VOID();
}

/* columns of get_balance()'s result, 0-based */
enum
{
	BALANCE_BALANCE, BALANCE_PENDING_DEBITS, BALANCE_PENDING_CREDITS, BALANCE_AVAILABLE,
	BALANCE_VERSION, BALANCE_NCOLS
};

/*
 * payledger.get_balance(account_id uuid) RETURNS TABLE(balance bigint,
 *		pending_debits bigint, pending_credits bigint, available bigint,
 *		version bigint)
 *
 * Always the committed state as of this statement: balances are never
 * cached or computed by a background job.
 */
PG_FUNCTION_INFO_V1(get_balance);
Datum
get_balance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PlPrivState priv;
	PlAccount	acc;
	Datum		values[BALANCE_NCOLS];
	bool		nulls[BALANCE_NCOLS];

	PlRequireArg(fcinfo, 0, "account_id");
	InitMaterializedSRF(fcinfo, 0);
	memset(nulls, false, sizeof(nulls));

	PlSpiBeginRead(&priv);
	if (!fetch_account(PLAN_ACCOUNT_GET, PG_GETARG_UUID_P(0), &acc))
		raise_not_found(PG_GETARG_UUID_P(0));
	{
		const PlSubBalances *sb = PlSubBalancesOf(PG_GETARG_UUID_P(0));

		if (sb != NULL && sb->nall > 0)
		{
			int64		changes;
			int64		pending;
			int64		total = PlSubBalanceTotal(PG_GETARG_UUID_P(0), &changes, &pending);

			if (pg_add_s64_overflow(acc.balance, total, &acc.balance) ||
				pg_add_s64_overflow(acc.pending_credits, pending, &acc.pending_credits))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("balance of account %s would overflow bigint",
								PlUuidText(PG_GETARG_UUID_P(0)))));
			acc.version += changes;
		}
	}
	/* holds past their expiry no longer count, swept or not */
	if (acc.pending_debits > 0)
		acc.pending_debits -= PlOverdueDebits(PG_GETARG_UUID_P(0));
	if (acc.pending_credits > 0)
		acc.pending_credits -= PlOverdueCredits(PG_GETARG_UUID_P(0));
	PlSpiEnd(&priv);

	values[BALANCE_BALANCE] = Int64GetDatum(acc.balance);
	values[BALANCE_PENDING_DEBITS] = Int64GetDatum(acc.pending_debits);
	values[BALANCE_PENDING_CREDITS] = Int64GetDatum(acc.pending_credits);
	values[BALANCE_AVAILABLE] = Int64GetDatum(acc.balance - acc.pending_debits);
	values[BALANCE_VERSION] = Int64GetDatum(acc.version);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* parameters of PLAN_BALANCE_AT and PLAN_BALANCE_AT_SUB, 0-based */
enum
{
	BALANCE_AT_ACCOUNT, BALANCE_AT_AT, BALANCE_AT_NARGS
};

/*
 * payledger.balance_at(account_id uuid, at timestamptz) RETURNS bigint
 *
 * The balance after the last posting at or before "at"; zero before the
 * first.  Pending holds do not count: this is the posted balance.
 */
PG_FUNCTION_INFO_V1(balance_at);
Datum
balance_at(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	PlAccount	acc;
	const PlSubBalances *sb;
	Datum		values[BALANCE_AT_NARGS];
	int64		result = 0;

	PlRequireArg(fcinfo, 0, "account_id");
	PlRequireArg(fcinfo, 1, "at");

	PlSpiBeginRead(&priv);
	if (!fetch_account(PLAN_ACCOUNT_GET, PG_GETARG_UUID_P(0), &acc))
		raise_not_found(PG_GETARG_UUID_P(0));
	values[BALANCE_AT_ACCOUNT] = PG_GETARG_DATUM(0);
	values[BALANCE_AT_AT] = PG_GETARG_DATUM(1);
	sb = PlSubBalancesOf(PG_GETARG_UUID_P(0));
	if (PlExec(sb != NULL && sb->nall > 0 ? PLAN_BALANCE_AT_SUB : PLAN_BALANCE_AT,
			   values, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "balance_at lookup failed");
	if (SPI_processed == 1)
	{
		bool		isnull;

		result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	PlSpiEnd(&priv);
	PG_RETURN_INT64(result);
}

/* parameters of PLAN_ACCOUNT_ENTRIES and PLAN_ACCOUNT_ENTRIES_SUB, 0-based */
enum
{
	ENTRIES_ACCOUNT, ENTRIES_SINCE, ENTRIES_UNTIL, ENTRIES_NARGS
};

/*
 * The plans' columns are account_entries()'s result columns: transfer_id,
 * amount, balance_after, posted_at, account_version.
 */
#define ENTRIES_NCOLS 5

/*
 * payledger.account_entries(account_id uuid, since timestamptz DEFAULT
 *		'-infinity', until timestamptz DEFAULT 'infinity')
 *		RETURNS TABLE(transfer_id uuid, amount bigint, balance_after bigint,
 *		posted_at timestamptz, account_version bigint)
 *
 * A statement: the account's postings in order, credits positive.  A NULL
 * bound means unbounded.  For an account with sub-balances the postings of
 * all its rows come in posting-time order, balance_after is the running
 * total of them all and account_version numbers them (1, 2, ...).
 */
PG_FUNCTION_INFO_V1(account_entries);
Datum
account_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PlPrivState priv;
	PlAccount	acc;
	const PlSubBalances *sb;
	Datum		args[ENTRIES_NARGS];

	PlRequireArg(fcinfo, 0, "account_id");
	InitMaterializedSRF(fcinfo, 0);

	args[ENTRIES_ACCOUNT] = PG_GETARG_DATUM(0);
	if (PG_ARGISNULL(1))
	{
		TimestampTz t;

		TIMESTAMP_NOBEGIN(t);
		args[ENTRIES_SINCE] = TimestampTzGetDatum(t);
	}
	else
		args[ENTRIES_SINCE] = PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(2))
	{
		TimestampTz t;

		TIMESTAMP_NOEND(t);
		args[ENTRIES_UNTIL] = TimestampTzGetDatum(t);
	}
	else
		args[ENTRIES_UNTIL] = PG_GETARG_DATUM(2);

	PlSpiBeginRead(&priv);
	if (!fetch_account(PLAN_ACCOUNT_GET, PG_GETARG_UUID_P(0), &acc))
		raise_not_found(PG_GETARG_UUID_P(0));
	sb = PlSubBalancesOf(PG_GETARG_UUID_P(0));
	if (PlExec(sb != NULL && sb->nall > 0 ? PLAN_ACCOUNT_ENTRIES_SUB : PLAN_ACCOUNT_ENTRIES,
			   args, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "account entries lookup failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[ENTRIES_NCOLS];
		bool		nulls[ENTRIES_NCOLS];

		Assert(SPI_tuptable->tupdesc->natts == ENTRIES_NCOLS);
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		/* the tuplestore copies the values, so SPI memory may go away after */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PlSpiEnd(&priv);
	return (Datum) 0;
}

/* parameters of PLAN_LIMITS_SET, 0-based: the account, then its limits */
enum
{
	LIMITS_ACCOUNT, LIMITS_MAX_PER_TRANSFER, LIMITS_MAX_DAILY_DEBIT, LIMITS_NARGS
};

/* A limit argument of set_limits(): NULL is no limit, else it must be positive. */
static void
limit_arg(FunctionCallInfo fcinfo, int argno, Datum *value, char *null)
{
	if (PG_ARGISNULL(argno))
	{
		*value = (Datum) 0;
		*null = 'n';
	}
	else if (PG_GETARG_INT64(argno) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limits must be positive"),
				 errhint("Use NULL for no limit.")));
	else
		*value = PG_GETARG_DATUM(argno);
}

/* A limit as JSON: its number, or null. */
static char *
limit_text(const Datum *values, const char *nulls, int param)
{
	if (nulls[param] == 'n')
		return "null";
	return psprintf(INT64_FORMAT, DatumGetInt64(values[param]));
}

/*
 * payledger.set_limits(account_id uuid, max_per_transfer bigint DEFAULT
 *		NULL, max_daily_debit bigint DEFAULT NULL) RETURNS void
 *
 * NULL is no limit.  A debit above max_per_transfer, or one that would
 * take the day's (UTC) posted and pending debits above max_daily_debit, is
 * declined LIMIT_EXCEEDED.  Accounts without limits pay nothing for this
 * on the transfer path (accounts.has_limits).  Audited as
 * ACCOUNT_LIMITS_CHANGED, with the limits in the metadata.
 */
PG_FUNCTION_INFO_V1(set_limits);
Datum
set_limits(PG_FUNCTION_ARGS)
{
	PlPrivState priv;
	PlAccount	acc;
	Datum		values[LIMITS_NARGS];
	char		nulls[LIMITS_NARGS];

	PlRequireArg(fcinfo, 0, "account_id");
	memset(nulls, ' ', sizeof(nulls));
	values[LIMITS_ACCOUNT] = PG_GETARG_DATUM(0);
	limit_arg(fcinfo, 1, &values[LIMITS_MAX_PER_TRANSFER], &nulls[LIMITS_MAX_PER_TRANSFER]);
	limit_arg(fcinfo, 2, &values[LIMITS_MAX_DAILY_DEBIT], &nulls[LIMITS_MAX_DAILY_DEBIT]);
	PlSpiBegin(&priv);
	if (!fetch_account(PLAN_ACCOUNT_LOCK, PG_GETARG_UUID_P(0), &acc))
		raise_not_found(PG_GETARG_UUID_P(0));
	if (PlExec(PLAN_LIMITS_SET, values, nulls, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not store the limits");
	{
		PlAuditEvent ev;
		char	   *meta = psprintf("{\"max_per_transfer\": %s, \"max_daily_debit\": %s}",
									limit_text(values, nulls, LIMITS_MAX_PER_TRANSFER),
									limit_text(values, nulls, LIMITS_MAX_DAILY_DEBIT));

		PlAuditInit(&ev, "ACCOUNT_LIMITS_CHANGED", GetCurrentTimestamp());
		ev.account_id = PG_GETARG_UUID_P(0);
		ev.correlation_id = PG_GETARG_UUID_P(0);
		ev.currency = acc.currency;
		ev.metadata = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(meta)));
		PlAuditWrite(&ev);
	}
	PlSpiEnd(&priv);
	PG_RETURN_VOID();
}
