# The ledger writer behind submit_transfer (group commit):
#  1. many sessions submitting to one hot account at once are applied
#     several per transaction, every acknowledged call exactly once, and the
#     ledger and the audit chain stay clean;
#  2. the submitting role and its context settings reach the audit row, and
#     a request too large for a queue slot goes through shared memory;
#  3. a batch holding a PY002, a PY005 and a decline next to good items
#     applies the good ones, in one transaction, and hands each caller its
#     own outcome;
#  4. backpressure: with a small queue and a stalled writer a caller that
#     cannot queue within payledger.submit_timeout gets PY009, nothing done;
#  5. a cancel or statement_timeout while queued withdraws the submission;
#     while taken, the submission may still be applied and its retry
#     replays it; no queue slot is lost;
#  6. faults: the writer killed while calls wait (40003, or applied by the
#     next writer), a fast shutdown while calls wait (FATAL 40003); writer
#     kills, a fast and an immediate shutdown with calls in flight:
#     afterwards every acknowledged call is there exactly once and a retry
#     of every call with its key replays it or does it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('writer');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'payledger'
max_connections = 40
payledger.ledger_writers = 2
});
$node->start;

my $ext = '00000000-0000-7000-8000-0000000000e1';
my $hot = '00000000-0000-7000-8000-0000000000b1';
my $poor = '00000000-0000-7000-8000-0000000000a1';
my $nowhere = '00000000-0000-7000-8000-0000000000f9';
$node->safe_psql('postgres', qq{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'external', NULL, '{}', '$ext');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$hot');
	SELECT payledger.create_account('USD', 'customer', 0, '{}', '$poor');
	CREATE ROLE regress_app LOGIN IN ROLE payledger_app;
	GRANT SELECT ON payledger.payment_audit_log TO regress_app;
});

my $tmp = PostgreSQL::Test::Utils::tempdir;

# payledger.ledger_writers, once the writers beyond it have left
sub set_writers
{
	my ($n) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET payledger.ledger_writers = $n; SELECT pg_reload_conf()");
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) <= $n FROM pg_stat_activity WHERE backend_type = 'payledger ledger writer'"),
		"at most $n ledger writers run");
}
my $nfile = 0;

# a psql running a script in the background; output collected by finish_bg
sub start_bg
{
	my ($sql, %opt) = @_;
	my $file = "$tmp/script" . $nfile++ . '.sql';
	open(my $fh, '>', $file) or die;
	print $fh $sql;
	close $fh;
	my %h = (out => '', err => '');
	$h{run} = IPC::Run::start(
		[
			'psql', '-X', '-At', '-v', 'VERBOSITY=sqlstate',
			'-d', $node->connstr($opt{db} // 'postgres'), '-f', $file
		],
		'>', \$h{out}, '2>', \$h{err});
	return \%h;
}

sub finish_bg
{
	my ($h) = @_;
	$h->{run}->finish;
	return $h;
}

sub submit_sql
{
	my ($from, $amount, $key, $meta) = @_;
	$meta //= '{}';
	return "SELECT '$key', status, coalesce(reason_code, ''), replayed "
	  . "FROM payledger.submit_transfer('$from', '$hot', $amount, 'USD', '$key', '$meta');\n";
}

sub wait_until
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what);
}

sub waiting_callers
{
	my ($n) = @_;
	wait_until(
		"SELECT count(*) >= $n FROM pg_stat_activity WHERE wait_event_type = 'Extension' "
		  . "AND query LIKE '%submit_transfer%' AND pid <> pg_backend_pid()",
		"$n submissions wait");
}

sub writer_stalled
{
	wait_until(
		"SELECT count(*) = 1 FROM pg_stat_activity "
		  . "WHERE backend_type = 'payledger ledger writer' AND wait_event_type = 'Lock'",
		'the writer waits for the locked account');
}

sub writer_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'payledger ledger writer'");
}

# a session holding the hot account's row lock: the writer's batch stalls on it
sub lock_hot
{
	my $locker = $node->background_psql('postgres');
	$locker->query_safe(
		"BEGIN; SELECT 1 FROM payledger.accounts WHERE id = '$hot' FOR UPDATE");
	return $locker;
}

