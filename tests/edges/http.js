'use strict';
// tests/edges/http.js - HTTP edges (issue 11): keep-alive after a POST
// without Content-Length, pipelining and HEAD (defect 1), cross-site
// requests and WebSocket upgrades (9), lingering close for clients that
// write their whole body first (13), redaction of ids with '/' (12).
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { execFile } = require('child_process');
const { test } = require('../lib/harness.js');
const { Redis, Broker, Watcher, poll } = require('../lib/servers.js');

function assert(c, msg) { if (!c) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

let redis;
const brokers = [];
async function broker(args = []) {
  if (!redis) redis = await Redis.start();
  const b = await Broker.start(redis.url, args);
  brokers.push(b);
  return b;
}
async function stopBrokers() { while (brokers.length) await brokers.pop().stop(); }

// ---- a raw HTTP/1.1 connection: writes bytes, parses answers ---------------------

class RawConn {
  static open(port) {
    return new Promise((resolve, reject) => {
      const c = new RawConn();
      c.buf = Buffer.alloc(0);
      c.answers = [];
      c.heads = []; // one entry per request sent with HEAD: its answer has no body
      c.ended = false;
      c.sock = net.connect(port, '127.0.0.1', () => resolve(c));
      c.sock.on('error', (e) => { c.error = e; c.ended = true; reject(e); });
      c.sock.on('data', (d) => { c.buf = Buffer.concat([c.buf, d]); c.parse(); });
      c.sock.on('end', () => { c.ended = true; });
      c.sock.on('close', () => { c.ended = true; });
    });
  }
  parse() {
    for (let i = 0; i < 100; i++) {
      const h = this.buf.indexOf('\r\n\r\n');
      if (h < 0) return;
      const lines = this.buf.slice(0, h).toString('latin1').split('\r\n');
      const headers = {};
      for (const l of lines.slice(1)) {
        const k = l.indexOf(':');
        headers[l.slice(0, k).trim().toLowerCase()] = l.slice(k + 1).trim();
      }
      const head = this.heads[this.answers.length] === true;
      const n = head ? 0 : Number(headers['content-length'] || 0);
      if (this.buf.length < h + 4 + n) return;
      const text = this.buf.slice(h + 4, h + 4 + n).toString('utf8');
      let body; try { body = JSON.parse(text); } catch (e) { body = undefined; }
      this.answers.push({ status: Number(lines[0].split(' ')[1]), headers, text, body });
      this.buf = this.buf.slice(h + 4 + n);
    }
  }
  send(text, { head = false } = {}) { this.heads.push(head); this.sock.write(text); }
  // Resolves with answer number i (0-based), or null once the peer closed
  // without it, or rejects after ms.
  answer(i, ms = 3000, what = `answer ${i + 1}`) {
    return poll(() => (this.answers.length > i ? this.answers[i] : (this.ended ? { closed: true } : null)), ms, what, 5)
      .then(a => (a.closed ? null : a));
  }
  close() { this.sock.destroy(); }
}

const ACQ = (dev, user = 'u1') => {
  const body = JSON.stringify({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: user, timeout: 60 });
  return `POST /api/lock/request HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
};
const REL_NO_CL = (dev, key, user = 'u1') =>
  `POST /api/lock/release?device_name=${dev}&lock_key=${key}&user_id=${user} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
const GET = (p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;

// Sends req on c; if the broker answered the previous request with
// "Connection: close", sends it on a new connection instead, as every
// HTTP/1.1 client does. Returns [answer, connection].
async function sendKeepAlive(b, c, prev, req, i) {
  if (prev && /close/i.test(prev.headers.connection || '')) {
    await poll(() => c.ended, 3000, 'the broker to close after "Connection: close"');
    c.close();
    c = await RawConn.open(b.port);
    i = 0;
  }
  c.send(req);
  return [await c.answer(i, 3000, `answer to ${req.split('\r\n')[0]}`), c];
}

async function healthy(b, what) {
  const t0 = Date.now();
  const r = await Promise.race([b.get('/api/health/live'), new Promise(r => setTimeout(() => r(null), 2000))]);
  assert(r && r.status === 200, `${what}: the broker still answers other clients (${r ? r.status : 'no answer in 2 s'})`);
  return Date.now() - t0;
}

function curl(args, ms = 8000) {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '-m', String(ms / 1000), ...args], { timeout: ms + 2000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code || 1) : 0, stdout, stderr }));
  });
}

