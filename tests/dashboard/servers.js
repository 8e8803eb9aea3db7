'use strict';
/* Private redis-server and devlockd processes for the dashboard test.
 * Every process started here is recorded and only those are ever killed. */
const { spawn, execFile } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const http = require('http');

const children = new Set();

function delay(ms) { return new Promise((r) => setTimeout(r, ms)); }

/* Polls fn() until it returns a truthy value, at most timeoutMs. */
async function until(what, timeoutMs, fn, stepMs = 50) {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 100000; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(stepMs);
  }
  throw new Error(`gave up waiting for ${what}`);
}

/* A port the kernel says is free now (bind 0, read it, close). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startProcess(name, cmd, args, logFile, env) {
  const out = fs.openSync(logFile, 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, ...(env || {}) } });
  fs.closeSync(out);
  p.label = name;
  p.logFile = logFile;
  p.exited = new Promise((resolve) => p.on('exit', (code, sig) => { children.delete(p); resolve({ code, sig }); }));
  p.on('error', () => {});
  children.add(p);
  return p;
}

function tcpAnswers(port, payload, expect) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (v) => { s.destroy(); resolve(v); };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => { buf += d; if (buf.includes(expect)) done(true); });
  });
}

async function startRedis(dir) {
  const port = await freePort();
  const p = startProcess('redis-server', 'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir],
    path.join(dir, 'redis.log'));
  await until('redis-server to answer PING', 5000, async () => {
    if (p.exitCode !== null) throw new Error('redis-server exited');
    return tcpAnswers(port, 'PING\r\n', '+PONG');
  });
  return { proc: p, port, url: `redis://127.0.0.1:${port}` };
}

function getJson(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/* Starts devlockd (port 0 unless one is given) and waits until it is ready. */
async function startBroker(dir, label, redisUrl, opts = {}) {
  const bin = path.resolve(__dirname, '..', '..', process.env.DEVLOCK_BUILD || 'build', 'devlockd');
  const portFile = path.join(dir, `${label}.port`);
  try { fs.unlinkSync(portFile); } catch (e) { /* none yet */ }
  const args = ['--host', '127.0.0.1', '--port', String(opts.port || 0), '--port-file', portFile,
    '--redis-url', redisUrl, ...(opts.args || [])];
  const p = startProcess(label, bin, args, path.join(dir, `${label}.log`));
  const port = await until(`${label} to write its port file`, 10000, async () => {
    if (p.exitCode !== null) throw new Error(`${label} exited with ${p.exitCode}`);
    try {
      const s = fs.readFileSync(portFile, 'utf8').trim();
      return /^\d+$/.test(s) ? Number(s) : null;
    } catch (e) { return null; }
  });
  await until(`${label} to be ready`, 10000, async () => {
    if (p.exitCode !== null) throw new Error(`${label} exited with ${p.exitCode}`);
    const r = await getJson(port, '/api/health/ready');
    return r && r.status === 200;
  });
  return { proc: p, port, base: `http://127.0.0.1:${port}` };
}

/* SIGTERM, then SIGKILL after graceMs. Resolves to true if it left on SIGTERM. */
async function stop(p, graceMs = 5000) {
  if (!p || p.exitCode !== null || p.signalCode !== null) return true;
  p.kill('SIGTERM');
  const t = await Promise.race([p.exited.then(() => true), delay(graceMs).then(() => false)]);
  if (!t) {
    p.kill('SIGKILL');
    await Promise.race([p.exited, delay(2000)]);
  }
  return t;
}

function killAll() {
  for (const p of children) {
    try { p.kill('SIGKILL'); } catch (e) { /* gone */ }
  }
}

/* curl, as a real third-party client: resolves to {status, json, text}. */
function curl(method, url, body, headers = []) {
  return new Promise((resolve, reject) => {
    const args = ['-sS', '-m', '5', '-X', method, '-w', '\n%{http_code}'];
    for (const h of headers) args.push('-H', h);
    if (body !== undefined)
      args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
    args.push(url);
    execFile('curl', args, { timeout: 8000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl ${method} ${url}: ${err.message} ${stderr}`));
      const i = stdout.lastIndexOf('\n');
      const text = stdout.slice(0, i);
      let json = null;
      try { json = JSON.parse(text); } catch (e) { json = null; }
      resolve({ status: Number(stdout.slice(i + 1)), json, text });
    });
  });
}

function tail(file, lines = 60) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `(no ${file})`;
  }
}

module.exports = { delay, until, freePort, startRedis, startBroker, stop, killAll, curl, tail, getJson };
