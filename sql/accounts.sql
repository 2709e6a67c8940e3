-- accounts: opening, status changes, balances
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD') AS a \gset
SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD', 'credit', -500) AS credit \gset
SELECT id = :'a' AS id_returned, currency, kind, min_balance, status, balance, version
  FROM payledger.accounts WHERE id = :'a';
SELECT kind, min_balance IS NULL AS no_floor FROM payledger.accounts WHERE id = :'sys';
SELECT min_balance FROM payledger.accounts WHERE id = :'credit';

-- a caller-supplied id is idempotent: same attributes return it, others raise
SELECT payledger.create_account('EUR', 'wallet', 0, '{"owner": "alice"}',
       '00000000-0000-7000-8000-000000000001') AS fixed;
SELECT payledger.create_account('EUR', 'wallet', 0, '{"owner": "alice"}',
       '00000000-0000-7000-8000-000000000001') AS fixed_again;
SELECT payledger.create_account('EUR', 'wallet', 0, '{"owner": "bob"}',
       '00000000-0000-7000-8000-000000000001');
SELECT count(*) AS created_events FROM payledger.payment_audit_log
 WHERE account_id = '00000000-0000-7000-8000-000000000001';

-- bad input
SELECT payledger.create_account(NULL);
SELECT payledger.create_account('USD', NULL);
SELECT payledger.create_account('XYZ');
SELECT payledger.create_account('usd');
SELECT payledger.create_account('USD', 'generic', 1);
SELECT payledger.create_account('USD', '');
SELECT payledger.create_account('USD', 'generic', 0, '{"card": "4111 1111 1111 1111"}');

-- get_balance
SELECT * FROM payledger.get_balance(:'a');
SELECT * FROM payledger.get_balance(NULL);
SELECT * FROM payledger.get_balance('00000000-0000-0000-0000-000000000000');

-- freeze, unfreeze, close: each change bumps the version and is audited
SELECT payledger.freeze_account(:'a', 'chargeback investigation');
SELECT status, frozen_reason, version FROM payledger.accounts WHERE id = :'a';
SELECT payledger.freeze_account(:'a', 'again');      -- already frozen: no-op
SELECT version FROM payledger.accounts WHERE id = :'a';
SELECT payledger.unfreeze_account(:'a');
SELECT status, frozen_reason IS NULL AS reason_cleared, version FROM payledger.accounts WHERE id = :'a';
SELECT payledger.close_account(:'a');
SELECT status, version FROM payledger.accounts WHERE id = :'a';
SELECT payledger.freeze_account(:'a', 'too late');
SELECT payledger.unfreeze_account(:'a');
SELECT payledger.close_account(:'a');                -- already closed: no-op
SELECT event_type, previous_state, new_state, metadata
  FROM payledger.payment_audit_log WHERE account_id = :'a' ORDER BY id;

SELECT payledger.freeze_account(NULL, 'x');
SELECT payledger.freeze_account(:'sys', NULL);
SELECT payledger.freeze_account('00000000-0000-0000-0000-000000000000', 'x');
SELECT payledger.freeze_account(:'sys', 'card 4111111111111111 was stolen');
SELECT payledger.close_account('00000000-0000-0000-0000-000000000000');

-- a funded account cannot close
SELECT payledger.create_account('USD') AS funded \gset
SELECT status FROM payledger.transfer(:'sys', :'funded', 100, 'USD');
SELECT payledger.close_account(:'funded');
SELECT status FROM payledger.accounts WHERE id = :'funded';
