'use strict';
// keys.js - issue 14, "every script declares its keys" (Redis Cluster's
// rule; docs/design.md "Keys declared"). Checked from outside, by Redis
// itself: MONITOR shows every FCALL with its KEYS, then each command the
// function ran ("[0 lua]"); every key such a command names must be one of
// that call's KEYS. A seeded, bounded workload on two brokers drives every
// script's paths: grants, denials, waits and group waits, hand-overs,
// preemptions with a grace window, renewals, admin releases, leases that
// run out, lock-delay, idempotent retries, requesters that leave, bookings
// (created, bumped, moved, cancelled, started, ended), session locks whose
// socket closes, and a broker SIGKILL whose sessions and waiters another
// broker reaps; B reads devices from Redis (device.lua). The brokers run
// without the in-script check (strict keys, on in every other suite), so a miss shows here rather than stopping them.
// The self-test plants a walk that asks for nothing (DEVLOCK_TEST_KEYS_FAULT
// =walk) and checks that both checkers bite: MONITOR reports the keys, and
// a strict broker stops. KEYS_SEED=n replays a run; KEYS_STEPS=n sets its
// length.
const { Monitor } = require('./_monitor.js');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');

function check(cond, what) { if (!cond) throw new Error(what); }

// seeded, so a failing run can be replayed (tests/lib/procs.js's mulberry32)
const { prng: rng } = require('../lib/procs.js');

// ---- MONITOR ----------------------------------------------------------------

// The arguments of one MONITOR line: "quoted" with \" \\ \n \r \t \xHH
function tokens(line) {
  const out = [];
  const re = /"((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(line))) {
    out.push(m[1].replace(/\\x([0-9a-f]{2})|\\(.)/g, (s, hex, c) => {
      if (hex) return String.fromCharCode(parseInt(hex, 16));
      return { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' }[c] || c;
    }));
  }
  return out;
}

// Where a command's keys are (prelude.lua's KEYS_AT, here written again on
// purpose: a second reader of the same rule, from the Redis manual)
function keysOf(args) {
  const cmd = args[0].toUpperCase();
  const a = args.slice(1);
  if (cmd === 'TIME' || cmd === 'SCAN') return [];
  if (cmd === 'DEL' || cmd === 'EXISTS') return a;
  if (cmd === 'XGROUP' || cmd === 'XINFO') return a.length > 1 ? [a[1]] : [];
  if (cmd === 'XREADGROUP') {
    const i = a.findIndex(x => x.toUpperCase() === 'STREAMS');
    return a.slice(i + 1, i + 1 + (a.length - i - 1) / 2);
  }
  return a.length ? [a[0]] : [];
}

// Every script call MONITOR saw: its function, KEYS, and the keys its
// commands named that were not among them
function calls(text) {
  const out = [];
  let cur = null;
  for (const line of text.split('\n')) {
    const m = line.match(/^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/);
    if (!m) continue;
    const args = tokens(m[2]);
    if (!args.length) continue;
    if (m[1] === 'lua') {
      if (!cur) continue; // a script sent without FCALL (EVAL): not this test's
      for (const k of keysOf(args)) if (!cur.keys.has(k)) cur.missing.push(`${args[0]} ${k}`);
      cur.cmds++;
      continue;
    }
    cur = null;
    if (args[0].toUpperCase() === 'FCALL') {
      const n = Number(args[2]);
      cur = { fn: args[1].replace(/^dl_[0-9a-f]+_/, ''), keys: new Set(args.slice(3, 3 + n)), missing: [], cmds: 0 };
      out.push(cur);
    }
  }
  return out;
}

function report(cs) {
  const bad = cs.filter(c => c.missing.length);
  return bad.slice(0, 5).map(c => `${c.fn}: ${[...new Set(c.missing)].slice(0, 6).join(', ')}`).join('\n  ');
}

