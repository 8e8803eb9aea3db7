'use strict';
// Integration suite: the black-box contract of devlockd (docs/protocol.md)
// against a real redis-server and real devlockd processes on loopback.
// Every test starts its own broker(s) on a freshly flushed shared Redis, or
// its own Redis when it injects faults. Last line: "N passed, M failed".
//   node tests/integration/run.js [name-regex]
const { spawnSync } = require('child_process');
const H = require('./harness');
const E = require('./env');
const { check, eq, cmpId, ID_RE, UUID4_RE, TIME_RE } = E;

const PRIORITY = { MAINTENANCE: 0, QUEUE_EXECUTING: 1, MANUAL_OPERATOR: 2, QUEUE_QUEUED: 3 };
const TYPES = Object.keys(PRIORITY);

let redis;            // shared Redis, flushed before each test
let brokers = [];     // brokers of the current test, stopped after it
let redises = [];     // private Redis servers of the current test
let watchers = [];    // WebSockets of the current test

async function broker(args = [], r = redis) {
  const b = await E.Broker.start(r, args);
  brokers.push(b);
  return b;
}
async function ownRedis(args) {
  const r = await E.Redis.start({ args });
  redises.push(r);
  return r;
}
async function watch(b) {
  const w = await b.ws();
  watchers.push(w);
  await w.waitFor(f => f.type === 'initial_status', 5000);
  return w;
}

// ---- contract checks --------------------------------------------------------
function checkError(res, status, code, what = '') {
  const ctx = `${what} -> ${res.status} ${res.text.slice(0, 300)}`;
  check(res.status === status, `expected HTTP ${status} ${code}: ${ctx}`);
  check(res.body && typeof res.body === 'object' && !Array.isArray(res.body), `error body is a JSON object: ${ctx}`);
  check(typeof res.body.detail === 'string' && res.body.detail.length > 0, `error body has a string detail: ${ctx}`);
  check(typeof res.body.error === 'string', `error body has a string error: ${ctx}`);
  eq(res.body.error, code, `error code of ${what}`);
}

function checkLock(l, want = {}) {
  const ctx = JSON.stringify(l);
  check(l && typeof l === 'object', `lock is an object: ${ctx}`);
  for (const k of ['device_name', 'lock_type', 'user_id', 'lock_key', 'acquired_at'])
    check(typeof l[k] === 'string', `lock.${k} is a string: ${ctx}`);
  check(UUID4_RE.test(l.lock_key), `lock_key is a UUID v4: ${ctx}`);
  check(TIME_RE.test(l.acquired_at), `acquired_at is RFC 3339 UTC with microseconds: ${ctx}`);
  check(l.expires_at === null || TIME_RE.test(l.expires_at), `expires_at is a time or null: ${ctx}`);
  check(l.reason === null || typeof l.reason === 'string', `reason is a string or null: ${ctx}`);
  check(l.plan_uid === null || typeof l.plan_uid === 'string', `plan_uid is a string or null: ${ctx}`);
  check(l.priority === PRIORITY[l.lock_type], `priority matches lock_type: ${ctx}`);
  check(Number.isSafeInteger(l.fence) && l.fence > 0, `fence is a positive integer: ${ctx}`);
  for (const [k, v] of Object.entries(want)) eq(l[k], v, `lock.${k}`);
}

// A granted request: 200, success, the reply's fields agree with its lock.
async function grant(b, fields) {
  const res = await b.acquire(fields);
  check(res.status === 200 && res.body && res.body.success === true, `request ${JSON.stringify(fields)} granted: ${res.status} ${res.text.slice(0, 400)}`);
  const r = res.body;
  check(typeof r.message === 'string', 'message is a string');
  checkLock(r.lock, { device_name: fields.device_name, lock_type: fields.lock_type, user_id: fields.user_id });
  eq(r.lock_key, r.lock.lock_key, 'lock_key equals lock.lock_key');
  eq(r.fence, r.lock.fence, 'fence equals lock.fence');
  eq(r.expires_at, r.lock.expires_at, 'expires_at equals lock.expires_at');
  return r;
}
async function deny(b, fields) {
  const res = await b.acquire(fields);
  check(res.status === 200 && res.body && res.body.success === false, `request ${JSON.stringify(fields)} denied: ${res.status} ${res.text.slice(0, 400)}`);
  eq(res.body.lock_key, null, 'denied lock_key');
  eq(res.body.fence, null, 'denied fence');
  check(typeof res.body.message === 'string', 'denied message is a string');
  return res.body;
}
async function releaseOk(b, lock) {
  const res = await b.release({ device_name: lock.device_name, lock_key: lock.lock_key, user_id: lock.user_id });
  check(res.status === 200 && res.body && res.body.success === true, `release of ${lock.device_name}: ${res.status} ${res.text}`);
  return res.body;
}
function checkIncreasing(ids, what) {
  for (const id of ids) check(ID_RE.test(id), `${what}: event_id ${JSON.stringify(id)} looks like a stream id`);
  for (let i = 1; i < ids.length; i++)
    check(cmpId(ids[i - 1], ids[i]) < 0, `${what}: event ids increase: ${ids[i - 1]} then ${ids[i]}`);
}
function msOf(t) { return Date.parse(t); }
function lockMsg(f) { return `${f.action}${f.cause ? '/' + f.cause : ''} ${f.device_name} ${f.event_id}`; }
const req = (device_name, lock_type, user_id, extra = {}) => ({ device_name, lock_type, user_id, ...extra });

// ---- command line -----------------------------------------------------------
H.test('devlockd --help exits 0 and lists --port and --redis-url; an unknown flag exits non-zero', () => {
  const help = spawnSync(E.DEVLOCKD, ['--help'], { encoding: 'utf8', timeout: 5000 });
  eq(help.status, 0, '--help exit status');
  const text = help.stdout + help.stderr;
  check(/--port\b/.test(text) && /--redis-url\b/.test(text), `--help lists --port and --redis-url: ${text.slice(0, 300)}`);
  const bad = spawnSync(E.DEVLOCKD, ['--no-such-flag'], { encoding: 'utf8', timeout: 5000 });
  check(bad.status !== 0 && bad.status !== null, `unknown flag exits non-zero (got ${bad.status}, signal ${bad.signal})`);
});

