'use strict';
// tests/chaos/run.js - mutual-exclusion checker under injected faults.
//
// Many clients (default 120) loop acquire -> fenced read-modify-write ->
// release on a few hot devices, through several devlockd brokers that share
// one Redis (one broker reaches Redis through tests/chaos/proxy.js). A device
// simulator in this process accepts a write only with a fence at least as
// high as every fence it has seen for that device (equal only from the lock
// that brought that fence). Meanwhile a seeded schedule injects faults:
// SIGKILL (then restart on the same port) and SIGSTOP/SIGCONT of brokers,
// SIGKILL of Redis and restart from its append-only file, Redis CLIENT
// PAUSE WRITE, and latency / stalls / cuts on the proxied Redis link.
//
// A client believes it holds a lock from the moment the acquire reply
// arrives until it starts releasing, and never beyond (request send time +
// lease - MARGIN) by its own clock. No answer -> no belief.
//
// Checks (each one line of the summary; the run fails if any fails):
//   overlaps           two believed intervals on one device intersect
//   fence regressions  the simulator refused a write a client believed
//                      valid, or the event stream shows a device's fences
//                      not strictly increasing, or one fence on two locks
//   lost ack locks     an acknowledged grant with no 'acquired' event, no
//                      end event, an early expiry, or a release refused
//                      while the lease was still valid (by the event log)
//   lost updates       a device's counter differs from its accepted writes
//   ops floor          enough work was done for the run to mean something
//
// Then the library-client checker (tests/chaos/holders.js: lc_holder
// processes that use liblockclient's keepalive and check lc_lock_lost /
// lc_lock_deadline_us before every use; no believed holder may still act
// when the next fence is granted) and its self-test (the same run with
// holders that cheat by 4 s after a loss must be reported).
//
// Then the generative edge checker (tests/chaos/edges.js: aborted and
// retried requests, Redis stalls past --redis-timeout-ms, tiny and long
// waits, groups, sessions with hand-over and socket death, broker SIGTERM /
// SIGKILL under queued waiters, force release, preemption, bookings;
// invariants I1-I5, X and B1-B4 from the clients' history, the event
// stream and Redis) and its self-tests (each
// invariant broken on purpose must be reported, as exactly that one).
//
//   node tests/chaos/run.js [--long] [--seed N] [--duration S] [--clients N]
//                           [--devices N] [--brokers N] [--quiet] [--faults]
//                           [--no-faults (calibration only)] [--ops-floor N]
//                           [--break steal|flush (self-tests: must fail)]
//                           [--edges-only | --no-edges | --self-test]
//                           [--edge-duration S] [--edge-ops N] [--edge-bookers N]
//                           [--holders-only | --no-holders] [--holder-duration S]
//                           [--holders N] [--holder-devices N]
//                           [--holders-fence-expiry (calibration only)]
// Short form (default): 50 s of mutual exclusion under faults, 45 s of the
// edge checker, 25 s of the library-client checker and its self-test (at
// most 20 s: it ends at its first bite), the other self-tests: about 3
// minutes in all. --long: 10 minutes of mutual exclusion, then the edge
// checker until 200 000 operations, then 5 minutes of the library-client
// checker. CHAOS_EDGE_STRICT=0 /
// CHAOS_HOLDERS_STRICT=0 report edge / holder violations without failing
// (the self-tests always fail loudly). Last line: "N passed, M failed";
// exit status 1 on failure.

const fs = require('fs');
const http = require('http');
const path = require('path');
const P = require('../lib/procs.js');
const { startProxy } = require('./proxy.js');
const E = require('./edges.js');
const H = require('./holders.js');

// ------------------------------------------------------------------ options

function argOf(name, def) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const LONG = process.argv.includes('--long');
const QUIET = process.argv.includes('--quiet');
const SEED = Number(argOf('--seed', process.env.SEED || Math.floor(Math.random() * 1e6)));
const DURATION_S = Number(argOf('--duration', LONG ? 600 : 50));
const CLIENTS = Number(argOf('--clients', 120));
const DEVICES = Number(argOf('--devices', 4));
const BROKERS = Math.max(2, Number(argOf('--brokers', 3)));
const LEASE_S = 2;            // lease every client asks for
const MARGIN_MS = 250;        // a client stops believing this long before its lease ends
const REQ_TIMEOUT_MS = 1500;  // a client gives up on an answer after this (plus any wait)
const WAIT_S = 1;             // 'wait' of the clients that queue instead of polling
const REDIS_TIMEOUT_MS = 500; // brokers' fast-503
// A floor for the ops check: far below what a healthy run does (see
// docs/reliability.md), high enough that a run where clients mostly failed
// cannot pass.
const OPS_FLOOR = Number(argOf('--ops-floor', Math.round(DURATION_S * 50)));
const GRANT_FLOOR = Math.round(DURATION_S * 5);

// Self-tests of this checker (each must make the run FAIL):
//   --break steal   2 % of denied clients believe they hold the lock anyway,
//                   with the holder's fence (a broken lock service)
//   --break flush   FLUSHALL on Redis half way (a Redis that lost its data)
const BREAK = argOf('--break', '');
const rng = P.prng(SEED);
const now = () => Date.now();
function log(...a) { if (!QUIET) console.log(...a); }

// ------------------------------------------------------------------ results

const stats = {
    acquireSent: 0, granted: 0, denied: 0, acquireFailed: 0, lateGrants: 0,
    releaseOk: 0, release404: 0, release403: 0, releaseFailed: 0, releaseAbandoned: 0,
    renewOk: 0, renewLost: 0, renewFailed: 0,
    writesAccepted: 0, writesRefused: 0, writesSkipped: 0,
    status: {}, errors: {},
};
const grants = [];            // every acknowledged grant
const intervals = {};         // dev -> [{s, e, key, cid, fence}]
const problems = { overlap: [], fence: [], lost: [], update: [], other: [] };

