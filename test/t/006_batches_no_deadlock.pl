# transfer_many locks all the accounts of a batch in one fixed order before
# applying its items, so 16 clients sending 1,000-item batches over the same
# accounts never deadlock: every batch completes and the ledger balances.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('batches');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = 'none'\nmax_connections = 40");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION payledger;
	ALTER DATABASE postgres SET payledger.notify_events = off;
});
$node->safe_psql('postgres', q{
	SET payledger.require_idempotency_key = off;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '00000000-0000-7000-8000-000000000000');
	SELECT count(*) FROM generate_series(1, 2000) i,
		LATERAL payledger.create_account('USD', 'wallet', 0, '{}',
			('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid) a;
	SELECT count(*) FROM generate_series(1, 2000) i,
		LATERAL payledger.transfer('00000000-0000-7000-8000-000000000000',
			('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 1000000, 'USD') t;
});

my $script = "$PostgreSQL::Test::Utils::tmp_check/batch.sql";
open(my $fh, '>', $script) or die "cannot write $script: $!";
print $fh q{WITH p AS MATERIALIZED (
  SELECT g, a, 1 + ((a + (random() * 1998)::int) % 2000) AS b
    FROM (SELECT g, 1 + (random() * 1999)::int AS a FROM generate_series(1, 1000) g) s)
SELECT count(*) FROM payledger.transfer_many(
  (SELECT array_agg(('00000000-0000-7000-8000-' || lpad(to_hex(a), 12, '0'))::uuid ORDER BY g) FROM p),
  (SELECT array_agg(('00000000-0000-7000-8000-' || lpad(to_hex(b), 12, '0'))::uuid ORDER BY g) FROM p),
  (SELECT array_agg((1 + (random() * 100)::int)::bigint) FROM p),
  'USD',
  (SELECT array_agg('b' || md5(random()::text || clock_timestamp()::text) || 'k' || g ORDER BY g) FROM p));
};
close($fh);

my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', '16', '-j', '2', '-t', '4', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pgbench finished without a failed client') or diag($stderr);
unlike($stderr, qr/deadlock/i, 'no batch deadlocked');
my ($done) = $stdout =~ /number of transactions actually processed: (\d+)/;
is($done, 64, 'all 64 batches of 1,000 items completed');

is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger() is all ok after the concurrent batches');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM payledger.transfers WHERE kind = 'transfer'") - 2000,
	$done * 1000, 'every item of every completed batch is recorded once');

$node->stop;
done_testing();
