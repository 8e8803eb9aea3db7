'use strict';
// The HTTP and WebSocket API of devlockd against a real redis-server and
// real devlockd processes (issue 2): every route and its errors, the
// preemption matrix, fences across restarts, expiry timing, two brokers,
// Redis faults, and shutdown. Last line: "N passed, M failed".
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, poll, stopAll, idCmp } = require('../lib/servers.js');

const TYPES = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'];
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

let redis, broker, current;
const brokers = [];

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: expected ${JSON.stringify(b).slice(0, 300)}, got ${JSON.stringify(a).slice(0, 300)}`); }
// A clean slate: empty Redis, and a broker restarted on it (a broker keeps a
// copy of the lock table fed by the stream; wiping Redis under it is not
// something it follows, see docs/design.md).
async function fresh() { redis.cli('FLUSHALL'); await broker.restart(); }
async function startBroker(args = [], r = redis) {
  const b = await Broker.start(r.url, args);
  brokers.push(b);
  current = b;
  return b;
}
function isError(res, status, code) {
  eq(res.status, status, `status of ${res.text}`);
  assert(res.body && typeof res.body.detail === 'string' && res.body.detail.length > 0, `detail in ${res.text}`);
  eq(res.body.error, code, 'error code');
}
function checkLock(l, dev, type, user) {
  eq(l.device_name, dev, 'device_name');
  eq(l.lock_type, type, 'lock_type');
  eq(l.user_id, user, 'user_id');
  assert(UUID4.test(l.lock_key), `lock_key uuid4: ${l.lock_key}`);
  assert(TS.test(l.acquired_at), `acquired_at: ${l.acquired_at}`);
  assert(l.expires_at === null || TS.test(l.expires_at), `expires_at: ${l.expires_at}`);
  eq(l.priority, TYPES.indexOf(type), 'priority');
  assert(Number.isInteger(l.fence) && l.fence > 0, 'fence is a positive integer');
  for (const k of ['reason', 'plan_uid']) assert(l[k] === null || typeof l[k] === 'string', k);
}
const acq = (b, dev, type, user, extra = {}) => b.acquire({ device_name: dev, lock_type: type, user_id: user, ...extra });

test('start redis-server and devlockd', async () => {
  redis = await Redis.start();
  broker = await startBroker(['--stream-maxlen', '10']);
});

test('request: granted reply has the old fields and the new ones', async () => {
  await fresh();
  const r = await acq(broker, 'det1', 'MANUAL_OPERATOR', 'alice', { timeout: 300, reason: 'Calibration', plan_uid: 'p1' });
  eq(r.status, 200, 'status');
  eq(r.body.success, true, 'success');
  assert(UUID4.test(r.body.lock_key), 'lock_key');
  eq(r.body.message, 'Lock acquired for det1', 'message');
  assert(TS.test(r.body.expires_at), 'expires_at');
  checkLock(r.body.lock, 'det1', 'MANUAL_OPERATOR', 'alice');
  eq(r.body.lock.reason, 'Calibration', 'reason');
  eq(r.body.lock.plan_uid, 'p1', 'plan_uid');
  eq(r.body.fence, r.body.lock.fence, 'fence');
  const lease = Date.parse(r.body.expires_at) - Date.parse(r.body.lock.acquired_at);
  assert(Math.abs(lease - 300000) < 2, `lease 300 s, got ${lease} ms`);
  const d = await acq(broker, 'det2', 'QUEUE_QUEUED', 'q');
  const dl = Date.parse(d.body.expires_at) - Date.parse(d.body.lock.acquired_at);
  assert(Math.abs(dl - 300000) < 2, 'default lease is 300 s');
  const n = await acq(broker, 'det3', 'QUEUE_QUEUED', 'q', { timeout: null });
  eq(n.body.expires_at, null, 'timeout null means no expiry');
});

test('request: bad input is refused with detail and error', async () => {
  await fresh();
  const base = { device_name: 'd', lock_type: 'QUEUE_QUEUED', user_id: 'u' };
  for (const name of ['', 'a'.repeat(129), 'a b', 'a/b', 'dé', 'x:y?'])
    isError(await broker.acquire({ ...base, device_name: name }), 400, 'invalid_device_name');
  // cJSON would cut "x\u0000y" to "x": refused as a whole
  isError(await broker.acquire({ ...base, device_name: 'x\u0000y' }), 400, 'invalid_json');
  eq((await broker.acquire({ ...base, device_name: 'a'.repeat(128) })).status, 200, '128 chars is fine');
  isError(await broker.acquire({ ...base, timeout: 0 }), 400, 'invalid_timeout');
  isError(await broker.acquire({ ...base, timeout: -1 }), 400, 'invalid_timeout');
  isError(await broker.acquire({ ...base, timeout: '5' }), 422, 'validation_error');
  isError(await broker.acquire({ ...base, lock_type: 'ROOT' }), 422, 'validation_error');
  isError(await broker.acquire({ device_name: 'd', lock_type: 'QUEUE_QUEUED' }), 422, 'validation_error');
  isError(await broker.acquire({ ...base, user_id: 5 }), 422, 'validation_error');
  for (const body of ['[]', '"x"', '1', 'null', '{"a":', 'not json', ''])
    isError(await broker.post('/api/lock/request', body), 400, 'invalid_json');
  isError(await broker.post('/api/lock/request', '['.repeat(100) + ']'.repeat(100)), 400, 'json_too_deep');
  isError(await broker.post('/api/lock/request', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), 400, 'invalid_json');
  // a body over --max-body: answered 413 and the connection closed (curl, so
  // the closed connection does not linger in this process's keep-alive pool)
  const big = JSON.stringify({ ...base, reason: 'x'.repeat(70000) });
  const out = require('child_process').spawnSync('curl', ['-s', '-w', '\n%{http_code}', '-XPOST', '--data-binary', '@-',
    broker.base + '/api/lock/request'], { input: big, encoding: 'utf8' });
  const [bodyText, code] = out.stdout.split('\n');
  eq(code, '413', 'status for a too large body');
  eq(JSON.parse(bodyText).error, 'payload_too_large', 'error code');
  // unknown fields are ignored
  eq((await broker.acquire({ ...base, device_name: 'extra', whatever: [1, 2] })).body.success, true, 'unknown fields ignored');
});

test('the 4x4 preemption matrix', async () => {
  await fresh();
  const w = await broker.ws();
  await w.waitFor(f => f.type === 'initial_status');
  for (let h = 0; h < 4; h++) {
    for (let q = 0; q < 4; q++) {
      const dev = `m${h}${q}`;
      const held = await acq(broker, dev, TYPES[h], 'holder');
      eq(held.body.success, true, 'holder granted');
      const r = await acq(broker, dev, TYPES[q], 'req');
      eq(r.status, 200, 'status');
      if (q < h) {
        eq(r.body.success, true, `${TYPES[q]} preempts ${TYPES[h]}`);
        eq(r.body.preempted.lock_key, held.body.lock_key, 'preempted is the old lock');
        const fr = await w.waitFor(f => f.type === 'lock_update' && f.device_name === dev && f.action === 'force_released');
        eq(fr.cause, 'preempted', 'cause');
        eq(fr.lock.user_id, 'holder', 'old holder');
        const ac = await w.waitFor(f => f.type === 'lock_update' && f.device_name === dev && f.action === 'acquired' && f.lock.user_id === 'req');
        assert(idCmp(ac.event_id, fr.event_id) > 0, 'acquired after force_released');
        assert(r.body.fence > held.body.fence, 'fence increases');
      } else {
        eq(r.body.success, false, `${TYPES[q]} is denied by ${TYPES[h]}`);
        eq(r.body.lock_key, null, 'no key');
        eq(r.body.holder.lock_key, held.body.lock_key, 'holder is the lock');
        assert(r.body.message.includes('holder') && r.body.message.includes(TYPES[h]), `message names the holder: ${r.body.message}`);
      }
    }
  }
  w.close();
});

test('release: query string (old client) and JSON body; 403 and 404', async () => {
  await fresh();
  const a = await acq(broker, 'rel', 'MANUAL_OPERATOR', 'alice');
  const q = (k, u) => `/api/lock/release?device_name=rel&lock_key=${k}&user_id=${u}`;
  isError(await broker.post(q('wrong', 'alice'), ''), 403, 'forbidden');
  isError(await broker.post(q(a.body.lock_key, 'bob'), ''), 403, 'forbidden');
  const ok = await broker.post(q(a.body.lock_key, 'alice'), '');
  eq(ok.status, 200, 'released');
  eq(ok.body.success, true, 'success');
  eq(ok.body.message, 'Lock released for rel', 'message');
  isError(await broker.post(q(a.body.lock_key, 'alice'), ''), 404, 'not_found');
  const b = await acq(broker, 'rel', 'MANUAL_OPERATOR', 'alice');
  eq((await broker.release({ device_name: 'rel', lock_key: b.body.lock_key, user_id: 'alice' })).body.success, true, 'body form');
  isError(await broker.release({ device_name: 'rel' }), 422, 'validation_error');
});

test('renew moves expires_at; 403 and 404', async () => {
  await fresh();
  const a = await acq(broker, 'ren', 'MANUAL_OPERATOR', 'alice', { timeout: 10 });
  const r = await broker.post('/api/lock/renew', { device_name: 'ren', lock_key: a.body.lock_key, user_id: 'alice', timeout: 100 });
  eq(r.body.success, true, 'renewed');
  assert(Date.parse(r.body.expires_at) > Date.parse(a.body.expires_at) + 80000, 'later expiry');
  eq(r.body.fence, a.body.fence, 'same fence');
  isError(await broker.post('/api/lock/renew', { device_name: 'ren', lock_key: 'x', user_id: 'alice' }), 403, 'forbidden');
  isError(await broker.post('/api/lock/renew', { device_name: 'none', lock_key: 'x', user_id: 'alice' }), 404, 'not_found');
  isError(await broker.post('/api/lock/renew', { device_name: 'ren', lock_key: a.body.lock_key, user_id: 'alice', timeout: 0 }), 400, 'invalid_timeout');
});

test('status, device, events, health, unknown path, wrong method', async () => {
  await fresh();
  await acq(broker, 'b2', 'QUEUE_QUEUED', 'u', { plan_uid: 'P' });
  await acq(broker, 'a1', 'QUEUE_QUEUED', 'u');
  const s = await broker.get('/api/locks/status');
  eq(s.status, 200, 'status');
  eq(s.body.total_count, 2, 'total_count');
  eq(s.body.locks.map(l => l.device_name).join(), 'a1,b2', 'sorted by name');
  assert(TS.test(s.body.timestamp), 'timestamp');
  const d = await broker.get('/api/locks/device/a1');
  eq(d.body.locked, true, 'locked');
  checkLock(d.body.lock, 'a1', 'QUEUE_QUEUED', 'u');
  const f = await broker.get('/api/locks/device/free1');
  eq(f.body.locked, false, 'free');
  eq(f.body.lock, null, 'no lock');
  isError(await broker.get('/api/locks/device/bad%20name'), 400, 'invalid_device_name');
  const ev = await broker.get('/api/events?device=b2');
  assert(ev.body.events.length >= 1 && ev.body.events.every(e => e.device_name === 'b2'), 'device filter');
  const evp = await broker.get('/api/events?plan_uid=P');
  assert(evp.body.events.length >= 1 && evp.body.events.every(e => e.lock.plan_uid === 'P'), 'plan filter');
  const all = await broker.get('/api/events?limit=1');
  eq(all.body.count, 1, 'limit');
  const next = await broker.get(`/api/events?since=${all.body.last_event_id}`);
  assert(next.body.events.every(e => idCmp(e.event_id, all.body.last_event_id) > 0), 'since is exclusive');
  isError(await broker.get('/api/events?since=garbage'), 400, 'bad_request');
  const live = await broker.get('/api/health/live');
  eq(live.body.status, 'alive', 'live');
  const ready = await broker.get('/api/health/ready');
  eq(ready.status, 200, 'ready status');
  eq(ready.body.status, 'ready', 'ready');
  eq(ready.body.redis_connected, true, 'redis_connected');
  eq(ready.body.active_locks, 2, 'active_locks');
  isError(await broker.get('/api/nope'), 404, 'not_found');
  isError(await broker.get('/api/lock/request'), 405, 'method_not_allowed');
  eq((await broker.request('PUT', '/api/lock/request', '{}')).status, 405, 'PUT');
});

test('WebSocket: initial_status, ping, get_status, ordered lock_updates with event ids', async () => {
  await fresh();
  const w = await broker.ws();
  const init = await w.waitFor(f => f.type === 'initial_status');
  assert(Array.isArray(init.data.locks) && init.data.total_count === 0 && typeof init.event_id === 'string', 'initial_status shape');
  w.send({ type: 'ping', id: 7 });
  const pong = await w.waitFor(f => f.type === 'pong');
  eq(pong.id, 7, 'id echoed');
  assert(TS.test(pong.timestamp), 'pong timestamp');
  const a = await acq(broker, 'wsd', 'MANUAL_OPERATOR', 'u', { timeout: 60 });
  await broker.post('/api/lock/renew', { device_name: 'wsd', lock_key: a.body.lock_key, user_id: 'u' });
  await broker.release({ device_name: 'wsd', lock_key: a.body.lock_key, user_id: 'u' });
  await w.waitFor(f => f.type === 'lock_update' && f.action === 'released');
  const ups = w.updates();
  eq(ups.map(u => u.action).join(), 'acquired,renewed,released', 'actions in order');
  for (let i = 1; i < ups.length; i++) assert(idCmp(ups[i].event_id, ups[i - 1].event_id) > 0, 'event ids increase');
  assert(idCmp(ups[0].event_id, init.event_id) > 0, 'after the snapshot');
  w.send({ type: 'get_status' });
  const st = await w.waitFor(f => f.type === 'status_response');
  eq(st.data.total_count, 0, 'status_response');
  w.close();
});

test('WebSocket: bad frames get an error frame and the socket stays open; size and UTF-8 limits close', async () => {
  const w = await broker.ws();
  await w.waitFor(f => f.type === 'initial_status');
  w.send('not json');
  await w.waitFor(f => f.type === 'error' && f.error === 'invalid_json');
  w.send('[1,2]');
  await w.waitFor((f, i) => f.type === 'error' && f.error === 'invalid_json' && /object/.test(f.detail));
  w.send({ type: 'no_such_type' });
  await w.waitFor(f => f.type === 'error' && f.error === 'unknown_type');
  w.send({ type: 'ping', id: 'still' });
  await w.waitFor(f => f.type === 'pong' && f.id === 'still');
  const big = await broker.ws();
  await big.waitFor(f => f.type === 'initial_status');
  big.sock.send('x'.repeat(70000));
  eq(await big.closed, 1009, 'close code for a too large message');
  const bad = await broker.ws();
  await bad.waitFor(f => f.type === 'initial_status');
  bad.sock.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: false });
  eq(await bad.closed, 1007, 'close code for invalid UTF-8');
  w.send({ type: 'ping', id: 'after' });
  await w.waitFor(f => f.type === 'pong' && f.id === 'after');
  w.close();
});

test('WebSocket resume replays what was missed; an id older than the stream gives resume_gap', async () => {
  await fresh();
  const w = await broker.ws();
  const init = await w.waitFor(f => f.type === 'initial_status');
  await acq(broker, 'r1', 'QUEUE_QUEUED', 'u');
  const first = await w.waitFor(f => f.type === 'lock_update');
  await acq(broker, 'r2', 'QUEUE_QUEUED', 'u');
  await acq(broker, 'r3', 'QUEUE_QUEUED', 'u');
  await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'r3');
  w.close();
  const v = await broker.ws();
  await v.waitFor(f => f.type === 'initial_status');
  v.send({ type: 'resume', since: first.event_id, id: 1 });
  const done = await v.waitFor(f => f.type === 'resume_result');
  eq(done.replayed, 2, 'replayed the two later events');
  const replay = v.updates().map(u => u.device_name).join();
  eq(replay, 'r2,r3', 'in order');
  // the stream keeps ~10 events here (--stream-maxlen 10): make many, then resume from the first
  for (let i = 0; i < 250; i++) await acq(broker, `g${i}`, 'QUEUE_QUEUED', 'u');
  await poll(async () => Number(redis.cli('XLEN', 'dl:events')) < 200, 5000, 'trimming');
  v.send({ type: 'resume', since: init.event_id === '0-0' ? first.event_id : init.event_id });
  await v.waitFor(f => f.type === 'error' && f.error === 'resume_gap');
  const after = v.frames.findIndex(f => f.type === 'error' && f.error === 'resume_gap');
  const snap = await v.waitFor(f => f.type === 'initial_status', 5000, after);
  assert(snap.data.total_count >= 250, 'fresh initial_status');
  v.close();
});

test('expiry: force_released cause expired, on time, once with two brokers', async () => {
  await fresh();
  const b2 = await startBroker();
  const w = await broker.ws();
  await w.waitFor(f => f.type === 'initial_status');
  const late = [];
  for (const t of [1, 0.5]) {
    const a = await acq(b2, `exp${t}`, 'QUEUE_QUEUED', 'u', { timeout: t });
    const ev = await w.waitFor(f => f.type === 'lock_update' && f.device_name === `exp${t}` && f.action === 'force_released', 5000);
    eq(ev.cause, 'expired', 'cause');
    const lateness = Date.parse(ev.timestamp) - Date.parse(a.body.expires_at);
    late.push(lateness);
    assert(lateness >= 0, `never early (${lateness} ms)`);
    assert(lateness <= 100, `at most 100 ms late (${lateness} ms)`);
  }
  console.log(`# expiry lateness (Redis clock): ${late.join(', ')} ms`);
  // exactly one expiry event each, although two brokers run timers
  const evs = (await broker.get('/api/events?limit=1000')).body.events.filter(e => e.action === 'force_released');
  eq(evs.length, 2, 'one event per expiry');
  w.close();
  await b2.stop();
});

