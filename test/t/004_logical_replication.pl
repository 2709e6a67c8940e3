# The audit log can be replicated to separate storage with PostgreSQL's own
# logical replication: every row arrives and the hash chains verify there.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;

$pub->safe_psql('postgres', 'CREATE EXTENSION payledger');
$sub->safe_psql('postgres', 'CREATE EXTENSION payledger');

$pub->safe_psql('postgres', q{
	SET payledger.require_idempotency_key = off;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '00000000-0000-7000-8000-000000000001');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '00000000-0000-7000-8000-000000000002');
	SELECT count(*) FROM generate_series(1, 50) n,
		payledger.transfer('00000000-0000-7000-8000-000000000001',
						   '00000000-0000-7000-8000-000000000002', n, 'USD') t;
	SELECT payledger.freeze_account('00000000-0000-7000-8000-000000000002', 'review');
	SELECT status FROM payledger.transfer('00000000-0000-7000-8000-000000000001',
						   '00000000-0000-7000-8000-000000000002', 1, 'USD');
});

# monthly partitions on both sides, made before the publication so that it
# takes them (a table inherits them unless ONLY is written)
my $months = 'SELECT string_agg(p::text, \',\' ORDER BY p::text) FROM payledger.create_audit_partitions(1) p';
my $made = $pub->safe_psql('postgres', $months);
is($sub->safe_psql('postgres', $months), $made, 'the same months on publisher and subscriber');
my ($this_month) = split /,/, $made;

$pub->safe_psql('postgres',
	'CREATE PUBLICATION audit_pub FOR TABLE payledger.payment_audit_log');
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION audit_sub CONNECTION '$connstr' PUBLICATION audit_pub");
$sub->wait_for_subscription_sync($pub, 'audit_sub');

# rows written after the initial copy stream over too
$pub->safe_psql('postgres', q{
	SET payledger.require_idempotency_key = off;
	SELECT payledger.unfreeze_account('00000000-0000-7000-8000-000000000002');
	SELECT status FROM payledger.transfer('00000000-0000-7000-8000-000000000002',
						   '00000000-0000-7000-8000-000000000001', 5, 'USD');
});
$pub->wait_for_catchup('audit_sub');

my $pub_rows = $pub->safe_psql('postgres',
	'SELECT count(*), md5(string_agg(row_hash::text, \',\' ORDER BY id)) FROM payledger.payment_audit_log');
my $sub_rows = $sub->safe_psql('postgres',
	'SELECT count(*), md5(string_agg(row_hash::text, \',\' ORDER BY id)) FROM payledger.payment_audit_log');
like($pub_rows, qr/^5[0-9]\|/, 'the publisher has its audit rows');
is($sub_rows, $pub_rows, 'every audit row arrived, with the same hashes');
is($sub->safe_psql('postgres', "SELECT count(*) FROM ONLY $this_month"), '2',
	"rows written after the partitions were made arrive in $this_month");

is($sub->safe_psql('postgres', 'SELECT ok FROM payledger.verify_audit_log()'),
	't', 'the replicated log verifies on the subscriber');
my $cp = $pub->safe_psql('postgres', 'SELECT payledger.audit_checkpoint()');
is($sub->safe_psql('postgres', "SELECT ok FROM payledger.verify_audit_log('$cp')"),
	't', 'the subscriber matches a checkpoint taken on the publisher');

# the append-only guard holds on the replica too
my ($ret, $out, $err) = $sub->psql('postgres',
	'UPDATE payledger.payment_audit_log SET amount_cents = 0');
like($err, qr/append-only/, 'the replicated log is append-only as well');

$sub->stop;
$pub->stop;
done_testing();
