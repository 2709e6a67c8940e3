# 037_metrics_prepared.pl: a prepared transaction that moved money keeps the
# row locks of the metric counters it added to until COMMIT or ROLLBACK
# PREPARED.  Neither the session that prepared it nor a later session in
# the same backend slot may wait for it: both count into other rows, and
# the scrape still adds everything up once the prepared one commits.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('prepared');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'\nmax_prepared_transactions = 4\nlog_statement = none");
$node->start;

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my $sys = '00000000-0000-7000-8000-000000000001';
q1('CREATE EXTENSION payledger');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
# a prepared transaction keeps its accounts locked: each step has its own pair
my @acct;
for my $i (1 .. 8)
{
	$acct[$i] = sprintf('00000000-0000-7000-8000-0000000001%02d', $i);
	q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$acct[$i]')");
	q1("SELECT payledger.transfer('$sys', '$acct[$i]', 1000, 'USD', 'fund-$i')");
}
my ($a, $b, $c, $d, $e, $f, $g, $h) = @acct[1 .. 8];

sub posted
{
	return q1("SELECT coalesce(sum(value), 0) FROM payledger.metrics"
		  . " WHERE metric = 'payledger_transfers_total' AND labels->>'status' = 'posted'");
}
my $before = posted();

# the same session goes on after PREPARE TRANSACTION; a lock wait would hit
# lock_timeout (55P03) instead of returning
my ($rc, $out, $err) = $node->psql('postgres', qq{
	SET lock_timeout = '3s';
	BEGIN;
	SELECT status FROM payledger.transfer('$a', '$b', 1, 'USD', 'p1');
	SELECT status FROM payledger.transfer('$a', '$b', 1, 'USD', 'p1-replay');
	SELECT replayed FROM payledger.transfer('$a', '$b', 1, 'USD', 'p1');
	PREPARE TRANSACTION 'first';
	SELECT status FROM payledger.transfer('$c', '$d', 1, 'USD', 'after-prepare');
	SELECT replayed FROM payledger.transfer('$c', '$d', 1, 'USD', 'after-prepare');
});
is($rc, 0, 'the session that prepared a counting transaction goes on counting')
  or diag($err);

# a new session, in the slot the prepared transaction's session had
($rc, $out, $err) = $node->psql('postgres', qq{
	SET lock_timeout = '3s';
	BEGIN;
	SELECT status FROM payledger.transfer('$e', '$f', 1, 'USD', 'p2');
	PREPARE TRANSACTION 'second';
});
is($rc, 0, 'a second prepared counting transaction') or diag($err);
($rc, $out, $err) = $node->psql('postgres', qq{
	SET lock_timeout = '3s';
	SELECT status FROM payledger.transfer('$g', '$h', 1, 'USD', 'later');
	SELECT replayed FROM payledger.transfer('$g', '$h', 1, 'USD', 'later');
});
is($rc, 0, 'a later session does not wait for the prepared transactions') or diag($err);
is(posted() - $before, 2, 'the prepared transactions are not counted yet');

q1("COMMIT PREPARED 'first'");
q1("ROLLBACK PREPARED 'second'");
is(posted() - $before, 4, 'after COMMIT PREPARED and ROLLBACK PREPARED the scrape counts what committed');
is(q1("SELECT sum(replays) FROM payledger.replay_counts"), '3', 'every replay is counted once');
is(q1('SELECT count(*) FROM payledger.check_ledger() WHERE NOT ok'), '0', 'check_ledger is clean');

$node->stop;
done_testing();