// ---- POST /api/lock/request -------------------------------------------------
H.test('request: a grant has success, lock_key (UUID v4), fence, expires_at and the lock object', async () => {
  const b = await broker();
  const r = await grant(b, req('detector1', 'MANUAL_OPERATOR', 'alice', { timeout: 300, reason: 'Calibration', plan_uid: 'plan-7' }));
  checkLock(r.lock, { reason: 'Calibration', plan_uid: 'plan-7', priority: 2 });
  check(r.expires_at !== null, 'timeout 300 has an expires_at');
  eq(msOf(r.expires_at) - msOf(r.lock.acquired_at), 300000, 'expires_at - acquired_at for timeout 300 (ms)');
  check(Math.abs(msOf(r.lock.acquired_at) - Date.now()) < 5000, `acquired_at is now: ${r.lock.acquired_at}`);
  // no timeout: the default lease of 300 s; reason and plan_uid null
  const d = await grant(b, req('detector2', 'QUEUE_QUEUED', 'q'));
  checkLock(d.lock, { reason: null, plan_uid: null, priority: 3 });
  eq(msOf(d.expires_at) - msOf(d.lock.acquired_at), 300000, 'default lease (ms)');
  // fractions of a second are allowed
  const f = await grant(b, req('detector3', 'QUEUE_EXECUTING', 'q', { timeout: 2.5 }));
  eq(msOf(f.expires_at) - msOf(f.lock.acquired_at), 2500, 'lease of timeout 2.5 (ms)');
  // every priority, and each device's own fence sequence starts fresh
  const m = await grant(b, req('detector4', 'MAINTENANCE', 'staff'));
  eq(m.lock.priority, 0, 'MAINTENANCE priority');
  check(new Set([r.lock_key, d.lock_key, f.lock_key, m.lock_key]).size === 4, 'lock keys differ');
});

H.test('request: invalid device names are 400 invalid_device_name; the allowed alphabet and 128 chars pass', async () => {
  const b = await broker();
  for (const name of ['', 'a'.repeat(129), 'has space', 'a/b', 'dét', '日本', 'a\tb', 'semi;colon', '../x']) {
    checkError(await b.acquire(req(name, 'MANUAL_OPERATOR', 'u')), 400, 'invalid_device_name', `device_name ${JSON.stringify(name)}`);
  }
  await grant(b, req('a'.repeat(128), 'MANUAL_OPERATOR', 'u'));
  await grant(b, req('AZaz09_.:-', 'MANUAL_OPERATOR', 'u'));
  checkError(await b.get('/api/locks/device/has%20space'), 400, 'invalid_device_name', 'GET /api/locks/device/has%20space');
});

H.test('request: timeout 0 and -1 are 400 invalid_timeout; timeout null gives expires_at null', async () => {
  const b = await broker();
  for (const t of [0, -1, -0.5]) checkError(await b.acquire(req('t1', 'MANUAL_OPERATOR', 'u', { timeout: t })), 400, 'invalid_timeout', `timeout ${t}`);
  eq((await b.get('/api/locks/device/t1')).body.locked, false, 'no lock after refused timeouts');
  const r = await grant(b, req('t1', 'MANUAL_OPERATOR', 'u', { timeout: null }));
  eq(r.expires_at, null, 'expires_at for timeout null');
  eq(r.lock.expires_at, null, 'lock.expires_at for timeout null');
  const st = await b.get('/api/locks/device/t1');
  eq(st.body.lock.expires_at, null, 'device view expires_at for timeout null');
});

H.test('request: missing fields, unknown lock_type and wrong types are 422 validation_error', async () => {
  const b = await broker();
  const good = req('v1', 'MANUAL_OPERATOR', 'u', { timeout: 10 });
  const cases = [
    ['no device_name', { lock_type: 'MANUAL_OPERATOR', user_id: 'u' }],
    ['no lock_type', { device_name: 'v1', user_id: 'u' }],
    ['no user_id', { device_name: 'v1', lock_type: 'MANUAL_OPERATOR' }],
    ['empty object', {}],
    ['lock_type ROOT', { ...good, lock_type: 'ROOT' }],
    ['lock_type lower case', { ...good, lock_type: 'manual_operator' }],
    ['lock_type number', { ...good, lock_type: 2 }],
    ['device_name number', { ...good, device_name: 17 }],
    ['device_name null', { ...good, device_name: null }],
    ['user_id number', { ...good, user_id: 5 }],
    ['user_id object', { ...good, user_id: { a: 1 } }],
    ['timeout string', { ...good, timeout: '10' }],
    ['timeout boolean', { ...good, timeout: true }],
    ['reason number', { ...good, reason: 5 }],
    ['plan_uid array', { ...good, plan_uid: ['p'] }],
  ];
  for (const [what, body] of cases) checkError(await b.acquire(body), 422, 'validation_error', what);
  eq((await b.status()).body.total_count, 0, 'no lock after refused requests');
  // unknown fields are ignored
  await grant(b, { ...good, colour: 'blue', nested: { a: [1, 2] } });
});

H.test('request: a body that is not an object or not JSON is 400 invalid_json', async () => {
  const b = await broker();
  for (const body of ['[]', '"x"', '1', 'null', 'true', '{', '{"device_name":"a",}', 'not json'])
    checkError(await b.post('/api/lock/request', body), 400, 'invalid_json', `body ${body}`);
  // a \u0000 escape would cut the string in the parser
  checkError(await b.post('/api/lock/request', '{"device_name":"a\\u0000b","lock_type":"MANUAL_OPERATOR","user_id":"u"}'), 400, 'invalid_json', 'a \\u0000 escape');
  // a complete request followed by garbage is not JSON either, and must not take the lock
  const good = JSON.stringify(req('tr1', 'MANUAL_OPERATOR', 'u'));
  for (const tail of [' trailing', '{"x":1}', ']'])
    checkError(await b.post('/api/lock/request', good + tail), 400, 'invalid_json', `valid request + ${JSON.stringify(tail)}`);
  eq((await b.get('/api/locks/device/tr1')).body.locked, false, 'no lock from a body with trailing garbage');
  await grant(b, req('tr1', 'MANUAL_OPERATOR', 'u'));          // trailing whitespace is valid JSON
});

