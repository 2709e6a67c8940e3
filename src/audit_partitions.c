/*-------------------------------------------------------------------------
 *
 * audit_partitions.c
 *	  Monthly partitions of the audit log: routing, creation, archiving.
 *
 * A month of the audit log is a child table, payment_audit_log_YYYY_MM,
 * that inherits from payledger.payment_audit_log, with a CHECK on its
 * range of event ids: UUIDv7 begin with their Unix time in milliseconds,
 * so the UUID of a month's first millisecond followed by zeros is the lower
 * bound of that month and every id minted during it sorts below the next
 * month's bound.  payledger.audit_partitions lists the months made.  The
 * writer inserts straight into the table (src/direct.c), so it routes each
 * row itself, to the child of its month or, when there is none, to the
 * parent.  The choice is cached per backend and forgotten on any relcache
 * invalidation of the parent or of the child; creating and archiving
 * months invalidate the parent.  Whether a month is attached is read from
 * pg_inherits with the catalog snapshot, so a transaction whose snapshot
 * is older than an archive never writes into the detached month.
 *
 * Archiving a month verifies it, stores its signed checkpoint (its chain
 * heads, name, range and event counts) in payledger.audit_archives and
 * detaches it (NO INHERIT).  The verifier then accepts the month's chains
 * as gone, and verify_audit_archive()
 * checks the detached table, or a copy restored years later, against that
 * checkpoint.  Months are archived oldest first, so that the archived part
 * of history is one prefix of time (check_ledger relies on it).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/audit_partitions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "spi_plans.h"
#include "direct.h"
#include "audit.h"

/* where this backend writes audit rows: leaf_relid takes [leaf_lo, leaf_hi) */
static bool leaf_valid = false;
static Oid	leaf_parent = InvalidOid;
static Oid	leaf_relid = InvalidOid;
static pg_uuid_t leaf_lo;
static pg_uuid_t leaf_hi;

static void
forget_leaf(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == leaf_parent || relid == leaf_relid)
		leaf_valid = false;
}

void
AuditPartitionsInit(void)
{
	CacheRegisterRelcacheCallback(forget_leaf, (Datum) 0);
}

/* The lower bound of the month that contains ts (UTC), add_months later. */
static TimestampTz
month_start(TimestampTz ts, int add_months)
{
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz result;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	tm.tm_mon += add_months;
	while (tm.tm_mon > MONTHS_PER_YEAR)
	{
		tm.tm_mon -= MONTHS_PER_YEAR;
		tm.tm_year++;
	}
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (tm2timestamp(&tm, 0, NULL, &result) != 0)
		elog(ERROR, "timestamp out of range");
	return result;
}

#define UNIX_EPOCH_MS ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)

/* The smallest UUIDv7 of a millisecond: its time, then zeros. */
static void
uuid_bound(TimestampTz ts, pg_uuid_t *out)
{
	int64		ms = ts / 1000 + UNIX_EPOCH_MS;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 6; i++)
		out->data[i] = (uint8) (ms >> (40 - 8 * i));
}

/* The time at which a UUIDv7 was minted. */
static TimestampTz
uuid_time(const pg_uuid_t *u)
{
	int64		ms = 0;

	for (int i = 0; i < 6; i++)
		ms = (ms << 8) | u->data[i];
	return (ms - UNIX_EPOCH_MS) * 1000;
}

static char *
ts_text(TimestampTz ts)
{
	return DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(ts)));
}

static Oid
ledger_namespace(void)
{
	return get_namespace_oid("payledger", false);
}

/*
 * Is relid a month attached to parent now?  pg_inherits is read with the
 * catalog snapshot, not the transaction's: a REPEATABLE READ transaction, or
 * one that waited behind archive_audit_partition(), must not write into a
 * month that was detached since its snapshot was taken.
 */
static bool
attached_month(Oid parent_oid, Oid relid)
{
	List	   *children;
	bool		attached;

	if (!OidIsValid(relid))
		return false;
	children = find_inheritance_children(parent_oid, NoLock);
	attached = list_member_oid(children, relid);
	list_free(children);
	return attached;
}

/* columns of find_leaf()'s query */
enum
{
	LEAF_NAME = 1, LEAF_RANGE_FROM, LEAF_RANGE_TO
};

