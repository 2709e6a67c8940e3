# High availability with no acknowledged call lost: a pg_auto_failover
# monitor, a primary and a synchronous standby on loopback.  Clients move
# money and run payments with idempotency keys through a multi-host
# connection string; the primary's machine dies (kill -9 of its postmaster
# and of the pg_autoctl keeper that would otherwise restart it in place);
# the monitor promotes the standby; the clients retry what was in flight
# with the same keys.  On the new primary every acknowledged call is there
# exactly once, retries replay, check_ledger() and verify_audit_log() are
# clean and an outbox consumer resumes where it acknowledged, skipping
# nothing.  Then the old primary's machine comes back: its keeper rejoins
# it as the new primary's synchronous standby (pg_autoctl rewinds it first
# if it wrote WAL the new primary never got), and it holds the same ledger
# as the new primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $autoctl = '/usr/bin/pg_autoctl';
BAIL_OUT("$autoctl is missing (package postgresql-15-auto-failover)")
  unless -x $autoctl;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $pg_ctl = "$bindir/pg_ctl";
my $base = PostgreSQL::Test::Utils::tempdir('ha');
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;

# pg_autoctl keeps its configuration and state under the XDG directories;
# its keepers reach their own Postgres over TCP on loopback
$ENV{XDG_CONFIG_HOME} = "$base/config";
$ENV{XDG_DATA_HOME} = "$base/data";
$ENV{XDG_RUNTIME_DIR} = "$base/run";
mkdir $ENV{XDG_RUNTIME_DIR};
$ENV{PGHOST} = 'localhost';
delete $ENV{PGPORT};

my %port = map { $_ => PostgreSQL::Test::Cluster::get_free_port() }
  qw(monitor node1 node2);
my $monitor_uri =
  "postgres://autoctl_node\@localhost:$port{monitor}/pg_auto_failover?sslmode=disable";
my %started;	# pgdata => 1 for every pg_autoctl service this test started

sub conn
{
	my ($name, $db) = @_;
	return "host=localhost port=$port{$name} dbname=" . ($db // 'postgres')
	  . ' user=postgres connect_timeout=5';
}

sub sql
{
	my ($name, $query, $db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', conn($name, $db), '-c', $query ],
		'>', \$out, '2>', \$err);
	die "psql on $name failed: $err" if $?;
	chomp $out;
	return $out;
}

# each pg_autoctl service in a session of its own, so that one node's keeper,
# postmaster and backends die together and no other node with them
sub autoctl_start
{
	my ($name, @args) = @_;
	$started{"$base/$name"} = 1;
	system("setsid $autoctl @args --run > '$base/$name.log' 2>&1 < /dev/null &") == 0
	  or die "could not start pg_autoctl for $name";
}

sub wait_for
{
	my ($what, $cond) = @_;
	while (time < $deadline)
	{
		my $ok = eval { $cond->() };
		return 1 if $ok;
		usleep(200_000);
	}
	die "timed out waiting for $what";
}

sub node_states
{
	return sql('monitor',
		q{SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' ' ORDER BY nodeid)
		  FROM pgautofailover.node}, 'pg_auto_failover');
}

sub stop_all
{
	for my $pgdata (sort keys %started)
	{
		system("$autoctl stop --pgdata '$pgdata' --immediate > /dev/null 2>&1");
	}
	for my $pgdata (sort keys %started)
	{
		my $pidfile = "$pgdata/postmaster.pid";
		my $t = time + 30;
		usleep(200_000) while -e $pidfile && time < $t;
	}
	%started = ();
}
END { stop_all() if %started; }

# the monitor, tuned to notice a dead node within seconds instead of the
# defaults' half minute
autoctl_start('monitor', 'create monitor', "--pgctl $pg_ctl",
	"--pgdata $base/monitor", "--pgport $port{monitor}",
	'--hostname localhost --auth trust --no-ssl');
wait_for('the monitor', sub {
	sql('monitor', 'SELECT extversion FROM pg_extension WHERE extname = \'pgautofailover\'',
		'pg_auto_failover') ne '';
});
sql('monitor', $_, 'pg_auto_failover') for (
	'ALTER SYSTEM SET pgautofailover.health_check_period = 1000',
	'ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000',
	'ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1',
	'ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500',
	'ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 3000',
	'ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 3000',
	'SELECT pg_reload_conf()');

