-- submit_transfer needs payledger in shared_preload_libraries: on a server
-- that only loads it per session the call is refused with 55000 and a hint,
-- before anything else is looked at; the preloaded behaviour is t/011
\set VERBOSITY sqlstate
SELECT payledger.submit_transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 1, 'USD', 'submit-1');
SELECT payledger.submit_transfer(NULL, NULL, NULL, NULL, NULL);
\set VERBOSITY default
SELECT payledger.submit_transfer('00000000-0000-0000-0000-0000000000a1',
	'00000000-0000-0000-0000-0000000000b1', 1, 'USD', 'submit-1');