// ---- defect 1: keep-alive ----------------------------------------------------

test('keep-alive: acquire, release by query string without Content-Length, acquire again: all answered (raw socket)', async () => {
  const b = await broker();
  let c = await RawConn.open(b.port);
  c.send(ACQ('ka1'));
  const a1 = await c.answer(0);
  assert(a1 && a1.body && a1.body.success === true, `first acquire: ${a1 && a1.text}`);
  let a2, a3;
  [a2, c] = await sendKeepAlive(b, c, a1, REL_NO_CL('ka1', a1.body.lock_key), 1);
  assert(a2, 'the release without Content-Length is answered');
  eq(a2.status, 200, `release: ${a2.text}`);
  eq(a2.body.success, true, 'released');
  [a3, c] = await sendKeepAlive(b, c, a2, ACQ('ka1'), c.answers.length);
  assert(a3, 'the request after a POST without Content-Length is answered (it never came back before the fix)');
  eq(a3.body && a3.body.success, true, `third request: ${a3.text}`);
  c.close();
  // Content-Length: 0 keeps the connection itself
  c = await RawConn.open(b.port);
  c.send(`POST /api/lock/release?device_name=ka1&lock_key=${a3.body.lock_key}&user_id=u1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
  eq((await c.answer(0)).body.success, true, 'release with Content-Length: 0');
  c.send(GET('/api/health/live'));
  eq((await c.answer(1)).status, 200, 'the same connection serves the next request');
  c.close();
  await stopBrokers();
}, { timeoutMs: 20000 });

test('keep-alive: curl with several URLs on one connection (POST without a body, then GET)', async () => {
  const b = await broker();
  const acq = await b.acquire({ device_name: 'ka2', lock_type: 'MANUAL_OPERATOR', user_id: 'u1', timeout: 60 });
  const key = acq.body.lock_key;
  const u = `http://127.0.0.1:${b.port}`;
  const r = await curl(['-X', 'POST', '-w', '\\n%{http_code}\\n',
    `${u}/api/lock/renew?device_name=ka2&lock_key=${key}&user_id=u1`,
    `${u}/api/lock/renew?device_name=ka2&lock_key=${key}&user_id=u1`,
    `${u}/api/lock/release?device_name=ka2&lock_key=${key}&user_id=u1`], 6000);
  const codes = r.stdout.split('\n').filter(l => /^\d{3}$/.test(l));
  eq(codes.join(' '), '200 200 200', `curl's three POSTs (exit ${r.code}, output ${JSON.stringify(r.stdout.slice(0, 400))})`);
  const st = await b.get('/api/locks/device/ka2');
  eq(st.body.locked, false, 'the release ran');
  await stopBrokers();
}, { timeoutMs: 20000 });

test('keep-alive: HEAD is answered without a body and the connection serves the next request', async () => {
  const b = await broker();
  const c = await RawConn.open(b.port);
  c.send('HEAD /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n', { head: true });
  const h = await c.answer(0);
  eq(h && h.status, 200, 'HEAD answered 200');
  c.send(GET('/api/health/live'));
  const g = await c.answer(1);
  assert(g, 'the GET after HEAD is answered on the same connection');
  eq(g.status, 200, 'GET after HEAD');
  eq(g.body && g.body.status, 'alive', `the GET's body is its own (no HEAD body in front of it): ${g.text}`);
  c.close();
  await stopBrokers();
}, { timeoutMs: 20000 });

test('pipelining: requests sent at once behind a body never stall the broker; each is answered or the connection closes after "Connection: close"', async () => {
  const b = await broker();
  const cases = [[ACQ('pl1'), ACQ('pl2'), GET('/api/health/live')], [GET('/api/locks/status'), ACQ('pl3')],
    [GET('/api/health/live'), ACQ('pl4'), ACQ('pl5')], [GET('/api/locks/status'), GET('/api/locks/status'), GET('/api/health/live')]];
  for (const reqs of cases) {
    const what = reqs.map(r => r.split(' ').slice(0, 2).join(' ')).join(' + ');
    const c = await RawConn.open(b.port);
    for (const r of reqs) c.send(r);
    await poll(() => c.answers.length === reqs.length || c.ended, 5000, `${what}: every answer or the end of the connection`);
    assert(c.answers.length >= 1, `${what}: the first request is answered`);
    const last = c.answers[c.answers.length - 1];
    assert(c.answers.length === reqs.length || /close/i.test(last.headers.connection || '') || c.ended,
      `${what}: ${c.answers.length} of ${reqs.length} answered and the connection not closed`);
    c.close();
    await healthy(b, what);
  }
  await stopBrokers();
}, { timeoutMs: 20000 });

test('chunked request bodies (Node http.request without a length) are read; over --max-body 413, malformed 400; the answer closes', async () => {
  const http = require('http');
  const b = await broker(['--max-body', '1024']);
  const send = (pieces, headers = {}) => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: b.port, method: 'POST', path: '/api/lock/request', agent: false,
      headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', d => { text += d; });
      res.on('end', () => { let body; try { body = JSON.parse(text); } catch (e) { body = undefined; } resolve({ status: res.statusCode, headers: res.headers, body, text }); });
    });
    req.on('error', reject);
    for (const p of pieces) req.write(p);
    req.end();
  });
  const r = await send(['{"device_name":"ck1",', '"lock_type":"MANUAL_OPERATOR",', '"user_id":"u1"}']);
  eq(r.body && r.body.success, true, `a chunked acquire (Node's default without Content-Length): ${r.status} ${r.text.slice(0, 200)}`);
  eq(r.headers.connection, 'close', 'answered with Connection: close');
  eq((await b.get('/api/locks/device/ck1')).body.locked, true, 'the lock is held');
  const big = await send(['{"device_name":"ck2","x":"', 'y'.repeat(600), 'y'.repeat(600), '"}']);
  eq(`${big.status} ${big.body && big.body.error}`, '413 payload_too_large', 'a chunked body over --max-body');
  const raw = await RawConn.open(b.port);
  raw.send('POST /api/lock/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n');
  const bad = await raw.answer(0);
  eq(`${bad && bad.status} ${bad && bad.body && bad.body.error}`, '400 bad_request', 'malformed chunk framing');
  raw.close();
  eq(redis.cli('EXISTS', 'dl:{ck2}:lock'), '0', 'nothing locked by the refused bodies');
  await healthy(b, 'after chunked bodies');
  await stopBrokers();
}, { timeoutMs: 20000 });

