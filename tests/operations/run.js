'use strict';
// Operations and security (issue 5) against real redis-server and devlockd
// processes: the authorization matrix and a 10 000-attempt unauthorized
// sweep, TLS, CORS, limits, metrics, the device catalogue, JSON logs and
// SIGHUP reloads. Last line: "N passed, M failed".
const { execFileSync, spawnSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const net = require('net');
const os = require('os');
const path = require('path');
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, Watcher, poll, stopAll, ROOT } = require('../lib/servers.js');

let redis, b, current;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-ops-'));
function assert(c, m) { if (!c) throw new Error(m); }
function eq(a, e, m) { if (a !== e) throw new Error(`${m}: expected ${JSON.stringify(e)}, got ${JSON.stringify(a)}`.slice(0, 500)); }
const bearer = (t) => ({ authorization: `Bearer ${t}` });
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const TOK = { alice: 'alice-token-1', bob: 'bob-token-22', queue: 'queue-token-3', staff: 'staff-token-4', viewer: 'viewer-token-5', admin: 'admin-token-66' };
function writeAuth(extra = []) {
  fs.writeFileSync(path.join(tmp, 'auth.json'), JSON.stringify({ users: [
    { user_id: 'alice', token: TOK.alice, roles: ['operator'] },
    { user_id: 'bob', token_sha256: sha(TOK.bob), roles: ['operator'] },
    { user_id: 'queue', token: TOK.queue, roles: ['queue'] },
    { user_id: 'staff', token: TOK.staff, roles: ['maintenance'] },
    { user_id: 'viewer', token: TOK.viewer, roles: ['viewer'] },
    { user_id: 'root', token: TOK.admin, roles: ['admin'] },
    ...extra] }));
  return path.join(tmp, 'auth.json');
}
// The whole Redis state devlock keeps, to prove a refusal changed nothing.
function redisState(r) {
  const keys = (r.cli('--scan', '--pattern', 'dl:*') || '').split('\n').filter(k => k && !k.startsWith('dl:broker:')).sort();
  const parts = keys.map(k => {
    const t = r.cli('TYPE', k);
    if (t === 'hash') return `${k}=${r.cli('HGETALL', k)}`;
    if (t === 'string') return `${k}=${r.cli('GET', k)}`;
    if (t === 'zset') return `${k}=${r.cli('ZRANGE', k, '0', '-1', 'WITHSCORES')}`;
    if (t === 'stream') return `${k}=${r.cli('XLEN', k)}`;
    return `${k}:${t}`;
  });
  return parts.join('\n');
}
function scrape(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}
async function metrics(br, h = {}) { return scrape((await br.get('/metrics', h)).text); }

test('start redis-server', async () => { redis = await Redis.start(); });

test('auth: 401 without a valid token; user_id must be the token user; roles per lock type', async () => {
  b = current = await Broker.start(redis.url, ['--auth-file', writeAuth()]);
  const r0 = await b.get('/api/locks/status');
  eq(r0.status, 401, 'no token');
  eq(r0.body.error, 'unauthorized', 'error');
  eq(r0.headers['www-authenticate'], 'Bearer', 'WWW-Authenticate');
  eq((await b.get('/api/locks/status', bearer('nope'))).status, 401, 'bad token');
  eq((await b.get('/api/health/live')).status, 200, 'liveness needs no token');
  eq((await b.get('/')).status, 200, 'the dashboard page needs no token');
  eq((await b.get('/api/locks/status', bearer(TOK.bob))).status, 200, 'token_sha256 user');
  const req = (tok, user, type, dev = 'a1') => b.acquire({ device_name: dev, lock_type: type, user_id: user }, bearer(tok));
  eq((await req(TOK.alice, 'bob', 'MANUAL_OPERATOR')).status, 403, 'another user_id');
  const matrix = [ // token, lock type, allowed
    ['alice', 'MANUAL_OPERATOR', true], ['alice', 'QUEUE_EXECUTING', false], ['alice', 'MAINTENANCE', false],
    ['queue', 'QUEUE_EXECUTING', true], ['queue', 'QUEUE_QUEUED', true], ['queue', 'MANUAL_OPERATOR', false],
    ['staff', 'MAINTENANCE', true], ['staff', 'MANUAL_OPERATOR', false], ['viewer', 'QUEUE_QUEUED', false],
    ['admin', 'MAINTENANCE', true]];
  let i = 0;
  for (const [who, type, ok] of matrix) {
    const user = who === 'admin' ? 'root' : who;
    const r = await req(TOK[who], user, type, `m${i++}`);
    if (ok) eq(r.body.success, true, `${who} may take ${type}`);
    else { eq(r.status, 403, `${who} may not take ${type}`); eq(r.body.error, 'forbidden', 'error'); }
  }
  const force = await b.post('/api/lock/force_release', { device_name: 'm0' }, bearer(TOK.alice));
  eq(force.status, 403, 'force release needs admin');
  eq((await b.post('/api/lock/force_release', { device_name: 'm0' }, bearer(TOK.admin))).body.success, true, 'admin forces');
});