H.test('request: JSON nested 100 levels is 400 json_too_deep; shallow nesting is fine', async () => {
  const b = await broker();
  const deep = '{"device_name":"j1","lock_type":"MANUAL_OPERATOR","user_id":"u","x":' + '['.repeat(100) + ']'.repeat(100) + '}';
  checkError(await b.post('/api/lock/request', deep), 400, 'json_too_deep', '100 levels');
  const deepObj = '{"device_name":"j1","lock_type":"MANUAL_OPERATOR","user_id":"u","x":' + '{"a":'.repeat(100) + '1' + '}'.repeat(100) + '}';
  checkError(await b.post('/api/lock/request', deepObj), 400, 'json_too_deep', '100 object levels');
  checkError(await b.post('/api/lock/request', '['.repeat(5000)), 400, 'json_too_deep', '5000 open brackets');
  await grant(b, { ...req('j1', 'MANUAL_OPERATOR', 'u'), x: [[[{ a: 1 }]]] });
});

H.test('request: a body over --max-body is 413 payload_too_large', async () => {
  const b = await broker(['--max-body', '1024']);
  const big = JSON.stringify(req('big1', 'MANUAL_OPERATOR', 'u', { reason: 'r'.repeat(2048) }));
  checkError(await b.post('/api/lock/request', big), 413, 'payload_too_large', `${big.length}-byte body`);
  const justOver = JSON.stringify(req('big1', 'MANUAL_OPERATOR', 'u', { reason: 'r'.repeat(1100) })).slice(0, 1025);
  checkError(await b.post('/api/lock/request', justOver), 413, 'payload_too_large', '1025-byte body');
  eq((await b.get('/api/locks/device/big1')).body.locked, false, 'no lock after 413');
  const fits = req('big1', 'MANUAL_OPERATOR', 'u', { reason: 'r'.repeat(900) });
  check(JSON.stringify(fits).length <= 1024, 'test body fits');
  await grant(b, fits);
});

H.test('request: an invalid UTF-8 body is 400 invalid_json', async () => {
  const b = await broker();
  const head = Buffer.from('{"device_name":"u1","lock_type":"MANUAL_OPERATOR","user_id":"');
  for (const bad of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
    const body = Buffer.concat([head, Buffer.from(bad), Buffer.from('"}')]);
    checkError(await b.post('/api/lock/request', body), 400, 'invalid_json', `user_id bytes ${Buffer.from(bad).toString('hex')}`);
  }
  eq((await b.get('/api/locks/device/u1')).body.locked, false, 'no lock after invalid UTF-8');
  await grant(b, req('u1', 'MANUAL_OPERATOR', 'Zoë'));
});

// ---- release, renew ----------------------------------------------------------
H.test('release: by query string with no body, as the old Python client sends it', async () => {
  const b = await broker();
  const w = await watch(b);
  const r = await grant(b, req('q1', 'MANUAL_OPERATOR', 'alice'));
  const qs = new URLSearchParams({ device_name: 'q1', lock_key: r.lock_key, user_id: 'alice' });
  const res = await b.request('POST', `/api/lock/release?${qs}`);
  check(res.status === 200 && res.body.success === true && typeof res.body.message === 'string', `query release: ${res.status} ${res.text}`);
  const f = await w.waitFor(x => x.type === 'lock_update' && x.device_name === 'q1' && x.action === 'released');
  eq(f.lock.lock_key, r.lock_key, 'released event carries the lock');
  eq((await b.get('/api/locks/device/q1')).body.locked, false, 'device free after release');
  checkError(await b.request('POST', `/api/lock/release?${qs}`), 404, 'not_found', 'second query release');
});

H.test('release: by JSON body; 403 wrong key, 403 wrong user, 404 no lock', async () => {
  const b = await broker();
  const r = await grant(b, req('r1', 'QUEUE_EXECUTING', 'qs'));
  checkError(await b.release({ device_name: 'r1', lock_key: '00000000-0000-4000-8000-000000000000', user_id: 'qs' }), 403, 'forbidden', 'wrong key');
  checkError(await b.release({ device_name: 'r1', lock_key: r.lock_key, user_id: 'mallory' }), 403, 'forbidden', 'wrong user');
  const qs = new URLSearchParams({ device_name: 'r1', lock_key: r.lock_key, user_id: 'mallory' });
  checkError(await b.request('POST', `/api/lock/release?${qs}`), 403, 'forbidden', 'wrong user by query');
  eq((await b.get('/api/locks/device/r1')).body.lock.lock_key, r.lock_key, 'lock survives refused releases');
  checkError(await b.release({ device_name: 'nolock', lock_key: r.lock_key, user_id: 'qs' }), 404, 'not_found', 'device without a lock');
  const ok = await releaseOk(b, r.lock);
  check(typeof ok.message === 'string', 'release message');
  checkError(await b.release({ device_name: 'r1', lock_key: r.lock_key, user_id: 'qs' }), 404, 'not_found', 'release twice');
  checkError(await b.release({ device_name: 'r1', user_id: 'qs' }), 422, 'validation_error', 'release without lock_key');
});

H.test('renew: expires_at moves later, fence and key unchanged; 403 wrong key/user, 404 no lock', async () => {
  const b = await broker();
  const w = await watch(b);
  const r = await grant(b, req('n1', 'MANUAL_OPERATOR', 'alice', { timeout: 30 }));
  // without timeout: the lock's original 30 s lease again, counted from now
  const again = await b.renew({ device_name: 'n1', lock_key: r.lock_key, user_id: 'alice' });
  check(again.status === 200 && again.body.success === true, `renew without timeout: ${again.status} ${again.text}`);
  check(Math.abs(msOf(again.body.expires_at) - (Date.now() + 30000)) < 5000, `renew without timeout uses the 30 s lease: ${again.body.expires_at}`);
  check(msOf(again.body.expires_at) >= msOf(r.expires_at), 'expires_at does not move back');
  const res = await b.renew({ device_name: 'n1', lock_key: r.lock_key, user_id: 'alice', timeout: 600 });
  check(res.status === 200 && res.body.success === true, `renew: ${res.status} ${res.text}`);
  check(TIME_RE.test(res.body.expires_at), `renew expires_at: ${res.body.expires_at}`);
  check(msOf(res.body.expires_at) - msOf(r.expires_at) > 500000, `expires_at moved ~570 s later: ${r.expires_at} -> ${res.body.expires_at}`);
  eq(res.body.fence, r.fence, 'renew keeps the fence');
  checkLock(res.body.lock, { lock_key: r.lock_key, fence: r.fence, expires_at: res.body.expires_at });
  const dev = (await b.get('/api/locks/device/n1')).body;
  eq(dev.lock.expires_at, res.body.expires_at, 'device view shows the renewed expires_at');
  const ren = await w.waitForCount(x => x.type === 'lock_update' && x.action === 'renewed' && x.device_name === 'n1', 2);
  eq(ren.map(x => x.lock.expires_at), [again.body.expires_at, res.body.expires_at], 'renewed events carry the new expires_at');
  checkError(await b.renew({ device_name: 'n1', lock_key: '00000000-0000-4000-8000-000000000000', user_id: 'alice' }), 403, 'forbidden', 'renew wrong key');
  checkError(await b.renew({ device_name: 'n1', lock_key: r.lock_key, user_id: 'bob' }), 403, 'forbidden', 'renew wrong user');
  checkError(await b.renew({ device_name: 'none', lock_key: r.lock_key, user_id: 'alice' }), 404, 'not_found', 'renew without lock');
  checkError(await b.renew({ device_name: 'n1', lock_key: r.lock_key, user_id: 'alice', timeout: 0 }), 400, 'invalid_timeout', 'renew timeout 0');
});