test('two brokers on one Redis: same locks, same events in the same order', async () => {
  await fresh();
  const b2 = await startBroker();
  const wa = await broker.ws(), wb = await b2.ws();
  await wa.waitFor(f => f.type === 'initial_status');
  await wb.waitFor(f => f.type === 'initial_status');
  const a = await acq(broker, 'shared', 'MANUAL_OPERATOR', 'u');
  await acq(b2, 'shared2', 'QUEUE_QUEUED', 'u');
  await b2.release({ device_name: 'shared', lock_key: a.body.lock_key, user_id: 'u' });
  await acq(broker, 'shared2', 'MAINTENANCE', 'm');
  for (const w of [wa, wb]) await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'shared2' && f.action === 'acquired' && f.lock.user_id === 'm');
  const ida = wa.updates().map(u => u.event_id + u.action).join(), idb = wb.updates().map(u => u.event_id + u.action).join();
  eq(ida, idb, 'same events in the same order');
  eq(wa.updates().length, 5, 'acquired, acquired, released, force_released, acquired');
  const sa = (await broker.get('/api/locks/status')).body.locks, sb = (await b2.get('/api/locks/status')).body.locks;
  eq(JSON.stringify(sa), JSON.stringify(sb), 'same status');
  wa.close(); wb.close();
  await b2.stop();
});

