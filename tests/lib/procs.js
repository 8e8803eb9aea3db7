'use strict';
// procs.js - the one process helper of the Node suites: private
// redis-server and devlockd processes on free loopback ports (tests/chaos,
// tests/probes, tests/ops' TLS brokers, tests/dashboard; tests/lib/servers.js
// builds its Redis/Broker on the same registry). Every process started here
// is recorded and only those are killed, when the suite ends.
// No sleeps to synchronise: readiness is polled with a deadline.

const { spawn, execFile } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const http = require('http');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = process.env.DEVLOCK_BUILD || 'build';
const DEVLOCKD = path.resolve(ROOT, BUILD, 'devlockd');

const started = new Set(); // of Proc

function delay(ms) {
    // a timer, used only for pacing (fault durations, drips), never to wait
    // for a process to be ready
    return new Promise((r) => setTimeout(r, ms));
}

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const p = s.address().port;
            s.close(() => resolve(p));
        });
    });
}

function mkTemp(tag) {
    return fs.mkdtempSync(path.join(os.tmpdir(), `devlock-${tag}-`));
}

// Polls fn() (async, returns truthy when done) every `every` ms until
// `ms` have passed. Returns the truthy value or throws.
async function until(what, ms, fn, every = 50) {
    const end = Date.now() + ms;
    let last;
    for (let i = 0; i < 100000; i++) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) { last = e; }
        if (Date.now() > end) break;
        await delay(every);
    }
    throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
}

// One RESP command over a fresh socket; resolves the raw reply text.
function redisCmd(port, args, ms = 2000) {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let buf = '';
        const t = setTimeout(() => { s.destroy(); reject(new Error('redis command timed out')); }, ms);
        s.on('error', (e) => { clearTimeout(t); reject(e); });
        s.on('connect', () => {
            let out = `*${args.length}\r\n`;
            for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
            s.write(out);
        });
        s.on('data', (d) => {
            buf += d.toString('latin1');
            if (/\r\n$/.test(buf) && !/^\$\d+\r\n$/.test(buf)) {
                clearTimeout(t);
                s.end();
                if (buf[0] === '-') reject(new Error(buf.trim()));
                else resolve(buf);
            }
        });
    });
}

class Proc {
    // opts.env: extra environment variables
    constructor(name, cmd, args, logFile, opts = {}) {
        this.name = name;
        this.cmd = cmd;
        this.args = args;
        this.logFile = logFile;
        this.env = opts.env || null;
        this.child = null;
        this.exited = true;
        this.stopped = false;
    }

    start() {
        const fd = fs.openSync(this.logFile, 'a');
        this.child = spawn(this.cmd, this.args, { stdio: ['ignore', fd, fd],
            env: this.env ? { ...process.env, ...this.env } : process.env });
        fs.closeSync(fd);
        const exited = new Promise((r) => this.child.once('exit', (code, sig) => r({ code, sig })));
        this.exitedP = exited;
        this.exited = false;
        this.stopped = false;
        this.exitInfo = null;
        started.add(this);
        const child = this.child;
        child.on('exit', (code, sig) => {
            if (this.child === child) {
                this.exited = true;
                this.exitInfo = { code, sig };
            }
        });
        child.on('error', (e) => { // e.g. the binary is being rebuilt
            if (this.child === child) {
                this.exited = true;
                this.exitInfo = { error: e.message };
                fs.appendFileSync(this.logFile, `spawn ${this.cmd}: ${e.message}\n`);
            }
        });
        return this;
    }

    get pid() { return this.child ? this.child.pid : 0; }
    alive() { return this.child && !this.exited; }

    signal(sig) {
        if (!this.alive()) return false;
        try { process.kill(this.child.pid, sig); } catch (e) { return false; }
        if (sig === 'SIGSTOP') this.stopped = true;
        if (sig === 'SIGCONT') this.stopped = false;
        return true;
    }

    // SIGKILL and wait until the process is reaped.
    async kill() {
        if (!this.alive()) return;
        const child = this.child;
        const gone = new Promise((r) => child.once('exit', r));
        this.signal('SIGKILL');
        await Promise.race([gone, delay(5000)]);
    }

