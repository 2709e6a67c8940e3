#!/usr/bin/env bash
# test/sanitize.sh: runs the regress and isolation suites (and, if asked,
# TAP tests) against a build of payledger instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer, and fails on any report.
#
# Only payledger's own code is instrumented; PostgreSQL is the packaged
# build.  So the server is started with the ASan runtime preloaded
# (LD_PRELOAD, it must come before every other library), leak detection off
# (a backend frees its memory by exiting, not by free()), and reports
# written to files, one per process, instead of the client's stderr.
# What it catches: out-of-bounds and use-after-free of malloc'd, stack and
# global memory touched by payledger's code, and undefined behaviour in it
# (signed overflow, shifts, misaligned or null access, invalid enum or bool
# values, ...).  What it cannot catch: overruns inside a palloc'd chunk,
# since PostgreSQL's allocator carves chunks out of large malloc'd blocks
# (valgrind with a USE_VALGRIND server build would be needed for that).
#
# Usage (as root, like test.sh):
#   PG_CONFIG=/path/to/pg_config PGPORT_TEST=55499 test/sanitize.sh
#   SANITIZE_TAP='test/t/142_fuzz.pl' test/sanitize.sh    # TAP tests too
# It installs the instrumented library into PG_CONFIG's installation; run
# test.sh (or make install) afterwards to put a normal build back.
set -uo pipefail
. "$(dirname "$0")/common.sh"

ensure_packages make gcc libc6-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
	libipc-run-perl
ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
[ -e "$ASAN_LIB" ] || { echo "no libasan.so for gcc" >&2; exit 1; }

SAN="-fsanitize=address,undefined -fsanitize=float-cast-overflow -fno-sanitize=alignment"
SAN="$SAN -fno-omit-frame-pointer -fno-common -g"
# alignment is left out: PostgreSQL's own headers read some fields through
# unaligned pointers on purpose (inlined into every module), which UBSan
# would report against payledger

build_and_install "-DUSE_ASSERT_CHECKING -Wall -Wextra -Werror -Wno-unused-parameter $SAN' PG_LDFLAGS='$SAN"

REPORTS="$WORK_DIR/sanitizer"
as_pg "mkdir -p '$REPORTS'"
SAN_ENV="LD_PRELOAD='$ASAN_LIB $UBSAN_LIB'"
SAN_ENV="$SAN_ENV ASAN_OPTIONS='detect_leaks=0:log_path=$REPORTS/asan:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:allow_user_segv_handler=1'"
SAN_ENV="$SAN_ENV UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=0:log_path=$REPORTS/ubsan'"

# start_cluster, with the sanitizer runtime in the postmaster's environment
export PGHOST="$WORK_DIR/cluster" PGPORT=${PGPORT_TEST:-55499} PGUSER=postgres PGDATABASE=postgres
as_pg "mkdir -p '$PGHOST' && '$PG_BIN/initdb' -D '$PGHOST/data' -A trust -U postgres >/dev/null"
as_pg "$SAN_ENV '$PG_BIN/pg_ctl' -D '$PGHOST/data' -w -l '$PGHOST/server.log' \
	-o \"-p $PGPORT -k '$PGHOST' -c listen_addresses='' -c shared_preload_libraries=payledger\" start >/dev/null"
trap stop_cluster EXIT

if ! as_pg "grep -q asan /proc/\$(head -1 '$PGHOST/data/postmaster.pid')/maps"; then
	echo "the postmaster does not have the ASan runtime loaded" >&2
	exit 1
fi

status=0
log "regress (sanitized)"
as_pg "cd '$WORK_DIR' && PGHOST='$PGHOST' PGPORT=$PGPORT make installcheck ISOLATION= TAP_TESTS=" \
	>"$WORK_DIR/regress.out" 2>&1 || status=1
grep -E 'tests passed|tests failed' "$WORK_DIR/regress.out"
log "isolation (sanitized)"
as_pg "cd '$WORK_DIR' && PGHOST='$PGHOST' PGPORT=$PGPORT make installcheck REGRESS= TAP_TESTS=" \
	>"$WORK_DIR/isolation.out" 2>&1 || status=1
grep -E 'tests passed|tests failed' "$WORK_DIR/isolation.out"

if [ -n "${SANITIZE_TAP:-}" ]; then
	# the TAP tests start their own clusters from the same environment
	log "TAP (sanitized): $SANITIZE_TAP"
	as_pg "cd '$WORK_DIR' && $SAN_ENV make installcheck REGRESS= ISOLATION= \
		PROVE_TESTS='$SANITIZE_TAP' PROVE_FLAGS=-v" >"$WORK_DIR/tap.out" 2>&1 || status=1
	grep -E '^(Files=|Result:|# (load|fuzz):)' "$WORK_DIR/tap.out"
	# reports of the TAP clusters' processes land in the same directory;
	# their server logs are kept in tmp_check
	cat "$WORK_DIR"/tmp_check/log/*.log >>"$PGHOST/server.log" 2>/dev/null
fi

as_pg "'$PG_BIN/pg_ctl' -D '$PGHOST/data' -m fast stop >/dev/null" || true
findings=$(cat "$REPORTS"/* 2>/dev/null | grep -cE 'ERROR: AddressSanitizer|runtime error:')
inlog=$(grep -cE 'AddressSanitizer|runtime error:|TRAP:|terminated by signal' "$PGHOST/server.log")
if [ "$findings" != 0 ] || [ "$inlog" != 0 ]; then
	status=1
	echo "---- sanitizer reports"
	cat "$REPORTS"/* 2>/dev/null | head -200
	grep -E 'AddressSanitizer|runtime error:|TRAP:|terminated by signal' "$PGHOST/server.log" | head -50
fi
for d in regression.diffs output_iso/regression.diffs; do
	[ -s "$WORK_DIR/$d" ] && { echo "---- $d"; head -100 "$WORK_DIR/$d"; }
done
echo
echo "sanitizer reports: $findings in report files, $inlog in server logs; suites $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
