/*-------------------------------------------------------------------------
 *
 * access.c
 *	  Merchant scope: scope_role(), unscope_role() and the checks that
 *	  keep a scoped role to its merchants.
 *
 * Design note: who is scoped, and what it costs.
 *
 * payledger.role_scopes binds roles to merchants.  The caller is the role
 * that called the outermost payledger function (its current_user, taken
 * before the switch to the ledger's owner: PlCallerUserId()).  It is scoped
 * when it has the privileges of a bound role (is that role, or a member of
 * it that inherits), unless it is a superuser; its merchants are the union
 * of those of every such role.  Membership counts so that granting a scoped
 * role to a login role cannot be used to step out of the scope: no setting
 * and no role membership widens it.
 *
 * Each backend keeps the caller's scope in memory and reads role_scopes
 * again only when the table or role memberships changed: scope_role() and
 * unscope_role() send a relcache invalidation of the table, which every
 * backend receives when they commit, and a change of pg_auth_members sends
 * its own.  An unscoped caller therefore costs one comparison per check.
 *
 * What a scoped role may do (doc/access.md):
 *	- debit, in transfer, hold, transfer_legs and transfer_many, only
 *	  accounts whose owner_id is one of its merchants (42501, nothing
 *	  written): PlCheckDebitScope(), called where the source account of a
 *	  debit is locked and judged (PlDeclineReason) while such a request
 *	  works (PlScopeDebits(), set by the request pipeline);
 *	- create payments and settle only for its merchants (42501);
 *	- see and act on only its merchants' payments and settlements, and
 *	  accounts they own: anything else is PY005, as if it did not exist.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/access.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "layouts.h"
#include "direct.h"
#include "audit.h"
#include "access.h"

#define Anum_role_scopes_role		1
#define Anum_role_scopes_merchant	2

/* the caller whose scope is cached, and its merchants */
static Oid	scopes_relid = InvalidOid;	/* payledger.role_scopes when last read */
static bool scope_valid = false;
static Oid	scope_user = InvalidOid;
static bool scope_scoped = false;
static int	scope_n = 0;
static pg_uuid_t *scope_merchants = NULL;
static MemoryContext scope_cxt = NULL;

/* raised while a request whose debits are scoped works */
static bool debits_scoped = false;

static void
scopes_changed(Datum arg, Oid relid)
{
	/* InvalidOid: every relation; until the table exists, any may be it */
	if (!OidIsValid(relid) || !OidIsValid(scopes_relid) || relid == scopes_relid)
		scope_valid = false;
}

static void
members_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	scope_valid = false;
}

static void
reset_debits(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		debits_scoped = false;
}

static void
reset_debits_sub(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		debits_scoped = false;
}

void
AccessInit(void)
{
	CacheRegisterRelcacheCallback(scopes_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, members_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, members_changed, (Datum) 0);
	RegisterXactCallback(reset_debits, NULL);
	RegisterSubXactCallback(reset_debits_sub, NULL);
}

void
PlScopeDebits(bool on)
{
	debits_scoped = on;
}

/*
 * Reads role_scopes (with the newest snapshot: a binding committed before
 * the invalidation that made us read is always seen) into the cache for
 * user.  A ledger made before 0.3.0 has no table: nobody is scoped.
 */
