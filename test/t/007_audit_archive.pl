# 007_audit_archive.pl: monthly partitions of the audit log, archived and
# verified.  The server runs under libfaketime in two past months, so that
# months really end: rows go to the child of their month, ended months are
# archived oldest first with a signed checkpoint, the rest of the log and
# every earlier checkpoint still verify, the detached month verifies on its
# own, and tampering with it or with its archive record is caught.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX qw(strftime);

my ($libfaketime) = grep { -e $_ } (
	'/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/faketime/libfaketime.so.1');
plan skip_all => 'libfaketime is not installed (Debian package libfaketime)'
  unless $libfaketime;

# the 15th, noon UTC, of the month $back months before this one
sub month_back
{
	my ($back) = @_;
	my @t = gmtime();
	my ($y, $m) = ($t[5] + 1900, $t[4] + 1 - $back);
	while ($m < 1) { $m += 12; $y--; }
	return sprintf('%04d-%02d', $y, $m);
}
my ($m2, $m1, $m0) = (month_back(2), month_back(1), month_back(0));
my ($p2, $p1, $p0) = map { (my $n = "payledger.payment_audit_log_$_") =~ s/-/_/; $n } ($m2, $m1, $m0);

my $node = PostgreSQL::Test::Cluster->new('archive');
$node->init;

sub start_at
{
	my ($when) = @_;
	local $ENV{LD_PRELOAD} = $libfaketime if $when;
	local $ENV{FAKETIME} = "\@$when-15 12:00:00" if $when;
	$node->start;
}

