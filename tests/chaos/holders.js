'use strict';
// tests/chaos/holders.js - the library-client checker (issue 12).
//
// The other chaos checkers drive the broker with raw HTTP and decide by
// themselves when to stop believing. This one runs real liblockclient
// holders (tests/chaos/lc_holder.c, built as $B/tests/lc_holder): each
// acquires with lc_acquire, keeps the lock with the library's keepalive and
// believes it holds the lock until it decides to release or until a check
// of lc_lock_lost() / lc_lock_deadline_us() - made before every use, every
// few ms - fails. Each holder prints its facts with CLOCK_REALTIME
// timestamps: grant (when lc_acquire returned) and believe_end (when it
// decided to release, or its first failed check).
//
// Setup: one Redis, two brokers on it; every holder reaches its broker
// through its own fault proxy (tests/chaos/proxy.js), so its link alone can
// be stalled or cut. Faults from the seed: SIGSTOP/SIGCONT of a broker for
// longer than the leases, a stall or a cut of one holder's link, CLIENT
// PAUSE WRITE and SIGSTOP of Redis, SIGKILL of a broker and restart on the
// same port.
//
// Invariant (analyse(), a pure function of the holders' facts):
//   overlap  for every device, the believed interval [grant.t, believe_end.t]
//            of fence f ends before the grant.t of every later fence f' > f
//            on that device: no believed holder is still acting when the next
//            one is granted. An interval with no use (its first check
//            failed) is no belief and is not counted.
//   fence    per device, the fences of the grants used, in grant-time
//            order, strictly increase, and no fence is granted twice.
//   open     every grant has its believe_end (a holder that did not finish
//            counts as believing forever, which the overlap check then sees).
// Self-test: the same run with LC_HOLDER_CHEAT_MS=4000 (holders go on using
// the device 4 s after the library said lost) must report overlaps; and a
// synthetic history with one planted overlap must report exactly it.

const fs = require('fs');
const path = require('path');
const P = require('../lib/procs.js');
const { startProxy } = require('./proxy.js');

const BUILD = process.env.DEVLOCK_BUILD || 'build';
const HOLDER_BIN = path.resolve(P.ROOT, BUILD, 'tests', 'lc_holder');

// ------------------------------------------------------------------ analysis

// facts: [{h (holder index), ev, dev, fence, t, ...}] in each holder's
// print order. Returns {violations: {overlap, fence, open}, info}.
function analyse(facts) {
    const v = { overlap: [], fence: [], open: [] };
    const info = { grants: 0, losses: 0, releases: 0, unused: 0, rounds: 0, acquireFail: {}, releaseSt: {},
        believedMs: 0, maxLateMs: null, overlapAfterLoss: 0 };
    const grants = [];
    const openOf = new Map(); // holder -> grant awaiting its believe_end
    for (const f of facts) {
        if (f.ev === 'grant') {
            info.grants++;
            const g = { h: f.h, dev: f.dev, fence: f.fence, t: f.t, end: null, why: null, uses: 0, key: f.key };
            if (openOf.has(f.h)) v.open.push(`h${f.h}: grant of ${f.dev} fence ${f.fence} before the end of its previous belief`);
            openOf.set(f.h, g);
            grants.push(g);
        } else if (f.ev === 'believe_end') {
            const g = openOf.get(f.h);
            if (!g || g.dev !== f.dev || g.fence !== f.fence) {
                v.open.push(`h${f.h}: believe_end of ${f.dev} fence ${f.fence} without its grant`);
                continue;
            }
            openOf.delete(f.h);
            g.end = f.t;
            g.why = f.why;
            g.uses = f.uses;
            if (f.why === 'lost') info.losses++; else info.releases++;
            if (!f.uses) info.unused++;
            else info.believedMs += (f.t - g.t) / 1000;
        } else if (f.ev === 'acquire_fail') {
            info.acquireFail[f.st] = (info.acquireFail[f.st] || 0) + 1;
        } else if (f.ev === 'release') {
            info.releaseSt[f.st] = (info.releaseSt[f.st] || 0) + 1;
        } else if (f.ev === 'done') {
            info.rounds += f.rounds;
        }
    }
    for (const g of openOf.values()) {
        v.open.push(`h${g.h}: ${g.dev} fence ${g.fence} granted, belief never ended (holder did not finish)`);
        g.end = Infinity;
        g.uses = g.uses || 1;
    }
    const byDev = new Map();
    for (const g of grants) {
        if (!byDev.has(g.dev)) byDev.set(g.dev, []);
        byDev.get(g.dev).push(g);
    }
    for (const [dev, list] of byDev) {
        // one fence, one grant
        const seen = new Map();
        for (const g of list) {
            const k = g.fence;
            if (seen.has(k) && seen.get(k).key !== g.key) {
                v.fence.push(`${dev}: fence ${k} granted twice (h${seen.get(k).h} and h${g.h})`);
            }
            seen.set(k, g);
        }
        // in grant-time order, the fences of the grants used strictly
        // increase (a grant whose answer came too late is not used: its
        // first check fails; the printed time is not the broker's)
        const byTime = list.filter((g) => g.uses > 0).sort((a, b) => a.t - b.t);
        for (let i = 1; i < byTime.length; i++) {
            if (!(byTime[i].fence > byTime[i - 1].fence)) {
                v.fence.push(`${dev}: h${byTime[i].h} got fence ${byTime[i].fence} ${((byTime[i].t - byTime[i - 1].t) / 1000).toFixed(1)} ms ` +
                    `after h${byTime[i - 1].h} got fence ${byTime[i - 1].fence}`);
            }
        }
        // the running latest belief over lower fences must end before each grant
        const byFence = [...list].sort((a, b) => a.fence - b.fence);
        let latest = null;
        for (const g of byFence) {
            if (latest && latest.end >= g.t) {
                const late = latest.end === Infinity ? Infinity : (latest.end - g.t) / 1000;
                info.maxLateMs = info.maxLateMs === null ? late : Math.max(info.maxLateMs, late);
                if (latest.why === 'lost') info.overlapAfterLoss++;
                v.overlap.push(`${dev}: h${latest.h} believed fence ${latest.fence} (${latest.why || 'open'}) until ` +
                    `${late === Infinity ? 'the end' : '+' + late.toFixed(1) + ' ms'} after h${g.h} was granted fence ${g.fence}`);
            }
            if (g.uses > 0 && g.end !== null && (!latest || g.end > latest.end)) latest = g;
        }
    }
    return { violations: v, info };
}