# the first node: an existing data directory with payledger preloaded (the
# recommended deployment), which pg_autoctl takes over; the standby is a
# base backup of it and so has the same settings
system("$bindir/initdb -D '$base/node1' -A trust -U postgres > '$base/initdb.log' 2>&1") == 0
  or die 'initdb failed';
PostgreSQL::Test::Utils::append_to_file("$base/node1/postgresql.conf",
	"shared_preload_libraries = 'payledger'\n");
autoctl_start('node1', 'create postgres', "--pgctl $pg_ctl",
	"--pgdata $base/node1", "--pgport $port{node1}", '--name node1',
	"--hostname localhost --pghost localhost --listen localhost --auth trust --no-ssl --monitor '$monitor_uri'");
wait_for('node1 alone', sub { node_states() eq 'node1:single/single' });
autoctl_start('node2', 'create postgres', "--pgctl $pg_ctl",
	"--pgdata $base/node2", "--pgport $port{node2}", '--name node2',
	"--hostname localhost --pghost localhost --listen localhost --auth trust --no-ssl --monitor '$monitor_uri'");
wait_for('node1 primary, node2 its standby', sub {
	node_states() eq 'node1:primary/primary node2:secondary/secondary';
});
like(sql('node1', 'SHOW synchronous_standby_names'), qr/^ANY 1 \(/,
	'the primary commits only once its standby has the commit');
is(sql('node1', q{SELECT sync_state FROM pg_stat_replication}), 'quorum',
	'the standby replicates synchronously');

# the ledger
my $bank  = '00000000-0000-7000-8000-0000000000b0';
my $shop  = '00000000-0000-7000-8000-0000000000c0';
my $cust  = '00000000-0000-7000-8000-0000000000d0';
my $macct = '00000000-0000-7000-8000-0000000000e0';
my $merchant = '00000000-0000-7000-8000-0000000000f0';
my $customer = '00000000-0000-7000-8000-0000000000f1';
my @wallet = map { sprintf('00000000-0000-7000-8000-0000000000a%d', $_) } 1 .. 2;
sql('node1', "
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$bank');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$shop');
	SELECT payledger.create_account('USD', 'customer', 0, '{}', '$cust');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$macct');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$wallet[0]');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$wallet[1]');
	SELECT payledger.transfer('$bank', '$wallet[0]', 1000000, 'USD', 'fund-1');
	SELECT payledger.transfer('$bank', '$wallet[1]', 1000000, 'USD', 'fund-2');
	SELECT payledger.transfer('$bank', '$cust', 1000000, 'USD', 'fund-3');");

# a consumer that has read and acknowledged part of the outbox
my %acked;
sub consume
{
	my ($name, $ack) = @_;
	my @ids = split /\n/, sql($name,
		q{SELECT event_id FROM payledger.read_events('ha', 100000)});
	if ($ack && @ids)
	{
		sql($name, "SELECT payledger.ack_events('ha', '$ids[-1]')");
		$acked{$_}++ for @ids;
	}
	return @ids;
}
consume('node1', 1);

# the clients: one connection string naming both nodes; libpq takes the one
# that accepts writes.  A call that fails (its server died, or no node
# accepts writes yet) is retried with the same key; a line is written only
# for an acknowledged call.
my $multi = "postgresql://postgres\@localhost:$port{node1},localhost:$port{node2}/postgres"
  . '?target_session_attrs=read-write&connect_timeout=2';