// ------------------------------------------------------------------ device simulator

class Device {
    constructor(name) {
        this.name = name;
        this.maxFence = 0;
        this.owner = null;      // lock_key that brought maxFence
        this.counter = 0;
        this.accepted = 0;
    }

    read() { return this.counter; }

    // A fenced write: refused when a higher fence was seen, or when the
    // same fence arrives from another lock (a fence handed out twice).
    write(fence, key, value, who) {
        if (fence > this.maxFence) {
            this.maxFence = fence;
            this.owner = key;
        } else if (fence < this.maxFence || key !== this.owner) {
            stats.writesRefused++;
            problems.fence.push(`${this.name}: write with fence ${fence} by ${who} (lock ${key.slice(0, 8)}) ` +
                `refused, device has seen fence ${this.maxFence} (lock ${String(this.owner).slice(0, 8)})`);
            return false;
        }
        this.counter = value;
        this.accepted++;
        stats.writesAccepted++;
        return true;
    }
}

// ------------------------------------------------------------------ HTTP

const agents = new Map(); // broker index -> keep-alive agent
function agentFor(i) {
    if (!agents.has(i)) agents.set(i, new http.Agent({ keepAlive: true, maxSockets: 64 }));
    return agents.get(i);
}

// Resolves {status, json} or {error}; never rejects. The request is
// abandoned (socket destroyed) after ms.
function call(broker, bi, method, p, body, ms) {
    return new Promise((resolve) => {
        const data = body ? Buffer.from(JSON.stringify(body)) : null;
        let done = false;
        const finish = (r) => { if (!done) { done = true; clearTimeout(t); resolve(r); } };
        const req = http.request({ host: '127.0.0.1', port: broker.port, method, path: p, agent: agentFor(bi),
            headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} },
        (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                let json = null;
                try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { /* not JSON */ }
                finish({ status: res.statusCode, json });
            });
            res.on('error', (e) => finish({ error: e.code || e.message }));
            res.on('aborted', () => finish({ error: 'aborted' }));
        });
        const t = setTimeout(() => { finish({ error: 'timeout' }); req.destroy(); }, ms);
        req.on('error', (e) => finish({ error: e.code || e.message }));
        if (data) req.write(data);
        req.end();
    });
}

const oddAnswers = []; // the first few 5xx other than 503
function tally(r, what) {
    if (r.error) stats.errors[r.error] = (stats.errors[r.error] || 0) + 1;
    else stats.status[r.status] = (stats.status[r.status] || 0) + 1;
    if (!r.error && r.status >= 500 && r.status !== 503 && oddAnswers.length < 10) {
        oddAnswers.push(`${((now() - t0) / 1000).toFixed(1)}s ${what}: ${r.status} ${JSON.stringify(r.json)}`);
    }
}

// ------------------------------------------------------------------ the clients

let running = true;
let brokers = [];
const devs = [];

async function client(cid, crng, waits) {
    const user = `c${cid}`;
    for (let loop = 0; running && loop < 10000000; loop++) {
        const di = crng.int(0, devs.length - 1);
        const dev = devs[di];
        const bi = crng.int(0, brokers.length - 1);
        const b = brokers[bi];
        const body = { device_name: dev.name, lock_type: 'MANUAL_OPERATOR', user_id: user, timeout: LEASE_S };
        if (waits) body.wait = WAIT_S;
        const tSend = now();
        stats.acquireSent++;
        const r = await call(b, bi, 'POST', '/api/lock/request', body, REQ_TIMEOUT_MS + (waits ? WAIT_S * 1000 : 0));
        const tAck = now();
        tally(r, `acquire${waits ? ' (wait ' + WAIT_S + ' s)' : ''} via ${b.name} after ${tAck - tSend} ms`);
        if (r.error || r.status !== 200 || !r.json) {
            stats.acquireFailed++;
            await P.delay(crng.int(20, 200));
            continue;
        }
        if (!r.json.success && BREAK === 'steal' && r.json.holder && crng() < 0.02) {
            // the broken client: works as if granted, for 5-15 ms
            const key = `stolen-${cid}-${loop}`;
            const fence = r.json.holder.fence;
            const start = now();
            for (let k = 0; k < 2; k++) {
                const v = dev.read();
                await P.delay(crng.int(2, 8));
                dev.write(fence, key, v + 1, user);
            }
            (intervals[dev.name] = intervals[dev.name] || []).push({ s: start, e: now(), key, cid, fence });
        }
        if (!r.json.success) {
            stats.denied++;
            await P.delay(waits ? crng.int(0, 20) : crng.int(10, 60));
            continue;
        }
        stats.granted++;
        const g = { dev: dev.name, key: r.json.lock_key, fence: r.json.fence, cid, bi, tSend, tAck,
            acquiredAt: Date.parse(r.json.lock.acquired_at), expiresAt: Date.parse(r.json.expires_at),
            release: [], renewed: 0 };
        grants.push(g);
        let believeEnd = tSend + LEASE_S * 1000 - MARGIN_MS;
        if (tAck >= believeEnd) {
            stats.lateGrants++;
        } else {
            // the fenced work: 1-3 read-modify-writes, each over an await
            const start = tAck;
            const n = crng.int(1, 3);
            const doRenew = crng() < 0.1;
            for (let k = 0; k < n; k++) {
                if (now() >= believeEnd) { stats.writesSkipped++; break; }
                const v = dev.read();
                await P.delay(crng.int(0, 6));
                if (now() >= believeEnd) { stats.writesSkipped++; break; }
                dev.write(g.fence, g.key, v + 1, user);
                if (doRenew && k === 0) {
                    const tR = now();
                    const rr = await call(b, bi, 'POST', '/api/lock/renew',
                        { device_name: dev.name, lock_key: g.key, user_id: user, timeout: LEASE_S }, REQ_TIMEOUT_MS);
                    tally(rr, 'renew via ' + b.name);
                    if (!rr.error && rr.status === 200 && rr.json && rr.json.success) {
                        stats.renewOk++;
                        g.renewed++;
                        g.expiresAt = Date.parse(rr.json.expires_at);
                        believeEnd = Math.max(believeEnd, tR + LEASE_S * 1000 - MARGIN_MS);
                    } else if (!rr.error && (rr.status === 404 || rr.status === 403)) {
                        stats.renewLost++;
                        g.renewLost = { status: rr.status, at: now() };
                        believeEnd = Math.min(believeEnd, now());
                        break;
                    } else {
                        stats.renewFailed++; // unknown: keep the old lease
                    }
                }
            }
            const end = Math.min(now(), believeEnd);
            if (end > start) {
                (intervals[dev.name] = intervals[dev.name] || []).push({ s: start, e: end, key: g.key, cid, fence: g.fence });
            }
        }
        // release: retried on 503 / errors, abandoned after 3 tries
        let ok = false;
        for (let tryNo = 0; tryNo < 3 && !ok; tryNo++) {
            const bj = tryNo === 0 ? bi : crng.int(0, brokers.length - 1);
            const rr = await call(brokers[bj], bj, 'POST', '/api/lock/release',
                { device_name: dev.name, lock_key: g.key, user_id: user }, REQ_TIMEOUT_MS);
            tally(rr, 'release via ' + brokers[bj].name);
            const at = now();
            if (rr.error || rr.status >= 500) {
                g.release.push({ at, r: rr.error || rr.status });
                stats.releaseFailed++;
                await P.delay(crng.int(50, 300));
                continue;
            }
            g.release.push({ at, r: rr.status });
            if (rr.status === 200) stats.releaseOk++;
            else if (rr.status === 404) stats.release404++;
            else stats.release403++;
            ok = true;
        }
        if (!ok) stats.releaseAbandoned++;
        await P.delay(crng.int(0, 10));
    }
}