sub q1 { my ($sql, $db) = @_; return $node->safe_psql($db // 'postgres', $sql); }

my $sys = '00000000-0000-7000-8000-000000000001';
my $a = '00000000-0000-7000-8000-000000000002';
my $b = '00000000-0000-7000-8000-000000000003';

sub transfers
{
	my ($tag, $n) = @_;
	return q1("SELECT count(*) FROM generate_series(1, $n) i,"
		  . " payledger.transfer('$sys', '$a', i, 'USD', '$tag-' || i) t WHERE t.status = 'posted'");
}

# two months ago
start_at($m2);
like(q1('SELECT now()::text'), qr/^$m2-15/, "the server's clock is in $m2");
q1('CREATE EXTENSION payledger');
is(q1('SELECT string_agg(p::text, \',\' ORDER BY p::text) FROM payledger.create_audit_partitions(2) p'),
	"$p2,$p1,$p0", 'create_audit_partitions(2) makes this month and the next two');
is(q1('SELECT count(*) FROM payledger.create_audit_partitions(2)'), '0',
	'a second call makes none');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$a')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$b')");
is(transfers('m2', 20), '20', "20 transfers in $m2");
is(q1("SELECT status FROM payledger.transfer('$b', '$a', 5, 'USD', 'm2-decline')"),
	'rejected', 'and a decline');
is(q1('SELECT string_agg(DISTINCT tableoid::regclass::text, \',\') FROM payledger.payment_audit_log'),
	$p2, "every audit row of $m2 is in $p2");
$node->stop;

# last month
start_at($m1);
is(transfers('m1', 10), '10', "10 transfers in $m1");
q1("SELECT payledger.hold('$a', '$b', 7, 'USD', interval '1 day', 'm1-hold')");
is(q1("SELECT count(*) FROM ONLY $p1"), '11', "their rows (and a hold's) are in $p1");
my $cp_old = q1('SELECT payledger.audit_checkpoint()');
# an outbox consumer that has read only the oldest event
q1("SELECT payledger.ack_events('slow', (SELECT event_id FROM payledger.read_events('slow', 1)))");
$node->stop;

# now
start_at(undef);
is(transfers('m0', 5), '5', 'five transfers this month');
is(q1("SELECT count(*) FROM ONLY $p0"), '5', "their rows are in $p0");
my $total = q1('SELECT count(*) FROM payledger.payment_audit_log');
my $metric = q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_audit_rows_total'});
is($metric, $total, 'payledger_audit_rows_total counts every row');

my ($rc, $out, $err) = $node->psql('postgres', "SELECT payledger.archive_audit_partition('$p0')");
like($err, qr/is not over yet/, 'this month cannot be archived');
($rc, $out, $err) = $node->psql('postgres', "SELECT payledger.archive_audit_partition('$p1')");
like($err, qr/is older than .*archive it first/, 'months are archived oldest first');
($rc, $out, $err) = $node->psql('postgres', "SELECT payledger.archive_audit_partition('payledger.payment_audit_log')");
like($err, qr/is not a monthly partition/, 'the parent is not a month');
($rc, $out, $err) = $node->psql('postgres', "SELECT payledger.archive_audit_partition('$p2')");
like($err, qr/outbox consumer "slow" has not acknowledged/, 'a month a consumer has not read stays');

q1(q{SELECT payledger.ack_events('slow', (SELECT event_id FROM payledger.payment_audit_log
	ORDER BY era DESC, txid DESC, id DESC LIMIT 1))});
my $arch2 = q1("SELECT payledger.archive_audit_partition('$p2')");
like($arch2, qr/"kind": "archive"/, "$p2 archived, its checkpoint returned");
like($arch2, qr/"rows": 24\b/, 'the checkpoint counts its 24 rows (3 accounts, 20 transfers, a decline)');
my $arch1 = q1("SELECT payledger.archive_audit_partition('$p1')");
like($arch1, qr/"rows": 11\b/, "$p1 archived next");
is(q1("SELECT count(*) FROM pg_inherits WHERE inhparent = 'payledger.payment_audit_log'::regclass"),
	'1', 'only this month is still attached');
is(q1('SELECT count(*) FROM payledger.payment_audit_log'), '5', 'the log holds this month only');
is(q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_audit_rows_total'}),
	$metric, 'payledger_audit_rows_total still counts the archived rows');

is(q1('SELECT ok::text || rows_checked FROM payledger.verify_audit_log()'), 'true5',
	'the rest of the log verifies');
like(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log('$cp_old')"),
	qr/^falsechain [0-9a-f-]+ of the checkpoint is missing its head/,
	'a checkpoint taken before the archiving does not vouch for the archived chains: only archives it lists may');
is(q1(q{SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log(payledger.audit_checkpoint())}),
	'true', 'a checkpoint taken after the archiving lists the archives and verifies');
is(q1("SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok"), '',
	'check_ledger is all ok (archived transfers are not missing their audit rows)');
is(q1("SELECT ok::text || rows_checked FROM payledger.verify_audit_archive('$p2')"), 'true24',
	"the detached $p2 verifies against its archive record");
is(q1("SELECT ok::text || rows_checked FROM payledger.verify_audit_archive('$p1', '$arch1')"), 'true11',
	"and $p1 against the checkpoint archive_audit_partition returned");
like(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_archive('$p1', '$arch2')"),
	qr/^false.*missing its head/, "the wrong month's checkpoint does not fit");

# detached months stay protected
($rc, $out, $err) = $node->psql('postgres', "DELETE FROM $p2");
like($err, qr/append-only/, 'DELETE on a detached month: PY003');
($rc, $out, $err) = $node->psql('postgres', "DROP TABLE $p2");
like($err, qr/not allowed on payledger's objects/, 'DROP of a detached month: PY007');
($rc, $out, $err) = $node->psql('postgres',
	"ALTER TABLE $p0 NO INHERIT payledger.payment_audit_log");
like($err, qr/not allowed on payledger's objects/, 'detaching a month by hand: PY007');

# pg_dump carries the months, the archives and the routing
my $dump = $node->basedir . '/archive.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump -Fc');
q1('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore without errors');
is(q1('SELECT ok::text || rows_checked FROM payledger.verify_audit_log()', 'restored'), 'true5',
	'the restored log verifies');
is(q1("SELECT ok::text || rows_checked FROM payledger.verify_audit_archive('$p2')", 'restored'),
	'true24', 'the restored archive of a month verifies');
is(q1("SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok", 'restored'),
	'', 'check_ledger of the restored ledger is all ok');
$node->safe_psql('restored', "SELECT payledger.transfer('$sys', '$a', 1, 'USD', 'after-restore')");
is(q1("SELECT count(*) FROM ONLY $p0", 'restored'), '6', 'a new row goes to this month after the restore');

# verify_audit_archive() takes only a table with the log's columns and reads it as the caller
q1("CREATE VIEW public.month_view AS SELECT * FROM $p2");
($rc, $out, $err) = $node->psql('postgres',
	"SELECT * FROM payledger.verify_audit_archive('public.month_view', '$arch2')");
like($err, qr/"month_view" is not a table with the columns of payledger.payment_audit_log/,
	'a view over an archived month is not an archive (22023)');
q1("CREATE TABLE public.retyped (LIKE $p2); ALTER TABLE public.retyped ALTER COLUMN amount_cents TYPE numeric;"
	  . " INSERT INTO public.retyped SELECT * FROM $p2");
($rc, $out, $err) = $node->psql('postgres',
	"SELECT * FROM payledger.verify_audit_archive('public.retyped', '$arch2')");
like($err, qr/"retyped" is not a table with the columns/, 'nor a copy with a column of another type');
q1("CREATE ROLE auditor; GRANT USAGE ON SCHEMA payledger TO auditor;"
	  . ' GRANT EXECUTE ON FUNCTION payledger.verify_audit_archive(regclass, jsonb) TO auditor;'
	  . " CREATE TABLE public.copied (LIKE $p2); INSERT INTO public.copied SELECT * FROM $p2;"
	  . ' ALTER TABLE public.copied OWNER TO auditor;'
	  . q{ CREATE FUNCTION public.policy_check() RETURNS boolean LANGUAGE plpgsql}
	  . q{ AS $$BEGIN RAISE NOTICE 'policy runs as %', current_user; RETURN true; END$$;}
	  . ' ALTER TABLE public.copied ENABLE ROW LEVEL SECURITY; ALTER TABLE public.copied FORCE ROW LEVEL SECURITY;'
	  . ' CREATE POLICY everything ON public.copied USING (public.policy_check())');
($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE auditor; SELECT ok::text || rows_checked FROM payledger.verify_audit_archive('public.copied', '$arch2')");
is($out, 'true24', 'a copy of an archived month owned by another role verifies');
like($err, qr/policy runs as auditor/, "and is read with the caller's rights (its row security applies)");
unlike($err, qr/policy runs as (?!auditor)/, 'never with the rights of the role payledger writes as');

# tampering by a superuser who walks past every guard
sub tamper
{
	my ($table, $sql, $db) = @_;
	(my $trigger = $table) =~ s/.*audit_archives$/audit_archives_append_only/;
	$trigger = 'audit_append_only' if $trigger eq $table;
	q1("SET session_replication_role = replica; ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;"
		  . " ALTER TABLE $table DISABLE TRIGGER $trigger, DISABLE TRIGGER payledger_insert_guard; $sql;"
		  . " ALTER TABLE $table ENABLE ALWAYS TRIGGER $trigger, ENABLE ALWAYS TRIGGER payledger_insert_guard;"
		  . ' ALTER EVENT TRIGGER payledger_protect_ddl ENABLE ALWAYS', $db);
}
tamper($p2, "UPDATE $p2 SET amount_cents = amount_cents + 1"
	  . " WHERE id = (SELECT max(id) FROM $p2 WHERE amount_cents IS NOT NULL)");
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_archive('$p2')"),
	qr/^falserow was changed after it was written/, 'an edited row of an archived month is caught');
tamper($p1, "DELETE FROM $p1 WHERE id = (SELECT max(id) FROM $p1)");
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_archive('$p1')"),
	qr/^false.*(cut after row|missing its head)/, 'a row cut off the end of an archived month is caught');
(my $n1 = $p1) =~ s/^payledger\.//;
tamper('payledger.audit_archives',
	"UPDATE payledger.audit_archives SET row_count = row_count - 1,"
	  . " checkpoint = jsonb_set(checkpoint, '{rows}', to_jsonb(row_count - 1))"
	  . " WHERE partition_name = '$n1'");
like(q1('SELECT ok::text || problem FROM payledger.verify_audit_log()'),
	qr/^falsethe archive record of $n1 does not match its signature/,
	'an edited archive record is caught by verify_audit_log()');

# archive records are trusted only when they are what archive_audit_partition() wrote
my $cp_r = q1('SELECT payledger.audit_checkpoint()', 'restored');
(my $n2 = $p2) =~ s/^payledger\.//;
(my $n0 = $p0) =~ s/^payledger\.//;
is(q1("SELECT string_agg(a->>'partition', ',' ORDER BY a->>'partition')"
	  . " FROM jsonb_array_elements('$cp_r'::jsonb->'archives') a", 'restored'),
	"$n2,$n1", 'a checkpoint lists the archive records there are');
is(q1("SELECT ok::text || coalesce(problem, '') FROM payledger.verify_audit_log('$cp_r')", 'restored'),
	'true', 'and verifies');
my $victim = q1("SELECT chain_id FROM ONLY $p0 WHERE idempotency_key = 'after-restore'", 'restored');
tamper($p0, "DELETE FROM $p0 WHERE chain_id = '$victim'", 'restored');
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_log('$cp_r')", 'restored'),
	qr/^falsechain $victim of the checkpoint is missing its head/,
	'control: a whole chain deleted from this month is caught against the checkpoint');