test('auth: lock_key shown only to its owner and admins (HTTP and WebSocket)', async () => {
  const a = await b.acquire({ device_name: 'k1', lock_type: 'MANUAL_OPERATOR', user_id: 'alice' }, bearer(TOK.alice));
  const key = a.body.lock_key;
  const seen = async (tok) => (await b.get('/api/locks/device/k1', bearer(tok))).body.lock.lock_key;
  eq(await seen(TOK.alice), key, 'owner sees it');
  eq(await seen(TOK.admin), key, 'admin sees it');
  eq(await seen(TOK.bob), null, 'others do not');
  eq(await seen(TOK.viewer), null, 'viewer does not');
  const st = (await b.get('/api/locks/status', bearer(TOK.viewer))).body;
  assert(st.locks.every(l => l.lock_key === null), 'status hides keys');
  const ev = (await b.get('/api/events?device=k1', bearer(TOK.bob))).body;
  assert(ev.events.every(e => e.lock.lock_key === null), 'history hides keys');
  const denied = await b.acquire({ device_name: 'k1', lock_type: 'MANUAL_OPERATOR', user_id: 'bob' }, bearer(TOK.bob));
  eq(denied.body.holder.lock_key, null, 'denial holder hides the key');
  await assert.rejects === undefined;
  let refused = false;
  try { await b.ws(); } catch (e) { refused = true; }
  assert(refused, 'WebSocket without a token is refused');
  const wv = await b.ws(`?token=${TOK.viewer}`);
  const wa = await b.ws('', bearer(TOK.alice));
  await wv.waitFor(f => f.type === 'initial_status');
  const ia = await wa.waitFor(f => f.type === 'initial_status');
  eq(ia.data.locks.find(l => l.device_name === 'k1').lock_key, key, 'owner initial_status has its key');
  await b.post('/api/lock/renew', { device_name: 'k1', lock_key: key, user_id: 'alice' }, bearer(TOK.alice));
  const uv = await wv.waitFor(f => f.type === 'lock_update' && f.action === 'renewed');
  const ua = await wa.waitFor(f => f.type === 'lock_update' && f.action === 'renewed');
  eq(uv.lock.lock_key, null, 'viewer frame hides the key');
  eq(ua.lock.lock_key, key, 'owner frame has it');
  wv.send({ type: 'acquire', id: 1, device_name: 'k2', lock_type: 'QUEUE_QUEUED', user_id: 'viewer' });
  eq((await wv.waitFor(f => f.type === 'error' && f.id === 1)).error, 'forbidden', 'viewer cannot acquire over WS');
  wa.send({ type: 'release', id: 2, device_name: 'k1', lock_key: key, user_id: 'bob' });
  eq((await wa.waitFor(f => f.type === 'error' && f.id === 2)).error, 'forbidden', 'other user_id over WS');
  wv.close(); wa.close();
});

