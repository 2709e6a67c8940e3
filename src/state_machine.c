/*-------------------------------------------------------------------------
 *
 * state_machine.c
 *	  Reusable state machines: define_state_machine() and the trigger
 *	  enforce_state_machine(machine, column).
 *
 * A machine is a name and a JSON object mapping each state to the states it
 * may move to: {"pending": ["authorized", "failed"], ...}.  The trigger,
 * BEFORE UPDATE FOR EACH ROW, raises PY001 when the column changes along a
 * pair the machine does not list, whoever runs the UPDATE.  Machines are
 * read once per backend and kept in a hash table; define_state_machine()
 * sends a relcache invalidation for payledger.state_machines, whose
 * callback empties every backend's cache when the definition commits.
 * payledger.payments is guarded by the machine named "payment": by the
 * trigger for hand-written UPDATEs, and by payments.c, which writes its own
 * state changes directly, through PlCheckTransition().  That machine is the
 * extension's: only its scripts define it (PY007 for anybody else), and
 * payledger.state_machines changes only through define_state_machine().
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/state_machine.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "state_machine.h"

#define MACHINE_NAME_LEN 64

typedef struct MachineEntry
{
	char		name[MACHINE_NAME_LEN];
	Jsonb	   *transitions;	/* in CacheMemoryContext */
} MachineEntry;

static HTAB *machines = NULL;
static bool callback_registered = false;

/*
 * The cache is valid while machines_valid holds; machines_relid is the oid
 * of payledger.state_machines, resolved when the cache is filled.
 */
static bool machines_valid = false;
static Oid	machines_relid = InvalidOid;

/*
 * Relcache invalidation callback.  It runs during abort as well as at
 * command boundaries, so it may not touch the catalogs: it only marks the
 * cache stale, and machine_transitions() empties and refills it.
 */
static void
forget_machines(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == machines_relid)
		machines_valid = false;
}

/* Empties the cache if it is stale and resolves payledger.state_machines. */
static void
refresh_machines(void)
{
	HASH_SEQ_STATUS status;
	MachineEntry *e;

	if (machines_valid)
		return;
	hash_seq_init(&status, machines);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->transitions)
			pfree(e->transitions);
		hash_search(machines, e->name, HASH_REMOVE, NULL);
	}
	machines_relid = get_relname_relid("state_machines", get_namespace_oid("payledger", true));
	machines_valid = true;
}

static void
check_name(const char *name)
{
	if (name[0] == '\0' || strlen(name) >= MACHINE_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state machine name must be 1 to %d bytes long", MACHINE_NAME_LEN - 1)));
}

/* The transitions of a machine (cached); PY005 if it is not defined. */
static Jsonb *
machine_transitions(const char *name)
{
	MachineEntry *e;
	bool		found;

	check_name(name);
	if (machines == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = MACHINE_NAME_LEN;
		ctl.entrysize = sizeof(MachineEntry);
		ctl.hcxt = CacheMemoryContext;
		machines = hash_create("payledger state machines", 16, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_machines, (Datum) 0);
		callback_registered = true;
	}
	refresh_machines();
	e = hash_search(machines, name, HASH_FIND, NULL);
	if (e == NULL)
	{
		PlPrivState priv;
		Datum		values[1];
		bool		isnull;
		Jsonb	   *jb;

		PlSpiBegin(&priv);
		values[0] = CStringGetTextDatum(name);
		if (PlExec(PLAN_MACHINE_GET, values, NULL, 1) != SPI_OK_SELECT)
			elog(ERROR, "state machine lookup failed");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
					 errmsg("state machine \"%s\" is not defined", name),
					 errhint("Define it with payledger.define_state_machine().")));
		jb = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		e = hash_search(machines, name, HASH_ENTER, &found);
		e->transitions = MemoryContextAlloc(CacheMemoryContext, VARSIZE(jb));
		memcpy(e->transitions, jb, VARSIZE(jb));
		PlSpiEnd(&priv);
	}
	return e->transitions;
}

static JsonbValue *
targets_of(Jsonb *transitions, const char *from)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) from;
	k.val.string.len = strlen(from);
	return findJsonbValueFromContainer(&transitions->root, JB_FOBJECT, &k);
}

/*
 * Raises PY001 unless machine allows from -> to.  The trigger checks
 * hand-written UPDATEs with it; payments.c checks its own state changes,
 * which it writes without firing row triggers.
 */
