-- check_ledger(): every invariant, on the ledger the earlier tests built
SELECT check_name, ok, detail FROM payledger.check_ledger() ORDER BY check_name;
SELECT currency, sum(balance) AS total FROM payledger.accounts GROUP BY currency ORDER BY currency;
-- every plain transfer and multi-leg transfer has exactly one audit row
SELECT count(*) AS transfers_without_one_audit_row FROM payledger.transfers t
 WHERE t.kind IN ('transfer', 'legs')
   AND (SELECT count(*) FROM payledger.payment_audit_log l WHERE l.payment_id = t.id) <> 1;
-- every hold has its HOLD_CREATED and one closing event once settled
SELECT h.status, count(*) AS holds,
       bool_and(EXISTS (SELECT 1 FROM payledger.payment_audit_log l
                         WHERE l.payment_id = h.id AND l.event_type = 'HOLD_CREATED')) AS created_audited,
       bool_and((SELECT count(*) FROM payledger.payment_audit_log l
                  WHERE l.payment_id = h.id
                    AND l.event_type IN ('HOLD_POSTED', 'HOLD_VOIDED', 'HOLD_EXPIRED')) = 1) AS settled_once
  FROM payledger.holds h WHERE h.status <> 'pending' GROUP BY h.status ORDER BY h.status;

-- a hold past its expiry that no sweep has expired yet no longer counts
-- against the floor, for check_ledger as for get_balance and transfer
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
SELECT payledger.create_account('USD', 'system', NULL) AS fsys \gset
SELECT payledger.create_account('USD') AS fa \gset
SELECT payledger.create_account('USD') AS fb \gset
SELECT status FROM payledger.transfer(:'fsys', :'fa', 100, 'USD', 'floor-k1');
SELECT status FROM payledger.hold(:'fa', :'fb', 100, 'USD', '1 second', 'floor-k2');
SELECT pg_sleep(1.2);
SELECT balance, pending_debits, available FROM payledger.get_balance(:'fa');
SELECT status, reason_code FROM payledger.transfer(:'fa', :'fb', 100, 'USD', 'floor-k3');
SELECT check_name, ok, detail FROM payledger.check_ledger()
 WHERE check_name IN ('no_account_below_floor', 'pending_matches_holds') ORDER BY check_name;
SELECT payledger.expire_holds() >= 1 AS swept;
SELECT check_name, ok, detail FROM payledger.check_ledger() WHERE NOT ok;
