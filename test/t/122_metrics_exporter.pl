# 122_metrics_exporter.pl: Prometheus metrics for real.  Debian's
# prometheus-postgres-exporter runs with monitoring/postgres_exporter_queries.yaml,
# connected as a login role granted payledger_monitor; the test scrapes it
# over HTTP on loopback and finds every row of payledger.metrics as a series
# of the metric's own name with the ledger's value.  promtool checks
# monitoring/alerts.yml and runs its unit tests.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(usleep);

my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
plan skip_all => "$exporter_bin is not installed (Debian package prometheus-postgres-exporter)"
  unless -x $exporter_bin;
# a free port: several checkouts may run this test at once
my $exporter_port = PostgreSQL::Test::Cluster::get_free_port();

# the alert rules first: they need no server
SKIP:
{
	skip 'promtool is not installed (Debian package prometheus)', 2
	  unless -x '/usr/bin/promtool';
	my ($out, $err);
	ok(IPC::Run::run([ 'promtool', 'check', 'rules', 'monitoring/alerts.yml' ], '>', \$out, '2>', \$err),
		'promtool check rules monitoring/alerts.yml') or diag("$out$err");
	ok(IPC::Run::run([ 'promtool', 'test', 'rules', 'monitoring/alerts_test.yml' ], '>', \$out, '2>', \$err),
		'promtool test rules: each alert fires on its scenario and not before') or diag("$out$err");
}

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'");
$node->start;

sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1('CREATE EXTENSION payledger');
# the exporter's login role: payledger_monitor and nothing else
q1(q{
CREATE ROLE prom_exporter LOGIN;
GRANT payledger_monitor TO prom_exporter;
});

# a ledger with something in every metric
q1(q{
SELECT payledger.create_account('USD', 'settlement', NULL, '{}', '00000000-0000-7000-8000-000000000001');
SELECT payledger.create_account('USD', 'generic', 0, '{}', '00000000-0000-7000-8000-000000000002');
SELECT payledger.create_account('USD', 'merchant', 0, '{}', '00000000-0000-7000-8000-000000000003');
SELECT payledger.create_account('EUR', 'generic', 0, '{}', '00000000-0000-7000-8000-000000000004');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 10000, 'USD', 'fund-1');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 100, 'USD', 'm-' || i)
  FROM generate_series(1, 5) i;
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 100, 'USD', 'm-1');
SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 999999, 'USD', 'too-much-' || i)
  FROM generate_series(1, 3) i;
SELECT payledger.hold('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 700, 'USD', '1 day', 'hold-1');
SELECT payledger.hold('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 300, 'USD', '1 day', 'hold-2');
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000cc',
       500, 'USD', '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 'pay-1') AS pay \gset
SELECT payledger.authorize_payment(:'pay', 'auth-1');
SELECT payledger.create_payment('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000cc',
       900000, 'USD', '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 'pay-2') AS pay2 \gset
SELECT payledger.authorize_payment(:'pay2', 'auth-2');
SELECT payledger.ack_events('exports', (SELECT event_id FROM payledger.read_events('exports', 3) ORDER BY id LIMIT 1));
});
# errors count even though their transactions roll back
$node->psql('postgres', "SELECT payledger.get_balance('00000000-0000-7000-8000-0000000000ff')") for 1 .. 2;
$node->psql('postgres', 'UPDATE payledger.transfers SET amount = 0');

my $dsn = sprintf('host=%s port=%d dbname=postgres user=prom_exporter sslmode=disable',
	$node->host, $node->port);
my $log = $node->basedir . '/exporter.log';
my $exporter = IPC::Run::start(
	[
		$exporter_bin, '--disable-default-metrics', '--disable-settings-metrics',
		'--no-collector.database', '--no-collector.bgwriter',
		'--extend.query-path=monitoring/postgres_exporter_queries.yaml',
		"--web.listen-address=127.0.0.1:$exporter_port"
	],
	'>', $log, '2>&1',
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });
END { $exporter->kill_kill if $exporter; }

