'use strict';
// env.js - private redis-server and devlockd processes for the integration
// suite (free loopback ports, temp dirs, PIDs recorded; only those are
// killed), HTTP through the built-in fetch, WebSocket through npm "ws",
// and polling with deadlines. Nothing here sleeps to synchronise.
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(ROOT, process.env.DEVLOCK_BUILD || 'build');
const DEVLOCKD = path.join(BUILD, 'devlockd');
const WebSocket = require(path.join(ROOT, 'tests', 'node_modules', 'ws'));

const children = new Set();   // every live process started here
const logFiles = new Set();   // every log written by one of them
const sockets = new Set();    // every WebSocket opened here

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function delay(ms) { return new Promise(r => setTimeout(r, ms)); }

// Calls fn until it returns a truthy value (returned) or timeoutMs passes.
async function poll(fn, timeoutMs = 5000, what = 'condition', stepMs = 20) {
  const end = Date.now() + timeoutMs;
  let last;
  for (let i = 0; ; i++) {
    try { const v = await fn(); if (v) return v; last = v; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await delay(stepMs);
  }
}

function launch(cmd, args, logFile, env) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, ...(env || {}) } });
  fs.closeSync(out);
  children.add(child);
  logFiles.add(logFile);
  child.exited = new Promise(resolve => child.on('exit', (code, signal) => {
    children.delete(child);
    resolve({ code, signal });
  }));
  return child;
}

// Sends signal and waits (bounded) for the exit; SIGKILL if it lingers.
async function stopChild(child, signal, graceMs = 10000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return child ? child.exited : null;
  const t0 = Date.now();
  child.kill(signal);
  const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch (e) { /* gone */ } }, graceMs);
  const res = await child.exited;
  clearTimeout(timer);
  return { ...res, ms: Date.now() - t0 };
}

class Redis {
  // opts: {port, dir, args: [...]}; same port + dir on restart()
  static async start(opts = {}) {
    const r = new Redis();
    r.dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-it-redis-'));
    r.port = opts.port || await freePort();
    r.args = ['--port', String(r.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--dir', r.dir, ...(opts.args || [])];
    r.log = path.join(r.dir, 'redis.log');
    await r.restart();
    return r;
  }
  async restart() {
    this.proc = launch('redis-server', this.args, this.log);
    await poll(() => this.cli('PING') === 'PONG', 10000, `redis-server on port ${this.port}`);
  }
  get url() { return `redis://127.0.0.1:${this.port}`; }
  get pid() { return this.proc.pid; }
  cli(...args) {
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...args], { encoding: 'utf8', timeout: 5000 });
    return r.status === 0 ? r.stdout.trim() : null;
  }
  flushall() { if (this.cli('FLUSHALL') !== 'OK') throw new Error('redis FLUSHALL failed'); }
  signal(sig) { this.proc.kill(sig); }
  kill() { return stopChild(this.proc, 'SIGKILL'); }
}

class Broker {
  // args: extra devlockd flags
  static async start(redis, args = [], env) {
    const b = new Broker();
    b.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-it-broker-'));
    b.portFile = path.join(b.dir, 'port');
    b.log = path.join(b.dir, 'devlockd.log');
    b.proc = launch(DEVLOCKD, ['--host', '127.0.0.1', '--port', '0', '--port-file', b.portFile,
      '--redis-url', redis.url, ...args], b.log, env);
    const early = b.proc.exited.then(r => { throw new Error(`devlockd exited early: ${JSON.stringify(r)}`); });
    early.catch(() => {});
    b.port = await Promise.race([early, poll(() => {
      const s = fs.existsSync(b.portFile) && fs.readFileSync(b.portFile, 'utf8').trim();
      return /^\d+$/.test(s || '') && Number(s) > 0 ? Number(s) : 0;
    }, 10000, 'devlockd --port-file')]);
    b.base = `http://127.0.0.1:${b.port}`;
    await poll(async () => (await b.get('/api/health/ready')).status === 200, 10000, 'devlockd ready');
    return b;
  }
  get pid() { return this.proc.pid; }
  // Stops with signal; returns {code, signal, ms} and fails on a sanitizer report.
  async stop(signal = 'SIGTERM') {
    const res = await stopChild(this.proc, signal);
    const text = readLog(this.log);
    const i = text.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
    if (i >= 0) throw new Error(`devlockd sanitizer report:\n${text.slice(i, i + 3000)}`);
    return res;
  }

  // fetch: {status, body (JSON or undefined), text, ms}
  async request(method, p, body, headers = {}) {
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = (typeof body === 'string' || Buffer.isBuffer(body)) ? body : JSON.stringify(body);
      if (!init.headers['content-type']) init.headers['content-type'] = 'application/json';
    }
    const t0 = Date.now();
    const res = await fetch(this.base + p, init);
    const text = await res.text();
    let json; try { json = JSON.parse(text); } catch (e) { json = undefined; }
    return { status: res.status, body: json, text, ms: Date.now() - t0 };
  }
  get(p) { return this.request('GET', p); }
  post(p, body, headers) { return this.request('POST', p, body, headers); }
  acquire(fields) { return this.post('/api/lock/request', fields); }
  release(fields) { return this.post('/api/lock/release', fields); }
  renew(fields) { return this.post('/api/lock/renew', fields); }
  status() { return this.get('/api/locks/status'); }
  ws(opts) { return Watcher.open(`ws://127.0.0.1:${this.port}/ws`, opts); }
}

