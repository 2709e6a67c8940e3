/*-------------------------------------------------------------------------
 *
 * payments.c
 *	  Payments: create, authorize, capture (with splits), void, refund,
 *	  fail, expire authorizations; the guard of payledger.payments.
 *
 * A payment moves money only through the ledger, in the same transaction
 * as its state change: authorization is a hold from the customer's source
 * account to the merchant account, capture posts it (a partial capture
 * releases the rest) and moves the splits out of the merchant account,
 * a void releases the hold, a refund is a transfer from the merchant
 * account back to the source.  Every state change goes through the state
 * machine "payment" (state_machine.c), for these functions and for a
 * hand-written UPDATE alike; the amounts and accounts of a payment can only
 * be changed by these functions (guard_payments).
 *
 * The functions read, lock and rewrite payment rows directly (direct.c), not
 * through SPI: a lifecycle would otherwise run a dozen statements, each with
 * an executor start and, for the UPDATEs, the row triggers.  store_payment()
 * therefore does itself what the triggers do for a hand-written UPDATE:
 * checks the transition against the machine, advances version, stamps
 * updated_at.
 *
 * Idempotency keys of payment functions are scoped to the merchant.  Locks
 * follow posting.c: key, then the payment row, then the hold, then the
 * accounts in id order.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/payments.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"
#include "layouts.h"
#include "spi_plans.h"
#include "idempotency.h"
#include "audit.h"
#include "state_machine.h"
#include "pipeline.h"
#include "access.h"
#include "ledger.h"
#include "risk.h"

typedef struct Payment
{
	pg_uuid_t	id;
	pg_uuid_t	merchant_id;
	pg_uuid_t	customer_id;
	int64		amount;
	char	   *currency;
	const char *state;
	pg_uuid_t	source_account;
	pg_uuid_t	merchant_account;
	int64		captured;
	int64		refunded;
	int64		disputed;
	int64		fees;
	bool		has_hold;
	pg_uuid_t	hold_id;
	pg_uuid_t	correlation_id;
	const char *state_before_dispute;
	bool		has_dispute_hold;
	pg_uuid_t	dispute_hold_id;
	int64		version;
	HeapTuple	tuple;			/* the locked row, which store_payment replaces */
} Payment;

/*
 * The labels of payledger.payment_state and their pg_enum OIDs, looked up
 * once per backend (per type OID: a re-created extension has a new type),
 * so that reading and writing a state costs no catalog lookup.
 */
static const char *const payment_states[] = {
	"pending", "authorized", "captured", "partially_refunded", "refunded", "settled",
	"failed", "voided", "expired", "disputed", "charged_back"
};
static Oid	state_typid = InvalidOid;
static Oid	state_oids[lengthof(payment_states)];

static void
load_states(Oid typid)
{
	if (typid == state_typid)
		return;
	for (int i = 0; i < (int) lengthof(payment_states); i++)
	{
		state_oids[i] = GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
										ObjectIdGetDatum(typid),
										CStringGetDatum(payment_states[i]));
		if (!OidIsValid(state_oids[i]))
			elog(ERROR, "payment_state has no value \"%s\"", payment_states[i]);
	}
	state_typid = typid;
}

/* the pg_enum OID of a state (22P02 for a label that is no state) */
static Oid
state_oid(Oid typid, const char *label)
{
	load_states(typid);
	for (int i = 0; i < (int) lengthof(payment_states); i++)
		if (strcmp(payment_states[i], label) == 0)
			return state_oids[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input value for enum payledger.payment_state: \"%s\"", label)));
	return InvalidOid;
}

/* the label of a state column's value, a constant string */
static const char *
state_label(Oid typid, Datum d)
{
	load_states(typid);
	for (int i = 0; i < (int) lengthof(payment_states); i++)
		if (state_oids[i] == DatumGetObjectId(d))
			return payment_states[i];
	elog(ERROR, "unknown payment_state value %u", DatumGetObjectId(d));
	return NULL;
}

static Relation
open_payments(void)
{
	return PlOpenTable("payments");
}

static pg_uuid_t
uuid_col(HeapTuple tup, TupleDesc desc, int att, bool *isnull)
{
	pg_uuid_t	u;
	Datum		d = heap_getattr(tup, att, desc, isnull);

	if (*isnull)
		memset(&u, 0, sizeof(u));
	else
		u = *DatumGetUUIDP(d);
	return u;
}

static int64
int64_col(HeapTuple tup, TupleDesc desc, int att)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, att, desc, &isnull));
}

/* Locks and reads a payment (inside PlSpiBegin); PY005 when unknown. */
static void
lock_payment(const pg_uuid_t *id, Payment *p)
{
	Relation	rel = open_payments();
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			typid = TupleDescAttr(desc, Anum_payments_state - 1)->atttypid;
	HeapTuple	tup;
	bool		isnull;
	Datum		d;

	/* this call's and earlier calls' changes must be seen */
	CommandCounterIncrement();
	tup = PlLockRow(rel, id, LockTupleExclusive);
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("payment %s does not exist", PlUuidText(id))));
	p->tuple = tup;
	p->id = *id;
	p->merchant_id = uuid_col(tup, desc, Anum_payments_merchant_id, &isnull);
	p->customer_id = uuid_col(tup, desc, Anum_payments_customer_id, &isnull);
	p->amount = int64_col(tup, desc, Anum_payments_amount);
	p->currency = TextDatumGetCString(heap_getattr(tup, Anum_payments_currency, desc, &isnull));
	p->state = state_label(typid, heap_getattr(tup, Anum_payments_state, desc, &isnull));
	p->source_account = uuid_col(tup, desc, Anum_payments_source_account, &isnull);
	p->merchant_account = uuid_col(tup, desc, Anum_payments_merchant_account, &isnull);
	p->captured = int64_col(tup, desc, Anum_payments_captured_amount);
	p->refunded = int64_col(tup, desc, Anum_payments_refunded_amount);
	p->disputed = int64_col(tup, desc, Anum_payments_disputed_amount);
	p->fees = int64_col(tup, desc, Anum_payments_fee_amount);
	p->hold_id = uuid_col(tup, desc, Anum_payments_hold_id, &isnull);
	p->has_hold = !isnull;
	p->correlation_id = uuid_col(tup, desc, Anum_payments_correlation_id, &isnull);
	d = heap_getattr(tup, Anum_payments_state_before_dispute, desc, &isnull);
	p->state_before_dispute = isnull ? NULL : state_label(typid, d);
	p->dispute_hold_id = uuid_col(tup, desc, Anum_payments_dispute_hold_id, &isnull);
	p->has_dispute_hold = !isnull;
	p->version = int64_col(tup, desc, Anum_payments_version);
	table_close(rel, NoLock);
}