test('fences increase across a broker restart', async () => {
  await fresh();
  const f1 = (await acq(broker, 'fd', 'QUEUE_QUEUED', 'u')).body.fence;
  await broker.restart();
  const f2 = (await acq(broker, 'fd', 'MAINTENANCE', 'u')).body.fence;
  assert(f2 > f1, `fence ${f1} then ${f2}`);
  await broker.restart();
  const f3 = (await acq(broker, 'fd', 'MAINTENANCE', 'u')).body.fence; // denied: equal priority
  eq(f3, null, 'denied has no fence');
  eq((await broker.get('/api/locks/device/fd')).body.lock.fence, f2, 'the lock survived two restarts');
});

test('Redis SIGKILLed and restarted from its append-only file: no acknowledged lock lost', async () => {
  const r2 = await Redis.start({ fsync: 'always' });
  const b = await startBroker([], r2);
  const w = await b.ws();
  await w.waitFor(f => f.type === 'initial_status');
  const fences = {};
  for (let i = 0; i < 50; i++) {
    const r = await acq(b, `k${i}`, 'MANUAL_OPERATOR', 'u', { timeout: 600 });
    eq(r.body.success, true, 'granted');
    fences[`k${i}`] = r.body.fence;
  }
  await r2.kill('SIGKILL');
  await r2.restart();
  await poll(async () => (await b.get('/api/health/ready')).status === 200, 15000, 'ready again');
  const st = (await b.get('/api/locks/status')).body;
  eq(st.total_count, 50, 'every acknowledged lock is there');
  for (const l of st.locks) eq(l.fence, fences[l.device_name], 'same fence');
  const again = await acq(b, 'k0', 'MAINTENANCE', 'm');
  assert(again.body.fence > fences.k0, 'fences never repeat');
  await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'k0' && f.lock.user_id === 'm', 5000);
  w.close();
  await b.stop();
  await r2.kill();
});

