
# Copyright (c) 2026, payledger authors

# 141_load_and_faults.pl: the ledger survives load and faults at once.
#
# 32 clients (forked processes, each driving one psql session) run a random
# mix of transfers, holds posted in part or voided (some expiring under
# them), 3-leg transfer_legs, small transfer_many batches, submit_transfer
# when the server has it, and payment flows (create, authorize, capture with
# splits, refund, dispute, resolve) over 54 accounts: a floorless external
# account per currency, customers with and without a credit line, merchants
# and a hot merchant account whose credits go to sub-balances.  Every call
# carries an idempotency key.  A client logs what it was told: a result is
# acknowledged; an error is definite; a lost connection, a cancel, a timeout,
# a serialization failure or 40003 leaves the outcome unknown, and the client
# retries the same call with the same key, as real clients do.  Four clients
# run every call in a SERIALIZABLE transaction that also reads a balance.
#
# Faults during the load: SIGKILL of random backends (each a crash and
# restart of every backend), pg_terminate_backend, pg_cancel_backend, a tiny
# statement_timeout or lock_timeout on some calls, serialization failures,
# SIGKILL and pg_terminate_backend of a ledger writer (the background worker
# that applies submit_transfer calls, when the server has one), and one
# immediate shutdown and restart of the server.
#
# The checker afterwards (the bank test in ledger terms): every currency
# sums to zero; no account is below its floor; every acknowledged call is in
# the ledger exactly once (one idempotency record with the acknowledged
# result, its audit rows in exactly one transaction), and replaying it with
# the same key returns the same result and moves nothing; a call that ended
# in an error left nothing; a call whose outcome stayed unknown is there at
# most once; no keyed audit row belongs to a call nobody made; every payment
# change is audited; check_ledger() and verify_audit_log() are clean; the
# server log shows no backend ended by a signal other than the test's own
# SIGKILLs, no assertion failure and no XX000.  One line of figures is
# printed: calls, acknowledged, unknown, retries, faults by kind, violations.
#
# PAYLEDGER_LOAD_SEED and PAYLEDGER_LOAD_SECONDS change the seed (default
# fixed) and the length of the load (default 60).

use strict;
use warnings;

use IPC::Run;
use POSIX ();
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed         = $ENV{PAYLEDGER_LOAD_SEED}    // 20261207;
my $load_seconds = $ENV{PAYLEDGER_LOAD_SECONDS} // 60;
my $nclients     = 32;
my $nserial      = 4;         # clients 0..3 run SERIALIZABLE transactions
my $grace        = 60;        # seconds a client may still retry after the load

my $node = PostgreSQL::Test::Cluster->new('load');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'payledger'
max_connections = 90
restart_after_crash = on
log_statement = none
log_line_prefix = '%m [%p] %e '
log_min_error_statement = panic
deadlock_timeout = 200ms
));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION payledger');

my $has_submit = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_proc WHERE proname = 'submit_transfer'
	  AND pronamespace = 'payledger'::regnamespace}) > 0;
# submit_transfer applied by ledger writers (background workers), whose
# faults are then part of the plan
my $has_writer = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_settings WHERE name = 'payledger.ledger_writers'}) > 0;

# --- accounts ---

sub acct { return sprintf('00000000-0000-7000-8000-%012x', $_[0]) }

my $world_usd = acct(1);
my $world_eur = acct(2);
my @usd_customers = map { acct($_) } 10 .. 49;    # 10..14 have a credit line
my @eur_customers = map { acct($_) } 50 .. 54;
my $hot     = acct(60);                           # merchant A, sub-balances
my @merch   = (acct(60), acct(61), acct(62));
my $fee     = acct(63);
my @sellers = (acct(64), acct(65));
my @merchant_ids = map { sprintf('00000000-0000-7000-8000-0000000a%04x', $_) } 1 .. 3;

my $setup = "SET payledger.require_idempotency_key = off;\n";
$setup .= "SELECT payledger.create_account('USD', 'external', NULL, '{}', '$world_usd');\n";
$setup .= "SELECT payledger.create_account('EUR', 'external', NULL, '{}', '$world_eur');\n";
for my $i (0 .. $#usd_customers)
{
	my $floor = $i < 5 ? -5000 : 0;
	$setup .= "SELECT payledger.create_account('USD', 'customer', $floor, '{}', '$usd_customers[$i]');\n";
	$setup .= "SELECT payledger.transfer('$world_usd', '$usd_customers[$i]', 1000000, 'USD', 'fund-$i');\n";
}
for my $i (0 .. $#eur_customers)
{
	$setup .= "SELECT payledger.create_account('EUR', 'customer', 0, '{}', '$eur_customers[$i]');\n";
	$setup .= "SELECT payledger.transfer('$world_eur', '$eur_customers[$i]', 200000, 'EUR', 'fund-eur-$i');\n";
}
$setup .= "SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$_');\n" for @merch;
$setup .= "SELECT payledger.create_account('USD', 'fees', 0, '{}', '$fee');\n";
$setup .= "SELECT payledger.create_account('USD', 'seller', 0, '{}', '$_');\n" for @sellers;
$setup .= "SELECT payledger.create_account('USD', 'payout', 0, '{}', '" . acct(66) . "');\n";
$setup .= "SELECT payledger.set_sub_balances('$hot', 8);\n";
$node->safe_psql('postgres', $setup);
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM payledger.accounts WHERE kind <> 'sub_balance'}),
	'54', '54 accounts, one of them with 8 sub-balances');

