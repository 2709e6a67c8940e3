# Two-phase commit: payledger calls inside a transaction that is then
# PREPAREd work.  After COMMIT PREPARED or ROLLBACK PREPARED the ledger, the
# outbox, the metrics and verify_audit_log() are as if the transaction had
# committed or rolled back, also when the session that prepared it goes on
# moving money before the prepared transaction ends, and a later session
# does not wait for a prepared transaction it has nothing to do with.
# verify_audit_log() still finds a committed row deleted behind the
# triggers' back.  COMMIT PREPARED and ROLLBACK PREPARED (and an ordinary
# rollback of an event-writing transaction that held later events back)
# wake the listeners of payledger_events.  Without preloading, where an
# event-writing transaction sends its own NOTIFY, PREPARE is refused with
# 0A000 and a hint, with nothing written; with payledger.notify_events = off
# it works there too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('twophase');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'payledger'
max_prepared_transactions = 10
});
$node->start;

# accounts: a prepared transaction keeps its row locks until it ends, so
# each open prepared transaction moves money between accounts of its own,
# and the normal traffic between others
my %acct;
my $i = 0;
for my $name (qw(sys p1 p2 p3 p4 p5 p6 n1 n2 card shop))
{
	$i++;
	$acct{$name} = sprintf('00000000-0000-7000-8000-%012d', $i);
}
my $merchant = '00000000-0000-7000-8000-100000000001';
my $customer = '00000000-0000-7000-8000-100000000002';
my $setup = "CREATE EXTENSION payledger;\n"
  . "SELECT payledger.create_account('USD', 'system', NULL, '{}', '$acct{sys}');\n";
for my $name (qw(p1 p2 p3 p4 p5 p6 n1 n2 card))
{
	$setup .= "SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$acct{$name}');\n";
	$setup .= "SELECT payledger.transfer('$acct{sys}', '$acct{$name}', 10000, 'USD', 'fund-$name');\n";
}
$setup .= "SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$acct{shop}');\n";
$node->safe_psql('postgres', $setup);

# runs a script in one session; a wait for a prepared transaction fails it
sub session
{
	my ($script) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '10s';\n$script", on_error_stop => 1);
	return ($ret, $out, $err);
}

sub xfer
{
	my ($from, $to, $amount, $key) = @_;
	return "SELECT status FROM payledger.transfer('$acct{$from}', '$acct{$to}', $amount, 'USD', '$key');\n";
}

