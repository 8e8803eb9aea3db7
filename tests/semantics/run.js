'use strict';
// tests/semantics/run.js - lock semantics beyond etcd/Consul/Redisson
// (issue 4), against a real redis-server and real devlockd processes:
// wait queues, all-or-nothing groups (and a deadlock-freedom run),
// idempotent retries, session locks, admin force release, graceful
// preemption, lock-delay, expiry warnings, fence validation, history
// filters and paging, status paging over 10 000 locks, and the WebSocket
// command channel. docs/semantics.md explains each behaviour.
//
// No sleeps to synchronise: every wait is for a frame, an HTTP answer, or a
// poll with a deadline. Where a timeout semantics needs time to pass, the
// test waits for the event that proves it and checks its timing.
// Last line printed: "N passed, M failed"; exit status 1 on any failure.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, poll, stopAll, idCmp } = require('../lib/servers.js');

let redis = null;
let brokers = [];         // the brokers of the current set-up
let setupKey = null;      // their flags, to reuse them between tests

// ---- small helpers ---------------------------------------------------------

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(got, want, msg) {
  if (got !== want) throw new Error(`${msg}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`.slice(0, 800));
}
function ok(res, msg) {
  if (!res || res.status !== 200 || !res.body || res.body.success !== true) {
    throw new Error(`${msg}: expected a grant, got ${res && res.status} ${res && res.text}`.slice(0, 800));
  }
  return res.body;
}
function pause(ms) { return new Promise(r => setTimeout(r, ms)); } // only to model work, never to synchronise

// RFC 3339 with microseconds -> microseconds since the epoch
function tsUs(iso) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso || '');
  assert(m, `bad timestamp ${iso}`);
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] || '0').padEnd(6, '0').slice(0, 6));
}

// Stops the current brokers, wipes Redis and starts `n` brokers with `args`
// (reused as they are when the same flags are asked for again).
async function setup(args = [], { n = 2, force = false } = {}) {
  const key = JSON.stringify([args, n]);
  if (!force && key === setupKey) return brokers;
  for (const b of brokers) await b.stop();
  brokers = [];
  setupKey = null;
  eq(redis.cli('FLUSHALL'), 'OK', 'FLUSHALL');
  for (let i = 0; i < n; i++) brokers.push(await Broker.start(redis.url, args));
  setupKey = key;
  return brokers;
}

function acq(b, dev, type, user, extra = {}) {
  const names = Array.isArray(dev) ? { device_names: dev } : { device_name: dev };
  return b.acquire({ ...names, lock_type: type, user_id: user, ...extra });
}
function rel(b, dev, key, user) { return b.release({ device_name: dev, lock_key: key, user_id: user }); }
async function device(b, dev) {
  const r = await b.get(`/api/locks/device/${encodeURIComponent(dev)}`);
  eq(r.status, 200, `GET /api/locks/device/${dev}`);
  return r.body;
}
async function waiterNames(b, dev) { return (await device(b, dev)).waiters.map(w => w.user_id).join(','); }
async function waitersBecome(b, dev, want, ms = 4000) {
  await poll(async () => (await waiterNames(b, dev)) === want, ms, `waiters of ${dev} to be [${want}]`);
}

// A WebSocket that has received its initial_status.
async function watcher(b, query = '') {
  const w = await b.ws(query);
  await w.waitFor(f => f.type === 'initial_status', 5000);
  return w;
}
const upd = (action, dev, extra = () => true) => f =>
  f.type === 'lock_update' && f.action === action && f.device_name === dev && extra(f);

let callSeq = 0;
// Sends a command with a fresh id; resolves with the frame echoing it.
function wsCall(w, msg, ms = 5000) {
  const id = `q${++callSeq}`;
  const from = w.frames.length;
  w.send({ ...msg, id });
  return w.waitFor(f => f.id === id, ms, from);
}

// Lock updates of one device as seen by a watcher.
function updatesOf(w, dev) { return w.updates().filter(f => f.device_name === dev); }

// ---- set-up ---------------------------------------------------------------------

test('start redis-server', async () => { redis = await Redis.start(); });

// ---- wait queues ------------------------------------------------------------------