# key => "status|reason|replayed" of every acknowledged call in outputs
sub acknowledged
{
	my %ack;
	for my $h (@_)
	{
		for my $line (split /\n/, $h->{out})
		{
			my ($key, @rest) = split /\|/, $line, -1;
			$ack{$key} = join('|', @rest) if @rest == 3;
		}
	}
	return \%ack;
}

sub transfers_of
{
	my ($like) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM payledger.transfers WHERE idempotency_key LIKE '$like'");
}

sub ledger_clean
{
	my ($what) = @_;
	is($node->safe_psql('postgres',
			"SELECT bool_and(ok) FROM payledger.check_ledger()"),
		't', "check_ledger() is clean $what");
	is($node->safe_psql('postgres',
			"SELECT bool_and(ok) FROM payledger.verify_audit_log()"),
		't', "verify_audit_log() is clean $what");
}

# -------- 1. many submitters, one hot account
my @storm;
for my $s (1 .. 16)
{
	push @storm, start_bg(join('', map { submit_sql($ext, 1, "hot-$s-$_") } 1 .. 40));
}
finish_bg($_) for @storm;
my $ack = acknowledged(@storm);
is(scalar(keys %$ack), 640, '16 sessions had all 640 submissions acknowledged');
is(scalar(grep { $_ eq 'posted||f' } values %$ack), 640, 'each posted, none replayed');
is(join('', map { $_->{err} } @storm), '', 'no submission raised');
is(transfers_of('hot-%'), '640', 'every acknowledged submission is in the ledger once');
is($node->safe_psql('postgres', "SELECT balance FROM payledger.get_balance('$hot')"),
	'640', 'the hot account was credited by each');
my ($ntx, $largest) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*), max(n) FROM (
		SELECT xmin::text, count(*) AS n FROM payledger.transfers
		 WHERE idempotency_key LIKE 'hot-%' GROUP BY 1) t});
cmp_ok($ntx, '<', 640, "the 640 transfers were committed by $ntx transactions");
cmp_ok($largest, '>', 1, "the largest batch held $largest transfers");
ledger_clean('after the storm');

# -------- 2. role, context settings and a large request
my $big = '{' . join(', ', map { "\"f$_\": \"" . ('x' x 60) . '"' } 1 .. 80) . '}';
is( $node->safe_psql(
		'postgres', qq{
	SET ROLE regress_app;
	SET payledger.actor_type = 'CUSTOMER';
	SET payledger.ip_address = '192.168.7.9';
	SELECT status FROM payledger.submit_transfer('$ext', '$hot', 3, 'USD', 'ctx-1', '$big');
	SELECT db_role || ' ' || actor_type || ' ' || actor_id || ' ' || ip_address || ' ' || (metadata = '$big'::jsonb)
	  FROM payledger.payment_audit_log WHERE idempotency_key = 'ctx-1';
}),
	"posted\nregress_app CUSTOMER regress_app 192.168.xxx.xxx true",
	'the audit row names the submitting role and its context settings, and holds a 5 kB metadata');

# a role scoped to merchant m1 debits only m1's accounts: the writer checks
# the scope as the submitting role
my $m1 = '00000000-0000-7000-8000-0000000000d1';
my $own = '00000000-0000-7000-8000-0000000000c1';
my $other = '00000000-0000-7000-8000-0000000000c2';
$node->safe_psql('postgres', qq{
	CREATE ROLE regress_scoped LOGIN IN ROLE payledger_app;
	SELECT payledger.create_account('USD', 'merchant', NULL, '{}', '$own', '$m1');
	SELECT payledger.create_account('USD', 'merchant', NULL, '{}', '$other',
		'00000000-0000-7000-8000-0000000000d2');
	SELECT payledger.scope_role('regress_scoped', '$m1');
});
is( $node->safe_psql('postgres',
		"SET ROLE regress_scoped; SELECT status FROM payledger.submit_transfer('$own', '$hot', 1, 'USD', 'scope-own')"),
	'posted', 'a scoped role debits its merchant\'s account');
my ($rc, $scope_out, $scope_err) = $node->psql('postgres',
	"SET ROLE regress_scoped; SELECT payledger.submit_transfer('$other', '$hot', 1, 'USD', 'scope-other')",
	extra_params => [ '-v', 'VERBOSITY=sqlstate' ]);
