'use strict';
// Lock semantics beyond the old service (issue 4), against real
// redis-server and devlockd processes: wait queues, plan groups,
// idempotency, the WebSocket command channel, session locks, force
// release, graceful preemption, lock-delay, expiry warnings, fence checks,
// history and paging. Last line: "N passed, M failed".
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, poll, stopAll, idCmp } = require('../lib/servers.js');

let redis, A, B, current;
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`.slice(0, 600)); }
const acq = (b, dev, type, user, extra = {}) => b.acquire({ device_name: dev, lock_type: type, user_id: user, ...extra });
const rel = (b, dev, key, user) => b.release({ device_name: dev, lock_key: key, user_id: user });
async function waiters(b, dev) { return (await b.get(`/api/locks/device/${dev}`)).body.waiters; }
async function fresh(...args) {
  redis.cli('FLUSHALL');
  for (const b of [A, B]) if (b) await b.stop();
  A = await Broker.start(redis.url, args);
  B = await Broker.start(redis.url, args);
  current = A;
}

test('start redis-server', async () => { redis = await Redis.start(); });

test('wait: waiters served by priority, then arrival; across two brokers', async () => {
  await fresh();
  const h = await acq(A, 'q1', 'MANUAL_OPERATOR', 'holder');
  const order = [];
  const wa = acq(B, 'q1', 'QUEUE_QUEUED', 'a', { wait: 10 }).then(r => { order.push('a'); return r; });
  await poll(async () => (await waiters(A, 'q1')).length === 1, 3000, 'a queued');
  const wb = acq(A, 'q1', 'MANUAL_OPERATOR', 'b', { wait: 10 }).then(r => { order.push('b'); return r; });
  await poll(async () => (await waiters(A, 'q1')).length === 2, 3000, 'b queued');
  const wc = acq(B, 'q1', 'QUEUE_QUEUED', 'c', { wait: 10 }).then(r => { order.push('c'); return r; });
  await poll(async () => (await waiters(A, 'q1')).length === 3, 3000, 'c queued');
  const ws = await waiters(B, 'q1');
  eq(ws.map(w => w.user_id).join(), 'b,a,c', 'waiters listed in service order');
  assert(ws.every(w => w.wait_until && w.queued_at && Number.isInteger(w.priority)), 'waiter fields');
  await rel(B, 'q1', h.body.lock_key, 'holder'); // released through the other broker
  const rb = await wb;
  eq(rb.body.success, true, 'b granted');
  eq(order.join(), 'b', 'b first');
  await rel(A, 'q1', rb.body.lock_key, 'b');
  const ra = await wa;
  eq(ra.body.success, true, 'a granted');
  await rel(A, 'q1', ra.body.lock_key, 'a');
  const rc = await wc;
  eq(rc.body.success, true, 'c granted');
  eq(order.join(), 'b,a,c', 'order');
  assert(rb.body.fence < ra.body.fence && ra.body.fence < rc.body.fence, 'fences increase');
});

test('wait: times out with success false; a higher priority still preempts at once', async () => {
  await fresh();
  await acq(A, 'q2', 'MANUAL_OPERATOR', 'holder');
  const t0 = Date.now();
  const r = await acq(A, 'q2', 'QUEUE_QUEUED', 'w', { wait: 0.5 });
  const ms = Date.now() - t0;
  eq(r.body.success, false, 'timed out');
  assert(/Timed out/.test(r.body.message), r.body.message);
  assert(ms >= 450, `waited the whole 0.5 s (${ms} ms)`);
  eq((await waiters(A, 'q2')).length, 0, 'left the queue');
  const p = await acq(A, 'q2', 'QUEUE_EXECUTING', 'qs', { wait: 10 });
  eq(p.body.success, true, 'preempted at once');
  eq(p.body.preempted.user_id, 'holder', 'preempted the holder');
});

test('wait: a waiter whose connection drops leaves the queue; the next one is served', async () => {
  await fresh();
  const h = await acq(A, 'q3', 'MANUAL_OPERATOR', 'holder');
  const ctl = new AbortController();
  const gone = A.post('/api/lock/request', { device_name: 'q3', lock_type: 'MANUAL_OPERATOR', user_id: 'gone', wait: 30 }, {}, { signal: ctl.signal }).catch(() => 'aborted');
  await poll(async () => (await waiters(A, 'q3')).length === 1, 3000, 'gone queued');
  const next = acq(B, 'q3', 'QUEUE_QUEUED', 'next', { wait: 30 });
  await poll(async () => (await waiters(A, 'q3')).length === 2, 3000, 'next queued');
  ctl.abort();
  eq(await gone, 'aborted', 'the client went away');
  await poll(async () => (await waiters(A, 'q3')).map(w => w.user_id).join() === 'next', 3000, 'gone left the queue');
  await rel(A, 'q3', h.body.lock_key, 'holder');
  const n = await next;
  eq(n.body.success, true, 'the next waiter is served');
  eq((await A.get('/api/locks/device/q3')).body.lock.user_id, 'next', 'held by next');
});

test('groups: all or none; one lock entry, fence and event per device; release by key ends the group', async () => {
  await fresh();
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  await acq(A, 'g2', 'MANUAL_OPERATOR', 'other');
  const denied = await A.acquire({ device_names: ['g1', 'g2', 'g3'], lock_type: 'MANUAL_OPERATOR', user_id: 'plan' });
  eq(denied.body.success, false, 'denied');
  eq(denied.body.holder.device_name, 'g2', 'names the blocking device');
  for (const d of ['g1', 'g3']) eq((await A.get(`/api/locks/device/${d}`)).body.locked, false, `${d} not half-held`);
  const g = await A.acquire({ device_names: ['g1', 'g3', 'g4'], lock_type: 'QUEUE_EXECUTING', user_id: 'plan', plan_uid: 'P1' });
  eq(g.body.success, true, 'granted');
  eq(g.body.locks.length, 3, 'three lock entries');
  for (const l of g.body.locks) {
    eq(l.lock_key, g.body.lock_key, 'one key');
    eq(JSON.stringify(l.group), JSON.stringify(['g1', 'g3', 'g4']), 'group listed');
    eq(g.body.fences[l.device_name], l.fence, 'fences map');
  }
  await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'g4' && f.action === 'acquired');
  const r = await rel(B, 'g3', g.body.lock_key, 'plan');
  eq(r.body.success, true, 'release by one device of the group');
  for (const d of ['g1', 'g3', 'g4']) await w.waitFor(f => f.type === 'lock_update' && f.device_name === d && f.action === 'released');
  eq((await A.get('/api/locks/status')).body.total_count, 1, 'only the other lock left');
  w.close();
});

test('groups: overlapping plans with wait never deadlock or half-hold (20 clients, bounded)', async () => {
  await fresh();
  const devs = ['d0', 'd1', 'd2', 'd3', 'd4', 'd5'];
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  let granted = 0, timedOut = 0, partial = 0;
  const end = Date.now() + 8000;
  let seed = 7;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  await Promise.all(Array.from({ length: 20 }, async (_, c) => {
    const b = c % 2 ? A : B;
    for (let k = 0; k < 15 && Date.now() < end; k++) {
      const size = 2 + rnd(2);
      const set = [];
      while (set.length < size) { const d = devs[rnd(devs.length)]; if (!set.includes(d)) set.push(d); }
      const r = await b.acquire({ device_names: set, lock_type: 'QUEUE_EXECUTING', user_id: `c${c}`, wait: 3, timeout: 5 });
      if (!r.body.success) { timedOut++; continue; }
      granted++;
      if (r.body.locks.length !== set.length) partial++;
      await rel(b, set[0], r.body.lock_key, `c${c}`);
    }
  }));
  assert(granted > 50, `many grants (${granted}, ${timedOut} timed out)`);
  eq(partial, 0, 'no half-held group');
  // never two holders: per device, acquired and the end of it alternate
  await poll(async () => (await A.get('/api/locks/status')).body.total_count === 0, 5000, 'all released');
  await new Promise(r => setImmediate(r));
  const held = {};
  for (const u of w.updates()) {
    if (u.action === 'acquired') { assert(!held[u.device_name], `${u.device_name} granted while held (${u.event_id})`); held[u.device_name] = u.lock.lock_key; }
    if (u.action === 'released' || u.action === 'force_released') { eq(held[u.device_name], u.lock.lock_key, 'ends the current holder'); held[u.device_name] = null; }
  }
  console.log(`# deadlock-freedom run: ${granted} groups granted, ${timedOut} timed out, 0 overlaps`);
  w.close();
});