// ------------------------------------------------------------------ event stream

const events = [];
let lastId = null;
let pollFailures = 0;

async function pollEvents() {
    // pages through /api/events from any broker that answers
    for (let page = 0; page < 200; page++) {
        let r = null;
        for (let k = 0; k < brokers.length; k++) {
            const bi = (page + k) % brokers.length;
            const q = `/api/events?limit=1000${lastId ? '&since=' + lastId : ''}`;
            r = await call(brokers[bi], bi, 'GET', q, null, 2000);
            if (!r.error && r.status === 200 && r.json && Array.isArray(r.json.events)) break;
            r = null;
        }
        if (!r) { pollFailures++; return false; }
        for (const e of r.json.events) events.push(e);
        if (r.json.last_event_id) lastId = r.json.last_event_id;
        if (r.json.events.length < 1000) return true;
    }
    return true;
}

async function poller() {
    for (let i = 0; running && i < 1000000; i++) {
        await pollEvents();
        await P.delay(300);
    }
}

// ------------------------------------------------------------------ faults

const faultLog = [];
const faultCount = {};
let redis = null;
let proxy = null;

function note(kind, what) {
    faultCount[kind] = (faultCount[kind] || 0) + 1;
    const line = `${((now() - t0) / 1000).toFixed(1).padStart(6)}s ${kind}: ${what}`;
    faultLog.push(line);
    log('  fault ' + line);
}

async function restartRedis() {
    redis.start();
    await redis.ready(120000);
}

async function restartBroker(b) {
    b.start();
    await b.ready(20000);
}

const FAULTS = [
    ['broker-kill', 3], ['broker-stop', 3], ['redis-kill', 2], ['redis-pause', 2],
    ['proxy-latency', 2], ['proxy-stall', 2], ['proxy-cut', 2],
];

function pickFault() {
    const total = FAULTS.reduce((a, f) => a + f[1], 0);
    let x = rng() * total;
    for (const [k, w] of FAULTS) { if ((x -= w) < 0) return k; }
    return FAULTS[0][0];
}

async function injectOne(kind) {
    if (kind === 'broker-kill') {
        const b = rng.pick(brokers);
        const down = rng.int(100, 2000);
        note(kind, `SIGKILL ${b.name} (pid ${b.pid}), restart on port ${b.port} after ${down} ms`);
        await b.kill();
        await P.delay(down);
        await restartBroker(b);
    } else if (kind === 'broker-stop') {
        const b = rng.pick(brokers);
        const ms = rng.int(200, 3000);
        note(kind, `SIGSTOP ${b.name} for ${ms} ms`);
        b.signal('SIGSTOP');
        await P.delay(ms);
        b.signal('SIGCONT');
    } else if (kind === 'redis-kill') {
        const down = rng.int(100, 1500);
        note(kind, `SIGKILL redis-server (pid ${redis.pid}), restart from the AOF after ${down} ms`);
        await redis.kill();
        await P.delay(down);
        const t = now();
        await restartRedis();
        log(`         redis back after ${now() - t} ms of loading`);
    } else if (kind === 'redis-pause') {
        const ms = rng.int(200, 2000);
        note(kind, `CLIENT PAUSE ${ms} WRITE`);
        await redis.command('CLIENT', 'PAUSE', ms, 'WRITE');
        await P.delay(ms);
    } else if (kind === 'proxy-latency') {
        const lat = rng.int(20, 900);
        const ms = rng.int(1000, 5000);
        note(kind, `${lat} ms each way on the proxied Redis link for ${ms} ms`);
        proxy.setLatency(lat);
        await P.delay(ms);
        proxy.setLatency(0);
    } else if (kind === 'proxy-stall') {
        const ms = rng.int(300, 3000);
        note(kind, `proxied Redis link stalled for ${ms} ms`);
        proxy.pause();
        await P.delay(ms);
        proxy.resume();
    } else if (kind === 'proxy-cut') {
        const ms = rng.int(0, 1500);
        note(kind, `cut ${proxy.connections()} proxied connections, refuse new ones for ${ms} ms`);
        proxy.setRefuse(true);
        proxy.cut();
        await P.delay(ms);
        proxy.setRefuse(false);
    }
}

