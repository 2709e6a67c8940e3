#!/usr/bin/env bash
# test/sanitize.sh: runs the regress and isolation suites (and, if asked,
# TAP tests) against a build of payledger instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer, and fails on any report.
#
# Only payledger's own code is instrumented; PostgreSQL is the packaged
# build.  So the server is started with the ASan runtime preloaded
# (LD_PRELOAD, it must come before every other library), leak detection off
# (a backend frees its memory by exiting, not by free()), and reports
# written to the server's log, where they are counted.
# What it catches: out-of-bounds and use-after-free of malloc'd, stack and
# global memory touched by payledger's code (a palloc chunk over 8 kB has
# a malloc'd block of its own, so overruns past its end are caught too), and
# undefined behaviour in it (signed overflow, shifts, null access, invalid
# enum or bool values, ...).  What it cannot catch: overruns inside a
# smaller palloc'd chunk, since PostgreSQL's allocator carves those out of
# large malloc'd blocks (test/valgrind.sh runs the suites under valgrind
# against a server built with USE_VALGRIND for those).
#
# Before the suites, a planted error proves the reports are not lost: a
# throwaway module (built here, never installed) reads past a malloc'd
# buffer and overflows a signed integer inside a backend of the same
# server; its ASan and UBSan reports must appear.
#
# Usage (as root, like test.sh):
#   PG_CONFIG=/path/to/pg_config PGPORT_TEST=55499 test/sanitize.sh
#   SANITIZE_TAP='test/t/142_fuzz.pl' test/sanitize.sh    # TAP tests too
# It installs the instrumented library into PG_CONFIG's installation for
# the run, and puts back the payledger.so it replaced when it ends (a
# library built with ASan cannot be loaded without its runtime preloaded).
# ./test.sh runs it as its step "sanitize" (about a minute).
set -uo pipefail
. "$(dirname "$0")/common.sh"

ensure_packages make gcc libc6-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
	libipc-run-perl
# SANITIZERS=address,undefined (the default), or either one.  UBSan needs
# no help: its runtime comes in as a dependency of payledger.so.  ASan must
# be the first library of the process, so the server is started with it in
# LD_PRELOAD.  Alone, that hangs every PostgreSQL binary (postgres, psql,
# pg_ctl) at start on Debian bookworm: the ASan runtime initializes lazily,
# at the first malloc, which is inside libgpg-error's constructor, inside
# bindtextdomain(), which holds glibc's _nl_state_lock for writing; the
# runtime's dlsym("swift_demangle") fails and dlerror() translates the
# message through dcgettext(), whose read lock of that same lock fails
# (EDEADLK) but whose unlock releases the writer; bindtextdomain's own
# unlock then leaves the lock broken, and the next bindtextdomain() (the
# program's own) waits forever.  So a second preloaded library defines
# swift_demangle (it returns NULL: "not a Swift name"), the dlsym succeeds,
# and nothing is translated.
SANITIZERS=${SANITIZERS:-address,undefined}
SAN="-fsanitize=$SANITIZERS -fno-sanitize=alignment -fno-omit-frame-pointer -fno-common -g"
# alignment is left out: PostgreSQL's own headers read some fields through
# unaligned pointers on purpose (inlined into every module), which UBSan
# would report against payledger
case "$SANITIZERS" in *address*) asan=1 ;; *) asan= ;; esac
case "$SANITIZERS" in *undefined*) ubsan=1 ;; *) ubsan= ;; esac

LIBDIR=$("$PG_BIN/pg_config" --pkglibdir)
SAVED_LIB=
if [ -f "$LIBDIR/payledger.so" ]; then
	SAVED_LIB=$(mktemp /tmp/payledger-saved.XXXXXX)
	cp -p "$LIBDIR/payledger.so" "$SAVED_LIB"
fi
# a new file renamed over the instrumented one: a process that has the
# instrumented one mapped keeps it
restore_library() {
	if [ -n "$SAVED_LIB" ]; then
		cp -p "$SAVED_LIB" "$LIBDIR/.payledger.so.restore" &&
			mv -f "$LIBDIR/.payledger.so.restore" "$LIBDIR/payledger.so"
		rm -f "$SAVED_LIB"
	fi
}
trap restore_library EXIT
build_and_install "-DUSE_ASSERT_CHECKING -Wall -Wextra -Werror -Wno-unused-parameter $SAN' PG_LDFLAGS='$SAN"
ldd "$LIBDIR/payledger.so" | grep -qE 'libubsan|libasan' || { echo "the installed payledger.so is not instrumented" >&2; exit 1; }

as_pg "mkdir -p '$WORK_DIR/selftest'"
# the preloaded library that makes ASan start (see above) and gives UBSan
# its options: UBSan's runtime reads UBSAN_OPTIONS at its first report,
# from /proc/self/environ, which PostgreSQL has overwritten by then with the
# process title, so they come from __ubsan_default_options() instead
cat >"$WORK_DIR/selftest/san_options.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>