// A small clean history (two devices, three holders, a loss and a release),
// and the same with one belief stretched past the next grant.
function syntheticHistory() {
    const t = 1.7e15;
    return [
        { h: 0, ev: 'grant', dev: 'a', fence: 1, t, key: 'k1' },
        { h: 1, ev: 'grant', dev: 'b', fence: 1, t: t + 10, key: 'k2' },
        { h: 0, ev: 'believe_end', dev: 'a', fence: 1, t: t + 1000, why: 'released', uses: 50 },
        { h: 2, ev: 'grant', dev: 'a', fence: 2, t: t + 1500, key: 'k3' },
        { h: 1, ev: 'believe_end', dev: 'b', fence: 1, t: t + 2000, why: 'lost', uses: 90 },
        { h: 0, ev: 'grant', dev: 'b', fence: 2, t: t + 2600, key: 'k4' },
        { h: 2, ev: 'believe_end', dev: 'a', fence: 2, t: t + 3000, why: 'released', uses: 70 },
        { h: 0, ev: 'believe_end', dev: 'b', fence: 2, t: t + 3100, why: 'released', uses: 9 },
        { h: 0, ev: 'done', rounds: 2 }, { h: 1, ev: 'done', rounds: 1 }, { h: 2, ev: 'done', rounds: 1 },
    ];
}

function syntheticSelfTests() {
    const out = [];
    const clean = analyse(syntheticHistory()).violations;
    const dirty = Object.entries(clean).filter(([, l]) => l.length);
    out.push({ name: 'holders self-test: a clean synthetic history has no violations', ok: dirty.length === 0,
        detail: dirty.map(([k, l]) => `${k}: ${l[0]}`).join(' | ') });
    const cases = [
        ['a belief cheated past the next grant', 'overlap', (h) => { h[4].t = h[5].t + 1; }],
        ['a fence granted twice', 'fence', (h) => { h[5].fence = 1; h[5].dev = 'b'; h[7].fence = 1; h[4].t = h[5].t - 1; }],
        ['a belief never ended', 'open', (h) => { h.splice(7, 1); }],
    ];
    for (const [what, kind, mutate] of cases) {
        const h = syntheticHistory().map((f) => ({ ...f }));
        mutate(h);
        const v = analyse(h).violations;
        const others = Object.entries(v).filter(([k, l]) => k !== kind && l.length && kind !== 'open');
        out.push({ name: `holders self-test: ${what} is reported as ${kind}`, ok: v[kind].length > 0 && others.length === 0,
            detail: JSON.stringify(v) });
    }
    return out;
}

// ------------------------------------------------------------------ the run

// The facts the holders printed so far (a line is written whole, so a
// partial last line cannot be read as a fact; it fails JSON.parse and is
// reported only at the end, when every holder has exited).
function readFacts(holders) {
    const facts = [];
    const starts = [];
    const bad = [];
    for (let i = 0; i < holders.length; i++) {
        const h = holders[i];
        let text = '';
        try { text = fs.readFileSync(h.logFile, 'utf8'); } catch (e) { bad.push(`${h.name}: no log`); }
        for (const line of text.split('\n')) {
            if (line[0] !== '{') continue;
            let f;
            try { f = JSON.parse(line); } catch (e) { bad.push(`${h.name}: bad line ${line.slice(0, 80)}`); continue; }
            f.h = i;
            if (f.ev === 'start') starts.push(f);
            else facts.push(f);
        }
    }
    return { facts, starts, bad };
}