async function heal() {
    for (const b of brokers) {
        if (b.stopped) b.signal('SIGCONT');
        if (!b.alive()) await restartBroker(b);
    }
    if (!redis.alive()) await restartRedis();
    try { await redis.command('CLIENT', 'UNPAUSE'); } catch (e) { /* fine */ }
    proxy.heal();
}

const NO_FAULTS = process.argv.includes('--no-faults'); // for calibration only

async function faults(until) {
    if (BREAK === 'flush') {
        setTimeout(() => {
            note('BREAK', 'FLUSHALL');
            redis.command('FLUSHALL').catch((e) => log('FLUSHALL: ' + e.message));
        }, (until - now()) / 2);
    }
    for (let i = 0; i < 100000 && !NO_FAULTS; i++) {
        const gap = rng.int(500, 3000);
        if (now() + gap >= until) break;
        await P.delay(gap);
        try {
            await injectOne(pickFault());
        } catch (e) {
            problems.other.push('fault injection: ' + e.message);
            log('  fault injection failed: ' + e.message);
            await heal().catch(() => {});
        }
    }
}

// ------------------------------------------------------------------ analysis

function analyse() {
    // 1. overlaps of believed intervals, per device
    for (const [dev, list] of Object.entries(intervals)) {
        list.sort((a, b) => a.s - b.s);
        let maxEnd = null;
        for (const iv of list) {
            if (maxEnd && iv.s < maxEnd.e && iv.key !== maxEnd.key) {
                problems.overlap.push(`${dev}: ${maxEnd.cid} (fence ${maxEnd.fence}) believed until +${maxEnd.e - iv.s} ms ` +
                    `after ${iv.cid} (fence ${iv.fence}) started believing`);
            }
            if (!maxEnd || iv.e > maxEnd.e) maxEnd = iv;
        }
    }

    // 2. per device: fences in 'acquired' events strictly increase
    const byKey = new Map();
    const lastFence = {};
    const fenceOwner = new Map();
    for (const e of events) {
        const l = e.lock || {};
        if (l.lock_key) {
            if (!byKey.has(l.lock_key)) byKey.set(l.lock_key, []);
            byKey.get(l.lock_key).push(e);
        }
        if (e.action === 'acquired') {
            const d = e.device_name;
            if (lastFence[d] !== undefined && !(l.fence > lastFence[d])) {
                problems.fence.push(`${d}: event ${e.event_id} grants fence ${l.fence} after fence ${lastFence[d]}`);
            }
            lastFence[d] = l.fence;
            const fk = `${d}#${l.fence}`;
            if (fenceOwner.has(fk) && fenceOwner.get(fk) !== l.lock_key) problems.fence.push(`${d}: fence ${l.fence} granted twice`);
            fenceOwner.set(fk, l.lock_key);
        }
    }

    // 3. every acknowledged grant: acquired event, one end event, and an
    //    end that matches what its client saw
    let ended = { released: 0, expired: 0, other: 0 };
    for (const g of grants) {
        const evs = byKey.get(g.key) || [];
        const acq = evs.find((e) => e.action === 'acquired');
        const ends = evs.filter((e) => e.action === 'released' || e.action === 'force_released');
        const id = `${g.dev} fence ${g.fence} (c${g.cid}, lock ${g.key.slice(0, 8)})`;
        if (!acq) { problems.lost.push(`${id}: acknowledged, but no 'acquired' event`); continue; }
        if (acq.lock.fence !== g.fence) problems.fence.push(`${id}: event says fence ${acq.lock.fence}`);
        if (ends.length === 0) { problems.lost.push(`${id}: no end event (lock still held or vanished)`); continue; }
        if (ends.length > 1) problems.other.push(`${id}: ${ends.length} end events`);
        const end = ends[0];
        const endAt = Date.parse(end.timestamp);
        const gotOk = g.release.some((x) => x.r === 200);
        const ambiguous = g.release.some((x) => typeof x.r !== 'number' || x.r >= 500);
        if (end.action === 'released') {
            ended.released++;
            if (!gotOk && !ambiguous) problems.lost.push(`${id}: released by someone else (our release: ${JSON.stringify(g.release.map((x) => x.r))})`);
        } else if (end.cause === 'expired') {
            ended.expired++;
            // expiry must not come before the last acknowledged lease end
            // (1 ms: the reply's times are rounded to ms)
            if (endAt < g.expiresAt - 1) problems.lost.push(`${id}: expired at ${end.timestamp}, lease ran to ${new Date(g.expiresAt).toISOString()}`);
            if (gotOk) problems.lost.push(`${id}: our release got 200 but the lock ended by expiry`);
        } else {
            ended.other++;
            problems.lost.push(`${id}: ended ${end.action}/${end.cause} (no one preempts in this test)`);
        }
        // a 404/403 to our first release while the lease was still valid by
        // the server's times means the lock vanished
        const first = g.release[0];
        if (first && (first.r === 404 || first.r === 403) && first.at < g.expiresAt - 50 && end.action !== 'released') {
            problems.lost.push(`${id}: release answered ${first.r} ${g.expiresAt - first.at} ms before the lease end`);
        }
        if (g.renewLost && g.renewLost.at < g.expiresAt - 50) {
            problems.lost.push(`${id}: renew answered ${g.renewLost.status} ${g.expiresAt - g.renewLost.at} ms before the lease end`);
        }
    }

    // 4. lost updates: each device's counter equals its accepted writes
    for (const d of devs) {
        if (d.counter !== d.accepted) problems.update.push(`${d.name}: counter ${d.counter}, accepted writes ${d.accepted}`);
    }
    return ended;
}

