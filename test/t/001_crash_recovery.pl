
# Copyright (c) 2026, payledger authors

# 001_crash_recovery.pl: every acknowledged transfer survives a crash.
#
# Four clients move money between 50 accounts, each transfer with its own
# idempotency key.  A client prints an acknowledgement only after its COMMIT
# has returned, so whatever was printed is what the application was told is
# durable.  Mid-load one backend gets SIGKILL, which makes the postmaster
# restart every backend and replay WAL; later the server is stopped in
# immediate mode mid-load and started again.  After each crash a client
# retries the one call it had in flight, with the same key and parameters,
# as a real application would: that call is either replayed (it had
# committed) or done for the first time (it had not), never done twice.
#
# Then: check_ledger() is clean and the audit log verifies; every acknowledged transfer is in
# payledger.transfers with the acknowledged status and has exactly one audit
# row; nothing that was not acknowledged moved money; every balance equals
# what the acknowledged transfers add up to; a replay of acknowledged keys
# returns the stored result and moves nothing; each currency sums to zero.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nclients      = 4;
my $naccounts     = 50;
my $funding       = 10_000;
my $items_per_cli = 20_000;    # more than any phase can use
my $progress_step = 1500;      # committed transfers between two crashes
my $final_items   = 150;       # per client, after the last crash

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
restart_after_crash = on
log_statement = none
max_connections = 30
));
$node->start;

my $connstr = $node->connstr('postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION payledger');

# --- accounts: one system account without a floor funds 50 floored ones ---

my $system = $node->safe_psql('postgres',
	"SELECT payledger.create_account('USD', 'system', NULL)");
my @accounts = split /\n/, $node->safe_psql(
	'postgres', qq(
SELECT payledger.create_account('USD', 'customer', 0)
FROM generate_series(1, $naccounts)));
is(scalar @accounts, $naccounts, 'accounts created');