my $client = "$base/client.sh";
PostgreSQL::Test::Utils::append_to_file($client, <<'EOS');
conn=$1 mode=$2 c=$3 n=$4 out=$5
call() {
	local key=$1 sql=$2 r
	while [ $SECONDS -lt 120 ]; do
		if r=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$conn" -c "$sql" 2>>"$out.err"); then
			echo "$key|$r" >> "$out"
			echo "$r"
			return 0
		fi
		sleep 0.2
	done
	exit 1
}
for i in $(seq 1 "$n"); do
	case $mode in
	transfer)
		call "t$c-$i" "SELECT transfer_id || '|' || status FROM payledger.transfer('$6', '$7', $((c * 1000 + i)), 'USD', 't$c-$i')" >/dev/null ;;
	payment)
		id=$(call "p$c-$i-create" "SELECT payledger.create_payment('$6', '$7', $((100 + i)), 'USD', '$8', '$9', 'p$c-$i-create')")
		call "p$c-$i-auth" "SELECT payledger.authorize_payment('$id', 'p$c-$i-auth')" >/dev/null
		call "p$c-$i-capture" "SELECT payledger.capture_payment('$id', 'p$c-$i-capture')" >/dev/null ;;
	esac
done
EOS

my $per_client = 40;
my @clients = (
	[ 'transfer', 1, $wallet[0], $shop ],
	[ 'transfer', 2, $wallet[1], $shop ],
	[ 'payment', 3, $merchant, $customer, $cust, $macct ],
);
my @harness;
for my $cl (@clients)
{
	my ($mode, $c, @args) = @$cl;
	push @harness, IPC::Run::start([ 'bash', $client, $multi, $mode, $c,
			$mode eq 'payment' ? 15 : $per_client, "$base/acks.$c", @args ]);
}

sub acks
{
	my %a;
	for my $c (1 .. 3)
	{
		next unless -e "$base/acks.$c";
		for my $line (split /\n/, PostgreSQL::Test::Utils::slurp_file("$base/acks.$c"))
		{
			my ($key, @r) = split /\|/, $line;
			$a{$key} = \@r;
		}
	}
	return \%a;
}

# part of the work done, the consumer acknowledges while the clients go on,
# then the primary's machine dies
wait_for('the clients to get going', sub { keys %{ acks() } >= 20 });
consume('node1', 1);
my $postmaster = (split /\n/, PostgreSQL::Test::Utils::slurp_file("$base/node1/postmaster.pid"))[0];
my $pgid = `ps -o pgid= -p $postmaster`;
$pgid =~ s/\s//g;
my $acked_before = keys %{ acks() };
my $killed_at = time;
kill 'KILL', -$pgid;
delete $started{"$base/node1"};
ok(wait_for('the postmaster to go', sub { !kill(0, $postmaster) }),
	"node1's postmaster is gone ($acked_before calls acknowledged before)");

wait_for('node2 to be promoted', sub {
	node_states() =~ /node2:(wait_primary|primary)\/\1/;
});
note(sprintf('failover took %.1f s', time - $killed_at));
is(sql('node2', 'SELECT pg_is_in_recovery()'), 'f', 'node2 is the primary now');
like(node_states(), qr/node2:wait_primary\/wait_primary/,
	'alone, the new primary waits for a standby (wait_primary)');
is(sql('node2', 'SHOW synchronous_standby_names'), '',
	'and meanwhile commits without one: one copy of each commit until a standby is back');

my $all_done = 1;
for my $h (@harness)
{
	$h->finish;
	$all_done = 0 if $h->result != 0;
}
ok($all_done, 'every client finished its calls, retrying across the failover');
my $failed_tries = 0;
for my $c (1 .. 3)
{
	next unless -e "$base/acks.$c.err";
	$failed_tries += () = PostgreSQL::Test::Utils::slurp_file("$base/acks.$c.err") =~ /^psql: |^ERROR: |server closed/mg;
}
cmp_ok($failed_tries, '>', 0, "the clients saw the failover: $failed_tries tries failed and were retried");
my $acks = acks();
is(scalar(keys %$acks), 2 * $per_client + 15 * 3, 'every call was acknowledged');
cmp_ok(scalar(keys %$acks), '>', $acked_before, 'calls were acknowledged after the failover too');

# every acknowledged call is on the new primary exactly once
my %found = map { split /\|/ } split /\n/, sql('node2',
	q{SELECT idempotency_key || '|' || count(*) || ':' || min(id::text)
	  FROM payledger.transfers WHERE idempotency_key ~ '^t[0-9]' GROUP BY idempotency_key});
