# 035_batch_memory.pl: memory of long batches and long transactions stays
# bounded.  A transfer_many from an account with limits checks the limits
# of every item; the backend's peak private memory (RssAnon, sampled while
# the call runs) may grow with the number of items only by the caller's
# own arrays and one byte per item: the result set is a tuplestore, which
# the batch session's small work_mem makes spill to disk early, so that
# what it keeps does not hide a per-item leak (before the fix: 40 bytes a
# item of remembered key lookups, and a day's-debits scan per item that
# made a batch quadratic in time).  And strings payledger keeps for a call
# must not pile up in TopTransactionContext over many calls of one
# transaction (before that fix: 541 kB over these 6000 calls).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

plan skip_all => 'needs /proc' unless -r "/proc/$$/status";

my $node = PostgreSQL::Test::Cluster->new('memory');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my $sys = '00000000-0000-7000-8000-000000000001';
my $src = '00000000-0000-7000-8000-000000000002';
my $dst = '00000000-0000-7000-8000-000000000003';
q1('CREATE EXTENSION payledger');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$src')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$dst')");
q1("SELECT payledger.transfer('$sys', '$src', 1000000000, 'USD', 'fund')");
q1("SELECT payledger.set_limits('$src', 1000000, 1000000000)");

sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (<$fh>) { return $1 if /^RssAnon:\s+(\d+) kB/; }
	return undef;
}

# peak RssAnon (kB) of the backend while it runs a transfer_many of $n
# items; the batch waits for an advisory lock this test holds until the
# backend has been found, so that sampling never misses it
sub batch_peak
{
	my ($n, $tag) = @_;
	my ($out, $err) = ('', '');
	my $gate = $node->background_psql('postgres');
	$gate->query_safe('SELECT pg_advisory_lock(4242)');
	my $sql = "SET work_mem = '64kB'; SELECT pg_advisory_lock(4242); SELECT count(*) FROM payledger.transfer_many("
	  . "array_fill('$src'::uuid, ARRAY[$n]), array_fill('$dst'::uuid, ARRAY[$n]),"
	  . " array_fill(1::bigint, ARRAY[$n]), 'USD',"
	  . " ARRAY(SELECT '$tag-' || i FROM generate_series(1, $n) i)) /* $tag */";
	my $h = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	my $pid;
	for (my $tries = 0; !$pid && $tries < 600; $tries++)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE wait_event = 'advisory' AND query LIKE '%/* $tag */%'") || undef;
		usleep(50_000) unless $pid;
	}
	my $peak = rss_anon_kb($pid) // 0;
	$gate->query_safe('SELECT pg_advisory_unlock(4242)');
	while ($h->pumpable)
	{
		my $kb = rss_anon_kb($pid);
		$peak = $kb if defined $kb && $kb > $peak;
		usleep(20_000);
		$h->pump_nb;
	}
	$h->finish;
	$gate->quit;
	like($out, qr/^$n$/m, "transfer_many of $n items ran") or diag($err);
	return $peak;
}

# the caller's arrays, per item: what the statement itself holds in memory
sub input_bytes
{
	my ($n, $tag) = @_;
	return q1("SELECT pg_column_size(array_fill('$src'::uuid, ARRAY[$n]))"
		  . " + pg_column_size(array_fill('$dst'::uuid, ARRAY[$n]))"
		  . " + pg_column_size(array_fill(1::bigint, ARRAY[$n]))"
		  . " + pg_column_size(ARRAY(SELECT '$tag-' || i FROM generate_series(1, $n) i))");
}

my ($n_small, $n_large) = (2000, 20000);
my $small = batch_peak($n_small, 'small');
my $large = batch_peak($n_large, 'large');
my $per_item = ($large - $small) * 1024 / ($n_large - $n_small);
my $input = (input_bytes($n_large, 'large') - input_bytes($n_small, 'small')) / ($n_large - $n_small);
note sprintf('peak RssAnon: %d kB for %d items, %d kB for %d items: %.0f bytes per item,'
	  . ' of which the arrays passed in are %.0f', $small, $n_small, $large, $n_large, $per_item, $input);
cmp_ok($small, '>', 0, 'the backend was sampled');
# what payledger keeps per item is one byte, and an 8-byte hash of its key
# while it locks the keys; the rest of the allowance is for the statement's
# building of its arrays and malloc's slack (measured: about 19 bytes)
cmp_ok($per_item - $input, '<', 32,
	'a limited source grows the backend by less than 32 bytes per item beyond its input');

# many calls in one transaction: TopTransactionContext stays small
q1(q{CREATE FUNCTION top_bytes() RETURNS bigint LANGUAGE sql
	AS $$ SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts WHERE name = 'TopTransactionContext' $$});
my $growth = q1(qq{
	BEGIN;
	SELECT payledger.transfer('$src', '$dst', 1, 'USD', 'replayed');
	SELECT payledger.hold('$src', '$dst', 1, 'USD', '1 day', 'held');
	CREATE TEMP TABLE before AS SELECT top_bytes() AS b;
	DO \$\$
	BEGIN
		FOR i IN 1 .. 3000 LOOP
			PERFORM payledger.transfer('$src', '$dst', 1, 'USD', 'replayed');
			PERFORM payledger.void_hold((SELECT id FROM payledger.holds WHERE idempotency_key = 'held'), 'void-' || i);
		END LOOP;
	END \$\$;
	SELECT top_bytes() - b FROM before;
	COMMIT;
});
($growth) = $growth =~ /(-?\d+)\s*$/;
note "TopTransactionContext grew by $growth bytes over 6000 calls";
# what is left is PostgreSQL's own: a combo command id (8 bytes and its hash
# entry) for each row a transaction updates again, such as a counter row
cmp_ok($growth, '<', 200 * 1024, 'TopTransactionContext does not keep what the calls read');

$node->stop;
done_testing();
