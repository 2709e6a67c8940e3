#!/usr/bin/env bash
# test.sh: runs every test of payledger (pg_regress, isolation, TAP, pgTAP)
# against a throwaway cluster and ends with "N passed, M failed".
# Run as root on Debian bookworm; it installs what it needs.
# TEST_STEPS="regress isolation tap pgtap sanitize dist" and
# PROVE_TESTS="test/t/NNN_x.pl" run a part of it, for a quicker loop while
# working; the structure check (test/structure.sh, half a second) runs
# whatever TEST_STEPS says.  The step sanitize is test/sanitize.sh: regress
# and isolation again, against a build under AddressSanitizer and UBSan.
set -uo pipefail
. "$(dirname "$0")/test/common.sh"

ensure_packages make gcc libc6-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
	postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl libfaketime \
	postgresql-$PG_MAJOR-auto-failover postgresql-$PG_MAJOR-plproxy \
	postgresql-$PG_MAJOR-cron prometheus-postgres-exporter prometheus git
ensure_packages pgbouncer python3-psycopg2
command -v npm >/dev/null || ensure_packages nodejs npm
# the Node.js example's driver, from the npm registry (examples/node/package-lock.json)
if [ ! -d "$SRC_DIR/examples/node/node_modules/pg" ]; then
	log "npm ci in examples/node"
	(cd "$SRC_DIR/examples/node" && npm ci --no-audit --no-fund --silent) ||
		echo "npm ci failed: the Node.js client test will fail" >&2
fi
build_and_install "-DUSE_ASSERT_CHECKING -Wall -Wextra -Werror -Wno-unused-parameter"
start_cluster

passed=0
failed=0
status=0

# pg_regress and pg_isolation_regress: " All 8 tests passed." / " 2 of 8 tests failed."
count_regress() {
	local out=$1 n m
	if n=$(grep -oE 'All [0-9]+ tests passed' "$out" | grep -oE '[0-9]+'); then
		passed=$((passed + n))
	elif m=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$out"); then
		n=$(echo "$m" | awk '{print $1}')
		failed=$((failed + n))
		passed=$((passed + $(echo "$m" | awk '{print $3}') - n))
	else
		failed=$((failed + 1))
	fi
}

# TAP harness summary (prove, pg_prove): "Files=2, Tests=25" and "Failed 3/10 subtests"
count_tap() {
	local out=$1 total bad
	total=$(grep -oE 'Tests=[0-9]+' "$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
	bad=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$out" | awk '{split($2, a, "/"); s += a[1]} END {print s + 0}')
	if ! grep -q '^Result: PASS' "$out" && [ "$bad" = 0 ]; then
		bad=1
	fi
	passed=$((passed + total - bad))
	failed=$((failed + bad))
}

# run_step NAME COMMAND [DIR]: runs COMMAND as postgres in DIR (default: the
# build directory) against the cluster; its output goes to $WORK_DIR/NAME.out
run_step() {
	local name=$1 cmd=$2 dir=${3:-$WORK_DIR} out="$WORK_DIR/$1.out"
	log "$name"
	as_pg "cd '$dir' && PGHOST='$PGHOST' PGPORT=$PGPORT $cmd" >"$out" 2>&1
	local rc=$?
	grep -E '^(test |ok |not ok|# |t/|test/|[0-9]+ of|All |Files=|Result:|Failed)|\.\.\. ' "$out" | sed 's/^/    /'
	if [ $rc != 0 ]; then
		status=1
		for d in regression.diffs output_iso/regression.diffs; do
			[ -s "$dir/$d" ] && { echo "---- $d"; cat "$dir/$d"; }
		done
		grep -E '^(not ok|#)' "$out" | head -50
		[ -d "$dir/tmp_check/log" ] && tail -n 30 "$dir"/tmp_check/log/regress_log_* 2>/dev/null
	fi
	return $rc
}

# TEST_STEPS picks steps for a quicker loop (default: all); PROVE_TESTS picks TAP files.
steps=" ${TEST_STEPS:-regress isolation tap pgtap sanitize dist} "
want() { case "$steps" in *" $1 "*) return 0 ;; esac; return 1; }

# the code's shape (test/structure.sh): function sizes, include and call
# graphs without cycles, no literal SQL positions; one check, always run
log structure
if "$SRC_DIR/test/structure.sh" "$SRC_DIR/src" >"$WORK_DIR/structure.out" 2>&1; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	status=1
fi
sed 's/^/    /' "$WORK_DIR/structure.out"

if want regress; then
	run_step regress "make installcheck ISOLATION= TAP_TESTS="
	count_regress "$WORK_DIR/regress.out"
