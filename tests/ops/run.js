'use strict';
// Operations and security suite (issue 5), against real redis-server and
// devlockd processes on loopback:
//   auth     roles x operations over HTTP and WebSocket, hidden lock keys, a
//            seeded 10 000-attempt unauthorized sweep that must change nothing
//            in Redis and emit nothing, SIGHUP reload of the auth file
//   tls      HTTPS + WSS on one port with a certificate made here; plain HTTP
//   cors     none by default, listed origins, preflight, '*'
//   limits   body, JSON depth, WS message size, connections, slow readers,
//            slow headers and bodies; the server keeps serving others
//   metrics  a strict Prometheus text parser; counters after each lock event;
//            Redis down and back
//   catalogue strict mode, /api/devices, three file formats, per-device
//            grace and lock-delay, SIGHUP reload, broken files kept out
//   logs     JSON lines, levels, --print-config; the service files
// Usage: node tests/ops/run.js [--seed N]. Last line: "N passed, M failed".
const { execFileSync, spawnSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, poll, stopAll, freePort, BUILD, ROOT } = require('../lib/servers.js');
const prom = require('./prom.js');
const { assert, eq, bearer, prng, redisState, keyLeaks, lockObjects, rawConnect, rssKb, curl } = require('./util.js');
const { startDaemon, stopDaemons } = require('../lib/procs.js');

const WebSocket = require(path.join(ROOT, 'tests', 'node_modules', 'ws'));
const seedArg = process.argv.indexOf('--seed');
const SEED = seedArg > 0 ? Number(process.argv[seedArg + 1]) : 20261123;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-ops-'));
let redis;            // shared by most tests (FLUSHALL between groups)
let current = [];     // brokers of the running test, for logs on failure
const dump = [];      // extra things to print on failure

async function started(b) { current.push(b); return b; }
async function metricsOf(b, headers = {}) {
  const r = await b.get('/metrics', headers);
  eq(r.status, 200, '/metrics status');
  assert(/^text\/plain/.test(r.headers['content-type'] || ''), `/metrics content-type text/plain (got ${r.headers['content-type']})`);
  return prom.parse(r.text);
}
const delay = (ms) => new Promise(r => setTimeout(r, ms)); // pacing only, never to synchronise

// ---- users, tokens, roles --------------------------------------------------------
const TOK = {
  alice: 'alice-token-0001', bob: 'bob-token-0002', qs: 'queue-server-token-0003', staff: 'staff-token-0004',
  viewer: 'viewer-token-0005', root: 'root-admin-token-0006', 'alice:lab': 'alice-lab-token-0007',
};
const ROLES = {
  alice: ['operator'], bob: ['operator', 'queue'], qs: ['queue'], staff: ['maintenance'],
  viewer: ['viewer'], root: ['admin'], 'alice:lab': ['operator'],
};
const TYPES = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'];
const NEEDS = { MAINTENANCE: 'maintenance', QUEUE_EXECUTING: 'queue', MANUAL_OPERATOR: 'operator', QUEUE_QUEUED: 'queue' };
const isAdmin = (u) => (ROLES[u] || []).includes('admin');
const mayLock = (u, type) => isAdmin(u) || (ROLES[u] || []).includes(NEEDS[type]);
const AS = (u) => bearer(TOK[u]);
// bob's digest is made with the command docs/operations.md gives
const shaCli = (t) => execFileSync('sh', ['-c', 'printf %s "$1" | sha256sum | cut -d" " -f1', 'sh', t], { encoding: 'utf8' }).trim();
const authFile = path.join(tmp, 'auth.json');
function writeAuth(mutate = (u) => u) {
  const users = Object.keys(TOK).map(u => (u === 'bob'
    ? { user_id: u, token_sha256: shaCli(TOK[u]), roles: ROLES[u] }
    : { user_id: u, token: TOK[u], roles: ROLES[u] }));
  fs.writeFileSync(authFile, JSON.stringify({ users: mutate(users) }, null, 1));
  return authFile;
}

// A WebSocket with a token (header or ?token=), waiting for initial_status.
async function wsAs(b, user, via = 'header') {
  const w = via === 'header' ? await b.ws('', AS(user)) : await b.ws(`?token=${encodeURIComponent(TOK[user])}`);
  await w.waitFor(f => f.type === 'initial_status', 5000);
  return w;
}
// Sends a command with an id and waits for the frame answering it.
let wsId = 1;
async function wsCall(w, msg, timeoutMs = 5000) {
  const id = wsId++;
  w.send({ ...msg, id });
  return w.waitFor(f => f.id === id, timeoutMs);
}
// A WebSocket upgrade that must be refused: resolves with how it failed.
function wsRefused(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const s = new WebSocket(url, { headers });
    const t = setTimeout(() => { s.terminate(); reject(new Error('upgrade neither accepted nor refused in 5 s')); }, 5000);
    s.on('open', () => { clearTimeout(t); s.close(); reject(new Error(`upgrade accepted: ${url}`)); });
    s.on('unexpected-response', (req, res) => { clearTimeout(t); req.destroy(); resolve(`HTTP ${res.statusCode}`); });
    s.on('error', (e) => { clearTimeout(t); resolve(e.message); });
  });
}

// =================================================================================
test('setup: redis-server; the Prometheus parser rejects malformed pages', async () => {
  redis = await Redis.start({ dir: fs.mkdtempSync(path.join(tmp, 'redis-')) });
  const good = '# HELP a_total x\n# TYPE a_total counter\na_total{k="q\\"\\\\\\n",z="1"} 3\n# TYPE h histogram\n' +
    'h_bucket{le="0.1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.3\nh_count 2\n';
  const p = prom.parse(good);
  eq(p.get('a_total', { k: 'q"\\\n', z: '1' }), 3, 'escaped label value');
  eq(p.quantileBound('h', 0.99), Infinity, 'quantile bound');
  for (const bad of ['x 1\n', '# TYPE x counter\nx{a="1} 1\n', '# TYPE x counter\nx one\n', '# TYPE x counter\nx 1\nx 2\n',
    '# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', '# TYPE x counter\nx 1'])
    assert((() => { try { prom.parse(bad); return false; } catch (e) { return true; } })(), `parser accepts ${JSON.stringify(bad)}`);
});

// ---- auth ---------------------------------------------------------------------
let ab; // the broker with --auth-file

test('auth: 401 with WWW-Authenticate for every protected route; public routes need no token', async () => {
  ab = await started(await Broker.start(redis.url, ['--auth-file', writeAuth()]));
  const protectedRoutes = [
    ['POST', '/api/lock/request', { device_name: 'p1', lock_type: 'QUEUE_QUEUED', user_id: 'qs' }],
    ['POST', '/api/lock/release', { device_name: 'p1', lock_key: 'k', user_id: 'qs' }],
    ['POST', '/api/lock/renew', { device_name: 'p1', lock_key: 'k', user_id: 'qs' }],
    ['POST', '/api/lock/force_release', { device_name: 'p1' }],
    ['POST', '/api/lock/validate', { device_name: 'p1', fence: 1 }],
    ['GET', '/api/locks/status'], ['GET', '/api/locks/device/p1'], ['GET', '/api/events'],
    ['GET', '/api/devices'], ['GET', '/metrics']];
  const badHeaders = [{}, bearer('not-a-token'), bearer(TOK.alice + 'x'), { authorization: `Basic ${Buffer.from('alice:' + TOK.alice).toString('base64')}` },
    { authorization: 'Bearer' }, { authorization: 'Bearer ' }, { authorization: TOK.alice }];
  for (const [method, p, body] of protectedRoutes) {
    for (const h of badHeaders) {
      const r = await ab.request(method, p, body, h);
      eq(r.status, 401, `${method} ${p} with ${JSON.stringify(h)}`);
      eq(r.body && r.body.error, 'unauthorized', `${method} ${p} error code`);
      eq(r.headers['www-authenticate'], 'Bearer', `${method} ${p} WWW-Authenticate`);
    }
    const ok = await ab.request(method, p, method === 'POST' ? body : undefined, AS('root'));
    assert(ok.status !== 401, `${method} ${p} with an admin token: ${ok.status}`);
  }
  eq((await ab.get('/api/locks/status', { authorization: `bearer ${TOK.viewer}` })).status, 200, 'the scheme is case-insensitive (RFC 7235)');
  eq((await ab.get('/api/health/live')).status, 200, 'liveness needs no token');
  const ready = await ab.get('/api/health/ready');
  eq(ready.status, 200, 'readiness needs no token');
  eq(ready.body.status, 'ready', 'ready');
  eq((await ab.get('/')).status, 200, 'the dashboard page needs no token');
  eq((await ab.request('OPTIONS', '/api/lock/request', undefined, { origin: 'http://x.example', 'access-control-request-method': 'POST' })).status, 204, 'preflight needs no token');
  eq((await ab.get('/api/locks/status', AS('bob'))).status, 200, 'a token_sha256 user (digest from printf %s TOKEN | sha256sum)');
  eq(redis.cli('EXISTS', 'dl:{p1}:lock'), '0', 'nothing was locked by the refused calls');
});