/* The merchant of a payment, read without a lock: the idempotency scope. */
static pg_uuid_t
payment_merchant(const pg_uuid_t *id)
{
	Relation	rel = open_payments();
	HeapTuple	tup = PlFetchRow(rel, id);
	pg_uuid_t	merchant;
	bool		isnull;

	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("payment %s does not exist", PlUuidText(id))));
	merchant = uuid_col(tup, RelationGetDescr(rel), Anum_payments_merchant_id, &isnull);
	heap_freetuple(tup);
	table_close(rel, NoLock);
	return merchant;
}

/*
 * the most columns store_payment() writes: state, the four amounts that
 * change, hold_id, version, updated_at, authorized_at and captured_at
 */
enum
{
	STORE_MAX_COLS = 10
};

/*
 * Writes the payment's state and amounts back into its locked row.  The
 * row is replaced directly, so this does what the row triggers do for a
 * hand-written UPDATE: the state machine "payment" checks the transition
 * (payments_1_state), version grows by one and updated_at is stamped
 * (payments_2_guard).  No index column changes, so with room on the page
 * (fillfactor) it is a HOT update.
 */
static void
store_payment(Payment *p, const char *state, TimestampTz now)
{
	Relation	rel = open_payments();
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			typid = TupleDescAttr(desc, Anum_payments_state - 1)->atttypid;
	int			cols[STORE_MAX_COLS];
	Datum		values[STORE_MAX_COLS];
	bool		nulls[STORE_MAX_COLS] = {false};
	int			n = 0;
	HeapTuple	newtup;

	if (strcmp(p->state, state) != 0)
		PlCheckTransition("payment", p->state, state);
	cols[n] = Anum_payments_state;
	values[n++] = ObjectIdGetDatum(state_oid(typid, state));
	cols[n] = Anum_payments_captured_amount;
	values[n++] = Int64GetDatum(p->captured);
	cols[n] = Anum_payments_refunded_amount;
	values[n++] = Int64GetDatum(p->refunded);
	cols[n] = Anum_payments_disputed_amount;
	values[n++] = Int64GetDatum(p->disputed);
	cols[n] = Anum_payments_fee_amount;
	values[n++] = Int64GetDatum(p->fees);
	cols[n] = Anum_payments_hold_id;
	nulls[n] = !p->has_hold;
	values[n++] = p->has_hold ? UUIDPGetDatum(&p->hold_id) : (Datum) 0;
	cols[n] = Anum_payments_version;
	values[n++] = Int64GetDatum(p->version + 1);
	cols[n] = Anum_payments_updated_at;
	values[n++] = TimestampTzGetDatum(now);
	/* entering authorized or captured stamps when */
	if (strcmp(state, "authorized") == 0)
	{
		cols[n] = Anum_payments_authorized_at;
		values[n++] = TimestampTzGetDatum(now);
	}
	if (strcmp(state, "captured") == 0)
	{
		cols[n] = Anum_payments_captured_at;
		values[n++] = TimestampTzGetDatum(now);
	}
	Assert(n <= STORE_MAX_COLS);
	newtup = heap_modify_tuple_by_cols(p->tuple, desc, n, cols, values, nulls);
	PlDirectUpdate(rel, p->tuple, newtup);
	table_close(rel, NoLock);
	p->tuple = newtup;
	p->version++;
	p->state = state_label(typid, ObjectIdGetDatum(state_oid(typid, state)));
}

static void
payment_event(Payment *p, const char *type, const char *previous, const char *new_state,
			  int64 amount, bool success, const char *reason, const char *key,
			  TimestampTz now)
{
	PlAuditEvent ev;

	PlAuditInit(&ev, type, now);
	ev.previous_state = previous;
	ev.new_state = new_state;
	ev.payment_id = &p->id;
	ev.correlation_id = &p->correlation_id;
	ev.merchant_id = &p->merchant_id;
	ev.customer_id = &p->customer_id;
	ev.account_id = &p->source_account;
	ev.counterparty_account_id = &p->merchant_account;
	ev.has_amount = true;
	ev.amount = amount;
	ev.currency = p->currency;
	ev.success = success;
	ev.reason_code = reason;
	ev.idempotency_key = key;
	PlAuditWrite(&ev);
}

/* metadata of the transfers a payment makes: {"payment_id": id} */
static Jsonb *
payment_ref(Payment *p)
{
	return PlJsonbPair("payment_id", PlUuidText(&p->id));
}

static Datum
state_datum(FunctionCallInfo fcinfo, const char *state)
{
	return ObjectIdGetDatum(state_oid(get_fn_expr_rettype(fcinfo->flinfo), state));
}

/* PY001 unless the payment is in one of the states given */
static void
require_state(Payment *p, const char *operation, const char *const *allowed, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(p->state, allowed[i]) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
			 errmsg("cannot %s a payment that is %s", operation, p->state),
			 errdetail("Payment %s is in state \"%s\".", PlUuidText(&p->id), p->state)));
}

typedef struct Split
{
	pg_uuid_t	account;
	int64		amount;
} Split;

/*
 * A keyed call on one payment, run as a request (pipeline.c): the key is
 * scoped by the payment's merchant, found once the request runs, before
 * the key is locked; the result id is the payment, the stored status its
 * new state.  The fields after req are the arguments of the operations
 * that take them.
 */
typedef struct PaymentCall
{
	pg_uuid_t	payment_id;
	pg_uuid_t	merchant;
	PlRequest	req;
	bool		has_amount;
	int64		amount;
	char	   *why;			/* reason given, masked */
	bool		won;
	TimestampTz expires_at;
	Jsonb	   *splits_json;
	Split	   *splits;
	int			nsplits;
	int64		split_total;
} PaymentCall;

/* the prepare step of a payment call: PY005 for an unknown payment */
static void
find_payment_scope(PlRequest *req)
{
	PaymentCall *call = req->arg;

	call->merchant = payment_merchant(&call->payment_id);
	/* another merchant's payment does not exist for a scoped role */
	if (!PlMerchantVisible(&call->merchant))
		ereport(ERROR,
				(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
				 errmsg("payment %s does not exist", PlUuidText(&call->payment_id))));
}

static void
payment_call_init(PaymentCall *call, const char *operation, PlRequestStep work)
{
	memset(call, 0, sizeof(PaymentCall));
	PlRequestInit(&call->req, operation, &call->merchant, NULL, work, call);
	call->req.prepare = find_payment_scope;
}

/*
 * Runs a payment call whose own arguments are checked and hashed (h): the
 * payment id and the key (argument key_arg), then the pipeline.  Returns
 * the payment's new state, or the stored one on a replay.
 */