/* Finds the child that takes event_id, or settles on the parent for its month. */
static void
find_leaf(Relation parent, const pg_uuid_t *event_id)
{
	Oid			parent_oid = RelationGetRelid(parent);
	TimestampTz at = uuid_time(event_id);

	leaf_parent = parent_oid;
	leaf_relid = parent_oid;
	uuid_bound(month_start(at, 0), &leaf_lo);
	uuid_bound(month_start(at, 1), &leaf_hi);
	if (OidIsValid(get_relname_relid("audit_partitions", ledger_namespace())))
	{
		Datum		arg = UUIDPGetDatum(event_id);
		Oid			type = UUIDOID;

		if (SPI_execute_with_args("SELECT partition_name, range_from, range_to"
								  " FROM payledger.audit_partitions"
								  " WHERE $1 >= range_from AND $1 < range_to",
								  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read payledger.audit_partitions");
		if (SPI_processed == 1)
		{
			bool		isnull;
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Oid			relid = get_relname_relid(SPI_getvalue(tup, desc, LEAF_NAME),
												  ledger_namespace());

			if (attached_month(parent_oid, relid))
			{
				leaf_relid = relid;
				leaf_lo = *DatumGetUUIDP(SPI_getbinval(tup, desc, LEAF_RANGE_FROM, &isnull));
				leaf_hi = *DatumGetUUIDP(SPI_getbinval(tup, desc, LEAF_RANGE_TO, &isnull));
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	leaf_valid = true;
}

/*
 * Opens (RowExclusiveLock) the table of the audit log that takes a row with
 * this event id: the child of its month, else the parent.  A month that was
 * detached or dropped while this backend waited for its lock sends its rows
 * to the parent.  Runs inside PlSpiBegin/PlSpiEnd.
 */
Relation
PlAuditLeafFor(Relation parent, const pg_uuid_t *event_id)
{
	Oid			parent_oid = RelationGetRelid(parent);

	for (int attempt = 0;; attempt++)
	{
		Relation	leaf;

		if (attempt > 100)
			elog(ERROR, "could not find the audit log partition of an event: the months keep changing");
		if (!leaf_valid || leaf_parent != parent_oid ||
			memcmp(event_id->data, leaf_lo.data, UUID_LEN) < 0 ||
			memcmp(event_id->data, leaf_hi.data, UUID_LEN) >= 0)
			find_leaf(parent, event_id);
		if (leaf_relid == parent_oid)
			return parent;
		/*
		 * Locking it takes in invalidations: a month detached since
		 * find_leaf() saw it attached is forgotten here (archiving
		 * invalidates the parent), and the next find_leaf() reads
		 * pg_inherits afresh.  Once locked, it cannot be detached.
		 */
		leaf = try_table_open(leaf_relid, RowExclusiveLock);
		if (leaf == NULL)
		{
			leaf_valid = false;
			continue;
		}
		if (leaf_valid)
		{
			if (RelationGetDescr(leaf)->natts != RelationGetDescr(parent)->natts)
				elog(ERROR, "%s does not have the columns of payledger.payment_audit_log",
					 RelationGetRelationName(leaf));
			PlVerifyAuditMonth(leaf);
			return leaf;
		}
		table_close(leaf, RowExclusiveLock);
		leaf_valid = false;
	}
}

/* Is name what create_audit_partitions() calls a month, payment_audit_log_YYYY_MM? */
static bool
month_name(const char *name)
{
	const char *prefix = "payment_audit_log_";
	size_t		plen = strlen(prefix);

	if (strlen(name) != plen + 7 || strncmp(name, prefix, plen) != 0 || name[plen + 4] != '_')
		return false;
	for (int i = 0; i < 7; i++)
		if (i != 4 && !isdigit((unsigned char) name[plen + i]))
			return false;
	return true;
}

/* Runs one statement through SPI, failing on anything unexpected. */
static void
run(const char *sql, int expect)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "payledger could not run: %s (%s)", sql, SPI_result_code_string(rc));
}

/* The name of the month that starts at from: payment_audit_log_YYYY_MM. */
static void
month_table_name(TimestampTz from, char *name)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(from, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	snprintf(name, NAMEDATALEN, "payment_audit_log_%04d_%02d", tm.tm_year, tm.tm_mon);
}

/*
 * Was the month called name made before (attached or archived)?  Another
 * table of that name is an error.
 */
static bool
month_made(const char *name)
{
	run(psprintf("SELECT 1 FROM payledger.audit_partitions WHERE partition_name = '%s'", name),
		SPI_OK_SELECT);
	if (SPI_processed > 0)
		return true;
	if (OidIsValid(get_relname_relid(name, ledger_namespace())))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"payledger.%s\" exists but is not a month of the audit log", name),
				 errhint("Rename or drop it, then run create_audit_partitions() again.")));
	return false;
}