// ------------------------------------------------------------------ main

let t0 = now();

async function main() {
    const dir = P.mkTemp('chaos');
    const rport = await P.freePort();
    // appendfsync always: a change is on disk before Redis answers, so no
    // acknowledged change can be lost even to an OS crash. The SIGKILL here
    // is only a process crash, which everysec survives as well (the data is
    // in the kernel); always is what docs/reliability.md recommends, so it
    // is what this test runs.
    redis = new P.Redis({ dir, port: rport, fsync: 'always' });
    redis.start();
    await redis.ready();
    proxy = await startProxy({ targetPort: rport });
    const common = ['--redis-timeout-ms', String(REDIS_TIMEOUT_MS), '--stream-maxlen', '200000',
        '--max-connections', '2000', '--log-level', 'INFO'];
    const bin = P.snapshotBinary(dir);
    brokers = [];
    for (let i = 0; i < BROKERS; i++) {
        const viaProxy = i === BROKERS - 1;
        const b = new P.Broker({ dir, name: `broker${i}${viaProxy ? '-proxied' : ''}`,
            redisUrl: `redis://127.0.0.1:${viaProxy ? proxy.port : rport}`, extra: common, bin });
        b.start();
        brokers.push(b);
    }
    await Promise.all(brokers.map((b) => b.ready()));
    for (let i = 0; i < DEVICES; i++) devs.push(new Device(`chaos-dev-${i}`));

    console.log(`# chaos: seed ${SEED}, ${DURATION_S} s, ${CLIENTS} clients, ${DEVICES} devices, ` +
        `${BROKERS} brokers (${brokers.map((b) => b.port).join(', ')}; the last via the proxy ${proxy.port} -> redis ${rport}), ` +
        `lease ${LEASE_S} s, margin ${MARGIN_MS} ms, dir ${dir}`);
    console.log(`# reproduce: node tests/chaos/run.js${LONG ? ' --long' : ''} --seed ${SEED}` +
        `${argOf('--duration') ? ' --duration ' + DURATION_S : ''}`);

    t0 = now();
    const until = t0 + DURATION_S * 1000;
    const cl = [];
    for (let c = 0; c < CLIENTS; c++) cl.push(client(c, P.prng(SEED * 7919 + c + 1), c % 2 === 1));
    const pol = poller();
    const progress = setInterval(() => {
        log(`# ${((now() - t0) / 1000).toFixed(0)} s: ${stats.granted} grants, ${stats.denied} denied, ` +
            `${stats.acquireFailed} failed, ${stats.writesAccepted} writes, ${events.length} events`);
    }, LONG ? 30000 : 15000);
    await faults(until);
    await P.delay(Math.max(0, until - now()));
    running = false;
    clearInterval(progress);
    const faultEnd = now();
    await heal();
    // clients finish their current cycle (bounded by their timeouts)
    await Promise.race([Promise.all(cl), P.delay(20000)]);
    // every lease ends within LEASE_S (+ expiry precision): wait until no
    // chaos device is held, then read the rest of the event stream
    let held = -1;
    await P.until('all chaos locks to end', LEASE_S * 1000 + 15000, async () => {
        let r = null;
        for (let bi = 0; bi < brokers.length && (!r || r.error || r.status !== 200); bi++) {
            r = await call(brokers[bi], bi, 'GET', '/api/locks/status', null, 2000);
        }
        if (r.error || r.status !== 200) return false;
        held = r.json.locks.filter((l) => l.device_name.startsWith('chaos-dev-')).length;
        return held === 0;
    }, 200).catch((e) => problems.other.push(e.message + ` (${held} still held)`));
    await P.until('event stream drained', 20000, () => pollEvents(), 200).catch((e) => problems.other.push(e.message));
    running = false;
    await pol;
    const elapsed = (faultEnd - t0) / 1000;

    const ended = analyse();
    const answered = (stats.granted + stats.denied) + (stats.releaseOk + stats.release404 + stats.release403) +
        (stats.renewOk + stats.renewLost);
    const lockOps = answered;
    let cores = '';
    try {
        const ticks = brokers.map((b) => b.alive() ? fs.readFileSync(`/proc/${b.pid}/stat`, 'utf8').split(' ') : null);
        cores = ticks.filter(Boolean).map((s) => ((Number(s[13]) + Number(s[14])) / 100).toFixed(0) + ' s').join(', ');
    } catch (e) { /* not Linux */ }

    console.log('# ---- report ----');
    console.log(`# seed ${SEED}; ${elapsed.toFixed(0)} s under faults; ${CLIENTS} clients on ${DEVICES} devices via ${BROKERS} brokers`);
    console.log(`# lock ops answered: ${lockOps} (${(lockOps / elapsed).toFixed(0)}/s): ${stats.granted} grants ` +
        `(${(stats.granted / elapsed).toFixed(0)}/s), ${stats.denied} denials, ${stats.releaseOk + stats.release404 + stats.release403} releases ` +
        `(${stats.releaseOk} ok, ${stats.release404} not found, ${stats.release403} forbidden), ${stats.renewOk + stats.renewLost} renews`);
    console.log(`# requests without a usable answer: ${stats.acquireFailed} acquires, ${stats.releaseFailed} release tries ` +
        `(${stats.releaseAbandoned} releases abandoned), ${stats.renewFailed} renews; late grants not believed: ${stats.lateGrants}`);
    console.log(`# statuses ${JSON.stringify(stats.status)}; errors ${JSON.stringify(stats.errors)}`);
    if (oddAnswers.length) console.log('# 5xx answers other than 503 (first 10):\n#   ' + oddAnswers.join('\n#   '));
    console.log(`# writes: ${stats.writesAccepted} accepted, ${stats.writesRefused} refused, ${stats.writesSkipped} skipped (belief ran out)`);
    console.log(`# device counters: ${devs.map((d) => `${d.name}=${d.counter}/${d.accepted}`).join(', ')}`);
    console.log(`# events read: ${events.length} (poll failures ${pollFailures}); grants ended by release ${ended.released}, by expiry ${ended.expired}`);
    console.log(`# faults (${faultLog.length}): ${Object.entries(faultCount).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    if (cores) console.log(`# broker CPU time: ${cores}`);
    const show = (list) => list.slice(0, 10).map((x) => '#     ' + x).join('\n');
    const checks = [
        ['0 overlapping holders', problems.overlap],
        ['0 fence regressions', problems.fence],
        ['0 lost acknowledged locks', problems.lost],
        ['0 lost counter updates', problems.update],
        ['run completed cleanly', problems.other],
    ];
    let passed = 0;
    let failed = 0;
    for (const [name, list] of checks) {
        if (list.length === 0) { passed++; console.log(`ok   ${name}`); } else {
            failed++;
            console.log(`FAIL ${name}: ${list.length}\n${show(list)}`);
        }
    }
    const opsOk = lockOps >= OPS_FLOOR && stats.granted >= GRANT_FLOOR && stats.writesAccepted > 0;
    console.log(`${opsOk ? 'ok  ' : 'FAIL'} ops above the floor: ${lockOps} lock ops >= ${OPS_FLOOR}, ` +
        `${stats.granted} grants >= ${GRANT_FLOOR}`);
    if (opsOk) passed++; else failed++;
    const totalFaults = faultLog.length;
    const faultsOk = totalFaults >= Math.floor(DURATION_S / 6) || NO_FAULTS;
    console.log(`${faultsOk ? 'ok  ' : 'FAIL'} faults injected: ${totalFaults} >= ${Math.floor(DURATION_S / 6)}`);
    if (faultsOk) passed++; else failed++;

    if (failed || process.argv.includes('--faults')) console.log('# fault log:\n#   ' + faultLog.join('\n#   '));
    if (failed) {
        for (const b of brokers) console.log(`# ---- ${b.name} log (tail) ----\n` + b.log(40));
        console.log('# ---- redis log (tail) ----\n' + redis.log(30));
    }
    for (const a of agents.values()) a.destroy();
    await proxy.close();
    await P.stopAll();
    if (!failed) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`# files kept in ${dir}`);
    return { passed, failed };
}