my %expected_balance = ($system => 0);
my $fund_sql = '';
for my $i (0 .. $#accounts)
{
	$fund_sql .=
	  "SELECT status FROM payledger.transfer('$system', '$accounts[$i]', $funding, 'USD', 'fund-$i');\n";
	$expected_balance{$system} -= $funding;
	$expected_balance{ $accounts[$i] } = $funding;
}
is( $node->safe_psql('postgres', $fund_sql),
	join("\n", ('posted') x $naccounts),
	'every account funded');

# five accounts take their credits in sub-balance rows, so crashes also hit
# transactions that spread credits (their balances are the sums)
$node->safe_psql('postgres',
	"SELECT payledger.set_sub_balances(id, 4) FROM unnest(ARRAY['"
	  . join("','", @accounts[ 0 .. 4 ]) . "']::uuid[]) id");

# --- the work: a fixed, seeded list of transfers per client ---

srand(20260101);
my @items;    # $items[$c][$i] = [from, to, amount, key]
for my $c (0 .. $nclients - 1)
{
	for my $i (0 .. $items_per_cli - 1)
	{
		my $from = $accounts[ int(rand($naccounts)) ];
		my $to;
		do { $to = $accounts[ int(rand($naccounts)) ] } while $to eq $from;

		# mostly small amounts, sometimes more than a balance can cover,
		# so that both posted and rejected outcomes are acknowledged
		my $amount = rand() < 0.1 ? 5_000 + int(rand(20_000)) : 1 + int(rand(500));
		push @{ $items[$c] }, [ $from, $to, $amount, "load-$c-$i" ];
	}
}

my @next_item = (0) x $nclients;    # first item not yet acknowledged
my @in_doubt;                       # [client, index] retried after a crash
my %ack;                            # key => {tid, status, replayed}
my @client_errors;
my $phase_no = 0;
my $tmp      = PostgreSQL::Test::Utils::tempdir;

# Start one psql per client on its items from the first unacknowledged one.
# Each item is its own transaction; the ACK line is printed only after
# COMMIT returned (ON_ERROR_STOP: a failed or lost COMMIT prints nothing).
sub start_clients
{
	my ($count) = @_;
	my @clients;

	$phase_no++;
	for my $c (0 .. $nclients - 1)
	{
		my $first  = $next_item[$c];
		my $last   = $first + $count - 1;
		my $script = "$tmp/client_${phase_no}_$c.sql";
		my $out    = "$tmp/client_${phase_no}_$c.out";
		my $err    = "$tmp/client_${phase_no}_$c.err";

		$last = $items_per_cli - 1 if $last >= $items_per_cli;
		die "client $c has no items left" if $first > $last;

		open my $fh, '>', $script or die "could not write $script: $!";
		for my $i ($first .. $last)
		{
			my ($from, $to, $amount, $key) = @{ $items[$c][$i] };
			print $fh <<"EOS";
BEGIN;
SELECT transfer_id AS tid, status AS st, replayed AS rp
  FROM payledger.transfer('$from', '$to', $amount, 'USD', '$key') \\gset
COMMIT;
\\echo ACK $c $i :tid :st :rp
EOS
		}
		close $fh;

		my $h = IPC::Run::start(
			[
				'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
				'-d', $connstr, '-f', $script
			],
			'<', \undef,
			'>', $out, '2>', $err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		push @clients,
		  { c => $c, h => $h, out => $out, err => $err, first => $first };
	}
	return \@clients;
}

# Wait for every client to exit (after a crash they lose their connection)
# and collect its acknowledgements.  Returns the clients' exit codes.
sub finish_clients
{
	my ($clients) = @_;
	my @codes;

	for my $cl (@$clients)
	{
		$cl->{h}->finish;
		push @codes, $cl->{h}->result(0);

		my $c        = $cl->{c};
		my $expected = $cl->{first};
		for my $line (split /\n/, slurp_file($cl->{out}))
		{
			next unless $line =~ /^ACK (\d+) (\d+) (\S+) (\S+) (\S+)$/;
			my ($lc, $li, $tid, $status, $replayed) = ($1, $2, $3, $4, $5);
			die "client $c printed an ACK of client $lc" if $lc != $c;
			die "client $c acknowledged item $li, expected $expected"
			  if $li != $expected;
			my $key = $items[$c][$li][3];
			die "key $key acknowledged twice" if exists $ack{$key};
			$ack{$key} = {
				tid      => $tid,
				status   => $status,
				replayed => $replayed,
				client   => $c,
				index    => $li,
				first    => ($li == $cl->{first}),
			};
			$expected++;
		}
		$next_item[$c] = $expected;

		# ERROR lines are failures of payledger's calls; losing the
		# connection (FATAL, "server closed the connection") is the point
		push @client_errors, grep { /ERROR:/ } split /\n/,
		  slurp_file($cl->{err});
	}
	# the item each client had in flight is in doubt until retried
	push @in_doubt, [ $_, $next_item[$_] ] for 0 .. $nclients - 1;
	return @codes;
}

sub transfers_committed
{
	return $node->safe_psql('postgres',
		'SELECT count(*) FROM payledger.transfers');
}

# Wait until the clients have committed another $progress_step transfers;
# give up at once when a client reports an error (it has stopped).
sub wait_for_progress
{
	my ($what, $clients) = @_;
	my $target   = transfers_committed() + $progress_step;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	my $errors   = '';

	while (time() < $deadline)
	{
		last if transfers_committed() >= $target;
		$errors = join '', map { slurp_file($_->{err}) } @$clients;
		last if $errors =~ /ERROR:/;
		usleep(50_000);
	}
	diag("client errors:\n$errors") if $errors =~ /ERROR:/;
	return if ok(transfers_committed() >= $target, "load is running before $what");
	$_->{h}->kill_kill for @$clients;
	die "the load made no progress before $what";
}

# --- phase 1: SIGKILL one backend that is running a transfer ---

my $clients = start_clients($items_per_cli);
wait_for_progress('the SIGKILL', $clients);

my $log_offset = -s $node->logfile;
my $victim;
for my $try (1 .. 500)
{
	# prefer a backend inside the call; a transaction that has done the
	# call and not yet committed is just as good a victim
	my $state = $try < 400 ? "= 'active'" : "IN ('active', 'idle in transaction')";
	$victim = $node->safe_psql(
		'postgres', qq{
SELECT pid FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND state $state AND query LIKE '%payledger.transfer(%'
LIMIT 1});
	last if $victim ne '' && kill('KILL', $victim);
	$victim = '';
}
isnt($victim, '', 'killed a backend running payledger.transfer with SIGKILL');

my @codes = finish_clients($clients);
is(scalar(grep { $_ != 0 } @codes), $nclients,
	'every client lost its connection in the crash');
$node->wait_for_log(qr/server process \(PID $victim\) was terminated by signal 9/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
ok($node->poll_query_until('postgres', 'SELECT true'),
	'server accepts connections after crash recovery');

# --- phase 2: go on, then stop in immediate mode mid-load ---

$clients = start_clients($items_per_cli);
wait_for_progress('the immediate shutdown', $clients);
$node->stop('immediate');
@codes = finish_clients($clients);
is(scalar(grep { $_ != 0 } @codes), $nclients,
	'every client lost its connection in the immediate shutdown');

$log_offset = -s $node->logfile;
$node->start;
ok( $node->log_contains(
		qr/database system was not properly shut down; automatic recovery in progress/,
		$log_offset),
	'restart after the immediate shutdown ran crash recovery');

# --- phase 3: retry what was in flight, finish a last stretch cleanly ---

$clients = start_clients($final_items);
@codes   = finish_clients($clients);
is(join(',', @codes), join(',', (0) x $nclients),
	'every client finished its last stretch without an error');
is(join("\n", @client_errors), '', 'no payledger call raised an error');

my $nacks     = scalar keys %ack;
my @posted    = grep { $ack{$_}{status} eq 'posted' } keys %ack;
my @rejected  = grep { $ack{$_}{status} eq 'rejected' } keys %ack;
my @bad_reply = grep { $ack{$_}{replayed} eq 't' && !$ack{$_}{first} } keys %ack;
cmp_ok($nacks, '>=', 2 * $progress_step, "acknowledged transfers: $nacks");
note 'calls in flight at a crash that had committed (answered by a replay): '
  . scalar(grep { $ack{$_}{replayed} eq 't' } keys %ack);
cmp_ok(scalar @posted,   '>', 0, 'some acknowledged transfers were posted');
cmp_ok(scalar @rejected, '>', 0, 'some acknowledged transfers were rejected');
is(join(',', sort @bad_reply), '',
	'only a call retried after a crash can be answered by a replay');

# --- the ledger after two crashes ---

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(check_name, ',' ORDER BY check_name) FROM payledger.check_ledger() WHERE NOT ok"
	),
	'',
	'check_ledger(): no check fails');
is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger(): all ok');
is( $node->safe_psql(
		'postgres',
		"SELECT ok || ' ' || rows_checked || ' ' || coalesce(problem, '-') FROM payledger.verify_audit_log()"
	),
	'true ' . $node->safe_psql('postgres', 'SELECT count(*) FROM payledger.payment_audit_log') . ' -',
	'the audit log verifies after the crashes, every row checked');

# the acknowledgements, as a table next to the ledger
my $ack_sql =
  "CREATE TABLE public.acks (k text PRIMARY KEY, tid uuid NOT NULL, status text NOT NULL,
	from_acct uuid NOT NULL, to_acct uuid NOT NULL, amount bigint NOT NULL);\n"
  . "INSERT INTO public.acks VALUES\n"
  . join(
	",\n",
	map {
		my ($c, $i) = ($ack{$_}{client}, $ack{$_}{index});
		my ($from, $to, $amount) = @{ $items[$c][$i] };
		"('$_', '$ack{$_}{tid}', '$ack{$_}{status}', '$from', '$to', $amount)"
	} sort keys %ack)
  . ";\n";
