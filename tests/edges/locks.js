'use strict';
// tests/edges/locks.js - issue 11, lock semantics at the edges: replays of
// released grants (2), late replies after a 503 (3), tiny waits (5), dead
// waiters (6), the fence clock, a second preemptor, huge numbers (12).
// Redis is stalled with CLIENT PAUSE (it returns once the pause is in force,
// so a test knows the stall has begun); commands sent meanwhile run after it.
const http = require('http');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');

const T = 'MANUAL_OPERATOR';
let seq = 0;
const uniq = (p) => `${p}-${process.pid}-${++seq}`;

function assert(cond, msg) { if (!cond) throw new Error(msg); }

// Stalls Redis for ms (every client, the broker's included); resolves once
// the pause is in force.
function stall(redis, ms) {
  assert(redis.cli('CLIENT', 'PAUSE', String(ms), 'ALL') === 'OK', 'CLIENT PAUSE failed');
}

// A request whose client gives up after ms (the connection is closed).
function abortedAcquire(b, fields, ms) {
  const ac = new AbortController();
  const p = b.post('/api/lock/request', fields, { connection: 'close' }, { signal: ac.signal })
    .then(r => ({ answered: r }), e => ({ aborted: e }));
  setTimeout(() => ac.abort(), ms);
  return p;
}

// Resolves to the answer, or to {status: 'none'} if none came within ms.
function within(p, ms) {
  return Promise.race([p.catch(e => ({ status: 'error', error: e })),
    new Promise(r => setTimeout(() => r({ status: 'none' }), ms))]);
}

const device = (b, d) => b.get(`/api/locks/device/${d}`);

// An acquire on its own connection (not the broker's keep-alive pool, which
// Broker.stop closes first): the requester stays connected while its
// broker dies. Resolves when the connection ends, however it ends.
function ownConnectionAcquire(b, fields) {
  return new Promise((resolve) => {
    const data = Buffer.from(JSON.stringify(fields));
    const req = http.request({ host: '127.0.0.1', port: b.port, path: '/api/lock/request', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(null));
    });
    req.on('error', () => resolve(null));
    req.end(data);
  });
}

// For ms, every sample of the device shows it held with key (a believer's
// lock must stay held: a broker releasing it behind the believer's back
// would show within this window).
async function staysHeld(b, dev, key, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const d = await device(b, dev);
    assert(d.body && d.body.locked && d.body.lock.lock_key === key,
      `the client believes it holds ${dev} with ${key}, but it shows ${JSON.stringify(d.body && d.body.lock)}`);
    await new Promise(r => setTimeout(r, 50));
  }
}

async function setup(brokerArgs = [], n = 1) {
  const redis = await Redis.start();
  const brokers = [];
  for (let i = 0; i < n; i++) brokers.push(await Broker.start(redis.url, brokerArgs));
  // loads the scripts (a broker's first EVALSHA meets NOSCRIPT and is resent)
  for (const b of brokers) {
    const w = await b.acquire({ device_name: uniq('warm'), lock_type: T, user_id: 'warm', timeout: 60 });
    await b.release({ device_name: w.body.lock.device_name, lock_key: w.body.lock_key, user_id: 'warm' });
  }
  return { redis, brokers, b: brokers[0] };
}

async function teardown(env) {
  for (const b of env.brokers) if (b.proc.exitCode === null && b.proc.signalCode === null) await b.stop();
  await env.redis.kill();
}

// ---- 2: a replay never claims a lock that is not held -----------------------