static void
load_scope(Oid user)
{
	Oid			nsp = get_namespace_oid("payledger", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("role_scopes", nsp) : InvalidOid;
	Relation	rel;
	Snapshot	snap;
	TableScanDesc scan;
	HeapTuple	tup;
	int			cap = 8;

	if (scope_cxt == NULL)
		scope_cxt = AllocSetContextCreate(CacheMemoryContext, "payledger merchant scope",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(scope_cxt);
	scopes_relid = relid;
	scope_user = user;
	scope_scoped = false;
	scope_n = 0;
	scope_merchants = MemoryContextAlloc(scope_cxt, sizeof(pg_uuid_t) * cap);
	scope_valid = true;
	if (!OidIsValid(relid) || superuser_arg(user))
		return;

	rel = table_open(relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			role = DatumGetObjectId(heap_getattr(tup, Anum_role_scopes_role,
														 RelationGetDescr(rel), &isnull));

		if (isnull || !has_privs_of_role(user, role))
			continue;
		scope_scoped = true;
		if (scope_n == cap)
		{
			cap *= 2;
			scope_merchants = repalloc(scope_merchants, sizeof(pg_uuid_t) * cap);
		}
		scope_merchants[scope_n++] =
			*DatumGetUUIDP(heap_getattr(tup, Anum_role_scopes_merchant, RelationGetDescr(rel),
										&isnull));
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
}

/* Is the caller (the role that called payledger) bound to merchants? */
bool
PlCallerScoped(void)
{
	Oid			user = PlCallerUserId();

	if (!scope_valid || user != scope_user)
		load_scope(user);
	return scope_scoped;
}

/* May the caller see merchant's payments and settlements? */
bool
PlMerchantVisible(const pg_uuid_t *merchant)
{
	if (!PlCallerScoped())
		return true;
	for (int i = 0; i < scope_n; i++)
		if (memcmp(scope_merchants[i].data, merchant->data, UUID_LEN) == 0)
			return true;
	return false;
}

/* The caller's merchants as uuid[], or NULL (*isnull) when it is unscoped. */
Datum
PlScopeMerchants(bool *isnull)
{
	Datum	   *elems;

	*isnull = !PlCallerScoped();
	if (*isnull)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * Max(scope_n, 1));
	for (int i = 0; i < scope_n; i++)
	{
		pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

		*u = scope_merchants[i];
		elems[i] = UUIDPGetDatum(u);
	}
	return PointerGetDatum(construct_array(elems, scope_n, UUIDOID, UUID_LEN, false,
										   TYPALIGN_CHAR));
}

/* 42501 unless the caller may act for merchant (create a payment, settle) */
void
PlRequireMerchant(const pg_uuid_t *merchant, const char *what)
{
	if (!PlMerchantVisible(merchant))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not %s for merchant %s",
						GetUserNameFromId(PlCallerUserId(), false), what, PlUuidText(merchant)),
				 errdetail("The role is scoped to other merchants (payledger.scope_role).")));
}

/*
 * 42501 when a scoped caller debits, in a transfer, hold, transfer_legs or
 * transfer_many, an account none of its merchants owns.
 */
void
PlCheckDebitScope(const pg_uuid_t *account, bool has_owner, const pg_uuid_t *owner)
{
	if (!debits_scoped || !PlCallerScoped())
		return;
	if (!has_owner || !PlMerchantVisible(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not debit account %s",
						GetUserNameFromId(PlCallerUserId(), false), PlUuidText(account)),
				 errdetail("The account's owner is not one of the merchants the role is scoped to.")));
}

/* Does account exist (*exists), and does one of the caller's merchants own it? */
static bool
account_in_scope(const pg_uuid_t *account, bool *exists)
{
	Relation	rel = PlOpenAccounts();
	HeapTuple	tup = PlFetchRow(rel, account);
	bool		visible = false;

	*exists = (tup != NULL);
	if (tup != NULL && RelationGetDescr(rel)->natts >= Anum_accounts_owner_id)
	{
		bool		isnull;
		Datum		owner = heap_getattr(tup, Anum_accounts_owner_id, RelationGetDescr(rel), &isnull);

		visible = !isnull && PlMerchantVisible(DatumGetUUIDP(owner));
	}
	table_close(rel, NoLock);
	return visible;
}

/* PY005, as for an account that does not exist, when the caller may not see it */
void
PlCheckAccountVisible(const pg_uuid_t *account)
{
	bool		exists;

	if (PlCallerScoped() && !account_in_scope(account, &exists) && exists)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("account %s does not exist", PlUuidText(account))));
}

/*
 * PY005, as for an id that does not exist, when a scoped caller names a
 * transfer or hold touching none of its merchants' accounts.
 */
void
PlCheckTransferVisible(const char *what, const pg_uuid_t *id, const pg_uuid_t *from,
					   const pg_uuid_t *to)
{
	bool		exists;

	if (!PlCallerScoped() || account_in_scope(from, &exists) || account_in_scope(to, &exists))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
			 errmsg("%s %s does not exist", what, PlUuidText(id))));
}

/*
 * The audit row of a binding made or removed: ROLE_SCOPED or
 * ROLE_UNSCOPED, the merchant in merchant_id, the role's name in metadata.
 */