// ---- reads --------------------------------------------------------------------
H.test('status: locks sorted by device name, total_count, timestamp', async () => {
  const b = await broker();
  const empty = await b.status();
  eq(empty.status, 200, 'status code');
  eq(empty.body.locks, [], 'no locks');
  eq(empty.body.total_count, 0, 'total_count of nothing');
  check(TIME_RE.test(empty.body.timestamp), `timestamp: ${empty.body.timestamp}`);
  const names = ['zeta', 'Alpha', 'mid.2', 'mid.10', 'alpha', 'b-1', 'b_1'];
  const keys = {};
  for (const n of names) keys[n] = (await grant(b, req(n, 'QUEUE_QUEUED', 'u'))).lock_key;
  const st = (await b.status()).body;
  eq(st.total_count, names.length, 'total_count');
  eq(st.locks.map(l => l.device_name), [...names].sort(), 'locks sorted by device name (byte order)');
  for (const l of st.locks) checkLock(l, { lock_key: keys[l.device_name] });
});

H.test('device: locked true with the lock, locked false with lock null', async () => {
  const b = await broker();
  const free = await b.get('/api/locks/device/dev1');
  eq(free.status, 200, 'status code');
  eq([free.body.device_name, free.body.locked, free.body.lock], ['dev1', false, null], 'free device');
  check(TIME_RE.test(free.body.timestamp), 'timestamp');
  const r = await grant(b, req('dev1', 'MANUAL_OPERATOR', 'u', { reason: 'why' }));
  const held = (await b.get('/api/locks/device/dev1')).body;
  eq([held.device_name, held.locked], ['dev1', true], 'held device');
  checkLock(held.lock);
  eq(held.lock, r.lock, 'device view equals the granted lock');
  await releaseOk(b, r.lock);
  eq((await b.get('/api/locks/device/dev1')).body.locked, false, 'free again');
});

H.test('events: history with since, limit, device and plan_uid filters, paging by last_event_id', async () => {
  const b = await broker();
  const a1 = await grant(b, req('e1', 'QUEUE_EXECUTING', 'qs', { plan_uid: 'p1' }));
  const a2 = await grant(b, req('e2', 'QUEUE_EXECUTING', 'qs', { plan_uid: 'p2' }));
  await releaseOk(b, a1.lock);
  const a3 = await grant(b, req('e1', 'MANUAL_OPERATOR', 'op'));
  await grant(b, req('e1', 'MAINTENANCE', 'staff'));          // preempts a3: 2 events
  await releaseOk(b, a2.lock);
  const all = await b.get('/api/events');
  eq(all.status, 200, 'events status');
  const ev = all.body.events;
  eq(ev.map(e => `${e.action}${e.cause ? '/' + e.cause : ''} ${e.device_name}`),
    ['acquired e1', 'acquired e2', 'released e1', 'acquired e1', 'force_released/preempted e1', 'acquired e1', 'released e2'], 'history in order');
  eq(all.body.count, ev.length, 'count');
  checkIncreasing(ev.map(e => e.event_id), 'history');
  eq(all.body.last_event_id, ev[ev.length - 1].event_id, 'last_event_id is the last event');
  for (const e of ev) { checkLock(e.lock, { device_name: e.device_name }); check(TIME_RE.test(e.timestamp), 'event timestamp'); }
  eq(ev[4].lock.lock_key, a3.lock_key, 'the preempted event carries the old lock');
  // since: strictly after
  const after = (await b.get(`/api/events?since=${ev[2].event_id}`)).body;
  eq(after.events.map(e => e.event_id), ev.slice(3).map(e => e.event_id), 'since returns the events after it');
  // limit + paging with last_event_id
  const seen = [];
  let since = '0-0';
  for (let page = 0; page < 10; page++) {
    const p = (await b.get(`/api/events?limit=2&since=${since}`)).body;
    check(p.events.length <= 2, `page of at most 2: ${p.events.length}`);
    seen.push(...p.events.map(e => e.event_id));
    if (p.events.length === 0) break;
    since = p.last_event_id;
  }
  eq(seen, ev.map(e => e.event_id), 'paging with limit=2 returns every event once, in order');
  // filters
  const d2 = (await b.get('/api/events?device=e2')).body.events;
  eq(d2.map(e => e.action), ['acquired', 'released'], 'device filter');
  check(d2.every(e => e.device_name === 'e2'), 'device filter only e2');
  const p1 = (await b.get('/api/events?plan_uid=p1')).body.events;
  eq(p1.map(e => `${e.action} ${e.lock.plan_uid}`), ['acquired p1', 'released p1'], 'plan_uid filter');
  const filtered = (await b.get('/api/events?device=e1&limit=1')).body;
  eq(filtered.events.length, 1, 'limit with a filter');
  const next = (await b.get(`/api/events?device=e1&since=${filtered.last_event_id}`)).body;
  eq(next.events.map(e => e.event_id), ev.filter(e => e.device_name === 'e1').slice(1).map(e => e.event_id), 'filtered paging continues after last_event_id');
  // a bad limit is refused (docs/protocol.md does not name the code for a bad query parameter)
  for (const q of ['limit=0', 'limit=1001', 'limit=abc']) {
    const bad = await b.get(`/api/events?${q}`);
    check(bad.status === 400 || bad.status === 422, `${q} refused: ${bad.status} ${bad.text}`);
    checkError(bad, bad.status, bad.body.error, q);
  }
});

