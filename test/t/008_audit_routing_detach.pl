# 008_audit_routing_detach.pl: a month detached by archive_audit_partition()
# takes no more rows, even from a transaction whose snapshot is older than
# the detach.  The server runs under libfaketime with its offset in a file,
# so the test moves the clock: into last month to write there, to now to
# archive that month, and back into last month for an audit row whose event
# id falls in the archived month (what a writer that took its event id just
# before midnight and waited for its lock would write).  A REPEATABLE READ
# transaction that began before the archive still sees the month attached
# in its snapshot; its row must go to the parent, not into the archive.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::Local qw(timegm);

my ($libfaketime) = grep { -e $_ } (
	'/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/faketime/libfaketime.so.1');
plan skip_all => 'libfaketime is not installed (Debian package libfaketime)'
  unless $libfaketime;

# last month: its name and the epoch of its 15th, noon, and of its last minute
my @now = gmtime();
my ($y, $m) = ($now[5] + 1900, $now[4]);	# $m: last month, 1-based
($y, $m) = ($y - 1, 12) if $m == 0;
my $month = sprintf('%04d_%02d', $y, $m);
my $mid = timegm(0, 0, 12, 15, $m - 1, $y);
my $last_minute = timegm(0, 0, 0, 1, $now[4], $now[5] + 1900) - 60;
my $part = "payledger.payment_audit_log_$month";

my $node = PostgreSQL::Test::Cluster->new('routing');
$node->init;
my $clock = $node->basedir . '/faketime_offset';

# sets the server's clock to $epoch (it runs on from there)
sub clock_at
{
	my ($epoch) = @_;
	open(my $fh, '>', $clock) or die "cannot write $clock: $!";
	printf $fh "%+d\n", $epoch - time();
	close($fh);
}

clock_at($mid);
{
	local $ENV{LD_PRELOAD} = $libfaketime;
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
	local $ENV{FAKETIME_NO_CACHE} = '1';
	$node->start;
}

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

(my $dashed = $month) =~ s/_/-/;
like(q1('SELECT clock_timestamp()::text'), qr/^$dashed-15 12:0/, "the server's clock is in $dashed");

my $sys = '00000000-0000-7000-8000-000000000001';
my $a = '00000000-0000-7000-8000-000000000002';
q1('CREATE EXTENSION payledger');
is(q1('SELECT count(*) FROM payledger.create_audit_partitions(1)'), '2', 'last month and this one made');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$a')");
is(q1("SELECT status FROM payledger.transfer('$sys', '$a', 10, 'USD', 'early')"), 'posted',
	'a transfer last month');
is(q1("SELECT count(*) FROM ONLY $part"), '3', 'its row and the two accounts\' are in the month');

# a session that has the month cached as where its rows go
my $cached = $node->background_psql('postgres');
is($cached->query_safe("SELECT status FROM payledger.transfer('$sys', '$a', 5, 'USD', 'cached-1')"), 'posted',
	'another session writes into the month, which it then has cached');

# a transaction whose snapshot predates the archive
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($late->query_safe('SELECT count(*) FROM payledger.accounts'), '2', 'a REPEATABLE READ transaction takes its snapshot');

clock_at(time());
like(q1("SELECT payledger.archive_audit_partition('$part')"), qr/"rows": 4\b/, 'now the month is over and archived');
is(q1("SELECT count(*) FROM pg_inherits WHERE inhrelid = '$part'::regclass"), '0', 'and detached');

clock_at($last_minute);
like(q1('SELECT clock_timestamp()::text'), qr/^$dashed-\d\d 23:59/, "the clock is back in the last minute of $dashed");
is($late->query_safe("SELECT status FROM payledger.transfer('$sys', '$a', 20, 'USD', 'late-rr')"), 'posted',
	'the older transaction makes a transfer whose event id is in the archived month');
$late->query_safe('COMMIT');
$late->quit;
is(q1("SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE idempotency_key = 'late-rr'"),
	'payledger.payment_audit_log', 'its audit row went to the parent');
is($cached->query_safe("SELECT status FROM payledger.transfer('$sys', '$a', 6, 'USD', 'cached-2')"), 'posted',
	'the session with the month cached makes another transfer in it');
$cached->quit;
is(q1("SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE idempotency_key = 'cached-2'"),
	'payledger.payment_audit_log', 'its row went to the parent too (the archive invalidated the cache)');
is(q1("SELECT count(*) FROM ONLY $part"), '4', 'the archived month took no row');
is(q1("SELECT status FROM payledger.transfer('$sys', '$a', 30, 'USD', 'late-rc')"), 'posted',
	'control: a new READ COMMITTED transfer with an event id in the archived month');
is(q1("SELECT tableoid::regclass::text FROM payledger.payment_audit_log WHERE idempotency_key = 'late-rc'"),
	'payledger.payment_audit_log', 'goes to the parent too');

clock_at(time());
is(q1("SELECT ok::text || rows_checked FROM payledger.verify_audit_archive('$part')"), 'true4',
	'the archived month still verifies against its checkpoint');
is(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log()"), 'true',
	'and so does the log');

$node->stop;
done_testing();