// cfg: {seed, durationS, holders, devices, cheatMs, fenceExpiry, quiet,
//       faultGapMs: [lo, hi], faultKinds (default: all), holderArgs: [...],
//       stopEarly: fn(analyse() of the facts so far) -> true to end the
//       run before its duration (checked between faults)}.
// Resolves {violations, info, problems, faultCount, faultLog, dir, elapsedS, facts}.
async function runHolders(cfg) {
    const rng = P.prng(cfg.seed * 31 + (cfg.cheatMs ? 7 : 3));
    const log = (...a) => { if (!cfg.quiet) console.log(...a); };
    if (!fs.existsSync(HOLDER_BIN)) throw new Error(`${HOLDER_BIN} is missing (make all)`);
    const dir = P.mkTemp(cfg.cheatMs ? 'holders-cheat' : 'holders');
    const redis = new P.Redis({ dir, port: await P.freePort(), fsync: 'everysec' });
    redis.start();
    await redis.ready();
    const bin = P.snapshotBinary(dir);
    const brokers = [];
    for (let i = 0; i < 2; i++) {
        const b = new P.Broker({ dir, name: `hbroker${i}`, redisUrl: redis.url, bin,
            extra: ['--redis-timeout-ms', '500', '--log-level', 'INFO'] });
        b.start();
        brokers.push(b);
    }
    await Promise.all(brokers.map((b) => b.ready()));
    const devs = Array.from({ length: cfg.devices }, (_, i) => `lc-dev-${i}`);
    const holders = [];
    const proxies = [];
    for (let i = 0; i < cfg.holders; i++) {
        const bi = i % brokers.length;
        const px = await startProxy({ targetPort: brokers[bi].port });
        proxies.push(px);
        const env = {};
        if (cfg.cheatMs) env.LC_HOLDER_CHEAT_MS = String(cfg.cheatMs);
        if (cfg.fenceExpiry) env.LC_HOLDER_FENCE = 'expiry';
        const h = new P.Proc(`holder${i}`, HOLDER_BIN, ['--url', `http://127.0.0.1:${px.port}`, '--user', `h${i}`,
            '--devices', devs.join(','), '--duration-ms', String(cfg.durationS * 1000), '--seed', String(cfg.seed * 100 + i + 1),
            '--timeout-ms', '1500', ...(cfg.holderArgs || [])], path.join(dir, `holder${i}.log`), { env });
        h.bi = bi;
        holders.push(h);
    }
    console.log(`# holders${cfg.cheatMs ? ' (self-test: LC_HOLDER_CHEAT_MS=' + cfg.cheatMs + ')' : ''}` +
        `${cfg.fenceExpiry ? ' (calibration: LC_HOLDER_FENCE=expiry)' : ''}: seed ${cfg.seed}, ${cfg.durationS} s, ` +
        `${cfg.holders} lc_holder processes on ${cfg.devices} devices via 2 brokers (${brokers.map((b) => b.port).join(', ')}), ` +
        `each through its own proxy, dir ${dir}`);
    const t0 = Date.now();
    for (const h of holders) h.start();

    const faultLog = [];
    const faultCount = {};
    const note = (kind, what) => {
        faultCount[kind] = (faultCount[kind] || 0) + 1;
        const line = `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s ${kind}: ${what}`;
        faultLog.push(line);
        log('  fault ' + line);
    };
    const FAULTS = [['broker-stop', 3], ['link-stall', 3], ['link-cut', 2], ['redis-pause', 1], ['redis-stop', 1], ['broker-kill', 1]]
        .filter(([k]) => !cfg.faultKinds || cfg.faultKinds.includes(k));
    const pick = () => {
        let x = rng() * FAULTS.reduce((a, f) => a + f[1], 0);
        for (const [k, w] of FAULTS) { if ((x -= w) < 0) return k; }
        return FAULTS[0][0];
    };
    const problems = [];
    // A link fault hits a holder that holds a leased lock right now (by its
    // own log), so that the keepalive is what the fault tests; any holder
    // when none does.
    const holding = () => holders.map((h, i) => {
        let text = '';
        try { text = fs.readFileSync(h.logFile, 'utf8'); } catch (e) { return -1; }
        const g = text.lastIndexOf('"ev":"grant"');
        return g >= 0 && text.indexOf('"ev":"believe_end"', g) < 0 && !/"lease":0[,}]/.test(text.slice(g, text.indexOf('\n', g))) ? i : -1;
    }).filter((i) => i >= 0);
    const pickHolder = () => {
        const now = holding();
        return now.length ? rng.pick(now) : rng.int(0, holders.length - 1);
    };
    async function inject(kind) {
        if (kind === 'broker-stop') {
            const bi = rng.int(0, brokers.length - 1);
            const ms = rng.int(1500, 4500);
            note(kind, `SIGSTOP ${brokers[bi].name} for ${ms} ms`);
            brokers[bi].signal('SIGSTOP');
            await P.delay(ms);
            brokers[bi].signal('SIGCONT');
        } else if (kind === 'link-stall') {
            const hi = pickHolder();
            const ms = rng.int(1500, 4500);
            note(kind, `link of holder${hi} stalled for ${ms} ms`);
            proxies[hi].pause();
            await P.delay(ms);
            proxies[hi].resume();
        } else if (kind === 'link-cut') {
            const hi = pickHolder();
            const ms = rng.int(0, 2000);
            note(kind, `link of holder${hi} cut (${proxies[hi].connections()} connections), new ones refused for ${ms} ms`);
            proxies[hi].setRefuse(true);
            proxies[hi].cut();
            await P.delay(ms);
            proxies[hi].setRefuse(false);
        } else if (kind === 'redis-pause') {
            const ms = rng.int(500, 3000);
            note(kind, `CLIENT PAUSE ${ms} WRITE`);
            await redis.command('CLIENT', 'PAUSE', ms, 'WRITE');
            await P.delay(ms);
        } else if (kind === 'redis-stop') {
            const ms = rng.int(500, 3000);
            note(kind, `SIGSTOP redis-server for ${ms} ms`);
            redis.signal('SIGSTOP');
            await P.delay(ms);
            redis.signal('SIGCONT');
        } else if (kind === 'broker-kill') {
            const bi = rng.int(0, brokers.length - 1);
            const down = rng.int(100, 1500);
            note(kind, `SIGKILL ${brokers[bi].name}, restart on port ${brokers[bi].port} after ${down} ms`);
            await brokers[bi].kill();
            await P.delay(down);
            brokers[bi].start();
            await brokers[bi].ready(20000);
        }
    }
    async function heal() {
        for (const b of brokers) {
            if (b.stopped) b.signal('SIGCONT');
            if (!b.alive()) { b.start(); await b.ready(20000); }
        }
        if (redis.stopped) redis.signal('SIGCONT');
        try { await redis.command('CLIENT', 'UNPAUSE'); } catch (e) { /* fine */ }
        for (const px of proxies) px.heal();
    }
    const until = t0 + cfg.durationS * 1000;
    const [gapLo, gapHi] = cfg.faultGapMs || [300, 2000];
    let stoppedEarly = false;
    for (let i = 0; i < 100000; i++) {
        if (cfg.stopEarly && i > 0 && cfg.stopEarly(analyse(readFacts(holders).facts))) {
            stoppedEarly = true;
            break;
        }
        // the first fault early: a short run (the self-test) gets its loss
        const gap = i === 0 ? rng.int(800, 1500) : rng.int(gapLo, gapHi);
        if (Date.now() + gap + 1500 >= until) break;
        await P.delay(gap);
        try { await inject(pick()); } catch (e) {
            problems.push('fault injection: ' + e.message);
            await heal().catch(() => {});
        }
    }
    await heal();
    // each holder ends by itself at its duration (or at SIGTERM, after its
    // current round); that round is bounded by its timeouts (acquire wait
    // <= 3 s + 1.5 s, releases retried)
    if (stoppedEarly) for (const h of holders) h.signal('SIGTERM');
    await P.until('every holder to finish', Math.max(0, until - Date.now()) + 30000,
        () => holders.every((h) => !h.alive()), 100)
        .catch((e) => problems.push(e.message + ` (${holders.filter((h) => h.alive()).map((h) => h.name).join(', ')})`));
    const elapsedS = (Date.now() - t0) / 1000;
    for (const h of holders) if (h.alive()) await h.kill();
    for (const h of holders) {
        if (h.exitInfo && h.exitInfo.code !== 0) problems.push(`${h.name} exited ${JSON.stringify(h.exitInfo)}: ${h.log(5)}`);
    }
    const { facts, starts, bad } = readFacts(holders);
    problems.push(...bad);
    const { violations, info } = analyse(facts);
    info.stoppedEarly = stoppedEarly;
    info.api = starts.length ? { deadline: starts[0].deadline_api, callbacks: starts[0].callbacks_api } : null;
    for (const px of proxies) await px.close();
    await P.stopAll();
    return { violations, info, problems, faultCount, faultLog, dir, elapsedS, facts, brokers };
}

module.exports = { runHolders, analyse, syntheticHistory, syntheticSelfTests, HOLDER_BIN };