H.test('health: live is alive, ready is ready with redis_connected and active_locks', async () => {
  const b = await broker();
  const live = await b.get('/api/health/live');
  eq([live.status, live.body.status], [200, 'alive'], 'live');
  check(TIME_RE.test(live.body.timestamp), 'live timestamp');
  await grant(b, req('h1', 'MANUAL_OPERATOR', 'u'));
  await grant(b, req('h2', 'MANUAL_OPERATOR', 'u'));
  const ready = await b.get('/api/health/ready');
  eq([ready.status, ready.body.status, ready.body.redis_connected, ready.body.active_locks], [200, 'ready', true, 2], 'ready');
});

H.test('routing: unknown path 404 not_found, wrong method 405 method_not_allowed', async () => {
  const b = await broker();
  checkError(await b.get('/api/nope'), 404, 'not_found', 'GET /api/nope');
  checkError(await b.post('/api/lock/nope', {}), 404, 'not_found', 'POST /api/lock/nope');
  checkError(await b.get('/api/lock/request'), 405, 'method_not_allowed', 'GET /api/lock/request');
  checkError(await b.get('/api/lock/release'), 405, 'method_not_allowed', 'GET /api/lock/release');
  checkError(await b.get('/api/lock/renew'), 405, 'method_not_allowed', 'GET /api/lock/renew');
  checkError(await b.post('/api/locks/status', {}), 405, 'method_not_allowed', 'POST /api/locks/status');
  checkError(await b.request('DELETE', '/api/locks/device/x'), 405, 'method_not_allowed', 'DELETE /api/locks/device/x');
  checkError(await b.request('PUT', '/api/health/live', '{}'), 405, 'method_not_allowed', 'PUT /api/health/live');
});

// ---- preemption -----------------------------------------------------------------
H.test('preemption: the 4x4 matrix of holder and requester lock types', async () => {
  const b = await broker();
  const w = await watch(b);
  for (const ht of TYPES) {
    for (const rt of TYPES) {
      const dev = `m.${PRIORITY[ht]}.${PRIORITY[rt]}`, pair = `${ht} held, ${rt} asks`;
      const h = await grant(b, req(dev, ht, `holder-${ht}`, { reason: 'hold', plan_uid: 'ph' }));
      if (PRIORITY[rt] < PRIORITY[ht]) {
        const from = w.frames.length;
        const r = await grant(b, req(dev, rt, `req-${rt}`));
        check(r.preempted, `${pair}: reply has preempted: ${JSON.stringify(r)}`);
        eq(r.preempted, h.lock, `${pair}: preempted is the old lock`);
        check(r.fence > h.fence, `${pair}: new fence ${r.fence} > old ${h.fence}`);
        const [fr, acq] = await w.waitForCount(f => f.type === 'lock_update' && f.device_name === dev, 2, 5000, from);
        eq([fr.action, fr.cause, fr.lock.lock_key], ['force_released', 'preempted', h.lock_key], `${pair}: first event`);
        eq([acq.action, acq.lock.lock_key], ['acquired', r.lock_key], `${pair}: second event`);
        checkIncreasing([fr.event_id, acq.event_id], pair);
        await releaseOk(b, r.lock);
      } else {
        const d = await deny(b, req(dev, rt, `req-${rt}`));
        eq(d.holder, h.lock, `${pair}: holder is the holder's lock`);
        check(d.message.includes(`holder-${ht}`), `${pair}: message names the holder: ${d.message}`);
        check(!('preempted' in d) || d.preempted === null, `${pair}: no preempted in a denial`);
        eq((await b.get(`/api/locks/device/${dev}`)).body.lock.lock_key, h.lock_key, `${pair}: holder keeps the lock`);
        await releaseOk(b, h.lock);
      }
    }
  }
  const bad = w.updates().filter(f => f.action === 'force_released' && f.cause !== 'preempted');
  eq(bad.length, 0, 'only preemptions ended locks');
});

// ---- WebSocket -------------------------------------------------------------------
H.test('ws: initial_status with event_id, lock_update for acquire/renew/release/force_released with increasing event_ids', async () => {
  const b = await broker();
  const pre = await grant(b, req('w0', 'QUEUE_QUEUED', 'u'));
  const w = await watch(b);
  const init = w.frames[0];
  eq(init.type, 'initial_status', 'first frame');
  check(ID_RE.test(init.event_id), `initial_status event_id: ${init.event_id}`);
  eq(init.data.total_count, 1, 'initial total_count');
  eq(init.data.locks.map(l => l.lock_key), [pre.lock_key], 'initial locks');
  check(TIME_RE.test(init.data.timestamp), 'initial timestamp');
  const r = await grant(b, req('w1', 'MANUAL_OPERATOR', 'alice', { timeout: 60 }));
  await b.renew({ device_name: 'w1', lock_key: r.lock_key, user_id: 'alice', timeout: 120 });
  await releaseOk(b, r.lock);
  const m = await grant(b, req('w0', 'MAINTENANCE', 'staff'));
  const ups = await w.waitForCount(f => f.type === 'lock_update', 5, 5000);
  eq(ups.map(f => `${f.action}${f.cause ? '/' + f.cause : ''} ${f.device_name}`),
    ['acquired w1', 'renewed w1', 'released w1', 'force_released/preempted w0', 'acquired w0'], 'updates in order');
  for (const f of ups) { checkLock(f.lock, { device_name: f.device_name }); check(TIME_RE.test(f.timestamp), 'update timestamp'); }
  eq(ups[4].lock.lock_key, m.lock_key, 'acquired carries the new lock');
  checkIncreasing([init.event_id, ...ups.map(f => f.event_id)], 'initial_status then updates');
  const hist = (await b.get(`/api/events?since=${init.event_id}`)).body.events;
  eq(hist.map(e => e.event_id), ups.map(f => f.event_id), 'WS event ids are the history ids');
});

H.test('ws: ping gets pong, get_status gets status_response', async () => {
  const b = await broker();
  const w = await watch(b);
  const pong = await w.ask({ type: 'ping' }, f => f.type === 'pong');
  check(TIME_RE.test(pong.timestamp), `pong timestamp: ${JSON.stringify(pong)}`);
  const r = await grant(b, req('s1', 'MANUAL_OPERATOR', 'u'));
  await w.waitFor(f => f.type === 'lock_update' && f.device_name === 's1');
  const st = await w.ask({ type: 'get_status' }, f => f.type === 'status_response');
  eq(st.data.total_count, 1, 'status_response total_count');
  eq(st.data.locks.map(l => l.lock_key), [r.lock_key], 'status_response locks');
  check(TIME_RE.test(st.data.timestamp), 'status_response timestamp');
  const echoed = await w.ask({ type: 'ping', id: 'x-17' }, f => f.type === 'pong' && f.id === 'x-17');
  eq(echoed.id, 'x-17', 'id echoed');
});