// ---- defect 9: cross-site requests -------------------------------------------

test('cross-site: foreign Origin refused 403, non-JSON bodies 415 (nothing locked, counted); same-origin, no Origin and listed origins served', async () => {
  const b = await broker(['--allowed-origins', 'http://gui.example']);
  const body = (dev) => JSON.stringify({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'u1' });
  const m0 = (await b.get('/metrics')).text;
  // a text/plain POST, as a web page can send without a preflight
  const plain = await b.request('POST', '/api/lock/request', body('xs1'), { 'content-type': 'text/plain;charset=UTF-8' });
  eq(`${plain.status} ${plain.body && plain.body.error}`, '415 unsupported_media_type', `text/plain body: ${plain.text}`);
  assert(typeof plain.body.detail === 'string', 'with a detail');
  const form = await b.request('POST', '/api/lock/request', body('xs1'), { 'content-type': 'application/x-www-form-urlencoded' });
  eq(form.status, 415, 'a form body (curl -d) is refused');
  // a foreign Origin, even with a JSON body
  for (const origin of ['http://evil.example', 'null', `https://127.0.0.1:${b.port}`, `http://127.0.0.1:${b.port + 1}`]) {
    const r = await b.post('/api/lock/request', body('xs2'), { origin });
    eq(`${r.status} ${r.body && r.body.error}`, '403 forbidden', `Origin ${origin}: ${r.text}`);
    assert(typeof r.body.detail === 'string' && /origin/i.test(r.body.detail), 'the detail names the Origin check');
  }
  const force = await b.post('/api/lock/force_release', JSON.stringify({ device_name: 'xs2' }), { origin: 'http://evil.example' });
  eq(force.status, 403, 'force_release from a foreign page');
  eq(redis.cli('EXISTS', 'dl:{xs1}:lock') + redis.cli('EXISTS', 'dl:{xs2}:lock'), '00', 'nothing was locked');
  // served: no Origin, same origin (any case of the host, default port rules), listed origin, JSON variants
  const ok = [[{}, 'ok1'], [{ origin: `http://127.0.0.1:${b.port}` }, 'ok2'], [{ origin: 'http://gui.example' }, 'ok3'],
    [{ 'content-type': 'application/json; charset=utf-8' }, 'ok4'], [{ 'content-type': 'Application/JSON' }, 'ok5'],
    [{ 'content-type': 'application/vnd.devlock+json' }, 'ok6']];
  for (const [h, dev] of ok) {
    const r = await b.post('/api/lock/request', body(dev), h);
    eq(r.body && r.body.success, true, `${JSON.stringify(h)}: ${r.status} ${r.text.slice(0, 200)}`);
  }
  const listed = await b.post('/api/lock/request', body('ok7'), { origin: 'http://gui.example' });
  eq(listed.headers['access-control-allow-origin'], 'http://gui.example', 'a listed origin gets its CORS header');
  // query-string release with an empty body needs no Content-Type
  const key = (await b.get('/api/locks/device/ok1')).body.lock.lock_key;
  const rel = await b.request('POST', `/api/lock/release?device_name=ok1&lock_key=${key}&user_id=u1`, '', { 'content-type': 'application/x-www-form-urlencoded' });
  eq(rel.body && rel.body.success, true, `an empty body is not checked: ${rel.text}`);
  // a preflight is still answered (CORS headers only for listed origins)
  const pre = await b.request('OPTIONS', '/api/lock/request', undefined, { origin: 'http://evil.example', 'access-control-request-method': 'POST' });
  eq(`${pre.status} ${pre.headers['access-control-allow-origin']}`, '204 undefined', 'preflight from a foreign page: 204 without CORS');
  const m1 = (await b.get('/metrics')).text;
  const val = (t, reason) => Number((t.match(new RegExp(`devlock_refusals_total\\{reason="${reason}"\\} (\\d+)`)) || [0, 0])[1]);
  eq(val(m1, 'forbidden') - val(m0, 'forbidden'), 5, 'the 403s are counted (reason forbidden)');
  eq(val(m1, 'unsupported_media_type') - val(m0, 'unsupported_media_type'), 2, 'the 415s are counted');
  await stopBrokers();
}, { timeoutMs: 20000 });