/* The parent's append-only and insert guards on a new month, ENABLE ALWAYS. */
static void
add_month_guards(const char *name)
{
	run(psprintf("CREATE TRIGGER audit_append_only"
				 " BEFORE UPDATE OR DELETE OR TRUNCATE ON payledger.%s"
				 " FOR EACH STATEMENT EXECUTE FUNCTION payledger.forbid_mutation()", name),
		SPI_OK_UTILITY);
	run(psprintf("ALTER TABLE payledger.%s ENABLE ALWAYS TRIGGER audit_append_only", name),
		SPI_OK_UTILITY);
	/* a 0.2.0 ledger gets it from ALTER EXTENSION UPDATE */
	if (OidIsValid(LookupFuncName(list_make2(makeString("payledger"),
											 makeString("guard_insert")),
								  0, NULL, true)))
	{
		run(psprintf("CREATE TRIGGER payledger_insert_guard BEFORE INSERT ON payledger.%s"
					 " FOR EACH STATEMENT EXECUTE FUNCTION payledger.guard_insert()", name),
			SPI_OK_UTILITY);
		run(psprintf("ALTER TABLE payledger.%s ENABLE ALWAYS TRIGGER payledger_insert_guard",
					 name), SPI_OK_UTILITY);
	}
}

/*
 * Creates the month [from, to) as payledger.name, a child of the audit log
 * with its range CHECK, the parent's indexes and guards, records it in
 * payledger.audit_partitions and returns its relid.
 */
static Oid
create_month(const char *name, TimestampTz from, TimestampTz to)
{
	pg_uuid_t	lo;
	pg_uuid_t	hi;
	char	   *lo_text;
	char	   *hi_text;

	uuid_bound(from, &lo);
	uuid_bound(to, &hi);
	lo_text = PlUuidText(&lo);
	hi_text = PlUuidText(&hi);
	run(psprintf("CREATE TABLE payledger.%s (CONSTRAINT %s_range"
				 " CHECK (event_id >= '%s' AND event_id < '%s'))"
				 " INHERITS (payledger.payment_audit_log)", name, name, lo_text, hi_text),
		SPI_OK_UTILITY);
	run(psprintf("ALTER TABLE payledger.%s ADD CONSTRAINT %s_event_id_key UNIQUE (event_id)",
				 name, name), SPI_OK_UTILITY);
	run(psprintf("CREATE INDEX %s_payment ON payledger.%s (payment_id)", name, name),
		SPI_OK_UTILITY);
	run(psprintf("CREATE INDEX %s_delivery ON payledger.%s (era, txid, id)", name, name),
		SPI_OK_UTILITY);
	run(psprintf("COMMENT ON TABLE payledger.%s IS 'Audit log rows of %s to %s'",
				 name, ts_text(from), ts_text(to)), SPI_OK_UTILITY);
	add_month_guards(name);
	run(psprintf("INSERT INTO payledger.audit_partitions VALUES ('%s', '%s', '%s', '%s', '%s',"
				 " pg_catalog.clock_timestamp())",
				 name, lo_text, hi_text, ts_text(from), ts_text(to)), SPI_OK_INSERT);
	return get_relname_relid(name, ledger_namespace());
}

/*
 * payledger.create_audit_partitions(months_ahead integer DEFAULT 2)
 *		RETURNS SETOF regclass
 *
 * One child per month (UTC), payment_audit_log_YYYY_MM, from this month to
 * months_ahead months ahead, with the parent's indexes and its append-only
 * guard ENABLE ALWAYS; a month made before (attached or archived) is left
 * alone, another table of that name is an error.  Rows of this
 * month written before stay in the parent.  Run it monthly (pg_cron).
 */
PG_FUNCTION_INFO_V1(create_audit_partitions);
Datum
create_audit_partitions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		ahead;
	TimestampTz clock = GetCurrentTimestamp();
	PlPrivState priv;
	Relation	parent;

	PlRequireArg(fcinfo, 0, "months_ahead");
	ahead = PG_GETARG_INT32(0);
	if (ahead < 0 || ahead > 120)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("months_ahead must be between 0 and 120")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	parent = PlOpenTable("payment_audit_log");

	PlSpiBegin(&priv);
	PlAllowAuditDdl(true);
	PG_TRY();
	{
		for (int m = 0; m <= ahead; m++)
		{
			TimestampTz from = month_start(clock, m);
			char		name[NAMEDATALEN];
			Datum		value;
			bool		isnull = false;

			month_table_name(from, name);
			if (month_made(name))
				continue;
			value = ObjectIdGetDatum(create_month(name, from, month_start(clock, m + 1)));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		}
	}
	PG_FINALLY();
	{
		PlAllowAuditDdl(false);
	}
	PG_END_TRY();
	PlSpiEnd(&priv);
	/* every backend routes again once this commits */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(parent));
	table_close(parent, NoLock);
	return (Datum) 0;
}