# 1. one session prepares, goes on moving money, and ends its prepared
#    transactions with COMMIT PREPARED and ROLLBACK PREPARED, in between
#    and out of order
my ($ret, $out, $err) = session(
	  xfer('n1', 'n2', 1, 't1')
	  . "BEGIN;\n" . xfer('p1', 'p2', 100, 'x1') . "PREPARE TRANSACTION 'x1';\n"
	  . xfer('n1', 'n2', 2, 't2')
	  . "BEGIN;\nSELECT transfer_id AS hold_id FROM payledger.hold('$acct{p3}', '$acct{p4}', 50, 'USD', '1 day', 'h1') \\gset\n"
	  . "PREPARE TRANSACTION 'h1';\n"
	  . xfer('n1', 'n2', 3, 't3')
	  . "ROLLBACK PREPARED 'x1';\n"
	  . xfer('n1', 'n2', 4, 't4')
	  . "COMMIT PREPARED 'h1';\n"
	  . "SELECT payledger.create_payment('$merchant', '$customer', 500, 'USD', '$acct{card}', '$acct{shop}', 'pay1') AS pay1 \\gset\n"
	  . "BEGIN;\nSELECT payledger.authorize_payment(:'pay1', 'pay1-auth');\nPREPARE TRANSACTION 'auth1';\n"
	  . xfer('n1', 'n2', 5, 't5')
	  . "ROLLBACK PREPARED 'auth1';\n"
	  . "SELECT payledger.authorize_payment(:'pay1', 'pay1-auth');\n"
	  . "BEGIN;\nSELECT payledger.capture_payment(:'pay1', 'pay1-cap', 300);\nPREPARE TRANSACTION 'cap1';\n"
	  . xfer('n1', 'n2', 6, 't6')
	  . "BEGIN;\nSELECT status FROM payledger.post_hold(:'hold_id', 20, 'h1-post');\nPREPARE TRANSACTION 'post1';\n"
	  . xfer('n1', 'n2', 7, 't7')
	  . "COMMIT PREPARED 'cap1';\n"
	  . "ROLLBACK PREPARED 'post1';\n"
	  . "SELECT status FROM payledger.void_hold(:'hold_id', 'h1-void');\n"
	  . "BEGIN;\nSELECT status FROM payledger.transfer_many(ARRAY['$acct{p5}', '$acct{p5}']::uuid[], ARRAY['$acct{p6}', '$acct{p6}']::uuid[], ARRAY[8, 9], 'USD', ARRAY['m1', 'm2']);\n"
	  . "SAVEPOINT s;\n" . xfer('p5', 'p6', 10, 'm3') . "RELEASE s;\n"
	  . "PREPARE TRANSACTION 'many1';\n"
	  . xfer('n1', 'n2', 11, 't8')
	  . "ROLLBACK PREPARED 'many1';\n"
	  . "BEGIN;\n" . xfer('p5', 'p6', 12, 'm4') . "PREPARE TRANSACTION 'many2';\n"
	  . xfer('n1', 'n2', 13, 't9')
	  . "COMMIT PREPARED 'many2';\n"
	  . xfer('n1', 'n2', 14, 't10')
	  # a savepoint rolled back after counting, then PREPARE
	  . "BEGIN;\nSAVEPOINT s;\n" . xfer('p1', 'p2', 18, 'sp1') . "ROLLBACK TO s;\n"
	  . xfer('p1', 'p2', 19, 'sp2') . "PREPARE TRANSACTION 'sp';\n"
	  . xfer('n1', 'n2', 20, 't13')
	  . "COMMIT PREPARED 'sp';\n");
is($ret, 0, 'a session that prepares goes on moving money and never waits for its own prepared transactions')
  or diag($err);
# after a failure, what the script left prepared would hold up the rest
for my $gid (split /\n/, $node->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts'))
{
	$node->safe_psql('postgres', "ROLLBACK PREPARED '$gid'");
}

# 2. a prepared transaction left open by a session that ended does not hold
#    up the next session (which may get the same backend slot)
$node->safe_psql('postgres', "BEGIN;\n" . xfer('p1', 'p2', 15, 'x2') . "PREPARE TRANSACTION 'x2';");
($ret, $out, $err) = session(xfer('n1', 'n2', 16, 't11') . xfer('n2', 'n1', 17, 't12'));
is($ret, 0, 'the next session does not wait for a prepared transaction left open') or diag($err);
$node->safe_psql('postgres', "ROLLBACK PREPARED 'x2'");

is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), 0,
	'no prepared transaction is left');

# 3. the ledger is as if the committed ones committed and the rolled back
#    ones never ran
is($node->safe_psql('postgres', q{
	SELECT string_agg(idempotency_key, ',' ORDER BY idempotency_key)
	  FROM (SELECT DISTINCT idempotency_key FROM payledger.payment_audit_log
			 WHERE idempotency_key = ANY (ARRAY['x1', 'x2', 'm1', 'm2', 'm3', 'm4', 'h1', 'h1-post', 'h1-void', 'pay1-auth', 'pay1-cap'])) k}),
	'h1,h1-void,m4,pay1-auth,pay1-cap', 'only the committed prepared transactions left audit rows');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(b::text, ',' ORDER BY n)
	  FROM unnest(ARRAY['$acct{p1}', '$acct{p2}', '$acct{p5}', '$acct{p6}', '$acct{n2}', '$acct{shop}']::uuid[]) WITH ORDINALITY AS u(a, n),
		   LATERAL (SELECT balance AS b FROM payledger.get_balance(u.a)) g}),
	join(',', 10000 - 19, 10000 + 19, 10000 - 12, 10000 + 12,
		10000 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 11 + 13 + 14 + 20 + 16 - 17, 300),
	'balances count exactly the committed work');