    async term(ms = 5000) {
        if (!this.alive()) return;
        const child = this.child;
        const gone = new Promise((r) => child.once('exit', r));
        if (this.stopped) this.signal('SIGCONT');
        this.signal('SIGTERM');
        const ok = await Promise.race([gone.then(() => true), delay(ms).then(() => false)]);
        if (!ok) await this.kill();
    }

    log(tail = 60) {
        try {
            const lines = fs.readFileSync(this.logFile, 'utf8').split('\n');
            return lines.slice(-tail).join('\n');
        } catch (e) { return `(no log: ${e.message})`; }
    }
}

class Redis extends Proc {
    // opts: {dir, port, fsync: 'always'|'everysec', args: [...more flags]}
    constructor(opts) {
        const args = ['--port', String(opts.port), '--bind', '127.0.0.1', '--save', '',
            '--appendonly', 'yes', '--appendfsync', opts.fsync || 'always', '--dir', opts.dir,
            '--enable-debug-command', 'local', '--loglevel', 'notice', ...(opts.args || [])];
        super(`redis:${opts.port}`, 'redis-server', args, path.join(opts.dir, 'redis.log'));
        this.port = opts.port;
        this.dir = opts.dir;
    }

    async ready(ms = 10000) {
        await until(`redis on ${this.port}`, ms, async () => {
            if (!this.alive()) throw new Error('redis exited: ' + this.log(20));
            // a restarting Redis answers -LOADING while it replays the AOF
            const r = await redisCmd(this.port, ['PING'], 500);
            return r.startsWith('+PONG');
        });
        return this;
    }

    command(...args) { return redisCmd(this.port, args); }
    get url() { return `redis://127.0.0.1:${this.port}`; }
}

// Copies build/devlockd into dir, so that a rebuild during a long run does
// not change (or briefly remove) the binary that restarts use.
function snapshotBinary(dir) {
    const to = path.join(dir, 'devlockd');
    fs.copyFileSync(DEVLOCKD, to);
    fs.chmodSync(to, 0o755);
    return to;
}

class Broker extends Proc {
    // opts: {dir, name, redisUrl (none: give --redis-url in extra), port (0 = pick),
    //        extra: [...flags], bin, env}
    constructor(opts) {
        const portFile = path.join(opts.dir, `${opts.name}.port`);
        const args = ['--host', '127.0.0.1', '--port', String(opts.port || 0),
            '--port-file', portFile, ...(opts.redisUrl ? ['--redis-url', opts.redisUrl] : []), ...(opts.extra || [])];
        super(opts.name, opts.bin || DEVLOCKD, args, path.join(opts.dir, `${opts.name}.log`), { env: opts.env });
        this.portFile = portFile;
        this.opts = opts;
        this.port = opts.port || 0;
    }

    start() {
        try { fs.unlinkSync(this.portFile); } catch (e) { /* first start */ }
        if (this.port) this.args[3] = String(this.port); // restarts keep the port
        return super.start();
    }

    // health: 'live' (default), 'ready', or null (only the port file: a TLS broker)
    async ready(ms = 10000, health = 'live') {
        await until(`${this.name} port file`, ms, async () => {
            if (!this.alive()) throw new Error(`${this.name} exited: ` + this.log(20));
            const t = fs.readFileSync(this.portFile, 'utf8').trim();
            if (!/^\d+$/.test(t)) return false;
            this.port = Number(t);
            return true;
        });
        if (!health) return this;
        await until(`${this.name} /api/health/${health}`, ms, async () => {
            if (!this.alive()) throw new Error(`${this.name} exited: ` + this.log(20));
            const r = await httpJson(this.port, 'GET', `/api/health/${health}`, null, 1000);
            return r.status === 200;
        });
        return this;
    }
}

// A one-shot HTTP request on its own connection (no keep-alive).
function httpJson(port, method, p, body, ms = 2000, agent = false) {
    return new Promise((resolve, reject) => {
        const data = body === null || body === undefined ? null
            : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const req = http.request({ host: '127.0.0.1', port, method, path: p, agent,
            headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} },
        (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                clearTimeout(t);
                const text = Buffer.concat(chunks).toString('utf8');
                let json = null;
                try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
                resolve({ status: res.statusCode, json, text });
            });
            res.on('error', (e) => { clearTimeout(t); reject(e); });
        });
        const t = setTimeout(() => { req.destroy(new Error('timeout')); }, ms);
        req.on('error', (e) => { clearTimeout(t); reject(e); });
        if (data) req.write(data);
        req.end();
    });
}