test('wait: waiters are served by priority, then arrival; replies come when granted', async () => {
  const [A, B] = await setup();
  const w = await watcher(A);
  const h = ok(await acq(A, 'wq1', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  const answered = [];
  const queue = (b, type, user) => acq(b, 'wq1', type, user, { wait: 20, timeout: 60, plan_uid: `plan-${user}` })
    .then(r => { answered.push(user); return r; });
  const pa = queue(B, 'QUEUE_QUEUED', 'a');
  await waitersBecome(A, 'wq1', 'a');
  const pb = queue(A, 'MANUAL_OPERATOR', 'b'); // equal to the holder: queues, does not preempt
  await waitersBecome(A, 'wq1', 'b,a');
  const pc = queue(B, 'QUEUE_QUEUED', 'c');
  await waitersBecome(B, 'wq1', 'b,a,c');

  const d = await device(B, 'wq1');
  eq(d.lock.user_id, 'holder', 'the holder still holds while others wait');
  const wb = d.waiters[0];
  eq(wb.lock_type, 'MANUAL_OPERATOR', 'waiter lock_type');
  eq(wb.priority, 2, 'waiter priority');
  eq(wb.plan_uid, 'plan-b', 'waiter plan_uid');
  assert(!('group' in wb), 'a single-device waiter has no group');
  const span = (tsUs(wb.wait_until) - tsUs(wb.queued_at)) / 1e6;
  assert(span > 19.9 && span < 20.1, `wait_until - queued_at is the wait (${span} s)`);
  const [qb, qa, qc] = d.waiters.map(x => tsUs(x.queued_at));
  assert(qa <= qb && qb <= qc, 'queued_at records arrival (a, then b, then c)');
  eq(answered.length, 0, 'no waiter answered while the device is held');

  // the waiter b is on broker A; release through broker B
  eq((await rel(B, 'wq1', h.lock_key, 'holder')).status, 200, 'release');
  const rb = ok(await pb, 'b');
  eq(rb.lock.user_id, 'b', 'b (higher priority) first');
  eq(rb.lock.plan_uid, 'plan-b', 'the grant carries the waiter\'s fields');
  await waitersBecome(A, 'wq1', 'a,c');
  eq(answered.join(), 'b', 'only b answered');
  eq((await rel(A, 'wq1', rb.lock_key, 'b')).status, 200, 'release b');
  const ra = ok(await pa, 'a');
  await waitersBecome(A, 'wq1', 'c');
  eq((await rel(B, 'wq1', ra.lock_key, 'a')).status, 200, 'release a');
  const rc = ok(await pc, 'c');
  eq(answered.join(), 'b,a,c', 'answer order');
  assert(h.fence < rb.fence && rb.fence < ra.fence && ra.fence < rc.fence, 'fences increase with each hand-over');
  await w.waitFor(upd('acquired', 'wq1', f => f.lock.user_id === 'c'));
  const seq = updatesOf(w, 'wq1').map(f => `${f.action}:${f.lock.user_id}`).join(' ');
  eq(seq, 'acquired:holder released:holder acquired:b released:b acquired:a released:a acquired:c',
    'watchers see each hand-over');
  await rel(A, 'wq1', rc.lock_key, 'c');
  w.close();
});

test('wait: a waiter times out with success false and leaves the queue; expiry serves the next', async () => {
  const [A, B] = await setup();
  const h = ok(await acq(A, 'wt1', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  let t0 = Date.now();
  const r = await acq(B, 'wt1', 'QUEUE_QUEUED', 'late', { wait: 0.6 });
  let dt = Date.now() - t0;
  eq(r.status, 200, 'a timeout is HTTP 200');
  eq(r.body.success, false, 'timed out');
  eq(r.body.message, 'Timed out waiting for wt1', 'message');
  eq(r.body.lock_key, null, 'no lock_key');
  eq(r.body.fence, null, 'no fence');
  assert(dt >= 550 && dt < 4000, `answered at the deadline (${dt} ms)`);
  eq(await waiterNames(A, 'wt1'), '', 'the timed-out waiter left the queue');

  // a group that times out leaves every queue and locks nothing
  t0 = Date.now();
  const g = await acq(A, ['wt2', 'wt1'], 'MANUAL_OPERATOR', 'group', { wait: 0.4 });
  dt = Date.now() - t0;
  eq(g.body.success, false, 'group timed out');
  assert(/^Timed out waiting for wt2, wt1$/.test(g.body.message), g.body.message);
  assert(dt >= 350, `group waited (${dt} ms)`);
  eq((await device(A, 'wt2')).locked, false, 'wt2 not locked by the timed-out group');
  eq(await waiterNames(A, 'wt2'), '', 'group left wt2\'s queue');

  // a strictly higher priority with wait does not wait: it preempts at once
  const w = await watcher(A);
  t0 = Date.now();
  const p = ok(await acq(A, 'wt1', 'QUEUE_EXECUTING', 'qs', { wait: 30, timeout: 1.5 }), 'preemptor');
  dt = Date.now() - t0;
  assert(dt < 2000, `preempted at once (${dt} ms)`);
  eq(p.preempted.lock_key, h.lock_key, 'preempted the holder');

  // a waiter (queued before the lease ends) is served when it expires
  const pn = acq(B, 'wt1', 'QUEUE_EXECUTING', 'next', { wait: 10, timeout: 30 });
  await waitersBecome(A, 'wt1', 'next');
  const next = await pn;
  ok(next, 'served on expiry');
  const ex = await w.waitFor(upd('force_released', 'wt1', f => f.lock.lock_key === p.lock_key));
  eq(ex.cause, 'expired', 'the holder\'s lease expired');
  const got = await w.waitFor(upd('acquired', 'wt1', f => f.lock.user_id === 'next'));
  assert(w.frames.indexOf(ex) < w.frames.indexOf(got), 'expired, then handed to the waiter');
  assert(next.body.fence > p.fence, 'fence increased');

  // input checks
  eq((await acq(A, 'wt1', 'QUEUE_QUEUED', 'x', { wait: -1 })).status, 422, 'negative wait');
  eq((await acq(A, 'wt1', 'QUEUE_QUEUED', 'x', { wait: 'soon' })).status, 422, 'wait not a number');
  eq((await acq(A, 'wt1', 'QUEUE_QUEUED', 'x', { wait: 1e6 })).status, 422, 'wait above --max-wait');
  w.close();
});

test('wait: a waiter whose HTTP connection drops leaves the queue; the next waiter is served', async () => {
  const [A, B] = await setup();
  const w = await watcher(B);
  const h = ok(await acq(A, 'wd1', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  const ctl = new AbortController();
  const gone = A.post('/api/lock/request', { device_name: 'wd1', lock_type: 'MANUAL_OPERATOR', user_id: 'gone', wait: 30 },
    {}, { signal: ctl.signal }).then(() => 'answered', () => 'aborted');
  await waitersBecome(B, 'wd1', 'gone');
  const next = acq(B, 'wd1', 'QUEUE_QUEUED', 'next', { wait: 30, timeout: 60 });
  await waitersBecome(A, 'wd1', 'gone,next');
  ctl.abort();
  eq(await gone, 'aborted', 'the client went away');
  await waitersBecome(B, 'wd1', 'next');
  eq((await rel(B, 'wd1', h.lock_key, 'holder')).status, 200, 'release');
  const n = ok(await next, 'next');
  eq(n.lock.user_id, 'next', 'the remaining waiter got it');
  await w.waitFor(upd('acquired', 'wd1', f => f.lock.user_id === 'next'));
  assert(!updatesOf(w, 'wd1').some(f => f.lock.user_id === 'gone'), 'the departed waiter never held the device');
  await rel(A, 'wd1', n.lock_key, 'next');
  w.close();
});

test('wait: a waiter whose deadline passes while its broker is busy still gets "Timed out" (not 500)', async () => {
  const [A, B] = await setup();
  const h = ok(await acq(B, 'wb1', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  const p = acq(A, 'wb1', 'QUEUE_QUEUED', 'late', { wait: 0.5 });
  await waitersBecome(B, 'wb1', 'late');
  // broker A cannot run its deadline timer while stopped; broker B hands the
  // device over after the deadline (the waiter list drops a waiter whose
  // deadline has passed, which is the proof that it has)
  A.proc.kill('SIGSTOP');
  try {
    await waitersBecome(B, 'wb1', '', 5000);
    eq((await rel(B, 'wb1', h.lock_key, 'holder')).status, 200, 'release after the deadline');
  } finally {
    A.proc.kill('SIGCONT');
  }
  const r = await p;
  eq(r.status, 200, `the late waiter's answer is a timeout, not an error (${r.text})`);
  eq(r.body.success, false, 'success false');
  eq(r.body.message, 'Timed out waiting for wb1', 'message');
  eq((await device(A, 'wb1')).locked, false, 'nobody holds the device');
});

test('wait: a WebSocket waiter leaves the queue when its socket closes', async () => {
  const [A, B] = await setup();
  const h = ok(await acq(A, 'wd2', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  const s = await watcher(B);
  s.send({ type: 'acquire', id: 'w1', device_name: 'wd2', lock_type: 'MANUAL_OPERATOR', user_id: 'wsw', wait: 30 });
  await waitersBecome(A, 'wd2', 'wsw');
  await s.close();
  await waitersBecome(A, 'wd2', '');
  eq((await rel(A, 'wd2', h.lock_key, 'holder')).status, 200, 'release');
  eq((await device(B, 'wd2')).locked, false, 'nobody got the device');
});

test('wait: a waiter that leaves just as it is granted gives the lock back', async () => {
  const [A, B] = await setup();
  const w = await watcher(A);
  // Release and disconnect in the same tick: whichever the broker sees
  // first, the device must end up free and never stay with the leaver.
  for (let i = 0; i < 6; i++) {
    const dev = `wr${i}`;
    const h = ok(await acq(A, dev, 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
    const ctl = new AbortController();
    const b = i % 2 ? A : B;
    const gone = b.post('/api/lock/request', { device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'leaver', wait: 30 },
      {}, { signal: ctl.signal }).then(() => 'answered', () => 'aborted');
    await waitersBecome(A, dev, 'leaver');
    const r = rel(i % 2 ? B : A, dev, h.lock_key, 'holder');
    ctl.abort();
    eq((await r).status, 200, 'release');
    await gone;
    await poll(async () => {
      const d = await device(A, dev);
      return !d.locked && d.waiters.length === 0;
    }, 5000, `${dev} free again`);
    // The watcher's frames travel apart from the read's answer (device reads
    // come from the broker's copy): wait until it has the device's last
    // event, which is a release now that the device is free.
    await poll(async () => {
      const u = updatesOf(w, dev);
      return u.length > 0 && /released$/.test(u[u.length - 1].action);
    }, 5000, `the watcher has ${dev}'s last release`);
    const seq = updatesOf(w, dev).map(f => `${f.action}:${f.lock.user_id}`);
    const k = seq.indexOf('acquired:leaver');
    assert(k < 0 || seq[k + 1] === 'released:leaver', `a grant to the leaver is released (${seq.join(' ')})`);
  }
  w.close();
});

// ---- groups ---------------------------------------------------------------------

test('groups: all devices in one step under one key; release and renew act on the group', async () => {
  const [A, B] = await setup();
  const w = await watcher(B);
  const g = ok(await acq(A, ['ga', 'gb', 'gc'], 'QUEUE_EXECUTING', 'plan1', { plan_uid: 'P1', timeout: 30 }), 'group');
  eq(g.locks.length, 3, 'one lock entry per device');
  eq(g.locks.map(l => l.device_name).join(), 'ga,gb,gc', 'in request order');
  assert(g.locks.every(l => l.lock_key === g.lock_key && JSON.stringify(l.group) === '["ga","gb","gc"]'), 'one key, group listed');
  eq(Object.keys(g.fences).sort().join(), 'ga,gb,gc', 'fences per device');
  assert(g.locks.every(l => g.fences[l.device_name] === l.fence), 'fences match the locks');
  assert(!('preempted' in g), 'nothing preempted');
  for (const d of ['ga', 'gb', 'gc']) await w.waitFor(upd('acquired', d, f => f.lock.lock_key === g.lock_key));
  const st = (await B.get('/api/locks/status')).body;
  eq(st.locks.filter(l => l.lock_key === g.lock_key).length, 3, 'status shows three locks');

  // renew through one device renews the whole group
  const from = w.frames.length;
  const rn = await B.post('/api/lock/renew', { device_name: 'gb', lock_key: g.lock_key, user_id: 'plan1', timeout: 120 });
  eq(rn.status, 200, 'renew');
  for (const d of ['ga', 'gb', 'gc']) await w.waitFor(upd('renewed', d), 5000, from);
  const exp = (await device(A, 'gc')).lock.expires_at;
  eq(exp, rn.body.expires_at, 'the other devices got the new lease too');

  // release through one device releases all
  const r = await rel(B, 'gc', g.lock_key, 'plan1');
  eq(r.status, 200, 'release');
  assert(/ga/.test(r.body.message) && /gb/.test(r.body.message) && /gc/.test(r.body.message), r.body.message);
  for (const d of ['ga', 'gb', 'gc']) await w.waitFor(upd('released', d, f => f.lock.lock_key === g.lock_key));
  for (const d of ['ga', 'gb', 'gc']) eq((await device(A, d)).locked, false, `${d} free`);

  // input checks
  eq((await acq(A, ['ga', 'ga'], 'QUEUE_EXECUTING', 'x')).status, 422, 'duplicate device');
  eq((await acq(A, [], 'QUEUE_EXECUTING', 'x')).status, 422, 'empty group');
  eq((await acq(A, ['ok', 'bad name'], 'QUEUE_EXECUTING', 'x')).status, 400, 'invalid name in a group');
  w.close();
});

// A preemptor that takes one device of a group ends the rest of the group;
// serving those devices must not hand the preemptor's device to a waiter
// first (it was free for a moment inside the script). Before the fix the
// waiting group got both devices and the preemptor's grant then overwrote
// one of them: two holders told they hold pg2.
test('groups: preempting one device of a group, the waiting group does not get the preemptor\'s device', async () => {
  const [A, B] = await setup();
  const h = ok(await acq(A, ['pg1', 'pg2'], 'MANUAL_OPERATOR', 'h', { timeout: 60 }), 'holder group');
  const pw = acq(A, ['pg1', 'pg2'], 'MANUAL_OPERATOR', 'w', { wait: 20, timeout: 60 });
  await waitersBecome(B, 'pg1', 'w');
  const p = ok(await acq(B, 'pg2', 'QUEUE_EXECUTING', 'p', { timeout: 60 }), 'preemptor');
  eq(p.preempted.lock_key, h.lock_key, 'preempted the group');
  const d2 = await device(B, 'pg2');
  eq(d2.lock && d2.lock.lock_key, p.lock_key, 'pg2 is the preemptor\'s');
  const d1 = await device(B, 'pg1');
  eq(d1.locked, false, `pg1 is released with its group, not handed on while pg2 is taken (holder ${JSON.stringify(d1.lock)})`);
  eq(d1.waiters.map(x => x.user_id).join(','), 'w', 'the group still waits');
  eq((await rel(B, 'pg2', p.lock_key, 'p')).status, 200, 'release pg2');
  const g = ok(await pw, 'the waiting group, once pg2 is free');
  eq(g.locks.length, 2, 'both devices');
  eq((await rel(A, 'pg1', g.lock_key, 'w')).status, 200, 'release the group');
});

test('groups: all or nothing under contention; a higher-priority group preempts', async () => {
  const [A, B] = await setup();
  const w = await watcher(A);
  const other = ok(await acq(B, 'gn2', 'MANUAL_OPERATOR', 'other', { timeout: 60 }), 'other');
  const d = await acq(A, ['gn1', 'gn2', 'gn3'], 'MANUAL_OPERATOR', 'planx');
  eq(d.status, 200, 'a denial is HTTP 200');
  eq(d.body.success, false, 'denied: gn2 is held with equal priority');
  assert(/gn2/.test(d.body.message) && /other/.test(d.body.message), `names the blocker: ${d.body.message}`);
  eq(d.body.holder.user_id, 'other', 'holder');
  eq((await device(A, 'gn1')).locked, false, 'gn1 not locked');
  eq((await device(B, 'gn3')).locked, false, 'gn3 not locked');
  // a marker event proves the watcher has seen everything up to now
  const m = ok(await acq(A, 'gn-marker', 'MANUAL_OPERATOR', 'm'), 'marker');
  await w.waitFor(upd('acquired', 'gn-marker'));
  assert(!w.updates().some(f => f.lock.user_id === 'planx'), 'no event for the denied group');
  await rel(A, 'gn-marker', m.lock_key, 'm');

  // a group of strictly higher priority preempts the holder, in one step
  const from = w.frames.length;
  const g = ok(await acq(B, ['gn1', 'gn2', 'gn3'], 'QUEUE_EXECUTING', 'qs', { timeout: 60 }), 'preempting group');
  assert(Array.isArray(g.preempted) && g.preempted.length === 1, 'preempted is an array for groups');
  eq(g.preempted[0].lock_key, other.lock_key, 'the old holder');
  await w.waitFor(upd('acquired', 'gn3', f => f.lock.lock_key === g.lock_key), 5000, from);
  const seq = w.frames.slice(from).filter(f => f.type === 'lock_update' && /^gn[123]$/.test(f.device_name))
    .map(f => `${f.action}:${f.device_name}`).join(' ');
  eq(seq, 'force_released:gn2 acquired:gn1 acquired:gn2 acquired:gn3', 'preemption then the group\'s grants');
  eq(w.frames.slice(from).find(upd('force_released', 'gn2')).cause, 'preempted', 'cause');

  // a group with a device held by an equal priority, with wait, queues on
  // every device; the free devices are reserved for it meanwhile
  const h4 = ok(await acq(A, 'gn5', 'MANUAL_OPERATOR', 'h5', { timeout: 60 }), 'h5');
  const pg = acq(A, ['gn4', 'gn5'], 'MANUAL_OPERATOR', 'waitgroup', { wait: 20, timeout: 60 });
  await waitersBecome(B, 'gn4', 'waitgroup');
  const wl = (await device(B, 'gn5')).waiters;
  eq(JSON.stringify(wl[0].group), '["gn4","gn5"]', 'the waiter lists its group');
  eq((await device(B, 'gn4')).locked, false, 'gn4 is not held while the group waits');
  const steal = await acq(B, 'gn4', 'QUEUE_QUEUED', 'lower');
  eq(steal.body.success, false, 'a lower priority cannot take a device reserved for the waiting group');
  eq((await rel(B, 'gn5', h4.lock_key, 'h5')).status, 200, 'release gn5');
  const pgr = ok(await pg, 'waiting group');
  eq(pgr.locks.length, 2, 'both devices');
  eq((await rel(A, 'gn4', pgr.lock_key, 'waitgroup')).status, 200, 'release group');
  await rel(A, 'gn1', g.lock_key, 'qs');
  w.close();
});

test('groups: preempting one device of a group ends the whole group (no half-locked plan)', async () => {
  const [A, B] = await setup();
  const w = await watcher(A);
  const g = ok(await acq(A, ['hp1', 'hp2'], 'QUEUE_QUEUED', 'plan', { timeout: 60 }), 'group');
  const p = ok(await acq(B, 'hp1', 'MANUAL_OPERATOR', 'op', { timeout: 60 }), 'preemptor of one device');
  eq(p.preempted.lock_key, g.lock_key, 'preempted the group\'s lock on hp1');
  await w.waitFor(upd('acquired', 'hp1', f => f.lock.user_id === 'op'));
  const left = await device(A, 'hp2');
  // the plan's holder can no longer run its plan; its other device must not
  // stay locked under its key (as admin force release ends the whole group)
  eq(left.locked && left.lock.lock_key === g.lock_key, false,
    'hp2 is not left held by the preempted group');
  // and whatever is left, a release with the group's key through any of its names ends it
  const r = await rel(B, 'hp1', g.lock_key, 'plan');
  assert(r.status !== 403 || !(await device(A, 'hp2')).locked, 'release through the preempted name');
  w.close();
});

test('groups: 20 clients with overlapping groups and wait: no deadlock, no double holder, no half group', async () => {
  const [A, B] = await setup();
  const wa = await watcher(A);
  const wb = await watcher(B);
  const DEVS = ['dl0', 'dl1', 'dl2', 'dl3', 'dl4', 'dl5'];
  const MAX_REQUESTS = 300;
  const end = Date.now() + 15000;
  let issued = 0;
  const stats = { granted: 0, timedOut: 0, preempting: 0, maxWaiters: 0, lateGrants: [], other: [], halfGroup: [], releases: {} };
  const grants = [];
  let seed = 12345;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  async function client(i) {
    while (issued < MAX_REQUESTS && Date.now() < end) {
      issued++;
      const k = 2 + rnd(2);
      const pick = [...DEVS];
      const devs = [];
      for (let j = 0; j < k; j++) devs.push(pick.splice(rnd(pick.length), 1)[0]);
      const type = rnd(4) === 0 ? 'MANUAL_OPERATOR' : 'QUEUE_QUEUED';
      const b = rnd(2) ? A : B;
      const t0 = Date.now();
      const r = await acq(b, devs, type, `c${i}`, { wait: 8, timeout: 30 });
      r.ms = Date.now() - t0;
      if (r.status === 200 && r.body.success) {
        stats.granted++;
        const names = (r.body.locks || []).map(l => l.device_name);
        if (names.join() !== devs.join() || Object.keys(r.body.fences || {}).length !== k) stats.halfGroup.push(r.text);
        grants.push({ key: r.body.lock_key, fences: r.body.fences });
        if (r.body.preempted) stats.preempting++;
        const lag = Date.now() - tsUs(r.body.lock.acquired_at) / 1000;
        if (lag > 1500) stats.lateGrants.push(`answered ${Math.round(lag)} ms after the grant, ${r.ms} ms after the request: ${r.text.slice(0, 160)}`);
        await pause(rnd(15));
        const rr = await rel(rnd(2) ? A : B, devs[rnd(k)], r.body.lock_key, `c${i}`);
        stats.releases[rr.status] = (stats.releases[rr.status] || 0) + 1;
      } else if (r.status === 200 && /^Timed out waiting/.test(r.body.message)) {
        stats.timedOut++;
      } else {
        stats.other.push(`${r.status} after ${r.ms} ms: ${r.text}`);
      }
    }
  }
  let running = true;
  const sampler = (async () => { // proves there was contention: queues formed
    while (running) {
      for (const d of DEVS) stats.maxWaiters = Math.max(stats.maxWaiters, (await device(A, d)).waiters.length);
    }
  })();
  await Promise.all(Array.from({ length: 20 }, (_, i) => client(i)));
  running = false;
  await sampler;
  const total = stats.granted + stats.timedOut + stats.other.length;
  eq(stats.other.length, 0, `every request ends granted or timed out (${stats.other.slice(0, 3).join(' | ')})`);
  // a grant answered long after it was made (typically when the wait runs
  // out) means the waiter's broker missed the hand-over
  eq(stats.lateGrants.length, 0, `grants are answered when made, not later (${stats.lateGrants.slice(0, 2).join(' | ')})`);
  eq(stats.halfGroup.length, 0, `every grant gives the whole group (${stats.halfGroup.slice(0, 2).join(' | ')})`);
  assert(total >= 100, `the run made progress (${total} requests)`);
  assert(stats.maxWaiters >= 3, `requests had to queue (at most ${stats.maxWaiters} waiters seen on a device)`);
  assert(stats.granted >= total * 0.9, `almost all granted (${stats.granted}/${total}, ${stats.timedOut} timed out)`);
  for (const s of Object.keys(stats.releases)) {
    // a QUEUE_QUEUED holder may have been preempted by a MANUAL_OPERATOR group
    assert(['200', '403', '404'].includes(s), `release answers ${s}`);
  }
  // every device ends free, with nobody queued
  for (const d of DEVS) {
    await poll(async () => { const x = await device(A, d); return !x.locked && x.waiters.length === 0; }, 5000, `${d} free`);
  }
  // both watchers have every event once a marker arrives
  const m = ok(await acq(A, 'dl-marker', 'MANUAL_OPERATOR', 'm'), 'marker');
  for (const w of [wa, wb]) await w.waitFor(upd('acquired', 'dl-marker'), 10000);
  await rel(A, 'dl-marker', m.lock_key, 'm');
  for (const w of [wa, wb]) {
    const holder = {};
    const seen = {};
    const ups = w.updates();
    const around = (f) => ups.filter(x => x.device_name === f.device_name && idCmp(x.event_id, f.event_id) <= 0).slice(-4)
      .map(x => `${x.event_id} ${x.action}${x.cause ? `/${x.cause}` : ''} ${x.lock.user_id} ${x.lock.lock_key.slice(0, 8)} group=${JSON.stringify(x.lock.group)}`).join('; ');
    for (const f of ups) {
      if (!DEVS.includes(f.device_name)) continue;
      const d = f.device_name;
      if (f.action === 'acquired') {
        assert(!holder[d], `${d} acquired by ${f.lock.lock_key} while held by ${holder[d]}: ${around(f)}`);
        holder[d] = f.lock.lock_key;
        (seen[f.lock.lock_key] = seen[f.lock.lock_key] || {})[d] = f.lock.fence;
      } else if (f.action === 'released' || f.action === 'force_released') {
        eq(f.lock.lock_key, holder[d], `${d} ended by its holder (${around(f)})`);
        holder[d] = null;
      }
    }
    for (const g of grants) {
      eq(JSON.stringify(seen[g.key] || {}, Object.keys(g.fences).sort()), JSON.stringify(g.fences, Object.keys(g.fences).sort()),
        'watchers saw an acquired event for every device of each granted group, with its fence');
    }
  }
  console.log(`   (${total} group requests: ${stats.granted} granted (${stats.preempting} by preemption), ${stats.timedOut} timed out; ` +
    `up to ${stats.maxWaiters} waiters on a device; releases ${JSON.stringify(stats.releases)})`);
  wa.close();
  wb.close();
}, { timeoutMs: 60000 });

// ---- idempotency -------------------------------------------------------------------

test('idempotency: a retry with the same request_id returns the first reply, and only one lock exists', async () => {
  const [A, B] = await setup();
  const w = await watcher(A);
  const first = ok(await acq(A, 'id1', 'MANUAL_OPERATOR', 'alice', { request_id: 'r-1', timeout: 600 }), 'first');
  const again = ok(await acq(B, 'id1', 'MANUAL_OPERATOR', 'alice', { request_id: 'r-1', timeout: 600 }), 'retry');
  eq(again.lock_key, first.lock_key, 'same lock_key');
  eq(again.fence, first.fence, 'same fence');
  eq(again.expires_at, first.expires_at, 'same expires_at');
  // without a request_id the same user is denied (equal priority)
  eq((await acq(A, 'id1', 'MANUAL_OPERATOR', 'alice')).body.success, false, 'a new request is a new request');
  // the same request_id of another user is another request
  eq((await acq(A, 'id1', 'MANUAL_OPERATOR', 'bob', { request_id: 'r-1' })).body.success, false, 'per user');
  const m = ok(await acq(A, 'id-marker', 'MANUAL_OPERATOR', 'm'), 'marker');
  await w.waitFor(upd('acquired', 'id-marker'));
  eq(updatesOf(w, 'id1').filter(f => f.action === 'acquired').length, 1, 'one grant event');
  eq((await A.get('/api/locks/status')).body.locks.filter(l => l.device_name === 'id1').length, 1, 'one lock');
  // kept at least as long as the lease (600 s here), and at least 300 s
  const ttl = Number(redis.cli('PTTL', 'dl:rid:5:alice:r-1'));
  assert(ttl > 595000, `request_id record kept >= the lease (PTTL ${ttl} ms)`);
  // a denial is a reply too: retrying it returns the denial, even once the device is free
  const den = await acq(B, 'id2', 'MANUAL_OPERATOR', 'carol', { request_id: 'r-2' });
  eq(den.body.success, true, 'id2 granted to carol');
  const d1 = await acq(A, 'id2', 'MANUAL_OPERATOR', 'dave', { request_id: 'r-3' });
  eq(d1.body.success, false, 'dave denied');
  await rel(A, 'id2', den.body.lock_key, 'carol');
  const d2 = await acq(A, 'id2', 'MANUAL_OPERATOR', 'dave', { request_id: 'r-3' });
  eq(d2.text, d1.text, 'the retry of a denied request gets the same denial');
  ok(await acq(A, 'id2', 'MANUAL_OPERATOR', 'dave', { request_id: 'r-4' }), 'a new request_id is granted');
  await rel(A, 'id-marker', m.lock_key, 'm');
  w.close();
});

test('idempotency: two tries of one queued request share its outcome', async () => {
  const [A, B] = await setup();
  const h = ok(await acq(A, 'id3', 'MANUAL_OPERATOR', 'holder', { timeout: 60 }), 'holder');
  const p1 = acq(A, 'id3', 'QUEUE_QUEUED', 'q', { request_id: 'rq', wait: 20, timeout: 60 });
  await waitersBecome(A, 'id3', 'q');
  const p2 = acq(B, 'id3', 'QUEUE_QUEUED', 'q', { request_id: 'rq', wait: 20, timeout: 60 });
  // the second try does not queue a second waiter
  const w = await watcher(B);
  eq(await waiterNames(B, 'id3'), 'q', 'one waiter');
  await rel(B, 'id3', h.lock_key, 'holder');
  const [r1, r2] = [ok(await p1, 'first try'), ok(await p2, 'second try')];
  eq(r2.lock_key, r1.lock_key, 'same lock_key');
  eq(r2.fence, r1.fence, 'same fence');
  await w.waitFor(upd('acquired', 'id3'));
  eq(updatesOf(w, 'id3').filter(f => f.action === 'acquired').length, 1, 'one grant');
  await rel(A, 'id3', r1.lock_key, 'q');
  w.close();
});

test('idempotency: the retry works across a broker restart (stored in Redis)', async () => {
  const [A] = await setup([], { n: 1, force: true });
  const first = ok(await acq(A, 'id4', 'QUEUE_EXECUTING', 'qs', { request_id: 'plan-42-start', timeout: 300 }), 'first');
  const g = ok(await acq(A, ['id5', 'id6'], 'QUEUE_EXECUTING', 'qs', { request_id: 'plan-42-group', timeout: 300 }), 'group');
  await A.restart();
  const again = ok(await acq(A, 'id4', 'QUEUE_EXECUTING', 'qs', { request_id: 'plan-42-start', timeout: 300 }), 'retry after restart');
  eq(again.lock_key, first.lock_key, 'same lock_key');
  eq(again.fence, first.fence, 'same fence');
  const g2 = ok(await acq(A, ['id5', 'id6'], 'QUEUE_EXECUTING', 'qs', { request_id: 'plan-42-group', timeout: 300 }), 'group retry');
  eq(JSON.stringify(g2.fences), JSON.stringify(g.fences), 'same group fences');
  const st = (await A.get('/api/locks/status')).body;
  eq(st.total_count, 3, 'still three locks (no second grant)');
  eq((await device(A, 'id4')).lock.fence, first.fence, 'the device keeps the first grant');
  setupKey = null; // next test starts fresh
});

// ---- sessions ----------------------------------------------------------------------

test('sessions: a session lock ends with session_lost when its socket closes and nobody attaches', async () => {
  const [A, B] = await setup(['--session-grace', '0.5']);
  const w = await watcher(B);
  const s = await watcher(A);
  const r = await wsCall(s, { type: 'acquire', device_name: 'ss1', lock_type: 'MANUAL_OPERATOR', user_id: 'gui', session: true, timeout: 60 });
  eq(r.type, 'acquire_result', 'result type');
  eq(r.status, 200, 'status');
  eq(r.success, true, 'granted');
  assert(/^[0-9a-f-]{36}$/.test(r.session_id), `session_id ${r.session_id}`);
  eq(r.lock.session, true, 'the lock is a session lock');
  // a plain WS lock (no session) survives its socket
  const plain = await wsCall(s, { type: 'acquire', device_name: 'ss2', lock_type: 'MANUAL_OPERATOR', user_id: 'gui', timeout: 60 });
  eq(plain.success, true, 'plain lock');
  assert(!('session' in plain.lock), 'plain lock is no session lock');
  const t0 = Date.now();
  await s.close();
  const lost = await w.waitFor(upd('force_released', 'ss1'), 5000);
  const dt = Date.now() - t0;
  eq(lost.cause, 'session_lost', 'cause');
  eq(lost.lock.lock_key, r.lock_key, 'that lock');
  assert(dt >= 450 && dt < 4000, `ended after the grace period (${dt} ms)`);
  eq((await device(A, 'ss1')).locked, false, 'ss1 free');
  const d2 = await device(A, 'ss2');
  eq(d2.locked, true, 'the non-session lock stays');
  // session over HTTP is refused: there is no socket to tie it to
  eq((await acq(A, 'ss3', 'MANUAL_OPERATOR', 'x', { session: true })).status, 422, 'session over HTTP');
  await rel(A, 'ss2', d2.lock.lock_key, 'gui');
  w.close();
});

async function sessionKeptBy(attach, label) {
  const [A, B] = await setup(['--session-grace', '0.5']);
  const dev = `sk-${label}`;
  const w = await watcher(A);
  const s1 = await watcher(A);
  const r = await wsCall(s1, { type: 'acquire', device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'gui', session: true, timeout: 60 });
  eq(r.success, true, 'granted');
  const t0 = Date.now();
  await s1.close();
  // a new socket on the OTHER broker takes the session over within the grace period
  const s2 = await watcher(B);
  const a = await attach(s2, r.session_id);
  assert(Date.now() - t0 < 450, `attached within the grace period (${Date.now() - t0} ms; machine too slow?)`);
  // for twice the grace period: other requests are refused and the lock stays
  let tries = 0;
  const granted = [];
  await poll(async () => {
    const d = await acq(B, dev, 'MANUAL_OPERATOR', 'other');
    if (d.body.success !== false) granted.push(d.text);
    tries++;
    return Date.now() - t0 > 1000;
  }, 5000, '2x the grace period', 50);
  eq(granted.length, 0, `an equal-priority request is still refused (${granted[0]})`);
  assert(tries >= 2, 'tried during the period');
  const st = (await A.get('/api/locks/status')).body.locks.find(l => l.device_name === dev);
  assert(st && st.lock_key === r.lock_key, 'the lock is still in status');
  assert(!w.updates().some(f => f.cause === 'session_lost'), 'no session_lost');
  // the session now lives on s2: closing it starts the grace period again
  const t1 = Date.now();
  await s2.close();
  const lost = await w.waitFor(upd('force_released', dev), 5000);
  eq(lost.cause, 'session_lost', 'lost once the new socket closes');
  assert(Date.now() - t1 >= 450, 'after the grace period');
  w.close();
  return a;
}

test('sessions: kept when a new socket on another broker sends attach_session in time', async () => {
  const a = await sessionKeptBy(async (s, sid) => {
    const res = await wsCall(s, { type: 'attach_session', session_id: sid });
    eq(res.type, 'attach_session_result', 'result type');
    eq(res.session_id, sid, 'session id');
    return res;
  }, 'attach');
  assert(a, 'attached');
});

test('sessions: kept when a new socket sends resume with session_id', async () => {
  await sessionKeptBy(async (s, sid) => {
    const since = s.frames.find(f => f.type === 'initial_status').event_id;
    const res = await wsCall(s, { type: 'resume', since, session_id: sid });
    eq(res.type, 'resume_result', 'result type');
    eq(res.replayed, 0, 'nothing to replay');
    return res;
  }, 'resume');
  const [A] = brokers;
  const s = await watcher(A);
  const bad = await wsCall(s, { type: 'attach_session', session_id: 'nope' });
  eq(bad.type, 'error', 'a malformed session id is an error');
  eq(bad.error, 'validation_error', 'error code');
  s.close();
});

// ---- admin force release -----------------------------------------------------------

test('admin: force_release ends the lock (the whole group) with cause admin and serves waiters', async () => {
  const [A, B] = await setup();
  const w = await watcher(B);
  const g = ok(await acq(A, ['fa1', 'fa2'], 'QUEUE_EXECUTING', 'qs', { timeout: 60 }), 'group');
  const waiting = acq(B, 'fa2', 'QUEUE_EXECUTING', 'next', { wait: 20, timeout: 60 });
  await waitersBecome(A, 'fa2', 'next');
  const r = await A.post('/api/lock/force_release', { device_name: 'fa1', reason: 'stuck plan' });
  eq(r.status, 200, 'force release');
  eq(r.body.success, true, 'success');
  for (const d of ['fa1', 'fa2']) {
    const f = await w.waitFor(upd('force_released', d));
    eq(f.cause, 'admin', 'cause');
    eq(f.admin_reason, 'stuck plan', 'admin_reason');
    eq(f.lock.lock_key, g.lock_key, 'the group\'s lock');
  }
  eq(ok(await waiting, 'waiter').lock.user_id, 'next', 'the waiter is served');
  eq((await device(A, 'fa1')).locked, false, 'fa1 free');
  const nf = await A.post('/api/lock/force_release', { device_name: 'fa1', reason: 'again' });
  eq(nf.status, 404, 'no lock');
  eq((await A.post('/api/lock/force_release', { reason: 'x' })).status, 422, 'device_name required');
  const rel2 = await rel(A, 'fa1', g.lock_key, 'qs');
  eq(rel2.status, 404, 'the old holder\'s release finds no lock');
  w.close();
});

// ---- graceful preemption ---------------------------------------------------------------

test('graceful preemption: the holder gets preempt_requested and releases; the preemptor is granted at once', async () => {
  const [A, B] = await setup(['--preempt-grace', '1']);
  const holder = await watcher(A);
  const w = await watcher(B);
  const h = await wsCall(holder, { type: 'acquire', device_name: 'gp1', lock_type: 'QUEUE_QUEUED', user_id: 'qs', timeout: 60 });
  eq(h.success, true, 'holder');
  // the holder releases as soon as it is asked to
  holder.waitFor(upd('preempt_requested', 'gp1'), 10000)
    .then(() => holder.send({ type: 'release', id: 'bye', device_name: 'gp1', lock_key: h.lock_key, user_id: 'qs' }), () => {});
  const t0 = Date.now();
  const p = ok(await acq(B, 'gp1', 'MANUAL_OPERATOR', 'op', { timeout: 60 }), 'preemptor');
  const dt = Date.now() - t0;
  assert(dt < 800, `granted well before the 1 s window ends (${dt} ms)`);
  const pr = holder.frames.find(upd('preempt_requested', 'gp1'));
  eq(pr.grace_s, 1, 'grace_s');
  eq(pr.requested_by.user_id, 'op', 'requested_by.user_id');
  eq(pr.requested_by.lock_type, 'MANUAL_OPERATOR', 'requested_by.lock_type');
  eq(pr.lock.lock_key, h.lock_key, 'addressed to the holder\'s lock');
  eq((await holder.waitFor(f => f.id === 'bye')).status, 200, 'the holder\'s release');
  await w.waitFor(upd('acquired', 'gp1', f => f.lock.user_id === 'op'));
  const seq = updatesOf(w, 'gp1').map(f => `${f.action}${f.cause ? `/${f.cause}` : ''}:${f.lock.user_id}`).join(' ');
  eq(seq, 'acquired:qs preempt_requested:qs released:qs acquired:op', 'a clean hand-over, no force_released');
  assert(p.fence > h.fence, 'fence increased');
  holder.close();
  w.close();
});

test('graceful preemption: a holder that does not release is preempted when the window ends', async () => {
  const [A, B] = await setup(['--preempt-grace', '1']);
  const w = await watcher(B);
  const h = ok(await acq(A, 'gp2', 'QUEUE_QUEUED', 'qs', { timeout: 60 }), 'holder');
  const t0 = Date.now();
  const p = ok(await acq(B, 'gp2', 'MANUAL_OPERATOR', 'op', { timeout: 60 }), 'preemptor');
  const dt = Date.now() - t0;
  assert(dt >= 950 && dt < 4000, `granted at the end of the 1 s window (${dt} ms)`);
  const req = w.frames.find(upd('preempt_requested', 'gp2'));
  const fr = w.frames.find(upd('force_released', 'gp2'));
  assert(req && fr, 'preempt_requested, then force_released');
  eq(fr.cause, 'preempted', 'cause');
  eq(fr.lock.lock_key, h.lock_key, 'the holder\'s lock');
  const window = (tsUs(fr.timestamp) - tsUs(req.timestamp)) / 1000;
  assert(window >= 999 && window < 1500, `the window lasted ${window} ms (Redis clock)`);
  eq((await device(A, 'gp2')).lock.lock_key, p.lock_key, 'the preemptor holds');
  // meanwhile, an equal or lower priority is still refused
  eq((await acq(A, 'gp2', 'QUEUE_QUEUED', 'x')).body.success, false, 'refused');
  w.close();
});

test('graceful preemption: MAINTENANCE preempts at once even with a grace period', async () => {
  const [A] = await setup(['--preempt-grace', '1']);
  const w = await watcher(A);
  const h = ok(await acq(A, 'gp3', 'MANUAL_OPERATOR', 'op', { timeout: 60 }), 'holder');
  const t0 = Date.now();
  const m = ok(await acq(A, 'gp3', 'MAINTENANCE', 'staff', { timeout: 60 }), 'maintenance');
  assert(Date.now() - t0 < 700, `at once (${Date.now() - t0} ms)`);
  eq(m.preempted.lock_key, h.lock_key, 'preempted field');
  await w.waitFor(upd('acquired', 'gp3', f => f.lock.user_id === 'staff'));
  assert(!w.frames.some(upd('preempt_requested', 'gp3')), 'no preempt_requested for MAINTENANCE');
  eq(w.frames.find(upd('force_released', 'gp3')).cause, 'preempted', 'cause preempted');
  w.close();
});

test('lock objects carry lease_s: the lease as last set (null without expiry), kept by a renew without timeout', async () => {
  const [A, B] = await setup(['--preempt-grace', '1']);
  const renew = (b, dev, key, user, extra = {}) => b.post('/api/lock/renew', { device_name: dev, lock_key: key, user_id: user, ...extra });
  const h = ok(await acq(A, 'ls1', 'MANUAL_OPERATOR', 'op', { timeout: 60 }), 'grant');
  eq(h.lock.lease_s, 60, 'grant lease_s');
  eq((await device(B, 'ls1')).lock.lease_s, 60, 'device status lease_s');
  let r = await renew(B, 'ls1', h.lock_key, 'op', { timeout: 600 });
  eq(r.status, 200, 'renew 600');
  eq(r.body.lock.lease_s, 600, 'renew answer lease_s');
  r = await renew(A, 'ls1', h.lock_key, 'op');
  eq(r.body.lock.lease_s, 600, 'a renew without timeout keeps the lease as last set');
  const left = tsUs(r.body.expires_at) - tsUs(r.body.lock.acquired_at);
  assert(left > 590e6, `expires ~600 s after the grant (${left / 1e6} s)`);
  eq((await device(A, 'ls1')).lock.lease_s, 600, 'status follows');
  const n = ok(await acq(A, 'ls2', 'MANUAL_OPERATOR', 'op', { timeout: null }), 'no-expiry grant');
  eq(n.lock.lease_s, null, 'no expiry: lease_s null');
  eq(n.lock.expires_at, null, 'no expiry: expires_at null');
  const half = ok(await acq(A, 'ls3', 'MANUAL_OPERATOR', 'op', { timeout: 1.5 }), 'fractional');
  eq(half.lock.lease_s, 1.5, 'fractional lease_s');
  for (const [d, k] of [['ls1', h.lock_key], ['ls2', n.lock_key], ['ls3', half.lock_key]]) eq((await rel(A, d, k, 'op')).status, 200, `release ${d}`);
});

test('graceful preemption: the lock carries the open window (preempt) in renew, validate and status answers; the next grant has none', async () => {
  const [A, B] = await setup(['--preempt-grace', '1']);
  const h = ok(await acq(A, 'pw1', 'QUEUE_QUEUED', 'qs', { timeout: 60 }), 'holder');
  assert(!('preempt' in h.lock), 'no window at the grant');
  const renew = () => A.post('/api/lock/renew', { device_name: 'pw1', lock_key: h.lock_key, user_id: 'qs' });
  const validate = fence => A.post('/api/lock/validate', { device_name: 'pw1', fence });
  let r = await renew();
  assert(r.status === 200 && !('preempt' in r.body.lock), 'no window before a preemptor');
  assert(!('preempt' in (await validate(h.fence)).body), 'validate: no window before a preemptor');
  const t0 = Date.now();
  const pending = acq(B, 'pw1', 'MANUAL_OPERATOR', 'op', { timeout: 60 });   // waits for the window
  await poll(async () => 'preempt' in (await device(A, 'pw1')).lock, 3000, 'the window to show on the lock', 20);
  r = await renew();
  eq(r.status, 200, 'the holder may still renew inside the window');
  const pw = r.body.lock.preempt;
  assert(pw, `renew answer has preempt: ${JSON.stringify(r.body.lock)}`);
  eq(pw.grace_s, 1, 'grace_s');
  eq(pw.requested_by.user_id, 'op', 'requested_by.user_id');
  eq(pw.requested_by.lock_type, 'MANUAL_OPERATOR', 'requested_by.lock_type');
  const untilMs = tsUs(pw.until) / 1000;
  assert(untilMs > Date.now() - 200 && untilMs < t0 + 1500, `until is the window's end (${pw.until})`);
  const v = await validate(h.fence);
  eq(v.body.valid, true, 'validate: still valid in the window');
  eq(JSON.stringify(v.body.preempt), JSON.stringify(pw), 'validate carries the same window');
  assert(!('preempt' in (await validate(h.fence + 1000)).body), 'an invalid fence gets no window');
  const p = ok(await pending, 'the preemptor at the end of the window');
  assert(!('preempt' in p.lock), 'the new grant starts without a window');
  assert(!('preempt' in (await device(B, 'pw1')).lock), 'status of the new holder: no window');
  assert(!('preempt' in (await A.post('/api/lock/validate', { device_name: 'pw1', fence: p.fence })).body), 'validate of the new holder: no window');
  eq((await rel(B, 'pw1', p.lock_key, 'op')).status, 200, 'release');
});

test('graceful preemption: a window that closes without a preemption (the preemptor left) leaves the lock without preempt', async () => {
  const [A, B] = await setup(['--preempt-grace', '1']);
  const h = ok(await acq(A, 'pw2', 'QUEUE_QUEUED', 'qs', { timeout: 60 }), 'holder');
  const s = await watcher(B);
  s.send({ type: 'acquire', id: 'p1', device_name: 'pw2', lock_type: 'MANUAL_OPERATOR', user_id: 'leaver', timeout: 60 });
  await poll(async () => 'preempt' in (await device(A, 'pw2')).lock, 3000, 'the window to open', 20);
  await s.close();
  await waitersBecome(A, 'pw2', '');
  // the window's end (1 s) finds nobody to preempt for: the lock stays, the window goes
  await poll(async () => !('preempt' in (await device(A, 'pw2')).lock), 4000, 'the window to close', 20);
  const r = await A.post('/api/lock/renew', { device_name: 'pw2', lock_key: h.lock_key, user_id: 'qs' });
  eq(r.status, 200, 'still the holder\'s');
  assert(!('preempt' in r.body.lock), 'renew answer: no window');
  assert(!('preempt' in (await A.post('/api/lock/validate', { device_name: 'pw2', fence: h.fence })).body), 'validate: no window');
  eq((await rel(A, 'pw2', h.lock_key, 'qs')).status, 200, 'release');
});

// ---- per-device settings from the catalogue ------------------------------------------------

test('catalogue: preempt_grace_s and lock_delay_s per device (session loss starts the delay)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-sem-'));
  const file = path.join(dir, 'devices.json');
  fs.writeFileSync(file, JSON.stringify({ devices: [
    { name: 'slow', preempt_grace_s: 0.6 },
    { name: 'delayed', lock_delay_s: 0.8 },
    'plain',
  ] }));
  const [A] = await setup(['--devices', file, '--session-grace', '0.3'], { n: 1 });
  const w = await watcher(A);
  // slow: graceful; plain: immediate
  ok(await acq(A, 'slow', 'QUEUE_QUEUED', 'qs'), 'slow holder');
  ok(await acq(A, 'plain', 'QUEUE_QUEUED', 'qs'), 'plain holder');
  let t0 = Date.now();
  const fast = ok(await acq(A, 'plain', 'MANUAL_OPERATOR', 'op'), 'plain preemptor');
  assert(Date.now() - t0 < 500 && fast.preempted, 'plain: immediate preemption');
  t0 = Date.now();
  ok(await acq(A, 'slow', 'MANUAL_OPERATOR', 'op'), 'slow preemptor');
  const dt = Date.now() - t0;
  assert(dt >= 550, `slow: waited for its 0.6 s window (${dt} ms)`);
  eq(w.frames.find(upd('preempt_requested', 'slow')).grace_s, 0.6, 'grace_s from the catalogue');
  assert(!w.frames.some(upd('preempt_requested', 'plain')), 'plain has no grace');
  eq((await acq(A, 'unknown', 'QUEUE_QUEUED', 'qs')).status, 404, 'unknown device refused');

  // delayed: a lost session starts the device's lock-delay
  const s = await watcher(A);
  const r = await wsCall(s, { type: 'acquire', device_name: 'delayed', lock_type: 'MANUAL_OPERATOR', user_id: 'gui', session: true });
  eq(r.success, true, 'session lock');
  await s.close();
  const lost = await w.waitFor(upd('force_released', 'delayed'), 5000);
  eq(lost.cause, 'session_lost', 'session lost');
  const d = await acq(A, 'delayed', 'MANUAL_OPERATOR', 'next');
  eq(d.body.success, false, 'refused during the lock-delay');
  assert(/lock-delay/.test(d.body.message), d.body.message);
  const g = await poll(async () => {
    const x = await acq(A, 'delayed', 'MANUAL_OPERATOR', 'next');
    return x.body.success ? x : null;
  }, 5000, 'the lock-delay to end', 25);
  const gap = (tsUs(g.body.lock.acquired_at) - tsUs(lost.timestamp)) / 1000;
  assert(gap >= 799 && gap < 2500, `granted after the 0.8 s delay (${gap} ms)`);
  // plain has no delay after an abnormal end
  w.close();
});

// ---- lock-delay ------------------------------------------------------------------------------

test('lock-delay: after an expiry the device is refused until the delay passes', async () => {
  const [A, B] = await setup(['--lock-delay', '1']);
  const w = await watcher(A);
  const h = ok(await acq(A, 'ld1', 'MANUAL_OPERATOR', 'gone', { timeout: 0.3 }), 'short lease');
  const ex = await w.waitFor(upd('force_released', 'ld1'), 5000);
  eq(ex.cause, 'expired', 'expired');
  const d = await acq(B, 'ld1', 'MANUAL_OPERATOR', 'next');
  eq(d.body.success, false, 'refused in lock-delay');
  eq(d.body.message, 'Device ld1 is in lock-delay after an abnormal release', 'message');
  // even MAINTENANCE: nobody drives the device while a half-dead holder may still
  eq((await acq(A, 'ld1', 'MAINTENANCE', 'staff')).body.success, false, 'MAINTENANCE refused too');
  const g = await poll(async () => {
    const x = await acq(B, 'ld1', 'MANUAL_OPERATOR', 'next');
    return x.body.success ? x : null;
  }, 5000, 'the lock-delay to end', 25);
  const gap = (tsUs(g.body.lock.acquired_at) - tsUs(ex.timestamp)) / 1000;
  assert(gap >= 999 && gap < 3000, `granted ${gap} ms after the expiry (delay 1 s)`);
  assert(g.body.fence > h.fence, 'fence increased');
  // a normal release starts no delay
  await rel(A, 'ld1', g.body.lock_key, 'next');
  ok(await acq(A, 'ld1', 'MANUAL_OPERATOR', 'again'), 'granted at once after a normal release');
  w.close();
});

test('lock-delay: a waiter queued during the delay is served when it ends', async () => {
  const [A, B] = await setup(['--lock-delay', '1']);
  const w = await watcher(B);
  ok(await acq(A, 'ld2', 'MANUAL_OPERATOR', 'gone', { timeout: 0.3 }), 'short lease');
  const ex = await w.waitFor(upd('force_released', 'ld2', f => f.cause === 'expired'), 5000);
  const p = acq(B, 'ld2', 'QUEUE_QUEUED', 'patient', { wait: 10, timeout: 60 });
  await waitersBecome(A, 'ld2', 'patient');
  const r = ok(await p, 'waiter');
  const gap = (tsUs(r.lock.acquired_at) - tsUs(ex.timestamp)) / 1000;
  assert(gap >= 999 && gap < 3000, `served when the delay ended (${gap} ms after the expiry)`);
  w.close();
});

// ---- expiry warning ----------------------------------------------------------------------------

test('expiring: sent at ~80 % of the lease, before the expiry; a renewal re-arms it', async () => {
  const [A] = await setup();
  const w = await watcher(A);
  const g = ok(await acq(A, 'ex1', 'MANUAL_OPERATOR', 'gui', { timeout: 1 }), 'lock');
  const warn = await w.waitFor(upd('expiring', 'ex1'), 5000);
  const acquired = w.frames.find(upd('acquired', 'ex1'));
  const at = (tsUs(warn.timestamp) - tsUs(acquired.timestamp)) / 1000;
  assert(at >= 700 && at < 1000, `expiring at ${at} ms of a 1000 ms lease`);
  assert(warn.expires_in_ms > 0 && warn.expires_in_ms <= 300, `expires_in_ms ${warn.expires_in_ms}`);
  eq(warn.lock.lock_key, g.lock_key, 'for that lock');
  assert(!w.frames.some(upd('force_released', 'ex1')), 'before the expiry');
  // renew on the warning: no expiry, a new warning ~0.8 s after the renewal
  const rn = await A.post('/api/lock/renew', { device_name: 'ex1', lock_key: g.lock_key, user_id: 'gui', timeout: 1 });
  eq(rn.status, 200, 'renew');
  const from = w.frames.indexOf(warn) + 1;
  const renewed = await w.waitFor(upd('renewed', 'ex1'), 5000, from);
  const warn2 = await w.waitFor(upd('expiring', 'ex1'), 5000, from);
  const at2 = (tsUs(warn2.timestamp) - tsUs(renewed.timestamp)) / 1000;
  assert(at2 >= 700 && at2 < 1000, `second warning at ${at2} ms after the renewal`);
  const ex = await w.waitFor(upd('force_released', 'ex1'), 5000);
  eq(ex.cause, 'expired', 'then it expires');
  const seq = updatesOf(w, 'ex1').map(f => f.action).join(' ');
  eq(seq, 'acquired expiring renewed expiring force_released', 'event order');
  // a lock released before 80 % gets no warning
  const q = ok(await acq(A, 'ex2', 'MANUAL_OPERATOR', 'gui', { timeout: 0.5 }), 'ex2');
  await rel(A, 'ex2', q.lock_key, 'gui');
  const m = ok(await acq(A, 'ex2', 'MANUAL_OPERATOR', 'gui', { timeout: 0.6 }), 'ex2 again');
  await w.waitFor(upd('force_released', 'ex2', f => f.lock.lock_key === m.lock_key), 5000);
  const warned = updatesOf(w, 'ex2').filter(f => f.action === 'expiring').map(f => f.lock.lock_key);
  eq(warned.join(), m.lock_key, 'only the lock still held at 80 % was warned');
  w.close();
});

// ---- fence validation ----------------------------------------------------------------------------

test('validate: current fence valid, stale fence invalid, no lock -> valid false, current_fence null', async () => {
  const [A, B] = await setup();
  const v = (b, dev, fence) => b.post('/api/lock/validate', { device_name: dev, fence });
  const g1 = ok(await acq(A, 'vf1', 'QUEUE_QUEUED', 'old', { timeout: 60 }), 'first');
  let r = await v(B, 'vf1', g1.fence);
  eq(r.status, 200, 'validate');
  eq(r.body.valid, true, 'current fence valid');
  eq(r.body.current_fence, g1.fence, 'current_fence');
  const g2 = ok(await acq(B, 'vf1', 'QUEUE_EXECUTING', 'new', { timeout: 60 }), 'preemptor');
  r = await v(A, 'vf1', g1.fence);
  eq(r.body.valid, false, 'stale fence invalid');
  eq(r.body.current_fence, g2.fence, 'current_fence is the new one');
  eq((await v(A, 'vf1', g2.fence)).body.valid, true, 'new fence valid');
  eq((await v(A, 'vf1', g2.fence + 1)).body.valid, false, 'a future fence is not valid');
  await rel(B, 'vf1', g2.lock_key, 'new');
  r = await v(A, 'vf1', g2.fence);
  eq(r.body.valid, false, 'released: invalid');
  eq(r.body.current_fence, null, 'no lock: current_fence null');
  r = await v(A, 'never-locked', 1);
  eq(r.body.valid, false, 'never locked');
  eq(r.body.current_fence, null, 'never locked: null');
  eq((await A.post('/api/lock/validate', { device_name: 'vf1' })).status, 422, 'fence required');
  eq((await A.post('/api/lock/validate', { device_name: 'vf1', fence: '3' })).status, 422, 'fence must be a number');
  eq((await v(A, 'bad name', 1)).status, 400, 'invalid device name');
});

// ---- history -------------------------------------------------------------------------------------

test('history: device and plan_uid filters; since paging with last_event_id', async () => {
  const [A, B] = await setup([], { force: true });
  const make = async (dev, plan) => {
    const g = ok(await acq(A, dev, 'QUEUE_EXECUTING', 'qs', { plan_uid: plan, timeout: 60 }), `${dev}`);
    eq((await rel(B, dev, g.lock_key, 'qs')).status, 200, 'release');
  };
  await make('hx', 'P1');
  await make('hy', 'P2');
  await make('hx', 'P2');
  await make('hz', 'P1');
  await make('hy', null);
  const all = (await A.get('/api/events?limit=1000')).body;
  eq(all.count, 10, 'ten events');
  for (let i = 1; i < all.events.length; i++) assert(idCmp(all.events[i - 1].event_id, all.events[i].event_id) < 0, 'oldest first');
  eq(all.last_event_id, all.events[9].event_id, 'last_event_id');

  const byDev = (await B.get('/api/events?device=hx')).body;
  eq(byDev.count, 4, 'device filter count');
  assert(byDev.events.every(e => e.device_name === 'hx'), 'device filter');
  const byPlan = (await A.get('/api/events?plan_uid=P1')).body;
  eq(byPlan.events.map(e => e.device_name).join(), 'hx,hx,hz,hz', 'plan_uid filter');
  assert(byPlan.events.every(e => e.lock.plan_uid === 'P1'), 'plan_uid of each');
  const both = (await A.get('/api/events?plan_uid=P2&device=hy')).body;
  eq(both.events.map(e => e.action).join(), 'acquired,released', 'both filters');
  eq((await A.get('/api/events?device=nothing-here')).body.count, 0, 'no match');

  // paging: limit 3 through everything, each page strictly after the last
  const seen = [];
  let since = '';
  for (let pages = 0; pages < 10; pages++) {
    const p = (await A.get(`/api/events?limit=3${since ? `&since=${since}` : ''}`)).body;
    if (p.count === 0) break;
    assert(p.count <= 3, 'page size');
    seen.push(...p.events.map(e => e.event_id));
    since = p.last_event_id;
  }
  eq(seen.join(), all.events.map(e => e.event_id).join(), 'pages cover every event once, in order');
  // filtered paging: last_event_id moves past non-matching events
  const f1 = (await A.get('/api/events?plan_uid=P1&limit=2')).body;
  eq(f1.count, 2, 'first filtered page');
  const f2 = (await A.get(`/api/events?plan_uid=P1&limit=2&since=${f1.last_event_id}`)).body;
  eq(f2.events.map(e => e.device_name).join(), 'hz,hz', 'second filtered page');
  const f3 = (await A.get(`/api/events?plan_uid=P1&limit=2&since=${f2.last_event_id}`)).body;
  eq(f3.count, 0, 'no third page');
  eq((await A.get('/api/events?since=yesterday')).status, 400, 'bad since');
  eq((await A.get('/api/events?limit=0')).status, 400, 'bad limit');
});

test('history: --stream-maxlen bounds the kept events; resume from a trimmed id gets resume_gap', async () => {
  const [A] = await setup(['--stream-maxlen', '10'], { n: 1 });
  const s = await watcher(A);
  let first = null;
  for (let i = 0; i < 160; i++) {
    const g = ok(await acq(A, 'tr1', 'MANUAL_OPERATOR', 'u'), 'grant');
    await rel(A, 'tr1', g.lock_key, 'u');
  }
  const start = (await s.waitFor(upd('acquired', 'tr1'))).event_id;
  const all = (await A.get('/api/events?limit=1000')).body;
  first = all.events[0];
  assert(all.count < 320, `trimmed (approximately) to --stream-maxlen: ${all.count} of 320 kept`);
  assert(all.count >= 10, `at least --stream-maxlen kept (${all.count})`);
  const r = await watcher(A);
  const from = r.frames.length;
  r.send({ type: 'resume', id: 'rs', since: start });
  const gap = await r.waitFor(f => f.type === 'error' && f.id === 'rs', 5000, from);
  eq(gap.error, 'resume_gap', 'gap');
  const snap = await r.waitFor(f => f.type === 'initial_status', 5000, from);
  assert(r.frames.indexOf(snap) > r.frames.indexOf(gap), 'a fresh initial_status follows');
  // resume from a kept id replays what came after it
  const r2 = await watcher(A);
  r2.send({ type: 'resume', id: 'ok', since: first.event_id });
  const res = await r2.waitFor(f => f.type === 'resume_result' && f.id === 'ok', 5000);
  eq(res.replayed, all.count - 1, 'replayed the kept events after the id');
  s.close(); r.close(); r2.close();
});

// ---- WebSocket command channel ---------------------------------------------------------------------

test('ws commands: acquire, renew, release with ids; errors as results; wait over WS', async () => {
  const [A, B] = await setup();
  const s = await watcher(A);
  s.send({ type: 'acquire', id: 7, device_name: 'wc1', lock_type: 'MANUAL_OPERATOR', user_id: 'gui', timeout: 30 });
  const a = await s.waitFor(f => f.type === 'acquire_result' && f.id === 7);
  eq(a.status, 200, 'status');
  eq(a.success, true, 'granted');
  assert(/^[0-9a-f-]{36}$/.test(a.lock_key) && Number.isInteger(a.fence), 'lock_key, fence');
  assert(!('session_id' in a), 'no session_id without session');
  const n = await wsCall(s, { type: 'renew', device_name: 'wc1', lock_key: a.lock_key, user_id: 'gui', timeout: 90 });
  eq(n.type, 'renew_result', 'renew_result');
  eq(n.status, 200, 'renewed');
  const left = (tsUs(n.expires_at) - tsUs(n.lock.acquired_at)) / 1e6;
  assert(left > 89, `new lease (${left} s)`);
  const bad = await wsCall(s, { type: 'release', device_name: 'wc1', lock_key: '00000000-0000-4000-8000-000000000000', user_id: 'gui' });
  eq(bad.type, 'release_result', 'release_result for an error');
  eq(bad.status, 403, 'wrong key');
  eq(bad.success, false, 'success false');
  eq(bad.error, 'forbidden', 'error code');
  const inv = await wsCall(s, { type: 'acquire', device_name: 'wc1', lock_type: 'BOSS', user_id: 'gui' });
  eq(inv.type, 'acquire_result', 'acquire_result for invalid input');
  eq(inv.status, 422, 'validation');
  const den = await wsCall(s, { type: 'acquire', device_name: 'wc1', lock_type: 'QUEUE_QUEUED', user_id: 'other' });
  eq(den.status, 200, 'a denial is status 200');
  eq(den.success, false, 'denied');
  eq(den.holder.lock_key, a.lock_key, 'holder');
  // wait over the WebSocket: the result comes when granted
  const s2 = await watcher(B);
  s2.send({ type: 'acquire', id: 'later', device_name: 'wc1', lock_type: 'QUEUE_QUEUED', user_id: 'patient', wait: 20 });
  await waitersBecome(A, 'wc1', 'patient');
  eq(s2.frames.some(f => f.id === 'later'), false, 'no result while waiting');
  const r = await wsCall(s, { type: 'release', device_name: 'wc1', lock_key: a.lock_key, user_id: 'gui' });
  eq(r.status, 200, 'released');
  const got = await s2.waitFor(f => f.type === 'acquire_result' && f.id === 'later', 5000);
  eq(got.success, true, 'the waiter\'s result');
  eq(got.lock.user_id, 'patient', 'its lock');
  // ids of any JSON type are echoed as they were sent
  const obj = { n: [1, 2] };
  s.send({ type: 'ping', id: obj });
  const pong = await s.waitFor(f => f.type === 'pong' && f.id && f.id.n);
  eq(JSON.stringify(pong.id), JSON.stringify(obj), 'object id echoed');
  s.close(); s2.close();
});

test('ws commands: subscribe limits lock_updates to the listed devices; [] means all again', async () => {
  const [A, B] = await setup();
  const s = await watcher(A);
  const sub = await wsCall(s, { type: 'subscribe', devices: ['sub1', 'sub2'] });
  eq(sub.type, 'subscribe_result', 'subscribe_result');
  eq(JSON.stringify(sub.devices), '["sub1","sub2"]', 'devices');
  const from = s.frames.length;
  const o = ok(await acq(B, 'other1', 'MANUAL_OPERATOR', 'u'), 'other1');
  await rel(B, 'other1', o.lock_key, 'u');
  const a = ok(await acq(B, 'sub2', 'MANUAL_OPERATOR', 'u'), 'sub2');
  await s.waitFor(upd('acquired', 'sub2'), 5000, from);
  // events are delivered in stream order: other1's came before sub2's
  assert(!s.frames.slice(from).some(f => f.type === 'lock_update' && f.device_name === 'other1'), 'other devices filtered out');
  // a group event for a subscribed device arrives; the other group members do not
  const g = ok(await acq(B, ['other2', 'sub1'], 'MANUAL_OPERATOR', 'u'), 'group');
  await s.waitFor(upd('acquired', 'sub1'), 5000, from);
  assert(!s.frames.slice(from).some(f => f.device_name === 'other2'), 'other2 filtered out');
  // resubscribe to everything
  const all = await wsCall(s, { type: 'subscribe', devices: [] });
  eq(all.devices, null, 'all devices again');
  const from2 = s.frames.length;
  await rel(A, 'other2', g.lock_key, 'u');
  await s.waitFor(upd('released', 'other2'), 5000, from2);
  await s.waitFor(upd('released', 'sub1'), 5000, from2);
  // errors
  const e1 = await wsCall(s, { type: 'subscribe', devices: 'sub1' });
  eq(e1.type, 'error', 'not an array');
  const e2 = await wsCall(s, { type: 'subscribe', devices: ['bad name'] });
  eq(e2.error, 'invalid_device_name', 'invalid name');
  await rel(A, 'sub2', a.lock_key, 'u');
  s.close();
});

// ---- status paging over 10 000 locks ------------------------------------------------------------

test('status paging: 10 000 locks, limit=1000 via next_cursor: each seen once, sorted, total_count 10000', async () => {
  const [A, B] = await setup([], { force: true });
  const N = 10000;
  const names = Array.from({ length: N }, (_, i) => `pg${String(i).padStart(5, '0')}`);
  // four sockets, each with its acquires pipelined (no watcher is kept open)
  const socks = await Promise.all([A, B, A, B].map(b => watcher(b)));
  // results only: the 10 000 lock_updates would be noise
  for (const s of socks) eq((await wsCall(s, { type: 'subscribe', devices: ['no-such-device'] })).type, 'subscribe_result', 'subscribe');
  // Each socket keeps a window of acquires in flight: an unbounded burst
  // queues more Redis work than --redis-timeout-ms allows and is answered
  // 503 (see the report); a 503 is retried with the same request_id.
  const WINDOW = 150;
  let retried = 0;
  const failures = [];
  await Promise.all(socks.map(async (s, k) => {
    const pending = new Map();
    s.sock.on('message', (data) => {
      const f = JSON.parse(String(data));
      if (f.type === 'acquire_result' && pending.has(f.id)) { pending.get(f.id)(f); pending.delete(f.id); }
    });
    const one = (d) => new Promise((resolve) => {
      pending.set(d, resolve);
      s.send({ type: 'acquire', id: d, request_id: d, device_name: d, lock_type: 'QUEUE_QUEUED', user_id: 'bulk', timeout: 600 });
    });
    const mine = names.filter((_, i) => i % 4 === k);
    let next = 0;
    const lane = async () => {
      while (next < mine.length) {
        const d = mine[next++];
        let f = await one(d);
        for (let t = 0; t < 5 && f.status === 503; t++) { retried++; f = await one(d); }
        if (!f.success) failures.push(f);
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, lane));
  }));
  eq(failures.length, 0, `every acquire granted (${JSON.stringify(failures.slice(0, 3))})`);
  if (retried) console.log(`   (${retried} acquires answered 503 and retried with their request_id)`);
  for (const s of socks) s.close();
  for (const b of [A, B]) {
    // A broker reads from its copy of the lock table, which follows the
    // other broker's grants within the stream's latency. While its copy has
    // not yet read up to its own last write, a read waits, then is answered
    // from Redis (--redis-timeout-ms): such an answer counts every lock
    // while the copy, ready a moment later, may still lack some of the
    // other broker's. So a whole pass over the pages is made again until
    // every page of it counts N (a copy that never catches up times out).
    let seen = [];
    let pages = 0;
    await poll(async () => {
      seen = [];
      pages = 0;
      let cursor = null;
      for (;;) {
        if (++pages > 12) return false;
        const r = await b.get(`/api/locks/status?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        eq(r.status, 200, 'status page');
        if (r.body.total_count !== N) return false;
        assert(r.body.locks.length <= 1000, 'page size');
        seen.push(...r.body.locks.map(l => l.device_name));
        assert('next_cursor' in r.body, 'next_cursor present when paging');
        cursor = r.body.next_cursor;
        if (!cursor) return true;
      }
    }, 10000, 'a pass over the pages in which every page counts every lock');
    assert(pages <= 12, 'a bounded number of pages');
    eq(seen.length, N, 'every lock seen');
    eq(new Set(seen).size, N, 'each once');
    eq(seen.join(), names.join(), 'in name order');
  }
  // without limit: the old behaviour, every lock at once, no next_cursor
  const whole = await A.get('/api/locks/status');
  eq(whole.body.locks.length, N, 'unpaged: all locks');
  eq(whole.body.total_count, N, 'unpaged total_count');
  assert(!('next_cursor' in whole.body), 'unpaged: no next_cursor');
  eq((await A.get('/api/locks/status?limit=0')).status, 400, 'limit 0');
  eq((await A.get('/api/locks/status?limit=10&cursor=bad%20name')).status, 400, 'bad cursor');
  setupKey = null;
}, { timeoutMs: 90000 });

// ---- run ------------------------------------------------------------------------------------------

test('ws ?since= at connect: the replay comes first, then resume_result, then live events; no initial_status', async () => {
  const b = await Broker.start(redis.url, ['--stream-maxlen', '100000']);
  try {
    const first = await b.acquire({ device_name: 'cs1', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
    assert(first.body.success, 'cs1');
    const since = (await b.get('/api/events?device=cs1')).body.events.slice(-1)[0].event_id;
    await b.acquire({ device_name: 'cs2', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
    await b.acquire({ device_name: 'cs3', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
    const w = await b.ws(`?since=${since}`);
    const done = await w.waitFor(f => f.type === 'resume_result');
    eq(done.replayed, 2, 'replayed the two later events');
    await b.acquire({ device_name: 'cs4', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
    await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'cs4');
    eq(w.frames.map(f => f.type === 'lock_update' ? f.device_name : f.type).join(), 'cs2,cs3,resume_result,cs4', 'order');
    w.close();
  } finally { await b.stop(); }
});

(async () => {
  const failed = await run({
    onFail: async (name) => {
      for (const [i, b] of brokers.entries()) {
        console.log(`--- devlockd #${i} log (last 4000 chars) after "${name}" ---\n${b.log().slice(-4000)}`);
      }
      if (redis && redis.proc && redis.proc.logFile) {
        try { console.log(`--- redis log ---\n${fs.readFileSync(redis.proc.logFile, 'utf8').slice(-1500)}`); } catch (e) { /* none */ }
      }
    },
  });
  await stopAll();
  // the harness prints "N passed, M failed" last
  process.exitCode = failed ? 1 : 0;
})();