test('idempotency: a retried request_id returns the first reply, also after a broker restart', async () => {
  await fresh();
  const body = { device_name: 'i1', lock_type: 'MANUAL_OPERATOR', user_id: 'u', request_id: 'req-1' };
  const a = await A.acquire(body);
  const b = await B.acquire(body);
  eq(b.body.lock_key, a.body.lock_key, 'same key');
  eq(b.body.fence, a.body.fence, 'same fence');
  await A.restart();
  const c = await A.acquire(body);
  eq(c.body.lock_key, a.body.lock_key, 'same key after a restart');
  const events = (await A.get('/api/events?device=i1')).body.events;
  eq(events.filter(e => e.action === 'acquired').length, 1, 'one lock taken');
  const other = await A.acquire({ ...body, request_id: 'req-2' });
  eq(other.body.success, false, 'a new request_id is a new request (denied: held)');
});

test('WebSocket commands: acquire, renew, release with ids; subscribe filters', async () => {
  await fresh();
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  w.send({ type: 'subscribe', devices: ['s1'], id: 'sub' });
  eq((await w.waitFor(f => f.type === 'subscribe_result')).id, 'sub', 'subscribe_result');
  w.send({ type: 'acquire', id: 1, device_name: 's1', lock_type: 'MANUAL_OPERATOR', user_id: 'u', timeout: 30 });
  const a = await w.waitFor(f => f.type === 'acquire_result');
  eq(a.id, 1, 'id echoed');
  eq(a.success, true, 'granted');
  w.send({ type: 'renew', id: 2, device_name: 's1', lock_key: a.lock_key, user_id: 'u', timeout: 60 });
  eq((await w.waitFor(f => f.type === 'renew_result')).success, true, 'renewed');
  await acq(A, 'other', 'QUEUE_QUEUED', 'x'); // not subscribed
  w.send({ type: 'release', id: 3, device_name: 's1', lock_key: a.lock_key, user_id: 'u' });
  eq((await w.waitFor(f => f.type === 'release_result')).id, 3, 'release_result');
  await w.waitFor(f => f.type === 'lock_update' && f.action === 'released');
  eq(w.updates().filter(u => u.device_name === 'other').length, 0, 'unsubscribed device filtered out');
  w.send({ type: 'release', id: 4, device_name: 's1', lock_key: a.lock_key, user_id: 'u' });
  const nf = await w.waitFor(f => f.type === 'release_result' && f.id === 4);
  eq(nf.status, 404, 'errors carry the HTTP status');
  eq(nf.success, false, 'success false');
  w.close();
});