static Datum
run_payment_call(FunctionCallInfo fcinfo, PaymentCall *call, int key_arg, PlHasher *h)
{
	PlRequireArg(fcinfo, 0, "payment_id");
	call->payment_id = *PG_GETARG_UUID_P(0);
	call->req.key = PlKeyArg(fcinfo, key_arg, call->req.operation);
	PlHashUuid(h, &call->payment_id);
	PlHashEnd(h, call->req.hash);
	PlRunRequest(&call->req);
	return state_datum(fcinfo, call->req.status);
}

/* the outcome of a payment call: the payment's new state */
static void
payment_outcome(PaymentCall *call, const char *state, const char *reason, TimestampTz now)
{
	PlRequestOutcome(&call->req, &call->payment_id, state, reason, now);
}

/*
 * The last step of every payment call: its audit row (of type, from
 * previous to state) and its outcome.  declined, a reason code, marks the
 * call failed or declined and is the outcome's reason; otherwise why (the
 * caller's reason for a refund or dispute, or NULL) goes with the audit row.
 */
static void
finish_payment_call(PaymentCall *call, Payment *p, const char *type, const char *previous,
					const char *state, int64 amount, const char *declined, const char *why,
					TimestampTz now)
{
	payment_event(p, type, previous, state, amount, declined == NULL,
				  declined ? declined : why, call->req.key, now);
	payment_outcome(call, state, declined, now);
}

/*
 * The last step of a payment call that changes the payment's state: the
 * row written (store_payment, which stamps authorized_at or captured_at
 * when it becomes authorized or captured), then its audit row, from the
 * state it had, and the outcome (finish_payment_call).
 */
static void
move_payment(PaymentCall *call, Payment *p, const char *type, const char *state,
			 int64 amount, const char *declined, const char *why, TimestampTz now)
{
	const char *previous = p->state;

	store_payment(p, state, now);
	finish_payment_call(call, p, type, previous, state, amount, declined, why, now);
}

/* a new payment as the caller describes it */
typedef struct NewPayment
{
	pg_uuid_t  *merchant;
	pg_uuid_t  *customer;
	int64		amount;
	char	   *currency;
	pg_uuid_t  *source;
	pg_uuid_t  *dest;
	Jsonb	   *metadata;		/* masked */
} NewPayment;

/* (4) PY005 and (5) PY004: both accounts exist and hold the currency */
static void
check_payment_accounts(const NewPayment *np)
{
	Relation	accounts = PlOpenAccounts();
	pg_uuid_t	ids[2] = {*np->source, *np->dest};

	for (int i = 0; i < 2; i++)
	{
		HeapTuple	tup = PlFetchRow(accounts, &ids[i]);
		bool		isnull;

		if (tup == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_NOT_FOUND),
					 errmsg("account %s does not exist", PlUuidText(&ids[i]))));
		PlRejectSubBalance(&ids[i]);
		if (strcmp(TextDatumGetCString(heap_getattr(tup, Anum_accounts_currency,
													 RelationGetDescr(accounts), &isnull)),
				   np->currency) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_CURRENCY_MISMATCH),
					 errmsg("account %s does not hold %s", PlUuidText(&ids[i]), np->currency)));
		heap_freetuple(tup);
	}
	table_close(accounts, NoLock);
}

/* Inserts the row of a new, pending payment. */
static void
insert_payment(const Payment *p, Jsonb *metadata, TimestampTz now)
{
	Relation	rel = open_payments();
	Oid			typid = TupleDescAttr(RelationGetDescr(rel), Anum_payments_state - 1)->atttypid;
	Datum		values[Natts_payments];
	bool		nulls[Natts_payments];

	memset(nulls, 0, sizeof(nulls));
	values[Anum_payments_id - 1] = UUIDPGetDatum(&p->id);
	values[Anum_payments_merchant_id - 1] = UUIDPGetDatum(&p->merchant_id);
	values[Anum_payments_customer_id - 1] = UUIDPGetDatum(&p->customer_id);
	values[Anum_payments_amount - 1] = Int64GetDatum(p->amount);
	values[Anum_payments_currency - 1] = CStringGetTextDatum(p->currency);
	values[Anum_payments_state - 1] = ObjectIdGetDatum(state_oid(typid, "pending"));
	values[Anum_payments_source_account - 1] = UUIDPGetDatum(&p->source_account);
	values[Anum_payments_merchant_account - 1] = UUIDPGetDatum(&p->merchant_account);
	values[Anum_payments_captured_amount - 1] = Int64GetDatum(0);
	values[Anum_payments_refunded_amount - 1] = Int64GetDatum(0);
	values[Anum_payments_disputed_amount - 1] = Int64GetDatum(0);
	values[Anum_payments_fee_amount - 1] = Int64GetDatum(0);
	nulls[Anum_payments_hold_id - 1] = true;
	nulls[Anum_payments_state_before_dispute - 1] = true;
	values[Anum_payments_correlation_id - 1] = UUIDPGetDatum(&p->correlation_id);
	values[Anum_payments_version - 1] = Int64GetDatum(1);
	values[Anum_payments_metadata - 1] = JsonbPGetDatum(metadata);
	nulls[Anum_payments_authorized_at - 1] = true;
	nulls[Anum_payments_captured_at - 1] = true;
	nulls[Anum_payments_settlement_id - 1] = true;
	nulls[Anum_payments_dispute_hold_id - 1] = true;
	values[Anum_payments_created_at - 1] = TimestampTzGetDatum(now);
	values[Anum_payments_updated_at - 1] = TimestampTzGetDatum(now);
	PlDirectInsert(rel, values, nulls);
	table_close(rel, NoLock);
}

/* The work of create_payment: the accounts, the row, PAYMENT_CREATED. */
static void
create_payment_work(PlRequest *req)
{
	NewPayment *np = req->arg;
	Payment		p;
	TimestampTz now;

	check_payment_accounts(np);
	memset(&p, 0, sizeof(p));

	/*
	 * created_at is read before the id is minted, so that the id's time is
	 * never before it: list_payments turns since into a lower bound on ids.
	 */
	now = GetCurrentTimestamp();
	PlUuidV7(&p.id);
#ifdef USE_ASSERT_CHECKING
	{
		pg_uuid_t	floor;

		Assert(!PlUuidV7Floor(now, &floor) || memcmp(p.id.data, floor.data, 6) >= 0);
	}
#endif
	p.merchant_id = *np->merchant;
	p.customer_id = *np->customer;
	p.amount = np->amount;
	p.currency = np->currency;
	p.source_account = *np->source;
	p.merchant_account = *np->dest;
	if (pl_correlation_id == NULL || !PlParseUuid(pl_correlation_id, &p.correlation_id))
		PlUuidV7(&p.correlation_id);
	insert_payment(&p, np->metadata, now);
	payment_event(&p, "PAYMENT_CREATED", NULL, "pending", p.amount, true, NULL, req->key, now);
	PlRequestOutcome(req, &p.id, "pending", NULL, now);
}