// ------------------------------------------------------------------ the edge checker

const EDGE_STRICT = process.env.CHAOS_EDGE_STRICT !== '0';
const EDGE_OPS = Number(argOf('--edge-ops', LONG ? 200000 : 0));
const EDGE_S = Number(argOf('--edge-duration', LONG ? 1800 : 45));

function verdict(ok, name, detail, tally) {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ': ' + detail : ''}`);
    if (ok) tally.passed++; else tally.failed++;
}

async function edges(tally) {
    const cfg = { seed: SEED, durationS: EDGE_S, maxOps: EDGE_OPS || 1e9, clients: Number(argOf('--edge-clients', LONG ? 48 : 24)),
        sessionClients: 4, bookers: Number(argOf('--edge-bookers', 2)), devices: Number(argOf('--edge-devices', 5)), brokers: 3, redisTimeoutMs: 300, sessionGrace: 1, maxStallMs: 1500,
        faultGapMs: LONG ? [2000, 6000] : [1500, 4000], quiet: QUIET };
    console.log(`# reproduce: node tests/chaos/run.js --edges-only --seed ${SEED}` +
        `${argOf('--edge-duration') ? ' --edge-duration ' + EDGE_S : ''}${LONG ? ' --long' : ''}`);
    const res = await E.runEdges(cfg);
    const { v, counts, faultCount, h } = res;
    const answered = h.ops.filter((o) => o.tAns !== null && o.tAns !== undefined).length;
    console.log('# ---- edge checker report ----');
    console.log(`# seed ${SEED}; ${res.elapsedS.toFixed(0)} s; ${counts.ops} operations (${answered} answered, ` +
        `${(counts.ops / res.elapsedS).toFixed(0)}/s); ${v.info.grants} grants, ${v.info.denials} denials ` +
        `(${v.info.denialsChecked} checked for I4), ${v.info.replays} retried grants`);
    console.log(`# drawn: ${Object.entries(counts).filter(([k]) => k !== 'ops').map(([k, n]) => `${k} ${n}`).join(', ')}`);
    console.log('# | what | count |');
    console.log('# |---|---|');
    console.log(`# | operations | ${counts.ops} |`);
    for (const [k, n] of Object.entries(faultCount)) console.log(`# | fault: ${k} | ${n} |`);
    console.log(`# bookings: ${counts.bookings} acknowledged of ${counts.bookTries} tried (${counts.bookConflicts} refused 409, ${counts.bumps} bumped), ` +
        `${v.info.bookingsStarted} started, ${v.info.bookingsWaited} waited; ${counts.bookCancels} cancels, ${counts.bookMoves} moves, ` +
        `${counts.bookReleases} early releases; ${h.streamEvents || 0} stream events read; checked: B1 ${v.info.checked.b1} grants within 1 s of a window ` +
        `(${v.info.checked.refusedByBooking} requests refused naming a booking), ` +
        `B2 ${v.info.checked.b2} starts (${v.info.checked.b2OnTime} on time, ${v.info.checked.b2Excused} behind an equal-or-higher holder), B3 ${v.info.checked.b3} ends, B4 ${v.info.checked.b4scans} scans with 2+ live bookings and ${v.info.checked.b4acks} answers`);
    for (const k of ['aborts', 'retries', 'groups', 'tinyWaits', 'longWaits', 'sessions', 'handovers', 'sockDeaths', 'forces', 'preemptTries', 'bookings', 'bookCancels', 'bookMoves']) {
        console.log(`# | drawn: ${k} | ${counts[k]} |`);
    }
    for (const k of E.INVARIANTS) console.log(`# | violations ${k} (${E.INV_NAMES[k]}) | ${v[k].length} |`);
    for (const k of E.INVARIANTS) {
        const list = v[k];
        const ok = list.length === 0;
        const name = `edges ${k}: ${E.INV_NAMES[k]}`;
        if (ok) verdict(true, name, '', tally);
        else if (EDGE_STRICT) verdict(false, name, `${list.length}\n${list.slice(0, 8).map((x) => '#     ' + x).join('\n')}`, tally);
        else console.log(`info ${name} (CHAOS_EDGE_STRICT=0): ${list.length}\n${list.slice(0, 8).map((x) => '#     ' + x).join('\n')}`);
    }
    const floor = EDGE_OPS || Math.round(EDGE_S * 30);
    verdict(counts.ops >= floor, `edges ops above the floor: ${counts.ops} >= ${floor}`, '', tally);
    const kinds = ['stall', 'broker-term', 'broker-kill'].filter((k) => !faultCount[k]);
    verdict(kinds.length === 0, 'edges: every fault kind injected', kinds.length ? 'missing ' + kinds.join(', ') : '', tally);
    // the self-tests: on a small clean history, on this run's history, and a
    // lock planted straight into this run's Redis
    const syn = E.syntheticHistory();
    const base = E.analyse(syn, res.B);
    const dirty = E.INVARIANTS.filter((k) => base[k].length);
    verdict(dirty.length === 0, 'self-test: a clean synthetic history has no violations', dirty.map((k) => base[k][0]).join(' | '), tally);
    for (const t of [...E.selfTest(syn, res.B, 'synthetic'), ...E.selfTest(h, res.B, 'this run'), await E.plantedOrphanTest(res.redis.port, res.B),
        await E.plantedBookingTest(res.redis.port, res.B)]) {
        verdict(t.ok, t.name, t.ok ? '' : t.detail, tally);
    }
    const failedNow = E.INVARIANTS.some((k) => v[k].length);
    if (failedNow) console.log(`# edge files kept in ${res.dir}`);
    await P.stopAll();
}

