# 031_disputes_never_expire.pl: a dispute keeps its amount reserved out of
# the merchant's funds until resolve_dispute, however long that takes, and
# no sweep releases it; an authorization's hold expires only together with
# its payment.  The server runs under libfaketime with its offset in a file,
# so the test moves the clock 400 days ahead.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($libfaketime) = grep { -e $_ } (
	'/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
	'/usr/lib/faketime/libfaketime.so.1');
plan skip_all => 'libfaketime is not installed (Debian package libfaketime)'
  unless $libfaketime;

my $node = PostgreSQL::Test::Cluster->new('disputes');
$node->init;
my $clock = $node->basedir . '/faketime_offset';

# sets the server's clock to $epoch (it runs on from there)
sub clock_at
{
	my ($epoch) = @_;
	open(my $fh, '>', $clock) or die "cannot write $clock: $!";
	printf $fh "%+d\n", $epoch - time();
	close($fh);
}

clock_at(time());
{
	local $ENV{LD_PRELOAD} = $libfaketime;
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
	local $ENV{FAKETIME_NO_CACHE} = '1';
	$node->start;
}

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my $sys = '00000000-0000-7000-8000-000000000001';
my $card = '00000000-0000-7000-8000-000000000002';
my $shop = '00000000-0000-7000-8000-000000000003';
my $other = '00000000-0000-7000-8000-000000000004';
my $merchant = '00000000-0000-7000-8000-0000000000aa';
my $customer = '00000000-0000-7000-8000-0000000000bb';
q1('CREATE EXTENSION payledger');
q1("SELECT payledger.create_account('USD', 'system', NULL, '{}', '$sys')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$card')");
q1("SELECT payledger.create_account('USD', 'merchant', 0, '{}', '$shop')");
q1("SELECT payledger.create_account('USD', 'wallet', 0, '{}', '$other')");
q1("SELECT payledger.transfer('$sys', '$card', 10000, 'USD', 'fund')");

# a captured payment of 1000, disputed for 600
my $p1 = q1("SELECT payledger.create_payment('$merchant', '$customer', 1000, 'USD', '$card', '$shop', 'p1')");
is(q1("SELECT payledger.authorize_payment('$p1', 'p1-auth')"), 'authorized', 'p1 authorized');
is(q1("SELECT payledger.capture_payment('$p1', 'p1-cap')"), 'captured', 'p1 captured');
is(q1("SELECT payledger.dispute_payment('$p1', 600, 'p1-dispute')"), 'disputed', 'p1 disputed for 600');
is(q1("SELECT available FROM payledger.get_balance('$shop')"), '400', 'the merchant has 400 available');

# an authorization that expires in a day
my $p2 = q1("SELECT payledger.create_payment('$merchant', '$customer', 300, 'USD', '$card', '$shop', 'p2')");
is(q1("SELECT payledger.authorize_payment('$p2', 'p2-auth', '1 day')"), 'authorized', 'p2 authorized for a day');

clock_at(time() + 400 * 86400);
is(q1("SELECT clock_timestamp() > created_at + interval '399 days' FROM payledger.payments WHERE id = '$p1'"),
	't', 'the clock is 400 days ahead');

is(q1('SELECT payledger.expire_holds()'), '0', 'expire_holds sweeps neither the dispute nor the authorization');
is(q1("SELECT h.status FROM payledger.holds h JOIN payledger.payments p ON h.id = p.dispute_hold_id WHERE p.id = '$p1'"),
	'pending', 'the dispute hold is still pending');
is(q1("SELECT state || '/' || h.status FROM payledger.payments p JOIN payledger.holds h ON h.id = p.hold_id WHERE p.id = '$p2'"),
	'authorized/pending', 'the authorization and its hold are both still open');
is(q1("SELECT available FROM payledger.get_balance('$shop')"), '400', 'the disputed 600 is still reserved');
is(q1("SELECT status || coalesce(':' || reason_code, '') FROM payledger.transfer('$shop', '$other', 401, 'USD', 'spend')"),
	'rejected:INSUFFICIENT_FUNDS', 'the merchant cannot spend the disputed amount');

is(q1('SELECT payledger.expire_authorizations()'), '1', 'expire_authorizations expires p2');
is(q1("SELECT state || '/' || h.status FROM payledger.payments p JOIN payledger.holds h ON h.id = p.hold_id WHERE p.id = '$p2'"),
	'expired/expired', 'the payment and its hold expire together');

is(q1("SELECT payledger.resolve_dispute('$p1', false, 'p1-lost')"), 'charged_back', 'a lost dispute 400 days later charges back');
is(q1("SELECT balance || '/' || available FROM payledger.get_balance('$shop')"), '400/400', 'the merchant keeps 400');
is(q1("SELECT balance FROM payledger.get_balance('$card')"), '9600', 'the customer got 600 back');
is(q1("SELECT string_agg(check_name, ',') FROM payledger.check_ledger() WHERE NOT ok"), '', 'check_ledger is clean');

$node->stop;
done_testing();
