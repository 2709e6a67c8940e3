/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Every payledger.* setting, and the checks of the context settings.
 *
 * All settings, including the per-transaction context variables (who is
 * acting), are defined here before the prefix is reserved:
 * MarkGUCPrefixReserved() throws away placeholders it does not know, so a
 * setting defined anywhere after SettingsInit() would be lost.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "notify_worker.h"

bool		pl_require_idempotency_key = true;
char	   *pl_idempotency_retention = NULL;
bool		pl_allow_drop = false;
int			pl_max_legs = 1000;
char	   *pl_risk_function = NULL;
int			pl_risk_threshold = 80;
char	   *pl_actor_type = NULL;
char	   *pl_actor_id = NULL;
char	   *pl_ip_address = NULL;
char	   *pl_user_agent = NULL;
char	   *pl_device_id = NULL;
char	   *pl_correlation_id = NULL;
char	   *pl_audit_signing_key = NULL;
char	   *pl_audit_signing_key_file = NULL;
bool		pl_notify_events = true;
bool		pl_preloaded = false;
int			pl_max_metadata_bytes = 16384;
int			pl_notify_delay = 10;
int			pl_shard_id = -1;
int			pl_submit_queue_size = 1024;
int			pl_submit_timeout = 5000;
int			pl_ledger_writers = 2;

static Interval *retention_interval = NULL;

/*
 * The signing key may be set only where other roles cannot read it: the
 * server's configuration files (or ALTER SYSTEM), or a superuser's SET.
 * ALTER DATABASE/ROLE SET and a function's SET clause would store it in
 * catalogs every role can read (pg_db_role_setting, pg_proc.proconfig);
 * their checks run with PGC_S_TEST, and the stored values with the sources
 * below.  Better still, payledger.audit_signing_key_file names a file only
 * the server can read.
 */
static bool
check_signing_key(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (source == PGC_S_TEST || source == PGC_S_GLOBAL || source == PGC_S_DATABASE ||
		source == PGC_S_USER || source == PGC_S_DATABASE_USER)
	{
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("payledger.audit_signing_key can be set only in the server's configuration");
		GUC_check_errdetail("Per-database, per-role and per-function settings are readable by every role.");
		GUC_check_errhint("Set it in postgresql.conf or with ALTER SYSTEM, or use payledger.audit_signing_key_file.");
		return false;
	}
	return true;
}

/*
 * The retention must be a positive, finite interval; it is parsed once here
 * and handed to the assign hook through *extra.
 */
static bool
check_retention(char **newval, void **extra, GucSource source)
{
	Interval   *parsed = NULL;
	Interval   *copy;
	MemoryContext oldcxt = CurrentMemoryContext;

	/* interval_in has no soft-error mode on PostgreSQL 15 */
	PG_TRY();
	{
		parsed = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													   CStringGetDatum(*newval),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		parsed = NULL;
	}
	PG_END_TRY();

	if (parsed == NULL)
	{
		GUC_check_errdetail("\"%s\" is not an interval.", *newval);
		return false;
	}
	if (parsed->time < 0 || parsed->day < 0 || parsed->month < 0 ||
		(parsed->time == 0 && parsed->day == 0 && parsed->month == 0))
	{
		GUC_check_errdetail("The retention must be a positive interval.");
		return false;
	}
	copy = malloc(sizeof(Interval));
	if (copy == NULL)
		return false;
	memcpy(copy, parsed, sizeof(Interval));
	*extra = copy;
	return true;
}

static void
assign_retention(const char *newval, void *extra)
{
	retention_interval = (Interval *) extra;
}

Interval *
PlIdempotencyRetention(void)
{
	return retention_interval;
}

static bool
check_actor_type(char **newval, void **extra, GucSource source)
{
	static const char *const valid[] = {"CUSTOMER", "SYSTEM", "OPERATOR", "API"};

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	for (int i = 0; i < (int) lengthof(valid); i++)
		if (strcmp(*newval, valid[i]) == 0)
			return true;
	GUC_check_errdetail("payledger.actor_type must be CUSTOMER, SYSTEM, OPERATOR or API.");
	return false;
}

static bool
check_correlation_id(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!PlParseUuid(*newval, NULL))
	{
		GUC_check_errdetail("payledger.correlation_id must be a UUID.");
		return false;
	}
	return true;
}

static bool
check_ip_address(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (PlMaskIp(*newval) == NULL)
	{
		GUC_check_errdetail("payledger.ip_address must be an IPv4 or IPv6 address.");
		return false;
	}
	return true;
}

