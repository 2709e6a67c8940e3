# payledger_errors_total: with payledger in shared_preload_libraries, errors
# that payledger raises are counted by SQLSTATE in shared memory, and the
# count survives the rollback of the failing transaction.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('errors');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION payledger');

sub errors_of
{
	my ($sqlstate) = @_;
	return $node->safe_psql('postgres',
		"SELECT COALESCE(sum(value), 0)::bigint FROM payledger.metrics "
		  . "WHERE metric = 'payledger_errors_total' AND labels->>'sqlstate' = '$sqlstate'");
}

is(errors_of('PY005'), '0', 'no PY005 counted yet');

my ($ret, $out, $err) = $node->psql('postgres',
	"BEGIN; SELECT payledger.get_balance('00000000-0000-0000-0000-000000000000'); COMMIT;");
like($err, qr/does not exist/, 'the unknown account raised');
is(errors_of('PY005'), '1', 'the PY005 is counted although its transaction rolled back');

($ret, $out, $err) = $node->psql('postgres',
	"SELECT payledger.create_account('XYZ')");
is(errors_of('22023'), '1', 'an unknown currency counts as 22023');

($ret, $out, $err) = $node->psql('postgres', "SELECT 1/0");
is(errors_of('22012'), '0', 'errors raised outside payledger are not counted');

$node->restart;
is(errors_of('PY005'), '0', 'the counters start again with the server');

$node->stop;
done_testing();
