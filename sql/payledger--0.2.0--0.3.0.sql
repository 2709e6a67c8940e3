/* sql/payledger--0.2.0--0.3.0.sql: payledger 0.2.0 -> 0.3.0 */

\echo Use "ALTER EXTENSION payledger UPDATE TO '0.3.0'" to load this file. \quit

/* ---- access: roles, merchant scope, the read API ---- */

/* ---- correctness findings ---- */

/* ---- throughput: notify worker, group commit ---- */

/* ---- privileges: nothing for PUBLIC, each role what section 13 grants ---- */