test('cross-site: a WebSocket upgrade with a foreign Origin gets 403 at the handshake; no Origin, same origin and listed origins connect', async () => {
  const b = await broker(['--allowed-origins', 'https://ops.example:8443']);
  const WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));
  const tryOpen = (origin) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/ws`, origin ? { origin } : {});
    const t = setTimeout(() => { ws.terminate(); resolve({ timeout: true }); }, 3000);
    ws.on('open', () => { clearTimeout(t); ws.close(); resolve({ open: true }); });
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.on('data', d => { text += d; });
      res.on('end', () => { clearTimeout(t); resolve({ status: res.statusCode, text }); });
    });
    ws.on('error', (e) => { clearTimeout(t); resolve({ error: e.message }); });
  });
  const m0 = (await b.get('/metrics')).text;
  for (const origin of ['http://evil.example', `https://127.0.0.1:${b.port}`, 'null']) {
    const r = await tryOpen(origin);
    eq(r.status, 403, `Origin ${origin}: ${JSON.stringify(r)}`);
    let j; try { j = JSON.parse(r.text); } catch (e) { j = {}; }
    eq(j.error, 'forbidden', `403 body is {"detail","error"}: ${r.text}`);
  }
  for (const origin of [undefined, `http://127.0.0.1:${b.port}`, 'https://ops.example:8443'])
    eq((await tryOpen(origin)).open, true, `Origin ${origin || '(none)'} connects`);
  const w = await b.ws('', { origin: `http://127.0.0.1:${b.port}` });
  await w.waitFor(f => f.type === 'initial_status');
  w.close();
  const m1 = (await b.get('/metrics')).text;
  const val = (t) => Number((t.match(/devlock_refusals_total\{reason="forbidden"\} (\d+)/) || [0, 0])[1]);
  eq(val(m1) - val(m0), 3, 'refused upgrades counted (reason forbidden)');
  await stopBrokers();
}, { timeoutMs: 20000 });