char	   *swift_demangle(const char *name, size_t len, char *out, size_t *outlen, uint32_t flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *name, size_t len, char *out, size_t *outlen, uint32_t flags)
{
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	return "print_stacktrace=1:halt_on_error=0";
}
EOF
gcc -shared -fPIC -o "$WORK_DIR/selftest/san_options.so" "$WORK_DIR/selftest/san_options.c" || exit 1
# reports go to each process's stderr: the server's log, where they are
# counted (ASan's log_path is not honoured in a backend here)
SAN_ENV="LD_PRELOAD='$WORK_DIR/selftest/san_options.so'"
if [ -n "$asan" ]; then
	ASAN_LIB=$(gcc -print-file-name=libasan.so)
	[ -e "$ASAN_LIB" ] || { echo "no libasan.so for gcc" >&2; exit 1; }
	# abort_on_error: a backend with a report ends by SIGABRT, so the
	# postmaster restarts every backend (an exit(1) would pass for a FATAL)
	SAN_ENV="LD_PRELOAD='$ASAN_LIB $WORK_DIR/selftest/san_options.so'"
	SAN_ENV="$SAN_ENV ASAN_OPTIONS='detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=0:allow_user_segv_handler=1'"
fi

# start_cluster as test.sh does (the suites expect payledger not preloaded),
# with the sanitizer runtime in the postmaster's environment
export PGHOST="$WORK_DIR/cluster" PGPORT=${PGPORT_TEST:-55499} PGUSER=postgres PGDATABASE=postgres
as_pg "mkdir -p '$PGHOST' && $SAN_ENV '$PG_BIN/initdb' -D '$PGHOST/data' -A trust -U postgres >/dev/null 2>'$WORK_DIR/initdb.log'" || exit 1
as_pg "$SAN_ENV '$PG_BIN/pg_ctl' -D '$PGHOST/data' -w -l '$PGHOST/server.log' \
	-o \"-p $PGPORT -k '$PGHOST' -c listen_addresses='' -c shared_buffers=256MB\" start >/dev/null" || exit 1
trap 'stop_cluster; restore_library' EXIT

# the planted errors: the same build flags, loaded by a backend of this server
cat >"$WORK_DIR/selftest/planted.c" <<'EOF'
#include "postgres.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(planted_oob_read);
Datum
planted_oob_read(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	volatile char *buf = malloc(8);
	char		c = buf[n];

	free((void *) buf);
	PG_RETURN_INT32(c);
}

PG_FUNCTION_INFO_V1(planted_overflow);
Datum
planted_overflow(PG_FUNCTION_ARGS)
{
	int64		a = PG_GETARG_INT64(0);

	PG_RETURN_INT64(a + 1);
}
EOF
as_pg "cd '$WORK_DIR/selftest' && gcc -shared -fPIC -O1 $SAN -I'$("$PG_BIN/pg_config" --includedir-server)' \
	-o planted.so planted.c" || exit 1
selftest_ok=1
as_pg "psql -X -q -c \"create function planted_overflow(int8) returns int8 language c strict
	as '$WORK_DIR/selftest/planted.so'; create function planted_oob_read(int4) returns int4
	language c strict as '$WORK_DIR/selftest/planted.so'\"" || selftest_ok=
if [ -n "$ubsan" ]; then
	as_pg "psql -X -q -c 'select planted_overflow(9223372036854775807)'" >/dev/null 2>&1
	grep -q 'planted.c.*signed integer overflow' "$PGHOST/server.log" || {
		echo "self-test: UBSan's report of the planted overflow is missing" >&2
		selftest_ok=
	}
fi
if [ -n "$asan" ]; then
	as_pg "psql -X -q -c 'select planted_oob_read(8)'" >/dev/null 2>&1
	for _ in $(seq 60); do
		as_pg "psql -X -q -c 'select 1'" >/dev/null 2>&1 && break
		sleep 1
	done
	grep -q 'ERROR: AddressSanitizer: heap-buffer-overflow' "$PGHOST/server.log" || {
		echo "self-test: ASan's report of the planted out-of-bounds read is missing" >&2
		selftest_ok=
	}
	grep -q 'terminated by signal 6' "$PGHOST/server.log" || {
		echo "self-test: the backend with the ASan report did not end by SIGABRT" >&2
		selftest_ok=
	}
fi
as_pg "psql -X -q -c 'drop function planted_overflow(int8); drop function planted_oob_read(int4)'" ||
	selftest_ok=
[ -n "$selftest_ok" ] || exit 1
log "self-test: the planted errors are reported ($SANITIZERS)"
# the planted reports and the crash they caused are set aside
as_pg "mv '$PGHOST/server.log' '$WORK_DIR/selftest/'"
as_pg "$SAN_ENV '$PG_BIN/pg_ctl' -D '$PGHOST/data' -w -m fast restart -l '$PGHOST/server.log' \
	-o \"-p $PGPORT -k '$PGHOST' -c listen_addresses='' -c shared_buffers=256MB\" >/dev/null" || exit 1

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
	# the TAP clusters' reports are in their server logs, kept in tmp_check
	cat "$WORK_DIR"/tmp_check/log/*.log >>"$PGHOST/server.log" 2>/dev/null
fi

as_pg "'$PG_BIN/pg_ctl' -D '$PGHOST/data' -m fast stop >/dev/null" || true
# a TAP test's own kill -9 is no finding; any other signal is
pattern='AddressSanitizer|runtime error:|TRAP:|terminated by signal ([0-8]|[1-9][0-9])\b'
findings=$(cat "$PGHOST/server.log" "$WORK_DIR/initdb.log" | grep -cE "$pattern")
if [ "$findings" != 0 ]; then
	status=1
	echo "---- sanitizer reports"
	cat "$PGHOST/server.log" "$WORK_DIR/initdb.log" | grep -E -A30 "$pattern" | head -300
fi
for d in regression.diffs output_iso/regression.diffs; do
	[ -s "$WORK_DIR/$d" ] && { echo "---- $d"; head -100 "$WORK_DIR/$d"; }
done
echo
echo "sanitizer reports and crashes in the server logs: $findings; suites $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