test('session locks: lost when the socket closes; kept when another socket (other broker) attaches in time', async () => {
  await fresh('--session-grace', '0.5');
  const watch = await A.ws();
  await watch.waitFor(f => f.type === 'initial_status');
  const s = await A.ws();
  s.send({ type: 'acquire', id: 1, device_name: 'sess1', lock_type: 'MANUAL_OPERATOR', user_id: 'u', session: true });
  const r = await s.waitFor(f => f.type === 'acquire_result');
  assert(r.success && r.session_id, 'session_id in acquire_result');
  await s.close();
  const lost = await watch.waitFor(f => f.type === 'lock_update' && f.action === 'force_released' && f.device_name === 'sess1', 5000);
  eq(lost.cause, 'session_lost', 'cause');
  // kept: a new socket on broker B attaches the session before the grace ends
  const s2 = await A.ws();
  s2.send({ type: 'acquire', id: 2, device_name: 'sess2', lock_type: 'MANUAL_OPERATOR', user_id: 'u', session: true });
  const r2 = await s2.waitFor(f => f.type === 'acquire_result');
  await s2.close();
  const s3 = await B.ws();
  s3.send({ type: 'attach_session', session_id: r2.session_id, id: 'att' });
  await s3.waitFor(f => f.type === 'attach_session_result');
  const mark = watch.frames.length;
  const probe = await acq(A, 'probe', 'QUEUE_QUEUED', 'p', { timeout: 1.5 }); // an event at 1.5 s
  await watch.waitFor(f => f.type === 'lock_update' && f.device_name === 'probe' && f.cause === 'expired', 5000, mark);
  eq(watch.frames.slice(mark).filter(f => f.device_name === 'sess2' && f.cause === 'session_lost').length, 0, 'no session_lost (3x the grace passed)');
  eq((await A.get('/api/locks/device/sess2')).body.locked, true, 'still held');
  assert(probe.body.success, 'probe');
  await s3.close();
  await watch.waitFor(f => f.type === 'lock_update' && f.device_name === 'sess2' && f.cause === 'session_lost', 5000);
  watch.close();
});