static void
audit_scope_change(const char *event_type, Oid role, pg_uuid_t *merchant)
{
	PlAuditEvent ev;

	PlAuditInit(&ev, event_type, GetCurrentTimestamp());
	ev.merchant_id = merchant;
	ev.correlation_id = merchant;
	ev.new_state = strcmp(event_type, "ROLE_SCOPED") == 0 ? "scoped" : "unscoped";
	ev.metadata = PlJsonbPair("role", GetUserNameFromId(role, false));
	PlAuditWrite(&ev);
}

/* parameters of change_scope()'s statement, 0-based */
enum
{
	SCOPE_ROLE, SCOPE_MERCHANT, SCOPE_NARGS
};

/*
 * Binds or unbinds a role and a merchant, with its audit row when that
 * changed anything; every backend rereads the table.
 */
static void
change_scope(FunctionCallInfo fcinfo, const char *sql, const char *event_type)
{
	PlPrivState priv;
	Datum		values[SCOPE_NARGS];
	Oid			types[SCOPE_NARGS] = {[SCOPE_ROLE] = REGROLEOID, [SCOPE_MERCHANT] = UUIDOID};
	Oid			relid;

	PlRequireArg(fcinfo, 0, "role");
	PlRequireArg(fcinfo, 1, "merchant_id");
	values[SCOPE_ROLE] = PG_GETARG_DATUM(0);
	values[SCOPE_MERCHANT] = PG_GETARG_DATUM(1);
	if (!SearchSysCacheExists1(AUTHOID, values[SCOPE_ROLE]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role with OID %u does not exist",
						DatumGetObjectId(values[SCOPE_ROLE]))));
	PlSpiBegin(&priv);
	if (SPI_execute_with_args(sql, SCOPE_NARGS, types, values, NULL, false, 0) < 0)
		elog(ERROR, "payledger could not change the scope of a role");
	if (SPI_processed > 0)
		audit_scope_change(event_type, DatumGetObjectId(values[SCOPE_ROLE]),
						   PG_GETARG_UUID_P(1));
	relid = get_relname_relid("role_scopes", get_namespace_oid("payledger", false));
	CacheInvalidateRelcacheByRelid(relid);
	PlSpiEnd(&priv);
}

/*
 * payledger.scope_role(role regrole, merchant_id uuid) RETURNS void
 *
 * Binds role to merchant: from then on the role (and every role that has
 * its privileges) debits, sees and acts on only its merchants' accounts
 * and payments.  Binding twice is a no-op.  Audited ROLE_SCOPED.
 */
PG_FUNCTION_INFO_V1(scope_role);
Datum
scope_role(PG_FUNCTION_ARGS)
{
	change_scope(fcinfo, "INSERT INTO payledger.role_scopes (role, merchant_id, created_at)"
				 " VALUES ($1, $2, pg_catalog.clock_timestamp()) ON CONFLICT DO NOTHING",
				 "ROLE_SCOPED");
	PG_RETURN_VOID();
}

/*
 * payledger.unscope_role(role regrole, merchant_id uuid) RETURNS void
 *
 * Removes one binding; a role left without bindings is unscoped again.
 * Audited ROLE_UNSCOPED; removing a binding that is not there is a no-op.
 */
PG_FUNCTION_INFO_V1(unscope_role);
Datum
unscope_role(PG_FUNCTION_ARGS)
{
	change_scope(fcinfo, "DELETE FROM payledger.role_scopes"
				 " WHERE role OPERATOR(pg_catalog.=) $1"
				 " AND merchant_id OPERATOR(pg_catalog.=) $2", "ROLE_UNSCOPED");
	PG_RETURN_VOID();
}

/*
 * payledger.guard_scopes() RETURNS trigger
 *
 * Bindings change only through scope_role() and unscope_role(): a
 * hand-written UPDATE, DELETE or TRUNCATE of payledger.role_scopes raises
 * PY003 for every role.
 */
PG_FUNCTION_INFO_V1(guard_scopes);
Datum
guard_scopes(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard_scopes() must be called as a trigger")));
	if (PlInternalWrite() && !TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		return PointerGetDatum(NULL);
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_IMMUTABLE_RECORD),
			 errmsg("changing \"%s\" is not allowed outside payledger functions",
					RelationGetRelationName(trigdata->tg_relation)),
			 errhint("Use payledger.scope_role() and payledger.unscope_role().")));
	return PointerGetDatum(NULL);
}
