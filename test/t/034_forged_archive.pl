# 034_forged_archive.pl: with a checkpoint kept outside the database, only
# archive records that the checkpoint itself lists may vouch for its chains.
# A superuser who walks past every guard, detaches this month and writes an
# archive record for it (signed with plain SHA-256, as without a key) that
# claims every chain of the checkpoint, must not make verify_audit_log(C)
# pass.  And the signing key can live in a file only the server's user may
# read; as a setting it is hidden from other roles and cannot be stored
# where they could read it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('forgery');
$node->init;
$node->start;

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my $sys = '00000000-0000-7000-8000-000000000001';
my $a = '00000000-0000-7000-8000-000000000002';
q1('CREATE EXTENSION payledger');
q1('SELECT count(*) FROM payledger.create_audit_partitions(0)');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$a')");
q1("SELECT payledger.transfer('$sys', '$a', 10 * i, 'USD', 'k' || i) FROM generate_series(1, 5) i");
my $month = q1(q{SELECT partition_name FROM payledger.audit_partitions
	WHERE pg_catalog.now() >= covers_from AND pg_catalog.now() < covers_until});
like($month, qr/^payment_audit_log_\d{4}_\d\d$/, "this month is $month");
is(q1("SELECT count(*) FROM ONLY payledger.$month"), '7', 'its rows are there');

my $cp = q1('SELECT payledger.audit_checkpoint()');
is(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log('$cp')"), 'true',
	'the log verifies against the checkpoint kept outside');

# the attack: detach the month by hand, then record it as archived with a
# checkpoint that claims every chain the outside checkpoint lists
q1(qq{
	SET session_replication_role = replica;
	ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
	ALTER TABLE payledger.$month NO INHERIT payledger.payment_audit_log;
	ALTER TABLE payledger.audit_archives DISABLE TRIGGER audit_archives_append_only;
	ALTER TABLE payledger.audit_archives DISABLE TRIGGER payledger_insert_guard;
	WITH m AS (SELECT * FROM payledger.audit_partitions WHERE partition_name = '$month'),
	b AS (SELECT m.*, jsonb_build_object('kind', 'archive', 'partition', '$month',
			'range_from', m.range_from, 'range_to', m.range_to, 'event_counts', '[]'::jsonb,
			'rows', 0, 'max_id', 0, 'taken_at', now(),
			'chains', '$cp'::jsonb->'chains') AS body FROM m)
	INSERT INTO payledger.audit_archives
	SELECT '$month', range_from, range_to, covers_from, covers_until, 0, '[]', body
		|| jsonb_build_object('signature', encode(sha256(convert_to(body::text, 'UTF8')), 'hex')), now()
	FROM b;
	ALTER TABLE payledger.audit_archives ENABLE ALWAYS TRIGGER audit_archives_append_only;
	ALTER TABLE payledger.audit_archives ENABLE ALWAYS TRIGGER payledger_insert_guard;
	ALTER EVENT TRIGGER payledger_protect_ddl ENABLE ALWAYS;
});
is(q1('SELECT count(*) FROM payledger.payment_audit_log'), '0', 'the month is gone from the log');
like(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log('$cp')"),
	qr/^false/, 'a forged archive record the checkpoint does not list vouches for nothing');
like(q1("SELECT problem FROM payledger.verify_audit_log('$cp')"),
	qr/chain [0-9a-f-]+ of the checkpoint is missing its head/, 'the missing chains are reported');

# the signing key in a file only the server's user can read
my $keyfile = $node->basedir . '/audit.key';
sub write_key
{
	my ($key, $mode) = @_;
	open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
	print $fh "$key\n";
	close($fh);
	chmod($mode, $keyfile);
}
write_key('k3y-in-a-file', 0600);
$node->append_conf('postgresql.conf', "payledger.audit_signing_key_file = '$keyfile'");
$node->reload;
my $cpk = q1('SELECT payledger.audit_checkpoint()');
like(q1("SELECT problem FROM payledger.verify_audit_log('$cpk')"),
	qr/^the archive record of $month does not match its signature/,
	'with the key file, a checkpoint\'s signature checks out and the forged record\'s plain SHA-256 does not');
write_key('another-k3y', 0600);
like(q1("SELECT problem FROM payledger.verify_audit_log('$cpk')"), qr/signature does not match/,
	'with another key in the file, its signature no longer matches');
write_key('k3y-in-a-file', 0644);
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT payledger.audit_checkpoint()');
like($err, qr/is accessible to other users/, 'a key file others can read is refused');
write_key('k3y-in-a-file', 0600);

# the key as a setting: hidden from other roles, never stored in catalogs they read
$node->append_conf('postgresql.conf', "payledger.audit_signing_key = 'k3y-from-the-config'");
$node->reload;
q1("CREATE ROLE reader LOGIN; ALTER ROLE reader SET session_preload_libraries = 'payledger'");
($rc, $out, $err) = $node->psql('postgres', 'SHOW payledger.audit_signing_key', extra_params => [ '-U', 'reader' ]);
like($err, qr/must be superuser/, 'another role cannot SHOW the key');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT count(*) FROM pg_settings WHERE name = 'payledger.audit_signing_key'},
	extra_params => [ '-U', 'reader' ]);
is($out, '0', 'nor see it in pg_settings');
like(q1('SHOW payledger.audit_signing_key'), qr/k3y-from-the-config/, 'a superuser can');
for my $where ('ALTER DATABASE postgres', 'ALTER ROLE reader', 'ALTER ROLE ALL')
{
	($rc, $out, $err) = $node->psql('postgres',
		"LOAD 'payledger'; $where SET payledger.audit_signing_key = 'leaked'");
	like($err, qr/can be set only in the server's configuration/,
		"$where SET refuses the key (catalogs every role can read)");
}
($rc, $out, $err) = $node->psql('postgres',
	q{LOAD 'payledger'; CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SET payledger.audit_signing_key = 'leaked' AS 'SELECT 1'});
like($err, qr/can be set only in the server's configuration/, 'so does a function SET clause');
is(q1(q{SELECT count(*) FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE c LIKE 'payledger.audit_signing_key%'}),
	'0', 'nothing was stored');

$node->stop;
done_testing();