test('admin force release: cause admin, whole group', async () => {
  await fresh();
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  await A.acquire({ device_names: ['f1', 'f2'], lock_type: 'QUEUE_EXECUTING', user_id: 'plan' });
  const r = await A.post('/api/lock/force_release', { device_name: 'f1', reason: 'stuck motor' });
  eq(r.body.success, true, 'forced');
  for (const d of ['f1', 'f2']) {
    const f = await w.waitFor(u => u.type === 'lock_update' && u.device_name === d && u.action === 'force_released');
    eq(f.cause, 'admin', 'cause');
    eq(f.admin_reason, 'stuck motor', 'reason');
  }
  eq((await A.post('/api/lock/force_release', { device_name: 'f1' })).status, 404, 'nothing to force');
  w.close();
});

test('graceful preemption: holder warned and releases; or is preempted at the window end; MAINTENANCE never waits', async () => {
  await fresh('--preempt-grace', '1');
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  // the holder releases when asked
  const h = await acq(A, 'gp1', 'MANUAL_OPERATOR', 'holder');
  const t0 = Date.now();
  const pending = acq(B, 'gp1', 'QUEUE_EXECUTING', 'qs');
  const warn = await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'gp1' && f.action === 'preempt_requested');
  eq(warn.grace_s, 1, 'grace_s');
  eq(warn.requested_by.user_id, 'qs', 'requested_by');
  await rel(A, 'gp1', h.body.lock_key, 'holder');
  const got = await pending;
  eq(got.body.success, true, 'granted after the release');
  assert(Date.now() - t0 < 900, `before the window ended (${Date.now() - t0} ms)`);
  // the holder does not release: preempted when the window ends
  await acq(A, 'gp2', 'MANUAL_OPERATOR', 'holder');
  const t1 = Date.now();
  const late = await acq(B, 'gp2', 'QUEUE_EXECUTING', 'qs');
  eq(late.body.success, true, 'granted');
  const ms = Date.now() - t1;
  assert(ms >= 950, `waited for the window (${ms} ms)`);
  const fr = await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'gp2' && f.action === 'force_released');
  eq(fr.cause, 'preempted', 'cause');
  // MAINTENANCE: at once
  await acq(A, 'gp3', 'MANUAL_OPERATOR', 'holder');
  const t2 = Date.now();
  const m = await acq(A, 'gp3', 'MAINTENANCE', 'staff');
  eq(m.body.success, true, 'granted');
  assert(Date.now() - t2 < 500, 'no grace for MAINTENANCE');
  w.close();
});

test('lock-delay after an expiry; a waiter queued meanwhile is served when it ends', async () => {
  await fresh('--lock-delay', '1');
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  await acq(A, 'ld', 'QUEUE_QUEUED', 'x', { timeout: 0.3 });
  const exp = await w.waitFor(f => f.device_name === 'ld' && f.cause === 'expired', 3000);
  const r = await acq(A, 'ld', 'QUEUE_QUEUED', 'y');
  eq(r.body.success, false, 'refused during the delay');
  assert(/lock-delay/.test(r.body.message), r.body.message);
  const waited = await acq(B, 'ld', 'QUEUE_QUEUED', 'z', { wait: 5 });
  eq(waited.body.success, true, 'the waiter is served when the delay ends');
  const gap = Date.parse(waited.body.lock.acquired_at) - Date.parse(exp.timestamp);
  assert(gap >= 990 && gap < 1300, `served about 1 s after the expiry (${gap} ms)`);
  w.close();
});

test('expiry warning: expiring at 80 % of the lease, before the expiry', async () => {
  await fresh();
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  const a = await acq(A, 'ew', 'QUEUE_QUEUED', 'x', { timeout: 1 });
  const e = await w.waitFor(f => f.device_name === 'ew' && f.action === 'expiring', 3000);
  const x = await w.waitFor(f => f.device_name === 'ew' && f.cause === 'expired', 3000);
  const at = Date.parse(e.timestamp) - Date.parse(a.body.lock.acquired_at);
  assert(at >= 790 && at <= 900, `at ~800 ms of 1000 (${at} ms)`);
  assert(idCmp(e.event_id, x.event_id) < 0, 'before the expiry');
  assert(e.expires_in_ms > 100 && e.expires_in_ms <= 210, `expires_in_ms ${e.expires_in_ms}`);
  w.close();
});