void
PlCheckTransition(const char *machine, const char *from, const char *to)
{
	Jsonb	   *transitions = machine_transitions(machine);
	JsonbValue *targets = targets_of(transitions, from);
	JsonbValue	want;

	want.type = jbvString;
	want.val.string.val = (char *) to;
	want.val.string.len = strlen(to);
	if (targets != NULL && targets->type == jbvBinary &&
		findJsonbValueFromContainer(targets->val.binary.data, JB_FARRAY, &want) != NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
			 errmsg("invalid state transition from \"%s\" to \"%s\"", from, to),
			 (targets != NULL && targets->type == jbvBinary) ?
			 errdetail("State machine \"%s\" allows \"%s\" to move to %s.", machine, from,
					   JsonbToCString(NULL, targets->val.binary.data, -1)) :
			 errdetail("In state machine \"%s\", \"%s\" is a final state or no state at all.",
					   machine, from)));
}

/* 22023 unless transitions is an object of state -> array of non-empty states */
static void
check_transitions(Jsonb *transitions)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	if (!JB_ROOT_IS_OBJECT(transitions))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transitions must be a JSON object of state -> array of states")));
	it = JsonbIteratorInit(&transitions->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
			depth++;
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			depth--;
		if ((tok == WJB_BEGIN_ARRAY && depth != 2) || (tok == WJB_BEGIN_OBJECT && depth != 1) ||
			(tok == WJB_VALUE && v.type != jbvBinary) ||
			(tok == WJB_ELEM && (v.type != jbvString || v.val.string.len == 0)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("transitions must be a JSON object of state -> array of states"),
					 errdetail("Example: {\"pending\": [\"authorized\", \"failed\"], \"failed\": []}.")));
	}
}

/* parameters of PLAN_MACHINE_PUT, 0-based */
enum
{
	PUT_NAME, PUT_TRANSITIONS, PUT_NARGS
};

/*
 * payledger.define_state_machine(name text, transitions jsonb) RETURNS void
 *
 * Creates or replaces a machine.  transitions maps every state to an array
 * of the states it may move to (empty for a final state).  The machine
 * "payment" is defined by the extension's scripts only.
 */
PG_FUNCTION_INFO_V1(define_state_machine);
Datum
define_state_machine(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *transitions;
	PlPrivState priv;
	Datum		values[PUT_NARGS];

	PlRequireArg(fcinfo, 0, "name");
	PlRequireArg(fcinfo, 1, "transitions");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	transitions = PG_GETARG_JSONB_P(1);
	check_name(name);
	check_transitions(transitions);
	if (strcmp(name, "payment") == 0 && !creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_PROTECTED_OBJECT),
				 errmsg("state machine \"payment\" cannot be redefined"),
				 errdetail("It guards payledger.payments and comes with the extension.")));

	PlSpiBegin(&priv);
	values[PUT_NAME] = CStringGetTextDatum(name);
	values[PUT_TRANSITIONS] = JsonbPGetDatum(transitions);
	if (PlExec(PLAN_MACHINE_PUT, values, NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the state machine");
	CacheInvalidateRelcacheByRelid(get_relname_relid("state_machines",
													 get_namespace_oid("payledger", false)));
	PlSpiEnd(&priv);
	PG_RETURN_VOID();
}

/* the column's value as text, or NULL */
static char *
column_text(HeapTuple tup, TupleDesc desc, int attnum)
{
	return SPI_getvalue(tup, desc, attnum);
}

/*
 * payledger.enforce_state_machine() RETURNS trigger
 *
 * CREATE TRIGGER ... BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION
 * payledger.enforce_state_machine('machine', 'column')
 */
/* the trigger's arguments, 0-based */
enum
{
	TRIGGER_MACHINE, TRIGGER_COLUMN, TRIGGER_NARGS
};

PG_FUNCTION_INFO_V1(enforce_state_machine);
Datum
enforce_state_machine(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	TupleDesc	desc;
	int			attnum;
	char	   *from;
	char	   *to;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enforce_state_machine() must be called as a trigger")));
	trigger = trigdata->tg_trigger;
	if (!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enforce_state_machine() must fire BEFORE UPDATE FOR EACH ROW")));
	if (trigger->tgnargs != TRIGGER_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enforce_state_machine() takes a machine name and a column name")));
	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, trigger->tgargs[TRIGGER_COLUMN]);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist in \"%s\"", trigger->tgargs[TRIGGER_COLUMN],
						RelationGetRelationName(trigdata->tg_relation))));
	from = column_text(trigdata->tg_trigtuple, desc, attnum);
	to = column_text(trigdata->tg_newtuple, desc, attnum);
	if (from != NULL && to != NULL && strcmp(from, to) != 0)
		PlCheckTransition(trigger->tgargs[TRIGGER_MACHINE], from, to);
	else if ((from == NULL) != (to == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
				 errmsg("invalid state transition from %s to %s",
						from ? from : "NULL", to ? to : "NULL")));
	return PointerGetDatum(trigdata->tg_newtuple);
}
