# submit_transfer: on a server that preloads payledger it moves money like
# transfer(), with the same results, declines and idempotency (a submission
# and a transfer() with one key replay each other); it is always keyed, is
# refused inside a transaction block, and only payledger_app may call it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('submit');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'external', NULL, '{}', '00000000-0000-0000-0000-0000000000e1');
	SELECT payledger.create_account('USD', 'customer', 0, '{}', '00000000-0000-0000-0000-0000000000a1');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '00000000-0000-0000-0000-0000000000b1');
	SELECT payledger.transfer('00000000-0000-0000-0000-0000000000e1',
		'00000000-0000-0000-0000-0000000000a1', 1000, 'USD', 'fund');
});

my $acct_a = "'00000000-0000-0000-0000-0000000000a1'";
my $acct_b = "'00000000-0000-0000-0000-0000000000b1'";

sub sqlstate_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY sqlstate\n$sql");
	return $err =~ /ERROR:\s+([0-9A-Z]{5})/ ? $1 : "none: $out";
}

sub balance_of
{
	my ($acct) = @_;
	return $node->safe_psql('postgres',
		"SELECT balance FROM payledger.get_balance($acct)");
}

my $first = $node->safe_psql('postgres',
	"SELECT transfer_id || ' ' || status || ' ' || replayed "
	  . "FROM payledger.submit_transfer($acct_a, $acct_b, 300, 'USD', 's1', '{\"order\": 7}')");
like($first, qr/ posted false$/, 'a submission posts');
is(balance_of($acct_b), '300', 'the money moved');
my ($id) = split / /, $first;

my $again = $node->safe_psql('postgres',
	"SELECT transfer_id || ' ' || status || ' ' || replayed "
	  . "FROM payledger.submit_transfer($acct_a, $acct_b, 300, 'USD', 's1', '{\"order\": 7}')");
is($again, "$id posted true", 'the same submission replays the first result');
is(balance_of($acct_b), '300', 'the replay moved nothing');

is(sqlstate_of("SELECT payledger.submit_transfer($acct_a, $acct_b, 301, 'USD', 's1')"),
	'PY002', 'the same key with other parameters is PY002');

$node->safe_psql('postgres',
	"SELECT payledger.transfer($acct_a, $acct_b, 50, 'USD', 'shared-key')");
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || replayed FROM payledger.submit_transfer($acct_a, $acct_b, 50, 'USD', 'shared-key')"),
	'posted true',
	'a submission replays a transfer() made with the same key and parameters');
is(balance_of($acct_b), '350', 'and moves nothing again');

is( $node->safe_psql('postgres',
		"SELECT status || ' ' || reason_code FROM payledger.submit_transfer($acct_a, $acct_b, 100000, 'USD', 's-big')"),
	'rejected INSUFFICIENT_FUNDS',
	'a submission the funds cannot cover is declined, not raised');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM payledger.payment_audit_log WHERE idempotency_key = 's-big' AND NOT success"),
	'1', 'the decline is audited');

is( sqlstate_of(
		"SET payledger.require_idempotency_key = off; SELECT payledger.submit_transfer($acct_a, $acct_b, 1, 'USD', NULL)"),
	'PY008', 'a submission without a key is PY008 even with keys optional');
is(sqlstate_of("SELECT payledger.submit_transfer($acct_a, $acct_b, 0, 'USD', 's-zero')"),
	'22023', 'a zero amount is 22023');
is(sqlstate_of("SELECT payledger.submit_transfer(NULL, $acct_b, 1, 'USD', 's-null')"),
	'22004', 'a NULL account is 22004');
is(sqlstate_of("BEGIN; SELECT payledger.submit_transfer($acct_a, $acct_b, 1, 'USD', 's-block'); COMMIT"),
	'25001', 'inside a transaction block it is 25001');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM payledger.payment_audit_log WHERE idempotency_key IN ('s-zero', 's-null', 's-block')"),
	'0', 'the refused calls wrote nothing');

$node->safe_psql('postgres', q{
	CREATE ROLE regress_app LOGIN IN ROLE payledger_app;
	CREATE ROLE regress_nobody LOGIN;
	GRANT USAGE ON SCHEMA payledger TO regress_nobody;
});
is( $node->safe_psql('postgres',
		"SET ROLE regress_app; SELECT status FROM payledger.submit_transfer($acct_a, $acct_b, 5, 'USD', 's-app')"),
	'posted', 'payledger_app may submit');
is(sqlstate_of("SET ROLE regress_nobody; SELECT payledger.submit_transfer($acct_a, $acct_b, 5, 'USD', 's-nobody')"),
	'42501', 'a role with only USAGE on the schema may not');

is( $node->safe_psql('postgres',
		"SELECT bool_and(ok) FROM payledger.check_ledger()"),
	't', 'check_ledger() is clean');

$node->stop;
done_testing();