like($scope_err, qr/ERROR:  42501/, 'and may not debit another merchant\'s: 42501');

my ($ro_out, $ro_err);
($rc, $ro_out, $ro_err) = $node->psql('postgres',
	"SET default_transaction_read_only = on; SELECT payledger.submit_transfer('$ext', '$hot', 1, 'USD', 'ro-1')",
	extra_params => [ '-v', 'VERBOSITY=sqlstate' ]);
like($ro_err, qr/ERROR:  25006/, 'a read-only session may not submit: 25006');

# two writers: one stalled on a locked account, the other applies the rest
my $locker = lock_hot();
my $stalled = start_bg(submit_sql($ext, 1, 'two-stalled'));
writer_stalled();
is( $node->safe_psql('postgres',
		"SELECT status FROM payledger.submit_transfer('$ext', '$poor', 1, 'USD', 'two-free')"),
	'posted', 'while one writer waits for a lock, the second applies other submissions');
$locker->query_safe('ROLLBACK');
finish_bg($stalled);
like($stalled->{out}, qr/^two-stalled\|posted\|\|f$/, 'and the first one posts once the lock is free');

# one writer from here on, so that which batch takes what is known
set_writers(1);

# -------- 3. bad items in a batch of good ones
$node->safe_psql('postgres',
	"SELECT payledger.transfer('$ext', '$hot', 7, 'USD', 'mix-dup')");
$locker = lock_hot();
my $first = start_bg(submit_sql($ext, 1, 'mix-first'));
writer_stalled();
my @mix = (
	start_bg(submit_sql($ext, 2, 'mix-good-1')),
	start_bg(submit_sql($ext, 8, 'mix-dup')),
	start_bg(submit_sql($poor, 1000, 'mix-decline')),
	start_bg(
		"SELECT status FROM payledger.submit_transfer('$nowhere', '$hot', 1, 'USD', 'mix-unknown');\n"),
	start_bg(submit_sql($ext, 3, 'mix-good-2')));
waiting_callers(6);
$locker->query_safe('ROLLBACK');
finish_bg($_) for ($first, @mix);
like($first->{out}, qr/^mix-first\|posted\|\|f$/, 'the stalled first submission posted');
like($mix[0]->{out}, qr/^mix-good-1\|posted\|\|f$/, 'a good item posted');
like($mix[1]->{err}, qr/ERROR:  PY002/, 'the reused key is PY002 to its caller');
like($mix[2]->{out}, qr/^mix-decline\|rejected\|INSUFFICIENT_FUNDS\|f$/,
	'the decline is returned to its caller');
like($mix[3]->{err}, qr/ERROR:  PY005/, 'the unknown account is PY005 to its caller');
like($mix[4]->{out}, qr/^mix-good-2\|posted\|\|f$/, 'the other good item posted');
is( $node->safe_psql('postgres', q{
	SELECT count(DISTINCT xmin::text) FROM payledger.transfers
	 WHERE idempotency_key IN ('mix-good-1', 'mix-decline', 'mix-good-2')}),
	'1', 'the good items and the decline were committed in one transaction');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM payledger.payment_audit_log
	 WHERE idempotency_key IN ('mix-unknown') OR (idempotency_key = 'mix-dup' AND amount_cents = 8)}),
	'0', 'the failed items wrote nothing');
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || replayed FROM payledger.submit_transfer('$ext', '$hot', 2, 'USD', 'mix-good-1')"),
	'posted true', 'a retry of a good item replays it');

# -------- 4. backpressure: a queue of two slots
$node->append_conf('postgresql.conf', qq{
payledger.submit_queue_size = 2
payledger.submit_timeout = '300ms'
});
$node->restart;
$locker = lock_hot();
my $taken = start_bg(submit_sql($ext, 1, 'bp-1'));
writer_stalled();
my $queued = start_bg(submit_sql($ext, 1, 'bp-2'));
waiting_callers(2);
my $t0 = time();
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT * FROM payledger.submit_transfer('$ext', '$hot', 1, 'USD', 'bp-3')",
	extra_params => [ '-v', 'VERBOSITY=sqlstate' ]);
