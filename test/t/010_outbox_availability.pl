# Outbox availability: an event is readable as soon as its transaction and
# every older event-writing transaction have ended.  Transactions that write
# no events (idle in transaction, in another database, prepared and
# forgotten) do not delay delivery; a transaction that is writing events
# does, prepared or not, across a restart, and nothing is ever skipped, also
# when an old transaction writes its first event late.  A poll reads only
# what it returns, not the backlog behind an open writer.  read_events and
# payledger.metrics work in read-only transactions and on a hot standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('outbox');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'payledger'
max_prepared_transactions = 5
});
$node->start;

# two pairs of accounts: the open writers use the second, so that nobody
# waits for their row locks
my $sys = '00000000-0000-7000-8000-000000000001';
my $dst = '00000000-0000-7000-8000-000000000002';
my $sys2 = '00000000-0000-7000-8000-000000000003';
my $dst2 = '00000000-0000-7000-8000-000000000004';
my $setup = qq{
	CREATE EXTENSION payledger;
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$dst');
	SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys2');
	SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$dst2');
};
$node->safe_psql('postgres', $setup);
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE TABLE t (i int)');

my $n = 0;
sub transfer_sql
{
	my ($amount, $second_pair) = @_;
	my ($from, $to) = $second_pair ? ($sys2, $dst2) : ($sys, $dst);
	$n++;
	return "SELECT status FROM payledger.transfer('$from', '$to', $amount, 'USD', 'k$n')";
}

# the amounts of the TRANSFER_POSTED events the consumer can read now
sub readable
{
	my ($consumer) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT coalesce(string_agg(amount_cents::text, ',' ORDER BY era, txid, id), '')
		  FROM payledger.read_events('$consumer', 1000)
		 WHERE event_type = 'TRANSFER_POSTED'});
}

# acknowledges everything the consumer can read now
sub ack_all
{
	my ($consumer) = @_;
	$node->safe_psql('postgres', qq{
		SELECT payledger.ack_events('$consumer', event_id)
		  FROM payledger.read_events('$consumer', 100000) ORDER BY era DESC, txid DESC, id DESC LIMIT 1});
}

ack_all('c');

# 1. transactions that wrote no events delay nothing
my $idle = $node->background_psql('postgres');
$idle->query_safe('BEGIN; SELECT pg_current_xact_id()');
my $elsewhere = $node->background_psql('other');
$elsewhere->query_safe('BEGIN; INSERT INTO t VALUES (1)');
$node->safe_psql('other', 'BEGIN; INSERT INTO t VALUES (2); PREPARE TRANSACTION \'forgotten\'');
$node->safe_psql('postgres', transfer_sql(11));
is(readable('c'), '11',
	'an event is readable while a session idles in a transaction that holds an xid, another '
	  . 'database has an open writing transaction and a prepared transaction is forgotten');
ack_all('c');

# 2. an old transaction that writes its first event late is not skipped
$idle->query_safe(transfer_sql(12, 1));
$node->safe_psql('postgres', transfer_sql(13));
is(readable('c'), '', 'an open event-writing transaction holds back the events after it');
$idle->query_safe('COMMIT');
is(readable('c'), '12,13', 'after it commits, its event and the later one are read, in order');
ack_all('c');
$elsewhere->query_safe('ROLLBACK');
$elsewhere->quit;

# 3. a prepared transaction that wrote events holds back later events, also
#    across a restart, and is delivered after COMMIT PREPARED
$node->safe_psql('postgres',
	'BEGIN; ' . transfer_sql(14, 1) . "; PREPARE TRANSACTION 'writer'");
$node->safe_psql('postgres', transfer_sql(15));
is(readable('c'), '', 'a prepared event-writing transaction holds back later events');
$node->restart;
$node->safe_psql('postgres', transfer_sql(16));
is(readable('c'), '', 'and it still does after a restart');
$node->safe_psql('postgres', "COMMIT PREPARED 'writer'");
is(readable('c'), '14,15,16', 'after COMMIT PREPARED everything is read, in commit order of keys');
ack_all('c');
$node->safe_psql('other', "ROLLBACK PREPARED 'forgotten'");

# 4. a poll costs what it returns, not the backlog behind an open writer
my $writer = $node->background_psql('postgres');
$writer->query_safe('BEGIN; ' . transfer_sql(17, 1));
$node->safe_psql('postgres', qq{
	SET payledger.require_idempotency_key = off;
	SELECT count(*) FROM generate_series(1, 3000) i, LATERAL payledger.transfer('$sys', '$dst', i, 'USD') t});
my $fetched = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(*) FROM payledger.read_events('c', 1000);
	SELECT sum(idx_tup_fetch + seq_tup_read) FROM pg_stat_xact_all_tables
	 WHERE schemaname = 'payledger' AND relname LIKE 'payment_audit_log%';
	COMMIT});
my ($returned, $rows_read) = split /\n/, $fetched;
is($returned, 0, 'nothing is readable behind the open writer');
cmp_ok($rows_read, '<', 100,
	"the poll read $rows_read audit rows, not the 3,000 events behind the open writer");
$writer->query_safe('COMMIT');
$writer->quit;
is($node->safe_psql('postgres', "SELECT count(*) FROM payledger.read_events('c', 10000) WHERE event_type = 'TRANSFER_POSTED'"),
	3001, 'after the writer commits its transfer and the 3,000 after it are readable');
ack_all('c');

# 5. read-only transactions and a hot standby (a fresh server: its era is not
#    registered until it writes)
$node->safe_psql('postgres', transfer_sql(18));
my $unread = $node->safe_psql('postgres', "SELECT count(*) FROM payledger.read_events('c')");
cmp_ok($unread, '>', 0, 'the transfer wrote events');
is($node->safe_psql('postgres', q{
	BEGIN READ ONLY;
	SELECT count(*) FROM payledger.read_events('c');
	SELECT count(*) > 0 FROM payledger.metrics;
	COMMIT}), "$unread\nt", 'read_events and metrics work in a read-only transaction');
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', transfer_sql(19));
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{
	SELECT string_agg(amount_cents::text, ',' ORDER BY era, txid, id)
	  FROM payledger.read_events('c') WHERE event_type = 'TRANSFER_POSTED'}),
	'18,19', 'read_events works on a hot standby');
my $unacked = q{SELECT value FROM payledger.metrics
	WHERE metric = 'payledger_events_unacked' AND labels->>'consumer' = 'c'};
is($standby->safe_psql('postgres', $unacked), $node->safe_psql('postgres', $unacked),
	'and so does payledger.metrics');
$standby->stop;

$idle->quit;
is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM payledger.check_ledger()'),
	't', 'check_ledger() is all ok');
$node->stop;
done_testing();