/*
 * payledger.create_payment(merchant_id uuid, customer_id uuid, amount bigint,
 *		currency text, source_account uuid, merchant_account uuid,
 *		idempotency_key text, metadata jsonb DEFAULT '{}') RETURNS uuid
 *
 * A new payment in state pending.  Its correlation id, used by all its
 * events, is the caller's payledger.correlation_id or a new UUIDv7.
 */
PG_FUNCTION_INFO_V1(create_payment);
Datum
create_payment(PG_FUNCTION_ARGS)
{
	NewPayment	np;
	PlHasher   *h;
	PlRequest	req;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	PlRequireArg(fcinfo, 0, "merchant_id");
	PlRequireArg(fcinfo, 1, "customer_id");
	PlRequireArg(fcinfo, 2, "amount");
	PlRequireArg(fcinfo, 3, "currency");
	PlRequireArg(fcinfo, 4, "source_account");
	PlRequireArg(fcinfo, 5, "merchant_account");
	np.merchant = PG_GETARG_UUID_P(0);
	np.customer = PG_GETARG_UUID_P(1);
	np.amount = PG_GETARG_INT64(2);
	np.currency = text_to_cstring(PG_GETARG_TEXT_PP(3));
	np.source = PG_GETARG_UUID_P(4);
	np.dest = PG_GETARG_UUID_P(5);
	np.metadata = PG_ARGISNULL(7) ? PlEmptyJsonb() : PG_GETARG_JSONB_P(7);
	PlCheckAmount(np.amount);
	PlCheckCurrency(np.currency);
	if (memcmp(np.source->data, np.dest->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source_account and merchant_account must differ")));
	PlCheckMetadata("payment metadata", np.metadata);
	PlRequireMerchant(np.merchant, "create payments");
	PlRequestInit(&req, "create_payment", np.merchant, PlKeyArg(fcinfo, 6, "create_payment"),
				  create_payment_work, &np);

	h = PlHashBegin("create_payment");
	PlHashUuid(h, np.customer);
	PlHashInt64(h, np.amount);
	PlHashText(h, np.currency);
	PlHashUuid(h, np.source);
	PlHashUuid(h, np.dest);
	PlHashJsonb(h, np.metadata);
	PlHashEnd(h, req.hash);
	np.metadata = PlMaskJsonb(np.metadata);

	PlRunRequest(&req);
	*result = req.result_id;
	PG_RETURN_UUID_P(result);
}

/* The risk hook's verdict on the payment's locked row (risk.c). */
static bool
risk_says_no(Payment *p)
{
	Relation	rel = open_payments();
	bool		fraud = PlRiskSaysNo(p->tuple, RelationGetDescr(rel));

	table_close(rel, NoLock);
	return fraud;
}

/*
 * The work of authorize_payment: pending -> authorized with a hold from
 * the source to the merchant account, or -> failed (the risk hook, or a
 * decline of the hold).
 */
static void
authorize_work(PlRequest *req)
{
	static const char *const from[] = {"pending"};
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *reason = NULL;
	pg_uuid_t	hold_id;

	lock_payment(&call->payment_id, &p);
	require_state(&p, "authorize", from, lengthof(from));
	if (risk_says_no(&p))
		reason = "FRAUD_SUSPECTED";
	else
	{
		PlUuidV7(&hold_id);
		/* the hold names its payment, so expire_holds() leaves it alone */
		reason = PlHoldCreate(&hold_id, &p.source_account, &p.merchant_account, p.amount,
							  p.currency, call->expires_at, req->key, req->hash,
							  payment_ref(&p), &p.correlation_id);
		if (reason == NULL)
		{
			p.has_hold = true;
			p.hold_id = hold_id;
		}
	}
	now = GetCurrentTimestamp();
	if (reason == NULL)
	{
		move_payment(call, &p, "PAYMENT_AUTHORIZED", "authorized", p.amount, NULL, NULL, now);
		return;
	}
	move_payment(call, &p, "PAYMENT_FAILED", "failed", p.amount, reason, NULL, now);
}

/*
 * payledger.authorize_payment(payment_id uuid, idempotency_key text,
 *		expires_in interval DEFAULT '7 days') RETURNS payledger.payment_state
 *
 * pending -> authorized (a hold from the source to the merchant account),
 * or -> failed with the reason in the audit log (INSUFFICIENT_FUNDS,
 * ACCOUNT_FROZEN, FRAUD_SUSPECTED, ...).
 */
PG_FUNCTION_INFO_V1(authorize_payment);
Datum
authorize_payment(PG_FUNCTION_ARGS)
{
	PaymentCall call;
	PlHasher   *h = PlHashBegin("authorize_payment");
	Interval   *expires_in;
	TimestampTz now;

	payment_call_init(&call, "authorize_payment", authorize_work);
	PlRequireArg(fcinfo, 2, "expires_in");
	expires_in = PG_GETARG_INTERVAL_P(2);
	now = GetCurrentTimestamp();
	call.expires_at = PlExpiryAfter(now, expires_in);
	PlHashInterval(h, expires_in);
	return run_payment_call(fcinfo, &call, 1, h);
}

static Split *
parse_splits(Jsonb *splits, int *n, int64 *total)
{
	Split	   *out;
	int			count;

	if (!JB_ROOT_IS_ARRAY(splits) || JB_ROOT_IS_SCALAR(splits))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("splits must be a JSON array of {\"account\": uuid, \"amount\": n}")));
	count = JB_ROOT_COUNT(splits);
	out = palloc(sizeof(Split) * Max(count, 1));
	*total = 0;
	for (int i = 0; i < count; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&splits->root, i);
		JsonbValue	k;
		JsonbValue *acct;
		JsonbValue *amt;
		char	   *s;

		if (elem == NULL || elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data) ||
			JsonContainerSize(elem->val.binary.data) != 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed splits"),
					 errdetail("splits[%d] must be {\"account\": uuid, \"amount\": n}.", i)));
		k.type = jbvString;
		k.val.string.val = "account";
		k.val.string.len = 7;
		acct = findJsonbValueFromContainer(elem->val.binary.data, JB_FOBJECT, &k);
		k.val.string.val = "amount";
		k.val.string.len = 6;
		amt = findJsonbValueFromContainer(elem->val.binary.data, JB_FOBJECT, &k);
		if (acct == NULL || acct->type != jbvString ||
			!PlParseUuid(pnstrdup(acct->val.string.val, acct->val.string.len), &out[i].account))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed splits"),
					 errdetail("splits[%d]: \"account\" must be a uuid.", i)));
		if (amt == NULL || amt->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed splits"),
					 errdetail("splits[%d]: \"amount\" must be a positive integer.", i)));
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amt->val.numeric)));
		{
			char	   *end;

			errno = 0;
			out[i].amount = strtoll(s, &end, 10);
			if (errno != 0 || *end != '\0' || out[i].amount <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("malformed splits"),
						 errdetail("splits[%d]: \"amount\" must be a positive integer.", i)));
		}
		if (pg_add_s64_overflow(*total, out[i].amount, total))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("the splits' total would overflow bigint")));
	}
	*n = count;
	return out;
}

