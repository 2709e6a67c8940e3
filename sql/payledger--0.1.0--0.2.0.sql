/* sql/payledger--0.1.0--0.2.0.sql: payledger 0.1.0 -> 0.2.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.2.0'" to load this file. \quit

/* ---- payment lifecycle performance ---- */

-- A payment is rewritten by every step (authorize, capture, refund, ...)
-- and no index covers a column those steps change: leave room on each page
-- for the new versions, so the rewrites stay HOT updates on the same page
-- instead of new heap and index tuples elsewhere.  Holds need none: their
-- status is in the predicates of the pending-hold indexes, so a hold that
-- ends (posted, voided, expired) is never a HOT update anyway.
ALTER TABLE payledger.payments SET (fillfactor = 80);

-- Only settled payments are looked up by settlement (reconcile_settlement):
-- leave the others, every payment until it settles, out of that index, which
-- saves an index entry per payment created.
DROP INDEX payledger.payments_settlement;
CREATE INDEX payments_settlement ON payledger.payments (settlement_id)
	WHERE settlement_id IS NOT NULL;
