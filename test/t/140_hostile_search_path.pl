
# Copyright (c) 2026, payledger authors

# 140_hostile_search_path.pl: a hostile search_path changes nothing.
#
# A schema "evil" ahead of pg_catalog shadows what extension SQL is most
# likely to leave unqualified: the = <> < <= > >= + - operators on the types
# the ledger compares and adds up, sum() and count(), now(),
# clock_timestamp(), jsonb_build_object(), jsonb_build_array(), coalesce(),
# lower(), upper(), length() and format().  Every shadow returns a wrong
# answer (= is always true, + subtracts, sum() is the maximum, now() is the
# year 2000, jsonb_build_object() is always {}), so SQL that resolves one of
# them computes wrong balances, matches the wrong rows or writes a wrong
# audit row.
#
# The same scenario (accounts, transfers, a declined transfer, replays, a
# hold posted in part and one voided, 3-leg and bulk transfers, a payment
# from create to dispute, a settlement, freeze and the error paths) runs in
# a database with the default search_path and in one where the hostile
# path was active while CREATE EXTENSION ran and is active at every call.
# Both must print exactly the same thing, and the checks of the ledger and
# the audit log must pass in both.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('hostile_path');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = 'none'");
$node->start;

my $evil_sql = <<'EOS';
CREATE SCHEMA evil;
CREATE FUNCTION evil.yes(uuid, uuid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.yes(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.yes(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.yes(integer, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.yes(jsonb, jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.yes(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION evil.no(uuid, uuid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE FUNCTION evil.no(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE FUNCTION evil.no(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE FUNCTION evil.no(integer, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE FUNCTION evil.no(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE FUNCTION evil.minus(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.int8mi($1, $2)';
CREATE FUNCTION evil.plus(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.int8pl($1, $2)';
CREATE FUNCTION evil.minus(integer, integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.int4mi($1, $2)';
CREATE FUNCTION evil.plus(integer, integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.int4pl($1, $2)';
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['uuid', 'text', 'bigint', 'integer', 'jsonb', 'timestamptz'] LOOP
		EXECUTE format('CREATE OPERATOR evil.= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.yes)', t, t);
		EXECUTE format('CREATE OPERATOR evil.<> (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.yes)', t, t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['uuid', 'text', 'bigint', 'integer', 'timestamptz'] LOOP
		EXECUTE format('CREATE OPERATOR evil.< (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.no)', t, t);
		EXECUTE format('CREATE OPERATOR evil.<= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.no)', t, t);
		EXECUTE format('CREATE OPERATOR evil.> (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.yes)', t, t);
		EXECUTE format('CREATE OPERATOR evil.>= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.yes)', t, t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['bigint', 'integer'] LOOP
		EXECUTE format('CREATE OPERATOR evil.+ (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.minus)', t, t);
		EXECUTE format('CREATE OPERATOR evil.- (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.plus)', t, t);
	END LOOP;
END
$$;
CREATE AGGREGATE evil.sum(bigint) (SFUNC = pg_catalog.int8larger, STYPE = bigint);
CREATE AGGREGATE evil.sum(integer) (SFUNC = pg_catalog.int4larger, STYPE = integer);
CREATE AGGREGATE evil.sum(numeric) (SFUNC = pg_catalog.numeric_larger, STYPE = numeric);
CREATE AGGREGATE evil.count("any") (SFUNC = pg_catalog.int8inc_any, STYPE = bigint, INITCOND = '41');
CREATE AGGREGATE evil.count(*) (SFUNC = pg_catalog.int8inc, STYPE = bigint, INITCOND = '41');
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION evil.jsonb_build_object(VARIADIC "any") RETURNS jsonb LANGUAGE internal STABLE AS 'jsonb_build_object_noargs';
CREATE FUNCTION evil.jsonb_build_array(VARIADIC "any") RETURNS jsonb LANGUAGE internal STABLE AS 'jsonb_build_array_noargs';
CREATE FUNCTION evil.coalesce(VARIADIC anyarray) RETURNS anyelement LANGUAGE sql AS 'SELECT NULL::anyelement';
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS $$SELECT 'evil'$$;
CREATE FUNCTION evil.upper(text) RETURNS text LANGUAGE sql AS $$SELECT 'EVIL'$$;
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE sql AS 'SELECT 0';
CREATE FUNCTION evil.format(text, VARIADIC "any") RETURNS text LANGUAGE internal STABLE AS 'text_format_nv';
EOS

# The scenario: fixed account ids, every call keyed; generated ids are
# reduced to whether they repeat.  Each line it prints is compared.
my $scenario = <<'EOS';
\set VERBOSITY verbose
\set ON_ERROR_STOP 0
\pset format unaligned
\pset tuples_only on
SELECT payledger.create_account('USD', 'system', NULL, '{}', '00000000-0000-7000-8000-000000000001');
SELECT payledger.create_account('USD', 'wallet', 0, '{"email": "eve@example.com"}', '00000000-0000-7000-8000-000000000002');
SELECT payledger.create_account('USD', 'wallet', -500, '{}', '00000000-0000-7000-8000-000000000003');
SELECT payledger.create_account('USD', 'merchant', 0, '{}', '00000000-0000-7000-8000-000000000004');
SELECT payledger.create_account('USD', 'fees', 0, '{}', '00000000-0000-7000-8000-000000000005');
SELECT payledger.create_account('USD', 'payout', 0, '{}', '00000000-0000-7000-8000-000000000006');
SELECT payledger.create_account('EUR', 'wallet', 0, '{}', '00000000-0000-7000-8000-000000000007');
SELECT payledger.set_sub_balances('00000000-0000-7000-8000-000000000004', 3);
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 10000, 'USD', 'fund-2');
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 10000, 'USD', 'fund-2');
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 10001, 'USD', 'too-much');
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 10001, 'USD', 'too-much');
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000004', 400, 'USD', 'credit-line');
SELECT status, reason_code, replayed FROM payledger.transfer('00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000004', 101, 'USD', 'beyond-credit-line');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 11, 'USD', 'fund-2');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000007', 1, 'USD', 'wrong-currency');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000002', 1, 'USD', 'same-account');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-0000000000ff', 1, 'USD', 'unknown');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 0, 'USD', 'zero');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 1, 'USD', 'card', '{"note": "4111 1111 1111 1111"}');
SELECT h.status, h.replayed, p.status, p.replayed
  FROM payledger.hold('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 700, 'USD', '1 hour', 'hold-1') h,
       payledger.post_hold(h.transfer_id, 300, 'hold-1-post') p;
SELECT h.status, v.status, v2.status, v2.reason_code
  FROM payledger.hold('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 200, 'USD', '1 hour', 'hold-2') h,
       payledger.void_hold(h.transfer_id, 'hold-2-void') v,
       payledger.void_hold(h.transfer_id, 'hold-2-void-again') v2;
SELECT status, reason_code FROM payledger.transfer_legs(
  '[{"from": "00000000-0000-7000-8000-000000000002", "to": "00000000-0000-7000-8000-000000000003", "amount": 50},
    {"from": "00000000-0000-7000-8000-000000000003", "to": "00000000-0000-7000-8000-000000000004", "amount": 20},
    {"from": "00000000-0000-7000-8000-000000000004", "to": "00000000-0000-7000-8000-000000000005", "amount": 5}]',
  'USD', 'legs-1');
SELECT payledger.transfer_legs('[{"from": "00000000-0000-7000-8000-000000000002", "to": "00000000-0000-7000-8000-000000000003"}]', 'USD', 'legs-bad');
SELECT status, reason_code, replayed FROM payledger.transfer_many(
  ARRAY['00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000002']::uuid[],
  ARRAY['00000000-0000-7000-8000-000000000005', '00000000-0000-7000-8000-000000000005', '00000000-0000-7000-8000-000000000004']::uuid[],
  ARRAY[10, 100000, 20]::bigint[], 'USD', ARRAY['many-1', 'many-2', 'many-3']);
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000bb', 3000, 'USD',
  '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 'pay-1') AS pay \gset
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000bb', 3000, 'USD',
  '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 'pay-1') OPERATOR(pg_catalog.=) :'pay';
SELECT payledger.authorize_payment(:'pay', 'pay-1-auth');
SELECT payledger.capture_payment(:'pay', 'pay-1-capture', 2500, '[{"account": "00000000-0000-7000-8000-000000000005", "amount": 100}]');
SELECT payledger.capture_payment(:'pay', 'pay-1-capture', 2500, '[{"account": "00000000-0000-7000-8000-000000000005", "amount": 100}]');
SELECT payledger.refund_payment(:'pay', 5000, 'pay-1-refund-too-much');
SELECT payledger.refund_payment(:'pay', 400, 'pay-1-refund');
SELECT payledger.dispute_payment(:'pay', 300, 'pay-1-dispute');
SELECT payledger.resolve_dispute(:'pay', true, 'pay-1-won');
SELECT payledger.authorize_payment(:'pay', 'pay-1-auth-again');
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000bb', 900, 'USD',
  '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 'pay-2') AS pay2 \gset
SELECT payledger.authorize_payment(:'pay2', 'pay-2-auth');
SELECT payledger.void_payment(:'pay2', 'pay-2-void');
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000bb', 99999999, 'USD',
  '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000004', 'pay-3') AS pay3 \gset
SELECT payledger.authorize_payment(:'pay3', 'pay-3-auth');
SELECT payledger.settle_merchant('00000000-0000-7000-8000-0000000000aa', 'infinity', '00000000-0000-7000-8000-000000000006', 'settle-1') IS NOT NULL;
SELECT payment_count, gross_amount, fee_amount, refund_amount, net_amount FROM payledger.settlements;
SELECT payledger.set_limits('00000000-0000-7000-8000-000000000002', 1000, NULL);
SELECT status, reason_code FROM payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 1001, 'USD', 'over-limit');
SELECT payledger.freeze_account('00000000-0000-7000-8000-000000000003', 'review');
SELECT status, reason_code FROM payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 1, 'USD', 'to-frozen');
SELECT payledger.unfreeze_account('00000000-0000-7000-8000-000000000003');
SELECT payledger.purge_idempotency_keys();
SELECT payledger.expire_holds(), payledger.expire_authorizations();
SELECT * FROM payledger.get_balance('00000000-0000-7000-8000-000000000004');
SELECT payledger.balance_at('00000000-0000-7000-8000-000000000002', 'infinity');
SELECT 'check ' || check_name, ok, detail FROM payledger.check_ledger() ORDER BY 1;
SELECT 'verify', ok, problem FROM payledger.verify_audit_log();
SELECT metric, labels, value FROM payledger.metrics WHERE metric NOT LIKE '%seconds%' ORDER BY 1, 2::text;
-- what follows only inspects: the test's own SQL, with a clean path
SET search_path = pg_catalog, public;
SELECT a.id, a.kind, b.balance, b.pending_debits, b.pending_credits, b.available, b.version
  FROM payledger.accounts a, payledger.get_balance(a.id) b
 WHERE a.kind <> 'sub_balance' ORDER BY a.id;
SELECT payledger.balance_at('00000000-0000-7000-8000-000000000002', 'infinity');
SELECT amount, balance_after FROM payledger.account_entries('00000000-0000-7000-8000-000000000002') ORDER BY account_version;
SELECT state, amount, captured_amount, refunded_amount, disputed_amount, fee_amount, version FROM payledger.payments ORDER BY created_at;
SELECT kind, status, reason_code, amount, idempotency_key FROM payledger.transfers ORDER BY created_at, idempotency_key;
SELECT event_type, previous_state, new_state, amount_cents, currency, success, reason_code, idempotency_key, metadata
  FROM payledger.payment_audit_log ORDER BY id;
SELECT count(*) FROM payledger.payment_audit_log WHERE event_time < '2001-01-01' OR created_at < '2001-01-01';
SELECT scope, key, operation, status, reason_code FROM payledger.idempotency_keys ORDER BY scope, key;
EOS

sub run_scenario
{
	my ($db) = @_;
	my ($ret, $out, $err) = $node->psql($db, $scenario);
	# the error lines carry the SQLSTATE-bearing message; keep their order
	my @errors = map { s/^psql:<stdin>:\d+: //r } grep { /ERROR/ } split /\n/, $err;

	# generated ids become id1, id2, ... in order of first appearance
	my %seen;
	my $name = sub {
		my ($id) = @_;
		return $id if $id =~ /^00000000-/;
		$seen{$id} //= 'id' . (1 + scalar keys %seen);
		return $seen{$id};
	};
	$out =~ s{\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b}{$name->($1)}ge;
	return ($out, join("\n", @errors));
}

# --- the reference: default search_path ---
$node->safe_psql('postgres', 'CREATE DATABASE plain');
$node->safe_psql('plain', 'CREATE EXTENSION payledger');
my ($plain_out, $plain_err) = run_scenario('plain');

# --- the hostile database: the path is active at install and every call ---
$node->safe_psql('postgres', 'CREATE DATABASE hostile');
$node->safe_psql('hostile', $evil_sql);
$node->safe_psql('postgres',
	'ALTER DATABASE hostile SET search_path = evil, pg_catalog, public');

# the shadows are live: unqualified SQL in this database gets them
is( $node->safe_psql(
		'hostile', q{
SELECT 1::bigint = 2::bigint, 5::bigint + 3::bigint, now()::text,
	(SELECT sum(x::bigint) FROM generate_series(1, 4) x),
	(SELECT count(*) FROM generate_series(1, 4)),
	jsonb_build_object('a', 1), coalesce(NULL::int, 1), lower('X'),
	'00000000-0000-7000-8000-000000000001'::uuid = '00000000-0000-7000-8000-000000000002'::uuid,
	current_setting('search_path')}),
	't|2|2000-01-01 00:00:00+00|4|45|{}|1|evil|t|evil, pg_catalog, public',
	'the hostile shadows answer unqualified SQL in that database');

$node->safe_psql('hostile', 'CREATE EXTENSION payledger');
is( $node->safe_psql(
		'hostile',
		q{SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
		  WHERE e.extname = 'payledger' AND d.classid = 'pg_proc'::regclass}) > 0
	? 'installed'
	: 'missing',
	'installed',
	'CREATE EXTENSION ran with the hostile search_path active');
my ($hostile_out, $hostile_err) = run_scenario('hostile');

# the scenario exercised what it should, in the reference database
like($plain_out, qr/^posted\|\|f$/m, 'reference: a transfer posted');
like($plain_out, qr/^posted\|\|t$/m, 'reference: a replay replayed');
like($plain_out, qr/^rejected\|INSUFFICIENT_FUNDS\|f$/m, 'reference: a decline');
like($plain_out, qr/^partially_refunded$/m, 'reference: the payment was refunded in part');
like($plain_err, qr/PY002/, 'reference: a reused key raised PY002');
like($plain_err, qr/PY004/, 'reference: the wrong currency raised PY004');
like($plain_err, qr/PY006/, 'reference: a card number raised PY006');
like($plain_out, qr/^check audit_chain_verifies\|t\|/m, 'reference: check_ledger ran');
unlike($plain_out, qr/^check [^|]*\|f/m, 'reference: no check of the ledger failed')
  or diag($plain_out);
like($plain_out, qr/^verify\|t\|$/m, 'reference: the audit log verifies');

# and the hostile database printed exactly the same
is($hostile_out, $plain_out,
	'every result under the hostile search_path equals the reference');
is($hostile_err, $plain_err,
	'every error under the hostile search_path equals the reference');
is( $node->safe_psql(
		'hostile', q{
SELECT bool_and(ok) FROM payledger.check_ledger()}), 't',
	'check_ledger() is all ok, called with the hostile path');

$node->stop;
done_testing();