test('auth: roles x operations over HTTP (acquire each type, renew, release, on behalf, force release, reads)', async () => {
  const users = Object.keys(TOK);
  // a lock held by someone else, target of the force releases
  const target = await ab.acquire({ device_name: 'hx-target', lock_type: 'QUEUE_QUEUED', user_id: 'ghost' }, AS('root'));
  eq(target.body.success, true, 'admin acquires on behalf of another user_id');
  eq(target.body.lock.user_id, 'ghost', 'the lock is the named user\'s');
  for (const u of users) {
    for (const type of TYPES) {
      const dev = `hx-${u.replace(':', '.')}-${type}`;
      const r = await ab.acquire({ device_name: dev, lock_type: type, user_id: u, timeout: 60 }, AS(u));
      if (!mayLock(u, type)) {
        eq(r.status, 403, `${u} may not take ${type}`);
        eq(r.body.error, 'forbidden', `${u}/${type} error code`);
        eq(redis.cli('EXISTS', `dl:{${dev}}:lock`), '0', `${u}/${type}: nothing locked`);
        continue;
      }
      eq(r.status, 200, `${u} takes ${type}`);
      eq(r.body.success, true, `${u} takes ${type}: success`);
      const key = r.body.lock_key;
      const rn = await ab.post('/api/lock/renew', { device_name: dev, lock_key: key, user_id: u, timeout: 30 }, AS(u));
      eq(rn.status, 200, `${u} renews its ${type} lock`);
      // the old client's query-string release for half of them, a JSON body for the rest
      const rel = type.length % 2
        ? await ab.post(`/api/lock/release?device_name=${dev}&lock_key=${key}&user_id=${encodeURIComponent(u)}`, undefined, AS(u))
        : await ab.release({ device_name: dev, lock_key: key, user_id: u }, AS(u));
      eq(rel.status, 200, `${u} releases its ${type} lock`);
    }
    const allowedType = TYPES.find(t => mayLock(u, t)) || 'MANUAL_OPERATOR';
    const behalf = await ab.acquire({ device_name: `hb-${u.replace(':', '.')}`, lock_type: allowedType, user_id: 'someone-else' }, AS(u));
    if (isAdmin(u)) eq(behalf.body.success, true, 'admin acts for another user');
    else { eq(behalf.status, 403, `${u} may not act as another user_id`); eq(behalf.body.error, 'forbidden', 'error'); }
    if (!isAdmin(u)) {
      const fr = await ab.post('/api/lock/force_release', { device_name: 'hx-target', reason: 'x' }, AS(u));
      eq(fr.status, 403, `${u} may not force release`);
    }
    for (const p of ['/api/locks/status', '/api/locks/device/hx-target', '/api/events?limit=5', '/api/devices', '/metrics'])
      eq((await ab.get(p, AS(u))).status, 200, `${u} reads ${p}`);
    eq((await ab.post('/api/lock/validate', { device_name: 'hx-target', fence: target.body.fence }, AS(u))).body.valid, true, `${u} validates a fence`);
  }
  const fr = await ab.post('/api/lock/force_release', { device_name: 'hx-target', reason: 'cleanup' }, AS('root'));
  eq(fr.body.success, true, 'admin force releases');
  // an admin releases someone's lock with that user's key and user_id
  const own = await ab.acquire({ device_name: 'hx-own', lock_type: 'MANUAL_OPERATOR', user_id: 'alice' }, AS('alice'));
  eq((await ab.release({ device_name: 'hx-own', lock_key: own.body.lock_key, user_id: 'alice' }, AS('root'))).status, 200, 'admin releases for alice');
  eq((await ab.get('/api/locks/status', AS('root'))).body.total_count, 1, 'only the admin\'s lock for someone-else remains');
});

test('auth: roles x operations over WebSocket (header and ?token=), upgrades without a valid token refused', async () => {
  const url = `ws://127.0.0.1:${ab.port}/ws`;
  for (const [how, h, q] of [['no token', {}, ''], ['wrong token', bearer('nope-nope-nope'), ''], ['wrong ?token=', {}, '?token=nope-nope'],
    ['Basic', { authorization: 'Basic YTpi' }, ''], ['empty ?token=', {}, '?token=']])
    await wsRefused(url + q, h).catch(e => { throw new Error(`${how}: ${e.message}`); });
  const users = Object.keys(TOK);
  for (const [i, u] of users.entries()) {
    const w = await wsAs(ab, u, i % 2 ? 'query' : 'header');
    for (const type of TYPES) {
      const dev = `wx-${u.replace(':', '.')}-${type}`;
      const r = await wsCall(w, { type: 'acquire', device_name: dev, lock_type: type, user_id: u, timeout: 60 });
      if (!mayLock(u, type)) {
        eq(`${r.type}/${r.error}`, 'error/forbidden', `${u} may not take ${type} over WS`);
        continue;
      }
      eq(`${r.type}/${r.success}`, 'acquire_result/true', `${u} takes ${type} over WS`);
      const rn = await wsCall(w, { type: 'renew', device_name: dev, lock_key: r.lock_key, user_id: u });
      eq(`${rn.type}/${rn.success}`, 'renew_result/true', `${u} renews over WS`);
      const rl = await wsCall(w, { type: 'release', device_name: dev, lock_key: r.lock_key, user_id: u });
      eq(`${rl.type}/${rl.success}`, 'release_result/true', `${u} releases over WS`);
    }
    const allowedType = TYPES.find(t => mayLock(u, t)) || 'QUEUE_QUEUED';
    const behalf = await wsCall(w, { type: 'acquire', device_name: `wb-${u.replace(':', '.')}`, lock_type: allowedType, user_id: 'someone-else', timeout: 60 });
    if (isAdmin(u)) eq(behalf.success, true, 'admin acts for another user over WS');
    else eq(`${behalf.type}/${behalf.error}`, 'error/forbidden', `${u} may not act as another user over WS`);
    eq((await wsCall(w, { type: 'ping' })).type, 'pong', `${u}: the socket stays open after refusals`);
    eq((await wsCall(w, { type: 'get_status' })).type, 'status_response', `${u} reads over WS`);
    await w.close();
  }
});

test('auth: lock_key only for its owner and admins (status, device, events, denials, preemptions, WS frames, resume)', async () => {
  redis.cli('FLUSHALL');
  const viewers = ['alice', 'bob', 'viewer', 'root', 'qs'];
  const ws = {};
  for (const u of viewers) ws[u] = await wsAs(ab, u, u === 'bob' ? 'query' : 'header');
  const startId = ws.root.frames[0].event_id;
  const a = await ab.acquire({ device_name: 'kv1', lock_type: 'MANUAL_OPERATOR', user_id: 'alice', reason: 'align' }, AS('alice'));
  const g = await ab.acquire({ device_names: ['kv2', 'kv3'], lock_type: 'QUEUE_QUEUED', user_id: 'qs', plan_uid: 'p1' }, AS('qs'));
  const short = await ab.acquire({ device_name: 'kv4', lock_type: 'MANUAL_OPERATOR', user_id: 'alice', timeout: 0.5 }, AS('alice'));
  assert(a.body.success && g.body.success && short.body.success, 'setup grants');
  const waiting = ab.acquire({ device_name: 'kv1', lock_type: 'QUEUE_QUEUED', user_id: 'bob', wait: 30 }, AS('bob'));
  await poll(async () => (await ab.get('/api/locks/device/kv1', AS('root'))).body.waiters.length === 1, 5000, 'bob queued on kv1');
  await ab.post('/api/lock/renew', { device_name: 'kv1', lock_key: a.body.lock_key, user_id: 'alice' }, AS('alice'));
  const denied = await ab.acquire({ device_name: 'kv1', lock_type: 'MANUAL_OPERATOR', user_id: 'bob' }, AS('bob'));
  eq(denied.body.success, false, 'bob is denied');
  eq(denied.body.holder.user_id, 'alice', 'holder shown');
  eq(denied.body.holder.lock_key, null, 'the denial\'s holder hides alice\'s key');
  eq(denied.body.lock_key, null, 'a denial has no key');
  const pre = await ab.acquire({ device_name: 'kv2', lock_type: 'QUEUE_EXECUTING', user_id: 'bob' }, AS('bob'));
  eq(pre.body.success, true, 'bob preempts qs');
  assert(pre.body.preempted && pre.body.preempted.user_id === 'qs', 'preempted lock shown');
  eq(pre.body.preempted.lock_key, null, 'the preempted lock hides qs\'s key');
  eq(pre.body.lock.lock_key, pre.body.lock_key, 'bob sees his own new key');
  await poll(async () => (await ab.get('/api/locks/device/kv4', AS('root'))).body.locked === false, 5000, 'kv4 expired');
  await ab.release({ device_name: 'kv1', lock_key: a.body.lock_key, user_id: 'alice' }, AS('alice'));
  const handed = await waiting;
  eq(handed.body.success, true, 'bob\'s wait granted');
  // every answer and frame, per viewer
  const leaks = [];
  for (const u of viewers) {
    const seen = [];
    for (const p of ['/api/locks/status', '/api/locks/device/kv1', '/api/locks/device/kv2', '/api/locks/device/kv3', `/api/events?since=${startId}&limit=1000`, '/api/devices'])
      seen.push([p, (await ab.get(p, AS(u))).body]);
    const st = await wsCall(ws[u], { type: 'get_status' });
    const rs = await wsCall(ws[u], { type: 'resume', since: startId });
    assert(rs.type === 'resume_result' && rs.replayed >= 10, `${u}: resume replayed ${rs.replayed}`);
    seen.push(['ws frames', ws[u].frames], ['status_response', st]);
    for (const [where, body] of seen) leaks.push(...keyLeaks(body, u, isAdmin(u)).map(l => `${u} ${where} ${l}`));
    const locks = lockObjects(seen.map(s => s[1]));
    assert(locks.length > 20, `${u} saw ${locks.length} lock objects`);
    const mine = locks.filter(l => l.user_id === u || isAdmin(u));
    if (u === 'viewer') eq(mine.length, 0, 'the viewer owns nothing');
    else assert(mine.length > 0 && mine.every(l => typeof l.lock_key === 'string' && l.lock_key.length === 36), `${u} sees the keys of its own locks (admin: all)`);
  }
  eq(leaks.length, 0, `lock keys leaked:\n${leaks.slice(0, 10).join('\n')}`);
  const events = ws.viewer.updates();
  for (const action of ['acquired', 'renewed', 'released', 'force_released'])
    assert(events.some(f => f.action === action), `the viewer saw a ${action} frame`);
  for (const u of viewers) await ws[u].close();
});

test('auth: request_id idempotency records are per user (a colon in user_id must not reach another user\'s reply)', async () => {
  redis.cli('FLUSHALL');
  const lab = await ab.acquire({ device_name: 'rid-lab', lock_type: 'MANUAL_OPERATOR', user_id: 'alice:lab', request_id: 'r1' }, AS('alice:lab'));
  eq(lab.body.success, true, 'alice:lab acquires with request_id r1');
  // alice's own, different request, whose request_id happens to be "lab:r1"
  const mine = await ab.acquire({ device_name: 'rid-alice', lock_type: 'MANUAL_OPERATOR', user_id: 'alice', request_id: 'lab:r1' }, AS('alice'));
  dump.push(`alice's answer: ${mine.text}`);
  assert(mine.body.lock_key !== lab.body.lock_key, 'alice was handed alice:lab\'s lock_key (idempotency key dl:rid:<user>:<request_id> collides)');
  eq(mine.body.lock && mine.body.lock.device_name, 'rid-alice', 'alice\'s request is carried out on her device');
  eq((await ab.get('/api/locks/device/rid-alice', AS('root'))).body.locked, true, 'rid-alice is locked');
});

