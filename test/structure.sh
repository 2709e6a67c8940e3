#!/usr/bin/env bash
# test/structure.sh: checks the shape of the C code in src/, in about a second.
#
#  1. Function size: no function body is longer than MAX_FUNCTION_LINES (80)
#     lines, counted from the line after its opening brace to the line
#     before its closing one (PostgreSQL style: both braces in column 0).
#     A longer function is split along its steps, each a named static
#     function.
#  2. Include graph: the #include "..." edges between the files of src/
#     have no cycle.
#  3. Module call graph: module a (a.c) -> b when a.c calls a function that
#     b.c defines (not static); no cycle, so a lower module never calls a
#     higher one.  Calls through function pointers are not seen.
#  4. SQL positions: no literal parameter or result column position next to
#     SPI.  Flagged: SPI_getbinval/SPI_getvalue with a literal column other
#     than 1, and values/nulls/args/arg/types/argtypes/isnull indexed by a
#     literal other than 0 (an array of size 1 may be declared).  A
#     statement's only parameter ([0]) and a query's only column (1) need
#     no name; every other position is a named constant next to the query
#     (an enum of parameters or columns, layouts.h's Anum_ for tables).
#
# Prints what it finds and ends with "structure: ok" or exits 1.
set -uo pipefail
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)/src}
MAX_FUNCTION_LINES=80

fail=0
bad() { echo "structure: $*"; fail=1; }

# acyclic WHAT EDGES: the graph of EDGES ("a b" lines) has no cycle; prints
# the nodes of a cycle and returns 1 when it has one
acyclic() {
	local out
	if [ -z "$2" ]; then
		bad "found no $1 (the parser is broken)"
		return 0
	fi
	out=$(echo "$2" | tsort 2>&1 >/dev/null)
	[ -z "$out" ] && return 0
	bad "the $1 has a cycle:"
	echo "$out" | sed 's/^/    /'
	return 1
}

# 1. function size
while read -r len file name; do
	[ "$len" -gt "$MAX_FUNCTION_LINES" ] &&
		bad "$file: $name() is $len lines long (limit $MAX_FUNCTION_LINES): split it along its steps"
done < <(awk '
	# a function: its name in column 0, its parameters, its brace in column 0
	!inbody && /^[A-Za-z_][A-Za-z0-9_]*\(/ { name = $0; sub(/\(.*/, "", name); header = 1 }
	!inbody && /;[ \t]*$/ { header = 0 }
	/^\{/ { if (header) { start = FNR; inbody = 1 } header = 0; next }
	/^\}/ && inbody { f = FILENAME; sub(/.*\//, "", f); print FNR - start - 1, f ":" start, name; inbody = 0 }
' "$SRC"/*.c)

# 2. include graph
includes=$(for f in "$SRC"/*.c "$SRC"/*.h; do
	b=${f##*/}
	sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while read -r h; do
		if [ -f "$SRC/$h" ]; then echo "$b $h"; fi
	done
done)
acyclic "include graph" "$includes"

# 3. module call graph
calls=$(perl -e '
	my (%def, %text);
	for my $f (@ARGV) {
		open my $fh, "<", $f or die "$f: $!";
		local $/;
		my $s = <$fh>;
		close $fh;
		$s =~ s{/\*.*?\*/}{ }gs;
		$s =~ s{"(?:\\.|[^"\\\n])*"}{""}g;
		$s =~ s{\x27(?:\\.|[^\x27\\\n])*\x27}{0}g;
		(my $m = $f) =~ s{.*/}{};
		$m =~ s{\.c$}{};
		$text{$m} = $s;
		while ($s =~ /^([A-Za-z_]\w*)\([^;{]*?\)\s*\n\{/mg) {
			my $name = $1;
			my ($prev) = substr($s, 0, $-[0]) =~ /([^\n]*)\n$/;
			$def{$name} = $m unless defined $prev && $prev =~ /\bstatic\b/;
		}
	}
	my %edge;
	for my $m (keys %text) {
		while ($text{$m} =~ /\b([A-Za-z_]\w*)\s*\(/g) {
			my $d = $def{$1};
			$edge{"$m $d"} = 1 if defined $d && $d ne $m;
		}
	}
	print "$_\n" for sort keys %edge;
' "$SRC"/*.c)
if ! acyclic "module call graph" "$calls"; then
	echo "    (a lower module calls a higher one)"
	loop=" $(echo "$calls" | tsort 2>&1 >/dev/null | sed -n 's/^tsort: \([a-z_0-9]*\)$/\1/p' | sort -u | tr '\n' ' ')"
	echo "$calls" | while read -r a b; do
		case "$loop" in *" $a "*) case "$loop" in *" $b "*) echo "    $a.c calls $b.c" ;; esac ;; esac
	done
fi

# 4. literal SQL positions
while IFS=: read -r file line what; do
	bad "$file:$line: literal SQL position ($what): name it"
done < <(perl -e '
	for my $f (@ARGV) {
		open my $fh, "<", $f or die "$f: $!";
		local $/;
		my $s = <$fh>;
		close $fh;
		$s =~ s{/\*.*?\*/}{ }gs;
		(my $b = $f) =~ s{.*/}{};
		my $line = sub { (substr($s, 0, $_[0]) =~ tr/\n//) + 1 };
		while ($s =~ /\bSPI_get(?:binval|value)\s*\(\s*[^,;]+,\s*[^,;]+,\s*(\d+)\b/g) {
			print "$b:", $line->($-[0]), ":result column $1\n" if $1 != 1;
		}
		while ($s =~ /(\b(?:Datum|bool|char|Oid)\s+)?\b(values|nulls|args|arg|types|argtypes|isnull)\[(\d+)\]/g) {
			next if $3 == 0 || ($1 && $3 == 1);
			print "$b:", $line->($-[0]), ":$2\[$3\]\n";
		}
	}
' "$SRC"/*.c)
if [ $fail = 0 ]; then
	echo "structure: ok"
	exit 0
fi
exit 1