# a signed record (SHA-256 without a key) whose checkpoint claims the deleted chain
sub forge
{
	my ($name, $from, $to) = @_;
	tamper('payledger.audit_archives', qq{
		WITH b AS (SELECT jsonb_build_object('kind', 'archive', 'partition', '$name',
				'range_from', '$from'::uuid, 'range_to', '$to'::uuid, 'event_counts', '[]'::jsonb,
				'rows', 1, 'max_id', 1, 'taken_at', '2000-02-01T00:00:00+00:00',
				'chains', jsonb_path_query_array('$cp_r'::jsonb, '\$.chains[*] ? (\@.chain_id == "$victim")')) AS body)
		INSERT INTO payledger.audit_archives
		SELECT '$name', '$from', '$to', '2000-01-01', '2000-02-01', 1, '[]', body
			|| jsonb_build_object('signature', encode(sha256(convert_to(body::text, 'UTF8')), 'hex')), now()
		FROM b}, 'restored');
}
forge('payment_audit_log_2000_01', '00dc6acf-ac00-7000-8000-000000000000', '00dc8eb6-9000-7000-8000-000000000000');
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_log('$cp_r')", 'restored'),
	qr/^falsethe archive record of payment_audit_log_2000_01 does not match the month create_audit_partitions\(\) made \(forged\)/,
	'a forged archive record of a month that never was does not vouch for the deleted chain');
tamper('payledger.audit_archives',
	"DELETE FROM payledger.audit_archives WHERE partition_name = 'payment_audit_log_2000_01'", 'restored');
my ($from0, $to0) = split /\|/,
  q1("SELECT range_from, range_to FROM payledger.audit_partitions WHERE partition_name = '$n0'", 'restored');
forge($n0, $from0, $to0);
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_log('$cp_r')", 'restored'),
	qr/^falsethe archive record of $n0 names a month still attached to the log \(forged\)/,
	'nor one for the month still attached, with its real range');
tamper('payledger.audit_archives',
	"DELETE FROM payledger.audit_archives WHERE partition_name IN ('$n0', '$n2')", 'restored');
like(q1("SELECT ok::text || problem FROM payledger.verify_audit_log('$cp_r')", 'restored'),
	qr/^falsethe archive record of $n2 that the checkpoint lists is missing or was replaced/,
	'an archive record deleted after a checkpoint listed it is caught');

$node->stop;
done_testing();