test('Redis unreachable: 503 within 1 s, readiness 503, then recovery; watchers stay and get what they missed', async () => {
  const r3 = await Redis.start();
  const b = await startBroker(['--redis-timeout-ms', '500'], r3);
  const w = await b.ws();
  await w.waitFor(f => f.type === 'initial_status');
  // stopped (SIGSTOP): commands hang, so devlockd's own deadline answers
  process.kill(r3.proc.pid, 'SIGSTOP');
  let t0 = Date.now();
  const r = await acq(b, 'x', 'QUEUE_QUEUED', 'u');
  const stoppedMs = Date.now() - t0;
  isError(r, 503, 'unavailable');
  assert(stoppedMs < 1000, `503 within 1 s (${stoppedMs} ms)`);
  const ready = await b.get('/api/health/ready');
  eq(ready.status, 503, 'not ready');
  eq(ready.body.redis_connected, false, 'redis_connected false');
  process.kill(r3.proc.pid, 'SIGCONT');
  await poll(async () => (await acq(b, 'y', 'QUEUE_QUEUED', 'u')).body.success === true, 10000, 'recovery after SIGCONT');
  // killed: connection refused, answered at once
  await r3.kill('SIGKILL');
  t0 = Date.now();
  isError(await acq(b, 'z', 'QUEUE_QUEUED', 'u'), 503, 'unavailable');
  assert(Date.now() - t0 < 1000, '503 within 1 s');
  await r3.restart();
  await poll(async () => (await acq(b, 'z', 'QUEUE_QUEUED', 'u')).body.success === true, 15000, 'recovery after restart');
  const got = await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'z', 5000);
  eq(got.action, 'acquired', 'the watcher stayed connected and got the event');
  console.log(`# 503 after ${stoppedMs} ms with Redis stopped`);
  w.close();
  await b.stop();
  await r3.kill();
});

