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