// ---- defect 13: lingering close ----------------------------------------------

test('lingering close: fetch() posting 8 MiB reads the 413 and its JSON body (no reset)', async () => {
  const b = await broker();
  const big = Buffer.alloc(8 << 20, 0x20);
  for (let i = 0; i < 2; i++) {
    let res, text, err;
    try {
      res = await fetch(`http://127.0.0.1:${b.port}/api/lock/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
      text = await res.text();
    } catch (e) { err = `${e.message} (${e.cause && e.cause.code})`; }
    assert(!err, `fetch failed instead of reading the answer: ${err}`);
    eq(res.status, 413, 'status');
    const j = JSON.parse(text);
    eq(j.error, 'payload_too_large', 'error code');
    assert(typeof j.detail === 'string', 'detail');
  }
  // and a body just over --max-body, read and dropped, still answered
  const mid = await fetch(`http://127.0.0.1:${b.port}/api/lock/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(70000, 0x20) });
  eq(mid.status, 413, 'a body just over --max-body');
  await healthy(b, 'after the large bodies');
  await stopBrokers();
}, { timeoutMs: 20000 });

// ---- defect 12: redaction compares decoded ids ---------------------------------

test('redaction: a user whose id has "/" sees their own lock_key (HTTP and WebSocket); others see null', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-edges-http-'));
  const file = path.join(dir, 'auth.json');
  const TOK = { 'lab/alice': 'alice-token-123', 'lab/bob': 'bob-token-4567' };
  fs.writeFileSync(file, JSON.stringify({ users: Object.entries(TOK).map(([user_id, token]) => ({ user_id, token, roles: ['operator'] })) }));
  const b = await broker(['--auth-file', file]);
  const AS = (u) => ({ authorization: `Bearer ${TOK[u]}` });
  const acq = await b.acquire({ device_name: 'rd1', lock_type: 'MANUAL_OPERATOR', user_id: 'lab/alice', timeout: 60 }, AS('lab/alice'));
  eq(acq.body && acq.body.success, true, `acquire: ${acq.text}`);
  const key = acq.body.lock_key;
  const mine = await b.get('/api/locks/device/rd1', AS('lab/alice'));
  eq(mine.body.lock.lock_key, key, "alice's own lock_key in /api/locks/device");
  const st = await b.get('/api/locks/status', AS('lab/alice'));
  eq(st.body.locks.find(l => l.device_name === 'rd1').lock_key, key, "alice's own lock_key in /api/locks/status");
  const theirs = await b.get('/api/locks/device/rd1', AS('lab/bob'));
  eq(theirs.body.lock.lock_key, null, "bob does not see alice's key");
  eq(theirs.body.lock.user_id, 'lab/alice', 'but sees whose lock it is');
  const w = await Watcher.open(`ws://127.0.0.1:${b.port}/ws`, AS('lab/alice'));
  const init = await w.waitFor(f => f.type === 'initial_status');
  eq(init.data.locks.find(l => l.device_name === 'rd1').lock_key, key, "alice's own lock_key in initial_status");
  w.close();
  const rel = await b.release({ device_name: 'rd1', lock_key: key, user_id: 'lab/alice' }, AS('lab/alice'));
  eq(rel.body.success, true, 'alice releases with her key');
  await stopBrokers();
}, { timeoutMs: 20000 });

test('http edges: stop the Redis of this file', async () => {
  await stopBrokers();
  if (redis) await redis.kill();
  redis = null;
});