$node->safe_psql('postgres', $ack_sql);

is( $node->safe_psql(
		'postgres', q(
SELECT count(*) FROM public.acks a
WHERE NOT EXISTS (
	SELECT 1 FROM payledger.transfers t
	WHERE t.id = a.tid AND t.status = a.status AND t.status IN ('posted', 'rejected')
	  AND t.idempotency_key = a.k AND t.from_account = a.from_acct
	  AND t.to_account = a.to_acct AND t.amount = a.amount AND t.currency = 'USD'))),
	'0',
	'every acknowledged transfer is in payledger.transfers with its status');

is( $node->safe_psql(
		'postgres', q(
SELECT count(*) FROM public.acks a
WHERE (SELECT count(*) FROM payledger.payment_audit_log l
	   WHERE l.payment_id = a.tid
		 AND l.event_type = CASE a.status WHEN 'posted' THEN 'TRANSFER_POSTED'
										  ELSE 'TRANSFER_REJECTED' END
		 AND l.success = (a.status = 'posted')
		 AND l.idempotency_key = a.k
		 AND l.amount_cents = a.amount) <> 1
   OR (SELECT count(*) FROM payledger.payment_audit_log l
	   WHERE l.payment_id = a.tid) <> 1)),
	'0',
	'every acknowledged transfer has exactly one audit row, of its outcome');

is( $node->safe_psql(
		'postgres', q(
SELECT count(*) FROM public.acks a
WHERE (SELECT count(*) FROM payledger.entries e WHERE e.transfer_id = a.tid)
	  <> CASE a.status WHEN 'posted' THEN 2 ELSE 0 END)),
	'0',
	'posted transfers have their two entries, rejected ones none');