test(`auth sweep: 10 000 seeded unauthorized attempts (seed ${SEED}) are refused, change no Redis state, emit nothing`, async () => {
  redis.cli('FLUSHALL');
  // locks held by others, to attack: single, group, MAINTENANCE, a waiter queued behind one
  const held = [];
  const take = async (u, body) => {
    const r = await ab.acquire({ ...body, user_id: u, timeout: 600 }, AS(u));
    eq(r.body.success, true, `setup grant ${JSON.stringify(body)}`);
    for (const d of body.device_names || [body.device_name]) held.push({ dev: d, key: r.body.lock_key, owner: u, type: body.lock_type, fence: r.body.fence });
  };
  await take('alice', { device_name: 'sw-a', lock_type: 'MANUAL_OPERATOR' });
  await take('qs', { device_names: ['sw-g1', 'sw-g2', 'sw-g3'], lock_type: 'QUEUE_QUEUED', plan_uid: 'plan-7' });
  await take('qs', { device_name: 'sw-q', lock_type: 'QUEUE_EXECUTING' });
  await take('staff', { device_name: 'sw-m', lock_type: 'MAINTENANCE' });
  await take('bob', { device_name: 'sw-b', lock_type: 'MANUAL_OPERATOR' });
  const waiter = ab.acquire({ device_name: 'sw-b', lock_type: 'QUEUE_QUEUED', user_id: 'qs', wait: 120 }, AS('qs'));
  await poll(async () => (await ab.get('/api/locks/device/sw-b', AS('root'))).body.waiters.length === 1, 5000, 'waiter queued');
  const watcher = await wsAs(ab, 'root');
  const before = redisState(redis);
  const xlen = redis.cli('XLEN', 'dl:events');
  const m0 = await metricsOf(ab, AS('root'));
  const sockets = {};
  for (const u of ['alice', 'bob', 'qs', 'staff', 'viewer']) sockets[u] = await wsAs(ab, u, 'query');
  const framesBefore = Object.fromEntries(Object.entries(sockets).map(([u, w]) => [u, w.frames.length]));
  const rnd = prng(SEED);
  const nonAdmins = ['alice', 'bob', 'qs', 'staff', 'viewer', 'alice:lab'];
  const uuid = () => crypto.randomUUID();
  const forgedToken = () => rnd.pick([`${TOK.alice}x`, TOK.alice.slice(0, -1), 'x'.repeat(rnd.int(40) + 1), uuid(), TOK.root.toUpperCase(), `${TOK.root} `.repeat(2), `${TOK.root}\t`]);
  // One attempt: [category, () => Promise<outcome string>], outcome 'refused' or a description
  const httpRefused = (status) => (r) => (r.status === status && r.body && r.body.error === (status === 401 ? 'unauthorized' : 'forbidden') ? 'refused' : `HTTP ${r.status} ${r.text.slice(0, 200)}`);
  const wsRefusedFrame = (f) => ((f.type === 'error' && f.error === 'forbidden') || (/_result$/.test(f.type) && f.success === false && f.status === 403) ? 'refused' : `WS ${JSON.stringify(f).slice(0, 200)}`);
  const attempt = () => {
    const h = rnd.pick(held);
    const other = nonAdmins.filter(u => u !== h.owner);
    const u = rnd.pick(other);
    const op = rnd.pick(['release', 'renew']);
    const path_ = `/api/lock/${op}`;
    const typeNotAllowed = TYPES.filter(t => !mayLock(u, t));
    switch (rnd.int(13)) {
    case 0: return ['no token', () => ab.post(path_, { device_name: h.dev, lock_key: h.key, user_id: h.owner }).then(httpRefused(401))];
    case 1: return ['forged token', () => ab.post(path_, { device_name: h.dev, lock_key: h.key, user_id: h.owner }, bearer(forgedToken())).then(httpRefused(401))];
    case 2: return ['other user_id', () => ab.post(path_, { device_name: h.dev, lock_key: h.key, user_id: h.owner }, AS(u)).then(httpRefused(403))];
    case 3: return ['other user\'s key', () => ab.post(path_, { device_name: h.dev, lock_key: h.key, user_id: u }, AS(u)).then(httpRefused(403))];
    case 4: return ['guessed key', () => ab.post(path_, { device_name: h.dev, lock_key: uuid(), user_id: u }, AS(u)).then(httpRefused(403))];
    case 5: return ['old client query', () => ab.post(`/api/lock/release?device_name=${h.dev}&lock_key=${h.key}&user_id=${encodeURIComponent(h.owner)}`, undefined, AS(u)).then(httpRefused(403))];
    case 6: return ['viewer acquires', () => ab.acquire({ device_name: h.dev, lock_type: rnd.pick(TYPES), user_id: 'viewer' }, AS('viewer')).then(httpRefused(403))];
    case 7: return ['force release', () => ab.post('/api/lock/force_release', { device_name: h.dev, reason: 'x' }, AS(u)).then(httpRefused(403))];
    case 8: return typeNotAllowed.length
      ? ['preempt without the role', () => ab.acquire({ device_name: h.dev, lock_type: rnd.pick(typeNotAllowed), user_id: u, plan_uid: 'p' }, AS(u)).then(httpRefused(403))]
      : ['preempt as another user', () => ab.acquire({ device_name: h.dev, lock_type: 'MAINTENANCE', user_id: 'staff' }, AS(u)).then(httpRefused(403))];
    case 9: {
      const gu = rnd.pick(nonAdmins.filter(x => !mayLock(x, 'MAINTENANCE')));
      const second = rnd.pick(held.filter(x => x.dev !== h.dev)).dev;
      return ['group without the role', () => ab.acquire({ device_names: [h.dev, second], lock_type: 'MAINTENANCE', user_id: gu }, AS(gu)).then(httpRefused(403))];
    }
    default: {
      const wu = rnd.pick(Object.keys(sockets).filter(x => x !== h.owner));
      const w = sockets[wu];
      const kind = rnd.int(4);
      const msg = kind === 0 ? { type: op, device_name: h.dev, lock_key: h.key, user_id: h.owner }
        : kind === 1 ? { type: op, device_name: h.dev, lock_key: h.key, user_id: wu }
          : kind === 2 ? { type: 'acquire', device_name: h.dev, lock_type: rnd.pick(TYPES.filter(t => !mayLock(wu, t))), user_id: wu }
            : { type: 'acquire', device_name: h.dev, lock_type: 'MAINTENANCE', user_id: h.owner };
      return [`ws ${['other user_id', 'other user\'s key', 'type without the role', 'acquire as another'][kind]}`, () => wsCall(w, msg, 30000).then(wsRefusedFrame)];
    }
    }
  };
  const attempts = Array.from({ length: 10000 }, attempt);
  const t0 = Date.now();
  const wrong = [], byCat = {};
  for (let i = 0; i < attempts.length; i += 50) {
    const batch = attempts.slice(i, i + 50);
    const outcomes = await Promise.all(batch.map(([, fn]) => fn().catch(e => `error ${e.message}`)));
    outcomes.forEach((o, k) => {
      const cat = batch[k][0];
      byCat[cat] = (byCat[cat] || 0) + 1;
      if (o !== 'refused') wrong.push(`${cat}: ${o}`);
    });
  }
  const ms = Date.now() - t0;
  console.log(`# sweep: 10 000 attempts (${Object.keys(byCat).length} kinds) refused in ${ms} ms, 50 at a time; seed ${SEED}`);
  console.log(`# ${Object.entries(byCat).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  eq(wrong.length, 0, `every attempt refused (${wrong.length} not):\n${wrong.slice(0, 5).join('\n')}`);
  assert(ms < 90000, `bounded time: ${ms} ms`);
  eq(redis.cli('XLEN', 'dl:events'), xlen, 'XLEN dl:events unchanged: no event emitted');
  const after = redisState(redis);
  if (after !== before) dump.push(`Redis before:\n${before}\nafter:\n${after}`);
  eq(after === before, true, 'Redis state (keys, lock hashes, fences, queues, stream) unchanged');
  // the watcher saw no lock_update; a canary event proves it would have
  eq(watcher.updates().length, 0, 'the admin watcher saw no lock_update');
  const canary = await ab.acquire({ device_name: 'sw-canary', lock_type: 'QUEUE_QUEUED', user_id: 'qs' }, AS('qs'));
  const first = await watcher.waitFor(f => f.type === 'lock_update', 5000);
  eq(first.device_name, 'sw-canary', 'the first lock_update after the sweep is the canary\'s');
  eq(first.lock.fence, canary.body.fence, 'canary fence');
  for (const [u, w] of Object.entries(sockets))
    eq(w.frames.slice(framesBefore[u]).filter(f => f.type === 'lock_update' && f.device_name !== 'sw-canary').length, 0, `${u}'s socket saw no lock_update`);
  for (const h of held) {
    const d = (await ab.get(`/api/locks/device/${h.dev}`, AS('root'))).body;
    eq(`${d.lock.user_id}/${d.lock.lock_key}/${d.lock.fence}`, `${h.owner}/${h.key}/${h.fence}`, `${h.dev} still held as before`);
  }
  const m1 = await metricsOf(ab, AS('root'));
  const n401 = Object.entries(byCat).filter(([k]) => k === 'no token' || k === 'forged token').reduce((a, [, v]) => a + v, 0);
  const dUnauth = m1.val('devlock_refusals_total', { reason: 'unauthorized' }) - m0.val('devlock_refusals_total', { reason: 'unauthorized' });
  const dForbid = m1.val('devlock_refusals_total', { reason: 'forbidden' }) - m0.val('devlock_refusals_total', { reason: 'forbidden' });
  eq(dUnauth, n401, 'every 401 counted in devlock_refusals_total{reason="unauthorized"}');
  // every HTTP 403 and every WS refusal by role or user_id is counted; a WS
  // release/renew refused by the lock itself (wrong key: release_result 403)
  // is not counted by the server (reported), so it is left out here
  const wsKeyRefusals = byCat['ws other user\'s key'] || 0;
  console.log(`# refusals counted: unauthorized +${dUnauth}, forbidden +${dForbid} (of ${10000 - n401} refused with 403 or a WS error; ${wsKeyRefusals} WS wrong-key refusals are not counted)`);
  eq(dForbid, 10000 - n401 - wsKeyRefusals, 'every 403 (and WS auth refusal) counted in devlock_refusals_total{reason="forbidden"}');
  await ab.release({ device_name: 'sw-b', lock_key: held.find(h => h.dev === 'sw-b').key, user_id: 'bob' }, AS('bob'));
  eq((await waiter).body.success, true, 'the queued waiter survived the sweep and is served');
  for (const w of [watcher, ...Object.values(sockets)]) await w.close();
}, { timeoutMs: 150000 });

test('auth: SIGHUP re-reads the auth file (new token, removed user, changed roles); a broken file keeps the old users', async () => {
  writeAuth(us => us.filter(u => u.user_id !== 'viewer')
    .map(u => (u.user_id === 'alice' ? { ...u, roles: ['operator', 'maintenance'] } : u))
    .concat([{ user_id: 'carol', token_sha256: crypto.createHash('sha256').update('carol-token-0008').digest('hex'), roles: ['viewer'] }]));
  ab.proc.kill('SIGHUP');
  await poll(async () => (await ab.get('/api/locks/status', bearer('carol-token-0008'))).status === 200, 5000, 'carol\'s new token accepted');
  eq((await ab.get('/api/locks/status', AS('viewer'))).status, 401, 'the removed user\'s token is refused');
  await wsRefused(`ws://127.0.0.1:${ab.port}/ws?token=${TOK.viewer}`);
  const w = await ab.ws('?token=carol-token-0008');
  await w.waitFor(f => f.type === 'initial_status');
  w.close();
  const m = await ab.acquire({ device_name: 'hup-m', lock_type: 'MAINTENANCE', user_id: 'alice' }, AS('alice'));
  eq(m.body.success, true, 'alice\'s new maintenance role applies');
  const logLen = ab.log().length;
  for (const broken of ['{"users": [ {"user_id": "x"', JSON.stringify({ users: [{ user_id: 'x', token: 'x-token-long', roles: ['superuser'] }] }),
    JSON.stringify({ users: [{ user_id: 'x', token: 'short', roles: ['admin'] }] }), JSON.stringify({ users: [{ user_id: 'x', token: 'x-token-long', token_sha256: 'a'.repeat(64), roles: [] }] })]) {
    fs.writeFileSync(authFile, broken);
    const seen = (ab.log().slice(logLen).match(/keeping the previous one/g) || []).length;
    ab.proc.kill('SIGHUP');
    await poll(() => (ab.log().slice(logLen).match(/keeping the previous one/g) || []).length > seen, 5000, 'the broken file to be refused (log)');
    eq((await ab.get('/api/locks/status', bearer('carol-token-0008'))).status, 200, `old users kept after ${broken.slice(0, 40)}`);
    eq((await ab.get('/api/locks/status', bearer('x-token-long'))).status, 401, 'the broken file\'s users are not loaded');
  }
  await ab.stop();
  current = current.filter(b => b !== ab);
});

// ---- TLS ----------------------------------------------------------------------
test('TLS: HTTPS and WSS on one port (curl --cacert, ws with the CA); plain HTTP fails cleanly; auth over TLS', async () => {
  redis.cli('FLUSHALL');
  const key = path.join(tmp, 'key.pem'), cert = path.join(tmp, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const d = await startDaemon(['--redis-url', redis.url, '--tls-cert', cert, '--tls-key', key, '--auth-file', writeAuth()]);
  current.push(d);
  const base = `https://127.0.0.1:${d.port}`;
  await poll(() => curl(['--cacert', cert, `${base}/api/health/ready`]).status === 200, 10000, 'ready over HTTPS');
  const live = curl(['--cacert', cert, `https://localhost:${d.port}/api/health/live`]);
  eq(live.body && live.body.status, 'alive', 'HTTPS by host name');
  const untrusted = curl([`${base}/api/health/live`]);
  assert(untrusted.code === 60 || untrusted.code === 35, `curl without the CA refuses the certificate (curl exit ${untrusted.code})`);
  eq(curl(['--cacert', cert, `${base}/api/locks/status`]).status, 401, '401 over HTTPS without a token');
  const a = curl(['--cacert', cert, '-X', 'POST', '-H', 'content-type: application/json', '-H', `authorization: Bearer ${TOK.qs}`,
    '--data', JSON.stringify({ device_name: 'tls1', lock_type: 'QUEUE_QUEUED', user_id: 'qs' }), `${base}/api/lock/request`]);
  eq(a.status, 200, 'acquire over HTTPS');
  eq(a.body.success, true, 'granted over HTTPS');
  const st = curl(['--cacert', cert, '-H', `authorization: Bearer ${TOK.qs}`, `${base}/api/locks/status`]);
  eq(st.body.total_count, 1, 'status over HTTPS');
  // WSS with the CA: initial_status, then a live event and a command
  const ca = fs.readFileSync(cert);
  const wss = new WebSocket(`wss://localhost:${d.port}/ws?token=${TOK.qs}`, { ca });
  const frames = [];
  wss.on('message', m => frames.push(JSON.parse(String(m))));
  await new Promise((res, rej) => { wss.on('open', res); wss.on('error', rej); });
  await poll(() => frames.some(f => f.type === 'initial_status'), 5000, 'initial_status over WSS');
  eq(frames[0].data.locks[0].lock_key, a.body.lock_key, 'the owner sees its key over WSS');
  wss.send(JSON.stringify({ type: 'release', id: 9, device_name: 'tls1', lock_key: a.body.lock_key, user_id: 'qs' }));
  await poll(() => frames.some(f => f.id === 9 && f.success === true) && frames.some(f => f.type === 'lock_update' && f.action === 'released'), 5000, 'release over WSS and its event');
  wss.close();
  // WSS without the CA is refused by the client
  const bad = await new Promise(res => { const s = new WebSocket(`wss://127.0.0.1:${d.port}/ws?token=${TOK.qs}`); s.on('open', () => { s.close(); res('open'); }); s.on('error', e => res(e.code || e.message)); });
  assert(bad !== 'open', 'WSS without the CA must not verify');
  // plain HTTP and garbage to the TLS port: no 200, no crash
  const plain = curl(['-m', '5', `http://127.0.0.1:${d.port}/api/health/live`]);
  assert(plain.status !== 200, `plain HTTP is not served (curl exit ${plain.code}, status ${plain.status})`);
  const raw = await rawConnect(d.port);
  raw.write('GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n');
  await Promise.race([raw.ended, delay(5000)]);
  assert(!/HTTP\/1\.1 200/.test(raw.data), 'no 200 to plain HTTP');
  raw.destroy();
  const plainWs = await new Promise(res => { const s = new WebSocket(`ws://127.0.0.1:${d.port}/ws?token=${TOK.qs}`); s.on('open', () => { s.close(); res('open'); }); s.on('error', e => res(e.message)); });
  assert(plainWs !== 'open', 'a plain ws:// upgrade is not served on the TLS port');
  eq(curl(['--cacert', cert, `${base}/api/health/ready`]).status, 200, 'still serving HTTPS afterwards');
  assert(d.proc.exitCode === null, 'the TLS broker is still running');
  await d.stop();
}, { timeoutMs: 60000 });

test('TLS: a certificate that does not load is a start-up error (non-zero exit, no port file)', async () => {
  const junk = path.join(tmp, 'junk.pem');
  fs.writeFileSync(junk, 'not a certificate\n');
  const portFile = path.join(tmp, 'junk.port');
  const r = spawnSync(path.join(BUILD, 'devlockd'), ['--host', '127.0.0.1', '--port', '0', '--port-file', portFile, '--redis-url', redis.url,
    '--tls-cert', junk, '--tls-key', junk], { encoding: 'utf8', timeout: 5000, killSignal: 'SIGKILL' });
  dump.push(`devlockd with a junk certificate: status ${r.status}, signal ${r.signal}, port file ${fs.existsSync(portFile) ? JSON.stringify(fs.readFileSync(portFile, 'utf8')) : 'none'}\n${(r.stderr || '').split('\n').slice(0, 6).join('\n')}`);
  assert(r.signal === null, 'devlockd kept running without a listening socket (killed after 5 s)');
  assert(r.status !== 0, 'non-zero exit status');
  assert(!fs.existsSync(portFile) || fs.readFileSync(portFile, 'utf8').trim() !== '0', 'no port file saying 0');
});

// ---- CORS ---------------------------------------------------------------------
test('CORS: none by default; listed origins echoed with credentials; preflight 204; "*" without credentials; env ALLOWED_ORIGINS', async () => {
  redis.cli('FLUSHALL');
  const plain = await started(await Broker.start(redis.url));
  for (const [m, p] of [['GET', '/api/locks/status'], ['OPTIONS', '/api/lock/request']]) {
    const r = await plain.request(m, p, undefined, { origin: 'http://gui.example', 'access-control-request-method': 'POST' });
    eq(r.headers['access-control-allow-origin'], undefined, `no CORS header by default (${m})`);
    eq(r.headers['access-control-allow-credentials'], undefined, `no credentials header by default (${m})`);
  }
  await plain.stop();
  const c = await started(await Broker.start(redis.url, ['--allowed-origins', 'http://gui.example, https://ops.example:8443', '--auth-file', writeAuth()]));
  for (const origin of ['http://gui.example', 'https://ops.example:8443']) {
    const r = await c.get('/api/locks/status', { origin, ...AS('viewer') });
    eq(r.status, 200, 'status');
    eq(r.headers['access-control-allow-origin'], origin, `${origin} echoed`);
    eq(r.headers['access-control-allow-credentials'], 'true', 'with credentials');
    assert(/origin/i.test(r.headers.vary || ''), 'Vary: Origin');
  }
  for (const origin of ['http://evil.example', 'http://gui.example.evil.example', 'http://GUI.example', 'http://gui.example:80', 'null'])
    eq((await c.get('/api/locks/status', { origin, ...AS('viewer') })).headers['access-control-allow-origin'], undefined, `${origin} not allowed`);
  const pre = await c.request('OPTIONS', '/api/lock/request', undefined,
    { origin: 'http://gui.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' });
  eq(pre.status, 204, 'preflight answered 204 without a token');
  eq(pre.headers['access-control-allow-origin'], 'http://gui.example', 'preflight origin');
  const methods = (pre.headers['access-control-allow-methods'] || '').split(/\s*,\s*/);
  assert(methods.includes('POST') && methods.includes('GET'), `allow-methods: ${pre.headers['access-control-allow-methods']}`);
  const hdrs = (pre.headers['access-control-allow-headers'] || '').toLowerCase().split(/\s*,\s*/);
  assert(hdrs.includes('authorization') && hdrs.includes('content-type'), `allow-headers: ${pre.headers['access-control-allow-headers']}`);
  eq(pre.text, '', 'a 204 has no body');
  const e401 = await c.get('/api/locks/status', { origin: 'http://gui.example' });
  eq(e401.status, 401, 'no token');
  eq(e401.headers['access-control-allow-origin'], 'http://gui.example', 'a 401 carries CORS headers so the page can read it');
  await c.stop();
  const star = await started(await Broker.start(redis.url, [], { env: { ALLOWED_ORIGINS: '*' } }));
  const r2 = await star.get('/api/locks/status', { origin: 'http://anything.example' });
  eq(r2.headers['access-control-allow-origin'], '*', '"*" from the environment');
  eq(r2.headers['access-control-allow-credentials'], undefined, '"*" is never sent with credentials');
  const pre2 = await star.request('OPTIONS', '/api/lock/release', undefined, { origin: 'http://anything.example', 'access-control-request-method': 'POST' });
  eq(`${pre2.status} ${pre2.headers['access-control-allow-origin']}`, '204 *', 'preflight with "*"');
  await star.stop();
  current = [];
});

// ---- limits -------------------------------------------------------------------
async function okStill(b, what) {
  const r = await b.acquire({ device_name: `ok-${crypto.randomUUID().slice(0, 8)}`, lock_type: 'QUEUE_QUEUED', user_id: 'u', timeout: 5 });
  eq(r.body && r.body.success, true, `another client is served after ${what}`);
}
function rawRequest(port, text, waitClose = true) {
  return rawConnect(port).then(async s => { s.write(text); if (waitClose) await Promise.race([s.ended, delay(5000)]); return s; });
}

test('limits: --max-body 413 (exact size accepted, huge Content-Length refused at once), --max-json-depth 400, over HTTP and WS; the server keeps serving', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--max-body', '1024', '--max-json-depth', '8']));
  const m0 = await metricsOf(l);
  const base = { device_name: 'lim1', lock_type: 'QUEUE_QUEUED', user_id: 'u', timeout: 5 };
  const exact = JSON.stringify(base);
  const atLimit = exact.slice(0, -1) + ' '.repeat(1024 - exact.length) + '}';
  eq(atLimit.length, 1024, 'body of exactly --max-body');
  eq((await l.post('/api/lock/request', atLimit)).body.success, true, 'a body of exactly --max-body is accepted');
  const over = await l.post('/api/lock/request', atLimit + ' ');
  eq(over.status, 413, 'one byte over');
  eq(over.body.error, 'payload_too_large', 'error code');
  await okStill(l, '413');
  // a huge declared length is refused before any body is read
  const t0 = Date.now();
  const big = await rawRequest(l.port, 'POST /api/lock/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{');
  assert(/^HTTP\/1\.1 413/.test(big.data) && Date.now() - t0 < 4000, `Content-Length 1e10 answered 413 at once: ${big.data.slice(0, 60)}`);
  // depth: 8 levels accepted, 9 refused
  const nest = (n) => '['.repeat(n) + ']'.repeat(n);
  const d8 = await l.post('/api/lock/request', JSON.stringify({ ...base, device_name: 'lim2' }).slice(0, -1) + `,"x":${nest(7)}}`);
  eq(d8.body.success, true, '8 levels accepted');
  const d9 = await l.post('/api/lock/request', JSON.stringify({ ...base, device_name: 'lim3' }).slice(0, -1) + `,"x":${nest(8)}}`);
  eq(`${d9.status} ${d9.body.error}`, '400 json_too_deep', '9 levels refused');
  const deep = await l.post('/api/lock/request', '{"a":' + '['.repeat(100000) + ']'.repeat(100000) + '}');
  assert(deep.status === 413 || (deep.status === 400 && deep.body.error === 'json_too_deep'), 'very deep body refused');
  const w = await l.ws();
  await w.waitFor(f => f.type === 'initial_status');
  w.send(`{"type":"ping","x":${nest(8)}}`);
  eq((await w.waitFor(f => f.type === 'error')).error, 'json_too_deep', 'WS: too deep answered with an error frame');
  eq((await wsCall(w, { type: 'ping', x: JSON.parse(nest(7)) })).type, 'pong', 'WS: the socket stays open; 8 levels accepted');
  w.close();
  await okStill(l, 'json_too_deep');
  const m1 = await metricsOf(l);
  const d = (reason) => m1.val('devlock_refusals_total', { reason }) - m0.val('devlock_refusals_total', { reason });
  assert(d('body_too_large') >= 2, `body_too_large counted (${d('body_too_large')})`);
  assert(d('json_too_deep') >= 1, `json_too_deep counted (${d('json_too_deep')})`);
  assert(d('ws_bad_message') >= 1, `the WS json_too_deep counted as ws_bad_message (${d('ws_bad_message')})`);
  await l.stop();
  current = [];
});

test('limits: a chunked request body (no Content-Length) is answered at once, and never accepted past --max-body', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--max-body', '1024']));
  const head = 'POST /api/lock/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
  const big = 'x'.repeat(600);
  const t0 = Date.now();
  const over = await rawRequest(l.port, `${head}258\r\n${big}\r\n258\r\n${big}\r\n0\r\n\r\n`);
  const overMs = Date.now() - t0;
  const small = JSON.stringify({ device_name: 'chunk1', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  const t1 = Date.now();
  const ok = await rawRequest(l.port, `${head}${small.length.toString(16)}\r\n${small}\r\n0\r\n\r\n`);
  const okMs = Date.now() - t1;
  await okStill(l, 'chunked requests');
  assert(!/^HTTP\/1\.1 2/.test(over.data), 'a chunked body past --max-body is never accepted');
  eq(redis.cli('EXISTS', 'dl:{x}:lock'), '0', 'nothing locked');
  dump.push(`chunked over the limit: ${JSON.stringify(over.data.slice(0, 120))} after ${overMs} ms; small chunked: ${JSON.stringify(ok.data.slice(0, 120))} after ${okMs} ms`);
  assert(/^HTTP\/1\.1 (413|411|400)/.test(over.data), `a chunked body past --max-body is answered 413 (or 411/400), got ${JSON.stringify(over.data.slice(0, 60))} after ${overMs} ms`);
  assert(/^HTTP\/1\.1 (200|411|400)/.test(ok.data) && okMs < 3000, `a small chunked body is served or refused at once, got ${JSON.stringify(ok.data.slice(0, 60))} after ${okMs} ms`);
  await l.stop();
  current = [];
}, { timeoutMs: 30000 });

test('limits: --max-ws-message closes with 1009 (single frame and fragments); others keep being served', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--max-ws-message', '2048']));
  const m0 = await metricsOf(l);
  const other = await l.ws();
  await other.waitFor(f => f.type === 'initial_status');
  const w = await l.ws();
  await w.waitFor(f => f.type === 'initial_status');
  const shell = '{"type":"ping","id":77,"pad":""}';
  const exact = shell.replace('""', `"${'p'.repeat(2048 - shell.length)}"`);
  eq(exact.length, 2048, 'exact size');
  w.send(exact);
  eq((await w.waitFor(f => f.id === 77)).type, 'pong', 'a message of exactly --max-ws-message is served');
  w.send(exact.replace('"pad":"', '"pad":"p'));
  eq(await w.closed, 1009, 'one byte over: close 1009');
  const f = await l.ws();
  await f.waitFor(x => x.type === 'initial_status');
  const part = 'x'.repeat(1500);
  f.sock.send(`{"type":"ping","a":"${part}`, { fin: false });
  f.sock.send(`${part}"}`, { fin: true });
  eq(await f.closed, 1009, 'fragments adding up past the limit: close 1009');
  eq((await wsCall(other, { type: 'ping' })).type, 'pong', 'another WebSocket is still served');
  await okStill(l, '1009');
  await poll(async () => (await metricsOf(l)).val('devlock_refusals_total', { reason: 'ws_message_too_large' }) - m0.val('devlock_refusals_total', { reason: 'ws_message_too_large' }) === 2, 3000, 'ws_message_too_large counted twice');
  other.close();
  await l.stop();
  current = [];
});

test('limits: --max-connections answers 503 too_many_connections and refuses WS upgrades; served again once connections close', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--max-connections', '20', '--io-timeout', '60']));
  l.agent.destroy(); // the helper's keep-alive pool would hold connections of its own
  l.agent = new (require('http').Agent)({ keepAlive: false });
  await poll(async () => (await l.get('/api/health/live')).status === 200, 3000, 'live');
  const held = [];
  // 20 keep-alive connections, each served once and left open (a connection
  // that the server has not yet seen closing may still count: retry then)
  for (let i = 0; i < 20; i++) {
    const s = await poll(async () => {
      const c = await rawRequest(l.port, 'GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n', false);
      await poll(() => /\r\n\r\n\{/.test(c.data) || c.closedAt, 3000, `answer on held connection ${i}`);
      if (/^HTTP\/1\.1 200/.test(c.data)) return c;
      c.destroy();
      return null;
    }, 5000, `held connection ${i} served`, 100);
    held.push(s);
  }
  const x = await rawRequest(l.port, 'GET /api/locks/status HTTP/1.1\r\nHost: x\r\n\r\n');
  assert(/^HTTP\/1\.1 503/.test(x.data) && /too_many_connections/.test(x.data), `21st connection: ${x.data.slice(0, 200) || '(closed without an answer)'}`);
  assert(x.closedAt !== null, 'the refused connection is closed');
  const how = await wsRefused(`ws://127.0.0.1:${l.port}/ws`);
  console.log(`# WS upgrade over the connection limit: ${how}`);
  held.forEach(s => s.destroy());
  await poll(async () => (await l.get('/api/locks/status')).status === 200, 5000, 'served again');
  const w = await l.ws();
  await w.waitFor(f => f.type === 'initial_status');
  w.close();
  const m = await metricsOf(l);
  assert(m.val('devlock_refusals_total', { reason: 'connections' }) >= 2, 'connection refusals counted (HTTP and WS)');
  await l.stop();
  current = [];
}, { timeoutMs: 60000 });

test('limits: --io-timeout cuts slow headers, a byte-by-byte drip and slow bodies; others served meanwhile', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--io-timeout', '2']));
  const t0 = Date.now();
  const hdr = await rawConnect(l.port);
  hdr.write('GET /api/health/live HTTP/1.1\r\n');
  const body = await rawConnect(l.port);
  body.write('POST /api/lock/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"device_');
  const drip = await rawConnect(l.port);
  const text = 'GET /api/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'a'.repeat(200);
  let i = 0;
  const timer = setInterval(() => { if (i < text.length && !drip.destroyed) drip.write(text[i++]); }, 200);
  await okStill(l, 'slow clients connected');
  await Promise.race([Promise.all([hdr.ended, body.ended, drip.ended]), delay(12000)]);
  clearInterval(timer);
  for (const [name, s] of [['slow headers', hdr], ['slow body', body], ['header drip (a byte every 200 ms)', drip]]) {
    assert(s.closedAt !== null, `${name}: not cut within 12 s`);
    const ms = s.closedAt - t0;
    console.log(`# ${name} cut after ${ms} ms (--io-timeout 2)`);
    assert(ms >= 1500 && ms <= 7000, `${name}: cut after ${ms} ms, expected about 2 s`);
    assert(!/^HTTP\/1\.1 2/.test(s.data), `${name}: no 2xx answer`);
  }
  await okStill(l, 'slow clients were cut');
  await l.stop();
  current = [];
}, { timeoutMs: 40000 });

