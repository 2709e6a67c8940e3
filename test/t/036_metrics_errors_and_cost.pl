# 036_metrics_errors_and_cost.pl: payledger_errors_total counts the errors
# raised inside payledger calls, whoever raises them (PostgreSQL's lock
# manager, the audit-partition and sub-balance code, the risk hook whose
# error payledger swallowed), and a scrape of payledger.metrics does not
# grow with the ledger's history: its buffer count is the same before and
# after 20,000 more transfers.  A flush that updates some of a backend's
# counter rows and inserts another counts each once.  A backend that counts
# thousands of calls keeps its counter rows on the page they are on (the
# dead versions are pruned, the updates stay HOT), with autovacuum off.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'\nlog_statement = none");
$node->start;

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }
sub errors
{
	my ($state) = @_;
	return q1("SELECT coalesce(sum(value), 0) FROM payledger.metrics"
		  . " WHERE metric = 'payledger_errors_total' AND labels->>'sqlstate' = '$state'");
}

my $sys = '00000000-0000-7000-8000-000000000001';
my $a = '00000000-0000-7000-8000-000000000002';
my $b = '00000000-0000-7000-8000-000000000003';
q1('CREATE EXTENSION payledger');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$a')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$b')");
q1("SELECT payledger.transfer('$sys', '$a', 100000000, 'USD', 'fund')");

# lock_timeout and statement_timeout while a transfer waits for an account
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT payledger.transfer('$a', '$b', 1, 'USD', 'holder')");
my ($rc, $out, $err) = $node->psql('postgres',
	"SET lock_timeout = '100ms'; SELECT payledger.transfer('$a', '$b', 1, 'USD', 'waits-1')");
like($err, qr/lock timeout/, 'a transfer waiting for a locked account times out (55P03)');
($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '100ms'; SELECT payledger.transfer('$a', '$b', 1, 'USD', 'waits-2')");
like($err, qr/statement timeout/, 'and hits statement_timeout (57014)');
$holder->query_safe('COMMIT');
$holder->quit;
is(errors('55P03'), '1', 'the lock timeout is counted');
is(errors('57014'), '1', 'the statement timeout is counted');

# errors of the audit-partition and sub-balance code
($rc, $out, $err) = $node->psql('postgres', 'SELECT payledger.create_audit_partitions(-1)');
isnt($rc, 0, 'create_audit_partitions(-1) raises');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT payledger.set_sub_balances('00000000-0000-7000-8000-0000000000ff', 2)");
like($err, qr/does not exist/, 'set_sub_balances of an unknown account raises');
is(errors('22023'), '1', 'the audit-partition error is counted');
is(errors('PY005'), '1', 'the sub-balance error is counted');

# an error of the risk hook that payledger swallowed (the payment failed closed)
q1(q{CREATE FUNCTION public.broken_score(p payledger.payments) RETURNS integer
	LANGUAGE sql AS $$ SELECT 1 / 0 $$});
my $p = q1("SELECT payledger.create_payment('$b', '$b', 10, 'USD', '$a', '$b', 'pay')");
is(q1("SET payledger.risk_function = 'public.broken_score';"
	  . " SELECT payledger.authorize_payment('$p', 'auth')"), 'failed', 'the broken hook fails the payment');
is(errors('22012'), '1', 'the error the hook raised is counted');

# a scrape costs the same whatever the history
sub scrape_blocks
{
	my $plan = q1('EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM payledger.metrics');
	my ($hit) = $plan =~ /"Shared Hit Blocks": (\d+)/;
	my ($read) = $plan =~ /"Shared Read Blocks": (\d+)/;
	return $hit + $read;
}
scrape_blocks();
my $before = scrape_blocks();
q1("SELECT count(*) FROM payledger.transfer_many(array_fill('$a'::uuid, ARRAY[20000]),"
	  . " array_fill('$b'::uuid, ARRAY[20000]), array_fill(1::bigint, ARRAY[20000]), 'USD',"
	  . " ARRAY(SELECT 'bulk-' || i FROM generate_series(1, 20000) i))");
q1('VACUUM ANALYZE');
scrape_blocks();
my $after = scrape_blocks();
note "a scrape touched $before buffers before and $after after 20,000 transfers";
cmp_ok($after - $before, '<', 30, 'a scrape does not read the history');
is(q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_transfers_total'
	AND labels = '{"status": "posted", "reason_code": ""}'}),
	q1(q{SELECT count(*) FROM payledger.transfers WHERE status = 'posted'}),
	'and still counts every posted transfer');
is(q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_audit_rows_total'}),
	q1('SELECT count(*) FROM payledger.payment_audit_log'), 'and every audit row');

# one flush that both updates this backend's rows (the audit rows) and adds
# one it has not written yet (a rejected transfer's reason): each counted
# once, none lost
my $by_status = q{SELECT string_agg(labels->>'status' || '/' || (labels->>'reason_code') || '=' || value, ' '
	ORDER BY labels->>'status', labels->>'reason_code') FROM payledger.metrics
	WHERE metric = 'payledger_transfers_total' AND labels->>'status' IN ('posted', 'rejected')};
my $from_table = q{SELECT string_agg(status || '/' || coalesce(reason_code, '') || '=' || n, ' '
	ORDER BY status, coalesce(reason_code, '')) FROM (SELECT status, reason_code, count(*) AS n
	FROM payledger.transfers WHERE status IN ('posted', 'rejected') GROUP BY 1, 2) t};
unlike(q1($by_status), qr/rejected/, 'no rejected transfer counted yet');
is(q1("SELECT status FROM payledger.transfer('$a', '$b', 1000000000000, 'USD', 'too-much')"),
	'rejected', 'a transfer beyond the balance is rejected');
like(q1($by_status), qr/rejected\/\w+=1/, 'the rejection is counted once');
is(q1($by_status), q1($from_table), 'every transfer status and reason matches the table');
is(q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_audit_rows_total'}),
	q1('SELECT count(*) FROM payledger.payment_audit_log'), 'and the audit rows of that same flush');

# 3,000 transfers, each its own transaction, from one backend: every call
# updates two counter rows; without pruning their dead versions would fill
# some 50 pages
q1('ALTER SYSTEM SET autovacuum = off');
q1('SELECT pg_reload_conf()');
my $pages = q{SELECT pg_relation_size('payledger.metric_counters') / 8192};
my $index_pages = q{SELECT pg_relation_size('payledger.metric_counters_pkey') / 8192};
my ($pages_before, $index_before) = (q1($pages), q1($index_pages));
$node->pgbench('-n -c 1 -t 3000', 0, [qr/processed: 3000\/3000/], [qr/^$/],
	'3,000 transfers from one backend',
	{ 'transfers' => "\\set r random(1, 1000000000000)\n"
		  . "SELECT payledger.transfer('$a', '$b', 1, 'USD', 'hot-counters-' || :r);\n" });
my ($pages_after, $index_after) = (q1($pages), q1($index_pages));
note "metric_counters: $pages_before -> $pages_after pages, its primary key $index_before -> $index_after";
cmp_ok($pages_after - $pages_before, '<=', 2, 'the counter rows stay on their pages');
cmp_ok($index_after - $index_before, '<=', 2, 'and their index does not grow');
is(q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_transfers_total'
	AND labels = '{"status": "posted", "reason_code": ""}'}),
	q1(q{SELECT count(*) FROM payledger.transfers WHERE status = 'posted'}),
	'and every posted transfer is counted');

$node->stop;
done_testing();