test('auth sweep: 10 000 unauthorized attempts are refused, change nothing, emit nothing, in bounded time', async () => {
  // locks held by others, to attack
  const held = {};
  for (const [dev, tok, user, type] of [['t1', TOK.alice, 'alice', 'MANUAL_OPERATOR'], ['t2', TOK.queue, 'queue', 'QUEUE_QUEUED'], ['t3', TOK.staff, 'staff', 'MAINTENANCE']])
    held[dev] = (await b.acquire({ device_name: dev, lock_type: type, user_id: user }, bearer(tok))).body.lock_key;
  const before = redisState(redis);
  const xlen = redis.cli('XLEN', 'dl:events');
  const w = await b.ws(`?token=${TOK.admin}`);
  await w.waitFor(f => f.type === 'initial_status');
  let seed = 42;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const devs = Object.keys(held);
  const attempt = () => {
    const dev = devs[rnd(3)];
    switch (rnd(8)) {
    case 0: return [b.post('/api/lock/release', { device_name: dev, lock_key: held[dev], user_id: 'bob' }, bearer(TOK.bob)), 403];
    case 1: return [b.post('/api/lock/release', { device_name: dev, lock_key: held[dev], user_id: 'alice' }, bearer(TOK.bob)), 403];
    case 2: return [b.post('/api/lock/renew', { device_name: dev, lock_key: held[dev], user_id: 'viewer' }, bearer(TOK.viewer)), 403];
    case 3: return [b.post('/api/lock/force_release', { device_name: dev }, bearer(TOK.alice)), 403];
    case 4: return [b.acquire({ device_name: dev, lock_type: 'MAINTENANCE', user_id: 'alice' }, bearer(TOK.alice)), 403];
    case 5: return [b.acquire({ device_name: dev, lock_type: 'QUEUE_EXECUTING', user_id: 'viewer' }, bearer(TOK.viewer)), 403];
    case 6: return [b.post('/api/lock/release', { device_name: dev, lock_key: held[dev], user_id: 'alice' }, bearer('forged-' + rnd(1000))), 401];
    default: return [b.acquire({ device_name: dev, lock_type: 'MAINTENANCE', user_id: 'staff' }), 401];
    }
  };
  const t0 = Date.now();
  let refused = 0, wrong = [];
  for (let round = 0; round < 200; round++) {
    const batch = Array.from({ length: 50 }, attempt);
    const res = await Promise.all(batch.map(([p]) => p));
    res.forEach((r, i) => { if (r.status === batch[i][1]) refused++; else wrong.push(`${r.status} ${r.text}`); });
  }
  const ms = Date.now() - t0;
  console.log(`# 10 000 unauthorized attempts refused in ${ms} ms`);
  eq(wrong.length, 0, `every attempt refused with the right status (${wrong.slice(0, 3).join(' | ')})`);
  eq(refused, 10000, 'refused count');
  assert(ms < 120000, 'bounded time');
  eq(redis.cli('XLEN', 'dl:events'), xlen, 'no event emitted');
  eq(redisState(redis), before, 'no Redis state changed');
  eq(w.updates().length, 0, 'the watcher saw nothing');
  w.close();
}, { timeoutMs: 150000 });

test('auth: SIGHUP re-reads the auth file; a broken file keeps the old users', async () => {
  writeAuth([{ user_id: 'carol', token: 'carol-token-7', roles: ['viewer'] }]);
  current.proc.kill('SIGHUP');
  await poll(async () => (await b.get('/api/locks/status', bearer('carol-token-7'))).status === 200, 5000, 'new token accepted');
  fs.writeFileSync(path.join(tmp, 'auth.json'), '{"users": [ broken');
  current.proc.kill('SIGHUP');
  await poll(() => /keeping the previous one/.test(b.log()), 5000, 'reload refused');
  eq((await b.get('/api/locks/status', bearer('carol-token-7'))).status, 200, 'old users kept');
  await b.stop();
});

test('TLS: HTTPS and WSS on one port with a self-signed certificate; plain HTTP fails cleanly', async () => {
  const key = path.join(tmp, 'key.pem'), cert = path.join(tmp, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  redis.cli('FLUSHALL');
  const portFile = path.join(tmp, 'tls.port');
  const { spawn } = require('child_process');
  const proc = spawn(path.join(require('../lib/servers.js').BUILD, 'devlockd'), ['--host', '127.0.0.1', '--port', '0', '--port-file', portFile,
    '--redis-url', redis.url, '--tls-cert', cert, '--tls-key', key], { stdio: 'ignore' });
  try {
    const port = await poll(() => fs.existsSync(portFile) && Number(fs.readFileSync(portFile, 'utf8')), 10000, 'TLS broker');
    const curl = (args) => spawnSync('curl', ['-s', '--cacert', cert, ...args], { encoding: 'utf8' });
    await poll(() => JSON.parse(curl([`https://127.0.0.1:${port}/api/health/ready`]).stdout || '{}').status === 'ready', 10000, 'ready over HTTPS');
    const a = JSON.parse(curl(['-XPOST', `https://127.0.0.1:${port}/api/lock/request`, '-d', '{"device_name":"tls1","lock_type":"QUEUE_QUEUED","user_id":"u"}']).stdout);
    eq(a.success, true, 'acquire over HTTPS');
    const ca = fs.readFileSync(cert);
    const WebSocket = require(path.join(ROOT, 'tests', 'node_modules', 'ws'));
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca });
    const first = await new Promise((res, rej) => { ws.on('message', d => res(JSON.parse(String(d)))); ws.on('error', rej); });
    eq(first.type, 'initial_status', 'WSS works');
    ws.close();
    const plain = spawnSync('curl', ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/api/health/live`], { encoding: 'utf8' });
    assert(plain.stdout !== '200', `plain HTTP is not served (${plain.stdout}, curl ${plain.status})`);
    const again = JSON.parse(curl([`https://127.0.0.1:${port}/api/health/live`]).stdout);
    eq(again.status, 'alive', 'still serving HTTPS');
  } finally { proc.kill('SIGTERM'); }
});