test('limits: a WebSocket client that never reads is dropped (--ws-queue-max 1024, above the 1000-event stream read batch); RSS stays bounded; other watchers keep up', async () => {
  redis.cli('FLUSHALL');
  const l = await started(await Broker.start(redis.url, ['--ws-queue-max', '1024']));
  const rss0 = rssKb(l.proc.pid);
  const m0 = await metricsOf(l);
  const slow = await l.ws();
  await slow.waitFor(f => f.type === 'initial_status');
  const fast = await l.ws();
  await fast.waitFor(f => f.type === 'initial_status');
  slow.sock._socket.pause();
  const reason = 'r'.repeat(1024);
  const dropped = async () => (await metricsOf(l)).val('devlock_websocket_dropped_total') > m0.val('devlock_websocket_dropped_total');
  let rounds = 0, maxRss = rss0, last;
  const t0 = Date.now();
  while (!(await dropped())) {
    assert(rounds < 300 && Date.now() - t0 < 60000, `slow client not dropped after ${rounds} rounds (${rounds * 2 * 128} events)`);
    // the broker reads up to 1000 events per XREAD and queues them at once:
    // --ws-queue-max must stay above that, or fast readers are dropped too
    await Promise.all([0, 1].map(async k => {
      const names = Array.from({ length: 64 }, (_, j) => `sl${k}-${j}`);
      const g = await l.acquire({ device_names: names, lock_type: 'QUEUE_QUEUED', user_id: 'u', reason, timeout: 60 });
      eq(g.body.success, true, 'group grant');
      const r = await l.release({ device_name: names[0], lock_key: g.body.lock_key, user_id: 'u' });
      eq(r.status, 200, 'group release');
      last = names[63];
    }));
    rounds++;
    maxRss = Math.max(maxRss, rssKb(l.proc.pid));
  }
  const events = rounds * 2 * 128;
  console.log(`# slow reader dropped after ${rounds} rounds (~${events} events of ~1.4 kB); broker RSS ${rss0} -> max ${maxRss} kB`);
  assert(maxRss < 200 * 1024, `RSS stays below 200 MB (max ${maxRss} kB)`);
  // the fast watcher receives everything, including the last event
  await fast.waitFor(f => f.type === 'lock_update' && f.action === 'released' && f.device_name === last, 15000);
  eq(fast.closeCode, undefined, 'the reading watcher is not dropped');
  await okStill(l, 'dropping a slow reader');
  const m1 = await metricsOf(l);
  assert(m1.val('devlock_refusals_total', { reason: 'slow_client' }) >= 1, 'refusal counted: slow_client');
  // dropped means disconnected: the broker closes the socket even though the
  // client still does not read (lws would otherwise wait for WRITEABLE forever)
  const tDrop = Date.now();
  await poll(async () => (await metricsOf(l)).val('devlock_websocket_clients') === 1, 10000, 'the dropped client no longer counted (its connection closed while it still does not read)', 200);
  console.log(`# the dropped client's connection closed ${Date.now() - tDrop} ms after the drop was counted`);
  slow.sock._socket.resume();
  const code = await Promise.race([slow.closed, delay(15000).then(() => 'still open')]);
  assert(code !== 'still open', 'the slow client sees its connection end once it reads');
  console.log(`# slow client close code: ${code}`);
  fast.close();
  await l.stop();
  current = [];
}, { timeoutMs: 120000 });

