/*-------------------------------------------------------------------------
 *
 * protect.c
 *	  The event trigger that keeps DDL away from the ledger's tables.
 *
 * ALTER TABLE (which includes DISABLE TRIGGER), ALTER TRIGGER, renames,
 * CREATE RULE and CREATE TRIGGER on a payledger table (a DO INSTEAD NOTHING
 * rule or a BEFORE trigger returning NULL would silently swallow writes),
 * ALTER EXTENSION payledger ADD/DROP, DROP of a payledger table, index,
 * sequence, trigger or of the schema, and DROP EXTENSION payledger while the
 * ledger holds data raise PY007, for every role.  The extension's own install and upgrade scripts pass
 * (creating_extension), and a superuser can set payledger.allow_drop for
 * planned maintenance.  The event trigger is ENABLE ALWAYS, so
 * session_replication_role does not switch it off; a superuser can still
 * disable the event trigger itself, which is what the audit log's hash
 * chains are there to catch.
 *
 * On the audit log's monthly partitions (ordinary tables, not members of
 * the extension, dumped with their data), what only adds to the ledger
 * passes, as pg_restore needs it: ENABLE ALWAYS TRIGGER, SET DEFAULT to the
 * default the parent has, ADD CONSTRAINT UNIQUE (event_id) and, for
 * superusers, OWNER TO the role payledger writes as.  payledger's own partition
 * functions (src/audit_partitions.c) pass while they run, NO INHERIT
 * included.
 *
 * guard_insert() is the statement-level BEFORE INSERT trigger (ENABLE
 * ALWAYS) on every table of the ledger: rows enter them only through
 * payledger's functions (direct inserts never reach the executor; SPI
 * inserts run with the internal-write flag raised), the extension's own
 * scripts, and pg_restore.  What it lets through from outside is exactly
 * this: a COPY ... FROM that the client sent as its statement, naming that
 * very table, run by a superuser or by the role that owns the ledger, which
 * is how pg_restore (and psql's restore of a plain dump) loads data into the
 * tables CREATE EXTENSION made; and a logical replication subscription's
 * initial copy (its workers fire no statement triggers for the rows they
 * apply afterwards; only a superuser can make a subscription).  INSERT,
 * INSERT ... SELECT, MERGE, COPY run from inside a function and COPY by any
 * other role raise PY003.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/protect.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "replication/logicalworker.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/rel.h"

#include "payledger.h"
#include "spi_plans.h"
#include "audit.h"

/* set while payledger's own partition functions run their DDL */
static bool audit_ddl = false;

void
PlAllowAuditDdl(bool allow)
{
	audit_ddl = allow;
}

static void
refuse(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_PROTECTED_OBJECT),
			 errmsg("%s is not allowed on payledger's objects", what),
			 errdetail("The ledger's tables, triggers and history are protected from DDL."),
			 errhint("A superuser can SET payledger.allow_drop = on for planned maintenance.")));
}

static bool
in_ledger_schema(RangeVar *rv)
{
	Oid			relid;

	if (rv == NULL)
		return false;
	if (rv->schemaname != NULL)
		return strcmp(rv->schemaname, "payledger") == 0;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) &&
		get_rel_namespace(relid) == get_namespace_oid("payledger", true);
}

static bool
ledger_holds_data(void)
{
	PlPrivState priv;
	bool		has_data;
	bool		isnull;

	PlSpiBegin(&priv);
	if (SPI_execute("SELECT EXISTS (SELECT 1 FROM payledger.accounts)"
					" OR EXISTS (SELECT 1 FROM payledger.payment_audit_log)",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look at the ledger");
	has_data = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));
	PlSpiEnd(&priv);
	return has_data;
}

/* Does a DROP name something in schema payledger (or the schema itself)? */
static bool
drop_touches_ledger(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		switch (stmt->removeType)
		{
			case OBJECT_SCHEMA:
				if (strcmp(strVal(obj), "payledger") == 0)
					return true;
				break;
			case OBJECT_TABLE:
			case OBJECT_INDEX:
			case OBJECT_SEQUENCE:
			case OBJECT_VIEW:
				if (in_ledger_schema(makeRangeVarFromNameList((List *) obj)))
					return true;
				break;
			case OBJECT_TRIGGER:
				{
					/* trigger name last, table before it */
					List	   *names = (List *) obj;

					if (in_ledger_schema(makeRangeVarFromNameList(list_truncate(list_copy(names),
																				list_length(names) - 1))))
						return true;
				}
				break;
			default:
				break;
		}
	}
	return false;
}

/* Is the relation one the extension's scripts made (not a monthly partition)? */
static bool
extension_member(RangeVar *rv)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	return !OidIsValid(relid) || OidIsValid(getExtensionOfObject(RelationRelationId, relid));
}

/*
 * Is def the default the audit log gives column?  pg_restore sets each
 * month's defaults to the parent's, printed by pg_get_expr() as here; any
 * other default, or DROP DEFAULT (def NULL), is refused.
 */
