'use strict';
// devreads.js - issue 14: GET /api/locks/device/{name} from the broker's
// read copy. A seeded, bounded generative test drives two brokers (A, B)
// with random waits, group waits, grants, preemptions (with a grace window),
// releases, lease timeouts, bookings, requesters that leave (unwait) and a
// broker SIGKILL, and after each step
// compares every device's answer of A and B (read copy) with a third
// broker's R (DEVLOCK_DEVICE_READS=redis: device.lua) byte for byte, but
// for "timestamp". Answers may differ for a moment (an event on its way, a
// deadline passing between the reads), so each step polls until they agree,
// with a deadline; a copy that stays wrong fails. The self-test plants a bug
// (DEVLOCK_TEST_MIRROR_FAULT=unqueued: the copy ignores unqueued facts) and
// checks that the same comparison reports it.
// DEVREADS_SEED=n replays a run; DEVREADS_STEPS=n sets its length.
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');

function check(cond, what) { if (!cond) throw new Error(what); }

// seeded, so a failing run can be replayed (tests/lib/procs.js's mulberry32)
const { prng: rng } = require('../lib/procs.js');

const DEVICES = ['dr0', 'dr1', 'dr2', 'dr3'];
const TYPES = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'];
// names cjson and C escape differently unless handled: '/', '"', '\', DEL, UTF-8
const USERS = ['ann', 'bo/b', 'c"q', 'd\\e', 'f\u007fg', 'h\u00e9', 'i\tj'];
const PLANS = [undefined, 'plan/1', 'plan "2"'];

const norm = text => text.replace(/"timestamp":"[^"]*"/, '"timestamp":""');

async function deviceText(b, dev) {
  const r = await b.get(`/api/locks/device/${dev}`);
  check(r.status === 200, `GET device ${dev} on a broker: ${r.status} ${r.text}`);
  return norm(r.text);
}

// '' when every copy answers every device as device.lua does, else the
// first difference found
async function difference(copies, ref) {
  for (const dev of DEVICES) {
    const want = await deviceText(ref, dev);
    for (const [name, b] of copies) {
      const got = await deviceText(b, dev);
      if (got !== want) return `${name} ${dev}:\n  copy:      ${got}\n  device.lua: ${want}`;
    }
  }
  return '';
}

async function agree(copies, ref, ms, what) {
  let last = '';
  try {
    await poll(async () => { last = await difference(copies, ref); return last === ''; }, ms, what, 30);
  } catch (e) {
    throw new Error(`${what}: the read copy does not answer as device.lua after ${ms} ms\n${last}`);
  }
}

async function copyReady(b) {
  const m = /^devlock_read_copy_ready (\d+)/m.exec((await b.get('/metrics')).text);
  return m && m[1] === '1';
}