H.test('ws: resume from an older event_id replays exactly the later events in order, then resume_result', async () => {
  const b = await broker();
  const w = await watch(b);
  const keys = [];
  for (let i = 0; i < 3; i++) keys.push(await grant(b, req(`r${i}`, 'MANUAL_OPERATOR', 'u')));
  for (const k of keys) await releaseOk(b, k.lock);
  const ups = await w.waitForCount(f => f.type === 'lock_update', 6, 5000);
  const since = ups[1].event_id;
  const w2 = await watch(b);
  const from = w2.frames.length;
  w2.send({ type: 'resume', since, id: 'res-1' });
  const done = await w2.waitFor(f => f.type === 'resume_result', 5000, from);
  const replay = w2.frames.slice(from, w2.frames.indexOf(done));
  eq(replay.map(f => `${f.type} ${f.event_id}`), ups.slice(2).map(f => `lock_update ${f.event_id}`), 'replayed frames');
  eq(replay.map(lockMsg), ups.slice(2).map(lockMsg), 'replayed events equal the live ones');
  eq([done.replayed, done.since, done.event_id, done.id], [4, since, ups[5].event_id, 'res-1'], 'resume_result');
  // live events continue after the replay
  await grant(b, req('r9', 'QUEUE_QUEUED', 'u'));
  const live = await w2.waitFor(f => f.type === 'lock_update' && f.device_name === 'r9', 5000, from);
  check(cmpId(live.event_id, ups[5].event_id) > 0, 'live event after the replay');
  // resume from the newest id replays nothing
  const f2 = w2.frames.length;
  const none = await w2.ask({ type: 'resume', since: live.event_id }, f => f.type === 'resume_result');
  eq(none.replayed, 0, 'resume from the newest id');
  eq(w2.frames.slice(f2).filter(f => f.type === 'lock_update').length, 0, 'no replayed frames');
});

H.test('ws: resume from an id older than the kept stream gives resume_gap, then a fresh initial_status', async () => {
  const b = await broker(['--stream-maxlen', '10']);
  const w = await watch(b);
  const first = await grant(b, req('g0', 'MANUAL_OPERATOR', 'u'));
  await releaseOk(b, first.lock);
  const firstId = (await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'g0')).event_id;
  // Redis trims approximately (whole stream nodes): make events until the first is gone.
  let made = 2;
  const gone = async () => {
    const oldest = (await b.get('/api/events?limit=1')).body.events[0];
    return oldest && cmpId(oldest.event_id, firstId) > 0;
  };
  while (made < 50 || !(await gone())) {
    check(made < 1000, `the stream was not trimmed after ${made} events with --stream-maxlen 10`);
    const g = await grant(b, req('g1', 'QUEUE_QUEUED', 'u'));
    await releaseOk(b, g.lock);
    made += 2;
  }
  console.log(`# the first event was trimmed after ${made} events`);
  const held = await grant(b, req('g2', 'MANUAL_OPERATOR', 'u'));
  const w2 = await watch(b);
  const from = w2.frames.length;
  w2.send({ type: 'resume', since: firstId });
  const err = await w2.waitFor(f => f.type === 'error', 5000, from);
  eq(err.error, 'resume_gap', 'error code');
  check(typeof err.detail === 'string', 'resume_gap detail');
  const init = await w2.waitFor(f => f.type === 'initial_status', 5000, w2.frames.indexOf(err));
  eq(init.data.locks.map(l => l.lock_key), [held.lock_key], 'fresh initial_status has the current locks');
  check(ID_RE.test(init.event_id), 'fresh initial_status has an event_id');
  eq(w2.frames.slice(from).filter(f => f.type === 'lock_update').length, 0, 'no partial replay');
  check(w2.open, 'socket still open');
});

H.test('ws: bad JSON, non-object and unknown type give an error frame; the socket still answers ping', async () => {
  const b = await broker();
  const w = await watch(b);
  for (const [msg, code] of [['{not json', 'invalid_json'], ['[1,2]', 'invalid_json'], ['"str"', 'invalid_json'], ['42', 'invalid_json'],
    ['{"type":"fly_to_the_moon"}', 'unknown_type'], ['{"no_type":1}', null],
    ['{"type":"ping"} junk', 'invalid_json'], ['{"type":"get_status"}{"x":1}', 'invalid_json']]) {
    const err = await w.ask(msg, f => f.type === 'error');
    if (code) eq(err.error, code, `error for ${msg}`);
    check(typeof err.error === 'string' && typeof err.detail === 'string', `error frame has error and detail for ${msg}: ${JSON.stringify(err)}`);
    await w.ask({ type: 'ping' }, f => f.type === 'pong');
  }
  check(w.open, 'socket open after bad messages');
});

H.test('ws: a message over --max-ws-message is closed with 1009', async () => {
  const b = await broker(['--max-ws-message', '1024']);
  const ok = await watch(b);
  await ok.ask({ type: 'ping', pad: 'x'.repeat(900) }, f => f.type === 'pong');
  const w = await watch(b);
  w.send({ type: 'ping', pad: 'x'.repeat(4000) });
  const code = await Promise.race([w.closed, E.delay(5000).then(() => 'still open after 5 s')]);
  eq(code, 1009, 'close code');
  await ok.ask({ type: 'ping' }, f => f.type === 'pong');   // other sockets unaffected
});

