'use strict';
// tests/edges/ws.js - WebSocket sessions, liveness, queue bounds and feed
// ordering (issue 11, defects 7, 8 and 12's resume/ordering parts).
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll, idCmp } = require('../lib/servers.js');
const { rawWs } = require('./_rawws.js');

function assert(c, msg) { if (!c) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

let nextId = 1;
// Sends msg with a fresh id and waits for the frame answering it.
async function call(w, msg, timeoutMs = 5000) {
  const id = nextId++;
  const from = w.frames.length;
  w.send({ ...msg, id });
  return w.waitFor(f => f.id === id, timeoutMs, from);
}

async function watcher(b, query = '', headers = {}) {
  const w = await b.ws(query, headers);
  if (!query.includes('since=')) await w.waitFor(f => f.type === 'initial_status');
  return w;
}

const upd = (action, dev) => f => f.type === 'lock_update' && f.action === action && f.device_name === dev;

async function sessionLock(w, dev, extra = {}) {
  const r = await call(w, { type: 'acquire', device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'gui',
    session: true, timeout: 600, ...extra });
  eq(r.success, true, `session lock on ${dev}: ${JSON.stringify(r)}`);
  return r;
}

async function held(b, dev) {
  const r = await b.get(`/api/locks/device/${dev}`);
  return r.body && r.body.locked === true;
}

// Asserts the condition holds for the whole window (a negative check: no
// event announces that something did not happen).
async function holdsFor(ms, fn, what) {
  const end = Date.now() + ms;
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    assert(await fn(), `${what} (after ${ms - (end - Date.now())} ms)`);
    await new Promise(r => setTimeout(r, 100));
  }
}

// ---- a raw WebSocket client: it answers nothing and can stop reading ----------------

function frame(text, opcode = 1) {
  const p = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  let hdr;
  if (p.length < 126) hdr = Buffer.from([0x80 | opcode, 0x80 | p.length]);
  else { hdr = Buffer.alloc(4); hdr[0] = 0x80 | opcode; hdr[1] = 0x80 | 126; hdr.writeUInt16BE(p.length, 2); }
  for (let i = 0; i < p.length; i++) p[i] ^= mask[i % 4];
  return Buffer.concat([hdr, mask, p]);
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

async function metric(b, name, headers = {}) {
  const t = (await b.get('/metrics', headers)).text;
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(t);
  return m ? Number(m[1]) : 0;
}

// ---- defect 7: sessions -------------------------------------------------------------

test('ws sessions: attach_session moves the session; closing the old socket ends nothing', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--session-grace', '0.5']);
  const w = await watcher(A);
  const s1 = await watcher(A);
  const lock = await sessionLock(s1, 'mv1');
  const s2 = await watcher(A);
  const a = await call(s2, { type: 'attach_session', session_id: lock.session_id });
  eq(a.type, 'attach_session_result', 'attached');
  await s1.close();
  // no grace period starts (dl:expiry would hold it), the lock stays
  const graceless = () => !/^\d+$/.test(r.cli('ZSCORE', 'dl:expiry', `$${lock.session_id}`) || '');
  await holdsFor(1500, async () => graceless() && await held(A, 'mv1') &&
    !w.updates().some(f => f.cause === 'session_lost'), 'the lock stays under the live new socket');
  await s2.close();
  const lost = await w.waitFor(upd('force_released', 'mv1'), 5000);
  eq(lost.cause, 'session_lost', 'lost once its current socket closes');
  w.close();
}, { timeoutMs: 15000 });

test('ws sessions: attach on another broker moves the session; the old broker\'s late detach is ignored', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--session-grace', '0.5']);
  const B = await Broker.start(r.url, ['--session-grace', '0.5']);
  const w = await watcher(B);
  const s1 = await watcher(A);
  const lock = await sessionLock(s1, 'mv2');
  const s2 = await watcher(B);
  const a = await call(s2, { type: 'attach_session', session_id: lock.session_id });
  eq(a.type, 'attach_session_result', 'attached on the other broker');
  await s1.close();
  const graceless = () => !/^\d+$/.test(r.cli('ZSCORE', 'dl:expiry', `$${lock.session_id}`) || '');
  await holdsFor(1500, async () => graceless() && await held(B, 'mv2') &&
    !w.updates().some(f => f.cause === 'session_lost'), 'the lock stays under the socket on the other broker');
  await s2.close();
  const lost = await w.waitFor(upd('force_released', 'mv2'), 5000);
  eq(lost.cause, 'session_lost', 'lost once its current socket closes');
  w.close();
}, { timeoutMs: 15000 });