/* 22023 for a capture above the authorization or splits it cannot carry */
static void
check_capture(PaymentCall *call, Payment *p, int64 captured)
{
	if (captured > p->amount)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("capture amount exceeds what is authorized"),
				 errdetail("Asked to capture " INT64_FORMAT "; " INT64_FORMAT " is left to capture.",
						   captured, p->amount)));
	for (int i = 0; i < call->nsplits; i++)
		if (memcmp(call->splits[i].account.data, p->merchant_account.data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed splits"),
					 errdetail("splits[%d] pays the merchant account itself.", i)));
	if (call->split_total > captured)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("splits exceed the captured amount"),
				 errdetail("Splits total " INT64_FORMAT "; " INT64_FORMAT " is captured.",
						   call->split_total, captured)));
}

/* Pays each split out of the merchant account; a decline rolls all back. */
static void
pay_splits(PaymentCall *call, Payment *p)
{
	for (int i = 0; i < call->nsplits; i++)
	{
		pg_uuid_t	split_id;
		const char *declined;

		PlUuidV7(&split_id);
		declined = PlPostTransfer(&split_id, "split", &p->merchant_account,
								  &call->splits[i].account, call->splits[i].amount,
								  p->currency, NULL, call->req.hash, payment_ref(p),
								  &p->correlation_id, NULL);
		if (declined != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("split %d cannot be paid: %s", i, declined),
					 errdetail("The capture and all its splits are rolled back.")));
	}
}

/*
 * The work of capture_payment: authorized -> captured, the hold posted (in
 * full or in part) and the splits paid; -> expired when the hold ran out.
 */
static void
capture_work(PlRequest *req)
{
	static const char *const from[] = {"authorized"};
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *reason;
	int64		captured;
	pg_uuid_t  *split_ids;

	lock_payment(&call->payment_id, &p);
	require_state(&p, "capture", from, lengthof(from));
	captured = call->has_amount ? call->amount : p.amount;
	check_capture(call, &p, captured);

	/* the hold, then its accounts and the splits' in one sorted pass */
	split_ids = palloc(sizeof(pg_uuid_t) * Max(call->nsplits, 1));
	for (int i = 0; i < call->nsplits; i++)
		split_ids[i] = call->splits[i].account;
	now = GetCurrentTimestamp();
	reason = PlHoldSettle(&p.hold_id, true, true, captured, req->key, req->hash, now,
						  split_ids, call->nsplits,
						  call->nsplits > 0 ? PL_SETTLE_TARGET_DEBITED : 0);
	if (reason != NULL && strncmp(reason, "ACCOUNT_", 8) == 0)
	{
		/* a frozen or closed account: declined, the authorization stands */
		finish_payment_call(call, &p, "PAYMENT_CAPTURED", "authorized", "authorized",
							captured, reason, NULL, now);
		return;
	}
	if (reason != NULL)
	{
		/* the authorization ran out: the payment expires */
		move_payment(call, &p, "PAYMENT_EXPIRED", "expired", p.amount, reason, NULL, now);
		return;
	}
	pay_splits(call, &p);
	p.captured = captured;
	p.fees = call->split_total;
	move_payment(call, &p, "PAYMENT_CAPTURED", "captured", captured, NULL, NULL, now);
}

/*
 * payledger.capture_payment(payment_id uuid, idempotency_key text,
 *		amount bigint DEFAULT NULL, splits jsonb DEFAULT NULL)
 *		RETURNS payledger.payment_state
 *
 * authorized -> captured: posts the hold (in full, or amount of it, the
 * rest released) and moves each split out of the merchant account, all in
 * one transaction.  A capture above the authorized amount, or splits above
 * the captured amount, raise 22023 with what is left in the detail.
 */
PG_FUNCTION_INFO_V1(capture_payment);
Datum
capture_payment(PG_FUNCTION_ARGS)
{
	PaymentCall call;
	PlHasher   *h = PlHashBegin("capture_payment");

	payment_call_init(&call, "capture_payment", capture_work);
	call.has_amount = !PG_ARGISNULL(2);
	call.amount = call.has_amount ? PG_GETARG_INT64(2) : 0;
	call.splits_json = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (call.has_amount)
		PlCheckAmount(call.amount);
	if (call.splits_json)
		call.splits = parse_splits(call.splits_json, &call.nsplits, &call.split_total);
	PlHashInt64(h, call.has_amount ? call.amount : -1);
	PlHashJsonb(h, call.splits_json);
	return run_payment_call(fcinfo, &call, 1, h);
}

/* The work of void_payment: authorized -> voided, the hold released. */
static void
void_work(PlRequest *req)
{
	static const char *const from[] = {"authorized"};
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *reason;

	lock_payment(&call->payment_id, &p);
	require_state(&p, "void", from, lengthof(from));
	now = GetCurrentTimestamp();
	reason = PlHoldSettle(&p.hold_id, false, false, 0, req->key, req->hash, now, NULL, 0, 0);
	if (reason != NULL)
	{
		move_payment(call, &p, "PAYMENT_EXPIRED", "expired", p.amount, reason, NULL, now);
		return;
	}
	move_payment(call, &p, "PAYMENT_VOIDED", "voided", p.amount, NULL, NULL, now);
}

/*
 * payledger.void_payment(payment_id uuid, idempotency_key text)
 *		RETURNS payledger.payment_state
 *
 * authorized -> voided: the hold is released.
 */
PG_FUNCTION_INFO_V1(void_payment);
Datum
void_payment(PG_FUNCTION_ARGS)
{
	PaymentCall call;

	payment_call_init(&call, "void_payment", void_work);
	return run_payment_call(fcinfo, &call, 1, PlHashBegin("void_payment"));
}

/*
 * The amount (argument 1) and optional reason (argument 3) of a refund or a
 * dispute, checked and added to the request hash.
 */
static int64
amount_and_reason(FunctionCallInfo fcinfo, PlHasher *h, const char *what, char **why)
{
	int64		amount;

	PlRequireArg(fcinfo, 1, "amount");
	amount = PG_GETARG_INT64(1);
	PlCheckAmount(amount);
	*why = NULL;
	if (!PG_ARGISNULL(3))
	{
		*why = text_to_cstring(PG_GETARG_TEXT_PP(3));
		PlRejectPanInText(what, *why);
	}
	PlHashInt64(h, amount);
	PlHashText(h, *why);
	*why = PlMaskText(*why);
	return amount;
}