/* columns of the month query of archive_month_range() */
enum
{
	ARCHIVE_RANGE_FROM = 1, ARCHIVE_RANGE_TO, ARCHIVE_OLDER_MONTH
};

/* parameters of the month query of archive_month_range(), 0-based */
enum
{
	ARCHIVE_PARTITION, ARCHIVE_PARENT, ARCHIVE_NAMESPACE, ARCHIVE_NARGS
};

/*
 * The range [lo, hi) of the month partition (named name, NULL when there is
 * no such relation) for archive_audit_partition(): it must be a month
 * create_audit_partitions() made, attached to parent, over, and the oldest
 * one still attached.
 */
static void
archive_month_range(Oid partition, Oid parent, const char *name, pg_uuid_t *lo, pg_uuid_t *hi)
{
	Datum		args[ARCHIVE_NARGS];
	Oid			types[ARCHIVE_NARGS] = {OIDOID, OIDOID, OIDOID};
	pg_uuid_t	current;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *older;

	args[ARCHIVE_PARTITION] = ObjectIdGetDatum(partition);
	args[ARCHIVE_PARENT] = ObjectIdGetDatum(parent);
	args[ARCHIVE_NAMESPACE] = ObjectIdGetDatum(ledger_namespace());
	if (SPI_execute_with_args("SELECT p.range_from, p.range_to,"
							  " (SELECT o.partition_name FROM payledger.audit_partitions o"
							  "   JOIN pg_catalog.pg_class oc ON oc.relname = o.partition_name AND oc.relnamespace = $3"
							  "   JOIN pg_catalog.pg_inherits oi ON oi.inhrelid = oc.oid AND oi.inhparent = $2"
							  "  WHERE o.range_from < p.range_from ORDER BY o.range_from LIMIT 1)"
							  " FROM payledger.audit_partitions p"
							  " JOIN pg_catalog.pg_class c ON c.relname = p.partition_name AND c.relnamespace = $3"
							  " JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = $2"
							  " WHERE c.oid = $1",
							  ARCHIVE_NARGS, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read payledger.audit_partitions");
	if (name == NULL || SPI_processed != 1 || !month_name(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a monthly partition of payledger.payment_audit_log",
						name ? name : "the relation"),
				 errhint("Archive the months create_audit_partitions() made.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*lo = *DatumGetUUIDP(SPI_getbinval(tup, desc, ARCHIVE_RANGE_FROM, &isnull));
	*hi = *DatumGetUUIDP(SPI_getbinval(tup, desc, ARCHIVE_RANGE_TO, &isnull));
	uuid_bound(month_start(GetCurrentTimestamp(), 0), &current);
	if (memcmp(hi->data, current.data, UUID_LEN) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %s is not over yet", name),
				 errdetail("It takes events until %s.", ts_text(uuid_time(hi))),
				 errhint("Only months that have ended can be archived.")));
	older = SPI_getvalue(tup, desc, ARCHIVE_OLDER_MONTH);
	if (older != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %s is older than %s: archive it first", older, name),
				 errhint("Months are archived oldest first.")));
}

/*
 * Waits for the transactions still writing into the month qname, then
 * refuses while an outbox consumer has not acknowledged its events or when
 * its chains do not verify.
 */
static void
archive_check_month(const char *qname, const char *name)
{
	char	   *problem;

	/* transactions still writing into the month finish first */
	run(psprintf("LOCK TABLE %s IN SHARE MODE", qname), SPI_OK_UTILITY);
	run(psprintf("SELECT c.consumer FROM payledger.event_consumers c WHERE EXISTS ("
				 "SELECT 1 FROM %s a WHERE (a.era, a.txid, a.id) > (c.last_era, c.last_txid, c.last_id))"
				 " ORDER BY 1 LIMIT 1", qname), SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox consumer \"%s\" has not acknowledged the events of %s",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), name),
				 errhint("Let it read and acknowledge them (read_events, ack_events) before archiving.")));
	if (!PlAuditVerifySource(qname, &problem))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("partition %s does not verify: %s", name, problem),
				 errhint("Investigate with verify_audit_log() before archiving.")));
}

/*
 * parameters of the archive record statement, 0-based; the event count
 * statement takes the first RECORD_COUNT_NARGS
 */