is( $node->safe_psql(
		'postgres', q(
SELECT count(*) FROM payledger.idempotency_keys i
JOIN public.acks a ON a.k = i.key AND a.tid = i.result_id AND a.status = i.status)),
	$nacks,
	'every acknowledged key is stored with its result');

is( $node->safe_psql(
		'postgres', q(
SELECT count(*) FROM payledger.transfers t
WHERE t.idempotency_key LIKE 'load-%'
  AND NOT EXISTS (SELECT 1 FROM public.acks a WHERE a.tid = t.id))),
	'0',
	'no transfer happened that was not acknowledged (retries never doubled one)');

# every balance is what the acknowledged transfers add up to
for my $key (@posted)
{
	my ($c, $i) = ($ack{$key}{client}, $ack{$key}{index});
	my ($from, $to, $amount) = @{ $items[$c][$i] };
	$expected_balance{$from} -= $amount;
	$expected_balance{$to}   += $amount;
}
my $balance_sql = q(
SELECT a.id || ' ' || b.balance || ' ' || b.available
FROM payledger.accounts a, payledger.get_balance(a.id) b
WHERE a.kind <> 'sub_balance' ORDER BY a.id);
my $balances = $node->safe_psql('postgres', $balance_sql);
is( $balances,
	join("\n",
		map { "$_ $expected_balance{$_} $expected_balance{$_}" }
		  sort keys %expected_balance),
	'every balance equals the sum of the acknowledged transfers');
cmp_ok(
	$node->safe_psql(
		'postgres', q(
SELECT count(*) FROM payledger.entries e
JOIN payledger.sub_balances s ON s.sub_account_id = e.account_id)),
	'>', 0,
	'some of those credits were posted to sub-balance rows');

is( $node->safe_psql(
		'postgres', q(
SELECT string_agg(currency || '=' || total, ',' ORDER BY currency)
FROM (SELECT currency, sum(balance) AS total FROM payledger.accounts GROUP BY currency) s)
	),
	'USD=0',
	'the balances of each currency sum to zero');

# --- replays: the calls that were in doubt, and the first and last of each
# client, posted and rejected alike ---

my %replay;
$replay{ $items[ $_->[0] ][ $_->[1] ][3] } = 1 for @in_doubt;
for my $c (0 .. $nclients - 1)
{
	$replay{ $items[$c][0][3] } = 1;
	$replay{ $items[$c][ $next_item[$c] - 1 ][3] } = 1;
}
$replay{$_} = 1 for grep { defined } (sort @rejected)[ 0 .. 4 ];
my @replay_keys = grep { exists $ack{$_} } sort keys %replay;
cmp_ok(scalar @replay_keys, '>=', 3 * $nclients, 'keys to replay chosen');

my $audit_count_sql = 'SELECT count(*), max(id) FROM payledger.payment_audit_log';
my $audit_before    = $node->safe_psql('postgres', $audit_count_sql);
my $replay_sql =
    "SELECT v.k || ' ' || r.transfer_id || ' ' || r.status || ' ' || r.replayed\n"
  . "FROM (VALUES\n"
  . join(
	",\n",
	map {
		my ($c, $i) = ($ack{$_}{client}, $ack{$_}{index});
		my ($from, $to, $amount) = @{ $items[$c][$i] };
		"('$_', '$from'::uuid, '$to'::uuid, ${amount}::bigint)"
	} @replay_keys)
  . ") v(k, f, t, amt)\n"
  . "CROSS JOIN LATERAL payledger.transfer(v.f, v.t, v.amt, 'USD', v.k) r ORDER BY v.k";
is( $node->safe_psql('postgres', $replay_sql),
	join("\n", map { "$_ $ack{$_}{tid} $ack{$_}{status} true" } @replay_keys),
	'replaying acknowledged keys returns the stored id and status, replayed = true');
is($node->safe_psql('postgres', $balance_sql),
	$balances, 'the replays moved no money');
is($node->safe_psql('postgres', $audit_count_sql),
	$audit_before, 'the replays wrote no audit row');

# the stored request survived too: other parameters under an old key are refused
my $k = $replay_keys[0];
my ($from, $to, $amount) = @{ $items[ $ack{$k}{client} ][ $ack{$k}{index} ] };
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres',
	"\\set VERBOSITY verbose\nSELECT * FROM payledger.transfer('$from', '$to', "
	  . ($amount + 1)
	  . ", 'USD', '$k')");
like($stderr, qr/ERROR:\s+PY002/,
	'an acknowledged key with other parameters raises PY002 after the crashes');

is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger() still all ok at the end');

$node->stop;
done_testing();