// The random steps against brokers {A, B}; returns a summary of what ran.
async function generate(redis, brokers, ref, seed, steps, { killB = true } = {}) {
  const rand = rng(seed);
  const pick = a => a[Math.floor(rand() * a.length)];
  const held = [];        // {dev, key, user, broker}
  const inflight = [];    // {ctl, done}
  const counts = {};
  const count = k => { counts[k] = (counts[k] || 0) + 1; };
  let killed = false;
  const request = (b, fields, ctl) => b.post('/api/lock/request', fields, {}, ctl ? { signal: ctl.signal } : undefined)
    .then(r => {
      const g = r.body;
      if (g && g.success) for (const l of g.locks || [g.lock]) held.push({ dev: l.device_name, key: g.lock_key, user: fields.user_id, b });
      return r;
    }, () => null);
  for (let step = 0; step < steps; step++) {
    const name = pick(['A', 'B']);
    const b = brokers[name];
    const r = rand();
    const user = pick(USERS), type = pick(TYPES), plan = pick(PLANS);
    const one = { device_name: pick(DEVICES), lock_type: type, user_id: user, ...(plan ? { plan_uid: plan } : {}) };
    let settleMs = 4000;
    if (r < 0.16) { // a grant, a preemption or a denial, sometimes with a short lease
      count('acquire');
      await request(b, { ...one, ...(rand() < 0.4 ? { timeout: 0.5 + rand() * 1.5 } : {}) });
    } else if (r < 0.40) { // a wait on one device
      count('wait');
      const ctl = new AbortController();
      inflight.push({ ctl, done: request(b, { ...one, wait: 0.4 + rand() * 4, timeout: 1 + rand() * 3 }, ctl) });
    } else if (r < 0.52) { // a group wait
      count('group wait');
      const a = pick(DEVICES);
      let c = pick(DEVICES);
      if (c === a) c = DEVICES[(DEVICES.indexOf(a) + 1) % DEVICES.length];
      const ctl = new AbortController();
      const { device_name, ...rest } = one; // eslint-disable-line no-unused-vars
      inflight.push({ ctl, done: request(b, { ...rest, device_names: [a, c], wait: 0.4 + rand() * 4, timeout: 1 + rand() * 3 }, ctl) });
    } else if (r < 0.68) { // a release
      count('release');
      if (held.length) {
        const h = held.splice(Math.floor(rand() * held.length), 1)[0];
        await brokers[rand() < 0.5 ? 'A' : 'B'].release({ device_name: h.dev, lock_key: h.key, user_id: h.user }).catch(() => null);
      }
    } else if (r < 0.82) { // a requester leaves its wait (unwait)
      count('leave');
      if (inflight.length) inflight.splice(Math.floor(rand() * inflight.length), 1)[0].ctl.abort();
    } else if (r < 0.92) { // a booking soon: its window queues it at the head (waiter 'b<id>')
      count('booking');
      const start = Date.now() + 300 + rand() * 1000, end = start + 800 + rand() * 2500;
      const devs = rand() < 0.3 ? [pick(DEVICES), pick(DEVICES)].filter((d, i, a) => a.indexOf(d) === i) : [pick(DEVICES)];
      await b.post('/api/reservations', { device_names: devs, lock_type: type, user_id: user, ...(plan ? { plan_uid: plan } : {}),
        start: new Date(start).toISOString(), end: new Date(end).toISOString() }).catch(() => null);
    } else if (killB && !killed && step > steps / 3) { // broker B dies with its waiters
      count('kill B');
      killed = true;
      // a waiter of B's that outlives B's liveness key: only the reap ends it
      const dev = pick(DEVICES);
      const hold = await request(brokers.A, { device_name: dev, lock_type: 'MAINTENANCE', user_id: 'keeper', timeout: 60 });
      if (hold && hold.body && hold.body.success) held.push({ dev, key: hold.body.lock_key, user: 'keeper', b: brokers.A });
      const victim = request(brokers.B, { device_name: dev, lock_type: 'QUEUE_QUEUED', user_id: 'victim', wait: 60 });
      await poll(async () => /"victim"/.test(await deviceText(ref, dev)), 4000, 'B\'s long waiter to queue');
      await agree(Object.entries(brokers), ref, 4000, `step ${step} (seed ${seed}): before B dies`);
      await brokers.B.stop('SIGKILL').catch(() => {});
      await victim;
      // device.lua hides B's waiters once dl:broker:<B> is gone (5 s); the
      // copies once a broker reaps B (1.5 s later, checked every second)
      await poll(async () => !/"victim"/.test(await deviceText(ref, dev)), 8000, 'device.lua to hide B\'s waiter');
      await agree([['A', brokers.A]], ref, 6000, `step ${step} (seed ${seed}): after B died`);
      await brokers.B.restart();
      await poll(() => copyReady(brokers.B), 10000, 'B\'s read copy');
      settleMs = 8000;
    } else {
      count('status');
    }
    check(await copyReady(brokers.A), 'A answers from its read copy');
    await agree(Object.entries(brokers), ref, settleMs, `step ${step} (seed ${seed})`);
  }
  for (const f of inflight) f.ctl.abort();
  await Promise.all(inflight.map(f => f.done));
  await agree(Object.entries(brokers), ref, 6000, `the end (seed ${seed})`);
  return counts;
}

// (a grace, so higher priorities wait as the top waiter and holders get a window)
const ARGS = ['--preempt-grace', '1'];
async function setup(faultEnv) {
  const redis = await Redis.start();
  const brokers = {
    A: await Broker.start(redis.url, ARGS, { env: faultEnv }),
    B: await Broker.start(redis.url, ARGS, { env: faultEnv }),
  };
  const ref = await Broker.start(redis.url, ARGS, { env: { DEVLOCK_DEVICE_READS: 'redis' } });
  for (const b of Object.values(brokers)) await poll(() => copyReady(b), 10000, 'a read copy');
  return { redis, brokers, ref };
}