test('CORS: none by default; a listed origin is echoed; preflight answered; * without credentials', async () => {
  redis.cli('FLUSHALL');
  const plain = await Broker.start(redis.url);
  const r0 = await plain.get('/api/locks/status', { origin: 'http://evil.example' });
  eq(r0.headers['access-control-allow-origin'], undefined, 'no CORS by default');
  await plain.stop();
  const c = current = await Broker.start(redis.url, ['--allowed-origins', 'http://ok.example, http://also.example']);
  const r1 = await c.get('/api/locks/status', { origin: 'http://ok.example' });
  eq(r1.headers['access-control-allow-origin'], 'http://ok.example', 'echoed');
  eq(r1.headers['access-control-allow-credentials'], 'true', 'credentials');
  eq((await c.get('/api/locks/status', { origin: 'http://evil.example' })).headers['access-control-allow-origin'], undefined, 'other origins get nothing');
  const pre = await c.request('OPTIONS', '/api/lock/request', undefined, { origin: 'http://also.example', 'access-control-request-method': 'POST' });
  eq(pre.status, 204, 'preflight');
  assert(/POST/.test(pre.headers['access-control-allow-methods']) && /Authorization/i.test(pre.headers['access-control-allow-headers']), 'allowed methods and headers');
  await c.stop();
  const star = current = await Broker.start(redis.url, ['--allowed-origins', '*']);
  const r2 = await star.get('/api/locks/status', { origin: 'http://any.example' });
  eq(r2.headers['access-control-allow-origin'], '*', 'any origin');
  eq(r2.headers['access-control-allow-credentials'], undefined, 'never * with credentials');
  await star.stop();
});

