/* sql/payledger--0.2.0--0.3.0.sql: payledger 0.2.0 -> 0.3.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.3.0'" to load this file. \quit

/* ---- access: roles, merchant scope, the read API ---- */

/* ---- correctness findings ---- */

/*
 * A dispute stays reserved until resolve_dispute: open disputes' holds no
 * longer expire.  An authorization's hold names its payment in its
 * metadata, as authorize_payment now writes it, so that expire_holds()
 * leaves it to expire_authorizations().
 */
ALTER TABLE payledger.holds DISABLE TRIGGER holds_guard;
UPDATE payledger.holds h SET expires_at = 'infinity'
  FROM payledger.payments p
 WHERE h.id OPERATOR(pg_catalog.=) p.dispute_hold_id
   AND p.state OPERATOR(pg_catalog.=) 'disputed'::payledger.payment_state
   AND h.status OPERATOR(pg_catalog.=) 'pending';
UPDATE payledger.holds h
   SET metadata = h.metadata OPERATOR(pg_catalog.||)
       pg_catalog.jsonb_build_object('payment_id', p.id::pg_catalog.text)
  FROM payledger.payments p
 WHERE h.id OPERATOR(pg_catalog.=) p.hold_id
   AND p.state OPERATOR(pg_catalog.=) 'authorized'::payledger.payment_state
   AND h.status OPERATOR(pg_catalog.=) 'pending';
ALTER TABLE payledger.holds ENABLE ALWAYS TRIGGER holds_guard;

/* ---- throughput: notify worker, group commit ---- */

/* ---- privileges: nothing for PUBLIC, each role what section 13 grants ---- */