/*
 * A context value set before this library was loaded in the session is a
 * placeholder that PostgreSQL checks only now, at load, and on failure it
 * merely warns and falls back to the default.  The audit row would then name
 * the wrong actor, so such a value is remembered here and refused (22023) by
 * PlCheckContext() until the setting is assigned again or the transaction
 * that loaded the library ends.
 */
typedef enum ContextSetting
{
	CTX_ACTOR_TYPE,
	CTX_IP_ADDRESS,
	CTX_CORRELATION_ID,
	CTX_CHECKED
} ContextSetting;

static char *rejected_value[CTX_CHECKED];
static const char *const checked_name[CTX_CHECKED] = {
	"payledger.actor_type", "payledger.ip_address", "payledger.correlation_id"
};

static void
forget_rejected(ContextSetting which)
{
	if (rejected_value[which])
		pfree(rejected_value[which]);
	rejected_value[which] = NULL;
}

static void
assign_actor_type(const char *newval, void *extra)
{
	forget_rejected(CTX_ACTOR_TYPE);
}

static void
assign_ip_address(const char *newval, void *extra)
{
	forget_rejected(CTX_IP_ADDRESS);
}

static void
assign_correlation_id(const char *newval, void *extra)
{
	forget_rejected(CTX_CORRELATION_ID);
}

static void
forget_rejected_at_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		for (int i = 0; i < CTX_CHECKED; i++)
			forget_rejected((ContextSetting) i);
}

/*
 * The context an audit row will carry: 22023 while a value set before the
 * load is outstanding, and the actor id, stored as given, must not carry a
 * card number.
 */
void
PlCheckContext(void)
{
	for (int i = 0; i < CTX_CHECKED; i++)
		if (rejected_value[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for parameter \"%s\": \"%s\"",
							checked_name[i], rejected_value[i]),
					 errdetail("The value was set before payledger was loaded in this session, so it could not be checked when it was set."),
					 errhint("Set %s again to a valid value; session_preload_libraries = 'payledger' checks every value when it is set.",
							 checked_name[i])));
	if (pl_actor_id != NULL && pl_actor_id[0] != '\0')
		PlRejectPanInText("payledger.actor_id", pl_actor_id);
}

static void
define_context_string(const char *name, const char *desc, const char *boot,
					  char **var, GucStringCheckHook check,
					  GucStringAssignHook assign, int which)
{
	const char *placeholder = GetConfigOption(name, true, false);
	char	   *before = NULL;

	if (placeholder && placeholder[0] != '\0' && which >= 0)
		before = MemoryContextStrdup(TopMemoryContext, placeholder);
	DefineCustomStringVariable(name, desc, NULL, var, boot, PGC_USERSET, 0,
							   check, assign, NULL);
	if (before && strcmp(before, *var ? *var : "") != 0)
		rejected_value[which] = before;
	else if (before)
		pfree(before);
}