enum
{
	RECORD_NAME, RECORD_FROM, RECORD_TO, RECORD_CHECKPOINT, RECORD_NARGS
};
#define RECORD_COUNT_NARGS RECORD_CHECKPOINT

/*
 * Signs the checkpoint of the month qname (named name, range [lo, hi)):
 * its chain heads with its name, range and event counts; records it in
 * payledger.audit_archives and returns it.
 */
static Jsonb *
archive_record(const char *qname, const char *name, pg_uuid_t *lo, pg_uuid_t *hi)
{
	Datum		args[RECORD_NARGS];
	Oid			types[RECORD_NARGS] = {TEXTOID, UUIDOID, UUIDOID, JSONBOID};
	Jsonb	   *extra;
	Jsonb	   *checkpoint;
	bool		isnull;

	/* what the record says of the month is signed with its chain heads */
	args[RECORD_NAME] = CStringGetTextDatum(name);
	args[RECORD_FROM] = UUIDPGetDatum(lo);
	args[RECORD_TO] = UUIDPGetDatum(hi);
	if (SPI_execute_with_args(psprintf(
								  "SELECT pg_catalog.jsonb_build_object('kind', 'archive', 'partition', $1,"
								  " 'range_from', $2, 'range_to', $3, 'event_counts',"
								  " coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
								  "  'event_type', event_type, 'success', success, 'n', n) ORDER BY event_type, success)"
								  "  FROM (SELECT event_type, success, pg_catalog.count(*) AS n FROM %s"
								  "   GROUP BY event_type, success) c), '[]'))", qname),
							  RECORD_COUNT_NARGS, types, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not count the events of %s", name);
	extra = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	checkpoint = PlAuditSourceCheckpoint(qname, extra);
	args[RECORD_CHECKPOINT] = JsonbPGetDatum(checkpoint);
	if (SPI_execute_with_args(psprintf(
								  "INSERT INTO payledger.audit_archives (partition_name, range_from, range_to,"
								  " covers_from, covers_until, row_count, event_counts, checkpoint, archived_at)"
								  " SELECT $1, $2, $3, '%s', '%s', ($4->>'rows')::bigint, $4->'event_counts',"
								  " $4, pg_catalog.clock_timestamp()",
								  ts_text(uuid_time(lo)), ts_text(uuid_time(hi))),
							  RECORD_NARGS, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the archive of %s", name);
	return checkpoint;
}

/* Detaches the month qname from the audit log (NO INHERIT). */
static void
detach_month(const char *qname)
{
	PlAllowAuditDdl(true);
	PG_TRY();
	{
		run(psprintf("ALTER TABLE %s NO INHERIT payledger.payment_audit_log", qname),
			SPI_OK_UTILITY);
	}
	PG_FINALLY();
	{
		PlAllowAuditDdl(false);
	}
	PG_END_TRY();
}

/*
 * payledger.archive_audit_partition(partition regclass) RETURNS jsonb
 *
 * For a month that has ended, the oldest one still attached: waits for the
 * transactions still writing into it, refuses while an outbox consumer has
 * not acknowledged its events or when it does not verify, then records its
 * signed checkpoint (chain heads, row count, counts by event type) in
 * payledger.audit_archives and detaches it.  Returns the checkpoint: keep
 * it with the archived table.  The detached table stays append-only in
 * schema payledger until a superuser drops it (payledger.allow_drop).
 */
PG_FUNCTION_INFO_V1(archive_audit_partition);
Datum
archive_audit_partition(PG_FUNCTION_ARGS)
{
	Oid			partition;
	Relation	parent;
	pg_uuid_t	lo;
	pg_uuid_t	hi;
	char	   *name;
	char	   *qname;
	PlPrivState priv;
	Jsonb	   *checkpoint;
	MemoryContext caller = CurrentMemoryContext;
	Jsonb	   *result;

	PlRequireArg(fcinfo, 0, "partition");
	partition = PG_GETARG_OID(0);
	parent = PlOpenTable("payment_audit_log");
	name = get_rel_name(partition);

	PlSpiBegin(&priv);
	archive_month_range(partition, RelationGetRelid(parent), name, &lo, &hi);
	qname = quote_qualified_identifier("payledger", name);
	archive_check_month(qname, name);
	checkpoint = archive_record(qname, name, &lo, &hi);
	detach_month(qname);
	result = MemoryContextAlloc(caller, VARSIZE(checkpoint));
	memcpy(result, checkpoint, VARSIZE(checkpoint));
	PlSpiEnd(&priv);
	CacheInvalidateRelcacheByRelid(RelationGetRelid(parent));
	table_close(parent, NoLock);
	PG_RETURN_JSONB_P(result);
}