// ---- metrics ------------------------------------------------------------------
test('metrics: every family present and well-formed; counters move after grant, denial, preemption, wait timeout, expiry, releases, refusals', async () => {
  const r2 = await Redis.start({ dir: fs.mkdtempSync(path.join(tmp, 'redis-m-')) });
  const m = await started(await Broker.start(r2.url));
  const m0 = await metricsOf(m);
  const families = { devlock_locks_held: 'gauge', devlock_acquires_total: 'counter', devlock_releases_total: 'counter', devlock_websocket_clients: 'gauge',
    devlock_websocket_dropped_total: 'counter', devlock_redis_up: 'gauge', devlock_redis_connects_total: 'counter',
    devlock_http_request_duration_seconds: 'histogram', devlock_stream_length: 'gauge', devlock_refusals_total: 'counter', devlock_http_responses_total: 'counter' };
  for (const [f, t] of Object.entries(families)) {
    eq(m0.types.get(f), t, `# TYPE ${f}`);
    assert(m0.help.get(f), `# HELP ${f}`);
  }
  for (const t of TYPES) eq(m0.val('devlock_locks_held', { type: t }), 0, `locks_held ${t} starts at 0`);
  for (const r of ['granted', 'denied', 'preempted', 'queued', 'timed_out']) eq(m0.val('devlock_acquires_total', { result: r }), 0, `acquires ${r}`);
  for (const c of ['released', 'preempted', 'expired', 'admin', 'session_lost']) assert(m0.get('devlock_releases_total', { cause: c }) !== undefined, `releases ${c} listed`);
  eq(m0.val('devlock_redis_up'), 1, 'redis up');
  assert(m0.val('devlock_redis_connects_total') >= 1, 'connects counted');
  // grant, denial, preemption, queued + timed out, expiry, release, admin
  const g = await m.acquire({ device_name: 'mx', lock_type: 'MANUAL_OPERATOR', user_id: 'u1' });
  eq(g.body.success, true, 'grant');
  eq((await m.acquire({ device_name: 'mx', lock_type: 'MANUAL_OPERATOR', user_id: 'u2' })).body.success, false, 'denial');
  eq((await m.acquire({ device_name: 'mx', lock_type: 'QUEUE_EXECUTING', user_id: 'q' })).body.preempted.user_id, 'u1', 'preemption');
  eq((await m.acquire({ device_name: 'mx', lock_type: 'QUEUE_QUEUED', user_id: 'w', wait: 0.3 })).body.success, false, 'queued, then timed out');
  const e = await m.acquire({ device_name: 'my', lock_type: 'MAINTENANCE', user_id: 'e', timeout: 0.3 });
  eq(e.body.success, true, 'short lease');
  const rel = await m.acquire({ device_name: 'mz', lock_type: 'QUEUE_QUEUED', user_id: 'r' });
  eq((await m.release({ device_name: 'mz', lock_key: rel.body.lock_key, user_id: 'r' })).status, 200, 'release');
  await m.acquire({ device_name: 'mf', lock_type: 'QUEUE_QUEUED', user_id: 'f' });
  eq((await m.post('/api/lock/force_release', { device_name: 'mf', reason: 'test' })).body.success, true, 'admin force release');
  eq((await m.post('/api/lock/request', '[1,')).status, 400, 'invalid JSON');
  eq((await m.acquire({ device_name: 'bad name!', lock_type: 'QUEUE_QUEUED', user_id: 'x' })).status, 400, 'invalid device');
  eq((await m.get('/api/nowhere')).status, 404, 'unknown path');
  const w = await m.ws();
  await w.waitFor(f => f.type === 'initial_status');
  await poll(async () => (await metricsOf(m)).val('devlock_releases_total', { cause: 'expired' }) === 1, 5000, 'expiry counted');
  const m1 = await metricsOf(m);
  const d = (name, labels) => m1.val(name, labels) - m0.val(name, labels);
  const expect = [
    ['devlock_acquires_total', { result: 'granted' }, 4], ['devlock_acquires_total', { result: 'denied' }, 1],
    ['devlock_acquires_total', { result: 'preempted' }, 1], ['devlock_acquires_total', { result: 'queued' }, 1],
    ['devlock_acquires_total', { result: 'timed_out' }, 1],
    ['devlock_releases_total', { cause: 'released' }, 1], ['devlock_releases_total', { cause: 'preempted' }, 1],
    ['devlock_releases_total', { cause: 'expired' }, 1], ['devlock_releases_total', { cause: 'admin' }, 1],
    ['devlock_refusals_total', { reason: 'invalid_json' }, 1], ['devlock_refusals_total', { reason: 'invalid_device' }, 1],
    ['devlock_refusals_total', { reason: 'not_found' }, 1]];
  const wrong = expect.filter(([n, lb, v]) => d(n, lb) !== v).map(([n, lb, v]) => `${prom.key(n, lb)}: +${d(n, lb)}, expected +${v}`);
  eq(wrong.length, 0, `counters:\n${wrong.join('\n')}`);
  eq(m1.val('devlock_locks_held', { type: 'QUEUE_EXECUTING' }), 1, 'held: the preemptor');
  eq(m1.val('devlock_locks_held', { type: 'MANUAL_OPERATOR' }) + m1.val('devlock_locks_held', { type: 'MAINTENANCE' }) + m1.val('devlock_locks_held', { type: 'QUEUE_QUEUED' }), 0, 'nothing else held');
  eq(m1.val('devlock_websocket_clients'), 1, 'one WebSocket client');
  eq(m1.val('devlock_stream_length'), Number(r2.cli('XLEN', 'dl:events')), 'stream length = XLEN dl:events');
  assert(d('devlock_http_responses_total', { code: '4xx' }) >= 3, '4xx responses counted');
  assert(d('devlock_http_responses_total', { code: '2xx' }) >= 9, '2xx responses counted');
  assert(d('devlock_http_request_duration_seconds_count') >= 12, 'latency histogram counts requests');
  assert(m1.val('devlock_http_request_duration_seconds_sum') > 0, 'latency sum');
  console.log(`# p99 request latency bound from the histogram: ${m1.quantileBound('devlock_http_request_duration_seconds', 0.99)} s`);
  w.close();
  await poll(async () => (await metricsOf(m)).val('devlock_websocket_clients') === 0, 3000, 'client gauge back to 0');
  // Redis down: /metrics still answers (so the alert can fire), readiness 503
  const ready0 = (await m.get('/api/health/ready')).body;
  for (const k of ['status', 'redis_connected', 'active_locks', 'websocket_clients', 'redis_reconnects']) assert(k in ready0, `ready has ${k}`);
  eq(ready0.active_locks, 1, 'active_locks');
  await r2.kill();
  await poll(async () => (await metricsOf(m)).val('devlock_redis_up') === 0, 5000, 'devlock_redis_up 0 with Redis down');
  const nr = await m.get('/api/health/ready');
  eq(`${nr.status} ${nr.body.status} ${nr.body.redis_connected}`, '503 not_ready false', 'not ready while Redis is down');
  const c0 = (await metricsOf(m)).val('devlock_redis_connects_total');
  await r2.restart();
  await poll(async () => (await metricsOf(m)).val('devlock_redis_up') === 1, 15000, 'devlock_redis_up back to 1');
  const m2 = await metricsOf(m);
  assert(m2.val('devlock_redis_connects_total') > c0, 'reconnect counted');
  const ready1 = (await m.get('/api/health/ready')).body;
  eq(ready1.status, 'ready', 'ready again');
  assert(ready1.redis_reconnects >= ready0.redis_reconnects + 1, `ready.redis_reconnects moved (${ready0.redis_reconnects} -> ${ready1.redis_reconnects})`);
  await m.stop();
  await r2.kill();
  current = [];
}, { timeoutMs: 60000 });

