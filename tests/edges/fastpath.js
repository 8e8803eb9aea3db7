'use strict';
// fastpath.js - issue 14, "Fast paths" (docs/design.md): acquire.lua,
// release.lua and renew.lua first try the common case (one free device;
// the holder's own plain lock with nobody queued; a live lock on one
// device) without the keys walk, and give up to their general path for
// anything else. The two must be indistinguishable
// from outside. One seeded workload runs, step by step, against two fresh
// Redis + broker pairs: F as shipped, G with DEVLOCK_TEST_FAST_PATH=0 (the
// general path only). Every answer, every entry of dl:events and the state
// left in Redis must be the same once the values that differ between any
// two runs (lock keys and other random ids, clock times) are replaced by
// their order of first appearance or a placeholder. MONITOR shows that F
// took its fast paths and G never did. The self-test shows the comparison
// sees a one-field difference. FAST_SEED=n replays a run.
const { Monitor } = require('./_monitor.js');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');
const { prng } = require('../lib/procs.js');

function check(cond, what) { if (!cond) throw new Error(what); }

const ARGS = ['--preempt-grace', '0', '--lock-delay', '60'];

async function side(env) {
  const redis = await Redis.start();
  const mon = new Monitor(redis.port);
  await mon.started();
  const broker = await Broker.start(redis.url, ARGS, { env });
  return { redis, mon, broker };
}

async function teardown(s) {
  if (!s) return;
  s.mon.stop();
  await s.broker.stop().catch(() => {});
  await s.redis.kill();
}

// Random ids and clock times become their order of first appearance (ids)
// or a placeholder (times), in every string of a value.
function normalizer() {
  const ids = new Map();
  const id = (s) => { if (!ids.has(s)) ids.set(s, `<id${ids.size}>`); return ids.get(s); };
  const text = (s) => s
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, id)
    .replace(/\bw[0-9a-f]{24}\b/g, id)
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/\b\d{13,}(-\d+)?\b/g, '<us>');
  const value = (v) => {
    if (typeof v === 'string') return text(v);
    if (Array.isArray(v)) return v.map(value);
    if (v && typeof v === 'object') {
      const o = {};
      for (const k of Object.keys(v)) o[k] = value(v[k]);
      return o;
    }
    return v;
  };
  return value;
}

const DEVICES = ['f0', 'f1', 'f2', 'f3'];
const USERS = ['u0', 'u1', 'u2'];
const TYPES = ['MANUAL_OPERATOR', 'QUEUE_QUEUED', 'MAINTENANCE'];

