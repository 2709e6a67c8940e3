
# Copyright (c) 2026, payledger authors

# 002_dump_restore.pl: pg_dump / pg_restore carries the whole ledger.
#
# A ledger with posted and rejected keyed transfers, two currencies, a
# credit line, a frozen account, a pending and a voided hold and an outbox
# consumer halfway through the events is dumped with pg_dump -Fc and
# restored into a new database of the same cluster, and into a database of
# a second, freshly created cluster.  Each restored ledger must be the same
# ledger: every balance and version, every row of every payledger table,
# the audit log (which still verifies), the stored idempotency results (a
# posted, a rejected and a hold key still replay, a key with other
# parameters is still refused), the frozen status, the pending hold (which
# can still be posted), the outbox position, the audit id sequence (new
# rows get new, higher ids) and the append-only guards (PY003).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

# A server that has been running for a while has used more transaction ids
# than the freshly made second cluster below.
$node->safe_psql('postgres', "SELECT pg_current_xact_id();\n" x 1000);

$node->safe_psql('postgres', 'CREATE DATABASE ledger');
$node->safe_psql('ledger',   'CREATE EXTENSION payledger');

sub q1
{
	my ($n, $db, $sql) = @_;
	return $n->safe_psql($db, $sql);
}

# An error's SQLSTATE (psql prints it with VERBOSITY verbose), '' if none.
sub sqlstate_of
{
	my ($n, $db, $sql) = @_;
	my ($ret, $stdout, $stderr) =
	  $n->psql($db, "\\set VERBOSITY verbose\n$sql");
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

# --- build the ledger ---

sub account
{
	return q1($node, 'ledger', "SELECT payledger.create_account($_[0])");
}
my $system  = account("'USD', 'system', NULL");
my $alice   = account("'USD', 'customer'");
my $bob     = account("'USD', 'customer'");
my $carol   = account("'USD', 'merchant', -500");    # a credit line
my $frozen  = account("'USD', 'customer'");
my $eur_sys = account("'EUR', 'system', NULL");
my $eur_a   = account("'EUR', 'customer'");
my $shop    = account("'USD', 'merchant'");    # a hot account: credits in sub-balances
q1($node, 'ledger', "SELECT payledger.set_sub_balances('$shop', 4)");

# [key, from, to, amount, currency, expected status, expected reason]
my @calls = (
	[ 'fund-alice',  $system,  $alice,  100_000,   'USD', 'posted' ],
	[ 'fund-bob',    $system,  $bob,    50_000,    'USD', 'posted' ],
	[ 'fund-frozen', $system,  $frozen, 7_000,     'USD', 'posted' ],
	[ 'fund-eur',    $eur_sys, $eur_a,  12_345,    'EUR', 'posted' ],
	[ 'pay-1',       $alice,   $bob,    1_234,     'USD', 'posted' ],
	[ 'pay-2',       $bob,     $carol,  20_000,    'USD', 'posted' ],
	[ 'pay-3',       $alice,   $carol,  99,        'USD', 'posted' ],
	[ 'pay-4',       $carol,   $alice,  20_500,    'USD', 'posted' ],
	[ 'shop-1',      $alice,   $shop,   700,       'USD', 'posted' ],
	[ 'shop-2',      $bob,     $shop,   300,       'USD', 'posted' ],
	[ 'shop-payout', $shop,    $carol,  900,       'USD', 'posted' ],
	[ 'too-much',    $bob,     $alice,  1_000_000, 'USD', 'rejected', 'INSUFFICIENT_FUNDS' ],
);
my %call   = map { $_->[0] => $_ } @calls;
my %result;    # key => "id status"
for my $call (@calls)
{
	my ($key, $from, $to, $amount, $cur, $status, $reason) = @$call;
	my $r = q1($node, 'ledger',
		    "SELECT transfer_id || ' ' || status || ' ' || coalesce(reason_code, '-') || ' ' || replayed::text "
		  . "FROM payledger.transfer('$from', '$to', $amount, '$cur', '$key')");
	my ($tid, $st, $rc, $rp) = split / /, $r;
	is("$st $rc $rp", "$status " . ($reason // '-') . ' false', "transfer $key: $status");
	$result{$key} = "$tid $st";
}

# a pending hold and a voided one
my ($hold1, $st) = split / /, q1($node, 'ledger',
	"SELECT transfer_id || ' ' || status FROM payledger.hold('$alice', '$carol', 3000, 'USD', '30 days', 'hold-1')"
);
is($st, 'pending', 'hold-1 is pending');
$result{'hold-1'} = "$hold1 pending";
my ($hold2) = split / /, q1($node, 'ledger',
	"SELECT transfer_id FROM payledger.hold('$bob', '$alice', 500, 'USD', '30 days', 'hold-2')");
is( q1( $node, 'ledger',
		"SELECT transfer_id || ' ' || status FROM payledger.void_hold('$hold2', 'void-2')"),
	"$hold2 voided",
	'hold-2 is voided');
$result{'void-2'} = "$hold2 voided";

q1($node, 'ledger', "SELECT payledger.freeze_account('$frozen', 'chargeback investigation')");
is( q1( $node, 'ledger',
		"SELECT status || ' ' || reason_code FROM payledger.transfer('$frozen', '$alice', 10, 'USD', 'from-frozen')"
	),
	'rejected ACCOUNT_FROZEN',
	'a frozen account cannot send before the dump');

# an outbox consumer that has acknowledged the first five events
my $fifth = q1($node, 'ledger',
	"SELECT event_id FROM payledger.read_events('export', 5) OFFSET 4");
q1($node, 'ledger', "SELECT payledger.ack_events('export', '$fifth')");
my $read_sql =
  "SELECT string_agg(event_id::text, ',') FROM payledger.read_events('export')";
my $unread = q1($node, 'ledger', $read_sql);
my @unread = split /,/, $unread;
cmp_ok(scalar @unread, '>=', 10, 'the consumer has events left to read');

is(q1($node, 'ledger', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger() is all ok before the dump');
is(q1($node, 'ledger', 'SELECT ok FROM payledger.verify_audit_log()'),
	't', 'the audit log verifies before the dump');

# What must come back: balances, and every row of every payledger table
# (as a digest over the rows in a fixed order).
my $balances_sql = q{
SELECT a.id || ' ' || a.currency || ' ' || a.status || ' ' || b.balance || ' '
	   || b.pending_debits || ' ' || b.pending_credits || ' ' || b.available || ' ' || b.version
FROM payledger.accounts a, payledger.get_balance(a.id) b ORDER BY a.id};
my @tables = split /\n/, q1($node, 'ledger',
	"SELECT tablename FROM pg_tables WHERE schemaname = 'payledger' ORDER BY tablename");
ok((grep { $_ eq 'holds' } @tables) && (grep { $_ eq 'payment_audit_log' } @tables),
	'payledger tables: ' . join(', ', @tables));
# The "payment" state machine is created by CREATE EXTENSION itself, so its
# row's timestamp is the restore's own: compare machines by name and content.
my %row_of = (state_machines => '(t.name, t.transitions)');
my $digest_sql = join(
	"\nUNION ALL\n",
	map {
		my $row = $row_of{$_} // 't';
		"SELECT '$_' || ' ' || count(*) || ' ' || coalesce(md5(string_agg(${row}::text, '|' ORDER BY ${row}::text)), '-') FROM payledger.$_ t"
	} @tables);
my $audit_sql = 'SELECT count(*) FROM payledger.payment_audit_log';

my $balances_before = q1($node, 'ledger', $balances_sql);
my $digest_before   = q1($node, 'ledger', $digest_sql);
my $audit_rows      = q1($node, 'ledger', $audit_sql);
my $audit_max = q1($node, 'ledger', 'SELECT max(id) FROM payledger.payment_audit_log');
my ($alice_balance) = q1($node, 'ledger', "SELECT balance FROM payledger.get_balance('$alice')");
is( q1( $node, 'ledger',
		"SELECT pending_debits || ' ' || available FROM payledger.get_balance('$alice')"),
	'3000 ' . ($alice_balance - 3000),
	'the pending hold is reserved on alice');

# --- dump ---

my $dump = PostgreSQL::Test::Utils::tempdir . '/ledger.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('ledger') ],
	'pg_dump -Fc of the ledger');

# --- restore, then prove it is the same ledger and that it works ---

sub check_restored
{
	my ($n, $db, $where, $outbox_todo) = @_;

	$n->safe_psql('postgres', "CREATE DATABASE $db");
	$n->command_ok([ 'pg_restore', '--exit-on-error', '-d', $n->connstr($db), $dump ],
		"$where: pg_restore without errors");

	is(q1($n, $db, $balances_sql), $balances_before,
		"$where: every balance, pending amount, status and version is restored");
	is(q1($n, $db, $digest_sql), $digest_before,
		"$where: every row of every payledger table is restored");
	is(q1($n, $db, $audit_sql), $audit_rows, "$where: audit row count equal");
	is( q1( $n, $db,
			"SELECT coalesce(string_agg(check_name || ': ' || detail, '; ' ORDER BY check_name), '') FROM payledger.check_ledger() WHERE NOT ok"
		),
		'',
		"$where: no check_ledger() check fails");
	is(q1($n, $db, 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
		't', "$where: check_ledger() is all ok");
	is(q1($n, $db, 'SELECT ok::text || coalesce(problem, \'\') FROM payledger.verify_audit_log()'),
		'true', "$where: the restored audit log verifies");

	{
		local $TODO = $outbox_todo;
		is(q1($n, $db, $read_sql), $unread,
			"$where: the outbox consumer reads the same unacknowledged events");
	}

	# stored results replay: posted, rejected, other currency, holds
	for my $key ('pay-2', 'too-much', 'fund-eur')
	{
		my (undef, $from, $to, $amount, $cur) = @{ $call{$key} };
		is( q1( $n, $db,
				"SELECT transfer_id || ' ' || status || ' ' || replayed::text "
				  . "FROM payledger.transfer('$from', '$to', $amount, '$cur', '$key')"),
			"$result{$key} true",
			"$where: key $key replays with the same id and status");
	}
	is( q1( $n, $db,
			"SELECT transfer_id || ' ' || status || ' ' || replayed::text "
			  . "FROM payledger.hold('$alice', '$carol', 3000, 'USD', '30 days', 'hold-1')"),
		"$result{'hold-1'} true",
		"$where: the key of the pending hold replays");
	is( q1( $n, $db,
			"SELECT transfer_id || ' ' || status || ' ' || replayed::text "
			  . "FROM payledger.void_hold('$hold2', 'void-2')"),
		"$result{'void-2'} true",
		"$where: the key of the void replays");
	is( sqlstate_of(
			$n, $db,
			"SELECT * FROM payledger.transfer('$alice', '$bob', 1235, 'USD', 'pay-1')"),
		'PY002',
		"$where: a restored key with other parameters raises PY002");
	is(q1($n, $db, $balances_sql), $balances_before, "$where: the replays moved no money");
	is(q1($n, $db, $audit_sql), $audit_rows, "$where: the replays wrote no audit row");

	# the frozen account is still frozen
	is( q1( $n, $db,
			"SELECT status || ' ' || reason_code FROM payledger.transfer('$frozen', '$bob', 10, 'USD', 'from-frozen-2')"
		),
		'rejected ACCOUNT_FROZEN',
		"$where: the frozen account is still frozen");

	# new work: the tables, indexes and the audit id sequence are usable
	my $r = q1($n, $db,
		"SELECT transfer_id || ' ' || status || ' ' || replayed::text FROM payledger.transfer('$bob', '$alice', 4321, 'USD', 'after-restore')"
	);
	my ($new_tid) = split / /, $r;
	is($r, "$new_tid posted false", "$where: a new transfer posts");
	is( q1( $n, $db,
			"SELECT transfer_id || ' ' || status FROM payledger.post_hold('$hold1', 2000, 'post-1')"),
		"$hold1 posted",
		"$where: the restored pending hold can be posted (in part)");
	is( q1( $n, $db,
			"SELECT balance || ' ' || pending_debits || ' ' || available FROM payledger.get_balance('$alice')"
		),
		join(' ', $alice_balance + 4321 - 2000, 0, $alice_balance + 4321 - 2000),
		"$where: the new transfer and the posted hold moved the money, the rest of the hold is released");
	is( q1( $n, $db,
			"SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id = '$new_tid' AND id > $audit_max AND event_type = 'TRANSFER_POSTED'"
		),
		'1',
		"$where: the new transfer is audited with an id above every restored one");
	is( q1( $n, $db,
			q{SELECT (count(*) - count(DISTINCT id)) || ' ' || (count(*) - count(DISTINCT event_id)) FROM payledger.payment_audit_log}
		),
		'0 0',
		"$where: audit ids and event ids stay unique");
	# the hot account: 100 left in its sub-balances and its own row; a
	# new credit lands in a sub-balance row of the restored ledger
	is(q1($n, $db, "SELECT balance FROM payledger.get_balance('$shop')"),
		'100', "$where: the hot account's balance is the sum of its rows");
	is( q1( $n, $db,
			"SELECT status FROM payledger.transfer('$alice', '$shop', 50, 'USD', 'shop-after-restore')"),
		'posted', "$where: a credit to the hot account posts");
	is( q1( $n, $db,
			"SELECT (SELECT balance FROM payledger.accounts WHERE id = '$shop') || ' ' || balance FROM payledger.get_balance('$shop')"
		),
		'-900 150',
		"$where: the credit went to a sub-balance row, the balance counts it");
	cmp_ok(q1($n, $db, $audit_sql), '>=', $audit_rows + 3,
		"$where: the decline, the transfer and the posted hold were audited");
	is(q1($n, $db, 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
		't', "$where: check_ledger() is all ok after new work");
	is(q1($n, $db, 'SELECT ok FROM payledger.verify_audit_log()'),
		't', "$where: the audit log verifies after new work");
	is( q1( $n, $db,
			"SELECT transfer_id || ' ' || status || ' ' || replayed::text FROM payledger.transfer('$bob', '$alice', 4321, 'USD', 'after-restore')"
		),
		"$new_tid posted true",
		"$where: the new key replays too");

	{
		local $TODO = $outbox_todo;
		is( q1( $n, $db,
				"SELECT count(*) FROM payledger.read_events('export') WHERE payment_id = '$new_tid'"),
			'1',
			"$where: the outbox delivers an event written after the restore");
	}

	# the append-only guards came back with the schema
	my $audit_after = q1($n, $db, $audit_sql);
	is(sqlstate_of($n, $db, 'UPDATE payledger.payment_audit_log SET amount_cents = 0'),
		'PY003', "$where: UPDATE of the audit log raises PY003");
	is(sqlstate_of($n, $db, 'DELETE FROM payledger.payment_audit_log'),
		'PY003', "$where: DELETE from the audit log raises PY003");
	is(sqlstate_of($n, $db, 'TRUNCATE payledger.payment_audit_log'),
		'PY003', "$where: TRUNCATE of the audit log raises PY003");
	is(sqlstate_of($n, $db, 'UPDATE payledger.entries SET amount = amount + 1'),
		'PY003', "$where: UPDATE of entries raises PY003");
	is( sqlstate_of(
			$n, $db,
			"SET session_replication_role = replica; UPDATE payledger.transfers SET amount = 1"),
		'PY003',
		"$where: the guards fire in replica mode too");
	is(q1($n, $db, $audit_sql), $audit_after, "$where: the audit log is unchanged");
	return;
}

check_restored($node, 'restored', 'new database', undef);

# The same dump restored on another server, whose transaction ids are
# smaller than the ones the dump carries: the outbox must still deliver what
# was unread and everything written afterwards (the era of events.c).
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->start;
check_restored($other, 'restored', 'another cluster', undef);

# the original database is untouched by all of this
is(q1($node, 'ledger', $digest_sql), $digest_before, 'the original ledger is unchanged');

$other->stop;
$node->stop;
done_testing();