static bool
parent_default(const char *column, Node *def)
{
	PlPrivState priv;
	Datum		arg;
	Oid			type = TEXTOID;
	char	   *expr = NULL;
	bool		same = false;

	if (column == NULL || def == NULL)
		return false;
	arg = CStringGetTextDatum(column);
	PlSpiBegin(&priv);
	if (SPI_execute_with_args("SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)"
							  " FROM pg_catalog.pg_attrdef d"
							  " JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
							  " WHERE d.adrelid = 'payledger.payment_audit_log'::pg_catalog.regclass"
							  "   AND a.attname = $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the defaults of payledger.payment_audit_log");
	if (SPI_processed == 1)
		expr = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (expr != NULL)
	{
		List	   *parsed = raw_parser(psprintf("SELECT %s", expr), RAW_PARSE_DEFAULT);
		SelectStmt *select = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
		ResTarget  *target = linitial_node(ResTarget, select->targetList);

		/* equal() ignores parse locations */
		same = equal(target->val, def);
	}
	PlSpiEnd(&priv);
	return same;
}

/* Does an ALTER TABLE only add to the ledger (what pg_restore runs)? */
static bool
alter_only_adds(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_EnableAlwaysTrig:
				break;
			case AT_ColumnDefault:
				if (!parent_default(cmd->name, cmd->def))
					return false;
				break;
			case AT_AddConstraint:
				{
					/* the month's UNIQUE (event_id), nothing that could refuse rows */
					Constraint *con = (Constraint *) cmd->def;

					if (!IsA(con, Constraint) || con->contype != CONSTR_UNIQUE ||
						list_length(con->keys) != 1 ||
						strcmp(strVal(linitial(con->keys)), "event_id") != 0)
						return false;
				}
				break;
			case AT_ChangeOwner:
				/* back to the role payledger writes as, nobody else */
				if (!superuser() ||
					get_rolespec_oid(cmd->newowner, false) != PlLedgerOwner())
					return false;
				break;
			default:
				return false;
		}
	}
	return true;
}

/*
 * payledger.protect_ddl() RETURNS event_trigger, on ddl_command_start
 */
PG_FUNCTION_INFO_V1(protect_ddl);
Datum
protect_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *tree;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("protect_ddl() must be called as an event trigger")));
	if (creating_extension || pl_allow_drop || audit_ddl)
		PG_RETURN_VOID();

	trigdata = (EventTriggerData *) fcinfo->context;
	tree = trigdata->parsetree;
	switch (nodeTag(tree))
	{
		case T_AlterTableStmt:
			if (in_ledger_schema(((AlterTableStmt *) tree)->relation) &&
				(extension_member(((AlterTableStmt *) tree)->relation) ||
				 !alter_only_adds((AlterTableStmt *) tree)))
				refuse("ALTER TABLE");
			break;
		case T_RuleStmt:
			if (in_ledger_schema(((RuleStmt *) tree)->relation))
				refuse("CREATE RULE");
			break;
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *stmt = (CreateTrigStmt *) tree;

				/* pg_restore recreates a month's guard, a payledger function */
				if (in_ledger_schema(stmt->relation) &&
					(extension_member(stmt->relation) ||
					 list_length(stmt->funcname) != 2 ||
					 strcmp(strVal(linitial(stmt->funcname)), "payledger") != 0))
					refuse("CREATE TRIGGER");
			}
			break;
		case T_AlterExtensionContentsStmt:
			if (strcmp(((AlterExtensionContentsStmt *) tree)->extname, "payledger") == 0)
				refuse("ALTER EXTENSION payledger ADD/DROP");
			break;
		case T_RenameStmt:
			if (in_ledger_schema(((RenameStmt *) tree)->relation))
				refuse("renaming");
			break;
		case T_AlterObjectSchemaStmt:
			if (in_ledger_schema(((AlterObjectSchemaStmt *) tree)->relation))
				refuse("ALTER ... SET SCHEMA");
			break;
		case T_DropStmt:
			{
				DropStmt   *stmt = (DropStmt *) tree;

				if (stmt->removeType == OBJECT_EXTENSION)
				{
					ListCell   *lc;

					foreach(lc, stmt->objects)
						if (strcmp(strVal(lfirst(lc)), "payledger") == 0 &&
							ledger_holds_data())
							ereport(ERROR,
									(errcode(ERRCODE_PAYLEDGER_PROTECTED_OBJECT),
									 errmsg("DROP EXTENSION payledger is not allowed while the ledger holds data"),
									 errdetail("Dropping the extension would drop every account, transfer and audit row."),
									 errhint("Take a pg_dump first; a superuser can then SET payledger.allow_drop = on.")));
				}
				else if (drop_touches_ledger(stmt))
					refuse("DROP");
			}
			break;
		default:
			break;
	}
	PG_RETURN_VOID();
}

/*
 * Is the statement the client sent a COPY FROM into rel, by a role that may
 * restore the ledger?  The portal running it is the client's own: a COPY run
 * by a function (EXECUTE in PL/pgSQL) runs inside its caller's portal.
 */
static bool
restoring_copy(Relation rel)
{
	PlannedStmt *stmt;
	CopyStmt   *copy;

	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY ||
		list_length(ActivePortal->stmts) != 1)
		return false;
	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->commandType != CMD_UTILITY || !IsA(stmt->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) stmt->utilityStmt;
	if (!copy->is_from || copy->relation == NULL ||
		RangeVarGetRelid(copy->relation, NoLock, true) != RelationGetRelid(rel))
		return false;
	return superuser() || GetUserId() == PlLedgerOwner();
}

/*
 * payledger.guard_insert() RETURNS trigger
 *
 * BEFORE INSERT FOR EACH STATEMENT on every payledger table: a hand-written
 * INSERT raises PY003 for every role, superusers included.
 */
PG_FUNCTION_INFO_V1(guard_insert);
Datum
guard_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard_insert() must be called as an INSERT trigger")));
	if (PlInternalWrite() || creating_extension || IsLogicalWorker() ||
		restoring_copy(trigdata->tg_relation))
		return PointerGetDatum(NULL);
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_IMMUTABLE_RECORD),
			 errmsg("INSERT into \"%s\" is not allowed outside payledger functions",
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Rows enter the ledger only through payledger's functions, which keep balances, entries and the audit log in step."),
			 errhint("Create accounts with payledger.create_account() and move money with payledger.transfer().")));
	return PointerGetDatum(NULL);
}
