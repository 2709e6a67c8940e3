# 121_pg_cron.pl: scheduled maintenance with pg_cron.  A login role with
# payledger_operator schedules expire_holds, expire_authorizations,
# purge_idempotency_keys and create_audit_partitions; pg_cron runs them as
# that role, and the test finds what they did: overdue holds and
# authorizations expired (audited as the job's role), old keys purged, the
# audit log's months made.  A role without payledger_operator schedules the
# same sweep and pg_cron records its failure.
#
# pg_cron 1.4 runs jobs at minute boundaries, so the test waits for the next
# one (libfaketime cannot move the scheduler's clock: the postmaster drops
# the fake time once it has started).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,payledger'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
payledger.idempotency_retention = '2s'
});
$node->start;

sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1('CREATE EXTENSION payledger');
q1('CREATE EXTENSION pg_cron');
q1(q{
CREATE ROLE ledger_jobs LOGIN;
CREATE ROLE not_an_operator LOGIN;
GRANT USAGE ON SCHEMA cron TO ledger_jobs, not_an_operator;
GRANT USAGE ON SCHEMA payledger TO not_an_operator;
GRANT payledger_operator TO ledger_jobs;
});

# a hold and an authorization that are overdue in 2 seconds, and a key, at
# least 5 seconds before the minute in which pg_cron will run the jobs
my $sec = (gmtime())[0];
sleep(61 - $sec) if $sec >= 55;
q1(q{
SELECT payledger.create_account('USD', 'settlement', NULL, '{}', '00000000-0000-7000-8000-000000000001');
SELECT payledger.create_account('USD', 'generic', 0, '{}', '00000000-0000-7000-8000-000000000002');
SELECT payledger.create_account('USD', 'merchant', 0, '{}', '00000000-0000-7000-8000-000000000003');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 10000, 'USD', 'fund-1');
});
my $hold = q1(q{SELECT transfer_id FROM payledger.hold('00000000-0000-7000-8000-000000000002',
	'00000000-0000-7000-8000-000000000003', 700, 'USD', '2 seconds', 'hold-1')});
my $pay = q1(q{SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa',
	'00000000-0000-7000-8000-0000000000cc', 500, 'USD', '00000000-0000-7000-8000-000000000002',
	'00000000-0000-7000-8000-000000000003', 'pay-1')});
is(q1("SELECT payledger.authorize_payment('$pay', 'auth-1', '2 seconds')"), 'authorized', 'authorized for 2 seconds');
cmp_ok(q1('SELECT count(*) FROM payledger.idempotency_keys'), '>=', 4, 'keys stored');
is(q1('SELECT count(*) FROM payledger.audit_partitions'), '0', 'no audit months yet');

# the jobs, scheduled by the roles that run them
q1(q{
SET ROLE ledger_jobs;
SELECT cron.schedule('payledger-expire-holds', '* * * * *', 'SELECT payledger.expire_holds()');
SELECT cron.schedule('payledger-expire-authorizations', '* * * * *', 'SELECT payledger.expire_authorizations()');
SELECT cron.schedule('payledger-purge-keys', '* * * * *', 'SELECT payledger.purge_idempotency_keys()');
SELECT cron.schedule('payledger-audit-months', '* * * * *', 'SELECT payledger.create_audit_partitions()');
SET ROLE not_an_operator;
SELECT cron.schedule('not-allowed', '* * * * *', 'SELECT payledger.expire_holds()');
});
is(q1('SELECT string_agg(username, \',\' ORDER BY jobid) FROM cron.job'),
	'ledger_jobs,ledger_jobs,ledger_jobs,ledger_jobs,not_an_operator', 'five jobs, each as its role');

my $done = 0;
foreach (1 .. 900)    # up to 90 s
{
	$done = q1(q{SELECT count(DISTINCT jobid) FROM cron.job_run_details
				  WHERE status IN ('succeeded', 'failed')});
	last if $done >= 5;
	usleep(100_000);
}
is($done, 5, 'pg_cron ran all five jobs');

my %status = split /[|\n]/, q1(q{
SELECT j.jobname, d.status || ':' || COALESCE(d.return_message, '')
  FROM cron.job j JOIN LATERAL (SELECT * FROM cron.job_run_details d WHERE d.jobid = j.jobid
								 ORDER BY runid LIMIT 1) d ON true});
like($status{'payledger-expire-holds'}, qr/^succeeded:/, 'expire_holds succeeded');
like($status{'payledger-expire-authorizations'}, qr/^succeeded:/, 'expire_authorizations succeeded');
like($status{'payledger-purge-keys'}, qr/^succeeded:/, 'purge_idempotency_keys succeeded');
like($status{'payledger-audit-months'}, qr/^succeeded:/, 'create_audit_partitions succeeded');
like($status{'not-allowed'}, qr/^failed:.*permission denied/, 'a role without payledger_operator may not sweep');

is(q1("SELECT status FROM payledger.holds WHERE id = '$hold'"), 'expired', 'the overdue hold expired');
is(q1("SELECT state FROM payledger.payments WHERE id = '$pay'"), 'expired', 'the overdue authorization expired');
is(q1("SELECT available FROM payledger.get_balance('00000000-0000-7000-8000-000000000002')"), '10000',
	'both reservations released');
is(q1("SELECT string_agg(DISTINCT actor_id, ',') FROM payledger.payment_audit_log WHERE event_type IN ('HOLD_EXPIRED', 'PAYMENT_EXPIRED')"),
	'ledger_jobs', 'the sweeps are audited as the job role');
is(q1('SELECT count(*) FROM payledger.idempotency_keys'), '0', 'the old keys are purged');
cmp_ok(q1('SELECT count(*) FROM payledger.audit_partitions'), '>=', 3, 'the audit months are made');
is(q1('SELECT string_agg(check_name, \',\') FROM payledger.check_ledger() WHERE NOT ok'), '', 'check_ledger is clean');

$node->stop;
done_testing();
