# check_ledger() on stale statistics: the tables were analyzed when the
# ledger was nearly empty and autovacuum has not run since, as on a ledger
# that grew fast.  The payments_match_transfers and transfers_audited checks
# must still not plan a nested loop whose inner side scans a table (or a
# materialized copy of one) once per outer row, or a correlated subquery
# that scans a table per row: at 5,400 payments they took about 5 s and
# 3 s that way.  The plans are read with auto_explain (EXPLAIN of the
# statements check_ledger() runs), not timed; the checks find their rows
# through the primary key of transfers and the audit log's payment_id index.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('plans');
$node->init;
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;

my $sys = '00000000-0000-7000-8000-000000000001';
my $card = '00000000-0000-7000-8000-000000000002';
my $shop = '00000000-0000-7000-8000-000000000003';
my $fee = '00000000-0000-7000-8000-000000000004';
my $merchant = '00000000-0000-7000-8000-100000000001';
my $customer = '00000000-0000-7000-8000-100000000002';
$node->safe_psql('postgres', qq{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$card');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$shop');
	SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$fee');
	SELECT payledger.transfer('$sys', '$card', 100000000, 'USD', 'fund');
	ANALYZE;
});

# the ledger grows after ANALYZE: payments captured with a split, refunded
for my $batch (0 .. 5)
{
	my $lo = $batch * 100 + 1;
	my $hi = $lo + 99;
	$node->safe_psql('postgres', qq{
		DO \$\$
		DECLARE p uuid;
		BEGIN
			FOR i IN $lo..$hi LOOP
				p := payledger.create_payment('$merchant', '$customer', 1000, 'USD', '$card', '$shop', 'c' || i);
				PERFORM payledger.authorize_payment(p, 'a' || i);
				PERFORM payledger.capture_payment(p, 'k' || i, NULL, '[{"account": "$fee", "amount": 10}]');
				PERFORM payledger.refund_payment(p, 100, 'r' || i);
			END LOOP;
		END \$\$});
}
is($node->safe_psql('postgres', q{
	SELECT reltuples <= 1 FROM pg_class WHERE oid = 'payledger.transfers'::regclass}),
	't', 'the statistics of transfers are stale (analyzed with one row)');

# the plan of every statement check_ledger() runs, from auto_explain
my ($ret, $out, $err) = $node->psql('postgres', q{
	LOAD 'auto_explain';
	SET auto_explain.log_min_duration = 0;
	SET auto_explain.log_nested_statements = on;
	SET auto_explain.log_level = notice;
	SET auto_explain.log_format = json;
	SELECT check_name || ' ' || ok FROM payledger.check_ledger() ORDER BY check_name;
});
is($ret, 0, 'check_ledger() ran') or diag($err);
like($out, qr/^payments_match_transfers true$/m, 'payments_match_transfers is ok');

my $json = JSON::PP->new;
my %plans;
while ($err =~ /NOTICE:  duration: [\d.]+ ms  plan:\n/g)
{
	my ($plan) = $json->decode_prefix(substr($err, pos($err)));
	$plans{ $plan->{'Query Text'} } = $plan->{Plan};
}
my ($query) = grep { /payments p/ && /refund/ } keys %plans;
ok(defined $query, 'the plan of payments_match_transfers was logged');
my $plan = $plans{ $query // '' } // {};
my ($audited) = grep { /HOLD_CREATED/ && /transfers t/ } keys %plans;
ok(defined $audited, 'the plan of transfers_audited was logged');
my $audited_plan = $plans{ $audited // '' } // {};

# the nested loops whose inner side is not an index probe, and the
# per-row subqueries that scan a table
sub quadratic
{
	my ($node, $text) = @_;
	my @found;
	for my $child (@{ $node->{Plans} // [] })
	{
		my $rel = $child->{'Parent Relationship'} // '';
		my $inner = $child;
		$inner = $inner->{Plans}[0] while $inner->{'Node Type'} eq 'Memoize';
		push @found, "nested loop over a $inner->{'Node Type'}"
		  if $node->{'Node Type'} eq 'Nested Loop' && $rel eq 'Inner'
		  && $inner->{'Node Type'} !~ /^(Index Scan|Index Only Scan|Bitmap Heap Scan)$/;
		push @found, "per-row $child->{'Subplan Name'} scanning a table"
		  if $rel eq 'SubPlan'
		  && index($text, "hashed $child->{'Subplan Name'}") < 0
		  && $json->encode($child) =~ /"Node Type":"(Seq Scan|Materialize)"/;
		push @found, quadratic($child, $text);
	}
	return @found;
}

my $text = $json->encode($plan);
is(join('; ', quadratic($plan, $text)), '',
	'payments_match_transfers plans no table scan per payment');
like($text, qr/"Index Name":"transfers_pkey"/,
	'payments_match_transfers finds the captured hold through the primary key of transfers');
my $audited_text = $json->encode($audited_plan);
is(join('; ', quadratic($audited_plan, $audited_text)), '',
	'transfers_audited plans no table scan per transfer or hold');
like($audited_text, qr/"Index Name":"payment_audit_log[^"]*payment[^"]*"/,
	'transfers_audited finds the audit rows through their payment_id index');

# and it still finds what it is there for
$node->safe_psql('postgres', q{
	ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
	ALTER TABLE payledger.payments DISABLE TRIGGER ALL;
	UPDATE payledger.payments SET refunded_amount = refunded_amount + 1
	 WHERE id = (SELECT id FROM payledger.payments ORDER BY id LIMIT 1);
	UPDATE payledger.payments SET captured_amount = captured_amount - 1
	 WHERE id = (SELECT id FROM payledger.payments ORDER BY id DESC LIMIT 1);
	ALTER TABLE payledger.payments ENABLE TRIGGER ALL;
	ALTER EVENT TRIGGER payledger_protect_ddl ENABLE;
});
like($node->safe_psql('postgres', q{
	SELECT detail FROM payledger.check_ledger() WHERE check_name = 'payments_match_transfers'}),
	qr/^2 problem\(s\): /, 'a wrong refunded and a wrong captured amount are both reported');
$node->safe_psql('postgres', q{
	ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
	ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
	DELETE FROM payledger.payment_audit_log
	 WHERE event_type = 'HOLD_CREATED'
	   AND payment_id = (SELECT id FROM payledger.holds ORDER BY id LIMIT 1);
	DELETE FROM payledger.payment_audit_log
	 WHERE event_type = 'TRANSFER_POSTED'
	   AND payment_id = (SELECT id FROM payledger.transfers WHERE kind = 'refund' ORDER BY id LIMIT 1);
	ALTER TABLE payledger.payment_audit_log ENABLE TRIGGER audit_append_only;
	ALTER EVENT TRIGGER payledger_protect_ddl ENABLE;
});
like($node->safe_psql('postgres', q{
	SELECT detail FROM payledger.check_ledger() WHERE check_name = 'transfers_audited'}),
	qr/^2 problem\(s\): /, 'a hold and a transfer whose audit rows were deleted are both reported');
$node->stop;

done_testing();