// The workload: one step at a time, so both sides see the same order.
// Returns the answers, each as [step, status, body].
async function workload(b, redis, seed, steps, plant) {
  const rnd = prng(seed);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const held = new Map(); // device -> {key, user}, as the answers said
  const out = [];
  let planted = !plant;
  const note = (what, r) => out.push([what, r.status, r.body === undefined ? r.text : r.body]);
  const took = (r, devs, user) => {
    if (r.body && r.body.success && r.body.lock_key) for (const d of devs) held.set(d, { key: r.body.lock_key, user });
  };
  for (let i = 0; i < steps; i++) {
    if (!planted && i >= steps / 2) {
      // the self-test's one difference: a step only one side takes
      note('planted', await b.acquire({ device_name: 'fp', lock_type: 'MANUAL_OPERATOR', user_id: 'planted' }));
      planted = true;
    }
    const x = rnd();
    const dev = pick(DEVICES);
    const user = pick(USERS);
    if (x < 0.34) {
      const f = { device_name: dev, lock_type: pick(TYPES), user_id: user };
      // (leases long enough that none ends or is warned of within a run)
      if (rnd() < 0.5) f.timeout = 120 + Math.floor(rnd() * 3) * 60;
      if (rnd() < 0.3) f.reason = `r${i}`;
      if (rnd() < 0.3) f.plan_uid = `p${i}`;
      if (rnd() < 0.15) f.request_id = `q${i % 5}`;
      const r = await b.acquire(f);
      note(`acquire ${dev}`, r);
      took(r, [dev], user);
    } else if (x < 0.64) {
      const h = held.get(dev);
      const y = rnd();
      const f = h ? { device_name: dev, lock_key: h.key, user_id: h.user } : { device_name: dev, lock_key: 'none', user_id: user };
      if (h && y < 0.1) f.lock_key = 'wrong';
      else if (h && y < 0.2) f.user_id = 'other';
      if (rnd() < 0.35) {
        // a renewal instead, with its own lease or the lock's
        if (rnd() < 0.5) f.timeout = 120 + Math.floor(rnd() * 3) * 60;
        note(`renew ${dev}`, await b.post('/api/lock/renew', f));
        continue;
      }
      const r = await b.release(f);
      note(`release ${dev}`, r);
      if (r.body && r.body.success) held.delete(dev);
    } else if (x < 0.72) {
      const devs = [dev, pick(DEVICES)].filter((d, k, a) => a.indexOf(d) === k);
      const r = await b.acquire({ device_names: devs, lock_type: pick(TYPES), user_id: user, timeout: 240 });
      note(`group ${devs}`, r);
      took(r, devs, user);
    } else if (x < 0.82) {
      // a waiter on a held device, then the holder releases: a hand-over
      const h = held.get(dev);
      if (!h) continue;
      // (of the lowest priority, so it neither preempts nor is refused)
      let answered = false;
      const w = b.acquire({ device_name: dev, lock_type: 'QUEUE_QUEUED', user_id: user, wait: 10, timeout: 240 })
        .finally(() => { answered = true; });
      await poll(() => answered || redis.cli('ZCARD', `dl:{${dev}}:waitq`) === '1', 5000, 'the waiter to queue');
      if (!answered) {
        note(`release ${dev} to a waiter`, await b.release({ device_name: dev, lock_key: h.key, user_id: h.user }));
        held.delete(dev);
      }
      const r = await w;
      note(`waited ${dev}`, r);
      took(r, [dev], user);
    } else if (x < 0.87) {
      // an abnormal end: the device is in lock-delay (60 s) from now on
      if (!held.get(dev)) continue;
      note(`force_release ${dev}`, await b.post('/api/lock/force_release', { device_name: dev, reason: 'test' }));
      held.delete(dev);
    } else {
      note(`device ${dev}`, await b.get(`/api/locks/device/${dev}`));
    }
  }
  return out;
}

function stream(redis) {
  return JSON.parse(redis.cli('--json', 'XRANGE', 'dl:events', '-', '+')).map(([, fields]) => {
    const o = {};
    for (let k = 0; k < fields.length; k += 2) o[fields[k]] = fields[k + 1];
    if (o.j) o.j = JSON.parse(o.j);
    return o;
  });
}

function state(redis) {
  const held = redis.cli('--json', 'ZRANGE', 'dl:held', '0', '-1');
  const locks = JSON.parse(held).map(d => [d, JSON.parse(redis.cli('--json', 'HGETALL', `dl:{${d}}:lock`))]);
  return {
    held, locks,
    stats: JSON.parse(redis.cli('--json', 'HGETALL', 'dl:stats')),
    expiry: JSON.parse(redis.cli('--json', 'ZRANGE', 'dl:expiry', '0', '-1')),
  };
}