/*
 * A refund or a dispute: its amount and reason (arguments 1 and 3), the key
 * (argument 2), then the pipeline with the work given.
 */
static Datum
run_amount_call(FunctionCallInfo fcinfo, const char *operation, PlRequestStep work,
				const char *what)
{
	PaymentCall call;
	PlHasher   *h = PlHashBegin(operation);

	payment_call_init(&call, operation, work);
	call.amount = amount_and_reason(fcinfo, h, what, &call.why);
	return run_payment_call(fcinfo, &call, 2, h);
}

/* 22023 when amount is more than what is left of the payment */
static void
check_left(const char *operation, int64 amount, int64 left)
{
	if (amount > left)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s exceeds what is left of the payment", operation),
				 errdetail("Asked to %s " INT64_FORMAT "; " INT64_FORMAT " is left.",
						   operation, amount, left)));
}

/*
 * The first step of a refund or a dispute: the payment locked, captured
 * (PY001 otherwise) and with at least the call's amount left (22023).
 */
static void
lock_captured_payment(PaymentCall *call, const char *operation, Payment *p)
{
	static const char *const from[] = {"captured", "partially_refunded", "settled"};

	lock_payment(&call->payment_id, p);
	require_state(p, operation, from, lengthof(from));
	check_left(operation, call->amount, p->captured - p->refunded);
}

/*
 * The work of refund_payment: the amount back from the merchant account to
 * the source; a decline leaves the state as it is.
 */
static void
refund_work(PlRequest *req)
{
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *reason;
	const char *state;
	pg_uuid_t	refund_id;

	lock_captured_payment(call, "refund", &p);

	PlUuidV7(&refund_id);
	reason = PlPostTransfer(&refund_id, "refund", &p.merchant_account, &p.source_account,
							call->amount, p.currency, NULL, req->hash, payment_ref(&p),
							&p.correlation_id, &now);
	if (reason != NULL)
	{
		finish_payment_call(call, &p, "PAYMENT_REFUNDED", p.state, p.state,
							call->amount, reason, NULL, now);
		return;
	}
	p.refunded += call->amount;
	state = (p.refunded == p.captured) ? "refunded" : "partially_refunded";
	move_payment(call, &p, "PAYMENT_REFUNDED", state, call->amount, NULL, call->why, now);
}

/*
 * payledger.refund_payment(payment_id uuid, amount bigint,
 *		idempotency_key text, reason_code text DEFAULT NULL)
 *		RETURNS payledger.payment_state
 *
 * Pays amount back from the merchant account to the source.  Refunds never
 * exceed what was captured (22023 with what is left).  When the merchant
 * account cannot cover it, nothing moves, the state stays and the decline
 * is in the audit log.
 */
PG_FUNCTION_INFO_V1(refund_payment);
Datum
refund_payment(PG_FUNCTION_ARGS)
{
	return run_amount_call(fcinfo, "refund_payment", refund_work, "refund reason");
}

/* The work of fail_payment: -> failed, an authorization's hold released. */
static void
fail_work(PlRequest *req)
{
	static const char *const from[] = {"pending", "authorized"};
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;

	lock_payment(&call->payment_id, &p);
	require_state(&p, "fail", from, lengthof(from));
	now = GetCurrentTimestamp();
	if (strcmp(p.state, "authorized") == 0)
		(void) PlHoldSettle(&p.hold_id, false, false, 0, req->key, req->hash, now, NULL, 0, 0);
	move_payment(call, &p, "PAYMENT_FAILED", "failed", p.amount, call->why, NULL, now);
}

/*
 * payledger.fail_payment(payment_id uuid, reason_code text,
 *		idempotency_key text) RETURNS payledger.payment_state
 *
 * pending or authorized -> failed; an authorization's hold is released.
 */
