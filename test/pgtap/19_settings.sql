-- 19_settings.sql: the payledger.* settings doc/reference.md names, with
-- their defaults, and who may change them (sections 2, 3, 5, 7, 10 and 11)
--
-- Runs without shared_preload_libraries, as the rest of pgTAP does: the
-- settings exist once the library is loaded in the session.

LOAD 'payledger';
BEGIN;

SELECT plan(9);

-- each setting's default as SHOW prints it after RESET, whatever the
-- server's configuration says
CREATE FUNCTION pg_temp.default_of(p_name text) RETURNS text LANGUAGE sql
	AS $$ SELECT boot_val || coalesce(unit, '') FROM pg_settings WHERE name = p_name $$;

SELECT results_eq($$SELECT name::text COLLATE "default", pg_temp.default_of(name) FROM pg_settings
					 WHERE name IN ('payledger.actor_type', 'payledger.require_idempotency_key',
									'payledger.idempotency_retention', 'payledger.max_metadata_bytes',
									'payledger.allow_drop', 'payledger.risk_threshold',
									'payledger.risk_function', 'payledger.notify_events',
									'payledger.notify_delay')
					 ORDER BY 1$$,
	$$VALUES ('payledger.actor_type', 'SYSTEM'),
			 ('payledger.allow_drop', 'off'),
			 ('payledger.idempotency_retention', '7 days'),
			 ('payledger.max_metadata_bytes', '16384B'),
			 ('payledger.notify_delay', '10ms'),
			 ('payledger.notify_events', 'on'),
			 ('payledger.require_idempotency_key', 'on'),
			 ('payledger.risk_function', ''),
			 ('payledger.risk_threshold', '80')$$,
	'every setting the reference names exists with its documented default');

SELECT is(current_setting('payledger.actor_type'), 'SYSTEM',
	'payledger.actor_type reads SYSTEM when nobody set it');
SET LOCAL payledger.actor_type = 'API';
RESET payledger.actor_type;
SELECT is(current_setting('payledger.actor_type'), 'SYSTEM', 'and again after RESET');

-- the per-transaction context is the application's to set
SELECT results_eq($$SELECT name::text COLLATE "default", context::text COLLATE "default" FROM pg_settings
					 WHERE name IN ('payledger.actor_type', 'payledger.actor_id', 'payledger.ip_address',
									'payledger.user_agent', 'payledger.device_id', 'payledger.correlation_id')
					 ORDER BY 1$$,
	$$VALUES ('payledger.actor_id', 'user'), ('payledger.actor_type', 'user'),
			 ('payledger.correlation_id', 'user'), ('payledger.device_id', 'user'),
			 ('payledger.ip_address', 'user'), ('payledger.user_agent', 'user')$$,
	'the six context settings may be set by any role, per transaction');

-- the guard rails are not: a role of the application cannot lower them
CREATE ROLE regress_settings_app;
GRANT payledger_app TO regress_settings_app;
SET LOCAL ROLE regress_settings_app;
SELECT throws_ok($$SET LOCAL payledger.require_idempotency_key = off$$, '42501', NULL,
	'an application role cannot switch off require_idempotency_key');
SELECT throws_ok($$SET LOCAL payledger.allow_drop = on$$, '42501', NULL,
	'nor switch on allow_drop');
SELECT throws_ok($$SET LOCAL payledger.risk_function = ''$$, '42501', NULL,
	'nor take the risk hook away');
SELECT lives_ok($$SET LOCAL payledger.actor_type = 'CUSTOMER'$$,
	'but sets its actor_type');
RESET ROLE;
SELECT throws_ok($$SET LOCAL payledger.actor_type = 'ROBOT'$$, '22023', NULL,
	'actor_type takes only CUSTOMER, SYSTEM, OPERATOR or API');

SELECT * FROM finish();
ROLLBACK;