test('contention: QUEUE_QUEUED is never granted while MAINTENANCE holds the device', async () => {
  await fresh();
  const m = await acq(broker, 'hot', 'MAINTENANCE', 'staff');
  let granted = 0, denied = 0;
  const end = Date.now() + 2000;
  await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    for (let k = 0; k < 25 && Date.now() < end; k++) {
      const r = await acq(broker, 'hot', 'QUEUE_QUEUED', `c${i}`);
      if (r.body.success) granted++; else denied++;
    }
  }));
  eq(granted, 0, 'none granted');
  assert(denied > 100, `many attempts (${denied})`);
  eq((await broker.get('/api/locks/device/hot')).body.lock.lock_key, m.body.lock_key, 'MAINTENANCE still holds');
});

test('SIGTERM and SIGINT shut down cleanly (exit 0)', async () => {
  for (const sig of ['SIGTERM', 'SIGINT']) {
    const b = await startBroker();
    const w = await b.ws();
    await w.waitFor(f => f.type === 'initial_status');
    const t0 = Date.now();
    const res = await b.stop(sig);
    eq(res.code, 0, `${sig} exit code`);
    assert(Date.now() - t0 < 5000, 'promptly');
  }
});

test('--help lists the flags; an unknown flag is refused', async () => {
  const { spawnSync } = require('child_process');
  const bin = require('path').join(require('../lib/servers.js').BUILD, 'devlockd');
  const h = spawnSync(bin, ['--help'], { encoding: 'utf8' });
  eq(h.status, 0, 'exit 0');
  for (const f of ['--port', '--redis-url', '--port-file', 'COORDINATION_REDIS_URL']) assert(h.stdout.includes(f), `lists ${f}`);
  const u = spawnSync(bin, ['--frobnicate'], { encoding: 'utf8' });
  assert(u.status !== 0 && /unknown option/.test(u.stderr), 'unknown flag refused');
});

run({
  onFail: async () => { if (current) console.log(current.log().split('\n').filter(l => !/ event /.test(l)).slice(-15).join('\n')); },
}).then(async failed => { await stopAll(); process.exit(failed || process.exitCode ? 1 : 0); });
