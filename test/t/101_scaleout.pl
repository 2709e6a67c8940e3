# Sharding on PL/Proxy: a router database (scaleout/router.sql) in front of
# two shards that each run the full extension (and scaleout/shard.sql).
# The application's calls go to the router unchanged; each lands on the
# shard that owns its key; a transfer between shards is a saga through the
# shards' clearing accounts.  The second half stops the router or a shard
# between each pair of saga steps and proves that recover_sagas() converges:
# nothing lost, nothing doubled, every shard's check_ledger() clean, and
# the sum over all shards, clearing accounts included, zero per currency.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my @shard;
for my $k (0 .. 1)
{
	my $node = PostgreSQL::Test::Cluster->new("shard$k");
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'payledger'");
	$node->start;
	$node->safe_psql('postgres', "CREATE EXTENSION payledger;
		ALTER DATABASE postgres SET payledger.shard_id = $k;");
	$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), '-f', 'scaleout/shard.sql' ],
		"shard $k set up");
	push @shard, $node;
}
my $router = PostgreSQL::Test::Cluster->new('router');
$router->init;
$router->start;
my $user = $router->safe_psql('postgres', 'SELECT current_user');
my $partitions = join ', ', map {
	my $c = $shard[$_]->connstr('postgres');
	$c =~ s/'//g;
	"p$_ '$c'"
} 0 .. 1;
$router->safe_psql('postgres', "CREATE EXTENSION plproxy;
	CREATE SERVER payledger_shards FOREIGN DATA WRAPPER plproxy OPTIONS ($partitions);
	CREATE USER MAPPING FOR PUBLIC SERVER payledger_shards OPTIONS (user '$user');");
$router->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $router->connstr('postgres'), '-f', 'scaleout/router.sql' ],
	'router set up');

sub r { return $router->safe_psql('postgres', $_[0]); }

# the error a call through the router raises: "SQLSTATE message"
sub r_error
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $router->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? 'no error' : ($err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : $err);
}

sub on_shard { return $shard[ $_[0] ]->safe_psql('postgres', $_[1]); }

sub ids_on { my ($k) = @_; return r("SELECT payledger_router.new_id($k)"); }

######################################################################
# accounts and money, placed and routed
######################################################################