PG_FUNCTION_INFO_V1(fail_payment);
Datum
fail_payment(PG_FUNCTION_ARGS)
{
	PaymentCall call;
	PlHasher   *h = PlHashBegin("fail_payment");
	char	   *why;

	payment_call_init(&call, "fail_payment", fail_work);
	PlRequireArg(fcinfo, 1, "reason_code");
	why = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (why[0] == '\0' || strlen(why) > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason_code must be 1 to 64 bytes long")));
	PlRejectPanInText("reason_code", why);
	PlHashText(h, why);
	call.why = PlMaskText(why);
	return run_payment_call(fcinfo, &call, 2, h);
}

/* columns of PLAN_AUTHS_OVERDUE */
enum
{
	AUTHS_OVERDUE_PAYMENT = 1, AUTHS_OVERDUE_HOLD, AUTHS_OVERDUE_FROM, AUTHS_OVERDUE_TO
};

/* the work of expire_authorizations(): a request without a key */
static void
expire_authorizations_work(PlRequest *req)
{
	int		   *expired = req->arg;
	Datum		values[1];
	pg_uuid_t  *ids;
	Datum	   *holds;
	pg_uuid_t  *accounts;
	uint64		n;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	/* payments, then their holds, then their accounts, each in id order */
	if (PlExec(PLAN_AUTHS_OVERDUE, values, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "overdue authorization scan failed");
	n = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	holds = palloc(sizeof(Datum) * Max(n, 1));
	accounts = palloc(sizeof(pg_uuid_t) * Max(2 * n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		pg_uuid_t  *h = palloc(sizeof(pg_uuid_t));

		ids[i] = *DatumGetUUIDP(SPI_getbinval(tup, desc, AUTHS_OVERDUE_PAYMENT, &isnull));
		*h = *DatumGetUUIDP(SPI_getbinval(tup, desc, AUTHS_OVERDUE_HOLD, &isnull));
		holds[i] = UUIDPGetDatum(h);
		accounts[2 * i] = *DatumGetUUIDP(SPI_getbinval(tup, desc, AUTHS_OVERDUE_FROM, &isnull));
		accounts[2 * i + 1] = *DatumGetUUIDP(SPI_getbinval(tup, desc, AUTHS_OVERDUE_TO, &isnull));
	}
	if (n > 0)
	{
		Datum		arr[1];
		Relation	rel;

		arr[0] = PointerGetDatum(construct_array(holds, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		if (PlExec(PLAN_HOLDS_LOCK_MANY, arr, NULL, 0) != SPI_OK_SELECT)
			elog(ERROR, "hold lock failed");
		rel = PlOpenAccounts();
		(void) PlLockAccounts(rel, accounts, 2 * n);
		table_close(rel, NoLock);
	}
	for (uint64 i = 0; i < n; i++)
	{
		Payment		p;
		TimestampTz now = GetCurrentTimestamp();

		lock_payment(&ids[i], &p);
		if (strcmp(p.state, "authorized") != 0 || !p.has_hold)
			continue;
		/* an overdue hold is expired by the settle attempt itself */
		if (PlHoldSettle(&p.hold_id, false, false, 0, NULL, (const uint8 *) "", now,
						 NULL, 0, PL_SETTLE_OWN_ROWS | PL_SETTLE_SWEEP) == NULL)
			elog(ERROR, "authorization %s was not overdue after all", PlUuidText(&p.id));
		store_payment(&p, "expired", now);
		payment_event(&p, "PAYMENT_EXPIRED", "authorized", "expired", p.amount, true, NULL, NULL, now);
		(*expired)++;
	}
}

/*
 * payledger.expire_authorizations() RETURNS integer
 *
 * Every authorized payment whose hold is past its expiry becomes expired
 * and its hold is released; returns how many.
 */
PG_FUNCTION_INFO_V1(expire_authorizations);
Datum
expire_authorizations(PG_FUNCTION_ARGS)
{
	PlRequest	req;
	int			expired = 0;

	PlRequestInit(&req, "expire_authorizations", NULL, NULL, expire_authorizations_work,
				  &expired);
	PlRunRequest(&req);
	PG_RETURN_INT32(expired);
}

static const char *
event_for_state(const char *from, const char *to)
{
	if (strcmp(to, "authorized") == 0)
		return "PAYMENT_AUTHORIZED";
	if (strcmp(to, "captured") == 0)
		return strcmp(from, "disputed") == 0 ? "DISPUTE_WON" : "PAYMENT_CAPTURED";
	if (strcmp(to, "failed") == 0)
		return "PAYMENT_FAILED";
	if (strcmp(to, "voided") == 0)
		return "PAYMENT_VOIDED";
	if (strcmp(to, "expired") == 0)
		return "PAYMENT_EXPIRED";
	if (strcmp(to, "refunded") == 0 || strcmp(to, "partially_refunded") == 0)
		return strcmp(from, "disputed") == 0 ? "DISPUTE_WON" : "PAYMENT_REFUNDED";
	if (strcmp(to, "settled") == 0)
		return strcmp(from, "disputed") == 0 ? "DISPUTE_WON" : "PAYMENT_SETTLED";
	if (strcmp(to, "disputed") == 0)
		return "PAYMENT_DISPUTED";
	if (strcmp(to, "charged_back") == 0)
		return "PAYMENT_CHARGED_BACK";
	return "PAYMENT_CREATED";
}

/* The audit row of a state change made by a hand-written UPDATE. */
static void
audit_direct_change(TupleDesc desc, HeapTuple tup, const char *from, const char *to)
{
	PlPrivState priv;
	Payment		p;
	bool		isnull;
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;
	PlAuditEvent ev;

	p.id = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "id"), desc, &isnull));
	p.merchant_id = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "merchant_id"), desc, &isnull));
	p.customer_id = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "customer_id"), desc, &isnull));
	p.source_account = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "source_account"), desc, &isnull));
	p.merchant_account = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "merchant_account"), desc, &isnull));
	p.correlation_id = *DatumGetUUIDP(heap_getattr(tup, SPI_fnumber(desc, "correlation_id"), desc, &isnull));
	p.amount = DatumGetInt64(heap_getattr(tup, SPI_fnumber(desc, "amount"), desc, &isnull));
	p.currency = SPI_getvalue(tup, desc, SPI_fnumber(desc, "currency"));

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "direct_update";
	k.val.string.len = strlen(k.val.string.val);
	pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvBool;
	v.val.boolean = true;
	pushJsonbValue(&state, WJB_VALUE, &v);

	PlSpiBegin(&priv);
	PlAuditInit(&ev, event_for_state(from, to), GetCurrentTimestamp());
	ev.previous_state = from;
	ev.new_state = to;
	ev.payment_id = &p.id;
	ev.correlation_id = &p.correlation_id;
	ev.merchant_id = &p.merchant_id;
	ev.customer_id = &p.customer_id;
	ev.account_id = &p.source_account;
	ev.counterparty_account_id = &p.merchant_account;
	ev.has_amount = true;
	ev.amount = p.amount;
	ev.currency = p.currency;
	ev.success = strcmp(to, "failed") != 0;
	ev.metadata = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	PlAuditWrite(&ev);
	PlSpiEnd(&priv);
}

/* parameters of PLAN_PAYMENT_DISPUTE, 0-based */
enum
{
	DISPUTE_ID, DISPUTE_STATE, DISPUTE_AMOUNT, DISPUTE_HOLD, DISPUTE_STATE_BEFORE, DISPUTE_NARGS
};