// A WebSocket client that keeps every frame (with its arrival time in
// frame.recvAt) so tests can wait for one, or assert none came.
class Watcher {
  static open(url, opts = {}) {
    const w = new Watcher();
    w.frames = [];
    w.wakers = new Set();
    w.closeCode = null;
    w.sock = new WebSocket(url, opts);
    sockets.add(w.sock);
    w.sock.on('message', (data, isBinary) => {
      const recvAt = Date.now();
      let f;
      try { f = JSON.parse(String(data)); } catch (e) { f = { unparsed: String(data) }; }
      if (f && typeof f === 'object') Object.defineProperty(f, 'recvAt', { value: recvAt, enumerable: false });
      if (isBinary) f = { binary: true };
      w.frames.push(f);
      for (const wake of [...w.wakers]) wake();
    });
    w.closed = new Promise(resolve => w.sock.on('close', (code) => {
      w.closeCode = code;
      sockets.delete(w.sock);
      for (const wake of [...w.wakers]) wake();
      resolve(code);
    }));
    w.sock.on('error', (e) => { w.error = e; });
    return new Promise((resolve, reject) => {
      w.sock.once('open', () => resolve(w));
      w.sock.once('error', reject);
    });
  }
  send(obj, opts) { this.sock.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj), opts); }
  get open() { return this.sock.readyState === WebSocket.OPEN; }
  // The first frame at index >= from matching pred; rejects after timeoutMs.
  waitFor(pred, timeoutMs = 5000, from = 0) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.frames.length; i++) {
          if (pred(this.frames[i])) { done(); resolve(this.frames[i]); return; }
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching frame within ${timeoutMs} ms; last frames: ${JSON.stringify(this.frames.slice(-4)).slice(0, 800)}`));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); this.wakers.delete(check); };
      this.wakers.add(check);
      check();
    });
  }
  // Waits for n frames matching pred (from index `from`); returns them.
  async waitForCount(pred, n, timeoutMs = 5000, from = 0) {
    const match = () => this.frames.slice(from).filter(pred);
    await poll(() => match().length >= n, timeoutMs, `${n} matching frames (have ${match().length})`, 10);
    return match();
  }
  // Asserts that no frame matching pred arrives within ms (a bounded negative check).
  async expectNone(pred, ms, from = 0) {
    let got = null;
    try { got = await this.waitFor(pred, ms, from); } catch (e) { return; }
    throw new Error(`unexpected frame: ${JSON.stringify(got)}`);
  }
  // Sends msg and resolves with the next frame matching pred.
  async ask(msg, pred, timeoutMs = 5000) {
    const from = this.frames.length;
    this.send(msg);
    try { return await this.waitFor(pred, timeoutMs, from); } catch (e) {
      throw new Error(`answer to ${String(typeof msg === 'string' ? msg : JSON.stringify(msg)).slice(0, 200)}: ${e.message}`);
    }
  }
  updates(device) { return this.frames.filter(f => f.type === 'lock_update' && (!device || f.device_name === device)); }
  close() { if (this.sock.readyState <= WebSocket.OPEN) this.sock.close(); return this.closed; }
}

function readLog(file) { try { return fs.readFileSync(file, 'utf8'); } catch (e) { return ''; } }

// Log offsets at the start of a test, so a failure prints only its own lines.
let marks = new Map();
function markLogs() {
  marks = new Map();
  for (const f of logFiles) { try { marks.set(f, fs.statSync(f).size); } catch (e) { marks.set(f, 0); } }
}
function printLogs(maxLines = 60) {
  for (const f of logFiles) {
    const text = readLog(f).slice(marks.get(f) || 0);
    if (!text.trim()) continue;
    const lines = text.trimEnd().split('\n');
    console.log(`--- ${f} (last ${Math.min(maxLines, lines.length)} of ${lines.length} lines of this test)`);
    console.log(lines.slice(-maxLines).map(l => '# ' + l).join('\n'));
  }
}

// Ends every socket, then every process started here (brokers with SIGTERM
// so a sanitizer can report, the rest with SIGKILL). Returns problems found.
async function stopAll() {
  for (const s of sockets) { try { s.terminate(); } catch (e) { /* closed */ } }
  const problems = [];
  const all = [...children];
  for (const c of all) if (c.spawnfile === DEVLOCKD) c.kill('SIGCONT');
  await Promise.all(all.map(c => stopChild(c, c.spawnfile === DEVLOCKD ? 'SIGTERM' : 'SIGKILL', 5000)));
  for (const f of logFiles) {
    const text = readLog(f);
    const i = text.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
    if (i >= 0) problems.push(`sanitizer report in ${f}:\n${text.slice(i, i + 3000)}`);
  }
  return problems;
}

// Kill whatever is left if the runner dies unexpectedly.
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch (e) { /* gone */ } } });

// ---- small assertion helpers ----------------------------------------------
class AssertionError extends Error {}
function check(cond, msg) { if (!cond) throw new AssertionError(msg); }
function eq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new AssertionError(`${what}: expected ${w}, got ${g}`);
}
// Redis stream ids "ms-seq" compared as numbers: <0, 0, >0.
function cmpId(a, b) {
  const [am, as] = String(a).split('-').map(BigInt), [bm, bs] = String(b).split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : (as < bs ? -1 : 1);
}
const ID_RE = /^\d+-\d+$/;
const UUID4_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

module.exports = {
  ROOT, BUILD, DEVLOCKD, WebSocket, Redis, Broker, Watcher, freePort, poll, delay, stopChild, stopAll,
  markLogs, printLogs, check, eq, cmpId, ID_RE, UUID4_RE, TIME_RE,
};
