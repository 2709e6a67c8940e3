# A card number that a client sends is refused (PY006) and never reaches the
# server log: not in the error, not as the failing statement.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('pan');
$node->init;
# the test framework logs every statement by default; production does not
$node->append_conf('postgresql.conf', "log_statement = 'none'\nlog_min_error_statement = error");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION payledger');
$node->safe_psql('postgres', q{
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '00000000-0000-7000-8000-000000000001');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '00000000-0000-7000-8000-000000000002');
});

my @pans = ('4111111111111111', '5500 0000 0000 0004', '4222-2222-2222-2');
my @calls = (
	q{SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 1, 'USD', 'k1', '{"note": "4111111111111111"}')},
	q{SELECT payledger.create_account('USD', 'generic', 0, '{"card": "5500 0000 0000 0004"}')},
	q{SELECT payledger.freeze_account('00000000-0000-7000-8000-000000000002', 'card 4222-2222-2222-2 stolen')},
	q{SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 1, 'USD', 'order 4111111111111111')},
	q{SET payledger.actor_id = 'agent 4111111111111111'; SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 1, 'USD', 'k2')},
);
foreach my $sql (@calls)
{
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	like($err, qr/card number/, 'refused: ' . substr($sql, 7, 40));
	unlike($err, qr/4111|5500 0000|4222-2222/, 'the error does not repeat the number');
}

is($node->safe_psql('postgres', 'SELECT count(*) FROM payledger.payment_audit_log'),
	'2', 'nothing but the two accounts was audited');

$node->stop;
my $log = slurp_file($node->logfile);
foreach my $pan (@pans)
{
	unlike($log, qr/\Q$pan\E/, "the server log does not contain $pan");
}
like($log, qr/card number/, 'the refusals themselves are logged');
done_testing();