test('replay: a retry after the broker released the orphaned grant is a new request, not success:true', async () => {
  const env = await setup(['--redis-timeout-ms', '3000']);
  try {
    const { b, redis } = env;
    const dev = uniq('dev');
    stall(redis, 600);
    // the acquire reaches Redis (queued behind the stall); the client gives up at 300 ms
    const first = await abortedAcquire(b, { device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-1', timeout: 60 }, 300);
    assert(first.aborted, 'the first attempt was answered during the stall');
    // the grant nobody received is given back; bob then gets the device
    const bob = await poll(async () => {
      const r = await b.acquire({ device_name: dev, lock_type: T, user_id: 'bob', timeout: 60 });
      return r.body && r.body.success ? r : null;
    }, 5000, 'bob to get the device after the orphan release');
    const retry = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-1', timeout: 60 });
    assert(retry.status === 200, `retry: ${retry.status} ${retry.text}`);
    assert(!retry.body.success, `the retry replayed a released grant while bob holds the device: ${retry.text}`);
    assert(retry.body.holder && retry.body.holder.user_id === 'bob', `retry denied without bob as holder: ${retry.text}`);
    await staysHeld(b, dev, bob.body.lock_key, 200);
  } finally { await teardown(env); }
});

test('replay: a retry that joins a queued request whose first connection left keeps the grant it is given', async () => {
  const env = await setup(['--redis-timeout-ms', '3000']);
  try {
    const { b, redis } = env;
    const dev = uniq('dev');
    const h = await b.acquire({ device_name: dev, lock_type: T, user_id: 'holder', timeout: 60 });
    assert(h.body.success, h.text);
    let exercised = false;
    // Redis order after the stall: first attempt (queues), retry (joins),
    // release (grants the waiter), then the first attempt's cancel.
    stall(redis, 900);
    const gap = () => new Promise(r => setTimeout(r, 60)); // schedules the sends, not an outcome
    const ac = new AbortController();
    const first = b.post('/api/lock/request', { device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-2', wait: 10, timeout: 60 },
      { connection: 'close' }, { signal: ac.signal }).catch(() => null);
    await gap();
    ac.abort();
    await gap();
    const retry = b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-2', wait: 10, timeout: 60 });
    await gap();
    const rel = b.release({ device_name: dev, lock_key: h.body.lock_key, user_id: 'holder' });
    const [r, rr] = await Promise.all([within(retry, 8000), rel, first]);
    assert(rr.status === 200, `release: ${rr.text}`);
    assert(r.status === 200, `retry: ${r.status} ${r.text}`);
    if (r.body.success) {
      exercised = true;
      await staysHeld(b, dev, r.body.lock_key, 1000);
    }
    assert(exercised, `the retry did not get the device: ${r.text}`);
  } finally { await teardown(env); }
});

// ---- 3: a 503 whose script still ran ----------------------------------------

test('late reply: an acquire answered 503 whose script ran later does not leave the lock held by nobody', async () => {
  const env = await setup(['--redis-timeout-ms', '750']);
  try {
    const { b, redis } = env;
    const dev = uniq('dev');
    stall(redis, 1500);
    const t0 = Date.now();
    const first = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-3', timeout: null });
    assert(first.status === 503, `expected 503 during the stall, got ${first.status} ${first.text}`);
    assert(Date.now() - t0 < 1400, 'the 503 came after the stall ended');
    // after the stall the late grant is given back: the device is free for bob
    const bob = await poll(async () => {
      const r = await b.acquire({ device_name: dev, lock_type: T, user_id: 'bob', timeout: 60 });
      return r.body && r.body.success ? r : null;
    }, 4000, 'the device to be free again (the late grant released)');
    // alice's retry is a new request: denied while bob holds it, then granted
    const retry = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-3', timeout: 60 });
    assert(retry.status === 200 && !retry.body.success, `retry while bob holds: ${retry.text}`);
    const rel = await b.release({ device_name: dev, lock_key: bob.body.lock_key, user_id: 'bob' });
    assert(rel.status === 200, rel.text);
    const again = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-3b', timeout: 60 });
    assert(again.body.success, `alice after bob released: ${again.text}`);
  } finally { await teardown(env); }
});

test('late reply: a retry during the late reply gets the grant and keeps it', async () => {
  const env = await setup(['--redis-timeout-ms', '750']);
  try {
    const { b, redis } = env;
    const dev = uniq('dev');
    stall(redis, 1200);
    const first = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-4', timeout: 60 });
    assert(first.status === 503, `expected 503, got ${first.status}`);
    // retried at once: it reaches Redis right behind the first attempt
    const retry = await poll(async () => {
      const r = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', request_id: 'r-4', timeout: 60 });
      return r.status === 200 ? r : null;
    }, 5000, 'the retry to be answered');
    if (retry.body.success) await staysHeld(b, dev, retry.body.lock_key, 800);
    else assert(false, `the retry of a request that was carried out did not get the device: ${retry.text}`);
  } finally { await teardown(env); }
});

test('late reply: a queued acquire answered 503 leaves the queue when its script runs late', async () => {
  const env = await setup(['--redis-timeout-ms', '750']);
  try {
    const { b, redis } = env;
    const dev = uniq('dev');
    const h = await b.acquire({ device_name: dev, lock_type: T, user_id: 'holder', timeout: 60 });
    stall(redis, 1500);
    const first = await b.acquire({ device_name: dev, lock_type: T, user_id: 'alice', wait: 30, timeout: null });
    assert(first.status === 503, `expected 503, got ${first.status}`);
    await poll(async () => (await b.get('/api/health/ready')).status === 200, 5000, 'Redis back');
    // the holder leaves: nobody is waiting any more, so carol gets the device
    await poll(async () => {
      const d = await device(b, dev);
      return d.status === 200 && d.body.waiters.length === 0;
    }, 3000, 'the abandoned waiter to leave the queue');
    await b.release({ device_name: dev, lock_key: h.body.lock_key, user_id: 'holder' });
    const c = await b.acquire({ device_name: dev, lock_type: T, user_id: 'carol', timeout: 60 });
    assert(c.body.success, `carol: ${c.text}`);
  } finally { await teardown(env); }
});

// ---- 5: tiny waits are answered ----------------------------------------------

test('tiny waits: 80 concurrent wait 0.001 on a held device are all answered', async () => {
  const env = await setup();
  try {
    const { b } = env;
    const dev = uniq('dev');
    const h = await b.acquire({ device_name: dev, lock_type: T, user_id: 'holder', timeout: 60 });
    assert(h.body.success, h.text);
    const rs = await Promise.all(Array.from({ length: 80 }, (_, i) =>
      within(b.acquire({ device_name: dev, lock_type: T, user_id: `u${i}`, wait: 0.001, timeout: 10 }), 3000)));
    const none = rs.filter(r => r.status === 'none').length;
    assert(none === 0, `${none} of 80 tiny waits never answered`);
    assert(rs.every(r => r.status === 200 && !r.body.success), `a tiny wait got the held device: ${JSON.stringify(rs.filter(r => !(r.status === 200 && !r.body.success)).slice(0, 3).map(r => [r.status, r.text]))}`);
    const d = await device(b, dev);
    assert(d.body.waiters.length === 0, `waiters left: ${JSON.stringify(d.body.waiters)}`);
  } finally { await teardown(env); }
});

test('tiny waits: a release at the same moment, and requesters leaving at the same moment', async () => {
  const env = await setup();
  try {
    const { b } = env;
    for (let round = 0; round < 3; round++) {
      const dev = uniq('dev');
      const h = await b.acquire({ device_name: dev, lock_type: T, user_id: 'holder', timeout: 60 });
      const live = Array.from({ length: 40 }, (_, i) =>
        within(b.acquire({ device_name: dev, lock_type: T, user_id: `u${i}`, wait: 0.001 * (1 + (i % 5)), timeout: 10 }), 3000));
      const gone = Array.from({ length: 20 }, (_, i) =>
        abortedAcquire(b, { device_name: dev, lock_type: T, user_id: `g${i}`, wait: 0.005, timeout: null }, 1 + (i % 6)));
      const rel = b.release({ device_name: dev, lock_key: h.body.lock_key, user_id: 'holder' });
      const rs = await Promise.all(live);
      await Promise.all([rel, ...gone]);
      const none = rs.filter(r => r.status === 'none').length;
      assert(none === 0, `round ${round}: ${none} of 40 tiny waits never answered`);
      const winners = rs.filter(r => r.status === 200 && r.body.success);
      assert(winners.length <= 1, `round ${round}: ${winners.length} requesters got one device`);
      // the device ends up with a requester who got its key, or free
      let seen = null;
      await poll(async () => {
        const d = await device(b, dev);
        seen = d.text;
        if (d.body.waiters.length) return false;
        if (!d.body.locked) return winners.length === 0 || 'released';
        return winners.length === 1 && d.body.lock.lock_key === winners[0].body.lock_key;
      }, 3000, `round ${round}: the device held by a requester who got its key, or free, no waiters`)
        .catch((e) => { throw new Error(`${e.message}; winners ${JSON.stringify(winners.map(w => w.body.lock_key))}; last seen ${seen}`); });
    }
  } finally { await teardown(env); }
});

// ---- 6: a dead waiter does not reserve a device --------------------------------

async function groupWaiterThenStop(signal, boundMs) {
  const env = await setup([], 2);
  try {
    const [b1, b2] = env.brokers;
    const x = uniq('x'), y = uniq('y');
    const h = await b1.acquire({ device_name: x, lock_type: T, user_id: 'holder', timeout: 120 });
    assert(h.body.success, h.text);
    // w waits (on broker 2) for x and y: it reserves the free y while it lives
    const w = ownConnectionAcquire(b2, { device_names: [x, y], lock_type: T, user_id: 'waiter', wait: 60, timeout: 60 });
    await poll(async () => (await device(b1, y)).body.waiters.length === 1, 3000, 'the group waiter to queue');
    const before = await b1.acquire({ device_name: y, lock_type: T, user_id: 'carol', timeout: 60 });
    assert(!before.body.success, 'y was not reserved for the live waiter');
    const t0 = Date.now();
    await env.brokers[1].stop(signal).catch(() => null);
    await w;
    const got = await poll(async () => {
      const r = await b1.acquire({ device_name: y, lock_type: T, user_id: 'carol', timeout: 60 });
      return r.body && r.body.success ? r : null;
    }, boundMs, `carol to get y within ${boundMs} ms of the waiter's broker's ${signal}`);
    assert(got.body.success, got.text);
    return Date.now() - t0;
  } finally { await teardown(env); }
}

test('dead waiter: SIGTERM takes the broker\'s waiters off the queues (the device is free at once)', async () => {
  await groupWaiterThenStop('SIGTERM', 2500);
}, { timeoutMs: 20000 });

test('dead waiter: after SIGKILL, the waiter stops reserving once its broker\'s heartbeat expires', async () => {
  await groupWaiterThenStop('SIGKILL', 5000 + 3000);
}, { timeoutMs: 20000 });

test('dead waiter: a queue entry whose waiter hash is gone is dropped when the device is freed', async () => {
  const env = await setup([], 2);
  try {
    const [b1, b2] = env.brokers;
    const x = uniq('x');
    const h = await b1.acquire({ device_name: x, lock_type: T, user_id: 'holder', timeout: 120 });
    const w = ownConnectionAcquire(b2, { device_name: x, lock_type: T, user_id: 'waiter', wait: 60, timeout: 60 });
    await poll(async () => (await device(b1, x)).body.waiters.length === 1, 3000, 'the waiter to queue');
    await b2.stop('SIGKILL').catch(() => null);
    await w;
    // the hash expires (60 s after the deadline): deleted here to get there now
    const keys = env.redis.cli('KEYS', 'dl:waiter:*').split('\n').filter(Boolean);
    assert(keys.length === 1, `waiter hashes: ${keys}`);
    env.redis.cli('DEL', keys[0]);
    const rel = await b1.release({ device_name: x, lock_key: h.body.lock_key, user_id: 'holder' });
    assert(rel.status === 200, rel.text);
    const got = await poll(async () => {
      const r = await b1.acquire({ device_name: x, lock_type: T, user_id: 'carol', timeout: 60 });
      return r.body && r.body.success ? r : null;
    }, 2000, 'carol to get the freed device');
    assert(got.body.success, got.text);
  } finally { await teardown(env); }
});

test('dead waiter: a device handed to a waiter whose broker was just SIGKILLed is released', async () => {
  const env = await setup([], 2);
  try {
    const [b1, b2] = env.brokers;
    const x = uniq('x');
    const h = await b1.acquire({ device_name: x, lock_type: T, user_id: 'holder', timeout: 120 });
    const w = ownConnectionAcquire(b2, { device_name: x, lock_type: T, user_id: 'waiter', wait: 60, timeout: 60 });
    await poll(async () => (await device(b1, x)).body.waiters.length === 1, 3000, 'the waiter to queue');
    await b2.stop('SIGKILL').catch(() => null);
    await w;
    // within the dead broker's heartbeat: the hand-over goes to its waiter
    const rel = await b1.release({ device_name: x, lock_key: h.body.lock_key, user_id: 'holder' });
    assert(rel.status === 200, rel.text);
    const d = await device(b1, x);
    assert(d.body.locked && d.body.lock.user_id === 'waiter', `not handed to the waiter: ${d.text}`);
    // nobody can ever receive that grant: it ends after the heartbeat expires
    const got = await poll(async () => {
      const r = await b1.acquire({ device_name: x, lock_type: T, user_id: 'carol', timeout: 60 });
      return r.body && r.body.success ? r : null;
    }, 5000 + 2000 + 2000, 'carol to get the device handed to the dead waiter');
    assert(got.body.success, got.text);
  } finally { await teardown(env); }
}, { timeoutMs: 20000 });

// ---- 12: fence clock per broker, a second preemptor, huge numbers -----------------

test('fence clock: a broker with --fence-clock on keeps it when a broker with it off connects later', async () => {
  const redis = await Redis.start();
  const on = await Broker.start(redis.url, ['--fence-clock', 'on']);
  const off = await Broker.start(redis.url, ['--fence-clock', 'off']);
  const env = { redis, brokers: [on, off] };
  try {
    const a = await on.acquire({ device_name: uniq('dev'), lock_type: T, user_id: 'alice', timeout: 60 });
    assert(a.body.success, a.text);
    assert(a.body.fence >= Date.now() - 600000, `fence ${a.body.fence} from the broker with the fence clock on is below the clock`);
    const b = await off.acquire({ device_name: uniq('dev'), lock_type: T, user_id: 'bob', timeout: 60 });
    assert(b.body.success && b.body.fence === 1, `fence from the broker with it off: ${b.text}`);
  } finally { await teardown(env); }
});

test('graceful preemption: a second preemptor does not move the holder\'s deadline', async () => {
  const env = await setup(['--preempt-grace', '2']);
  try {
    const { b } = env;
    const dev = uniq('dev');
    const h = await b.acquire({ device_name: dev, lock_type: 'QUEUE_QUEUED', user_id: 'holder', timeout: 60 });
    assert(h.body.success, h.text);
    const p1 = b.acquire({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'p1', wait: 10, timeout: 60 });
    const ev = async (pred) => {
      const r = await b.get(`/api/events?device=${dev}`);
      return (r.body.events || []).filter(pred);
    };
    const [req] = await poll(async () => { const e = await ev(e => e.action === 'preempt_requested'); return e.length ? e : null; },
      3000, 'preempt_requested');
    const t0 = Date.parse(req.timestamp);
    await poll(() => Date.now() - t0 >= 1000, 3000, 'one second into the window'); // the second preemptor comes late
    const p2 = await b.acquire({ device_name: dev, lock_type: 'QUEUE_EXECUTING', user_id: 'p2', wait: 10, timeout: 60 });
    assert(p2.body.success, `p2: ${p2.text}`);
    await p1;
    const [end] = await ev(e => e.action === 'force_released' && e.cause === 'preempted');
    assert(end, 'no preemption event');
    const window = Date.parse(end.timestamp) - t0;
    assert(window < 2600, `the holder was preempted ${window} ms after it was told 2 s`);
    assert((await ev(e => e.action === 'preempt_requested')).length === 1, 'the holder was told a second, later deadline');
  } finally { await teardown(env); }
});

// refused as any other bad field value: 422 validation_error, or 400
// invalid_timeout for timeouts (common/errors.def)
test('huge numbers: fence, client.pid and timeouts out of range are refused (4xx with detail and error)', async () => {
  const env = await setup();
  try {
    const { b } = env;
    const dev = uniq('dev');
    const raw = (p, text) => b.post(p, text);
    const cases = [
      ['/api/lock/validate', `{"device_name":"${dev}","fence":1e300}`],
      ['/api/lock/validate', `{"device_name":"${dev}","fence":-1e300}`],
      ['/api/lock/request', `{"device_name":"${dev}","lock_type":"${T}","user_id":"a","client":{"host":"h","pid":1e300,"name":"n"}}`],
      ['/api/lock/request', `{"device_name":"${dev}","lock_type":"${T}","user_id":"a","client":{"host":"h","pid":-1e300,"name":"n"}}`],
      ['/api/lock/request', `{"device_name":"${dev}","lock_type":"${T}","user_id":"a","timeout":-1e400}`],
      ['/api/lock/request', `{"device_name":"${dev}","lock_type":"${T}","user_id":"a","timeout":1e300}`],
      ['/api/lock/request', `{"device_name":"${dev}","lock_type":"${T}","user_id":"a","wait":-1e400}`],
      ['/api/lock/renew', `{"device_name":"${dev}","lock_key":"k","user_id":"a","timeout":-1e400}`],
    ];
    for (const [p, text] of cases) {
      const r = await raw(p, text);
      assert((r.status === 400 || r.status === 422) && r.body && r.body.detail && r.body.error, `${p} ${text}: ${r.status} ${r.text}`);
    }
    // in range still works
    const ok = await b.acquire({ device_name: dev, lock_type: T, user_id: 'a', timeout: 60, client: { host: 'h', pid: 4242, name: 'n' } });
    assert(ok.body.success && ok.body.lock.client.pid === 4242, ok.text);
    const v = await b.post('/api/lock/validate', { device_name: dev, fence: ok.body.fence });
    assert(v.status === 200 && v.body.valid === true, v.text);
  } finally { await teardown(env); }
});
