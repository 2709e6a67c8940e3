-- context settings made before payledger is loaded in the session
--
-- PostgreSQL keeps such a value as a placeholder and checks it only when the
-- library loads; an invalid one then becomes a WARNING and the default.  The
-- change must be refused instead, or its audit row names the wrong actor.
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS a \gset

-- an invalid actor type set before the load refuses the transfer (22023)
\c
BEGIN;
SET LOCAL payledger.actor_type = 'ROBOT';
SELECT status FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'ctx-before-load');
ROLLBACK;
SELECT count(*) AS audited FROM payledger.payment_audit_log WHERE idempotency_key = 'ctx-before-load';

-- so does an invalid IP address; the next transaction is not affected
\c
BEGIN;
SET LOCAL payledger.ip_address = 'not-an-ip';
SELECT status FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'ctx-ip');
ROLLBACK;
SELECT status FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'ctx-next');
SELECT actor_type, ip_address FROM payledger.payment_audit_log WHERE idempotency_key = 'ctx-next';

-- setting the value again after the load clears the refusal
\c
BEGIN;
SET LOCAL payledger.correlation_id = 'nope';
LOAD 'payledger';
SET LOCAL payledger.correlation_id = '00000000-0000-7000-8000-00000000beef';
SELECT status FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'ctx-reassigned');
COMMIT;
SELECT correlation_id FROM payledger.payment_audit_log WHERE idempotency_key = 'ctx-reassigned';

-- valid values set before the load are used
\c
BEGIN;
SET LOCAL payledger.actor_type = 'OPERATOR';
SET LOCAL payledger.ip_address = '10.1.2.3';
SELECT status FROM payledger.transfer(:'sys', :'a', 5, 'USD', 'ctx-valid');
COMMIT;
SELECT actor_type, ip_address FROM payledger.payment_audit_log WHERE idempotency_key = 'ctx-valid';

-- once loaded, an invalid value is refused when it is set
SET payledger.actor_type = 'ROBOT';
