# The notify worker: with payledger in shared_preload_libraries, listeners
# of payledger_events are woken by a background worker of the database,
# one NOTIFY standing for every commit since the last, and event-writing
# commits never take PostgreSQL's notify lock themselves: a session that
# holds that lock (here: a NOTIFY whose commit waits for a synchronous
# standby that does not exist, as any NOTIFY waits for a slow disk or a
# lagging standby) neither blocks nor fails a transfer.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('notify');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'payledger'
synchronous_commit = local
});
$node->start;

my $src = '00000000-0000-7000-8000-000000000001';
my $dst = '00000000-0000-7000-8000-000000000002';
my $setup = qq{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$src');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$dst');
};
$node->safe_psql('postgres', $setup);

my $n = 0;
sub transfer_sql
{
	$n++;
	return "SELECT status FROM payledger.transfer('$src', '$dst', 1, 'USD', 'k$n')";
}

# the notifications the listener has received so far, as a list of sender pids
sub received
{
	my ($listener) = @_;
	my $out = $listener->query_safe('SELECT 1');
	return $out =~ /Asynchronous notification "payledger_events" received from server process with PID (\d+)/g;
}

sub count_received
{
	my @pids = received(@_);
	return scalar(@pids);
}

# waits until the listener has received at least one notification
sub wait_for_notification
{
	my ($listener, $seconds) = @_;
	my @pids;
	my $until = time() + $seconds;
	while (time() < $until)
	{
		push @pids, received($listener);
		last if @pids;
		usleep(50_000);
	}
	return @pids;
}

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN payledger_events');

# 1. a commit wakes the listener, and the NOTIFY comes from the worker
my $committer = $node->safe_psql('postgres', transfer_sql() . '; SELECT pg_backend_pid()');
my ($status, $committer_pid) = split /\n/, $committer;
is($status, 'posted', 'the transfer posted');
my @pids = wait_for_notification($listener, 30);
ok(@pids >= 1, 'the listener was woken after the commit');
isnt($pids[0], $committer_pid, 'the notification was not sent by the committing session');
is($node->safe_psql('postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE pid = $pids[0]"),
	'payledger notify', 'it was sent by the payledger notify worker');

# 2. commits are coalesced: 40 commits within two seconds, delay 1 second
$node->safe_psql('postgres', "ALTER SYSTEM SET payledger.notify_delay = '1s'; SELECT pg_reload_conf()");
usleep(300_000);
received($listener);
my $t0 = time();
$node->safe_psql('postgres', join(";\n", map { transfer_sql() } 1 .. 40));
my $elapsed = time() - $t0;
usleep(2_500_000);
@pids = received($listener);
ok(@pids >= 1, 'the 40 commits woke the listener');
ok(@pids <= int($elapsed) + 2,
	'one notification stood for many commits (' . scalar(@pids) . " for 40 commits in ${elapsed}s)");
$node->safe_psql('postgres', "ALTER SYSTEM RESET payledger.notify_delay; SELECT pg_reload_conf()");

# 3. the notify lock held by another session blocks no transfer
$node->safe_psql('postgres',
	"ALTER SYSTEM SET synchronous_standby_names = 'no_such_standby'; SELECT pg_reload_conf()");
usleep(300_000);
my $holder = $node->background_psql('postgres', on_error_stop => 0);
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
$holder->query_until(qr/holding/, q{
SET synchronous_commit = on;
BEGIN;
CREATE TABLE written_by_holder ();
NOTIFY some_other_channel;
\echo holding
COMMIT;
});
ok($node->poll_query_until('postgres',
		"SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $holder_pid"),
	'a session holds the notify lock while its commit waits for a standby');
received($listener);
my ($ret, $out, $err) = $node->psql('postgres',
	"SET lock_timeout = '5s'; " . transfer_sql(), timeout => 60);
is($ret, 0, 'a transfer commits while another session holds the notify lock') or diag($err);
is($out, 'posted', 'and it posted');
is(count_received($listener), 0, 'the worker waits for the notify lock, not the transfer');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($holder_pid)");
$holder->quit;
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()");
ok(scalar(wait_for_notification($listener, 30)) >= 1,
	'once the lock is free the worker wakes the listener for that commit');

# 4. a worker that is terminated is replaced by the next commit
my $worker = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'payledger notify'");
if ($worker ne '')
{
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $worker");
}
received($listener);
$node->safe_psql('postgres', transfer_sql());
@pids = wait_for_notification($listener, 30);
ok(@pids >= 1, 'after the worker was terminated the next commit still wakes the listener');

# 5. a worker per database; an idle one leaves, so DROP DATABASE works
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', $setup);
my $other = $node->background_psql('other');
$other->query_safe('LISTEN payledger_events');
$node->safe_psql('other', transfer_sql());
ok(scalar(wait_for_notification($other, 30)) >= 1,
	'a listener of another database is woken by its own worker');
$other->quit;
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other', timeout => 60);
is($ret, 0, 'the database can be dropped once its worker is idle') or diag($err);

# 6. notify_events = off: no wake-up at all
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET payledger.notify_events = off');
usleep(2_500_000);
received($listener);
$node->safe_psql('postgres', transfer_sql());
usleep(1_000_000);
is(count_received($listener), 0, 'with notify_events off no notification is sent');

$listener->quit;
is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger() is all ok');
$node->stop;
done_testing();