my @missing = grep { /^t/ && ($found{$_} // '') ne "1:$acks->{$_}[0]" } sort keys %$acks;
is("@missing", '', 'every acknowledged transfer is there once, with the id its client got');
is(sql('node2', "SELECT balance FROM payledger.get_balance('$shop')"),
	eval {
		my $s = 0;
		for (grep { /^t/ } keys %$acks) { /^t(\d+)-(\d+)$/; $s += $1 * 1000 + $2; }
		$s;
	},
	'the receiving account holds exactly the acknowledged amounts');
my %audit = map { split /\|/ } split /\n/, sql('node2',
	q{SELECT idempotency_key || '|' || count(*) FROM payledger.payment_audit_log
	  WHERE idempotency_key ~ '^p[0-9]' AND event_type LIKE 'PAYMENT\_%' GROUP BY idempotency_key});
@missing = grep { /^p/ && ($audit{$_} // 0) != 1 } sort keys %$acks;
is("@missing", '', 'every acknowledged payment step has exactly one audit row');
is(sql('node2', "SELECT count(*) || ' ' || sum(captured_amount) FROM payledger.payments
	WHERE merchant_id = '$merchant' AND state = 'captured'"),
	'15 ' . eval { my $s = 0; $s += 100 + $_ for 1 .. 15; $s },
	'every payment was created once and captured in full');

# retries with the same keys replay, after the failover, with the same results
my ($tkey) = grep { /^t1-/ } sort keys %$acks;
my ($n) = $tkey =~ /-(\d+)$/;
is(sql('node2', "SELECT transfer_id || '|' || status || '|' || replayed
	FROM payledger.transfer('$wallet[0]', '$shop', " . (1000 + $n) . ", 'USD', '$tkey')"),
	"$acks->{$tkey}[0]|posted|true", "a retry of $tkey replays its transfer");
is(sql('node2', "SELECT payledger.create_payment('$merchant', '$customer', 101, 'USD',
	'$cust', '$macct', 'p3-1-create')"), $acks->{'p3-1-create'}[0],
	'a retried create_payment returns the payment it made');
is(sql('node2', "SELECT payledger.capture_payment('$acks->{'p3-1-create'}[0]', 'p3-1-capture')"),
	'captured', 'a retried capture replays its state');

is(sql('node2', 'SELECT string_agg(check_name, \',\' ORDER BY check_name) FROM payledger.check_ledger() WHERE NOT ok'),
	'', 'check_ledger() is clean on the new primary');
is(sql('node2', 'SELECT ok FROM payledger.verify_audit_log()'), 't',
	'the audit log verifies on the new primary');

# the consumer resumes: nothing it acknowledged comes again, nothing is skipped
my @after = consume('node2', 0);
my @again = grep { $acked{$_} } @after;
is(scalar(@again), 0, 'no acknowledged event is delivered again');
my %seen = (%acked, map { $_ => 1 } @after);
my @all = split /\n/, sql('node2', 'SELECT event_id FROM payledger.payment_audit_log');
is(scalar(grep { !$seen{$_} } @all), 0,
	'every event is either acknowledged before the failover or delivered after it');
cmp_ok(scalar(@after), '>', 0, 'the consumer has events written after its last acknowledgement');

# listeners: LISTEN does not move with a failover; a listener that
# reconnects to the new primary is woken by its commits again, through the
# notify worker that the first event-writing commit there starts
my ($lout, $lerr);
IPC::Run::run([ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conn('node2'),
		'-c', 'LISTEN payledger_events',
		'-c', "SELECT status FROM payledger.transfer('$wallet[1]', '$shop', 7, 'USD', 'after-failover')",
		'-c', 'SELECT pg_sleep(1)' ],
	'>', \$lout, '2>', \$lerr);
like($lout, qr/Asynchronous notification "payledger_events" received/,
	'a listener on the new primary is woken after an event-writing commit');
is(sql('node2', q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'payledger notify'}),
	't', 'by the notify worker running on the new primary');

# the old primary's machine comes back: its keeper finds node2 primary and
# makes node1 follow it as its standby
$deadline = time + $PostgreSQL::Test::Utils::timeout_default;
$started{"$base/node1"} = 1;
system("setsid $autoctl run --pgdata '$base/node1' > '$base/node1-rejoin.log' 2>&1 < /dev/null &") == 0
  or die 'could not start pg_autoctl for node1 again';
wait_for('node1 to rejoin as the standby', sub {
	node_states() eq 'node1:secondary/secondary node2:primary/primary';
});
is(sql('node1', 'SELECT pg_is_in_recovery()'), 't', 'the old primary is back, as a standby');
like(sql('node2', 'SHOW synchronous_standby_names'), qr/^ANY 1 \(/,
	'the new primary commits synchronously again');
is(sql('node2', "SELECT status FROM payledger.transfer('$wallet[0]', '$shop', 9, 'USD', 'after-rejoin')"),
	'posted', 'a transfer on the new primary');
my $ledger = q{SELECT count(*) || ':' || md5(string_agg(id::text || ':' || balance || ':' || version, ','
	ORDER BY id)) FROM payledger.accounts};
my $on_node2 = sql('node2', $ledger);
ok(wait_for('node1 to replay it', sub { sql('node1', $ledger) eq $on_node2 }),
	'reaches the rejoined standby, whose accounts are the same as the primary\'s');
is(sql('node1', q{SELECT count(*) FROM payledger.transfers}), sql('node2', q{SELECT count(*) FROM payledger.transfers}),
	'and so are its transfers');
is(sql('node1', 'SELECT ok FROM payledger.verify_audit_log()'), 't',
	'its audit log verifies');

# the standby serves reads; a write there, direct or through the ledger
# writers, is refused as PostgreSQL refuses any write on a standby
sub sqlstate_of
{
	my ($name, $query) = @_;
	my ($out, $err);
	IPC::Run::run([ 'psql', '-X', '-A', '-t', '-q', '-v', 'VERBOSITY=verbose',
			'-d', conn($name), '-c', $query ], '>', \$out, '2>', \$err);
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "no error: $out";
}
is(sql('node1', "SELECT balance FROM payledger.get_balance('$shop')"),
	sql('node2', "SELECT balance FROM payledger.get_balance('$shop')"), 'get_balance on the standby');
my $pay = $acks->{'p3-1-create'}[0];
for my $read (
	[ 'list_transfers', 'SELECT count(*) FROM payledger.list_transfers(max_rows => 1000)' ],
	[ 'list_payments', "SELECT count(*) FROM payledger.list_payments(merchant_id => '$merchant', max_rows => 1000)" ],
	[ 'get_payment', "SELECT state || ' ' || captured_amount FROM payledger.get_payment('$pay')" ],
	[ 'list_accounts', 'SELECT count(*) FROM payledger.list_accounts()' ])
{
	my ($name, $query) = @$read;
	is(sql('node1', $query), sql('node2', $query), "$name() on the standby reads what the primary has");
}
for my $call (
	"transfer('$wallet[0]', '$shop', 1, 'USD', 'sb-1')",
	"submit_transfer('$wallet[0]', '$shop', 1, 'USD', 'sb-2')",
	"transfer_legs('[{\"from\": \"$wallet[0]\", \"to\": \"$shop\", \"amount\": 1}]', 'USD', 'sb-3')",
	"transfer_many(ARRAY['$wallet[0]']::uuid[], ARRAY['$shop']::uuid[], ARRAY[1]::bigint[], 'USD', ARRAY['sb-4'])",
	"hold('$wallet[0]', '$shop', 1, 'USD', '1 hour', 'sb-5')",
	"void_hold('$wallet[0]', 'sb-6')",
	"create_account('USD')",
	"freeze_account('$shop', 'sb')",
	"set_sub_balances('$shop', 2)",
	"create_payment('$merchant', '$customer', 5, 'USD', '$cust', '$macct', 'sb-7')",
	"refund_payment('$pay', 1, 'sb-8')",
	"expire_holds()",
	"expire_authorizations()",
	"settle_merchant('$merchant', now(), '$shop', 'sb-9')")
{
	my ($name) = $call =~ /^(\w+)/;
	is(sqlstate_of('node1', "SELECT payledger.$call"), '25006', "$name() on the standby: 25006");
}

stop_all();
done_testing();