H.test('ws: an invalid UTF-8 text frame is closed with 1007', async () => {
  const b = await broker();
  const w = await watch(b);
  w.send(Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
  const code = await Promise.race([w.closed, E.delay(5000).then(() => 'still open after 5 s')]);
  eq(code, 1007, 'close code');
});

// ---- fences, expiry, several brokers --------------------------------------------------
H.test('fences strictly increase per device across a devlockd restart (SIGTERM)', async () => {
  let b = await broker();
  const fences = { f1: [], f2: [] };
  for (let i = 0; i < 3; i++) {
    for (const d of ['f1', 'f2']) {
      const r = await grant(b, req(d, 'MANUAL_OPERATOR', 'u'));
      fences[d].push(r.fence);
      await releaseOk(b, r.lock);
    }
  }
  const held = await grant(b, req('f1', 'QUEUE_QUEUED', 'u'));
  fences.f1.push(held.fence);
  const res = await b.stop('SIGTERM');
  eq(res.code, 0, 'devlockd exit status on SIGTERM');
  b = await broker();
  eq((await b.get('/api/locks/device/f1')).body.lock.lock_key, held.lock_key, 'lock survives the broker restart');
  const pre = await grant(b, req('f1', 'MAINTENANCE', 'staff'));
  fences.f1.push(pre.fence);
  const r2 = await grant(b, req('f2', 'MANUAL_OPERATOR', 'u'));
  fences.f2.push(r2.fence);
  for (const d of ['f1', 'f2'])
    for (let i = 1; i < fences[d].length; i++) check(fences[d][i] > fences[d][i - 1], `fences of ${d} increase: ${fences[d]}`);
});

H.test('expiry: timeout 1 and 0.5 end with force_released cause expired, on time (not early, <= 150 ms late)', async () => {
  const b = await broker();
  const w = await watch(b);
  for (const [dev, t] of [['x1', 1], ['x05', 0.5]]) {
    const r = await grant(b, req(dev, 'MANUAL_OPERATOR', 'u', { timeout: t }));
    eq(msOf(r.expires_at) - msOf(r.lock.acquired_at), t * 1000, `lease of ${t} s`);
    const f = await w.waitFor(x => x.type === 'lock_update' && x.device_name === dev && x.action === 'force_released', 5000);
    eq(f.cause, 'expired', 'cause');
    eq(f.lock.lock_key, r.lock_key, 'the expired lock');
    const late = f.recvAt - msOf(r.expires_at);
    console.log(`# ${dev}: expiry event received ${late} ms after expires_at`);
    check(late >= -20, `expiry not early: received ${late} ms after expires_at`);
    check(late <= 150, `expiry on time: received ${late} ms after expires_at (limit 100 ms + 50 ms slack)`);
    eq((await b.get(`/api/locks/device/${dev}`)).body.locked, false, 'device free after expiry');
  }
});

H.test('expiry with two brokers on one Redis: exactly one expired event', async () => {
  const a = await broker(), b = await broker();
  const wa = await watch(a), wb = await watch(b);
  const r = await grant(a, req('xx', 'MANUAL_OPERATOR', 'u', { timeout: 0.5 }));
  const isExp = x => x.type === 'lock_update' && x.device_name === 'xx' && x.action === 'force_released';
  const fa = await wa.waitFor(isExp, 5000), fb = await wb.waitFor(isExp, 5000);
  eq([fa.cause, fa.event_id], [fb.cause, fb.event_id], 'same expiry event on both');
  eq(fa.cause, 'expired', 'cause');
  await wa.expectNone(isExp, 500, wa.frames.indexOf(fa) + 1);
  eq(wb.frames.filter(isExp).length, 1, 'one expiry event on B');
  const hist = (await a.get('/api/events?device=xx')).body.events;
  const ends = hist.filter(e => e.action !== 'expiring');   // 'expiring' is the 80 % warning
  eq(ends.map(e => `${e.action}${e.cause ? '/' + e.cause : ''}`), ['acquired', 'force_released/expired'], 'history of xx');
  eq(ends[1].lock.lock_key, r.lock_key, 'the expired lock');
  check(hist.filter(e => e.action === 'expiring').length <= 1, 'at most one expiring warning');
});

H.test('two brokers on one Redis: acquire via A, release via B; same events in the same order; same status', async () => {
  const a = await broker(), b = await broker();
  const wa = await watch(a), wb = await watch(b);
  const r1 = await grant(a, req('t1', 'MANUAL_OPERATOR', 'alice'));
  eq((await b.get('/api/locks/device/t1')).body.lock.lock_key, r1.lock_key, 'B sees the lock taken via A');
  await deny(b, req('t1', 'MANUAL_OPERATOR', 'bob'));
  await releaseOk(b, r1.lock);
  const r2 = await grant(b, req('t2', 'QUEUE_EXECUTING', 'qs'));
  const r3 = await grant(a, req('t2', 'MAINTENANCE', 'staff'));
  eq(r3.preempted.lock_key, r2.lock_key, 'A preempts the lock taken via B');
  check(r3.fence > r2.fence, 'fence increases across brokers');
  await grant(a, req('t3', 'QUEUE_QUEUED', 'q'));
  const ua = await wa.waitForCount(f => f.type === 'lock_update', 6, 5000);
  const ub = await wb.waitForCount(f => f.type === 'lock_update', 6, 5000);
  eq(ua.map(f => `${f.action} ${f.device_name}`), ['acquired t1', 'released t1', 'acquired t2', 'force_released t2', 'acquired t2', 'acquired t3'], 'events on A');
  eq(ua.map(lockMsg), ub.map(lockMsg), 'A and B watchers got the same events');
  checkIncreasing(ua.map(f => f.event_id), 'events on A');
  const strip = s => JSON.stringify({ locks: s.locks, total_count: s.total_count });
  const same = await E.poll(async () => {
    const [sa, sb] = [(await a.status()).body, (await b.status()).body];
    return strip(sa) === strip(sb) && sa.total_count === 2 ? sa : null;
  }, 3000, 'equal status on A and B');
  eq(same.locks.map(l => l.device_name), ['t2', 't3'], 'status');
});

// ---- Redis faults --------------------------------------------------------------------------
H.test('Redis SIGKILLed and restarted from its append-only file: locks kept, fences never repeat, watchers stay connected', async () => {
  const r = await ownRedis();
  const b = await broker([], r);
  const w = await watch(b);
  const held = [];
  for (let i = 0; i < 5; i++) held.push(await grant(b, req(`k${i}`, 'MANUAL_OPERATOR', 'u', { timeout: 600 })));
  let cyc = 0;
  for (let i = 0; i < 4; i++) { const c = await grant(b, req('kc', 'QUEUE_QUEUED', 'u')); cyc = c.fence; await releaseOk(b, c.lock); }
  const before = (await b.status()).body.locks;
  const nFrames = w.frames.length;
  await r.kill();
  await E.poll(async () => (await b.get('/api/health/ready')).status === 503, 5000, 'not ready while Redis is down');
  await r.restart();
  await E.poll(async () => (await b.get('/api/health/ready')).status === 200, 15000, 'ready after Redis restarts');
  const after = (await b.status()).body;
  eq(after.locks, before, 'every acknowledged lock is still there, unchanged');
  check(w.open && w.closeCode === null, 'watcher still connected');
  const c = await grant(b, req('kc', 'QUEUE_QUEUED', 'u'));
  check(c.fence > cyc, `fence after Redis restart ${c.fence} > ${cyc}`);
  const p = await grant(b, req('k0', 'MAINTENANCE', 'staff'));
  check(p.fence > held[0].fence, `preempting fence ${p.fence} > ${held[0].fence}`);
  eq(p.preempted.lock_key, held[0].lock_key, 'the kept lock is the one preempted');
  const ev = await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'k0' && f.action === 'acquired', 5000, nFrames);
  eq(ev.lock.lock_key, p.lock_key, 'watcher gets events made after recovery');
  await w.ask({ type: 'ping' }, f => f.type === 'pong');
});

