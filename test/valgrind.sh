#!/usr/bin/env bash
# test/valgrind.sh: runs the regress and isolation suites against a server
# running under valgrind memcheck, and fails on any memcheck error, any
# write past the end of a palloc chunk, any assertion failure or any crash.
#
# It needs a PostgreSQL 15 built from source with USE_VALGRIND (and, for
# the memory context checks, --enable-cassert): only such a server tells
# memcheck where each palloc chunk begins and ends, which requested bytes
# are defined, and that freed chunks are gone; a packaged server carves
# chunks out of large malloc'd blocks that memcheck sees as one.  Given
# PG_SOURCE (an unpacked postgresql-15 source tree: `apt-get source
# postgresql-15` with a deb-src line, or the tarball from postgresql.org),
# the script builds one into VALGRIND_PG (once; two to three minutes on two
# cores) and uses PostgreSQL's own suppressions (src/tools/valgrind.supp),
# plus test/valgrind.supp when there is one (none has been needed: an entry
# there must say why).  It takes half an hour or more (every backend runs
# 20 to 50 times slower), so it is not part of ./test.sh.
#
# Before the suites, a planted error proves the reports are not lost: a
# throwaway module (built here, never installed) reads one byte past a
# palloc'd chunk and branches on bytes palloc left undefined, inside a
# backend of the same server; memcheck must report both.
#
# Usage (as root, like test.sh):
#   PG_SOURCE=/path/to/postgresql-15.x VALGRIND_PG=/var/tmp/pg15-valgrind \
#       PGPORT_TEST=55499 test/valgrind.sh
set -uo pipefail

VALGRIND_PG=${VALGRIND_PG:-/var/tmp/payledger-pg15-valgrind}
PG_SOURCE=${PG_SOURCE:-}
if [ ! -x "$VALGRIND_PG/bin/pg_config" ]; then
	[ -n "$PG_SOURCE" ] && [ -f "$PG_SOURCE/src/tools/valgrind.supp" ] || {
		echo "no server in $VALGRIND_PG: set PG_SOURCE to a postgresql-15 source tree to build one" >&2
		exit 1
	}
	echo "==> building PostgreSQL with USE_VALGRIND and assertions into $VALGRIND_PG"
	(cd "$PG_SOURCE" &&
		./configure -q --prefix="$VALGRIND_PG" --enable-cassert --enable-debug \
			--without-readline --without-icu --without-zlib \
			CFLAGS='-O1 -g -fno-omit-frame-pointer' CPPFLAGS='-DUSE_VALGRIND' &&
		make -s -j"$(nproc)" && make -s install &&
		make -s -C src/test/regress install && make -s -C src/test/isolation install) ||
		exit 1
	cp "$PG_SOURCE/src/tools/valgrind.supp" "$VALGRIND_PG/valgrind.supp"
fi
"$VALGRIND_PG/bin/pg_config" --cppflags | grep -q -- '-DUSE_VALGRIND' || {
	echo "$VALGRIND_PG was not built with USE_VALGRIND" >&2
	exit 1
}
[ -f "$VALGRIND_PG/valgrind.supp" ] || {
	echo "$VALGRIND_PG/valgrind.supp (PostgreSQL's src/tools/valgrind.supp) is missing" >&2
	exit 1
}

export PG_CONFIG="$VALGRIND_PG/bin/pg_config"
. "$(dirname "$0")/common.sh"
ensure_packages make gcc libc6-dev valgrind

# the server's own build flags (assertions included) plus ours
build_and_install "-Wall -Wextra -Werror -Wno-unused-parameter"
chmod -R a+rX "$VALGRIND_PG"
VG_DIR="$WORK_DIR/valgrind"
as_pg "mkdir -p '$VG_DIR' '$WORK_DIR/selftest'"
cp "$VALGRIND_PG/valgrind.supp" "$VG_DIR/valgrind.supp"
SUPP="--suppressions='$VG_DIR/valgrind.supp'"
if [ -f "$SRC_DIR/test/valgrind.supp" ]; then
	cp "$SRC_DIR/test/valgrind.supp" "$VG_DIR/valgrind-payledger.supp"
	SUPP="$SUPP --suppressions='$VG_DIR/valgrind-payledger.supp'"
