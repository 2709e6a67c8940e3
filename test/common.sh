# test/common.sh: shared by demo.sh and test.sh (sourced, not run).
#
# Installs what is missing, builds and installs the extension from a copy of
# the tree that the postgres user can read, and starts a throwaway cluster
# owned by postgres (PostgreSQL refuses to run as root).

PG_MAJOR=15
# PG_CONFIG=/path/to/pg_config selects another installation (e.g. a private
# copy, so that several checkouts can be tested at once); default: Debian's
if [ -n "${PG_CONFIG:-}" ]; then
	PG_BIN=$(dirname "$PG_CONFIG")
	export PG_CONFIG
else
	PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
fi
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '==> %s\n' "$*"; }

as_pg() {
	if [ "$(id -un)" = postgres ]; then
		PATH="$PG_BIN:$PATH" bash -c "$1"
	else
		su postgres -s /bin/bash -c "export PATH='$PG_BIN':\$PATH; $1"
	fi
}

ensure_packages() {
	local wanted="$*" missing=""
	for p in $wanted; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages:$missing (run as root to install them)" >&2
		exit 1
	fi
	log "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# build_and_install [CFLAGS]: copies the tree to $WORK_DIR, builds, installs
build_and_install() {
	WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/payledger.XXXXXX")
	chmod 755 "$WORK_DIR"
	(cd "$SRC_DIR" && tar --exclude=.git --exclude=results --exclude=output_iso \
		--exclude=tmp_check --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - .) |
		(cd "$WORK_DIR" && tar -xf -)
	chown -R postgres:postgres "$WORK_DIR"
	log "building in $WORK_DIR"
	# a failed build must stop here: make install below would build again,
	# as root and without these flags
	if ! as_pg "cd '$WORK_DIR' && make -s PG_CFLAGS='$1' 2>&1" | tee "$WORK_DIR/build.log"; then
		echo "the build failed" >&2
		exit 1
	fi
	if grep -q 'warning:' "$WORK_DIR/build.log"; then
		echo "the build printed warnings" >&2
		exit 1
	fi
	PATH="$PG_BIN:$PATH" make -s -C "$WORK_DIR" install >/dev/null
}

# start_cluster: a fresh cluster in $WORK_DIR/cluster; sets PGHOST/PGPORT
start_cluster() {
	export PGHOST="$WORK_DIR/cluster" PGPORT=${PGPORT_TEST:-55432} PGUSER=postgres PGDATABASE=postgres
	as_pg "mkdir -p '$PGHOST' && '$PG_BIN/initdb' -D '$PGHOST/data' -A trust -U postgres >/dev/null"
	as_pg "'$PG_BIN/pg_ctl' -D '$PGHOST/data' -w -l '$PGHOST/server.log' \
		-o \"-p $PGPORT -k '$PGHOST' -c listen_addresses='' -c shared_buffers=256MB\" start >/dev/null"
	trap stop_cluster EXIT
}

stop_cluster() {
	as_pg "'$PG_BIN/pg_ctl' -D '$PGHOST/data' -m fast stop >/dev/null 2>&1" || true
	[ -n "${KEEP_WORK_DIR:-}" ] || rm -rf "$WORK_DIR"
}
