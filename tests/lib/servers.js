'use strict';
// servers.js - private redis-server and devlockd processes for tests, on
// free loopback ports in a temp dir; only processes started here are killed.
// The process registry, free ports and the exit-time kill are those of
// tests/lib/procs.js (the one process helper); this file keeps the API the
// integration-style suites use (Redis.start, Broker.start, poll, Watcher).
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const procs = require('./procs.js');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(ROOT, process.env.DEVLOCK_BUILD || 'build');
const started = new Set();

const freePort = procs.freePort;

// Polls fn until it returns a truthy value or the deadline passes.
async function poll(fn, timeoutMs = 5000, what = 'condition', stepMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let v;
    try { v = await fn(); } catch (e) { v = undefined; }
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, stepMs));
  }
}

function track(child, logFile) {
  procs.adopt(child);
  started.add(child);
  child.on('exit', () => started.delete(child));
  child.logFile = logFile;
  return child;
}

class Redis {
  constructor(dir, port) { this.dir = dir; this.port = port; }
  static async start(opts = {}) {
    const dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-redis-'));
    const r = new Redis(dir, opts.port || await freePort());
    r.args = ['--port', String(r.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--appendfsync', opts.fsync || 'everysec', '--dir', dir, ...(opts.args || [])];
    await r.spawn();
    return r;
  }
  async spawn() {
    const log = path.join(this.dir, 'redis.log');
    const out = fs.openSync(log, 'a');
    this.proc = track(spawn('redis-server', this.args, { stdio: ['ignore', out, out] }), log);
    await poll(() => this.cli('PING') === 'PONG', 10000, 'redis-server to answer');
  }
  cli(...args) {
    try {
      return execFileSync('redis-cli', ['-p', String(this.port), ...args], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch (e) { return null; }
  }
  get url() { return `redis://127.0.0.1:${this.port}`; }
  async kill(signal = 'SIGKILL') { await stop(this.proc, signal); }
  async restart() { await this.spawn(); }
}

class Broker {
  static async start(redisUrl, args = [], opts = {}) {
    const b = new Broker();
    b.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-broker-'));
    b.portFile = path.join(b.dir, 'port');
    b.args = ['--host', '127.0.0.1', '--port', String(opts.port || 0), '--port-file', b.portFile,
      '--redis-url', redisUrl, ...args];
    await b.spawn(opts.env);
    return b;
  }
  async spawn(env) {
    try { fs.unlinkSync(this.portFile); } catch (e) { /* first start */ }
    const log = path.join(this.dir, 'devlockd.log');
    const out = fs.openSync(log, 'a');
    // VALGRIND=1 runs the broker under memcheck (make test-valgrind)
    const [cmd, argv] = process.env.VALGRIND === '1'
      ? ['valgrind', ['--quiet', '--error-exitcode=99', '--leak-check=full', '--errors-for-leak-kinds=definite',
          path.join(BUILD, 'devlockd'), ...this.args]]
      : [path.join(BUILD, 'devlockd'), this.args];
    this.proc = track(spawn(cmd, argv, { stdio: ['ignore', out, out], env: { ...process.env, ...(env || {}) } }), log);
    this.port = await poll(() => {
      const s = fs.existsSync(this.portFile) && fs.readFileSync(this.portFile, 'utf8').trim();
      return s ? Number(s) : 0;
    }, process.env.VALGRIND === '1' ? 60000 : 10000, 'devlockd to listen');
    this.base = `http://127.0.0.1:${this.port}`;
    // one keep-alive pool per broker process: a restarted broker never gets
    // requests on its predecessor's dead connections
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
    await poll(async () => (await this.get('/api/health/ready')).status === 200, 10000, 'devlockd ready');
  }
  async stop(signal = 'SIGTERM') {
    if (this.agent) this.agent.destroy();
    const res = await stop(this.proc, signal);
    const report = sanitizerReport(this.log());
    if (report) throw new Error(`devlockd sanitizer report:\n${report}`);
    return res;
  }
  async restart(env) { await this.stop(); this.args[this.args.indexOf('--port') + 1] = String(this.port); await this.spawn(env); }
  log() { try { return fs.readFileSync(this.proc.logFile, 'utf8'); } catch (e) { return ''; } }

  // HTTP (node's http client): {status, body (parsed JSON or undefined), text, headers}
  request(method, p, body, headers = {}, { signal } = {}) {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? null : Buffer.from(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
      const req = http.request({ host: '127.0.0.1', port: this.port, path: p, method, agent: this.agent, signal,
        headers: { ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}), ...headers } }, (res) => {
        const chunks = [];
        res.on('data', c => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json; try { json = JSON.parse(text); } catch (e) { json = undefined; }
          resolve({ status: res.statusCode, body: json, text, headers: res.headers });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(data || undefined);
    });
  }
  post(p, body, headers = {}, opts) { return this.request('POST', p, body === undefined ? '' : body, headers, opts); }
  get(p, headers = {}, opts) { return this.request('GET', p, undefined, headers, opts); }
  acquire(fields, headers) { return this.post('/api/lock/request', fields, headers); }
  release(fields, headers) { return this.post('/api/lock/release', fields, headers); }
  ws(query = '', headers = {}) { return Watcher.open(`ws://127.0.0.1:${this.port}/ws${query}`, headers); }
}

// A WebSocket client (npm "ws") that keeps every frame for waitFor().
class Watcher {
  static open(url, headers) {
    const WebSocket = require(path.join(ROOT, 'tests', 'node_modules', 'ws'));
    const w = new Watcher();
    w.frames = [];
    w.waiters = [];
    w.sock = new WebSocket(url, { headers });
    w.sock.on('message', (data) => {
      let f; try { f = JSON.parse(String(data)); } catch (e) { f = { raw: String(data) }; }
      w.frames.push(f);
      w.waiters = w.waiters.filter(x => !x.check());
    });
    w.closed = new Promise(resolve => w.sock.on('close', (code) => { w.closeCode = code; resolve(code); }));
    return new Promise((resolve, reject) => {
      w.sock.on('open', () => resolve(w));
      w.sock.on('error', reject);
    });
  }
  send(obj) { this.sock.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }
  // Resolves with the first frame (after index `from`) matching pred.
  waitFor(pred, timeoutMs = 5000, from = 0) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.frames.length; i++) if (pred(this.frames[i])) { resolve(this.frames[i]); return true; }
        return false;
      };
      if (check()) return;
      const entry = { check };
      this.waiters.push(entry);
      setTimeout(() => {
        if (this.waiters.includes(entry)) {
          this.waiters = this.waiters.filter(x => x !== entry);
          reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5)).slice(0, 600)}`));
        }
      }, timeoutMs);
    });
  }
  updates() { return this.frames.filter(f => f.type === 'lock_update'); }
  close() { this.sock.close(); return this.closed; }
}

function stop(child, signal) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise(resolve => {
    const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch (e) { /* gone */ } }, 10000);
    child.once('exit', (code, sig) => { clearTimeout(t); resolve({ code, signal: sig }); });
    child.kill(signal);
  });
}

// ASan/UBSan/LSan findings in a log (make test-asan builds devlockd with them).
function sanitizerReport(log) {
  const i = log.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
  return i < 0 ? null : log.slice(i, i + 3000);
}

// Stops every process started here: brokers with SIGTERM (so sanitizers
// report at exit), the rest with SIGKILL. A sanitizer report fails the run.
async function stopAll() {
  const brokers = [...started].filter(c => /devlockd/.test(c.spawnfile) || (c.spawnargs || []).some(a => /devlockd$/.test(a)));
  await Promise.all(brokers.map(c => stop(c, 'SIGTERM')));
  await Promise.all([...started].map(c => stop(c, 'SIGKILL')));
  for (const c of brokers) {
    let log = '';
    try { log = fs.readFileSync(c.logFile, 'utf8'); } catch (e) { /* no log */ }
    const report = sanitizerReport(log);
    if (report) {
      console.log(`FAIL - devlockd sanitizer report:\n${report}`);
      process.exitCode = 1;
    }
  }
}

// A fresh redis-server and one broker for fn(redis, broker); both are
// stopped afterwards, whatever fn does.
async function withServers(fn, { redisArgs = [], brokerArgs = [], env } = {}) {
  const redis = await Redis.start({ args: redisArgs });
  let b;
  try {
    b = await Broker.start(redis.url, brokerArgs, env ? { env } : {});
    await fn(redis, b);
  } finally {
    if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
}

// Compares stream ids "ms-seq" numerically.
function idCmp(a, b) {
  const [am, as] = a.split('-').map(BigInt), [bm, bs] = b.split('-').map(BigInt);
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : (am < bm ? -1 : 1);
}

module.exports = { Redis, Broker, Watcher, poll, freePort, stopAll, withServers, idCmp, BUILD, ROOT };