my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
foreach (1 .. 100)
{
	my $r = $http->get("http://127.0.0.1:$exporter_port/metrics");
	if ($r->{success} && $r->{content} =~ /^payledger_audit_rows_total[{ ]/m)
	{
		$body = $r->{content};
		last;
	}
	usleep(200_000);
}
my $ours = sprintf('server="%s:%d"', $node->host, $node->port);
ok($body ne '' && index($body, $ours) >= 0, 'our exporter answers on loopback with payledger series')
  or diag(slurp_file($log));

# series name{labels} value, labels sorted as the exporter prints them
my %series;
foreach my $line (split /\n/, $body)
{
	next unless $line =~ /^(payledger_\w+)(\{[^}]*\})?\s+(\S+)$/;
	my ($name, $labels, $value) = ($1, $2 // '', $3);
	my %l = ($labels =~ /(\w+)="([^"]*)"/g);
	delete $l{server};
	my $key = $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}';
	$series{$key} = $value;
}

# the same state as the ledger reads it, row by row
my @rows = split /\n/, q1(q{
SELECT metric || '{' || COALESCE((SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM jsonb_each_text(labels) AS j(k, v)), '') || '}',
       value
  FROM payledger.metrics ORDER BY 1});
cmp_ok(scalar(@rows), '>=', 15, 'payledger.metrics has rows: ' . scalar(@rows));
my %seen_metric;
foreach my $row (@rows)
{
	my ($key, $value) = split /\|/, $row;
	(my $metric = $key) =~ s/\{.*//;
	$seen_metric{$metric} = 1;
	if ($metric eq 'payledger_oldest_pending_hold_seconds')
	{
		ok(defined $series{$key} && abs($series{$key} - $value) < 30,
			"$key scraped close to the ledger's $value") or diag($series{$key} // 'missing');
		next;
	}
	is($series{$key} // 'missing', $value, "$key scraped with the ledger's value");
}
foreach my $m (qw(payledger_transfers_total payledger_payments_total payledger_payment_success_ratio
	payledger_idempotent_replays_total payledger_holds_pending payledger_holds_pending_amount
	payledger_oldest_pending_hold_seconds payledger_audit_rows_total payledger_events_unacked
	payledger_errors_total))
{
	ok($seen_metric{$m}, "the ledger reports $m");
}

# the figures this test wrote, as Prometheus sees them
is($series{'payledger_transfers_total{reason_code=,status=posted}'}, 6, 'six posted transfers');
is($series{'payledger_transfers_total{reason_code=INSUFFICIENT_FUNDS,status=rejected}'}, 4, 'three declined transfers and the declined authorization');
is($series{'payledger_idempotent_replays_total{}'}, 1, 'one replay');
is($series{'payledger_holds_pending{currency=USD}'}, 3, 'two holds and an authorization pending');
is($series{'payledger_holds_pending_amount{currency=USD}'}, 1500, 'their amount');
is($series{'payledger_payment_success_ratio{}'}, 0.5, 'one authorization of two succeeded');
is($series{'payledger_errors_total{sqlstate=PY005}'}, 2, 'two PY005 counted though rolled back');
is($series{'payledger_errors_total{sqlstate=PY003}'}, 1, 'the refused UPDATE counted as PY003');
my $unacked = q1(q{SELECT value FROM payledger.metrics WHERE metric = 'payledger_events_unacked'});
cmp_ok($unacked, '>', 0, 'the exports consumer has unacknowledged events');
is($series{'payledger_events_unacked{consumer=exports}'}, $unacked, 'outbox lag scraped');
like($body, qr/^# TYPE payledger_transfers_total counter$/m, 'transfers_total is a counter');
like($body, qr/^# TYPE payledger_holds_pending gauge$/m, 'holds_pending is a gauge');

# a new transfer shows up in the next scrape
q1(q{SELECT payledger.transfer('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000003', 1, 'USD', 'later')});
my $again = '';
foreach (1 .. 50)
{
	my $r = $http->get("http://127.0.0.1:$exporter_port/metrics");
	$again = $r->{content} // '';
	last if $r->{success};
	usleep(100_000);
}
like($again, qr/^payledger_transfers_total\{reason_code="",server="[^"]*",status="posted"\} 7$/m,
	'the next scrape counts the new transfer')
  or diag('exporter ' . ($exporter->pumpable ? 'running' : 'exited') . ":\n" . slurp_file($log));

# the exporter's role can read nothing but the metrics
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM payledger.accounts',
	extra_params => [ '-U', 'prom_exporter' ]);
like($err, qr/permission denied/, 'the monitor role cannot read the accounts');

$exporter->kill_kill;
undef $exporter;
$node->stop;
done_testing();