static void
store_dispute(Payment *p, const char *state, const char *before)
{
	Datum		values[DISPUTE_NARGS];
	char		nulls[DISPUTE_NARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[DISPUTE_ID] = UUIDPGetDatum(&p->id);
	values[DISPUTE_STATE] = CStringGetTextDatum(state);
	values[DISPUTE_AMOUNT] = Int64GetDatum(p->disputed);
	if (p->has_dispute_hold)
		values[DISPUTE_HOLD] = UUIDPGetDatum(&p->dispute_hold_id);
	else
		nulls[DISPUTE_HOLD] = 'n';
	if (before)
		values[DISPUTE_STATE_BEFORE] = CStringGetTextDatum(before);
	else
		nulls[DISPUTE_STATE_BEFORE] = 'n';
	if (PlExec(PLAN_PAYMENT_DISPUTE, values, nulls, 0) != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "payment update failed");
	p->state = state;
}

/*
 * The work of dispute_payment: -> disputed, the amount held from the
 * merchant account for the customer; a decline leaves the state.
 */
static void
dispute_work(PlRequest *req)
{
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *reason;
	pg_uuid_t	hold_id;
	TimestampTz never;
	const char *before;

	lock_captured_payment(call, "dispute", &p);
	now = GetCurrentTimestamp();
	/* reserved until resolve_dispute: no expiry, so no sweep releases it */
	TIMESTAMP_NOEND(never);
	PlUuidV7(&hold_id);
	reason = PlHoldCreate(&hold_id, &p.merchant_account, &p.source_account, call->amount,
						  p.currency, never, req->key, req->hash, payment_ref(&p),
						  &p.correlation_id);
	if (reason != NULL)
	{
		finish_payment_call(call, &p, "PAYMENT_DISPUTED", p.state, p.state,
							call->amount, reason, NULL, now);
		return;
	}
	before = p.state;
	p.disputed = call->amount;
	p.has_dispute_hold = true;
	p.dispute_hold_id = hold_id;
	store_dispute(&p, "disputed", before);
	finish_payment_call(call, &p, "PAYMENT_DISPUTED", before, "disputed",
						call->amount, NULL, call->why, now);
}

/*
 * payledger.dispute_payment(payment_id uuid, amount bigint,
 *		idempotency_key text, reason_code text DEFAULT NULL)
 *		RETURNS payledger.payment_state
 *
 * captured, partially_refunded or settled -> disputed: the disputed amount
 * is held from the merchant account for the customer, out of what the
 * merchant has available, until the dispute is resolved, however long that
 * takes (the hold never expires).  More than is left
 * of the payment raises 22023; a merchant account that cannot cover it
 * declines (state unchanged, the decline audited).
 */
PG_FUNCTION_INFO_V1(dispute_payment);
Datum
dispute_payment(PG_FUNCTION_ARGS)
{
	return run_amount_call(fcinfo, "dispute_payment", dispute_work, "dispute reason");
}

/*
 * The work of resolve_dispute: won, the hold released and the state before
 * the dispute back; lost, the hold posted to the customer (charged_back).
 */
static void
resolve_work(PlRequest *req)
{
	static const char *const from[] = {"disputed"};
	PaymentCall *call = req->arg;
	Payment		p;
	TimestampTz now;
	const char *state;

	lock_payment(&call->payment_id, &p);
	require_state(&p, "resolve the dispute of", from, lengthof(from));
	now = GetCurrentTimestamp();
	if (call->won)
	{
		state = p.state_before_dispute ? p.state_before_dispute : "captured";
		if (p.has_dispute_hold)
			(void) PlHoldSettle(&p.dispute_hold_id, false, false, 0, req->key, req->hash, now,
								NULL, 0, 0);
		p.disputed = 0;
		store_dispute(&p, state, NULL);
		finish_payment_call(call, &p, "DISPUTE_WON", "disputed", state, 0, NULL, NULL, now);
		return;
	}
	else
	{
		const char *declined = NULL;

		state = "charged_back";
		if (p.has_dispute_hold)
			declined = PlHoldSettle(&p.dispute_hold_id, true, false, 0, req->key, req->hash,
									now, NULL, 0, 0);
		if (declined != NULL && strncmp(declined, "ACCOUNT_", 8) == 0)
		{
			/* a frozen or closed account: declined, the dispute stays open */
			finish_payment_call(call, &p, "PAYMENT_CHARGED_BACK", "disputed", "disputed",
								p.disputed, declined, NULL, now);
			return;
		}
		if (declined != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PAYLEDGER_INVALID_STATE_TRANSITION),
					 errmsg("the disputed funds can no longer be charged back: %s", declined)));
		store_dispute(&p, state, p.state_before_dispute);
		finish_payment_call(call, &p, "PAYMENT_CHARGED_BACK", "disputed", state, p.disputed,
							NULL, NULL, now);
	}
}

/*
 * payledger.resolve_dispute(payment_id uuid, won boolean,
 *		idempotency_key text) RETURNS payledger.payment_state
 *
 * Won: the held amount is released and the payment returns to the state
 * it had before the dispute (DISPUTE_WON).  Lost: the held amount goes to
 * the customer and the payment is charged_back.
 */
PG_FUNCTION_INFO_V1(resolve_dispute);
Datum
resolve_dispute(PG_FUNCTION_ARGS)
{
	PaymentCall call;
	PlHasher   *h = PlHashBegin("resolve_dispute");

	payment_call_init(&call, "resolve_dispute", resolve_work);
	PlRequireArg(fcinfo, 1, "won");
	call.won = PG_GETARG_BOOL(1);
	PlHashInt64(h, call.won ? 1 : 0);
	return run_payment_call(fcinfo, &call, 2, h);
}

/* the columns guard_payments() stamps, 0-based */
enum
{
	STAMP_VERSION, STAMP_UPDATED_AT, STAMP_NCOLS
};

/*
 * payledger.guard_payments() RETURNS trigger, BEFORE UPDATE FOR EACH ROW
 *
 * The money columns of a payment change only through payledger's functions
 * (PY003 otherwise); every change advances version by one and stamps
 * updated_at.  State changes are checked by enforce_state_machine, which
 * fires first.
 */
PG_FUNCTION_INFO_V1(guard_payments);
Datum
guard_payments(PG_FUNCTION_ARGS)
{
	static const char *const money_columns[] = {
		"id", "merchant_id", "customer_id", "amount", "currency", "source_account",
		"merchant_account", "captured_amount", "refunded_amount", "disputed_amount",
		"fee_amount", "hold_id", "correlation_id", "created_at", "dispute_hold_id",
		"settlement_id"
	};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	oldtup;
	HeapTuple	newtup;
	int			version_att;
	int			updated_att;
	Datum		values[STAMP_NCOLS];
	bool		nulls[STAMP_NCOLS] = {false};
	int			cols[STAMP_NCOLS];
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard_payments() must fire BEFORE UPDATE FOR EACH ROW")));
	desc = RelationGetDescr(trigdata->tg_relation);
	oldtup = trigdata->tg_trigtuple;
	newtup = trigdata->tg_newtuple;
	if (!PlInternalWrite())
	{
		for (int i = 0; i < (int) lengthof(money_columns); i++)
		{
			int			att = SPI_fnumber(desc, money_columns[i]);
			bool		n1,
						n2;
			Datum		d1 = heap_getattr(oldtup, att, desc, &n1);
			Datum		d2 = heap_getattr(newtup, att, desc, &n2);
			Form_pg_attribute a = TupleDescAttr(desc, att - 1);

			if (n1 != n2 || (!n1 && !datumIsEqual(d1, d2, a->attbyval, a->attlen)))
				ereport(ERROR,
						(errcode(ERRCODE_PAYLEDGER_IMMUTABLE_RECORD),
						 errmsg("column \"%s\" of a payment can only change through payledger functions",
								money_columns[i]),
						 errhint("Use capture_payment(), refund_payment() and the other payment functions.")));
		}
	}
	/* a state change written by hand is audited like any other */
	if (!PlInternalWrite())
	{
		int			state_att = SPI_fnumber(desc, "state");
		char	   *from = SPI_getvalue(oldtup, desc, state_att);
		char	   *to = SPI_getvalue(newtup, desc, state_att);

		if (from && to && strcmp(from, to) != 0)
			audit_direct_change(desc, oldtup, from, to);
	}
	version_att = SPI_fnumber(desc, "version");
	updated_att = SPI_fnumber(desc, "updated_at");
	cols[STAMP_VERSION] = version_att;
	cols[STAMP_UPDATED_AT] = updated_att;
	values[STAMP_VERSION] =
		Int64GetDatum(DatumGetInt64(heap_getattr(oldtup, version_att, desc, &isnull)) + 1);
	values[STAMP_UPDATED_AT] = TimestampTzGetDatum(GetCurrentTimestamp());
	newtup = heap_modify_tuple_by_cols(newtup, desc, STAMP_NCOLS, cols, values, nulls);
	return PointerGetDatum(newtup);
}
