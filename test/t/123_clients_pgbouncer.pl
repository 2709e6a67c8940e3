# 123_clients_pgbouncer.pl: real clients.  The example checkout services,
# examples/python/checkout.py (psycopg2) and examples/node/checkout.js
# (node-postgres), run the checkout flow against the server directly and
# through PgBouncer in transaction pooling mode:
#  - create, authorize, capture with a fee split, refund part, read back with
#    the read API (get_payment) and get_balance; the actor set per
#    transaction reaches the audit log;
#  - a capture whose connection is cut (pg_terminate_backend) after its
#    commit is durable but before the client heard of it is retried with the
#    same key and replayed: captured once, never twice;
#  - payledger's SQLSTATEs reach the driver as the error's code;
#  - through PgBouncer: SET LOCAL context does not leak into the next
#    client's transaction, a session-level SET does, and a LISTEN is not
#    delivered (what the README says not to do).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);

my $pgbouncer_bin = '/usr/sbin/pgbouncer';
# a free port: several checkouts may run this test at once
my $bouncer_port = PostgreSQL::Test::Cluster::get_free_port();

my $node = PostgreSQL::Test::Cluster->new('clients');
$node->init(allows_streaming => 1);    # so that a commit can wait for a standby
# preloaded: submit_transfer's ledger writer and the notify worker
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'");
$node->start;

sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1('CREATE EXTENSION payledger');
q1(q{
CREATE ROLE checkout LOGIN;
GRANT payledger_app TO checkout;
SELECT payledger.create_account('USD', 'settlement', NULL, '{}', '00000000-0000-7000-8000-000000000001');
SELECT payledger.create_account('USD', 'generic', 0, '{}', '00000000-0000-7000-8000-000000000002');
-- a merchant account and a fee account for each client and route
SELECT payledger.create_account('USD', k, 0, '{}', ('00000000-0000-7000-8000-0000000000' || n || i)::uuid)
  FROM generate_series(1, 4) i, (VALUES ('merchant', 1), ('platform', 2)) AS a(k, n);
SELECT payledger.transfer('00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002',
                          1000000, 'USD', 'fund-customer');
});
my ($network, $wallet) = map { sprintf('00000000-0000-7000-8000-%012d', $_) } 1 .. 2;
my ($merchant, $customer) = ('00000000-0000-7000-8000-0000000000aa', '00000000-0000-7000-8000-0000000000cc');

# PgBouncer in transaction mode, one server connection per pool
my $bdir = $node->basedir . '/pgbouncer';
mkdir $bdir;
append_to_file("$bdir/users.txt", qq{"checkout" ""\n"postgres" ""\n});
append_to_file("$bdir/pgbouncer.ini", sprintf(q{
[databases]
postgres = host=%s port=%d dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 50
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
}, $node->host, $node->port, $bouncer_port, $bdir, $bdir, $bdir));
my $bouncer = IPC::Run::start([ $pgbouncer_bin, "$bdir/pgbouncer.ini" ], '>', "$bdir/stdout", '2>&1');
END { $bouncer->kill_kill if $bouncer; }
foreach (1 .. 50)
{
	last if -s "$bdir/pgbouncer.pid" || !$bouncer->pumpable;
	usleep(100_000);
}
BAIL_OUT('pgbouncer did not start: ' . slurp_file("$bdir/pgbouncer.log"))
  unless -s "$bdir/pgbouncer.pid" && $bouncer->pumpable;

# connection URIs, which libpq and node-postgres both read
my %route = (
	direct => sprintf('postgresql:///postgres?host=%s&port=%d&user=checkout', $node->host, $node->port),
	pgbouncer => "postgresql://checkout\@127.0.0.1:$bouncer_port/postgres?sslmode=disable");
my %client = (
	python => [ '/usr/bin/python3', 'examples/python/checkout.py' ],
	node => [ 'node', 'examples/node/checkout.js' ]);

ok(-d 'examples/node/node_modules/pg', 'node-postgres is installed in examples/node (test.sh runs npm ci)');

# run a client command; returns (exit status, decoded JSON or undef)
sub run_client
{
	my ($client, $route, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @{ $client{$client} }, $route{$route}, @args ], '>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	my $json = eval { decode_json($out) };
	diag("$client @args: exit $rc\n$out$err") unless defined $json;
	return ($rc, $json);
}

sub audit_count
{
	my ($payment, $type) = @_;
	return q1("SELECT count(*) FROM payledger.payment_audit_log WHERE payment_id = '$payment' AND event_type = '$type'");
}

sub replays
{
	return q1("SELECT value FROM payledger.metrics WHERE metric = 'payledger_idempotent_replays_total'");
}