// ------------------------------------------------------------------ the library-client checker

const HOLDERS_STRICT = process.env.CHAOS_HOLDERS_STRICT !== '0';
const HOLDER_S = Number(argOf('--holder-duration', LONG ? 300 : 25));
const HOLDER_CHEAT_S = LONG ? 40 : 20; // at most: it ends at its first bite
const HOLDER_CHEAT_MS = 4000;

function holderReport(res, label) {
    const { violations: v, info, faultCount } = res;
    const faults = Object.values(faultCount).reduce((a, n) => a + n, 0);
    console.log(`# ---- library-client checker report${label} ----`);
    console.log(`# seed ${SEED}; ${res.elapsedS.toFixed(0)} s; library: lc_lock_deadline_us ${info.api && info.api.deadline ? 'present' : 'ABSENT (1.0 keepalive)'}, ` +
        `lc_keepalive_start_cb ${info.api && info.api.callbacks ? 'present' : 'absent'}`);
    console.log(`# rounds ${info.rounds}, grants ${info.grants}, losses ${info.losses} (${info.unused} beliefs with no use), ` +
        `releases ${info.releases}; acquire failures ${JSON.stringify(info.acquireFail)}; release answers ${JSON.stringify(info.releaseSt)}`);
    console.log(`# faults (${faults}): ${Object.entries(faultCount).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    console.log(`# violations: ${v.overlap.length} overlaps (worst +${info.maxLateMs === null ? 0 : info.maxLateMs.toFixed(0)} ms), ` +
        `${v.fence.length} fence, ${v.open.length} open beliefs`);
    return faults;
}