async function stopAll() {
    const all = [...started];
    await Promise.all(all.map((p) => p.term(3000)));
}

function killAllSync() {
    for (const p of started) {
        if (p.alive()) {
            try { process.kill(p.pid, 'SIGCONT'); } catch (e) { /* gone */ }
            try { process.kill(p.pid, 'SIGKILL'); } catch (e) { /* gone */ }
        }
    }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => { killAllSync(); process.exit(130); });
}

// Deterministic PRNG (mulberry32) for seeded fault schedules.
function prng(seed) {
    let a = seed >>> 0;
    const next = () => {
        a = (a + 0x6D2B79F5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
    next.pick = (arr) => arr[Math.floor(next() * arr.length)];
    return next;
}


// ---- devlockd started with only a port file (TLS: no plain-HTTP readiness
// poll); the API tests/ops used: startDaemon(args, env) -> {proc, dir, port,
// log(), stop()}, stopDaemons() kills every one still running.
const daemons = new Set();
async function startDaemon(args, env = {}) {
    const dir = mkTemp('ops-d');
    const b = new Broker({ dir, name: 'devlockd', extra: args, env });
    b.start();
    daemons.add(b);
    await b.ready(10000, null);
    return { proc: b.child, dir, port: b.port,
        log: () => { try { return fs.readFileSync(b.logFile, 'utf8'); } catch (e) { return ''; } },
        stop: () => b.term(10000) };
}
async function stopDaemons() {
    await Promise.all([...daemons].map((b) => b.kill()));
    daemons.clear();
}

// ---- the API tests/dashboard used: startRedis(dir) -> {proc, port, url},
// startBroker(dir, label, redisUrl, {port, args}) -> {proc, port, base},
// stop(proc, graceMs) -> true if it left on SIGTERM, killAll().
async function startRedis(dir, opts = {}) {
    const r = new Redis({ dir, port: opts.port || await freePort(), fsync: opts.fsync || 'everysec', args: opts.args });
    r.start();
    await r.ready();
    return { proc: r, port: r.port, url: r.url };
}
async function startBroker(dir, label, redisUrl, opts = {}) {
    const b = new Broker({ dir, name: label, redisUrl, port: opts.port, extra: opts.args, env: opts.env });
    b.start();
    await b.ready(10000, 'ready');
    return { proc: b, port: b.port, base: `http://127.0.0.1:${b.port}` };
}
async function stop(p, graceMs = 5000) {
    if (!p || !p.alive()) return true;
    const child = p.child;
    const gone = new Promise((r) => child.once('exit', r));
    if (p.stopped) p.signal('SIGCONT');
    p.signal('SIGTERM');
    const ok = await Promise.race([gone.then(() => true), delay(graceMs).then(() => false)]);
    if (!ok) await p.kill();
    return ok;
}

// GET that never rejects: {status, body (text)} or null.
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

// curl as a third-party client: resolves {status, json, text}.
function curlRequest(method, url, body, headers = []) {
    return new Promise((resolve, reject) => {
        const args = ['-sS', '-m', '5', '-X', method, '-w', '\n%{http_code}'];
        for (const h of headers) args.push('-H', h);
        if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
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
    try { return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n'); } catch (e) { return `(no ${file})`; }
}

// Registers a child process spawned elsewhere (tests/lib/servers.js) so
// that it, too, is killed when the suite exits.
function adopt(child) {
    const p = new Proc(child.spawnfile, child.spawnfile, child.spawnargs, null);
    p.child = child;
    p.exited = false;
    started.add(p);
    child.on('exit', () => { p.exited = true; started.delete(p); });
    return p;
}

module.exports = { ROOT, DEVLOCKD, snapshotBinary, delay, freePort, mkTemp, until, redisCmd, Proc, Redis, Broker,
    httpJson, stopAll, killAllSync, prng, startDaemon, stopDaemons, startRedis, startBroker, stop, killAll: killAllSync,
    getJson, curlRequest, tail, adopt };
