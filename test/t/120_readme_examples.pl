# 120_readme_examples.pl: every ```sql block of README.md runs, in order, in
# one psql session on a fresh database, so the documentation cannot rot.
#
# A statement followed by a comment line "-- ERROR: ... (SQLSTATE)" is meant
# to fail: it runs with ON_ERROR_STOP off and must fail with exactly that
# SQLSTATE.  Every other statement must succeed.  The cluster preloads
# pg_cron and payledger, as the README's operations section configures it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

open(my $fh, '<', 'README.md') or die "README.md: $!";
my @lines = <$fh>;
close($fh);

# the sql blocks, each a list of lines
my (@blocks, $in);
foreach my $line (@lines)
{
	if (!defined $in && $line =~ /^```sql\s*$/)
	{
		$in = [];
	}
	elsif (defined $in && $line =~ /^```\s*$/)
	{
		push @blocks, $in;
		undef $in;
	}
	elsif (defined $in)
	{
		push @$in, $line;
	}
}
die "README.md: unterminated sql block" if defined $in;
cmp_ok(scalar(@blocks), '>=', 5, 'README.md has sql blocks: ' . scalar(@blocks));

# the code part of a line, without a trailing "-- comment"
sub code_of
{
	my ($line) = @_;
	my $code = $line;
	$code =~ s/\s*--.*$// unless $code =~ /'[^']*--[^']*'/;
	$code =~ s/\s+$//;
	return $code;
}

# Turn the blocks into one psql script.  Statements end at a line whose code
# ends with ";" or "\gset", or at a psql meta-command.  A marker line wraps
# the statement before it.
my $script = "\\set ON_ERROR_STOP on\n";
my @expected;
for my $b (0 .. $#blocks)
{
	my @out;
	my ($start, $last_start, $last_end);
	foreach my $line (@{ $blocks[$b] })
	{
		if ($line =~ /^--\s*ERROR:.*\(([0-9A-Z]{5})\)\s*$/)
		{
			my $state = $1;
			die "README block " . ($b + 1) . ": marker without a statement: $line"
			  unless defined $last_end;
			my $n = scalar(@expected);
			splice(@out, $last_start, 0, "\\set ON_ERROR_STOP off\n");
			push @out, "\\set ON_ERROR_STOP on\n",
			  "\\echo README-EXPECT $n $state :SQLSTATE\n";
			push @expected, [ $state, $b + 1 ];
			undef $last_end;
			next;
		}
		push @out, $line;
		my $code = code_of($line);
		next if $code eq '';
		$start = $#out unless defined $start;
		if ($code =~ /(;|\\gset)$/ || $code =~ /^\\/)
		{
			($last_start, $last_end) = ($start, $#out);
			undef $start;
		}
	}
	$script .= "\\echo README-BLOCK " . ($b + 1) . "\n" . join('', @out);
}
$script .= "\\echo README-DONE\n";

my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,payledger'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;

my $file = $node->basedir . '/readme.sql';
open(my $out, '>', $file) or die "$file: $!";
print $out $script;
close($out);

my ($stdout, $stderr);
my $rc = IPC::Run::run([ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', $file ],
	'>', \$stdout, '2>', \$stderr);
my @done = ($stdout =~ /^README-BLOCK (\d+)$/mg);
is(scalar(@done), scalar(@blocks), 'every sql block ran')
  or diag("stopped in block $done[-1]:\n$stderr");
like($stdout, qr/^README-DONE$/m, 'psql reached the end of the README')
  or diag($stderr);
ok($rc, 'psql exited 0 (no statement failed unless marked)') or diag($stderr);

my %got = ($stdout =~ /^README-EXPECT (\d+) \S+ (\S*)$/mg);
for my $i (0 .. $#expected)
{
	my ($state, $block) = @{ $expected[$i] };
	is($got{$i} // 'not run', $state, "README block $block: the statement marked $state fails with $state");
}

$node->stop;
done_testing();