test('ws sessions: attaching is refused while the socket\'s own session holds locks; they are kept', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--session-grace', '0.5']);
  const sa = await watcher(A);
  const la = await sessionLock(sa, 'own-a');
  const sb = await watcher(A);
  await sessionLock(sb, 'own-b');
  const a = await call(sb, { type: 'attach_session', session_id: la.session_id });
  eq(a.type, 'error', `attach refused (${JSON.stringify(a)})`);
  eq(a.error, 'validation_error', 'error code');
  await holdsFor(1500, async () => await held(A, 'own-b') && await held(A, 'own-a'), 'both sessions keep their locks');
  sa.close();
  sb.close();
}, { timeoutMs: 15000 });

test('ws sessions: another user cannot attach a session (admin can); refusals are counted', async () => {
  const r = await Redis.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-wsauth-'));
  const file = path.join(dir, 'auth.json');
  const TOK = { alice: 'alice-token-0123456789', bob: 'bob-token-0123456789', root: 'root-token-0123456789' };
  fs.writeFileSync(file, JSON.stringify({ users: [
    { user_id: 'alice', token: TOK.alice, roles: ['operator'] },
    { user_id: 'bob', token: TOK.bob, roles: ['operator'] },
    { user_id: 'root', token: TOK.root, roles: ['admin', 'operator'] }] }));
  const A = await Broker.start(r.url, ['--auth-file', file, '--session-grace', '5']);
  const auth = u => ({ authorization: `Bearer ${TOK[u]}` });
  const sa = await watcher(A, '', auth('alice'));
  const la = await sessionLock(sa, 'au1', { user_id: 'alice' });
  const before = await metric(A, 'devlock_refusals_total\\{reason="forbidden"\\}', auth('root'));
  const sb = await watcher(A, '', auth('bob'));
  const b = await call(sb, { type: 'attach_session', session_id: la.session_id });
  eq(b.type, 'error', `bob's attach refused (${JSON.stringify(b)})`);
  eq(b.error, 'forbidden', 'error code');
  const after = await metric(A, 'devlock_refusals_total\\{reason="forbidden"\\}', auth('root'));
  assert(after > before, `refusal counted (${before} -> ${after})`);
  // also with resume + session_id
  const since = sb.frames.find(f => f.type === 'initial_status').event_id;
  const b2 = await call(sb, { type: 'resume', since, session_id: la.session_id });
  eq(b2.error, 'forbidden', 'resume with another user\'s session refused');
  const sr = await watcher(A, '', auth('root'));
  const c = await call(sr, { type: 'attach_session', session_id: la.session_id });
  eq(c.type, 'attach_session_result', 'admin may attach');
  sa.close();
  sb.close();
  sr.close();
}, { timeoutMs: 15000 });

test('ws sessions: a detach during a Redis stall is retried; the lock ends with session_lost', async () => {
  const r = await Redis.start({ args: ['--enable-debug-command', 'local'] });
  const A = await Broker.start(r.url, ['--session-grace', '0.5', '--redis-timeout-ms', '300']);
  const w = await watcher(A);
  const s = await watcher(A);
  await sessionLock(s, 'st1', { timeout: null });
  const sleeper = spawn('redis-cli', ['-p', String(r.port), 'DEBUG', 'SLEEP', '1.5'], { stdio: 'ignore' });
  const slept = new Promise(res => sleeper.on('exit', res));
  // the broker notices the stall, then the socket closes
  await poll(async () => (await A.get('/api/health/ready')).status === 503, 5000, 'broker sees the stall');
  await s.close();
  await slept;
  const lost = await w.waitFor(upd('force_released', 'st1'), 8000);
  eq(lost.cause, 'session_lost', 'session lost after the stall');
  w.close();
}, { timeoutMs: 20000 });

