-- check_ledger(): every invariant, on the ledger the earlier tests built
SELECT check_name, ok, detail FROM payledger.check_ledger() ORDER BY check_name;
SELECT currency, sum(balance) AS total FROM payledger.accounts GROUP BY currency ORDER BY currency;
-- every transfer has exactly one audit row
SELECT count(*) AS transfers_without_one_audit_row FROM payledger.transfers t
 WHERE (SELECT count(*) FROM payledger.payment_audit_log l WHERE l.payment_id = t.id) <> 1;