is($node->safe_psql('postgres', qq{
	SELECT state, captured_amount FROM payledger.payments WHERE merchant_id = '$merchant'}),
	'captured|300', 'the payment was authorized once and captured by the committed prepared transaction');
is($node->safe_psql('postgres', qq{
	SELECT status, replayed FROM payledger.transfer('$acct{p1}', '$acct{p2}', 33, 'USD', 'x1')}),
	'posted|f', 'the key of a rolled back prepared transfer is free: another call with it does the work');
is($node->safe_psql('postgres', q{
	SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok}), '',
	'check_ledger() is clean');
is($node->safe_psql('postgres', 'SELECT ok, problem FROM payledger.verify_audit_log()'), 't|',
	'verify_audit_log() is clean after COMMIT PREPARED and ROLLBACK PREPARED');

# 4. metrics count what committed
is($node->safe_psql('postgres', q{
	SELECT (SELECT value FROM payledger.metrics
			 WHERE metric = 'payledger_audit_rows_total')::bigint
		 = (SELECT count(*) FROM payledger.payment_audit_log)}),
	't', 'payledger_audit_rows_total counts the audit rows there are');
is($node->safe_psql('postgres', q{
	SELECT (SELECT value FROM payledger.metrics
			 WHERE metric = 'payledger_transfers_total' AND labels->>'status' = 'posted')::bigint
		 = (SELECT count(*) FROM payledger.transfers WHERE status = 'posted')}),
	't', 'payledger_transfers_total{status="posted"} counts the posted transfers there are');

# 5. the outbox delivers the committed events only
is($node->safe_psql('postgres', q{
	SELECT string_agg(amount_cents::text, ',' ORDER BY era, txid, id)
	  FROM payledger.read_events('c', 100000)
	 WHERE event_type = 'TRANSFER_POSTED' AND amount_cents < 10000}),
	'1,2,3,4,5,6,7,11,12,13,14,19,20,16,17,33',
	'read_events returns the transfers that committed, none that rolled back');

# 6. tampering is still found: a committed row deleted from the middle of
#    a chain, and the cut tail of a chain against a checkpoint
my $checkpoint = $node->safe_psql('postgres', 'SELECT payledger.audit_checkpoint()');
sub tampered
{
	my ($victim, $verify) = @_;
	return $node->safe_psql('postgres', qq{
		BEGIN;
		SET session_replication_role = replica;
		ALTER EVENT TRIGGER payledger_protect_ddl DISABLE;
		ALTER TABLE payledger.payment_audit_log DISABLE TRIGGER audit_append_only;
		DELETE FROM payledger.payment_audit_log WHERE id = ($victim);
		SELECT ok FROM $verify;
		ROLLBACK});
}
is(tampered(q{SELECT min(id) FROM payledger.payment_audit_log WHERE idempotency_key = 'pay1-cap'},
		'payledger.verify_audit_log()'),
	'f', 'a row of a committed prepared transaction deleted from the middle of its chain is found');
is(tampered(q{SELECT max(id) FROM payledger.payment_audit_log WHERE idempotency_key = 'm4'},
		"payledger.verify_audit_log('$checkpoint')"),
	'f', 'the last row of a committed prepared transaction deleted is found against a checkpoint');
is(tampered(q{SELECT max(id) FROM payledger.payment_audit_log WHERE idempotency_key = 't9'},
		'payledger.verify_audit_log()'),
	'f', 'a row written after a PREPARE in the same session deleted is found');
is($node->safe_psql('postgres', "SELECT ok FROM payledger.verify_audit_log('$checkpoint')"), 't',
	'untouched, the log verifies against the checkpoint');

# 7. wake-ups: COMMIT PREPARED, ROLLBACK PREPARED and an ordinary rollback
#    of a writer that held later events back wake the listeners
sub received
{
	my ($listener) = @_;
	my $got = $listener->query_safe('SELECT 1');
	my @pids = $got =~ /Asynchronous notification "payledger_events" received/g;
	return scalar(@pids);
}