/* Limits and switches of the money-moving calls. */
static void
define_ledger_settings(void)
{
	DefineCustomBoolVariable("payledger.require_idempotency_key",
							 gettext_noop("Refuses money-moving calls that carry no idempotency key."),
							 NULL, &pl_require_idempotency_key, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("payledger.idempotency_retention",
							   gettext_noop("How long idempotency keys are kept before purge_idempotency_keys() may delete them."),
							   NULL, &pl_idempotency_retention, "7 days",
							   PGC_SUSET, 0, check_retention, assign_retention, NULL);
	DefineCustomBoolVariable("payledger.allow_drop",
							 gettext_noop("Allows DROP EXTENSION payledger while the ledger holds data."),
							 NULL, &pl_allow_drop, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.max_legs",
							gettext_noop("Largest number of legs transfer_legs() accepts."),
							NULL, &pl_max_legs, 1000, 1, 100000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.max_metadata_bytes",
							gettext_noop("Largest metadata, as jsonb text, that any payledger call accepts."),
							NULL, &pl_max_metadata_bytes, 16384, 2, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.shard_id",
							gettext_noop("Shard number stamped into the last byte of every id this database makes (-1: none)."),
							gettext_noop("Set per shard database (ALTER DATABASE ... SET) so that a router finds the shard that owns an id from the id alone."),
							&pl_shard_id, -1, -1, 255,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The risk hook of authorize_payment(). */
static void
define_risk_settings(void)
{
	DefineCustomStringVariable("payledger.risk_function",
							   gettext_noop("Function that scores a payment from 0 to 100 before authorization."),
							   NULL, &pl_risk_function, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.risk_threshold",
							gettext_noop("Risk score at or above which authorization fails."),
							NULL, &pl_risk_threshold, 80, 0, 101,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The key that signs audit checkpoints. */
static void
define_audit_settings(void)
{
	DefineCustomStringVariable("payledger.audit_signing_key",
							   gettext_noop("Secret for the HMAC that signs audit_checkpoint() results."),
							   NULL, &pl_audit_signing_key, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, check_signing_key,
							   NULL, NULL);
	DefineCustomStringVariable("payledger.audit_signing_key_file",
							   gettext_noop("File holding the secret for the HMAC that signs audit checkpoints; it must be readable by the server's user only. Takes precedence over payledger.audit_signing_key."),
							   NULL, &pl_audit_signing_key_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* The NOTIFY payledger_events of event-writing commits. */
static void
define_notify_settings(void)
{
	DefineCustomBoolVariable("payledger.notify_events",
							 gettext_noop("Sends NOTIFY payledger_events on commit of every transaction that wrote events."),
							 NULL, &pl_notify_events, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.notify_delay",
							gettext_noop("Longest time the notify worker lets pass between an event-writing commit and its NOTIFY payledger_events."),
							gettext_noop("One NOTIFY stands for every commit since the last; used when payledger is in shared_preload_libraries."),
							&pl_notify_delay, 10, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

/* The ledger writer of submit_transfer (ledger_writer.c). */
static void
define_submit_settings(void)
{
	/* a library loaded after startup may not define a postmaster setting */
	DefineCustomIntVariable("payledger.submit_queue_size",
							gettext_noop("Most submit_transfer calls that may wait for the ledger writer at once."),
							gettext_noop("Each waiting call holds one slot of shared memory; used when payledger is in shared_preload_libraries."),
							&pl_submit_queue_size, 1024, 1, 65536,
							pl_preloaded ? PGC_POSTMASTER : PGC_INTERNAL, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.submit_timeout",
							gettext_noop("Longest time submit_transfer waits for a free queue slot before it raises PY009."),
							NULL, &pl_submit_timeout, 5000, 0, PG_INT32_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("payledger.ledger_writers",
							gettext_noop("Ledger writers (background workers) that apply a database's submissions, each in batches of its own."),
							gettext_noop("Two let one batch be applied while the other's commit is flushed; used when payledger is in shared_preload_libraries."),
							&pl_ledger_writers, 2, 1, PL_MAX_LEDGER_WRITERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* The per-transaction context that goes into the audit log. */
static void
define_context_settings(void)
{
	define_context_string("payledger.actor_type",
						  gettext_noop("Kind of actor behind this transaction: CUSTOMER, SYSTEM, OPERATOR or API."),
						  "SYSTEM", &pl_actor_type, check_actor_type, assign_actor_type, CTX_ACTOR_TYPE);
	define_context_string("payledger.actor_id",
						  gettext_noop("Actor behind this transaction (default: current_user)."),
						  "", &pl_actor_id, NULL, NULL, -1);
	define_context_string("payledger.ip_address",
						  gettext_noop("Client IP address; the audit log stores it masked."),
						  "", &pl_ip_address, check_ip_address, assign_ip_address, CTX_IP_ADDRESS);
	define_context_string("payledger.user_agent",
						  gettext_noop("Client user agent; the audit log stores its SHA-256."),
						  "", &pl_user_agent, NULL, NULL, -1);
	define_context_string("payledger.device_id",
						  gettext_noop("Client device id; the audit log stores its SHA-256."),
						  "", &pl_device_id, NULL, NULL, -1);
	define_context_string("payledger.correlation_id",
						  gettext_noop("UUID that ties the events of one business flow together."),
						  "", &pl_correlation_id, check_correlation_id, assign_correlation_id,
						  CTX_CORRELATION_ID);
}

/*
 * Defines every payledger.* setting, then reserves the prefix: a name left
 * undefined here would be deleted as a placeholder and refuse SET.
 */
void
SettingsInit(void)
{
	pl_preloaded = process_shared_preload_libraries_in_progress;
	define_ledger_settings();
	define_risk_settings();
	define_audit_settings();
	define_notify_settings();
	define_submit_settings();
	define_context_settings();
	RegisterXactCallback(forget_rejected_at_end, NULL);

	MarkGUCPrefixReserved("payledger");
}