async function outage(name, { down, up }) {
  const r = await ownRedis();
  const b = await broker(['--redis-timeout-ms', '750'], r);
  const w = await watch(b);
  await grant(b, req('o0', 'MANUAL_OPERATOR', 'u'));
  await down(r);
  const t0 = Date.now();
  const res = await b.acquire(req('o1', 'MANUAL_OPERATOR', 'u'));
  const ms = Date.now() - t0;
  console.log(`# ${name}: request answered ${res.status} in ${ms} ms`);
  checkError(res, 503, 'unavailable', `request while Redis is ${name}`);
  check(ms <= 1000, `503 within 1 s (took ${ms} ms)`);
  const notReady = await E.poll(async () => { const x = await b.get('/api/health/ready'); return x.status === 503 ? x : null; }, 3000, 'ready 503');
  eq([notReady.body.status, notReady.body.redis_connected], ['not_ready', false], `ready while Redis is ${name}`);
  const live = await b.get('/api/health/live');
  eq(live.status, 200, 'still alive');
  check(w.open, 'watcher connected during the outage');
  await up(r);
  const nFrames = w.frames.length;
  const ok = await E.poll(async () => {
    const x = await b.acquire(req('o2', 'QUEUE_EXECUTING', 'qs'));
    return x.status === 200 && x.body.success ? x.body : null;
  }, 15000, 'requests succeed after recovery', 100);
  eq((await b.get('/api/health/ready')).status, 200, 'ready after recovery');
  const ev = await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'o2' && f.action === 'acquired', 5000, nFrames);
  eq(ev.lock.lock_key, ok.lock_key, 'watcher gets the event made after recovery');
  check(w.open && w.closeCode === null, 'watcher stayed connected');
}

H.test('Redis SIGSTOPped: 503 unavailable within 1 s, not ready; after SIGCONT requests succeed and the watcher gets new events', async () => {
  await outage('stopped', { down: r => r.signal('SIGSTOP'), up: r => r.signal('SIGCONT') });
});

H.test('Redis SIGKILLed without restart: 503 unavailable within 1 s, not ready; after a restart requests succeed and the watcher gets new events', async () => {
  await outage('killed', { down: r => r.kill(), up: r => r.restart() });
}, { timeoutMs: 40000 });

// ---- load, signals ---------------------------------------------------------------------------
H.test('contention: 20 clients hammering QUEUE_QUEUED never get a device held under MAINTENANCE', async () => {
  const b = await broker();
  const m = await grant(b, req('busy', 'MAINTENANCE', 'staff', { timeout: 600 }));
  const end = Date.now() + 2000;
  let sent = 0, granted = 0, other = [];
  await Promise.all(Array.from({ length: 20 }, async (_, c) => {
    for (let i = 0; i < 25 && Date.now() < end; i++) {
      sent++;
      const res = await b.acquire(req('busy', 'QUEUE_QUEUED', `client-${c}`));
      if (res.status !== 200 || !res.body) other.push(`${res.status} ${res.text.slice(0, 200)}`);
      else if (res.body.success !== false) granted++;
      else if (!res.body.holder || res.body.holder.lock_key !== m.lock_key) other.push(`holder ${JSON.stringify(res.body.holder)}`);
    }
  }));
  console.log(`# ${sent} contending requests`);
  eq(granted, 0, 'grants while MAINTENANCE holds the device');
  eq(other.slice(0, 3), [], 'every request answered 200 naming the MAINTENANCE holder');
  check(sent >= 100, `enough requests were made (${sent})`);
  eq((await b.get('/api/locks/device/busy')).body.lock.lock_key, m.lock_key, 'MAINTENANCE still holds');
  const hist = (await b.get('/api/events?device=busy')).body.events;
  eq(hist.length, 1, 'one event (the MAINTENANCE grant) for the device');
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  H.test(`${sig}: devlockd exits 0 promptly, with a WebSocket open and a lock held`, async () => {
    const b = await broker();
    const w = await watch(b);
    await grant(b, req('sig1', 'MANUAL_OPERATOR', 'u'));
    const res = await b.stop(sig);
    console.log(`# exited ${JSON.stringify(res)} after ${sig}`);
    eq([res.code, res.signal], [0, null], `exit after ${sig}`);
    check(res.ms <= 3000, `exit within 3 s (took ${res.ms} ms)`);
    const code = await Promise.race([w.closed, E.delay(3000).then(() => 'open')]);
    check(code !== 'open', 'the WebSocket was closed');
    eq(redis.cli('PING'), 'PONG', 'Redis untouched');
  });
}

// ---- runner ----------------------------------------------------------------------------------
async function main() {
  const only = process.argv[2] ? new RegExp(process.argv[2]) : null;
  let result = { passed: 0, failed: 1 };
  let problems = [];
  try {
    redis = await E.Redis.start();
    result = await H.run({
      only,
      beforeEach: () => { E.markLogs(); brokers = []; redises = []; watchers = []; redis.flushall(); },
      afterEach: async () => {
        for (const w of watchers) w.sock.terminate();
        for (const r of redises) r.signal('SIGCONT');
        const errs = [];
        for (const b of brokers) {
          if (b.proc.exitCode !== null || b.proc.signalCode !== null) continue;
          b.proc.kill('SIGCONT');
          const res = await b.stop('SIGTERM').catch(e => { errs.push(e.message); return null; });
          if (res && (res.code !== 0 || res.signal)) errs.push(`devlockd ${b.pid} exited ${JSON.stringify(res)} on SIGTERM`);
        }
        for (const r of redises) await r.kill();
        if (errs.length) throw new Error(errs.join('\n'));
      },
      onFail: () => E.printLogs(),
    });
  } catch (e) {
    console.log(`FAIL - suite setup: ${e.stack || e}`);
    E.printLogs();
  } finally {
    problems = await E.stopAll();
  }
  for (const p of problems) console.log(`FAIL - ${p}`);
  const failed = result.failed + problems.length;
  console.log(`${result.passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
main();
