#!/usr/bin/python3
"""A small checkout service on payledger, with psycopg2.

Each command is one request of the service, as an HTTP endpoint would be:

  checkout.py DSN pay ORDER MERCHANT CUSTOMER SOURCE_ACCOUNT MERCHANT_ACCOUNT AMOUNT
      create the payment and authorize it (a hold on the customer's money)
  checkout.py DSN capture ORDER PAYMENT AMOUNT FEE_ACCOUNT FEE
      capture AMOUNT, of which FEE goes to the platform's fee account
  checkout.py DSN refund ORDER PAYMENT AMOUNT
      refund part of it
  checkout.py DSN show PAYMENT
      read the payment back (payledger.get_payment)
  checkout.py DSN balances ACCOUNT...
      read the accounts' balances back (payledger.get_balance)
  checkout.py DSN flow ORDER MERCHANT CUSTOMER SOURCE_ACCOUNT MERCHANT_ACCOUNT FEE_ACCOUNT
      all of the above: 25.00 authorized, 20.00 captured with a 0.60 fee, 5.00
      refunded, then the payment and the merchant's and the platform's balances

Every request
  * runs in one transaction that first sets who is acting with
    set_config(..., true), the SET LOCAL of a driver, so that a pooled
    connection never carries it into another client's transaction;
  * derives its idempotency keys from the order ("order-1001:capture"), so
    that a retry of the same request can never charge twice;
  * retries on a dropped connection (the server restarted, a pooler or an
    operator cut it, the network failed) with the same keys: if the first
    attempt committed, payledger replays its result; if not, it does the
    work now;
  * turns payledger's SQLSTATEs (psycopg2: e.pgcode) into the service's
    answers: PY002 a conflicting retry, PY005 not found, 22023 bad input, ...

Output: one JSON object per command on stdout; exit status 0, or 2 for a
refused request (its "error" is the SQLSTATE).
"""

import json
import sys
import time

import psycopg2

APPLICATION = "checkout-py"
ATTEMPTS = 5

# what the service answers for payledger's errors
HTTP_STATUS = {
    "PY001": 409,    # the payment's state does not allow it
    "PY002": 409,    # the key was used for another request
    "PY004": 422,    # currency mismatch
    "PY005": 404,    # no such payment or account
    "PY006": 422,    # card data in the request
    "PY008": 400,    # no idempotency key
    "22023": 422,    # bad amount, too much to capture or refund, ...
    "42501": 403,    # this service's role may not do that
}


class Refused(Exception):
    def __init__(self, err):
        super().__init__(err.pgerror)
        self.sqlstate = err.pgcode
        self.message = (err.diag.message_primary or "").strip()
        self.detail = err.diag.message_detail


def request(dsn, actor_id, work):
    """Run work(cursor) in one transaction as actor_id; retry on a dropped
    connection.  Returns (result, attempts)."""
    for attempt in range(1, ATTEMPTS + 1):
        conn = None
        try:
            conn = psycopg2.connect(dsn, application_name=APPLICATION)
            with conn:                      # commits, or rolls back on error
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT set_config('payledger.actor_type', 'API', true),"
                        "       set_config('payledger.actor_id', %s, true)",
                        (actor_id,))
                    result = work(cur)
            return result, attempt
        except psycopg2.OperationalError:
            # the connection dropped: the outcome is unknown, so ask again
            # with the same keys (payledger replays what committed)
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
        except psycopg2.Error as err:
            if err.pgcode is None:
                raise
            raise Refused(err) from None
        finally:
            if conn is not None:
                conn.close()


def pay(dsn, order, merchant, customer, source, merchant_account, amount):
    def work(cur):
        cur.execute(
            "SELECT payledger.create_payment(%s, %s, %s, 'USD', %s, %s, %s,"
            "                                jsonb_build_object('order', %s::text))",
            (merchant, customer, amount, source, merchant_account, order + ":create", order))
        payment = cur.fetchone()[0]
        cur.execute("SELECT payledger.authorize_payment(%s, %s)", (payment, order + ":authorize"))
        return {"payment": payment, "state": cur.fetchone()[0]}
    return request(dsn, "checkout:" + order, work)


def capture(dsn, order, payment, amount, fee_account, fee):
    def work(cur):
        cur.execute(
            "SELECT payledger.capture_payment(%s, %s, %s,"
            "       jsonb_build_array(jsonb_build_object('account', %s::uuid, 'amount', %s::bigint)))",
            (payment, order + ":capture", amount, fee_account, fee))
        return {"payment": payment, "state": cur.fetchone()[0]}
    return request(dsn, "checkout:" + order, work)


def refund(dsn, order, payment, amount):
    def work(cur):
        cur.execute("SELECT payledger.refund_payment(%s, %s, %s, 'customer_request')",
                    (payment, amount, "%s:refund:%s" % (order, amount)))
        return {"payment": payment, "state": cur.fetchone()[0]}
    return request(dsn, "checkout:" + order, work)


def show(dsn, payment):
    def work(cur):
        cur.execute(
            "SELECT state::text, amount, captured_amount, refunded_amount, fee_amount, version"
            "  FROM payledger.get_payment(%s)", (payment,))
        keys = ("state", "amount", "captured_amount", "refunded_amount", "fee_amount", "version")
        return dict(zip(keys, cur.fetchone()), payment=payment)
    return request(dsn, "checkout:show", work)


def balances(dsn, accounts):
    def work(cur):
        result = {}
        for account in accounts:
            cur.execute("SELECT balance, available FROM payledger.get_balance(%s)", (account,))
            balance, available = cur.fetchone()
            result[account] = {"balance": balance, "available": available}
        return {"balances": result}
    return request(dsn, "checkout:balances", work)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    dsn, command, args = argv[1], argv[2], argv[3:]
    try:
        if command == "pay":
            result, attempts = pay(dsn, *args[:5], int(args[5]))
        elif command == "capture":
            result, attempts = capture(dsn, args[0], args[1], int(args[2]), args[3], int(args[4]))
        elif command == "refund":
            result, attempts = refund(dsn, args[0], args[1], int(args[2]))
        elif command == "show":
            result, attempts = show(dsn, args[0])
        elif command == "balances":
            result, attempts = balances(dsn, args)
        elif command == "flow":
            order, merchant, customer, source, merchant_account, fee_account = args
            steps = [pay(dsn, order, merchant, customer, source, merchant_account, 2500)]
            payment = steps[0][0]["payment"]
            steps.append(capture(dsn, order, payment, 2000, fee_account, 60))
            steps.append(refund(dsn, order, payment, 500))
            steps.append(show(dsn, payment))
            steps.append(balances(dsn, [merchant_account, fee_account]))
            result = {"steps": [s[0] for s in steps]}
            attempts = max(s[1] for s in steps)
        else:
            sys.exit("unknown command %r\n%s" % (command, __doc__))
    except Refused as err:
        print(json.dumps({"error": err.sqlstate, "status": HTTP_STATUS.get(err.sqlstate, 500),
                          "message": err.message, "detail": err.detail}))
        return 2
    result["attempts"] = attempts
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