my $waited = time() - $t0;
like($err, qr/ERROR:  PY009/, 'a third submission finds the queue full: PY009');
cmp_ok($waited, '>=', 0.3, 'after waiting payledger.submit_timeout');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM payledger.payment_audit_log WHERE idempotency_key = 'bp-3'"),
	'0', 'nothing was done for it');

# -------- 5. cancel and statement_timeout
my $cancelled = start_bg(
	"SET payledger.submit_timeout = '30s';\n" . submit_sql($ext, 1, 'cancel-queued'));
wait_until(
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE wait_event_type = 'Extension' "
	  . "AND query LIKE '%submit_transfer%'",
	'a third caller waits for a slot');
$node->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%cancel-queued%' AND pid <> pg_backend_pid()});
finish_bg($cancelled);
like($cancelled->{err}, qr/ERROR:  57014/, 'a call waiting for a slot is cancelled: 57014');
$node->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%bp-2%' AND pid <> pg_backend_pid()});
finish_bg($queued);
like($queued->{err}, qr/ERROR:  57014/, 'a queued call is cancelled: 57014');
my $timed = start_bg("SET statement_timeout = '200ms';\n" . submit_sql($ext, 1, 'timeout-queued'));
finish_bg($timed);
like($timed->{err}, qr/ERROR:  57014/, 'a queued call past statement_timeout: 57014');
$node->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%bp-1%' AND pid <> pg_backend_pid()});
finish_bg($taken);
like($taken->{err}, qr/ERROR:  57014/, 'the call whose submission the writer took is cancelled: 57014');
$locker->query_safe('ROLLBACK');
wait_until("SELECT count(*) = 1 FROM payledger.transfers WHERE idempotency_key = 'bp-1'",
	'the taken submission is applied all the same');
is(transfers_of('%-queued'), '0', 'the withdrawn submissions were not applied');
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || replayed FROM payledger.submit_transfer('$ext', '$hot', 1, 'USD', 'bp-1')"),
	'posted true', 'the retry of the cancelled, applied call replays it');
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || replayed FROM payledger.submit_transfer('$ext', '$hot', 1, 'USD', 'bp-2')"),
	'posted false', 'the retry of the withdrawn call does it');
# both slots are free again: two calls wait at once without PY009
$locker = lock_hot();
my @two = (start_bg(submit_sql($ext, 1, 'slots-1')));
writer_stalled();
push @two, start_bg(submit_sql($ext, 1, 'slots-2'));
waiting_callers(2);
$locker->query_safe('ROLLBACK');
finish_bg($_) for @two;
is(scalar(keys %{ acknowledged(@two) }), 2, 'no queue slot was lost');

# -------- 6. faults while calls wait
$node->append_conf('postgresql.conf', qq{
payledger.submit_queue_size = 64
payledger.submit_timeout = '5s'
});
$node->restart;

# the writer killed: the taken call gets 40003, the queued one is applied by the next writer
$locker = lock_hot();
my $lost = start_bg(submit_sql($ext, 1, 'kill-taken'));
writer_stalled();
my $survivor = start_bg(submit_sql($ext, 1, 'kill-queued'));
waiting_callers(2);
my $old_writer = writer_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_writer)");
finish_bg($lost);
like($lost->{err}, qr/ERROR:  40003/, 'the call whose writer was killed gets 40003');
writer_stalled();
isnt(writer_pid(), $old_writer, 'a new writer took over the queue');
$locker->query_safe('ROLLBACK');
finish_bg($survivor);
like($survivor->{out}, qr/^kill-queued\|posted\|\|f$/, 'the queued call was applied by the new writer');
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || replayed FROM payledger.submit_transfer('$ext', '$hot', 1, 'USD', 'kill-taken')"),
	'posted false', 'the retry of the lost call does it (its batch had rolled back)');

# calls in flight during writer kills, a fast and an immediate shutdown
my %all_keys;
sub storm
{
	my ($tag) = @_;
	my @h;
	for my $s (1 .. 8)
	{
		my @keys = map { "$tag-$s-$_" } 1 .. 100;
		$all_keys{$_} = 1 for @keys;
		push @h, start_bg(join('', map { submit_sql($ext, 1, $_) } @keys));
	}
	return @h;
}

