# 032_balances_one_snapshot.pl: read functions read with the calling
# statement's snapshot.  While pgbench moves money between accounts, one
# READ COMMITTED statement summing get_balance() over every account of a
# currency must give exactly zero, every time: each call sees the ledger as
# the statement does, not as it is when that call happens to run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $naccounts = 20;
my $node = PostgreSQL::Test::Cluster->new('snapshot');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;

$node->safe_psql('postgres', qq{
	CREATE EXTENSION payledger;
	SET payledger.require_idempotency_key = off;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '00000000-0000-7000-8000-000000000000');
	SELECT payledger.create_account('USD', 'wallet', NULL, '{}',
		('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid)
	  FROM generate_series(1, $naccounts) i;
	SELECT payledger.transfer('00000000-0000-7000-8000-000000000000',
		('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid, 1000000, 'USD')
	  FROM generate_series(1, $naccounts) i;
});

my $script = $node->basedir . '/transfers.sql';
open(my $fh, '>', $script) or die "cannot write $script: $!";
print $fh <<"SQL";
\\set a random(1, $naccounts)
\\set d random(1, $naccounts - 1)
\\set b 1 + (:a + :d - 1) % $naccounts
SET payledger.require_idempotency_key = off;
SELECT payledger.transfer(('00000000-0000-7000-8000-' || lpad(:a::text, 12, '0'))::uuid, ('00000000-0000-7000-8000-' || lpad(:b::text, 12, '0'))::uuid, 1 + :a, 'USD');
SQL
close($fh);

my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-T', '8', '-c', '4', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);

# each statement of this loop is one READ COMMITTED statement with a
# snapshot of its own, as a client's would be
$node->safe_psql('postgres', q{
	CREATE FUNCTION sums_under_load(seconds float8, OUT reads int, OUT nonzero int, OUT bad text)
	LANGUAGE plpgsql AS $$
	DECLARE
		t0 timestamptz := clock_timestamp();
		v numeric;
		w numeric;
	BEGIN
		reads := 0;
		nonzero := 0;
		bad := '';
		WHILE clock_timestamp() < t0 + make_interval(secs => seconds) LOOP
			SELECT sum(b.balance), sum(b.available) INTO v, w
			  FROM payledger.accounts a, LATERAL payledger.get_balance(a.id) b
			 WHERE a.currency = 'USD';
			reads := reads + 1;
			IF v <> 0 OR w <> 0 THEN
				nonzero := nonzero + 1;
				IF nonzero <= 5 THEN bad := bad || ' ' || v || '/' || w; END IF;
			END IF;
		END LOOP;
	END $$;
});
my $sums = $node->safe_psql('postgres', 'SELECT reads, nonzero, bad FROM sums_under_load(6)');
$bench->finish;
note "pgbench: $out";
my ($reads, $nonzero, $bad) = split(/\|/, $sums);
my $sum = q{SELECT sum(b.balance) FROM payledger.accounts a, LATERAL payledger.get_balance(a.id) b WHERE a.currency = 'USD'};

my ($done) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($done // 0, '>', 100, 'pgbench moved money meanwhile');
cmp_ok($reads, '>=', 20, "the sums were read $reads times under load");
is($nonzero, 0, 'every sum of balances read in one statement is exactly zero')
  or diag("non-zero sums (balance/available):$bad");
is($node->safe_psql('postgres', $sum), '0', 'and so is the sum after the load');
is($node->safe_psql('postgres',
	q{SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok}), '',
	'check_ledger is clean');

$node->stop;
done_testing();