test('ws sessions: the broker holding the socket is SIGKILLed; another broker ends the session lock', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--session-grace', '0.5']);
  const B = await Broker.start(r.url, ['--session-grace', '0.5']);
  const w = await watcher(B);
  const s = await watcher(A);
  await sessionLock(s, 'crash1', { timeout: null });
  s.sock.on('error', () => {});
  const t0 = Date.now();
  A.proc.kill('SIGKILL');
  // heartbeat key 5 s + dead for 1.5 s + grace 0.5 s + a few reap periods
  const lost = await w.waitFor(upd('force_released', 'crash1'), 14000);
  eq(lost.cause, 'session_lost', 'cause');
  assert(Date.now() - t0 >= 5000, 'not before the heartbeat key expired');
  w.close();
}, { timeoutMs: 20000 });

test('ws sessions: the broker that started a grace period dies; another broker ends the lock on time', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--session-grace', '2']);
  const B = await Broker.start(r.url, ['--session-grace', '2']);
  const w = await watcher(B);
  const s = await watcher(A);
  const lock = await sessionLock(s, 'orphan1', { timeout: null });
  await s.close();
  // A detached (the grace deadline is in Redis, armed on A only), then dies
  await poll(() => /^\d+$/.test(r.cli('ZSCORE', 'dl:expiry', `$${lock.session_id}`) || ''), 5000, 'the grace deadline');
  A.proc.kill('SIGKILL');
  const t0 = Date.now();
  const lost = await w.waitFor(upd('force_released', 'orphan1'), 6000);
  eq(lost.cause, 'session_lost', 'cause');
  assert(Date.now() - t0 < 4000, `ended within the grace period + a bound (${Date.now() - t0} ms)`);
  w.close();
}, { timeoutMs: 15000 });

test('ws liveness: a client that never answers pings is dropped; a ws client stays', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--ws-ping-interval', '1', '--ws-ping-timeout', '1']);
  const w = await watcher(A);
  let wpings = 0;
  w.sock.on('ping', () => wpings++);
  const raw = await rawWs(A.port);
  const t0 = Date.now();
  await poll(() => raw.closed, 8000, 'the silent client is closed');
  const dt = Date.now() - t0;
  assert(raw.pings >= 1, `it was pinged (${raw.pings})`);
  assert(dt < 5000, `closed within interval + timeout + bound (${dt} ms)`);
  await poll(() => wpings >= 3, 8000, 'the ws client is pinged again and again');
  eq(w.sock.readyState, 1, 'the ws client (it answers pings) stays connected');
  w.close();
}, { timeoutMs: 20000 });

// ---- defect 8: send queue bounded in bytes --------------------------------------------

test('ws queue: a client that stops reading is dropped by bytes queued; broker RSS stays bounded', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, []);
  const devs = Array.from({ length: 3000 }, (_, i) => `q-${String(i).padStart(4, '0')}-padding-for-size`);
  for (let i = 0; i < devs.length; i += 50) {
    const res = await A.acquire({ device_names: devs.slice(i, i + 50), lock_type: 'MANUAL_OPERATOR',
      user_id: 'filler-user-with-a-long-name', timeout: 600 });
    eq(res.status, 200, `filler locks ${i}`);
  }
  const raw = await rawWs(A.port);
  raw.sock.pause(); // never reads again
  const rss0 = rssKiB(A.proc.pid);
  const dropped0 = await metric(A, 'devlock_websocket_dropped_total');
  const get = frame(JSON.stringify({ type: 'get_status' }));
  raw.sock.write(Buffer.concat(Array.from({ length: 150 }, () => get)));
  let peak = rss0;
  await poll(async () => {
    peak = Math.max(peak, rssKiB(A.proc.pid));
    return await metric(A, 'devlock_websocket_dropped_total') > dropped0;
  }, 10000, 'the client to be dropped').catch((e) => {
    throw new Error(`${e.message} (broker RSS ${Math.round(rss0 / 1024)} MiB, peak ${Math.round(peak / 1024)} MiB)`);
  });
  peak = Math.max(peak, rssKiB(A.proc.pid));
  console.log(`# broker RSS ${Math.round(rss0 / 1024)} MiB, peak ${Math.round(peak / 1024)} MiB`);
  assert(peak - rss0 < 96 * 1024, `RSS grew by ${Math.round((peak - rss0) / 1024)} MiB`);
  raw.sock.resume();
  await poll(() => raw.closed, 5000, 'the socket closed');
  eq((await A.get('/api/health/ready')).status, 200, 'broker fine');
}, { timeoutMs: 20000 });

