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
# SANITIZERS=undefined (the default) or address,undefined.  UBSan needs no
# help: its runtime comes in as a dependency of payledger.so.  ASan must be
# the first library of the process, so the server is started with it in
# LD_PRELOAD; on Debian bookworm (glibc 2.36, gcc 12 and clang 14 runtimes)
# every PostgreSQL binary (postgres, psql, pg_ctl) then hangs at start in
# bindtextdomain(), a known ASan/glibc interaction, so address is opt-in.
SANITIZERS=${SANITIZERS:-undefined}
SAN="-fsanitize=$SANITIZERS -fno-sanitize=alignment -fno-omit-frame-pointer -fno-common -g"
# alignment is left out: PostgreSQL's own headers read some fields through
# unaligned pointers on purpose (inlined into every module), which UBSan
# would report against payledger
SAN_ENV="UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=0:log_path=\$REPORTS/ubsan'"
case "$SANITIZERS" in
*address*)
	ASAN_LIB=$(gcc -print-file-name=libasan.so)
	[ -e "$ASAN_LIB" ] || { echo "no libasan.so for gcc" >&2; exit 1; }
	SAN_ENV="$SAN_ENV LD_PRELOAD='$ASAN_LIB'"
	SAN_ENV="$SAN_ENV ASAN_OPTIONS='detect_leaks=0:log_path=\$REPORTS/asan:halt_on_error=1:detect_stack_use_after_return=0:allow_user_segv_handler=1'"
	;;
esac

# the report pipeline itself: the same flags and options must report a
# signed overflow in a program of ours, or a clean run would prove nothing
selftest=$(mktemp -d /tmp/payledger-sanitize.XXXXXX)
printf '#include <stdio.h>\n#include <stdint.h>\nint main(int c, char **v) { int64_t x = INT64_MAX - 1 + c; printf("%%ld\\n", (long) (x + c)); return 0; }\n' >"$selftest/ub.c"
gcc $SAN -o "$selftest/ub" "$selftest/ub.c" &&
	(eval "export $(echo "$SAN_ENV" | sed "s|\\\$REPORTS|$selftest|g")"; "$selftest/ub" >/dev/null 2>&1)
if ! cat "$selftest"/ubsan* 2>/dev/null | grep -q 'runtime error: signed integer overflow'; then
	echo "the sanitizer self-test reported nothing: reports would be lost" >&2
	rm -rf "$selftest"
	exit 1
fi
rm -rf "$selftest"
log "self-test: a signed overflow is reported"

build_and_install "-DUSE_ASSERT_CHECKING -Wall -Wextra -Werror -Wno-unused-parameter $SAN' PG_LDFLAGS='$SAN"

REPORTS="$WORK_DIR/sanitizer"
as_pg "mkdir -p '$REPORTS'"
SAN_ENV=$(echo "$SAN_ENV" | sed "s|\\\$REPORTS|$REPORTS|g")

# start_cluster as test.sh does (the suites expect payledger not preloaded),
# with the sanitizer runtime in the postmaster's environment
export PGHOST="$WORK_DIR/cluster" PGPORT=${PGPORT_TEST:-55499} PGUSER=postgres PGDATABASE=postgres
as_pg "mkdir -p '$PGHOST' && '$PG_BIN/initdb' -D '$PGHOST/data' -A trust -U postgres >/dev/null"
as_pg "$SAN_ENV '$PG_BIN/pg_ctl' -D '$PGHOST/data' -w -l '$PGHOST/server.log' \
	-o \"-p $PGPORT -k '$PGHOST' -c listen_addresses=''\" start >/dev/null"
trap stop_cluster EXIT

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
ldd "$WORK_DIR/payledger.so" | grep -qE 'libubsan|libasan' || { echo "payledger.so is not instrumented" >&2; status=1; }
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