sub wait_for_notification
{
	my ($listener, $seconds) = @_;
	my $until = time() + $seconds;
	while (time() < $until)
	{
		return 1 if received($listener);
		usleep(50_000);
	}
	return 0;
}

# lets every earlier wake-up arrive, and forgets it
sub drain
{
	my ($listener) = @_;
	usleep(500_000);
	received($listener);
}

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN payledger_events');

$node->safe_psql('postgres', "BEGIN;\n" . xfer('p1', 'p2', 40, 'w1') . "PREPARE TRANSACTION 'w1';");
drain($listener);
$node->safe_psql('postgres', "COMMIT PREPARED 'w1'");
ok(wait_for_notification($listener, 20), 'COMMIT PREPARED wakes the listener');

$node->safe_psql('postgres', "BEGIN;\n" . xfer('p1', 'p2', 41, 'w2') . "PREPARE TRANSACTION 'w2';");
$node->safe_psql('postgres', xfer('n1', 'n2', 42, 'w3'));
drain($listener);
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM payledger.read_events('c', 100000) WHERE amount_cents = 42}),
	0, 'a prepared writer holds back a later event');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'w2'");
ok(wait_for_notification($listener, 20), 'ROLLBACK PREPARED wakes the listener');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM payledger.read_events('c', 100000) WHERE amount_cents = 42}),
	1, 'and the event it held back is readable');

my $writer = $node->background_psql('postgres');
$writer->query_safe("BEGIN;\n" . xfer('p1', 'p2', 43, 'w4'));
$node->safe_psql('postgres', xfer('n1', 'n2', 44, 'w5'));
drain($listener);
$writer->query_safe('ROLLBACK');
ok(wait_for_notification($listener, 20), 'the rollback of a writer that held events back wakes the listener');
$writer->quit;
$listener->quit;
is($node->safe_psql('postgres', 'SELECT ok FROM payledger.verify_audit_log()'), 't',
	'verify_audit_log() is clean at the end');
$node->stop;

# 8. without preloading an event-writing transaction sends its own NOTIFY,
#    which PostgreSQL cannot prepare: refused at PREPARE with 0A000 and a
#    hint, nothing written; with payledger.notify_events = off it works
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->append_conf('postgresql.conf', "max_prepared_transactions = 5\n");
$plain->start;
$plain->safe_psql('postgres', qq{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$acct{sys}');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$acct{n1}');
});
($ret, $out, $err) = $plain->psql('postgres', qq{
	\\set VERBOSITY verbose
	BEGIN;
	SELECT status FROM payledger.transfer('$acct{sys}', '$acct{n1}', 5, 'USD', 'np1');
	PREPARE TRANSACTION 'np1';
});
like($err, qr/ERROR:  0A000: cannot prepare a transaction that wrote payledger events/,
	'without preloading PREPARE of an event-writing transaction is refused with 0A000');
like($err, qr/HINT:  .*shared_preload_libraries.*payledger\.notify_events/,
	'with a hint naming shared_preload_libraries and payledger.notify_events');
is($plain->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM pg_prepared_xacts)
		 + (SELECT count(*) FROM payledger.payment_audit_log WHERE idempotency_key = 'np1')}),
	0, 'nothing was prepared or written');
$plain->safe_psql('postgres', qq{
	SET payledger.notify_events = off;
	BEGIN;
	SELECT status FROM payledger.transfer('$acct{sys}', '$acct{n1}', 6, 'USD', 'np2');
	PREPARE TRANSACTION 'np2';
});
$plain->safe_psql('postgres', "COMMIT PREPARED 'np2'");
is($plain->safe_psql('postgres', qq{SELECT balance FROM payledger.get_balance('$acct{n1}')}),
	6, 'with payledger.notify_events = off a prepared transfer commits without preloading');
is($plain->safe_psql('postgres', 'SELECT ok FROM payledger.verify_audit_log()'), 't',
	'and the log verifies');
$plain->stop;

done_testing();