async function metric(b, name) {
  const r = await b.get('/metrics');
  const m = r.text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

// ---- the workload -------------------------------------------------------------

const DEVICES = ['k0', 'k1', 'k2', 'k3'];
const TYPES = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'];
const USERS = ['ann', 'bob', 'cy'];

async function workload(redis, brokers, seed, steps) {
  const rand = rng(seed);
  const pick = a => a[Math.floor(rand() * a.length)];
  const held = [];
  const inflight = [];
  const bookings = [];
  const sockets = [];
  const counts = {};
  const count = k => { counts[k] = (counts[k] || 0) + 1; };
  let killed = false, rid = 0;
  const keep = (r, user) => {
    const g = r && r.body;
    if (g && g.success) for (const l of g.locks || [g.lock]) held.push({ dev: l.device_name, key: g.lock_key, user });
    return r;
  };
  const request = (b, fields, ctl) => b.post('/api/lock/request', fields, {}, ctl ? { signal: ctl.signal } : undefined)
    .then(r => keep(r, fields.user_id), () => null);
  for (let step = 0; step < steps; step++) {
    const b = brokers[pick(['A', 'B'])];
    const r = rand();
    const user = pick(USERS), type = pick(TYPES);
    const one = { device_name: pick(DEVICES), lock_type: type, user_id: user };
    const two = () => {
      const a = pick(DEVICES);
      return [a, DEVICES[(DEVICES.indexOf(a) + 1 + Math.floor(rand() * 3)) % DEVICES.length]];
    };
    if (r < 0.14) {
      count('acquire');
      const f = { ...one, request_id: `r${rid++}`, ...(rand() < 0.5 ? { timeout: 0.3 + rand() * 1.5 } : {}) };
      await request(b, f);
      if (rand() < 0.3) { count('retry'); await request(brokers[pick(['A', 'B'])], f); }
    } else if (r < 0.30) {
      count('wait');
      const ctl = new AbortController();
      inflight.push({ ctl, done: request(b, { ...one, request_id: `r${rid++}`, wait: 0.3 + rand() * 3, timeout: 1 + rand() * 2 }, ctl) });
    } else if (r < 0.38) {
      count('group');
      const ctl = new AbortController();
      const { device_name, ...rest } = one; // eslint-disable-line no-unused-vars
      inflight.push({ ctl, done: request(b, { ...rest, device_names: two(), wait: rand() < 0.7 ? 0.3 + rand() * 3 : 0, timeout: 1 + rand() * 2 }, ctl) });
    } else if (r < 0.52) {
      count('release');
      if (held.length) {
        const h = held.splice(Math.floor(rand() * held.length), 1)[0];
        await b.release({ device_name: h.dev, lock_key: h.key, user_id: h.user }).catch(() => null);
      }
    } else if (r < 0.57) {
      count('renew');
      if (held.length) {
        const h = pick(held);
        await b.post('/api/lock/renew', { device_name: h.dev, lock_key: h.key, user_id: h.user, timeout: 0.5 + rand() * 2 }).catch(() => null);
      }
    } else if (r < 0.61) {
      count('force_release');
      await b.post('/api/lock/force_release', { device_name: pick(DEVICES), reason: 'keys test' }).catch(() => null);
    } else if (r < 0.67) {
      count('leave');
      if (inflight.length) inflight.splice(Math.floor(rand() * inflight.length), 1)[0].ctl.abort();
    } else if (r < 0.77) {
      count('booking');
      const start = Date.now() + 200 + rand() * 1000, end = start + 600 + rand() * 2000;
      const res = await b.post('/api/reservations', { device_names: rand() < 0.4 ? two() : [pick(DEVICES)], lock_type: type,
        user_id: user, priority: Math.floor(rand() * 4), start: new Date(start).toISOString(), end: new Date(end).toISOString() }).catch(() => null);
      if (res && res.body && res.body.reservation) bookings.push(res.body.reservation.id);
    } else if (r < 0.81) {
      count('booking change');
      if (bookings.length) {
        const id = pick(bookings);
        if (rand() < 0.5) await b.request('DELETE', `/api/reservations/${id}`).catch(() => null);
        else await b.request('PATCH', `/api/reservations/${id}`, { end: new Date(Date.now() + 500 + rand() * 2000).toISOString() }).catch(() => null);
        await b.get(`/api/reservations/${id}`).catch(() => null);
      }
      await b.get('/api/reservations').catch(() => null);
    } else if (r < 0.88) {
      count('session');
      const w = await b.ws();
      w.send({ type: 'acquire', id: 's', ...one, session: true, timeout: 30 });
      await w.waitFor(f => f.type === 'acquire_result', 5000).catch(() => null);
      sockets.push(w);
      if (rand() < 0.6) { count('session closed'); await sockets.shift().close(); }
    } else if (!killed && step > steps / 2) {
      count('kill B');
      killed = true;
      const w = await brokers.B.ws();
      w.send({ type: 'acquire', id: 's', device_name: 'k9', lock_type: 'MANUAL_OPERATOR', user_id: 'victim', session: true, timeout: 30 });
      await w.waitFor(f => f.type === 'acquire_result', 5000).catch(() => null);
      const ctl = new AbortController();
      const waiter = request(brokers.B, { device_name: 'k9', lock_type: 'QUEUE_QUEUED', user_id: 'w9', wait: 30 }, ctl);
      await poll(async () => /"w9"/.test((await brokers.A.get('/api/locks/device/k9')).text), 4000, 'B\'s waiter to queue');
      await brokers.B.stop('SIGKILL').catch(() => {});
      await waiter;
      // A reaps B: its session's grace starts, its waiter is dropped
      await poll(async () => !/"w9"/.test((await brokers.A.get('/api/locks/device/k9')).text), 10000, 'A to reap B\'s waiter');
      await brokers.B.restart(brokers.env);
    } else {
      count('reads');
      await b.get('/api/locks/status');
      await b.get(`/api/locks/device/${pick(DEVICES)}`);
      await b.get('/api/events?limit=5');
    }
  }
  for (const f of inflight) f.ctl.abort();
  await Promise.all(inflight.map(f => f.done));
  for (const w of sockets) await w.close();
  // leases, windows and session graces end; expire.lua carries them out
  await poll(async () => Number(redis.cli('ZCARD', 'dl:expiry')) === 0, 15000, 'every deadline to pass');
  return counts;
}

const ARGS = ['--preempt-grace', '0.3', '--lock-delay', '0.2', '--session-grace', '0.5'];

async function setup(env, monitor = true) {
  const redis = await Redis.start();
  const mon = monitor ? new Monitor(redis.port) : null;
  if (mon) await mon.started();
  const brokers = {
    A: await Broker.start(redis.url, ARGS, { env }),
    B: await Broker.start(redis.url, ARGS, { env: { ...env, DEVLOCK_DEVICE_READS: 'redis' } }),
  };
  Object.defineProperty(brokers, 'env', { value: { ...env, DEVLOCK_DEVICE_READS: 'redis' } }); // for a restart, not a broker
  return { redis, mon, brokers };
}

async function teardown(s) {
  if (!s) return;
  if (s.mon) s.mon.stop();
  for (const b of Object.values(s.brokers)) await b.stop().catch(() => {});
  await s.redis.kill();
}

test('every key a script touches is one of its KEYS: MONITOR over a seeded workload on two brokers', async () => {
  // seed 2026 (150 steps) found a walk that stopped at the waiter an unwait
  // takes off the queue, so the next one it served was undeclared
  const seed = Number(process.env.KEYS_SEED || 2026);
  const steps = Number(process.env.KEYS_STEPS || 150);
  let s;
  try {
    s = await setup({ DEVLOCK_TEST_STRICT_KEYS: '0' });
    const counts = await workload(s.redis, s.brokers, seed, steps);
    const rounds = await metric(s.brokers.A, 'devlock_script_key_rounds_total');
    await poll(() => /"FCALL"/.test(s.mon.text), 2000, 'MONITOR output');
    const cs = calls(s.mon.text);
    const fns = [...new Set(cs.map(c => c.fn))].sort();
    console.log(`# seed ${seed}, ${steps} steps: ${JSON.stringify(counts)}; ${cs.length} script calls of ${fns.length} functions; A resent ${rounds} with more keys`);
    check(cs.length > 300, `the workload made script calls: ${cs.length}`);
    const per = {};
    for (const c of cs) per[c.fn] = (per[c.fn] || 0) + 1;
    console.log(`# calls per function: ${JSON.stringify(per)}`);
    for (const f of ['acquire', 'release', 'renew', 'expire', 'force_release', 'unwait', 'session', 'snapshot', 'device',
      'reserve', 'reservation', 'reservations', 'stats', 'events']) {
      check(fns.includes(f), `the workload ran ${f}: ${fns}`);
    }
    check(cs.some(c => c.fn === 'session' && [...c.keys].filter(k => k.startsWith('dl:bsess:')).length >= 2),
      'a session call declared another broker\'s keys (the reap)');
    const bad = report(cs);
    check(bad === '', `script calls touched keys they did not declare:\n  ${bad}`);
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 240000 });

test('self-test: a walk that asks for nothing (planted) is caught by MONITOR, and stops a strict broker', async () => {
  // MONITOR: the hand-over of a lock with a waiter touches the waiter's keys
  let s;
  try {
    s = await setup({ DEVLOCK_TEST_STRICT_KEYS: '0', DEVLOCK_TEST_KEYS_FAULT: 'walk' });
    const { A } = s.brokers;
    const h = await A.acquire({ device_name: 'st1', lock_type: 'MAINTENANCE', user_id: 'h' });
    check(h.body && h.body.success, `held: ${h.text}`);
    const w = A.acquire({ device_name: 'st1', lock_type: 'MAINTENANCE', user_id: 'w', wait: 10, request_id: 'q1' });
    await poll(async () => /"w"/.test((await A.get('/api/locks/device/st1')).text), 4000, 'the waiter to queue');
    await A.release({ device_name: 'st1', lock_key: h.body.lock_key, user_id: 'h' });
    check((await w).body.success, 'the waiter was served');
    await poll(() => report(calls(s.mon.text)) !== '', 3000, 'MONITOR to report undeclared keys');
    const bad = report(calls(s.mon.text));
    check(/dl:\{st1\}:lock|dl:waiter:/.test(bad), `the waiter's or the lock's keys are reported: ${bad}`);
  } finally {
    await teardown(s);
  }
  // strict keys: the broker stops, and says why
  try {
    s = await setup({ DEVLOCK_TEST_STRICT_KEYS: '1', DEVLOCK_TEST_KEYS_FAULT: 'walk' }, false);
    const { A } = s.brokers;
    const h = await A.acquire({ device_name: 'st2', lock_type: 'MAINTENANCE', user_id: 'h' });
    const w = A.acquire({ device_name: 'st2', lock_type: 'MAINTENANCE', user_id: 'w', wait: 10 }).catch(() => null);
    await poll(async () => /"w"/.test((await A.get('/api/locks/device/st2')).text), 4000, 'the waiter to queue');
    await A.release({ device_name: 'st2', lock_key: h.body.lock_key, user_id: 'h' }).catch(() => null);
    await poll(() => A.proc.exitCode !== null || A.proc.signalCode !== null, 5000, 'the strict broker to stop');
    await w;
    check(/touched a key it did not declare: .*devlock strict keys/.test(A.log()), `its log says why:\n${A.log().slice(-600)}`);
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 60000 });

test('keys named from the call: an uncontended acquire, renew and release with a request_id take one round each', async () => {
  let s;
  try {
    s = await setup({}, false);
    const { A } = s.brokers;
    await poll(async () => (await A.get('/api/health/ready')).status === 200, 5000, 'ready');
    const before = await metric(A, 'devlock_script_key_rounds_total');
    for (let i = 0; i < 20; i++) {
      const r = await A.acquire({ device_name: `u${i % 3}`, lock_type: 'MANUAL_OPERATOR', user_id: 'u', request_id: `x${i}`, timeout: 30 });
      check(r.body.success, `granted: ${r.text}`);
      await A.post('/api/lock/renew', { device_name: `u${i % 3}`, lock_key: r.body.lock_key, user_id: 'u' });
      await A.release({ device_name: `u${i % 3}`, lock_key: r.body.lock_key, user_id: 'u' });
    }
    const after = await metric(A, 'devlock_script_key_rounds_total');
    check(after === before, `no call was sent again for keys: ${before} -> ${after}`);
  } finally {
    await teardown(s);
  }
}, { timeoutMs: 60000 });