test('ws queue: a snapshot or status larger than --ws-queue-max-bytes still reaches a client that reads', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--ws-queue-max-bytes', '65536']);
  const devs = Array.from({ length: 600 }, (_, i) => `big-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < devs.length; i += 50) {
    eq((await A.acquire({ device_names: devs.slice(i, i + 50), lock_type: 'MANUAL_OPERATOR', user_id: 'u',
      timeout: 600 })).status, 200, 'filler locks');
  }
  const w = await watcher(A);
  eq(w.frames[0].data.total_count, 600, 'initial_status with every lock');
  for (let i = 0; i < 3; i++) {
    const st = await call(w, { type: 'get_status' });
    eq(st.type, 'status_response', 'status answered');
    assert(JSON.stringify(st).length > 65536, 'larger than the bound');
  }
  eq(w.sock.readyState, 1, 'still connected');
  w.close();
}, { timeoutMs: 15000 });

// ---- defect 12: resume answers, ordering after initial_status ---------------------------

test('ws resume: resumes sent while another is in flight are each answered', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, []);
  const s = await watcher(A);
  const since = s.frames.find(f => f.type === 'initial_status').event_id;
  const ids = [nextId++, nextId++, nextId++];
  for (const id of ids) s.send({ type: 'resume', since, id });
  for (const id of ids) {
    const f = await s.waitFor(x => x.id === id, 3000);
    assert(f.type === 'resume_result' || f.type === 'error', `answer to resume ${id}: ${JSON.stringify(f)}`);
  }
  s.close();
}, { timeoutMs: 15000 });

test('ws ordering: no lock_update at or below initial_status\'s event_id, even when the reader lags', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--ws-queue-max', '100000']);
  const N = 20000;
  const xread = () => (r.cli('CLIENT', 'LIST') || '').split('\n').filter(l => / cmd=xread/.test(l))
    .map(l => /id=(\d+)/.exec(l)[1]);
  const old = await poll(() => xread()[0], 5000, 'the stream reader');
  // the reader reconnects and reads N events back, in batches, while a new
  // client's initial_status already covers them
  r.cli('CLIENT', 'KILL', 'ID', old);
  r.cli('EVAL', `for i = 1, ${N} do redis.call('XADD', 'dl:events', '*', 'dev', 'lagdev', 'j', ` +
    `'{"action":"expiring","device_name":"lagdev","expires_in_ms":1,"pad":"${'x'.repeat(20)}"}') end`, '0');
  const ws = [];
  for (let i = 0; i < 4; i++) ws.push(await watcher(A));
  const g = await A.acquire({ device_name: 'lag-last', lock_type: 'MANUAL_OPERATOR', user_id: 'u', timeout: 60 });
  eq(g.status, 200, 'a later event');
  for (const w of ws) {
    await w.waitFor(upd('acquired', 'lag-last'), 10000);
    const i0 = w.frames.findIndex(f => f.type === 'initial_status');
    const floor = w.frames[i0].event_id;
    const stale = w.frames.slice(i0 + 1).filter(f => f.type === 'lock_update' && idCmp(f.event_id, floor) <= 0);
    eq(stale.length, 0, `lock_updates at or below initial_status ${floor} (first ${stale[0] && stale[0].event_id})`);
    let prev = floor;
    for (const f of w.frames.slice(i0 + 1).filter(x => x.type === 'lock_update')) {
      assert(idCmp(f.event_id, prev) > 0, `ids increase (${prev} then ${f.event_id})`);
      prev = f.event_id;
    }
    w.close();
  }
}, { timeoutMs: 20000 });