sub storm_started
{
	my ($tag) = @_;
	wait_until("SELECT count(*) >= 20 FROM payledger.transfers WHERE idempotency_key LIKE '$tag-%'",
		"the $tag storm is under way");
}

# the storms with two writers
set_writers(2);
my @kill = storm('kill');
storm_started('kill');
for (1 .. 3)
{
	$node->safe_psql('postgres', q{
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE backend_type = 'payledger ledger writer'});
	usleep(100_000);
}
finish_bg($_) for @kill;
my $kill_ack = acknowledged(@kill);
my @kill_errors = join('', map { $_->{err} } @kill) =~ /ERROR:  (\w+)/g;
is(scalar(grep { $_ ne '40003' } @kill_errors), 0,
	'writer kills under load raise only 40003 (' . scalar(@kill_errors) . ' of them)');

# a fast shutdown while calls wait (one taken by the stalled writer, one queued)
$locker = lock_hot();
my @stopped = (start_bg(submit_sql($ext, 1, 'stop-taken')));
writer_stalled();
push @stopped, start_bg(submit_sql($ext, 1, 'stop-queued'));
waiting_callers(2);
$node->stop('fast');
finish_bg($_) for @stopped;
# the session gets FATAL 40003 when its own SIGTERM comes first, or ERROR
# 40003 when the writer's exit is seen first (then FATAL 57P01 ends it)
like($stopped[0]->{err}, qr/(?:FATAL|ERROR):  40003/, 'a fast shutdown ends the taken call with 40003');
like($stopped[1]->{err}, qr/(?:FATAL|ERROR):  40003/, 'and the queued call too');
$node->start;
is( $node->safe_psql('postgres', q{
	SELECT string_agg(status || ' ' || replayed, ', ' ORDER BY k) FROM (VALUES ('stop-taken'), ('stop-queued')) v(k),
		LATERAL payledger.submit_transfer('00000000-0000-7000-8000-0000000000e1',
			'00000000-0000-7000-8000-0000000000b1', 1, 'USD', k)}),
	'posted false, posted false', 'their retries do them (neither had committed)');

my @fast = storm('fast');
storm_started('fast');
$node->stop('fast');
finish_bg($_) for @fast;
my $fast_ack = acknowledged(@fast);
$node->start;

my @immediate = storm('imm');
storm_started('imm');
$node->stop('immediate');
finish_bg($_) for @immediate;
my $imm_ack = acknowledged(@immediate);
$node->start;

my %acked = (%$kill_ack, %$fast_ack, %$imm_ack);
cmp_ok(scalar(keys %acked), '<', scalar(keys %all_keys), 'the faults interrupted some calls');
my $present = $node->safe_psql('postgres',
	"SELECT count(*) FROM payledger.transfers WHERE idempotency_key IN ("
	  . join(', ', map { "'$_'" } sort keys %acked) . ')');
is($present, scalar(keys %acked), 'every acknowledged call is in the ledger');

# every call again with its key: an acknowledged one replays, any other replays or is done
my @keys = sort keys %all_keys;
my @retry;
for my $s (0 .. 7)
{
	my @mine = @keys[ grep { $_ % 8 == $s } 0 .. $#keys ];
	push @retry, start_bg(join('', map { submit_sql($ext, 1, $_) } @mine));
}
finish_bg($_) for @retry;
is(join('', map { $_->{err} } @retry), '', 'every retry succeeds');
my $retried = acknowledged(@retry);
my @bad = grep { $retried->{$_} ne 'posted||t' } sort keys %acked;
is(scalar(@bad), 0, 'the retry of every acknowledged call replays it');
is(scalar(grep { $retried->{$_} !~ /^posted\|\|[tf]$/ } keys %all_keys), 0,
	'the retry of every other call replays it or does it');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE n <> 1) || ' ' || count(*) FROM (
		SELECT idempotency_key, count(*) AS n FROM payledger.transfers
		 WHERE idempotency_key ~ '^(kill|fast|imm)-[0-9]' GROUP BY 1) t}),
	'0 ' . scalar(keys %all_keys), 'every call is in the ledger exactly once');
ledger_clean('after the faults');

$node->stop;
done_testing();