test('fence check: current, stale, and no lock', async () => {
  await fresh();
  const a = await acq(A, 'v1', 'MANUAL_OPERATOR', 'x');
  const b = await acq(A, 'v1', 'MAINTENANCE', 'y');
  const ok = await A.post('/api/lock/validate', { device_name: 'v1', fence: b.body.fence });
  eq(ok.body.valid, true, 'current fence valid');
  const stale = await B.post('/api/lock/validate', { device_name: 'v1', fence: a.body.fence });
  eq(stale.body.valid, false, 'stale fence invalid');
  eq(stale.body.current_fence, b.body.fence, 'current_fence');
  const none = await A.post('/api/lock/validate', { device_name: 'v2', fence: 1 });
  eq(none.body.valid, false, 'no lock');
  eq(none.body.current_fence, null, 'null current_fence');
  eq((await A.post('/api/lock/validate', { device_name: 'v1' })).status, 422, 'fence required');
});

test('history: device and plan_uid filters, paging with last_event_id', async () => {
  await fresh();
  for (let i = 0; i < 5; i++) {
    const r = await acq(A, `h${i % 2}`, 'QUEUE_QUEUED', 'x', { plan_uid: `plan${i % 2}` });
    await rel(A, `h${i % 2}`, r.body.lock_key, 'x');
  }
  const byDev = (await A.get('/api/events?device=h1&limit=1000')).body;
  assert(byDev.events.length === 4 && byDev.events.every(e => e.device_name === 'h1'), 'device filter');
  const byPlan = (await A.get('/api/events?plan_uid=plan0')).body;
  assert(byPlan.events.length === 6 && byPlan.events.every(e => e.lock.plan_uid === 'plan0'), 'plan filter');
  const seen = [];
  let since = '';
  for (let page = 0; page < 10; page++) {
    const p = (await A.get(`/api/events?limit=3${since ? `&since=${since}` : ''}`)).body;
    seen.push(...p.events.map(e => e.event_id));
    if (p.count < 3) break;
    since = p.last_event_id;
  }
  eq(seen.length, 10, 'every event once across pages');
  for (let i = 1; i < seen.length; i++) assert(idCmp(seen[i], seen[i - 1]) > 0, 'in order');
});

test('status paging over 10 000 locks', async () => {
  await fresh();
  const w = await A.ws();
  await w.waitFor(f => f.type === 'initial_status');
  // 10 000 locks through one WebSocket, 500 requests in flight at a time
  // (subscribed to no device, so only the results come back: a client that
  // lets thousands of frames pile up is dropped, by design)
  w.send({ type: 'subscribe', devices: ['none-such'] });
  await w.waitFor(f => f.type === 'subscribe_result');
  let sent = 0, done = 0;
  const send = () => {
    const i = sent++;
    w.send({ type: 'acquire', id: i, device_name: `p${String(i).padStart(5, '0')}`, lock_type: 'QUEUE_QUEUED', user_id: 'x', timeout: 600 });
  };
  const all = new Promise((resolve, reject) => {
    w.sock.on('message', (d) => {
      if (!String(d).startsWith('{"type":"acquire_result"')) return;
      if (++done === 10000) resolve();
      else if (sent < 10000) send();
    });
    w.closed.then(() => reject(new Error(`socket closed after ${done}`)));
  });
  while (sent < 500) send();
  await all;
  w.close();
  for (const b of [A, B]) {
    const names = [];
    let cursor = '';
    for (let page = 0; page < 20; page++) {
      const r = (await b.get(`/api/locks/status?limit=1000${cursor ? `&cursor=${cursor}` : ''}`)).body;
      eq(r.total_count, 10000, 'total_count');
      names.push(...r.locks.map(l => l.device_name));
      if (!r.next_cursor) break;
      cursor = r.next_cursor;
    }
    eq(names.length, 10000, 'every lock once');
    eq(new Set(names).size, 10000, 'no repeats');
    for (let i = 1; i < names.length; i++) assert(names[i - 1] < names[i], 'in name order');
  }
  eq((await A.get('/api/locks/status')).body.locks.length, 10000, 'unpaged: all of them, like the old service');
}, { timeoutMs: 90000 });

run({
  onFail: async () => { if (current) console.log(current.log().split('\n').filter(l => !/ event /.test(l)).slice(-15).join('\n')); },
}).then(async failed => { await stopAll(); process.exit(failed || process.exitCode ? 1 : 0); });