async function teardown(s) {
  if (!s) return;
  for (const b of [...Object.values(s.brokers), s.ref]) await b.stop().catch(() => {});
  await s.redis.kill();
}

test('device reads from the read copy answer as device.lua: seeded random waits, groups, leases, leaves, a broker kill', async () => {
  const seed = Number(process.env.DEVREADS_SEED || 1414);
  const steps = Number(process.env.DEVREADS_STEPS || 70);
  let s;
  try {
    s = await setup();
    const counts = await generate(s.redis, s.brokers, s.ref, seed, steps);
    console.log(`# seed ${seed}, ${steps} steps: ${JSON.stringify(counts)}`);
    // a copy built from a snapshot (not from facts) has the queues too
    const ctl = new AbortController();
    const w = s.brokers.A.post('/api/lock/request', { device_name: 'dr0', lock_type: 'QUEUE_QUEUED', user_id: 'snap/w', wait: 30 }, {}, { signal: ctl.signal }).catch(() => null);
    const blocker = await s.brokers.A.acquire({ device_name: 'dr1', lock_type: 'MAINTENANCE', user_id: 'x' });
    const w2 = s.brokers.A.post('/api/lock/request', { device_names: ['dr1', 'dr0'], lock_type: 'QUEUE_QUEUED', user_id: 'snap/g', wait: 30 }, {}, { signal: ctl.signal }).catch(() => null);
    await poll(async () => /snap\\\/g/.test(await deviceText(s.ref, 'dr1')), 5000, 'the group to wait');
    await s.brokers.B.restart();
    await poll(() => copyReady(s.brokers.B), 10000, 'B\'s new read copy');
    check(/snap\\\/g/.test(await deviceText(s.brokers.B, 'dr1')), 'a fresh copy shows the queued group');
    await agree([['B', s.brokers.B]], s.ref, 4000, 'a copy built from the snapshot');
    ctl.abort();
    await Promise.all([w, w2]);
    if (blocker.body && blocker.body.success) await s.brokers.A.release({ device_name: 'dr1', lock_key: blocker.body.lock_key, user_id: 'x' });
    await agree(Object.entries(s.brokers), s.ref, 4000, 'after the snapshot check');
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 240000 });

test('device reads from the read copy escape as Lua cjson: every ASCII character and UTF-8 in user_id and plan_uid', async () => {
  let s;
  try {
    s = await setup();
    let all = '';
    for (let c = 1; c < 128; c++) all += String.fromCharCode(c);
    const held = await s.brokers.A.acquire({ device_name: 'dr0', lock_type: 'MAINTENANCE', user_id: `h${all}` });
    check(held.body && held.body.success, `held: ${held.text}`);
    const ctl = new AbortController();
    const waits = [all.slice(0, 64), all.slice(64), 'caf\u00e9 \u2603 \ud83d\ude00'].map((u, i) => s.brokers[i % 2 ? 'B' : 'A']
      .post('/api/lock/request', { device_names: i === 2 ? ['dr0', 'dr1'] : ['dr0'], lock_type: 'QUEUE_QUEUED', user_id: u,
        plan_uid: `p/${u}`, wait: 30 }, {}, { signal: ctl.signal }).catch(() => null));
    await poll(async () => JSON.parse(await deviceText(s.ref, 'dr0')).waiters.length === 3, 5000, 'three waiters');
    await agree(Object.entries(s.brokers), s.ref, 3000, 'waiters with every character');
    ctl.abort();
    await Promise.all(waits);
    await agree(Object.entries(s.brokers), s.ref, 4000, 'the waiters gone');
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 60000 });

// Queue facts are stream entries no client sees: no frame, no history entry,
// nothing replayed by a resume (webhooks: tests/webhooks expected()).
test('queue facts are invisible to clients: /ws frames, /api/events and a resume show the same events as before', async () => {
  let s;
  try {
    s = await setup();
    const { A, B } = s.brokers;
    const w = await A.ws();
    await w.waitFor(f => f.type === 'initial_status', 5000);
    const len = () => Number(s.redis.cli('XLEN', 'dl:events'));
    const len0 = len();
    const since = (s.redis.cli('XREVRANGE', 'dl:events', '+', '-', 'COUNT', '1') || '0-0').split('\n')[0] || '0-0';
    const g = await A.acquire({ device_name: 'dr3', lock_type: 'MAINTENANCE', user_id: 'own' });
    check(g.body && g.body.success, `held: ${g.text}`);
    const ctl = new AbortController();
    const waiting = B.post('/api/lock/request', { device_name: 'dr3', lock_type: 'QUEUE_QUEUED', user_id: 'inv', wait: 30 },
      {}, { signal: ctl.signal }).catch(() => null);
    await poll(() => len() === len0 + 2, 5000, 'the queued fact');
    check(/"inv"/.test(await deviceText(A, 'dr3')), 'A\'s copy shows the waiter');
    ctl.abort();
    await waiting;
    await poll(() => len() === len0 + 3, 5000, 'the unqueued fact');
    await A.release({ device_name: 'dr3', lock_key: g.body.lock_key, user_id: 'own' });
    await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'dr3' && f.action === 'released', 5000);
    check(len() === len0 + 4, `two events and two facts in the stream: ${len() - len0} entries`);
    const frames = w.frames.filter(f => f.type !== 'initial_status').map(f => `${f.type}:${f.action || ''}`);
    check(frames.join() === 'lock_update:acquired,lock_update:released', `frames: ${frames.join()}`);
    const hist = (await B.get('/api/events?limit=100')).body.events.map(e => e.action);
    check(hist.join() === 'acquired,released', `history: ${hist.join()}`);
    // a limit counts events, not the facts between them
    const two = (await B.get('/api/events?limit=2')).body.events.map(e => e.action);
    check(two.join() === 'acquired,released', `history, limit 2: ${two.join()}`);
    const r = await B.ws(`?since=${since}`);
    const done = await r.waitFor(f => f.type === 'resume_result', 5000);
    check(done.replayed === 2, `a resume replays the two events: ${done.replayed}`);
    w.close();
    r.close();
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 60000 });

test('self-test: a copy that ignores unqueued facts (planted) is caught by the same comparison', async () => {
  let s;
  try {
    s = await setup({ DEVLOCK_TEST_MIRROR_FAULT: 'unqueued' });
    let caught = null;
    try {
      await generate(s.redis, s.brokers, s.ref, 7, 40, { killB: false });
    } catch (e) {
      caught = e;
    }
    check(caught && /does not answer as device.lua/.test(caught.message), `the planted bug is reported: ${caught && caught.message}`);
    console.log(`# planted bug reported: ${caught.message.split('\n')[0]}`);
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 180000 });

// A queue fact keeps the stream's retention: a broker's reap of a dead
// broker's waiters (session.lua, which is not given --stream-maxlen) must
// not trim the stream to some default (it cut 150 000 kept events to
// ~100 000 under --stream-maxlen 1000000).
test('queue facts keep the stream\'s retention: a reap of a dead broker\'s waiter trims nothing', async () => {
  const redis = await Redis.start();
  const args = ['--stream-maxlen', '1000000'];
  let A, B;
  try {
    const N = 150000;
    redis.cli('EVAL', `for i = 1, ${N} do redis.call('XADD', 'dl:events', '*', 'dev', 'filler', 'j', '{}') end`, '0');
    A = await Broker.start(redis.url, args);
    B = await Broker.start(redis.url, args);
    for (const b of [A, B]) await poll(() => copyReady(b), 10000, 'a read copy');
    const hold = await A.post('/api/lock/request', { device_name: 'rt1', lock_type: 'MAINTENANCE', user_id: 'keeper', timeout: 60 });
    check(hold.body.success, `the holder: ${hold.text}`);
    const ctl = new AbortController();
    const victim = B.post('/api/lock/request', { device_name: 'rt1', lock_type: 'QUEUE_QUEUED', user_id: 'victim', wait: 60 },
      {}, { signal: ctl.signal }).catch(() => null);
    await poll(async () => /"victim"/.test(await deviceText(A, 'rt1')), 4000, 'B\'s waiter in A\'s copy');
    await B.stop('SIGKILL').catch(() => {});
    ctl.abort();
    await victim;
    // A reaps B (its liveness key gone, then the lost window): the waiter's
    // unqueued fact reaches A's copy
    await poll(async () => !/"victim"/.test(await deviceText(A, 'rt1')), 15000, 'A to reap B\'s waiter');
    const len = Number(redis.cli('XLEN', 'dl:events'));
    check(len >= N, `XLEN dl:events after the reap: ${len}, at least the ${N} kept before`);
  } finally {
    for (const b of [A, B]) if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
});