// ---- catalogue ----------------------------------------------------------------
test('catalogue (text): strict 404 unknown_device over HTTP, groups and WS; /api/devices lists every device with its lock', async () => {
  redis.cli('FLUSHALL');
  const file = path.join(tmp, 'devices.txt');
  fs.writeFileSync(file, '# beamline 7\n\ndet1  description="Main detector, 4M" preempt_grace_s=1.5\n  motor1 lock_delay_s=1.2   # comment\nshutter\r\n');
  const c = await started(await Broker.start(redis.url, ['--devices', file]));
  const u = await c.acquire({ device_name: 'det2', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  eq(`${u.status} ${u.body.error}`, '404 unknown_device', 'unknown device refused');
  const grp = await c.acquire({ device_names: ['shutter', 'det2'], lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  eq(`${grp.status} ${grp.body.error}`, '404 unknown_device', 'a group with an unknown device refused');
  eq(redis.cli('EXISTS', 'dl:{shutter}:lock'), '0', 'nothing of the group locked');
  const w = await c.ws();
  await w.waitFor(f => f.type === 'initial_status');
  const wr = await wsCall(w, { type: 'acquire', device_name: 'nope', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  eq(wr.error, 'unknown_device', 'unknown device refused over WS');
  w.close();
  const k = await c.acquire({ device_name: 'det1', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
  eq(k.body.success, true, 'known device granted');
  const list = (await c.get('/api/devices')).body;
  eq(list.devices.map(x => x.device_name).join(), 'det1,motor1,shutter', 'every device, sorted');
  eq(list.total_count, 3, 'total_count');
  const [det1, motor1, shutter] = list.devices;
  eq(`${det1.locked} ${det1.lock.user_id} ${det1.lock.lock_key}`, `true u ${k.body.lock_key}`, 'det1 with its lock');
  eq(det1.description, 'Main detector, 4M', 'quoted description');
  eq(det1.preempt_grace_s, 1.5, 'det1 grace');
  eq(motor1.lock_delay_s, 1.2, 'motor1 lock delay (after a # comment)');
  eq(`${shutter.locked} ${shutter.lock}`, 'false null', 'shutter free');
  const m = await metricsOf(c);
  assert(m.val('devlock_refusals_total', { reason: 'unknown_device' }) >= 2, 'unknown_device refusals counted');
  await c.stop();
  current = [];
});

test('catalogue: per-device preempt_grace_s and lock_delay_s take effect (MAINTENANCE never waits; release ends the grace early)', async () => {
  redis.cli('FLUSHALL');
  const file = path.join(tmp, 'devices-grace.json');
  fs.writeFileSync(file, JSON.stringify({ devices: [{ name: 'det1', preempt_grace_s: 1.5 }, { name: 'motor1', lock_delay_s: 1.2 }, { name: 'plain' }] }));
  const c = await started(await Broker.start(redis.url, ['--devices', file]));
  const w = await c.ws();
  await w.waitFor(f => f.type === 'initial_status');
  // grace: the holder is asked, the preemptor waits for the window
  const h1 = await c.acquire({ device_name: 'det1', lock_type: 'MANUAL_OPERATOR', user_id: 'h' });
  let t0 = Date.now();
  const p1 = await c.acquire({ device_name: 'det1', lock_type: 'QUEUE_EXECUTING', user_id: 'q' });
  const waited = Date.now() - t0;
  eq(p1.body.success, true, 'granted after the grace window');
  assert(waited >= 1300 && waited < 5000, `the preemptor waited the 1.5 s grace (${waited} ms)`);
  const asked = await w.waitFor(f => f.action === 'preempt_requested' && f.device_name === 'det1');
  eq(asked.lock.lock_key, h1.body.lock_key, 'the holder was asked');
  eq(asked.grace_s, 1.5, 'grace_s in the request');
  // the holder releases within the window: the preemptor gets it at once
  const h2 = await c.acquire({ device_name: 'det1', lock_type: 'MAINTENANCE', user_id: 's' });
  eq(h2.body.success, true, 'MAINTENANCE preempts without waiting for the grace');
  const f2 = w.frames.length;
  await c.release({ device_name: 'det1', lock_key: h2.body.lock_key, user_id: 's' });
  const h3 = await c.acquire({ device_name: 'det1', lock_type: 'MANUAL_OPERATOR', user_id: 'h' });
  t0 = Date.now();
  const pending = c.acquire({ device_name: 'det1', lock_type: 'QUEUE_EXECUTING', user_id: 'q' });
  await w.waitFor(f => f.action === 'preempt_requested' && f.device_name === 'det1', 5000, f2);
  await c.release({ device_name: 'det1', lock_key: h3.body.lock_key, user_id: 'h' });
  const p3 = await pending;
  eq(p3.body.success, true, 'granted');
  assert(Date.now() - t0 < 1300, `granted as soon as the holder released (${Date.now() - t0} ms)`);
  // a device without grace preempts at once
  await c.acquire({ device_name: 'plain', lock_type: 'MANUAL_OPERATOR', user_id: 'h' });
  t0 = Date.now();
  eq((await c.acquire({ device_name: 'plain', lock_type: 'QUEUE_EXECUTING', user_id: 'q' })).body.success, true, 'plain preempted');
  assert(Date.now() - t0 < 1000, 'no grace on plain');
  // lock delay after an expiry
  await c.acquire({ device_name: 'motor1', lock_type: 'MANUAL_OPERATOR', user_id: 'h', timeout: 0.3 });
  const exp = await w.waitFor(f => f.device_name === 'motor1' && f.action === 'force_released' && f.cause === 'expired', 5000);
  const tExp = Date.now();
  const early = await c.acquire({ device_name: 'motor1', lock_type: 'MANUAL_OPERATOR', user_id: 'n' });
  eq(early.body.success, false, 'refused during the lock-delay');
  await poll(async () => (await c.acquire({ device_name: 'motor1', lock_type: 'MANUAL_OPERATOR', user_id: 'n', timeout: 5 })).body.success, 5000, 'granted after the delay', 50);
  const gap = Date.now() - tExp;
  assert(gap >= 900 && gap < 4000, `free again after the 1.2 s lock-delay (${gap} ms after the expiry event ${exp.event_id})`);
  // no delay after a normal release
  const n = (await c.get('/api/locks/device/motor1')).body.lock;
  await c.release({ device_name: 'motor1', lock_key: n.lock_key, user_id: 'n' });
  eq((await c.acquire({ device_name: 'motor1', lock_type: 'MANUAL_OPERATOR', user_id: 'z' })).body.success, true, 'no delay after a normal release');
  w.close();
  await c.stop();
  current = [];
}, { timeoutMs: 40000 });

test('catalogue: JSON object and bare-array formats; SIGHUP adds and removes devices; broken files keep the old catalogue', async () => {
  redis.cli('FLUSHALL');
  const arr = path.join(tmp, 'devices-array.json');
  fs.writeFileSync(arr, JSON.stringify(['a1', { name: 'a2', description: 'second' }, { device_name: 'a3' }]));
  const c1 = await started(await Broker.start(redis.url, ['--devices', arr]));
  eq((await c1.get('/api/devices')).body.devices.map(d => `${d.device_name}:${d.description}`).join(), 'a1:null,a2:second,a3:null', 'bare array');
  await c1.stop();
  const file = path.join(tmp, 'devices-reload.json');
  fs.writeFileSync(file, JSON.stringify({ devices: [{ name: 'r1' }, { name: 'r2', description: 'old' }] }));
  const c = await started(await Broker.start(redis.url, ['--devices', file]));
  eq((await c.acquire({ device_name: 'r3', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).status, 404, 'r3 unknown at first');
  fs.writeFileSync(file, 'r1\nr3 description="new one"\n'); // switches to the text format, drops r2
  c.proc.kill('SIGHUP');
  await poll(async () => (await c.acquire({ device_name: 'r3', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success === true, 5000, 'r3 accepted after SIGHUP');
  eq((await c.acquire({ device_name: 'r2', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.error, 'unknown_device', 'r2 removed');
  eq((await c.get('/api/devices')).body.devices.map(d => d.device_name).join(), 'r1,r3', 'listed after reload');
  const logLen = c.log().length;
  for (const broken of ['{"devices": [', 'r1\nbad name!\n', 'r1\nr1\n', 'r1 preempt_grace_s=-5\n', 'r1 lock_delay_s=soon\n', 'r1 description="unterminated\n', JSON.stringify({ devices: [{ description: 'no name' }] })]) {
    fs.writeFileSync(file, broken);
    const seen = (c.log().slice(logLen).match(/keeping the previous one/g) || []).length;
    c.proc.kill('SIGHUP');
    await poll(() => (c.log().slice(logLen).match(/keeping the previous one/g) || []).length > seen, 5000, `broken catalogue ${JSON.stringify(broken)} refused (log)`);
    eq((await c.get('/api/devices')).body.devices.map(d => d.device_name).join(), 'r1,r3', `old catalogue kept after ${JSON.stringify(broken)}`);
  }
  eq((await c.acquire({ device_name: 'r1', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success, true, 'still serving the kept catalogue');
  fs.rmSync(file);
  const seen = (c.log().slice(logLen).match(/keeping the previous one/g) || []).length;
  c.proc.kill('SIGHUP');
  await poll(() => (c.log().slice(logLen).match(/keeping the previous one/g) || []).length > seen, 5000, 'a missing file refused (log)');
  eq((await c.get('/api/devices')).body.total_count, 2, 'a missing file keeps the old catalogue');
  await c.stop();
  current = [];
}, { timeoutMs: 40000 });

// ---- logs, configuration, service files ----------------------------------------
const configRows = fs.readFileSync(path.join(ROOT, 'server', 'config.def'), 'utf8').split('\n')
  .map(l => /^X\((\w+),\s*(\w+),\s*"([^"]+)",\s*"([^"]+)",\s*"([^"]*)"/.exec(l)).filter(Boolean)
  .map(m => ({ field: m[1], type: m[2], flag: m[3], env: m[4], def: m[5] }));

test('logs: --log-format json lines are objects with ts, level, msg; COORDINATION_LOG_LEVEL and --log-level filter', async () => {
  redis.cli('FLUSHALL');
  const j = await started(await Broker.start(redis.url, ['--log-format', 'json'], { env: { COORDINATION_LOG_LEVEL: 'DEBUG' } }));
  await j.acquire({ device_name: 'lg1', lock_type: 'QUEUE_QUEUED', user_id: 'user "quoted"\nnewline', reason: 'tab\there' });
  await j.post('/api/lock/request', '{bad');
  await poll(() => /"lg1"/.test(j.log()), 3000, 'the event logged');
  await j.stop();
  const lines = j.log().split('\n').filter(Boolean);
  assert(lines.length >= 3, `log lines: ${lines.length}`);
  const objs = lines.map((l, i) => { try { return JSON.parse(l); } catch (e) { throw new Error(`log line ${i + 1} is not JSON: ${l.slice(0, 200)}`); } });
  for (const o of objs) {
    assert(o && typeof o === 'object' && !Array.isArray(o), 'an object per line');
    assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(o.ts), `ts is RFC 3339 UTC: ${o.ts}`);
    assert(typeof o.level === 'string' && typeof o.msg === 'string', `level and msg: ${JSON.stringify(o).slice(0, 200)}`);
  }
  const levels = new Set(objs.map(o => o.level.toUpperCase()));
  assert(levels.has('DEBUG') && levels.has('INFO'), `DEBUG and INFO lines with COORDINATION_LOG_LEVEL=DEBUG (levels: ${[...levels]})`);
  assert(objs.some(o => JSON.stringify(o).includes('lg1') && JSON.stringify(o).includes('user \\"quoted\\"\\nnewline')), 'the event with the user id escaped, on one line');
  // WARNING from the environment hides INFO; the flag beats the environment
  const t = await started(await Broker.start(redis.url, ['--auth-file', writeAuth()], { env: { COORDINATION_LOG_LEVEL: 'WARNING' } }));
  await t.acquire({ device_name: 'lg2', lock_type: 'QUEUE_QUEUED', user_id: 'qs' }, AS('qs'));
  fs.writeFileSync(authFile, '{broken');
  t.proc.kill('SIGHUP');
  await poll(() => /keeping the previous one/.test(t.log()), 5000, 'the error logged');
  await t.stop();
  const tl = t.log().split('\n').filter(Boolean);
  assert(!tl.some(l => /\bINFO\b/.test(l)), `no INFO line at WARNING:\n${tl.filter(l => /INFO/.test(l)).slice(0, 3).join('\n')}`);
  assert(tl.some(l => /^\d{4}-\d\d-\d\dT\S+Z\s+ERROR\b.*auth file/.test(l)), 'text line: ts, level, message');
  const pc = spawnSync(path.join(BUILD, 'devlockd'), ['--print-config', '--log-level', 'ERROR'], { encoding: 'utf8', env: { ...process.env, COORDINATION_LOG_LEVEL: 'DEBUG' } });
  assert(/^log-level=ERROR$/m.test(pc.stdout), 'the flag beats the environment');
  current = [];
});

test('config: --print-config lists every setting of config.def, masks the Redis password, flag > env > default; --help lists all', async () => {
  const bin = path.join(BUILD, 'devlockd');
  const env = { ...process.env };
  for (const r of configRows) delete env[r.env];
  const def = spawnSync(bin, ['--print-config'], { encoding: 'utf8', env });
  eq(def.status, 0, '--print-config exits 0');
  for (const r of configRows) assert(new RegExp(`^${r.flag}=${r.def.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm').test(def.stdout), `--print-config shows ${r.flag}=${r.def}`);
  const help = spawnSync(bin, ['--help'], { encoding: 'utf8', env });
  for (const r of configRows) assert(help.stdout.includes(`--${r.flag}`) && help.stdout.includes(r.env), `--help lists --${r.flag} and ${r.env}`);
  for (const [args, e, secret] of [[['--redis-url', 'redis://:s3cret-pw@db.example:6380/2'], {}, 's3cret-pw'],
    [[], { COORDINATION_REDIS_URL: 'redis://ops:env-secret@db.example:6380' }, 'env-secret']]) {
    const out = spawnSync(bin, ['--print-config', ...args], { encoding: 'utf8', env: { ...env, ...e } }).stdout;
    assert(!out.includes(secret), `the Redis password is masked: ${out.split('\n').find(l => /redis-url/.test(l))}`);
    assert(/^redis-url=redis:\/\/.*\*\*\*.*@db\.example:6380/m.test(out), 'the rest of the URL is shown');
  }
  const prec = spawnSync(bin, ['--print-config', '--max-body', '2048'], { encoding: 'utf8', env: { ...env, COORDINATION_MAX_BODY: '4096', COORDINATION_MAX_JSON_DEPTH: '9', ALLOWED_ORIGINS: 'https://a.example' } }).stdout;
  assert(/^max-body=2048$/m.test(prec), 'flag over environment');
  assert(/^max-json-depth=9$/m.test(prec), 'environment over default');
  assert(/^allowed-origins=https:\/\/a\.example$/m.test(prec), 'ALLOWED_ORIGINS read from the environment');
  for (const bad of [['--max-body', 'lots'], ['--log-format', 'xml'], ['--no-such-flag']]) {
    const r = spawnSync(bin, ['--print-config', ...bad], { encoding: 'utf8', env });
    assert(r.status !== 0, `${bad.join(' ')} is refused`);
  }
});

test('docs: docs/configuration.md documents every flag, variable and default of config.def', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8');
  const quote = (x) => x.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const missing = configRows.filter(r => !new RegExp(`\`--${quote(r.flag)}\`[^\\n]*\`${quote(r.env)}\`[^\\n]*${r.def === '' ? '(\\(empty\\)|none|—)' : `\`${quote(r.def)}\``}`).test(doc));
  eq(missing.map(r => r.flag).join(', '), '', 'settings missing from docs/configuration.md (row: flag, env, `default`)');
  const ops = fs.readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  for (const s of ['systemd', 'appendfsync always', 'everysec', '--redis-sentinel', '--redis-master', '--redis-wait-replicas', '--fence-clock',
    'token_sha256', 'printf %s', 'sha256sum', '--tls-cert', 'ALLOWED_ORIGINS', 'devlock_redis_up', 'devlock_websocket_dropped_total',
    'devlock_refusals_total', 'histogram_quantile(0.99', '--max-body', '--max-connections', '--ws-queue-max', '--io-timeout'])
    assert(ops.includes(s), `docs/operations.md mentions ${s}`);
});

test('service files: the systemd unit verifies and is hardened; the env example names real variables; the Redis config loads', async () => {
  const unit = fs.readFileSync(path.join(ROOT, 'scripts', 'devlockd.service'), 'utf8');
  const directives = ['Type=simple', 'ExecStart=/usr/local/bin/devlockd', 'EnvironmentFile=/etc/devlock/devlockd.env', 'Restart=on-failure',
    'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'PrivateDevices=yes', 'CapabilityBoundingSet=\n',
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX', 'MemoryDenyWriteExecute=yes', 'SystemCallFilter=@system-service',
    'ExecReload=/bin/kill -HUP $MAINPID', 'LimitNOFILE=65536'];
  for (const d of directives) assert(unit.includes(d), `unit has ${d.trim()}`);
  assert(/^RestartSec=\S+/m.test(unit), 'RestartSec');
  assert(/^DynamicUser=yes$/m.test(unit) || /^User=devlock$/m.test(unit), 'DynamicUser=yes or User=devlock');
  const sa = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (sa.status === 0) {
    const copy = path.join(tmp, 'devlockd.service');
    fs.writeFileSync(copy, unit.replace('ExecStart=/usr/local/bin/devlockd', `ExecStart=${path.join(BUILD, 'devlockd')}`));
    const v = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    const complaints = (v.stderr + v.stdout).split('\n').filter(l => l.trim() && !/devlockd\.env|Failed to .*EnvironmentFile/i.test(l));
    eq(`${v.status} ${complaints.join(' | ')}`, '0 ', 'systemd-analyze verify');
    const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', copy], { encoding: 'utf8' });
    const lvl = /Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout);
    if (lvl) { console.log(`# systemd-analyze security: exposure ${lvl[1]}`); assert(Number(lvl[1]) <= 2.5, `exposure ${lvl[1]} too high`); }
  } else console.log('# systemd-analyze not available: unit checked textually only');
  // the env example sets only variables devlockd knows
  const known = new Set(configRows.map(r => r.env));
  const envEx = fs.readFileSync(path.join(ROOT, 'scripts', 'devlockd.env.example'), 'utf8');
  const names = [...envEx.matchAll(/^#?\s*([A-Z_]+)=/gm)].map(m => m[1]);
  assert(names.length >= 8, 'env example lists settings');
  eq(names.filter(n => !known.has(n)).join(', '), '', 'unknown variables in devlockd.env.example');
  const active = envEx.split('\n').filter(l => /^[A-Z_]+=/.test(l)).map(l => l.replace(/=.*/, ''));
  const pc = spawnSync(path.join(BUILD, 'devlockd'), ['--print-config'], { encoding: 'utf8',
    env: { ...process.env, ...Object.fromEntries(envEx.split('\n').filter(l => /^[A-Z_]+=/.test(l)).map(l => [l.replace(/=.*/, ''), l.replace(/^[^=]*=/, '')])) } });
  eq(pc.status, 0, `devlockd accepts the env example's values (${active.join(' ')}): ${pc.stderr}`);
  // the Redis configuration loads in redis-server and says what we recommend
  const conf = path.join(ROOT, 'scripts', 'redis-devlock.conf');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(tmp, 'redis-conf-'));
  const rs = require('child_process').spawn('redis-server', [conf, '--port', String(port), '--dir', dir, '--daemonize', 'no'], { stdio: 'ignore' });
  try {
    const cli = (...a) => { try { return execFileSync('redis-cli', ['-p', String(port), ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch (e) { return null; } };
    await poll(() => cli('PING') === 'PONG', 10000, 'redis-server with scripts/redis-devlock.conf');
    eq(cli('CONFIG', 'GET', 'appendonly').split('\n')[1], 'yes', 'appendonly');
    eq(cli('CONFIG', 'GET', 'appendfsync').split('\n')[1], 'always', 'appendfsync');
    eq(cli('CONFIG', 'GET', 'maxmemory-policy').split('\n')[1], 'noeviction', 'maxmemory-policy');
    assert(/^127\.0\.0\.1\b/.test(cli('CONFIG', 'GET', 'bind').split('\n')[1]), 'bind 127.0.0.1');
    const text = fs.readFileSync(conf, 'utf8');
    for (const s of ['everysec', 'Sentinel', '--redis-wait-replicas', 'replica']) assert(text.includes(s), `redis-devlock.conf explains ${s}`);
    // devlockd runs against it
    const b = await started(await Broker.start(`redis://127.0.0.1:${port}`));
    eq((await b.acquire({ device_name: 'conf1', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success, true, 'devlockd works on the recommended Redis');
    await b.stop();
  } finally {
    rs.kill('SIGKILL');
    current = [];
  }
}, { timeoutMs: 40000 });

run({
  onFail: async () => {
    for (const d of dump.splice(0)) console.log(d.slice(0, 4000));
    for (const b of current) console.log(`--- devlockd log (last lines):\n${b.log().split('\n').slice(-15).join('\n')}`);
    current = current.filter(b => b === ab && ab.proc.exitCode === null);
    if (redis) { try { console.log(`--- redis log (last lines):\n${fs.readFileSync(path.join(redis.dir, 'redis.log'), 'utf8').split('\n').slice(-5).join('\n')}`); } catch (e) { /* none */ } }
  },
}).then(async (failed) => {
  await stopDaemons();
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(failed || process.exitCode ? 1 : 0);
});
