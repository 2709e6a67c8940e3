-- holds: reserve, post in full or in part, void, expire
\set VERBOSITY terse
SET payledger.require_idempotency_key = off;

SELECT payledger.create_account('USD', 'system', NULL) AS sys \gset
SELECT payledger.create_account('USD') AS card \gset
SELECT payledger.create_account('USD') AS shop \gset
SELECT status FROM payledger.transfer(:'sys', :'card', 10000, 'USD');

-- a hold lowers available, not balance, and raises pending amounts on both sides
SELECT transfer_id AS h1, status, reason_code, replayed FROM payledger.hold(:'card', :'shop', 3000, 'USD') \gset
SELECT :'status' AS status, :'replayed' AS replayed;
SELECT balance, pending_debits, pending_credits, available, version FROM payledger.get_balance(:'card');
SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(:'shop');
SELECT status, amount FROM payledger.holds WHERE id = :'h1';
-- the reservation counts against later debits
SELECT status, reason_code FROM payledger.transfer(:'card', :'shop', 7001, 'USD');
SELECT status, reason_code FROM payledger.hold(:'card', :'shop', 7001, 'USD');

-- partial post: 2500 moves, 500 is released
SELECT transfer_id = :'h1' AS same_id, status, reason_code FROM payledger.post_hold(:'h1', 2500);
SELECT balance, pending_debits, available FROM payledger.get_balance(:'card');
SELECT balance, pending_credits, available FROM payledger.get_balance(:'shop');
SELECT status, posted_amount FROM payledger.holds WHERE id = :'h1';
-- a hold that is no longer pending cannot be posted or voided again
SELECT status, reason_code FROM payledger.post_hold(:'h1');
SELECT status, reason_code FROM payledger.void_hold(:'h1');

-- over-post is declined and changes nothing
SELECT transfer_id AS h2 FROM payledger.hold(:'card', :'shop', 1000, 'USD') \gset
SELECT status, reason_code FROM payledger.post_hold(:'h2', 1001);
SELECT status FROM payledger.holds WHERE id = :'h2';
-- full post with NULL
SELECT status, reason_code FROM payledger.post_hold(:'h2', NULL);
SELECT balance, pending_debits FROM payledger.get_balance(:'card');

-- void releases everything
SELECT transfer_id AS h3 FROM payledger.hold(:'card', :'shop', 400, 'USD') \gset
SELECT status, reason_code FROM payledger.void_hold(:'h3');
SELECT balance, pending_debits, available FROM payledger.get_balance(:'card');
SELECT status, reason_code FROM payledger.post_hold(:'h3');

-- expiry by the wall clock: overdue holds stop counting at once, and a post
-- or void on one expires it and declines HOLD_EXPIRED
SELECT transfer_id AS h4 FROM payledger.hold(:'card', :'shop', 1000, 'USD', '2 seconds') \gset
SELECT transfer_id AS h5 FROM payledger.hold(:'card', :'shop', 700, 'USD', '2 seconds') \gset
SELECT transfer_id AS h6 FROM payledger.hold(:'card', :'shop', 100, 'USD', '2 seconds') \gset
SELECT pending_debits, available FROM payledger.get_balance(:'card');
SELECT pg_sleep(2.1);
SELECT pending_debits, available FROM payledger.get_balance(:'card');
SELECT status, reason_code FROM payledger.post_hold(:'h4');
SELECT status, reason_code FROM payledger.void_hold(:'h5');
SELECT id = :'h4' AS is_h4, status FROM payledger.holds WHERE id IN (:'h4', :'h5') ORDER BY id = :'h4' DESC;
SELECT payledger.expire_holds() AS expired;
SELECT payledger.expire_holds() AS expired_again;
SELECT status FROM payledger.holds WHERE id = :'h6';
SELECT balance, pending_debits, pending_credits, available FROM payledger.get_balance(:'card');
SELECT event_type, previous_state, new_state, success, reason_code, amount_cents
  FROM payledger.payment_audit_log WHERE payment_id IN (:'h4', :'h5', :'h6') ORDER BY id;

-- the events of the first hold
SELECT event_type, previous_state, new_state, success, reason_code, amount_cents
  FROM payledger.payment_audit_log WHERE payment_id = :'h1' ORDER BY id;

-- keys replay holds and their posts
SELECT status, replayed FROM payledger.hold(:'card', :'shop', 10, 'USD', '1 day', 'auth-1');
SELECT transfer_id AS hk, status, replayed FROM payledger.hold(:'card', :'shop', 10, 'USD', '1 day', 'auth-1') \gset
SELECT :'status' AS status, :'replayed' AS replayed;
SELECT status, replayed FROM payledger.post_hold(:'hk', NULL, 'capture-1');
SELECT status, replayed FROM payledger.post_hold(:'hk', NULL, 'capture-1');
SELECT * FROM payledger.post_hold(:'hk', 5, 'capture-1');
SELECT * FROM payledger.void_hold(:'hk', 'auth-1');

-- errors
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', '0 seconds');
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', '-1 day');
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', NULL);
-- an expiry beyond timestamptz's range is a bad interval too (22023, not 22008)
\set VERBOSITY sqlstate
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', '178000000 years');
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', '-178000000 years');
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD', '2000000000 months');
\set VERBOSITY terse
SELECT * FROM payledger.hold(:'card', :'shop', 0, 'USD');
SELECT * FROM payledger.post_hold(NULL);
SELECT * FROM payledger.post_hold(:'h2', 0);
SELECT * FROM payledger.post_hold('00000000-0000-0000-0000-000000000000');
SELECT * FROM payledger.void_hold('00000000-0000-0000-0000-000000000000');
RESET payledger.require_idempotency_key;
SELECT * FROM payledger.hold(:'card', :'shop', 1, 'USD');
SELECT * FROM payledger.post_hold(:'h2');
SELECT * FROM payledger.void_hold(:'h2');
UPDATE payledger.holds SET status = 'pending';
DELETE FROM payledger.holds;

SELECT check_name, ok FROM payledger.check_ledger() WHERE NOT ok;