my $combo = 0;
foreach my $route (qw(direct pgbouncer))
{
	foreach my $client (qw(python node))
	{
		my $t = "$client via $route";
		$combo++;
		my ($shop, $fees) = map { sprintf('00000000-0000-7000-8000-0000000000%d%d', $_, $combo) } 1 .. 2;
		my $order = "$client-$route-1";

		# the whole flow
		my ($rc, $r) = run_client($client, $route, 'flow', $order, $merchant, $customer, $wallet, $shop, $fees);
		is($rc, 0, "$t: the checkout flow ran");
		is(join(',', map { $_->{state} // '' } @{ $r->{steps} }[ 0 .. 2 ]),
			'authorized,captured,partially_refunded', "$t: authorized, captured, partly refunded");
		my $shown = $r->{steps}[3] // {};
		is(join(',', map { $shown->{$_} // '?' } qw(state amount captured_amount refunded_amount fee_amount)),
			'partially_refunded,2500,2000,500,60', "$t: read back with get_payment");
		my $bal = $r->{steps}[4]{balances} // {};
		is(join(',', map { $bal->{$_}{balance} // '?' } ($shop, $fees)), '1440,60',
			"$t: read back: the merchant keeps 20.00 - 0.60 fee - 5.00 refund, the platform 0.60");
		my $pay = $r->{steps}[0]{payment} // '';
		is(q1("SELECT string_agg(DISTINCT actor_type || ':' || actor_id, ',') FROM payledger.payment_audit_log WHERE payment_id = '$pay'"),
			"API:checkout:$order", "$t: every audit row carries the actor set per transaction");

		# a capture cut off after its commit is durable: the commit waits for
		# a synchronous standby that does not exist, and the test terminates
		# the waiting backend, as a crash or a cut connection would
		$order = "$client-$route-2";
		($rc, $r) = run_client($client, $route, 'pay', $order, $merchant, $customer, $wallet, $shop, 3000);
		is($r->{state} // '', 'authorized', "$t: second payment authorized");
		$pay = $r->{payment} // '';
		my $replays = replays();
		q1("ALTER SYSTEM SET synchronous_standby_names = 'nobody'; SELECT pg_reload_conf()");
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start([ @{ $client{$client} }, $route{$route}, 'capture', $order, $pay, 3000, $fees, 90 ],
			'>', \$out, '2>', \$err);
		my $pid = '';
		foreach (1 .. 200)
		{
			$pid = q1("SELECT pid FROM pg_stat_activity WHERE usename = 'checkout' AND wait_event = 'SyncRep'");
			last if $pid ne '';
			usleep(50_000);
		}
		isnt($pid, '', "$t: the capture committed locally and waits for its standby");
		q1("SELECT pg_terminate_backend($pid)") if $pid ne '';
		usleep(100_000);
		q1("ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()");
		$h->finish;
		$r = eval { decode_json($out) } // {};
		diag("capture: $out$err") unless $r->{state};
		is($r->{state} // '', 'captured', "$t: the retried capture answers captured");
		is($r->{attempts} // 0, 2, "$t: after one retry on a new connection");
		is(audit_count($pay, 'PAYMENT_CAPTURED'), '1', "$t: captured once, not twice");
		is(q1("SELECT captured_amount FROM payledger.payments WHERE id = '$pay'"), '3000', "$t: 30.00 captured");
		cmp_ok(replays(), '>', $replays, "$t: the retry was a replay");

		# SQLSTATEs as the driver's error codes
		($rc, $r) = run_client($client, $route, 'refund', $order, $pay, 999999);
		is("$rc $r->{error} $r->{status}", '2 22023 422', "$t: refunding more than captured is 22023");
		like($r->{detail} // '', qr/3000/, "$t: the detail says what is left");
		($rc, $r) = run_client($client, $route, 'capture', $order, $pay, 2000, $fees, 90);
		is("$rc $r->{error} $r->{status}", '2 PY002 409', "$t: the capture key with another amount is PY002");
		($rc, $r) = run_client($client, $route, 'refund', $order, '00000000-0000-7000-8000-00000000dead', 100);
		is("$rc $r->{error} $r->{status}", '2 PY005 404', "$t: refunding an unknown payment is PY005");
		($rc, $r) = run_client($client, $route, 'show', '00000000-0000-7000-8000-00000000dead');
		is("$rc $r->{error} $r->{status}", '2 PY005 404', "$t: get_payment of an unknown payment is PY005");
	}
}

is(q1('SELECT string_agg(check_name, \',\') FROM payledger.check_ledger() WHERE NOT ok'), '',
	'check_ledger is clean after the clients');

# what a transaction pool does to session state (one server connection)
my $bouncer_admin = "postgresql://postgres\@127.0.0.1:$bouncer_port/postgres?sslmode=disable";
sub via_bouncer
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-A', '-t', '-d', $bouncer_admin, '-c', $sql ],
		'>', \$out, '2>', \$err);
	chomp $out;
	return $out;
}
via_bouncer("BEGIN; SET LOCAL payledger.actor_id = 'alice'; COMMIT");
is(via_bouncer('SHOW payledger.actor_id'), '', 'pgbouncer: SET LOCAL ends with its transaction');
via_bouncer("SET payledger.actor_id = 'alice'");
is(via_bouncer('SHOW payledger.actor_id'), 'alice',
	'pgbouncer: a session-level SET leaks into the next client (do not use it)');
via_bouncer('RESET payledger.actor_id');

# submit_transfer through a transaction pool: it commits on its own, so its
# context goes with the statement (set_config(..., true)), not SET LOCAL
my $checkout_bouncer = "postgresql://checkout\@127.0.0.1:$bouncer_port/postgres?sslmode=disable";
sub bouncer_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose', '-d', $checkout_bouncer,
		'-c', $sql ], '>', \$out, '2>', \$err);
	chomp $out;
	return ($out, $err);
}
my $submit = "SELECT s.status, s.replayed FROM (SELECT set_config('payledger.actor_id', 'till-7', true)) c,"
  . " payledger.submit_transfer('$wallet', '$network', 3, 'USD', 'pooled-submit') s";
my ($sub_out, $sub_err) = bouncer_psql($submit);
is($sub_out, 'posted|f', 'pgbouncer: submit_transfer posts') or diag($sub_err);
($sub_out, $sub_err) = bouncer_psql($submit);
is($sub_out, 'posted|t', 'pgbouncer: its retry with the key replays') or diag($sub_err);
is(q1("SELECT actor_id || '/' || db_role FROM payledger.payment_audit_log"
	  . " WHERE idempotency_key = 'pooled-submit'"), 'till-7/checkout',
	'pgbouncer: the context set in the statement and the calling role are in the audit row');
($sub_out, $sub_err) = bouncer_psql("BEGIN; SELECT payledger.submit_transfer('$wallet', '$network', 3,"
	  . " 'USD', 'pooled-in-block'); COMMIT");
like($sub_err, qr/25001/, 'pgbouncer: submit_transfer inside a transaction block is 25001');
my @submitters = map {
	my $n = $_;
	# one -c per call: a multi-statement string is one implicit transaction block (25001)
	my @calls = map { ('-c', "SELECT payledger.submit_transfer('$wallet', '$network', 1, 'USD', 'pooled-$n-$_')") } 1 .. 10;
	IPC::Run::start([ 'psql', '-X', '-q', '-d', $checkout_bouncer, @calls ], '>', '/dev/null', '2>&1');
} 1 .. 4;
$_->finish foreach @submitters;
is(q1("SELECT count(*) FROM payledger.transfers WHERE idempotency_key LIKE 'pooled-%-%'"
	  . " AND idempotency_key <> 'pooled-in-block'"), '40',
	'pgbouncer: 4 clients sharing one server connection submit 40 transfers, each once');

# LISTEN through a transaction pool is not delivered; directly it is
my $listen = q{
import psycopg2, select, subprocess, sys
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
conn.cursor().execute("LISTEN payledger_events")
subprocess.run(["psql", "-X", "-q", "-d", sys.argv[2], "-c", sys.argv[3]], check=True, stdout=subprocess.DEVNULL)
got = 0
if select.select([conn], [], [], 1.5)[0]:
    conn.poll(); got = len(conn.notifies)
print(got)
};
my $direct_dsn = sprintf('host=%s port=%d dbname=postgres user=postgres', $node->host, $node->port);
my $move = "SELECT payledger.transfer('$network', '$wallet', 1, 'USD', 'notify-%s')";
my ($n_direct, $n_bouncer) = ('', '');
IPC::Run::run([ '/usr/bin/python3', '-c', $listen, $direct_dsn, $direct_dsn, sprintf($move, 'direct') ],
	'>', \$n_direct, '2>&1');
IPC::Run::run([ '/usr/bin/python3', '-c', $listen, $bouncer_admin, $direct_dsn,
	sprintf($move, 'pooled') ], '>', \$n_bouncer, '2>&1');
chomp($n_direct, $n_bouncer);
cmp_ok($n_direct, '>=', 1, 'a direct LISTEN is woken by a transfer');
is($n_bouncer, '0', 'pgbouncer: a LISTEN through a transaction pool hears nothing');

$bouncer->kill_kill;
undef $bouncer;
$node->stop;
done_testing();