async function run(seed, steps, plantOnG) {
  let F, G;
  try {
    // G starts once F is read: a broker left idle while the other side
    // runs would close the test client's kept-alive sockets under it
    F = await side({});
    const nf = normalizer();
    const ng = normalizer();
    // each side is read as soon as its workload is done, once the checks
    // that hand-overs were picked up (dl:expiry '^D', 3 s after each) are
    // past: what is left in Redis then does not depend on how long a run took
    const settled = async (side) => {
      await poll(() => !JSON.parse(side.redis.cli('--json', 'ZRANGE', 'dl:expiry', '0', '-1')).some(m => m[0] === '^'),
        15000, 'the hand-overs\' pick-up checks to pass');
      return { stream: stream(side.redis), state: state(side.redis) };
    };
    const af = nf(await workload(F.broker, F.redis, seed, steps, false));
    const rf = await settled(F);
    const monF = F.mon.text;
    await teardown(F);
    F = null;
    G = await side({ DEVLOCK_TEST_FAST_PATH: '0' });
    const ag = ng(await workload(G.broker, G.redis, seed, steps, plantOnG));
    const rg = await settled(G);
    const sf = nf(rf.stream);
    const sg = ng(rg.stream);
    const tf = nf(rf.state);
    const tg = ng(rg.state);
    const monG = G.mon.text;
    return { af, ag, sf, sg, tf, tg, monF, monG };
  } finally {
    await teardown(F);
    await teardown(G);
  }
}

// The first place two normalized histories differ, or ''.
function firstDiff(a, b, what) {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = JSON.stringify(a[i]);
    const y = JSON.stringify(b[i]);
    if (x !== y) return `${what} #${i}:\n  fast:    ${x}\n  general: ${y}`;
  }
  return '';
}

// MONITOR: how many calls took a fast path, seen in their first command:
// an acquire's EXISTS, a release's HGETALL (each general path asks TIME
// first).
function fastTaken(mon) {
  const lines = mon.split('\n');
  let acq = 0;
  let rel = 0;
  for (let i = 0; i + 1 < lines.length; i++) {
    if (/"FCALL" "dl_[0-9a-f]+_acquire"/.test(lines[i]) && /\[0 lua\] "EXISTS"/.test(lines[i + 1])) acq++;
    if (/"FCALL" "dl_[0-9a-f]+_release"/.test(lines[i]) && /\[0 lua\] "HGETALL"/.test(lines[i + 1])) rel++;
  }
  return { acq, rel };
}

test('fast paths: acquire, renew and release answer, log and store exactly as the general path (seeded workload, two brokers)', async () => {
  const seed = Number(process.env.FAST_SEED || 14);
  const steps = Number(process.env.FAST_STEPS || 160);
  const r = await run(seed, steps, false);
  const granted = r.af.filter(([, st, b]) => st === 200 && b && b.success).length;
  const tf = fastTaken(r.monF);
  const tg = fastTaken(r.monG);
  console.log(`# seed ${seed}, ${steps} steps: ${r.af.length} answers (${granted} successes), ${r.sf.length} stream entries; ` +
    `fast paths taken on F: ${tf.acq} acquires, ${tf.rel} releases; on G: ${tg.acq}, ${tg.rel}`);
  check(tf.acq >= 5 && tf.rel >= 5, `F took its fast paths: ${JSON.stringify(tf)}`);
  check(tg.acq === 0 && tg.rel === 0, `G never did: ${JSON.stringify(tg)}`);
  check(r.sf.some(e => e.a === 'acquired') && r.sf.some(e => e.q === '+'), 'the workload granted and queued');
  const d = firstDiff(r.af, r.ag, 'answer') || firstDiff(r.sf, r.sg, 'stream entry') ||
    firstDiff([r.tf], [r.tg], 'state in Redis');
  check(d === '', `the fast path differs from the general path:\n${d}`);
}, { timeoutMs: 120000 });

test('self-test: one planted field of difference in the workload is found', async () => {
  const r = await run(Number(process.env.FAST_SEED || 14), 40, true);
  const d = firstDiff(r.af, r.ag, 'answer') || firstDiff(r.sf, r.sg, 'stream entry');
  check(/planted/.test(d), `the comparison saw the planted reason: ${d || '(no difference)'}`);
}, { timeoutMs: 60000 });