fi
if want isolation; then
	run_step isolation "make installcheck REGRESS= TAP_TESTS="
	count_regress "$WORK_DIR/isolation.out"
fi
if want tap; then
	run_step tap "make installcheck REGRESS= ISOLATION= PROVE_FLAGS=-v ${PROVE_TESTS:+PROVE_TESTS='$PROVE_TESTS'}"
	count_tap "$WORK_DIR/tap.out"
fi
if want pgtap; then
	run_step pgtap "make pgtap"
	count_tap "$WORK_DIR/pgtap.out"
fi

# regress and isolation under ASan and UBSan, with a cluster of its own (it
# puts back the library it replaces)
if want sanitize; then
	log sanitize
	if PG_CONFIG="$PG_BIN/pg_config" PGPORT_TEST=$PGPORT "$SRC_DIR/test/sanitize.sh" \
		>"$WORK_DIR/sanitize.out" 2>&1; then
		passed=$((passed + 1))
		grep -E 'self-test|tests passed|sanitizer reports' "$WORK_DIR/sanitize.out" | sed 's/^/    /'
	else
		failed=$((failed + 1))
		status=1
		tail -n 60 "$WORK_DIR/sanitize.out"
	fi
fi

# The release tarball: make dist in the checkout, then unpack, build it the
# normal way (without -DUSE_ASSERT_CHECKING, as a user builds it), install
# it and run pg_regress, the isolation specs and pgTAP on that build: the
# suites pass on the assert build above and on the normal one.  Its files
# must include what META.json names.  Skipped outside a git checkout (e.g.
# in an unpacked tarball).
if want dist && git -C "$SRC_DIR" rev-parse --git-dir >/dev/null 2>&1; then
	log dist
	dist_ok=1
	make -s -C "$SRC_DIR" PG_CONFIG="$PG_BIN/pg_config" dist >"$WORK_DIR/dist.out" 2>&1 || dist_ok=0
	tarball=$(ls "$SRC_DIR"/payledger-*.tar.gz 2>/dev/null | head -1)
	if [ $dist_ok = 1 ] && [ -n "$tarball" ]; then
		mkdir -p "$WORK_DIR/dist" && tar -xzf "$tarball" -C "$WORK_DIR/dist" && rm -f "$tarball"
		dist_dir=$(ls -d "$WORK_DIR"/dist/payledger-*)
		for f in LICENSE META.json README.md CHANGELOG.md doc/reference.md payledger.control \
			$(sed -n 's/.*"\(file\|docfile\)": "\([^"]*\)".*/\2/p' "$SRC_DIR/META.json"); do
			[ -f "$dist_dir/$f" ] || { echo "    the tarball lacks $f"; dist_ok=0; }
		done
		chown -R postgres:postgres "$WORK_DIR/dist"
		as_pg "cd '$dist_dir' && make PG_CONFIG='$PG_BIN/pg_config'" >>"$WORK_DIR/dist.out" 2>&1 &&
			make -s -C "$dist_dir" PG_CONFIG="$PG_BIN/pg_config" install >>"$WORK_DIR/dist.out" 2>&1 ||
			dist_ok=0
		if grep -q 'warning:' "$WORK_DIR/dist.out"; then
			echo "    the tarball's build printed warnings"
			dist_ok=0
		fi
		# the normal build: no assertions, unless the server itself has them
		if grep -q -- '-DUSE_ASSERT_CHECKING' "$WORK_DIR/dist.out" ||
			grep -q '^#define USE_ASSERT_CHECKING' "$("$PG_BIN/pg_config" --includedir-server)/pg_config.h"; then
			echo "    the tarball's build has assertions: it is not the normal build"
			dist_ok=0
		fi
	else
		dist_ok=0
	fi
	grep -E 'wrote|warning:' "$WORK_DIR/dist.out" | sed 's/^/    /'
	if [ $dist_ok = 1 ]; then
		passed=$((passed + 1))
		# the normal build installed: the suites again, against the same cluster
		run_step dist-regress "make installcheck PG_CONFIG='$PG_BIN/pg_config' ISOLATION= TAP_TESTS=" "$dist_dir"
		count_regress "$WORK_DIR/dist-regress.out"
		run_step dist-isolation "make installcheck PG_CONFIG='$PG_BIN/pg_config' REGRESS= TAP_TESTS=" "$dist_dir"
		count_regress "$WORK_DIR/dist-isolation.out"
		run_step dist-pgtap "make pgtap PG_CONFIG='$PG_BIN/pg_config'" "$dist_dir"
		count_tap "$WORK_DIR/dist-pgtap.out"
	else
		failed=$((failed + 1))
		status=1
		tail -n 30 "$WORK_DIR/dist.out"
	fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ $status = 0 ] && exit 0
exit 1