my (%bank, %cust, %macct, %payout, %merchant);
for my $k (0 .. 1)
{
	$bank{$k} = r("SELECT payledger.create_account('USD', 'system', NULL, '{}', payledger_router.new_id($k))");
	$cust{$k} = r("SELECT payledger.create_account('USD', 'customer', 0, '{}', payledger_router.new_id($k))");
	$macct{$k} = r("SELECT payledger.create_account('USD', 'merchant', 0, '{}', payledger_router.new_id($k))");
	$payout{$k} = r("SELECT payledger.create_account('USD', 'payout', 0, '{}', payledger_router.new_id($k))");
	$merchant{$k} = sprintf('00000000-0000-7000-8000-00000000000%d', $k + 1);
	is(on_shard($k, "SELECT count(*) FROM payledger.accounts
		WHERE id IN ('$bank{$k}', '$cust{$k}', '$macct{$k}', '$payout{$k}')"),
		'4', "accounts with ids of shard $k are made on shard $k");
	is(r("SELECT status FROM payledger.transfer('$bank{$k}', '$cust{$k}', 100000, 'USD', 'fund-$k')"),
		'posted', "a transfer within shard $k");
}
is(on_shard(0, "SELECT count(*) FROM payledger.accounts WHERE id = '$cust{1}'"), '0',
	"shard 0 does not hold shard 1's accounts");

my %placed;
for (1 .. 8)
{
	my $id = r("SELECT payledger.create_account('EUR')");
	my $k = r("SELECT payledger_router.shard_of('$id')");
	$placed{$k}++;
	is(on_shard($k, "SELECT currency FROM payledger.accounts WHERE id = '$id'"), 'EUR',
		"an account made without an id lives on the shard its id names ($k)")
	  if $_ == 1;
}
ok(!grep({ $_ > 1 } keys %placed), 'new accounts are placed on the two shards only');
is(r_error("SELECT payledger.create_account('USD', 'generic', 0, '{}', payledger_router.new_id(7))"),
	'22023', 'an account id that names no shard is refused');
is(r("SELECT balance || '/' || available FROM payledger.get_balance('$cust{1}')"),
	'100000/100000', 'get_balance goes to the account\'s shard');
is(r("SELECT count(*) FROM payledger.account_entries('$cust{0}')"), '1',
	'account_entries goes to the account\'s shard');

# errors keep their SQLSTATE through the router
is(r_error("SELECT payledger.create_account('XXX')"), '22023', 'an unknown currency: 22023');
is(r_error("SELECT * FROM payledger.transfer('$bank{0}', '$cust{0}', 5, 'USD', 'fund-0')"),
	'PY002', 'a key reused with other parameters: PY002');
is(r_error("SELECT * FROM payledger.get_balance(payledger_router.new_id(1))"), 'PY005',
	'an unknown account: PY005');
is(r_error("SELECT * FROM payledger.transfer('$bank{0}', '$cust{0}', 5, 'USD')"), 'PY008',
	'no key: PY008');

######################################################################
# payments: everything about a payment runs on its merchant's shard
######################################################################

my (%pay, %void);
for my $k (0 .. 1)
{
	my $args = "'$merchant{$k}', '00000000-0000-7000-8000-0000000000c1', 1000, 'USD', '$cust{$k}', '$macct{$k}'";
	my $p = r("SELECT payledger.create_payment($args, 'pay-$k')");
	$pay{$k} = $p;
	is(r("SELECT payledger_router.shard_of('$p')"), $k, "payment $k gets an id of shard $k");
	is(r("SELECT payledger.create_payment($args, 'pay-$k')"), $p,
		'a retried create_payment returns the same payment');
	is(r("SELECT payledger.authorize_payment('$p', 'auth-$k')"), 'authorized', "payment $k authorized");
	is(r("SELECT payledger.capture_payment('$p', 'cap-$k', 600)"), 'captured', "payment $k captured (600)");
	is(r("SELECT payledger.capture_payment('$p', 'cap-$k', 600)"), 'captured', 'a retried capture replays');
	is(r("SELECT payledger.refund_payment('$p', 100, 'ref-$k')"), 'partially_refunded',
		"payment $k partly refunded");
	my $v = r("SELECT payledger.create_payment($args, 'pay-void-$k')");
	$void{$k} = $v;
	r("SELECT payledger.authorize_payment('$v', 'auth-void-$k')");
	is(r("SELECT payledger.void_payment('$v', 'void-$k')"), 'voided', "a second payment voided");
	is(on_shard($k, "SELECT string_agg(state::text, ',' ORDER BY state) FROM payledger.payments
		WHERE merchant_id = '$merchant{$k}'"), 'partially_refunded,voided',
		"merchant $k's payments are on shard $k");
	is(on_shard(1 - $k, "SELECT count(*) FROM payledger.payments WHERE merchant_id = '$merchant{$k}'"),
		'0', "and not on shard " . (1 - $k));
	my $s = r("SELECT payledger.settle_merchant('$merchant{$k}', now() + interval '1 day', '$payout{$k}', 'settle-$k')");
	is(r("SELECT balance FROM payledger.get_balance('$payout{$k}')"), '500',
		"merchant $k settled: 600 captured - 100 refunded paid out");
	is(r("SELECT string_agg(status, ',') FROM payledger.reconcile_settlement('$s',
		'[{\"payment_id\": \"$p\", \"amount\": 500}]')"), 'matched',
		"the settlement of merchant $k reconciles through the router");
}
is(r_error("SELECT payledger.create_payment('$merchant{0}', '$merchant{1}', 10, 'USD', '$cust{1}', '$macct{0}', 'pay-x')"),
	'0A000', 'a payment whose accounts are on two shards is refused');
is(r_error("SELECT payledger.authorize_payment(payledger_router.new_id(1), 'nope')"), 'PY005',
	'an unknown payment: PY005');

# holds and multi-leg transfers stay within a shard
my $h = r("SELECT transfer_id FROM payledger.hold('$cust{1}', '$macct{1}', 300, 'USD', '1 day', 'hold-1')");
is(r("SELECT payledger_router.shard_of('$h')"), '1', 'a hold gets an id of its shard');
is(r("SELECT status FROM payledger.post_hold('$h', 200, 'post-1')"), 'posted', 'post_hold goes to the hold\'s shard');
is(r_error("SELECT * FROM payledger.hold('$cust{0}', '$macct{1}', 1, 'USD', '1 day', 'hold-x')"),
	'0A000', 'a hold across shards is refused');
is(r("SELECT status FROM payledger.transfer_legs('[{\"from\": \"$cust{0}\", \"to\": \"$macct{0}\", \"amount\": 10},
	{\"from\": \"$cust{0}\", \"to\": \"$payout{0}\", \"amount\": 5}]', 'USD', 'legs-0')"), 'posted',
	'transfer_legs within a shard');
is(r_error("SELECT * FROM payledger.transfer_legs('[{\"from\": \"$cust{0}\", \"to\": \"$macct{1}\", \"amount\": 10}]', 'USD', 'legs-x')"),
	'0A000', 'legs across shards are refused');
is(r("SELECT string_agg(status, ',') FROM payledger.transfer_many(
	ARRAY['$cust{0}', '$cust{1}', '$cust{0}']::uuid[], ARRAY['$macct{0}', '$macct{1}', '$macct{1}']::uuid[],
	ARRAY[1, 2, 999999]::bigint[], 'USD', ARRAY['many-1', 'many-2', 'many-3'])"),
	'posted,posted,rejected', 'transfer_many over both shards: one result per item, in order');

######################################################################
# the read API through the router
######################################################################

# each read function is tested once the shards have it
sub has_fn
{
	return on_shard(0, "SELECT count(*) FROM pg_proc WHERE proname = '$_[0]'
		AND pronamespace = 'payledger'::regnamespace") > 0;
}
SKIP:
{
	skip 'get_payment is not in the extension yet', 1 unless has_fn('get_payment');
	is(r("SELECT merchant_id || ' ' || state FROM payledger.get_payment('$pay{1}')"),
		"$merchant{1} settled", 'get_payment reads the payment on its shard');
}
SKIP:
{
	skip 'list_payments is not in the extension yet', 3 unless has_fn('list_payments');
	is(r("SELECT count(*) FROM payledger.list_payments('$merchant{0}')"), '2',
		'list_payments of one merchant');
	is(r("SELECT string_agg(id::text, ',') FROM payledger.list_payments()"),
		r("SELECT string_agg(id::text, ',' ORDER BY id)
			FROM unnest(ARRAY['$pay{0}', '$pay{1}', '$void{0}', '$void{1}']::uuid[]) id"),
		'list_payments over every shard, merged in id order');
	my $first = r("SELECT id FROM payledger.list_payments(max_rows => 1)");
	is(r("SELECT count(*) FROM payledger.list_payments(after_id => '$first')"), '3',
		'its after_id cursor pages across shards');
}
SKIP:
{
	skip 'list_accounts is not in the extension yet', 1 unless has_fn('list_accounts');
	is(r("SELECT count(*) FROM payledger.list_accounts(max_rows => 1000) WHERE currency = 'USD' AND kind <> 'clearing'"),
		'8', 'list_accounts over every shard');
}
SKIP:
{
	skip 'get_transfer is not in the extension yet', 1 unless has_fn('get_transfer');
	is(r("SELECT status || ' ' || amount FROM payledger.get_transfer('$h')"), 'posted 200',
		'get_transfer reads a hold on its shard (posted for 200 of its 300)');
}
SKIP:
{
	skip 'get_transfer is not in the extension yet', 2 unless has_fn('get_transfer');
	my $legs = on_shard(0, "SELECT id FROM payledger.transfers WHERE idempotency_key = 'legs-0'");
	is(r("SELECT kind || ' ' || amount || ' ' || jsonb_array_length(legs) FROM payledger.get_transfer('$legs')"),
		'legs 15 2', 'get_transfer reads a leg set, with its legs, on its shard');
	is(r_error("SELECT * FROM payledger.get_transfer(payledger_router.new_id(0))"), 'PY005',
		'an unknown transfer: PY005 from its shard');
}
SKIP:
{
	skip 'list_transfers is not in the extension yet', 6 unless has_fn('list_transfers');
	is(r("SELECT string_agg(transfer_id::text, ',') FROM payledger.list_transfers('$cust{1}')"),
		on_shard(1, "SELECT string_agg(transfer_id::text, ',') FROM payledger.list_transfers('$cust{1}')"),
		'list_transfers of one account: its shard\'s page');
	cmp_ok(r("SELECT count(*) FROM payledger.list_transfers('$cust{1}')"), '>=', 3,
		'which has the account\'s transfers and holds');
	my $merged = join(',', sort map { split /,/, on_shard($_,
		"SELECT string_agg(transfer_id::text, ',') FROM payledger.list_transfers(max_rows => 1000)") } 0 .. 1);
	is(r("SELECT string_agg(transfer_id::text, ',') FROM payledger.list_transfers(max_rows => 1000)"), $merged,
		'list_transfers over every shard, merged in id order');
	my (@paged, $after);
	while (1)
	{
		my $page = r("SELECT string_agg(transfer_id::text, ',') FROM payledger.list_transfers(max_rows => 3"
			  . ($after ? ", after_id => '$after'" : '') . ')');
		last if $page eq '';
		my @ids = split /,/, $page;
		push @paged, @ids;
		$after = $ids[-1];
		last if @ids < 3;
	}
	is(join(',', @paged), $merged, 'its after_id cursor pages across shards: every transfer once, in order');
	is(r_error("SELECT * FROM payledger.list_transfers(max_rows => 0)"), '22023', 'max_rows 0: 22023 through the router');
	is(r_error("SELECT * FROM payledger.list_transfers(max_rows => 1001)"), '22023', 'max_rows 1001: 22023');
}
SKIP:
{
	skip 'create_account takes no owner_id yet', 2
	  unless on_shard(0, "SELECT pronargs FROM pg_proc WHERE proname = 'create_account'
		AND pronamespace = 'payledger'::regnamespace") == 6;
	my @owned = map { r("SELECT payledger.create_account('USD', 'merchant', 0, '{}', NULL,
		'00000000-0000-7000-8000-0000000000a9')") } 1 .. 4;
	my %where = map { r("SELECT payledger_router.shard_of('$_')") => 1 } @owned;
	is(scalar(keys %where), 1, 'accounts of one owner are placed on one shard');
	my ($k) = keys %where;
	is(on_shard($k, "SELECT count(*) FROM payledger.accounts WHERE owner_id = '00000000-0000-7000-8000-0000000000a9'"),
		'4', 'and carry their owner there');
}

######################################################################
# cross-shard transfers: sagas, and their recovery after faults
######################################################################

my $a0 = $cust{0};
my $a1 = $cust{1};

# the money of the two customer accounts and where it is
sub snapshot
{
	return join ' ', map { r("SELECT balance || '/' || available FROM payledger.get_balance('$_')") } ($a0, $a1);
}

sub invariants
{
	my ($label) = @_;
	for my $k (0 .. 1)
	{
		is(on_shard($k, "SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok"),
			'', "$label: check_ledger() clean on shard $k");
	}
	my ($total, $clearing) = (0, 0);
	for my $k (0 .. 1)
	{
		my ($t, $c) = split /\|/, on_shard($k, q{
			SELECT COALESCE(sum(b.balance), 0), COALESCE(sum(b.balance) FILTER (WHERE a.kind = 'clearing'), 0)
			FROM payledger.accounts a, payledger.get_balance(a.id) b WHERE a.currency = 'USD'});
		$total += $t;
		$clearing += $c;
	}
	is("$total $clearing", '0 0',
		"$label: USD sums to zero over the shards, and so do their clearing accounts");
}

my $before = r("SELECT balance FROM payledger.get_balance('$a0')") + r("SELECT balance FROM payledger.get_balance('$a1')");
my %expect = (a0 => r("SELECT balance FROM payledger.get_balance('$a0')"),
	a1 => r("SELECT balance FROM payledger.get_balance('$a1')"));

my $res = r("SELECT status || ' ' || replayed FROM payledger.transfer('$a0', '$a1', 1000, 'USD', 'saga-ok')");
is($res, 'posted false', 'a transfer between shards posts');
$expect{a0} -= 1000;
$expect{a1} += 1000;
is(r("SELECT status || ' ' || replayed FROM payledger.transfer('$a0', '$a1', 1000, 'USD', 'saga-ok')"),
	'posted true', 'and replays with its key');
is(on_shard(0, "SELECT count(DISTINCT correlation_id) FROM payledger.payment_audit_log WHERE idempotency_key LIKE 'saga-ok:%'")
	. on_shard(1, "SELECT count(DISTINCT correlation_id) FROM payledger.payment_audit_log WHERE idempotency_key LIKE 'saga-ok:%'"),
	'11', 'the steps on each shard share one correlation id');
is(on_shard(0, "SELECT correlation_id FROM payledger.payment_audit_log WHERE idempotency_key = 'saga-ok:reserve'"),
	on_shard(1, "SELECT correlation_id FROM payledger.payment_audit_log WHERE idempotency_key = 'saga-ok:credit'"),
	'and it is the same on both shards');
is(r("SELECT status || ' ' || reason_code FROM payledger.transfer('$a0', '$a1', 10000000, 'USD', 'saga-poor')"),
	'rejected INSUFFICIENT_FUNDS', 'a saga the source cannot fund is declined, nothing moves');
is(r_error("SELECT * FROM payledger.transfer('$a0', '$a1', 5, 'USD')"), 'PY008',
	'a transfer between shards needs a key');
is(r_error("SELECT * FROM payledger.transfer('$a0', '$a1', 5, 'EUR', 'saga-eur')"), 'PY004',
	'a currency mismatch is refused before anything is reserved');
is(snapshot(), "$expect{a0}/$expect{a0} $expect{a1}/$expect{a1}", 'balances after the plain sagas');

# a saga that the router abandons after a step (fault hook)
sub broken_saga
{
	my ($key, $fault, $amount) = @_;
	my $err = r_error("SET payledger_router.saga_fault = '$fault';
		SELECT * FROM payledger.transfer('$a0', '$a1', $amount, 'USD', '$key')");
	is($err, '57P01', "$key: the router stopped after step $fault");
}

# a saga stopped while it waits after a step, by stopping a server
sub stopped_saga
{
	my ($key, $step, $node, $amount) = @_;
	my $lock = $router->background_psql('postgres');
	$lock->query_safe(q{SELECT pg_advisory_lock(hashtext('payledger saga fault'))});
	my ($out, $err) = ('', '');
	my $call = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-d', $router->connstr('postgres'),
			'-v', 'ON_ERROR_STOP=1', '-c', "SET payledger_router.saga_fault = 'wait:$step'",
			'-c', "SELECT status FROM payledger.transfer('$a0', '$a1', $amount, 'USD', '$key')" ],
		'>', \$out, '2>', \$err);
	$router->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted})
	  or die 'the saga did not reach its step';
	$node->stop('immediate');
	if ($node == $router)
	{
		$call->finish;
		eval { $lock->quit };
	}
	else
	{
		$lock->query_safe(q{SELECT pg_advisory_unlock(hashtext('payledger saga fault'))});
		$lock->quit;
		$call->finish;
	}
	isnt($call->result, 0, "$key: the call failed (" . $node->name . " stopped after $step)");
	$node->start;
}

broken_saga('saga-1', 'reserve', 101);
is(snapshot(), ($expect{a0}) . '/' . ($expect{a0} - 101) . " $expect{a1}/$expect{a1}",
	'saga-1 left its reservation: held on shard 0, nothing on shard 1 yet');
broken_saga('saga-2', 'credit', 102);
broken_saga('saga-3', 'post', 103);
is(r("SELECT status || ' ' || replayed FROM payledger.transfer('$a0', '$a1', 103, 'USD', 'saga-3')"),
	'posted true', 'saga-3 had finished: its retry replays');
stopped_saga('saga-4', 'reserve', $shard[1], 104);
stopped_saga('saga-5', 'credit', $shard[0], 105);
stopped_saga('saga-6', 'reserve', $router, 106);
stopped_saga('saga-7', 'credit', $router, 107);

my %got = map { split /\|/ } split /\n/,
  r("SELECT saga_key || '|' || status || ' ' || COALESCE(reason_code, '') FROM payledger_router.recover_sagas('0')");
is_deeply(\%got, {
		'saga-1' => 'posted ', 'saga-2' => 'posted ', 'saga-4' => 'posted ',
		'saga-5' => 'posted ', 'saga-6' => 'posted ', 'saga-7' => 'posted ' },
	'recovery completes every half-done saga');
is(r("SELECT count(*) FROM payledger_router.recover_sagas('0')"), '0', 'a second recovery finds nothing left');

# compensation: the reservation expires before it is posted
is(r_error("SET payledger_router.saga_expiry = '1 second';
	SET payledger_router.saga_fault = 'credit';
	SELECT payledger.transfer('$a0', '$a1', 109, 'USD', 'saga-9')"), '57P01',
	'saga-9: the router stopped after step credit, its reservation lasting one second');
sleep 2;
is(r("SELECT saga_key || ' ' || status || ' ' || reason_code FROM payledger_router.recover_sagas('0')"),
	'saga-9 rejected HOLD_EXPIRED', 'recovery takes back the credit of a saga whose reservation expired');

# compensation: the target is frozen before the credit is made
broken_saga('saga-8', 'reserve', 108);
r("SELECT payledger.freeze_account('$a1', 'review')");
is(r("SELECT saga_key || ' ' || status || ' ' || reason_code FROM payledger_router.recover_sagas('0')"),
	'saga-8 rejected ACCOUNT_FROZEN', 'recovery releases the reservation of a saga whose credit is declined');

# stuck: the reservation expired and the credit cannot be taken back yet
r("SELECT payledger.unfreeze_account('$a1')");
is(r_error("SET payledger_router.saga_expiry = '1 second';
	SET payledger_router.saga_fault = 'credit';
	SELECT payledger.transfer('$a0', '$a1', 110, 'USD', 'saga-10')"), '57P01',
	'saga-10: the router stopped after step credit, its reservation lasting one second');
r("SELECT payledger.freeze_account('$a1', 'review')");
sleep 2;
is(r("SELECT saga_key || ' ' || status || ' ' || reason_code FROM payledger_router.recover_sagas('0')"),
	'saga-10 pending ACCOUNT_FROZEN', 'a credit that cannot be taken back leaves the saga stuck, pending');
is(on_shard(0, "SELECT state FROM payledger_shard.sagas WHERE saga_key = 'saga-10'"), 'stuck',
	'and recorded as stuck');
r("SELECT payledger.unfreeze_account('$a1')");
is(r("SELECT saga_key || ' ' || status || ' ' || reason_code FROM payledger_router.recover_sagas('0')"),
	'saga-10 rejected HOLD_EXPIRED', 'once the target may be debited, recovery takes the credit back');
is(r("SELECT count(*) FROM payledger_router.recover_sagas('0')"), '0', 'nothing is left to recover');

my $moved = 101 + 102 + 103 + 104 + 105 + 106 + 107;
$expect{a0} -= $moved;
$expect{a1} += $moved;
is(snapshot(), "$expect{a0}/$expect{a0} $expect{a1}/$expect{a1}",
	'every completed saga moved its amount once; the compensated ones moved nothing');
is(r("SELECT balance FROM payledger.get_balance('$a0')") + r("SELECT balance FROM payledger.get_balance('$a1')"),
	$before, 'no money appeared or vanished between the two accounts');
for my $n (1, 2, 4, 5, 6, 7)
{
	is(r("SELECT status || ' ' || replayed FROM payledger.transfer('$a0', '$a1', " . (100 + $n) . ", 'USD', 'saga-$n')"),
		'posted true', "a retry of saga-$n replays its outcome");
}
is(r("SELECT status || ' ' || reason_code FROM payledger.transfer('$a0', '$a1', 109, 'USD', 'saga-9')"),
	'rejected HOLD_EXPIRED', 'a retry of a compensated saga gets its outcome, and moves nothing');
is(on_shard(1, "SELECT status FROM payledger.transfers WHERE idempotency_key = 'saga-9:reverse'"),
	'posted', 'saga-9 took its credit back on shard 1');
is(on_shard(0, "SELECT string_agg(saga_key || ':' || state, ',' ORDER BY saga_key) FROM payledger_shard.sagas WHERE state <> 'posted'"),
	'many-3:rejected,saga-10:compensated,saga-8:rejected,saga-9:compensated,saga-poor:rejected',
	'the saga records say how each ended');
is(on_shard(0, "SELECT count(*) FROM payledger_shard.sagas WHERE state = 'posted'"), '8',
	'and which posted');
# the steps carry only the caller's metadata: an account id whose digit
# groups pass for a card number does not make a saga step refuse (PY006)
my $panlike = '41111111-1111-1111-8111-111111111101';
r("SELECT payledger.create_account('USD', 'generic', 0, '{}', '$panlike')");
is(r("SELECT status FROM payledger.transfer('$a0', '$panlike', 5, 'USD', 'saga-panlike')"), 'posted',
	'a saga to an account whose id looks like a card number posts');
invariants('after recovery');
is(r("SELECT bool_and(ok) FROM payledger.check_ledger()"), 't', 'check_ledger() through the router');
is(r("SELECT ok FROM payledger.verify_audit_log()"), 't', 'verify_audit_log() through the router');

$router->stop;
$_->stop for @shard;
done_testing();