my $tmp     = PostgreSQL::Test::Utils::tempdir;
my $connstr = $node->connstr('postgres');
my $stop_file = "$tmp/stop";

# SQLSTATEs after which the outcome is unknown and the same call is retried
my %transient = map { $_ => 1 } qw(57014 55P03 40001 40P01 57P01 57P02 57P03
  40003 PY009 25P02 53300 08000 08003 08006 08001 08004);

# ====================================================================
# The client: one forked process, one psql session at a time
# ====================================================================

sub client_main
{
	my ($c) = @_;
	srand($seed * 1000 + $c);
	my $serial = $c < $nserial;
	my $start_time = time();
	open my $log, '>', "$tmp/client-$c.log" or die "client $c: $!";
	$log->autoflush(1);

	my ($in, $out, $err, $h) = ('', '', '', undef);
	my $tmo = IPC::Run::timeout(60);
	my $seq = 0;
	my %stat;    # fault counts seen by this client

	my $stop_at;    # when the stop file appeared
	my $stopping = sub {
		return 1 if defined $stop_at;
		$stop_at = time() if -e $stop_file;
		return defined $stop_at;
	};

	my $disconnect = sub {
		return unless $h;
		eval { $h->kill_kill; $h->finish; };
		$h = undef;
	};

	# run one script; returns (sqlstate, \@rows); sqlstate 'lost' when the
	# session died or hung.  The script ends with "\echo __E__ n :SQLSTATE".
	my $run = sub {
		my ($script, $n) = @_;
		$out = '';
		$err = '';
		$in .= $script;
		$tmo->start(60);
		my $ok = eval {
			$h->pump while $h->pumpable && $out !~ /^__E__ $n ?(\S*)$/m;
			1;
		};
		# psql leaves SQLSTATE empty when it lost the connection
		if ($out =~ /^__E__ $n (\S+)$/m)
		{
			my $state = $1;
			my $body  = $`;
			my @rows  = grep { $_ ne '' && !/^__R__/ } split /\n/, $body;

			# in a transaction, the call's own state decides (COMMIT of a
			# failed transaction answers ROLLBACK, without an error)
			$state = $1 if $body =~ /^__R__ (\S+)$/m && $1 ne '00000';
			return ($state, \@rows);
		}
		print $log "HUNG\t$c\t$n\t$@\n" unless $ok;
		$disconnect->();
		return ('lost', []);
	};

	my $connect = sub {
		while (1)
		{
			return 0 if $stopping->() && time() > $stop_at + $grace;
			$in = '';
			$h = IPC::Run::start(
				[
					'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0',
					'-d', "$connstr application_name=load-$c"
				],
				'<', \$in, '>', \$out, '2>', \$err, $tmo);
			my $n = ++$seq;
			my $init = "\\set VERBOSITY terse\n";
			$init .= "SET lock_timeout = '10s';\n";
			my ($st) = $run->("${init}SELECT 1;\n\\echo __E__ $n :SQLSTATE\n", $n);
			return 1 if $st eq '00000';
			$disconnect->();
			usleep(100_000 + int(rand(200_000)));
		}
	};

	# one attempt at a call; $fault: '' or 'statement_timeout' or 'lock_timeout'
	my $attempt = sub {
		my ($sql, $fault, $read_acct) = @_;
		return ('lost', []) unless $h || $connect->();
		my $n = ++$seq;
		my $script;
		if ($serial)
		{
			$script =
			    "BEGIN ISOLATION LEVEL SERIALIZABLE;\n"
			  . "SELECT balance FROM payledger.get_balance('$read_acct') \\g /dev/null\n"
			  . "$sql;\n\\echo __R__ :SQLSTATE\nCOMMIT;\n\\echo __E__ $n :SQLSTATE\n";
		}
		elsif ($fault eq 'statement_timeout')
		{
			$script = "SET statement_timeout = '1ms';\n$sql;\n\\echo __E__ $n :SQLSTATE\nRESET statement_timeout;\n";
		}
		elsif ($fault eq 'lock_timeout')
		{
			$script = "SET lock_timeout = '1ms';\n$sql;\n\\echo __E__ $n :SQLSTATE\nSET lock_timeout = '10s';\n";
		}
		else
		{
			$script = "$sql;\n\\echo __E__ $n :SQLSTATE\n";
		}
		return $run->($script, $n);
	};

	# a logical call: retried with the same key until it has an answer
	# returns ('ack', \@rows) or ('err', sqlstate) or ('unknown', last)
	my $call = sub {
		my ($kind, $scope, $keys, $sql, $read_acct) = @_;
		my ($attempts, $unknown, $last) = (0, 0, '');
		my $t0 = time();
		my $fault = '';
		if (!$serial && rand() < 0.04)
		{
			$fault = rand() < 0.5 ? 'statement_timeout' : 'lock_timeout';
			$stat{"injected_$fault"}++;
		}
		while (1)
		{
			$attempts++;
			my ($st, $rows) = $attempt->($sql, $attempts == 1 ? $fault : '', $read_acct // $world_usd);
			my $outcome;
			if ($st eq '00000')
			{
				$outcome = 'ack';
			}
			elsif ($st eq 'lost' || $transient{$st})
			{
				$stat{"seen_$st"}++;
				$unknown = 1;
				$last    = $st;
				if ($stopping->() && time() > $stop_at + $grace)
				{
					$outcome = 'unknown';
				}
				else
				{
					# back off a little, more after each failure
					usleep(int(rand(10_000 * ($attempts < 10 ? $attempts : 10))) + ($st eq 'lost' ? 50_000 : 0));
					next;
				}
			}
			else
			{
				$outcome = 'err';
				$last    = $st;
			}
			my $result = $outcome eq 'ack' ? join(';', @$rows) : $last;
			print $log join("\t",
				'CALL', $c, $seq, $kind, $scope, join(',', @$keys),
				$outcome, $result, $attempts, $unknown, $sql,
				sprintf('%.3f', $t0 - $start_time), sprintf('%.3f', time() - $t0)), "\n";
			return ($outcome, $outcome eq 'ack' ? $rows : $last);
		}
	};

	my $kn = 0;
	my $key = sub { return sprintf('c%02d-%06d-%s', $c, ++$kn, $_[0]) };
	my $pick = sub { return $_[ int(rand(@_)) ] };
	my $two = sub {
		my @pool = @_;
		my $x = $pick->(@pool);
		my $y;
		do { $y = $pick->(@pool) } while $y eq $x;
		return ($x, $y);
	};
	my $amount = sub { return rand() < 0.05 ? 150_000 + int(rand(300_000)) : 1 + int(rand(800)) };
	my $tr_cols = q{transfer_id, status, coalesce(reason_code, '-'), replayed};
	my $nil = '00000000-0000-0000-0000-000000000000';

	my $last_sweep = time();
	while (!$stopping->())
	{
		usleep(20_000 + int(rand(40_000)));    # the client's own work
		# client 4 also runs the expiry sweeps (no key: operator calls)
		if ($c == 4 && time() - $last_sweep > 3)
		{
			$last_sweep = time();
			$attempt->('SELECT payledger.expire_holds()', '', $world_usd);
			next;
		}
		my $r = rand();
		if ($r < 0.26 || ($r < 0.34 && !($has_submit && !$serial)))
		{
			# a transfer: mostly between customers, some to the hot
			# account, some payouts from merchants, some in EUR
			my ($from, $to, $cur) = (undef, undef, 'USD');
			my $q = rand();
			if ($q < 0.1) { ($from, $to) = $two->(@eur_customers); $cur = 'EUR' }
			elsif ($q < 0.25) { $from = $pick->(@usd_customers); $to = $hot }
			elsif ($q < 0.35) { $from = $pick->(@merch, @sellers); $to = $pick->(@usd_customers) }
			else { ($from, $to) = $two->(@usd_customers) }
			my $k = $key->('t');
			my $amt = $amount->();
			$amt = 1 + int(rand(8000)) if $q >= 0.25 && $q < 0.35;
			$call->('transfer', $nil, [$k],
				"SELECT $tr_cols FROM payledger.transfer('$from', '$to', $amt, '$cur', '$k')", $from);
		}
		elsif ($r < 0.34)
		{
			my ($from, $to) = rand() < 0.3 ? ($pick->(@usd_customers), $hot) : $two->(@usd_customers);
			my $k = $key->('s');
			my $amt = $amount->();
			$call->('submit_transfer', $nil, [$k],
				"SELECT $tr_cols FROM payledger.submit_transfer('$from', '$to', $amt, 'USD', '$k')");
		}
		elsif ($r < 0.50)
		{
			# a hold, then a partial or full post, a void, or nothing
			my ($from, $to) = rand() < 0.3 ? ($pick->(@usd_customers), $hot) : $two->(@usd_customers);
			my $k = $key->('h');
			my $amt = $amount->();
			my $exp = rand() < 0.2 ? '1 second' : '1 hour';
			my ($o, $rows) = $call->('hold', $nil, [$k],
				"SELECT $tr_cols FROM payledger.hold('$from', '$to', $amt, 'USD', '$exp', '$k')", $from);
			next unless $o eq 'ack';
			my ($hid, $status) = split /\|/, $rows->[0];
			next unless $status eq 'pending';
			usleep(int(rand(1_500_000))) if $exp eq '1 second' && rand() < 0.5;
			my $q = rand();
			if ($q < 0.55)
			{
				my $part = rand() < 0.5 ? 'NULL' : 1 + int(rand($amt));
				my $k2 = $key->('hp');
				$call->('post_hold', $nil, [$k2],
					"SELECT $tr_cols FROM payledger.post_hold('$hid', $part, '$k2')", $from);
			}
			elsif ($q < 0.85)
			{
				my $k2 = $key->('hv');
				$call->('void_hold', $nil, [$k2],
					"SELECT $tr_cols FROM payledger.void_hold('$hid', '$k2')", $from);
			}
		}
		elsif ($r < 0.60)
		{
			# three legs, one of them into the hot account
			my ($p1, $p2) = $two->(@usd_customers);
			my $p3 = $pick->(@merch[ 1 .. 2 ]);
			my ($x, $y, $z) = map { 1 + int(rand(300)) } 1 .. 3;
			my $k = $key->('l');
			my $legs = "[{\"from\": \"$p1\", \"to\": \"$p2\", \"amount\": $x}, "
			  . "{\"from\": \"$p2\", \"to\": \"$p3\", \"amount\": $y}, "
			  . "{\"from\": \"$p3\", \"to\": \"$hot\", \"amount\": $z}]";
			$call->('transfer_legs', $nil, [$k],
				"SELECT $tr_cols FROM payledger.transfer_legs('$legs', 'USD', '$k')", $p1);
		}
		elsif ($r < 0.70)
		{
			my $n = 2 + int(rand(4));
			my (@f, @t, @a, @k);
			for (1 .. $n)
			{
				my ($x, $y) = rand() < 0.2 ? ($pick->(@usd_customers), $hot) : $two->(@usd_customers);
				push @f, $x;
				push @t, $y;
				push @a, $amount->();
				push @k, $key->('m');
			}
			$call->('transfer_many', $nil, \@k,
				"SELECT $tr_cols FROM payledger.transfer_many("
				  . "ARRAY['" . join("','", @f) . "']::uuid[], "
				  . "ARRAY['" . join("','", @t) . "']::uuid[], "
				  . "ARRAY[" . join(',', @a) . "]::bigint[], 'USD', "
				  . "ARRAY['" . join("','", @k) . "'])", $f[0]);
		}
		else
		{
			# a payment flow, step by step, each step its own call
			my $mi   = int(rand(3));
			my $mid  = $merchant_ids[$mi];
			my $macc = $merch[$mi];
			my $src  = $pick->(@usd_customers);
			my $cust = '00000000-0000-7000-8000-0000000c' . substr($src, -4);
			my $amt  = 100 + int(rand(5000));
			$amt = 400_000 + int(rand(100_000)) if rand() < 0.03;
			my $k = $key->('p');
			my ($o, $rows) = $call->('create_payment', $mid, [$k],
				"SELECT payledger.create_payment('$mid', '$cust', $amt, 'USD', '$src', '$macc', '$k')", $src);
			next unless $o eq 'ack';
			my $pid = $rows->[0];
			$k = $key->('pa');
			($o, $rows) = $call->('authorize_payment', $mid, [$k],
				"SELECT payledger.authorize_payment('$pid', '$k')", $src);
			next unless $o eq 'ack' && $rows->[0] eq 'authorized';
			if (rand() < 0.15)
			{
				$k = $key->('pv');
				$call->('void_payment', $mid, [$k], "SELECT payledger.void_payment('$pid', '$k')", $src);
				next;
			}
			my $cap = rand() < 0.5 ? $amt : 1 + int(rand($amt));
			my $fee_amt = int($cap / 40);
			my $sell = rand() < 0.5 ? int($cap / 5) : 0;
			my $splits = qq('[{"account": "$fee", "amount": $fee_amt});
			$splits .= qq(, {"account": "$sellers[$mi % 2]", "amount": $sell}) if $sell > 0;
			$splits .= "]'";
			$splits = 'NULL' if $fee_amt == 0;
			$k = $key->('pc');
			($o, $rows) = $call->('capture_payment', $mid, [$k],
				"SELECT payledger.capture_payment('$pid', '$k', $cap, $splits)", $macc);
			next unless $o eq 'ack' && $rows->[0] eq 'captured';
			if ($cap >= 3 && rand() < 0.5)
			{
				my $ref = 1 + int(rand($cap / 3));
				$k = $key->('pr');
				$call->('refund_payment', $mid, [$k],
					"SELECT payledger.refund_payment('$pid', $ref, '$k', 'requested_by_customer')", $macc);
				$cap -= $ref;
			}
			if ($cap >= 3 && rand() < 0.3)
			{
				my $dis = 1 + int(rand($cap / 3));
				$k = $key->('pd');
				($o, $rows) = $call->('dispute_payment', $mid, [$k],
					"SELECT payledger.dispute_payment('$pid', $dis, '$k', 'fraudulent')", $macc);
				next unless $o eq 'ack' && $rows->[0] eq 'disputed';
				my $won = rand() < 0.5 ? 'true' : 'false';
				$k = $key->('pw');
				$call->('resolve_dispute', $mid, [$k],
					"SELECT payledger.resolve_dispute('$pid', $won, '$k')", $macc);
			}
		}
	}
	$disconnect->();
	print $log join("\t", 'STAT', $c, map { "$_=$stat{$_}" } sort keys %stat), "\n";
	close $log;
}

# ====================================================================
# The load and the faults
# ====================================================================

my @pids;
# if this process dies, its clients must not outlive it: they hold prove's
# output pipe open, and the suite would wait for them for ever
my $parent = $$;
END { kill('KILL', @pids) if $$ == $parent && @pids; }
for my $c (0 .. $nclients - 1)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# never run the parent's END blocks (they would stop the node)
		my $ok = eval { client_main($c); 1 };
		print STDERR "client $c died: $@" unless $ok;
		POSIX::_exit($ok ? 0 : 1);
	}
	push @pids, $pid;
}

srand($seed);
my %faults = (
	kill9 => 0, terminate => 0, cancel => 0, immediate_restart => 0,
	kill9_writer => 0, terminate_writer => 0);
my @killed;    # pids this test killed with SIGKILL
my @plan = ((('kill9') x 4), (('terminate') x 10), (('cancel') x 10));
push @plan, (('kill9_writer') x 2), (('terminate_writer') x 3) if $has_writer;
@plan = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ rand(), $_ ] } @plan;
splice @plan, int(@plan / 2), 0, 'immediate_restart';
my $start = time();
my $step  = ($load_seconds - 8) / scalar(@plan);

sub try_sql
{
	my ($sql) = @_;
	my $timed_out;
	# psql() dies when psql exits before reading its input (a server that is
	# shutting down refuses it at once): that is a failed try, not an error
	my ($ret, $out) =
	  eval { $node->psql('postgres', $sql, timeout => 20, timed_out => \$timed_out) };
	return defined $ret && $ret == 0 && !$timed_out ? $out : undef;
}

sub wait_up
{
	for (1 .. 600)
	{
		return 1 if defined try_sql('SELECT 1');
		usleep(100_000);
	}
	return 0;
}

my $victims = q{SELECT pid FROM pg_stat_activity
	WHERE application_name LIKE 'load-%' AND backend_type = 'client backend'
	  AND state = 'active' AND query LIKE '%payledger.%' ORDER BY random() LIMIT 1};
# a ledger writer runs while submissions keep coming (it exits after two
# idle seconds); one applying a batch (state active) is preferred, so that
# the sessions waiting on it see 40003
my $writers = q{SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'payledger ledger writer'
	ORDER BY state = 'active' DESC, random() LIMIT 1};
my $busy_writers = q{SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'payledger ledger writer' AND state = 'active' LIMIT 1};
for my $i (0 .. $#plan)
{
	my $at = $start + 4 + $i * $step + rand($step / 2);
	usleep(($at - time()) * 1e6) if $at > time();
	my $kind = $plan[$i];
	if ($kind eq 'immediate_restart')
	{
		$node->stop('immediate');
		usleep(500_000);
		$node->start;
		$faults{$kind}++;
		next;
	}
	my $victim;
	for my $try (1 .. 200)
	{
		$victim = try_sql($kind !~ /_writer$/ ? $victims : $try <= 60 ? $busy_writers : $writers);
		last if defined $victim && $victim ne '';
		usleep($kind =~ /_writer$/ && $try <= 60 ? 0 : 10_000);
	}
	next unless defined $victim && $victim ne '';
	if ($kind eq 'kill9' || $kind eq 'kill9_writer')
	{
		next unless kill('KILL', $victim);
		push @killed, $victim;
		usleep(300_000);
		wait_up();
	}
	elsif ($kind eq 'terminate' || $kind eq 'terminate_writer')
	{
		next unless (try_sql("SELECT pg_terminate_backend($victim)") // '') eq 't';
	}
	else
	{
		next unless (try_sql("SELECT pg_cancel_backend($victim)") // '') eq 't';
	}
	$faults{$kind}++;
}
my $rest = $start + $load_seconds - time();
usleep($rest * 1e6) if $rest > 0;

open my $sf, '>', $stop_file or die;
close $sf;
note sprintf('load stopped after %.1f s', time() - $start);
my $clients_ok = 0;
for my $pid (@pids)
{
	waitpid($pid, 0);
	$clients_ok++ if $? == 0;
}
@pids = ();    # reaped: nothing left for the END block to kill
is($clients_ok, $nclients, 'every client finished');
note sprintf('clients finished after %.1f s', time() - $start);
ok(wait_up(), 'the server is up after the load');
cmp_ok($faults{kill9}, '>=', 2, "backends killed with SIGKILL: $faults{kill9}");
cmp_ok($faults{terminate}, '>=', 4, "backends terminated: $faults{terminate}");
cmp_ok($faults{cancel}, '>=', 4, "calls cancelled: $faults{cancel}");
is($faults{immediate_restart}, 1, 'one immediate shutdown and restart');
SKIP:
{
	skip 'no ledger writer in this build', 2 unless $has_writer;
	cmp_ok($faults{kill9_writer}, '>=', 1, "ledger writers killed with SIGKILL: $faults{kill9_writer}");
	cmp_ok($faults{terminate_writer}, '>=', 1, "ledger writers terminated: $faults{terminate_writer}");
}

# ====================================================================
# The checker
# ====================================================================

my (@calls, %stat);
for my $c (0 .. $nclients - 1)
{
	for my $line (split /\n/, slurp_file("$tmp/client-$c.log"))
	{
		my @f = split /\t/, $line;
		if ($f[0] eq 'CALL')
		{
			push @calls,
			  {
				client   => $f[1],
				kind     => $f[3],
				scope    => $f[4],
				keys     => [ split /,/, $f[5] ],
				outcome  => $f[6],
				result   => $f[7],
				attempts => $f[8],
				unknown  => $f[9],
				sql      => $f[10],
			  };
		}
		elsif ($f[0] eq 'STAT')
		{
			for my $kv (@f[ 2 .. $#f ])
			{
				my ($k, $v) = split /=/, $kv;
				$stat{$k} += $v;
			}
		}
	}
}

my @violations;
my $violation = sub { push @violations, $_[0]; diag("violation: $_[0]") };

my $ncalls   = scalar @calls;
my @acked    = grep { $_->{outcome} eq 'ack' } @calls;
my @errored  = grep { $_->{outcome} eq 'err' } @calls;
my @unsolved = grep { $_->{outcome} eq 'unknown' } @calls;
my $nunknown = grep { $_->{unknown} } @calls;
my $retries  = 0;
$retries += $_->{attempts} - 1 for @calls;
my %errs;
$errs{ $_->{result} }++ for @errored;
my %kinds;
$kinds{ $_->{kind} }++ for @acked;

# calls in doubt that had in fact been done: the retry was a replay
my $doubt_done = grep {
	$_->{unknown} && $_->{kind} =~ /transfer|hold/ && $_->{result} =~ /\|t(;|$)/
} @acked;

# definite errors: only what the contract raises for a request that the
# ledger's state made impossible; never a reused key, a unique violation,
# a deadlock or an internal error
my %allowed_err = map { $_ => 1 } qw(22023 PY001 PY004 PY005 22003);
diag("error: $_->{kind} $_->{result} after $_->{attempts} attempt(s): $_->{sql}")
  for (@errored)[ 0 .. ($#errored < 9 ? $#errored : 9) ];
for my $e (sort keys %errs)
{
	$violation->("$errs{$e} calls ended in SQLSTATE $e") unless $allowed_err{$e};
}
for my $s (qw(seen_40P01 seen_XX000))
{
	$violation->("clients saw $stat{$s} of $s") if $stat{$s};
}

# the calls, one row per key, next to the ledger
my @rows;
for my $cl (@calls)
{
	my @res = $cl->{outcome} eq 'ack' ? split(/;/, $cl->{result}) : ();
	for my $i (0 .. $#{ $cl->{keys} })
	{
		my ($id, $status) = ('', '');
		if (@res)
		{
			my @f = split /\|/, ($res[$i] // $res[0]);
			if ($cl->{kind} =~ /^(transfer|submit_transfer|hold|post_hold|void_hold|transfer_legs|transfer_many)$/)
			{
				($id, $status) = @f[ 0, 1 ];
			}
			elsif ($cl->{kind} eq 'create_payment')
			{
				($id, $status) = ($f[0], 'pending');
			}
			else
			{
				$status = $f[0];
			}
		}
		push @rows,
		  join("\t",
			$cl->{scope}, $cl->{keys}[$i], $cl->{kind}, $cl->{outcome},
			$id eq '' ? '\N' : $id, $status eq '' ? '\N' : $status);
	}
}
my $copy = "$tmp/calls.tsv";
open my $cf, '>', $copy or die;
print $cf "$_\n" for @rows;
close $cf;
chmod 0644, $copy;
$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.calls (scope uuid, key text COLLATE "C", kind text, outcome text, result_id uuid, status text);
COPY public.calls FROM '$copy';
CREATE INDEX ON public.calls (key);
CREATE TABLE public.audit_keys AS
	SELECT idempotency_key COLLATE "C" AS key, count(DISTINCT txid) AS txns
	FROM payledger.payment_audit_log WHERE idempotency_key IS NOT NULL GROUP BY 1;
CREATE UNIQUE INDEX ON public.audit_keys (key);
CREATE TABLE public.transfer_keys AS
	SELECT idempotency_key COLLATE "C" AS key, count(*) AS n
	FROM payledger.transfers WHERE idempotency_key IS NOT NULL GROUP BY 1;
CREATE UNIQUE INDEX ON public.transfer_keys (key);
ANALYZE public.calls, public.audit_keys, public.transfer_keys;
ANALYZE payledger.accounts, payledger.transfers, payledger.holds, payledger.payments,
	payledger.entries, payledger.idempotency_keys, payledger.payment_audit_log;
});

my @checks = (
	[
		'every currency sums to zero',
		q{SELECT count(*) FROM (SELECT currency FROM payledger.accounts GROUP BY currency
		  HAVING sum(balance) <> 0) s}
	],
	[
		'no account below its floor',
		q{SELECT count(*) FROM payledger.accounts a, payledger.get_balance(a.id) b
		  WHERE a.kind <> 'sub_balance' AND a.min_balance IS NOT NULL
			AND (b.balance < a.min_balance OR b.available < a.min_balance)}
	],
	[
		'every acknowledged call has its one idempotency record, with the acknowledged result',
		q{SELECT count(*) FROM public.calls c WHERE c.outcome = 'ack' AND NOT EXISTS (
			SELECT 1 FROM payledger.idempotency_keys i
			WHERE i.scope = c.scope AND i.key = c.key AND i.status = c.status
			  AND (c.result_id IS NULL OR i.result_id = c.result_id))}
	],
	[
		'every acknowledged call is audited, in exactly one transaction',
		q{SELECT count(*) FROM public.calls c LEFT JOIN public.audit_keys a USING (key)
		  WHERE c.outcome = 'ack' AND a.txns IS DISTINCT FROM 1}
	],
	[
		'every acknowledged transfer, hold and payment exists with that id',
		q{SELECT count(*) FROM public.calls c WHERE c.outcome = 'ack' AND c.result_id IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM payledger.transfers t WHERE t.id = c.result_id)
		  AND NOT EXISTS (SELECT 1 FROM payledger.holds h WHERE h.id = c.result_id)
		  AND NOT EXISTS (SELECT 1 FROM payledger.payments p WHERE p.id = c.result_id)}
	],
	[
		'every acknowledged posted transfer is posted once, under its key',
		q{SELECT count(*) FROM public.calls c LEFT JOIN public.transfer_keys t USING (key)
		  WHERE c.outcome = 'ack' AND c.kind IN ('transfer', 'submit_transfer', 'transfer_many', 'transfer_legs')
		  AND t.n IS DISTINCT FROM 1}
	],
	[
		'a call that raised an error left nothing',
		q{SELECT count(*) FROM public.calls c WHERE c.outcome = 'err' AND (
			EXISTS (SELECT 1 FROM payledger.idempotency_keys i WHERE i.scope = c.scope AND i.key = c.key)
			OR EXISTS (SELECT 1 FROM public.audit_keys a WHERE a.key = c.key))}
	],
	[
		'a call whose outcome stayed unknown happened at most once',
		q{SELECT count(*) FROM public.calls c JOIN public.audit_keys a USING (key)
		  WHERE c.outcome = 'unknown' AND a.txns > 1}
	],
	[
		'no keyed audit row belongs to a call nobody made',
		q{SELECT count(*) FROM public.audit_keys a
		  WHERE a.key NOT LIKE 'fund-%' AND NOT EXISTS (SELECT 1 FROM public.calls c WHERE c.key = a.key)}
	],
	[
		'no transfer under a key nobody used',
		q{SELECT count(*) FROM public.transfer_keys t
		  WHERE t.key NOT LIKE 'fund-%' AND NOT EXISTS (SELECT 1 FROM public.calls c WHERE c.key = t.key)}
	],
	[
		'every change of a payment is audited (one audit row per version)',
		q{SELECT count(*) FROM payledger.payments p
		  WHERE p.version <> (SELECT count(*) FROM payledger.payment_audit_log l
			WHERE l.payment_id = p.id AND l.event_type LIKE ANY (ARRAY['PAYMENT\_%', 'DISPUTE\_%'])
			  AND (l.success OR l.event_type = 'PAYMENT_FAILED'))}
	],
	[
		'every transfer is audited',
		q{SELECT count(*) FROM payledger.transfers t
		  WHERE NOT EXISTS (SELECT 1 FROM payledger.payment_audit_log l WHERE l.payment_id = t.id)}
	],
	[
		'check_ledger() is clean',
		q{SELECT count(*) FROM payledger.check_ledger() WHERE NOT ok}
	],
	[
		'verify_audit_log() is clean, every row checked',
		q{SELECT count(*) FROM payledger.verify_audit_log() v
		  WHERE NOT v.ok OR v.rows_checked <> (SELECT count(*) FROM payledger.payment_audit_log)}
	],
);
for my $chk (@checks)
{
	my ($name, $sql) = @$chk;
	my $n = $node->safe_psql('postgres', $sql);
	$violation->("$name: $n") if $n ne '0';
	is($n, '0', $name);
}
if (@violations)
{
	diag($node->safe_psql('postgres', 'SELECT * FROM payledger.check_ledger() WHERE NOT ok'));
}

# --- replays: every call that was retried and a sample of the others,
# with the same key, give the acknowledged result and move nothing ---

my @replay = grep { $_->{unknown} || $_->{attempts} > 1 } @acked;
my @rest = grep { !($_->{unknown} || $_->{attempts} > 1) } @acked;
srand($seed + 1);
for (1 .. 1500)
{
	last unless @rest;
	push @replay, splice(@rest, int(rand(@rest)), 1);
}
my $state_sql = q{SELECT (SELECT count(*) FROM payledger.payment_audit_log) || ' '
	|| (SELECT string_agg(id || '=' || balance || '/' || pending_debits, ',' ORDER BY id) FROM payledger.accounts)
	|| ' ' || (SELECT count(*) FROM payledger.transfers)};
my $before = $node->safe_psql('postgres', $state_sql);
my $script = "\\set VERBOSITY terse\n";
for my $i (0 .. $#replay)
{
	$script .= "\\echo __C__ $i\n$replay[$i]{sql};\n";
}
my ($ret, $rout, $rerr) = $node->psql('postgres', $script, on_error_stop => 0);
is($rerr, '', 'the replays raised no error');
my %got;
my $cur;
for my $line (split /\n/, $rout)
{
	if ($line =~ /^__C__ (\d+)$/) { $cur = $1; $got{$cur} = []; next }
	push @{ $got{$cur} }, $line if defined $cur;
}
my $replay_bad = 0;
for my $i (0 .. $#replay)
{
	my @want = split /;/, $replay[$i]{result};
	my @have = @{ $got{$i} // [] };
	my $same = @want == @have;
	for my $j (0 .. $#want)
	{
		last unless $same;
		if ($replay[$i]{kind} =~ /transfer|hold/)
		{
			my @w = split /\|/, $want[$j];
			my @g = split /\|/, ($have[$j] // '');
			$same = @g == 4 && $g[3] eq 't' && join('|', @w[ 0 .. 2 ]) eq join('|', @g[ 0 .. 2 ]);
		}
		else
		{
			$same = $want[$j] eq ($have[$j] // '');
		}
	}
	next if $same;
	$replay_bad++;
	diag("replay of $replay[$i]{keys}[0] gave [@have], acknowledged [@want]") if $replay_bad <= 5;
}
$violation->("$replay_bad replays differ") if $replay_bad;
is($replay_bad, 0, scalar(@replay) . ' replays with the same key returned the acknowledged result');
is($node->safe_psql('postgres', $state_sql), $before,
	'the replays wrote no audit row, moved no money, made no transfer');

# --- the server log ---

my $log = slurp_file($node->logfile);
my %mine = map { $_ => 1 } @killed;
my @signals = $log =~ /\(PID (\d+)\) was terminated by signal (\d+)/g;
my @foreign;
while (my ($pid, $sig) = splice(@signals, 0, 2))
{
	push @foreign, "$pid:$sig" unless $sig == 9 && $mine{$pid};
}
is(join(',', @foreign), '', 'no backend was ended by a signal other than the test\'s SIGKILLs');
$violation->('processes ended by other signals: ' . join(',', @foreign)) if @foreign;
my @traps = $log =~ /^(.*TRAP:.*)$/mg;
is(scalar @traps, 0, 'no assertion failure in the server log') or diag(join("\n", @traps));
$violation->('assertion failures') if @traps;
my @internal = $log =~ /^(.* XX000 .*)$/mg;
is(scalar @internal, 0, 'no internal error (XX000) in the server log') or diag(join("\n", @internal[0 .. 4]));
$violation->('XX000 in the log') if @internal;
my @panics = $log =~ /^(.*PANIC:.*)$/mg;
is(scalar @panics, 0, 'no PANIC in the server log') or diag(join("\n", @panics));

# --- the figures ---

my $timeouts_seen = ($stat{seen_57014} // 0);
my $line = sprintf(
	'load: %ds, %d clients, seed %d: calls=%d acknowledged=%d errors=%d unknown=%d'
	  . ' (done before the answer was lost: %d) unresolved=%d retries=%d'
	  . ' | acknowledged by kind: %s'
	  . ' | faults: kill9=%d terminate=%d cancel=%d immediate_restart=%d'
	  . ' kill9_writer=%d terminate_writer=%d'
	  . ' injected_statement_timeout=%d injected_lock_timeout=%d'
	  . ' | seen by clients: %s'
	  . ' | errors by sqlstate: %s | violations=%d',
	$load_seconds, $nclients, $seed, $ncalls, scalar(@acked), scalar(@errored),
	$nunknown, $doubt_done, scalar(@unsolved), $retries,
	join(',', map { "$_=$kinds{$_}" } sort keys %kinds),
	$faults{kill9}, $faults{terminate}, $faults{cancel}, $faults{immediate_restart},
	$faults{kill9_writer}, $faults{terminate_writer},
	$stat{injected_statement_timeout} // 0, $stat{injected_lock_timeout} // 0,
	join(',', map { "$_=$stat{$_}" } grep { /^seen_/ } sort keys %stat) || 'none',
	join(',', map { "$_=$errs{$_}" } sort keys %errs) || 'none',
	scalar(@violations));
diag($line);
cmp_ok(scalar(@acked), '>', 1000, 'the load acknowledged more than 1000 calls');
SKIP:
{
	skip 'no submit_transfer in this build', 1 unless $has_submit;
	cmp_ok($kinds{submit_transfer} // 0, '>', 0, 'submit_transfer calls were acknowledged');
}
cmp_ok($nunknown, '>', 0, 'some calls had an unknown outcome and were retried');
cmp_ok($stat{seen_40001} // 0, '>', 0, 'SERIALIZABLE sessions retried serialization failures');
is(scalar(@violations), 0, 'violations: 0');

$node->stop;
done_testing();