async function holders(tally) {
    const cfg = { seed: SEED, durationS: HOLDER_S, holders: Number(argOf('--holders', 6)),
        devices: Number(argOf('--holder-devices', 4)), cheatMs: 0, quiet: QUIET,
        fenceExpiry: process.argv.includes('--holders-fence-expiry'), faultGapMs: LONG ? [500, 3000] : [300, 2000] };
    console.log(`# reproduce: node tests/chaos/run.js --holders-only --seed ${SEED}` +
        `${argOf('--holder-duration') ? ' --holder-duration ' + HOLDER_S : ''}${LONG ? ' --long' : ''}`);
    const show = (list) => list.slice(0, 8).map((x) => '#     ' + x).join('\n');
    const res = await H.runHolders(cfg);
    const faults = holderReport(res, '');
    const v = res.violations;
    const strictly = (ok, name, list) => {
        if (ok) verdict(true, name, '', tally);
        else if (HOLDERS_STRICT) verdict(false, name, `${list.length}\n${show(list)}`, tally);
        else console.log(`info ${name} (CHAOS_HOLDERS_STRICT=0): ${list.length}\n${show(list)}`);
    };
    strictly(v.overlap.length === 0, 'holders: 0 overlaps between a believed holder and the next grant', v.overlap);
    strictly(v.fence.length === 0, 'holders: fences strictly increase, none granted twice', v.fence);
    verdict(v.open.length === 0 && res.problems.length === 0, 'holders: run completed cleanly, every belief ended',
        [...v.open, ...res.problems].slice(0, 8).join(' | '), tally);
    const floor = Math.round(HOLDER_S * 1.5);
    verdict(res.info.grants >= floor, `holders: grants above the floor: ${res.info.grants} >= ${floor}`, '', tally);
    verdict(faults >= Math.floor(HOLDER_S / 6), `holders: faults injected: ${faults} >= ${Math.floor(HOLDER_S / 6)}`, '', tally);
    const bad = v.overlap.length || v.fence.length || v.open.length || res.problems.length;
    if (bad) {
        console.log('# holder fault log' + (res.faultLog.length > 60 ? ' (first 60)' : '') + ':\n#   ' + res.faultLog.slice(0, 60).join('\n#   '));
        console.log(`# holder files kept in ${res.dir}`);
    } else fs.rmSync(res.dir, { recursive: true, force: true });

    // the self-test: the same with holders that go on 4 s after a loss
    // (two devices: someone wants the device of a holder that lost it; only
    // the faults that make holders
    // lose locks: broker SIGSTOP, link stall - both longer than the 1 s
    // leases - and holds of 4-8 s, so that a holder is still holding when
    // the keepalive gives up). The overlaps that count start at a loss.
    const cheat = await H.runHolders({ ...cfg, durationS: HOLDER_CHEAT_S, cheatMs: HOLDER_CHEAT_MS, quiet: true, devices: 2,
        faultKinds: ['broker-stop', 'link-stall'], faultGapMs: [200, 1000],
        holderArgs: ['--lease-ms', '1000,1000', '--hold-ms', '4000,8000', '--no-expiry-pct', '0'],
        stopEarly: (a) => a.info.overlapAfterLoss > 0 });
    holderReport(cheat, ` (self-test, LC_HOLDER_CHEAT_MS=${HOLDER_CHEAT_MS})`);
    verdict(cheat.info.overlapAfterLoss > 0,
        `holders self-test: holders cheating ${HOLDER_CHEAT_MS} ms after a loss are reported ` +
        `(${cheat.info.overlapAfterLoss} overlaps after a loss, ${cheat.violations.overlap.length} in all, ${cheat.info.losses} losses)`,
        cheat.info.overlapAfterLoss ? '' : 'no overlap after a loss reported; fault log:\n#   ' + cheat.faultLog.join('\n#   '), tally);
    fs.rmSync(cheat.dir, { recursive: true, force: true });
    for (const t of H.syntheticSelfTests()) verdict(t.ok, t.name, t.ok ? '' : t.detail, tally);
}

// Only the self-tests (a private Redis for the planted lock).
async function selfTestsOnly(tally) {
    const B = E.bounds({ redisTimeoutMs: 300, maxStallMs: 1500, sessionGrace: 1 });
    const syn = E.syntheticHistory();
    const base = E.analyse(syn, B);
    const dirty = E.INVARIANTS.filter((k) => base[k].length);
    verdict(dirty.length === 0, 'self-test: a clean synthetic history has no violations', dirty.map((k) => base[k][0]).join(' | '), tally);
    for (const t of E.selfTest(syn, B, 'synthetic')) verdict(t.ok, t.name, t.ok ? '' : t.detail, tally);
    for (const t of H.syntheticSelfTests()) verdict(t.ok, t.name, t.ok ? '' : t.detail, tally);
    const dir = P.mkTemp('edges-self');
    const redis = new P.Redis({ dir, port: await P.freePort(), fsync: 'everysec' });
    redis.start();
    await redis.ready();
    for (const t of [await E.plantedOrphanTest(redis.port, B), await E.plantedBookingTest(redis.port, B)]) verdict(t.ok, t.name, t.ok ? '' : t.detail, tally);
    await P.stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
}

async function all() {
    const tally = { passed: 0, failed: 0 };
    if (process.argv.includes('--self-test')) {
        await selfTestsOnly(tally);
    } else {
        const holdersOnly = process.argv.includes('--holders-only');
        if (!process.argv.includes('--edges-only') && !holdersOnly) {
            const r = await main();
            tally.passed += r.passed;
            tally.failed += r.failed;
        }
        if (!process.argv.includes('--no-edges') && !BREAK && !holdersOnly) await edges(tally);
        if (!process.argv.includes('--no-holders') && !process.argv.includes('--edges-only') && !BREAK) await holders(tally);
    }
    console.log(`${tally.passed} passed, ${tally.failed} failed`);
    process.exit(tally.failed ? 1 : 0);
}

all().catch(async (e) => {
    console.log('FAIL chaos run: ' + (e.stack || e.message));
    running = false;
    try {
        for (const b of brokers) console.log(`# ---- ${b.name} log (tail) ----\n` + b.log(30));
        if (redis) console.log('# ---- redis log (tail) ----\n' + redis.log(20));
    } catch (x) { /* best effort */ }
    await P.stopAll();
    console.log('0 passed, 1 failed');
    process.exit(1);
});
