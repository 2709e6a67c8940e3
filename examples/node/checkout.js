#!/usr/bin/env node
// A small checkout service on payledger, with node-postgres (npm package pg).
//
// Each command is one request of the service, as an HTTP endpoint would be:
//
//   checkout.js DSN pay ORDER MERCHANT CUSTOMER SOURCE_ACCOUNT MERCHANT_ACCOUNT AMOUNT
//   checkout.js DSN capture ORDER PAYMENT AMOUNT FEE_ACCOUNT FEE
//   checkout.js DSN refund ORDER PAYMENT AMOUNT
//   checkout.js DSN show PAYMENT
//   checkout.js DSN balances ACCOUNT...
//   checkout.js DSN flow ORDER MERCHANT CUSTOMER SOURCE_ACCOUNT MERCHANT_ACCOUNT FEE_ACCOUNT
//
// (the same commands as examples/python/checkout.py).  Every request runs in
// one transaction that first sets who is acting with set_config(..., true)
// (SET LOCAL: nothing leaks into another client's transaction through a
// pooler), derives its idempotency keys from the order, retries on a dropped
// connection with the same keys (payledger replays what committed), and
// turns payledger's SQLSTATEs (err.code) into the service's answers.
//
// Output: one JSON object per command on stdout; exit status 0, or 2 for a
// refused request (its "error" is the SQLSTATE).
'use strict';

const { Client } = require('pg');

const APPLICATION = 'checkout-node';
const ATTEMPTS = 5;

// what the service answers for payledger's errors
const HTTP_STATUS = {
  PY001: 409, // the payment's state does not allow it
  PY002: 409, // the key was used for another request
  PY004: 422, // currency mismatch
  PY005: 404, // no such payment or account
  PY006: 422, // card data in the request
  PY008: 400, // no idempotency key
  22023: 422, // bad amount, too much to capture or refund, ...
  42501: 403, // this service's role may not do that
};

// a connection that dropped, or a server that went away: the outcome of the
// request is unknown, so it is asked again with the same keys
function connectionLost(err) {
  if (typeof err.code !== 'string' || !/^[0-9A-Z]{5}$/.test(err.code)) {
    return true; // ECONNRESET, ECONNREFUSED, "Connection terminated unexpectedly"
  }
  return err.code.startsWith('08') || err.code.startsWith('57P');
}

class Refused extends Error {
  constructor(err) {
    super(err.message);
    this.sqlstate = err.code;
    this.detail = err.detail;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// run work(client) in one transaction as actorId; retry on a dropped connection
async function request(dsn, actorId, work) {
  for (let attempt = 1; ; attempt++) {
    const client = new Client({ connectionString: dsn, application_name: APPLICATION });
    client.on('error', () => {}); // a dropped connection surfaces in the query
    try {
      await client.connect();
      await client.query('BEGIN');
      await client.query(
        "SELECT set_config('payledger.actor_type', 'API', true), set_config('payledger.actor_id', $1, true)",
        [actorId],
      );
      const result = await work(client);
      await client.query('COMMIT');
      return { result, attempts: attempt };
    } catch (err) {
      if (connectionLost(err) && attempt < ATTEMPTS) {
        await sleep(200 * attempt);
        continue;
      }
      if (!connectionLost(err)) {
        throw new Refused(err);
      }
      throw err;
    } finally {
      await client.end().catch(() => {});
    }
  }
}

async function one(client, sql, params) {
  const res = await client.query(sql, params);
  return Object.values(res.rows[0])[0];
}

function pay(dsn, order, merchant, customer, source, merchantAccount, amount) {
  return request(dsn, `checkout:${order}`, async (c) => {
    const payment = await one(c,
      "SELECT payledger.create_payment($1, $2, $3, 'USD', $4, $5, $6, jsonb_build_object('order', $7::text))",
      [merchant, customer, amount, source, merchantAccount, `${order}:create`, order]);
    const state = await one(c, 'SELECT payledger.authorize_payment($1, $2)', [payment, `${order}:authorize`]);
    return { payment, state };
  });
}

function capture(dsn, order, payment, amount, feeAccount, fee) {
  return request(dsn, `checkout:${order}`, async (c) => ({
    payment,
    state: await one(c,
      "SELECT payledger.capture_payment($1, $2, $3, jsonb_build_array(jsonb_build_object('account', $4::uuid, 'amount', $5::bigint)))",
      [payment, `${order}:capture`, amount, feeAccount, fee]),
  }));
}

function refund(dsn, order, payment, amount) {
  return request(dsn, `checkout:${order}`, async (c) => ({
    payment,
    state: await one(c, "SELECT payledger.refund_payment($1, $2, $3, 'customer_request')",
      [payment, amount, `${order}:refund:${amount}`]),
  }));
}

function show(dsn, payment) {
  return request(dsn, 'checkout:show', async (c) => {
    const res = await c.query(
      `SELECT state::text, amount::int, captured_amount::int, refunded_amount::int,
              fee_amount::int, version::int
         FROM payledger.get_payment($1)`, [payment]);
    return { ...res.rows[0], payment };
  });
}

function balances(dsn, accounts) {
  return request(dsn, 'checkout:balances', async (c) => {
    const result = {};
    for (const account of accounts) {
      const res = await c.query(
        'SELECT balance::int, available::int FROM payledger.get_balance($1)', [account]);
      [result[account]] = res.rows;
    }
    return { balances: result };
  });
}

async function main(argv) {
  const [dsn, command, ...args] = argv;
  let out;
  switch (command) {
    case 'pay':
      out = await pay(dsn, ...args.slice(0, 5), Number(args[5]));
      break;
    case 'capture':
      out = await capture(dsn, args[0], args[1], Number(args[2]), args[3], Number(args[4]));
      break;
    case 'refund':
      out = await refund(dsn, args[0], args[1], Number(args[2]));
      break;
    case 'show':
      out = await show(dsn, args[0]);
      break;
    case 'balances':
      out = await balances(dsn, args);
      break;
    case 'flow': {
      const [order, merchant, customer, source, merchantAccount, feeAccount] = args;
      const steps = [await pay(dsn, order, merchant, customer, source, merchantAccount, 2500)];
      const { payment } = steps[0].result;
      steps.push(await capture(dsn, order, payment, 2000, feeAccount, 60));
      steps.push(await refund(dsn, order, payment, 500));
      steps.push(await show(dsn, payment));
      steps.push(await balances(dsn, [merchantAccount, feeAccount]));
      out = { result: { steps: steps.map((s) => s.result) },
              attempts: Math.max(...steps.map((s) => s.attempts)) };
      break;
    }
    default:
      console.error('usage: checkout.js DSN pay|capture|refund|show|balances|flow ...');
      return 1;
  }
  console.log(JSON.stringify({ ...out.result, attempts: out.attempts }));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    if (err instanceof Refused) {
      console.log(JSON.stringify({ error: err.sqlstate, status: HTTP_STATUS[err.sqlstate] || 500,
                                   message: err.message, detail: err.detail || null }));
      process.exitCode = 2;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);