fi
chmod a+r "$VG_DIR"/*.supp

export PGHOST="$WORK_DIR/cluster" PGPORT=${PGPORT_TEST:-55499} PGUSER=postgres PGDATABASE=postgres
as_pg "mkdir -p '$PGHOST' && '$PG_BIN/initdb' -D '$PGHOST/data' -A trust -U postgres >/dev/null" || exit 1

# every process of the server under memcheck, one log file per process;
# --error-markers frame each error so that they can be counted
VALGRIND="valgrind --quiet --trace-children=yes --track-origins=yes --read-var-info=no \
	--num-callers=30 --leak-check=no --error-limit=no --gen-suppressions=all \
	--error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
	$SUPP --log-file='$VG_DIR/%p.log'"

start_server() {
	as_pg "cd '$WORK_DIR' && nohup $VALGRIND '$PG_BIN/postgres' -D '$PGHOST/data' -p $PGPORT \
		-k '$PGHOST' -c listen_addresses='' -c max_connections=40 \
		-c shared_buffers=128MB >>'$PGHOST/server.log' 2>&1 </dev/null &"
	for _ in $(seq 300); do
		as_pg "'$PG_BIN/pg_isready' -q -h '$PGHOST' -p $PGPORT" && return 0
		sleep 1
	done
	echo "the server under valgrind did not start" >&2
	exit 1
}
stop_server() {
	as_pg "'$PG_BIN/pg_ctl' -D '$PGHOST/data' -m fast -t 600 stop >/dev/null 2>&1"
}
trap 'stop_server; [ -n "${KEEP_WORK_DIR:-}" ] || rm -rf "$WORK_DIR"' EXIT
start_server

# the planted errors, in a backend of this server
cat >"$WORK_DIR/selftest/planted.c" <<'EOF'
#include "postgres.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(planted_past_chunk);
Datum
planted_past_chunk(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	char	   *buf = palloc(n);

	memset(buf, 'x', n);
	PG_RETURN_INT32(((volatile char *) buf)[n]);
}

PG_FUNCTION_INFO_V1(planted_undefined);
Datum
planted_undefined(PG_FUNCTION_ARGS)
{
	int32	   *buf = palloc(sizeof(int32) * 4);
	int32		result;

	if (buf[PG_GETARG_INT32(0)] > 0)
		result = 1;
	else
		result = 2;
	PG_RETURN_INT32(result);
}
EOF
as_pg "cd '$WORK_DIR/selftest' && gcc -shared -fPIC -O0 -g -I'$("$PG_BIN/pg_config" --includedir-server)' \
	-o planted.so planted.c" || exit 1
count_errors() { cat "$VG_DIR"/*.log 2>/dev/null | grep -c 'VALGRINDERROR-BEGIN'; }
as_pg "psql -X -q -c \"create function planted_past_chunk(int4) returns int4 language c strict
	as '$WORK_DIR/selftest/planted.so'; create function planted_undefined(int4) returns int4
	language c strict as '$WORK_DIR/selftest/planted.so'\"" || exit 1
as_pg "psql -X -q -At -c 'select planted_past_chunk(13)' -c 'select planted_undefined(2)' \
	-c 'drop function planted_past_chunk(int4)' -c 'drop function planted_undefined(int4)'" >/dev/null
selftest_ok=1
cat "$VG_DIR"/*.log | grep -A8 'Invalid read of size 1' | grep -q 'planted_past_chunk' || {
	echo "self-test: memcheck's report of the read past the chunk is missing" >&2
	selftest_ok=
}
cat "$VG_DIR"/*.log | grep -A8 'depends on uninitialised value' | grep -q 'planted_undefined' || {
	echo "self-test: memcheck's report of the undefined bytes is missing" >&2
	selftest_ok=
}
[ "$(count_errors)" = 2 ] || {
	echo "self-test: expected the 2 planted errors, memcheck reported $(count_errors):" >&2
	cat "$VG_DIR"/*.log | sed -n '/VALGRINDERROR-BEGIN/,/VALGRINDERROR-END/p' | head -100 >&2
	selftest_ok=
}
[ -n "$selftest_ok" ] || exit 1
log "self-test: memcheck reports the planted errors"
as_pg "mkdir '$WORK_DIR/selftest/logs' && mv '$VG_DIR'/*.log '$WORK_DIR/selftest/logs/'"

# VALGRIND_SUITES="regress" or "isolation" runs one of them
suites=" ${VALGRIND_SUITES:-regress isolation} "
status=0
started=$(date +%s)
if [[ "$suites" == *" regress "* ]]; then
	log "regress (under valgrind)"
	as_pg "cd '$WORK_DIR' && PGHOST='$PGHOST' PGPORT=$PGPORT make installcheck ISOLATION= TAP_TESTS=" \
		>"$WORK_DIR/regress.out" 2>&1 || status=1
	grep -E 'tests passed|tests failed' "$WORK_DIR/regress.out"
fi
if [[ "$suites" == *" isolation "* ]]; then
	log "isolation (under valgrind)"
	as_pg "cd '$WORK_DIR' && PGHOST='$PGHOST' PGPORT=$PGPORT make installcheck REGRESS= TAP_TESTS=" \
		>"$WORK_DIR/isolation.out" 2>&1 || status=1
	grep -E 'tests passed|tests failed' "$WORK_DIR/isolation.out"
fi
stop_server
elapsed=$(($(date +%s) - started))

errors=$(count_errors)
if [ "$errors" != 0 ]; then
	status=1
	echo "---- memcheck errors"
	cat "$VG_DIR"/*.log | sed -n '/VALGRINDERROR-BEGIN/,/VALGRINDERROR-END/p' | head -400
fi
# the server's own checks: MEMORY_CONTEXT_CHECKING's warnings, assertions,
# backends ended by a signal
inlog=$(grep -cE 'detected write past chunk end|problem in alloc set|TRAP:|terminated by signal' \
	"$PGHOST/server.log")
if [ "$inlog" != 0 ]; then
	status=1
	grep -E -A3 'detected write past chunk end|problem in alloc set|TRAP:|terminated by signal' \
		"$PGHOST/server.log" | head -100
fi
for d in regression.diffs output_iso/regression.diffs; do
	[ -s "$WORK_DIR/$d" ] && { echo "---- $d"; head -100 "$WORK_DIR/$d"; }
done
echo
echo "memcheck errors: $errors; memory context and crash reports in the server log: $inlog;" \
	"suites $([ $status = 0 ] && echo passed || echo FAILED) in ${elapsed}s"
exit $status
