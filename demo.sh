#!/usr/bin/env bash
# demo.sh: installs what is missing, builds and installs payledger, starts a
# throwaway cluster and walks through the ledger's main job.
# Run as root on Debian bookworm.
set -euo pipefail
. "$(dirname "$0")/test/common.sh"

ensure_packages make gcc libc6-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
build_and_install "-Wall -Wextra -Wno-unused-parameter"
start_cluster

log "demo (psql output follows)"
cat >"$WORK_DIR/demo.sql" <<'SQL'
\set ON_ERROR_STOP on
\pset footer off
\echo '-- install the extension'
CREATE EXTENSION payledger;
\echo '-- keep the audit log in monthly partitions (this month and the next two)'
SELECT count(*) AS months_made FROM payledger.create_audit_partitions();

\echo '-- open accounts: a card-network settlement account with no floor, two wallets'
SELECT payledger.create_account('USD', 'settlement', NULL) AS network \gset
SELECT payledger.create_account('USD') AS alice \gset
SELECT payledger.create_account('USD') AS bob \gset

\echo '-- fund alice with 100.00 USD, then pay bob 30.00 (amounts are in cents)'
SELECT status, reason_code, replayed FROM payledger.transfer(:'network', :'alice', 10000, 'USD', 'topup-1');
SELECT status, reason_code, replayed FROM payledger.transfer(:'alice', :'bob', 3000, 'USD', 'order-1001');

\echo '-- the client retries order-1001 after a timeout: replayed, nothing moves twice'
SELECT status, reason_code, replayed FROM payledger.transfer(:'alice', :'bob', 3000, 'USD', 'order-1001');

\echo '-- alice tries to pay 500.00: declined, returned (not raised) and audited'
SELECT status, reason_code, replayed FROM payledger.transfer(:'alice', :'bob', 50000, 'USD', 'order-1002');

\echo '-- a hot merchant account: its credits spread over 4 sub-balance rows, its balance is their sum'
SELECT payledger.create_account('USD', 'merchant') AS shop \gset
SELECT payledger.set_sub_balances(:'shop', 4);
SELECT status, reason_code, replayed FROM payledger.transfer(:'bob', :'shop', 1000, 'USD', 'order-2001');
SELECT balance AS shop_balance, available FROM payledger.get_balance(:'shop');

\echo '-- balances'
SELECT 'alice' AS account, * FROM payledger.get_balance(:'alice')
UNION ALL SELECT 'bob', * FROM payledger.get_balance(:'bob')
UNION ALL SELECT 'shop', * FROM payledger.get_balance(:'shop')
UNION ALL SELECT 'network', * FROM payledger.get_balance(:'network');

\echo '-- the audit log: one row per account change, transfer and decline'
SELECT id, event_type, new_state, amount_cents, currency, success, reason_code, actor_type,
       tableoid::regclass::text ~ '_[0-9]{4}_[0-9]{2}$' AS in_month_partition
  FROM payledger.payment_audit_log ORDER BY id;

\echo '-- history cannot be rewritten, not even by a superuser'
\set ON_ERROR_STOP off
UPDATE payledger.payment_audit_log SET amount_cents = 0;
UPDATE payledger.accounts SET balance = balance + 1000000;
\set ON_ERROR_STOP on

\echo '-- the invariants'
SELECT * FROM payledger.check_ledger();
SQL
chown postgres "$WORK_DIR/demo.sql"
as_pg "psql -X -d postgres -f '$WORK_DIR/demo.sql'"
log "done; the cluster is removed on exit"