test('limits: body, depth, message size, connections, slow client, slow headers; others still served', async () => {
  redis.cli('FLUSHALL');
  const l = current = await Broker.start(redis.url, ['--max-body', '1024', '--max-json-depth', '8', '--max-ws-message', '2048',
    '--max-connections', '40', '--ws-queue-max', '64', '--io-timeout', '2']);
  const ok = async () => eq((await l.acquire({ device_name: `ok${Date.now()}`, lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success, true, 'others served');
  const big = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-XPOST', '--data-binary', '@-', `${l.base}/api/lock/request`],
    { input: JSON.stringify({ device_name: 'x', lock_type: 'QUEUE_QUEUED', user_id: 'u', reason: 'x'.repeat(2000) }), encoding: 'utf8' });
  eq(big.stdout, '413', 'body limit');
  await ok();
  eq((await l.post('/api/lock/request', '{"a":' + '['.repeat(9) + ']'.repeat(9) + '}')).body.error, 'json_too_deep', 'depth limit');
  const w = await l.ws();
  await w.waitFor(f => f.type === 'initial_status');
  w.sock.send('x'.repeat(3000));
  eq(await w.closed, 1009, 'message size limit');
  await ok();
  // connections: hold 40 idle sockets, then one more request is refused
  const socks = await Promise.all(Array.from({ length: 45 }, () => new Promise(res => {
    const s = net.connect(l.port, '127.0.0.1', () => { s.write('GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n'); res(s); });
    s.on('error', () => {});
  })));
  await poll(async () => {
    const r = spawnSync('curl', ['-s', '-m', '2', `${l.base}/api/health/live`], { encoding: 'utf8' });
    return /too_many_connections/.test(r.stdout);
  }, 5000, 'connection limit answered 503');
  socks.forEach(s => s.destroy());
  await poll(async () => (await l.get('/api/health/live')).status === 200, 5000, 'served again');
  // slow headers are cut after --io-timeout
  const t0 = Date.now();
  const drip = net.connect(l.port, '127.0.0.1');
  drip.on('error', () => {});
  drip.write('GET /api/health/live HTTP/1.1\r\n');
  await new Promise(res => drip.on('close', res));
  const cut = Date.now() - t0;
  assert(cut < 8000, `slow headers cut (${cut} ms)`);
  await ok();
  const m = await metrics(l);
  for (const reason of ['body_too_large', 'json_too_deep', 'ws_message_too_large', 'connections'])
    assert(m.get(`devlock_refusals_total{reason="${reason}"}`) >= 1, `refusal counted: ${reason}`);
  await l.stop();
}, { timeoutMs: 60000 });

test('limits: a WebSocket client that never reads is dropped; the broker\'s memory stays bounded', async () => {
  redis.cli('FLUSHALL');
  const l = current = await Broker.start(redis.url, ['--ws-queue-max', '64']);
  const ok = async () => eq((await l.acquire({ device_name: `ok${Date.now()}`, lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success, true, 'others served');
  // a WebSocket client that never reads is dropped; memory stays bounded
  const rssOf = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${l.proc.pid}/status`, 'utf8'))[1]);
  const slow = await l.ws();
  await slow.waitFor(f => f.type === 'initial_status');
  slow.sock._socket.pause();
  const before = await metrics(l);
  // events of ~1.3 kB, 60 per request, until the kernel's socket buffers
  // are full and the broker's queue for this client overflows (bounded)
  const dropped = async () => (await metrics(l)).get('devlock_websocket_dropped_total') > before.get('devlock_websocket_dropped_total');
  for (let i = 0; i < 300 && !(await dropped()); i++) {
    const names = Array.from({ length: 60 }, (_, k) => `s${i}x${k}`);
    const g = await l.acquire({ device_names: names, lock_type: 'QUEUE_QUEUED', user_id: 'u', reason: 'r'.repeat(1000) });
    await l.release({ device_name: names[0], lock_key: g.body.lock_key, user_id: 'u' });
  }
  assert(await dropped(), 'slow client dropped');
  const rss = rssOf();
  assert(rss < 200 * 1024, `RSS bounded (${rss} kB)`);
  console.log(`# broker RSS after dropping a slow client: ${rss} kB`);
  await ok();
  eq((await metrics(l)).get('devlock_refusals_total{reason="slow_client"}') >= 1, true, 'refusal counted: slow_client');
  await l.stop();
}, { timeoutMs: 60000 });

test('metrics: scraped and parsed; counters move', async () => {
  redis.cli('FLUSHALL');
  const m = current = await Broker.start(redis.url);
  const m0 = await metrics(m);
  for (const k of ['devlock_redis_up', 'devlock_websocket_clients', 'devlock_stream_length', 'devlock_http_request_duration_seconds_count'])
    assert(m0.has(k), `has ${k}`);
  eq(m0.get('devlock_redis_up'), 1, 'redis up');
  const a = await m.acquire({ device_name: 'mx', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
  await m.acquire({ device_name: 'mx', lock_type: 'MANUAL_OPERATOR', user_id: 'v' });
  await m.acquire({ device_name: 'mx', lock_type: 'QUEUE_EXECUTING', user_id: 'q' });
  await m.acquire({ device_name: 'mx', lock_type: 'QUEUE_QUEUED', user_id: 'w', wait: 0.2 });
  await m.acquire({ device_name: 'my', lock_type: 'QUEUE_QUEUED', user_id: 'e', timeout: 0.2 });
  await m.post('/api/lock/request', '[]');
  await poll(async () => (await metrics(m)).get('devlock_releases_total{cause="expired"}') === 1, 3000, 'expiry counted');
  const m1 = await metrics(m);
  const d = (k) => m1.get(k) - (m0.get(k) || 0);
  eq(d('devlock_acquires_total{result="granted"}'), 2, 'granted (incl. the one that expired)');
  eq(d('devlock_acquires_total{result="denied"}'), 1, 'denied');
  eq(d('devlock_acquires_total{result="preempted"}'), 1, 'preempted');
  eq(d('devlock_acquires_total{result="queued"}'), 1, 'queued');
  eq(d('devlock_acquires_total{result="timed_out"}'), 1, 'timed out');
  eq(d('devlock_releases_total{cause="preempted"}'), 1, 'release by preemption');
  eq(d('devlock_refusals_total{reason="invalid_json"}'), 1, 'refusal');
  eq(m1.get('devlock_locks_held{type="QUEUE_EXECUTING"}'), 1, 'held by type');
  assert(d('devlock_http_request_duration_seconds_count') >= 7, 'latency histogram counts');
  assert(a.body.success, 'first grant');
  await m.stop();
});

test('catalogue: strict, listed with lock state, per-device settings, reloaded on SIGHUP', async () => {
  redis.cli('FLUSHALL');
  const file = path.join(tmp, 'devices.txt');
  fs.writeFileSync(file, '# devices\ndet1 description="Main detector"\nmotor1 preempt_grace_s=1\n');
  const c = current = await Broker.start(redis.url, ['--devices', file]);
  const u = await c.acquire({ device_name: 'unknown1', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  eq(u.status, 404, 'unknown device');
  eq(u.body.error, 'unknown_device', 'error');
  eq((await c.acquire({ device_name: 'det1', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success, true, 'known device');
  const list = (await c.get('/api/devices')).body;
  eq(list.devices.map(d => `${d.device_name}:${d.locked}`).join(), 'det1:true,motor1:false', 'devices with lock state');
  eq(list.devices[0].description, 'Main detector', 'description');
  eq(list.devices[1].preempt_grace_s, 1, 'grace listed');
  // the catalogue's grace applies: a preemption waits
  const w = await c.ws();
  await w.waitFor(f => f.type === 'initial_status');
  await c.acquire({ device_name: 'motor1', lock_type: 'MANUAL_OPERATOR', user_id: 'h' });
  const pending = c.acquire({ device_name: 'motor1', lock_type: 'QUEUE_EXECUTING', user_id: 'q' });
  await w.waitFor(f => f.device_name === 'motor1' && f.action === 'preempt_requested');
  eq((await pending).body.success, true, 'granted after the grace');
  w.close();
  fs.writeFileSync(file, 'det1\nmotor1\nshutter\n');
  c.proc.kill('SIGHUP');
  await poll(async () => (await c.acquire({ device_name: 'shutter', lock_type: 'QUEUE_QUEUED', user_id: 'u' })).body.success === true, 5000, 'reloaded');
  fs.writeFileSync(file, 'bad name here!\n');
  c.proc.kill('SIGHUP');
  await poll(() => /keeping the previous one/.test(c.log()), 5000, 'broken reload refused');
  eq((await c.get('/api/devices')).body.devices.length, 3, 'old catalogue kept');
  await c.stop();
});

test('logs: --log-format json writes one JSON object per line', async () => {
  redis.cli('FLUSHALL');
  const j = current = await Broker.start(redis.url, ['--log-format', 'json']);
  await j.acquire({ device_name: 'lg', lock_type: 'QUEUE_QUEUED', user_id: 'u' });
  await poll(() => / event |"msg":"event"/.test(j.log()), 3000, 'event logged');
  await j.stop();
  const lines = j.log().split('\n').filter(Boolean);
  const objs = lines.map(l => JSON.parse(l));
  assert(objs.every(o => o.ts && o.level && typeof o.msg === 'string'), 'ts, level, msg');
  const ev = objs.find(o => o.msg === 'event' && o.action === 'acquired');
  assert(ev && ev.device === 'lg' && ev.user === 'u' && ev.type === 'QUEUE_QUEUED' && ev.fence === '1', 'event fields');
  const pc = spawnSync(path.join(require('../lib/servers.js').BUILD, 'devlockd'), ['--print-config', '--redis-url', 'redis://:s3cret@h:1'], { encoding: 'utf8' });
  assert(pc.status === 0 && !pc.stdout.includes('s3cret') && /redis-url=redis:\/\/\*\*\*@h:1/.test(pc.stdout), '--print-config masks the password');
});

run({
  onFail: async () => { if (current) console.log(current.log().split('\n').filter(l => !/event/.test(l)).slice(-12).join('\n')); },
}).then(async failed => { await stopAll(); fs.rmSync(tmp, { recursive: true, force: true }); process.exit(failed || process.exitCode ? 1 : 0); });
