'use strict';
// tests/chaos/edges.js - the generative edge checker (issue 11).
//
// From one seed it draws, at random: acquires, releases, renews and
// validates by many clients on a few devices with 1-2 s leases (some 30 s),
// tiny (0.001 s) and long waits, plan groups (device_names), requests aborted
// mid-flight and retried with the same request_id, session locks over the
// WebSocket with hand-over (attach_session from a new socket) and socket
// death, admin force_release, preemption by priority; and faults: Redis
// stalls longer than --redis-timeout-ms (DEBUG SLEEP), broker SIGTERM and
// SIGKILL (then restart on the same port) chosen where waiters are queued.
// Several brokers share one Redis.
//
// Every request is recorded with its send and answer time on one monotonic
// clock (performance.now()); Redis is scanned every second for the lock
// hashes. The invariants are then checked from that history alone
// (analyse(), a pure function, which is what the self-tests feed):
//   I1 no two believed holders of a device at once; fences strictly
//      increase per device across grants
//   I2 every replayed grant (a retry with the same request_id answered
//      success) is held when it is answered
//   I3 every request is answered within its wait + a bound
//   I4 no device is refused while free and nobody waits for it
//   I5 no lock is held, for longer than a bound, by a requester that never
//      got its key
//   S  no session lock ends with session_lost while a socket of its session
//      is open, and none expires before send time + lease (seen on the socket)
//   X  no lock outlives its lease at the end (expiry stopped)
// With bookings (issue 13: bookers book short windows on the same devices
// with random types, cancel some, move some, release some early; the
// brokers' event stream is read every 3 s and after the run, and Redis is
// scanned for the bookings of each device):
//   B1 no grant to another user of equal or lower priority inside a live
//      booking's window
//   B2 a booking's owner holds its devices within a bound after start,
//      unless an equal-or-higher holder had one of them
//   B3 a booking's lock ends by its end + a bound (nobody renews them here)
//   B4 two live bookings on one device never overlap (Redis scans, and
//      every POST/PATCH answer against the bookings live at the time)
// docs/reliability.md describes each one and why it is sound.

const http = require('http');
const path = require('path');
const { performance } = require('perf_hooks');
const P = require('../lib/procs.js');

const WebSocket = require(path.join(P.ROOT, 'tests', 'node_modules', 'ws'));
const mono = () => performance.now();
const TYPES = [['MAINTENANCE', 0], ['QUEUE_EXECUTING', 1], ['MANUAL_OPERATOR', 2], ['QUEUE_QUEUED', 3]];
const INVARIANTS = ['I1', 'I2', 'I3', 'I4', 'I5', 'S', 'X', 'B1', 'B2', 'B3', 'B4'];
const INV_NAMES = {
    I1: 'no two believed holders; fences increase',
    I2: 'every replayed grant is held',
    I3: 'every request answered within wait + bound',
    I4: 'no refusal while free and unwaited',
    I5: 'no lock held by a requester without its key',
    S: 'no lock ended under its live session or before its lease',
    X: 'no lock outlives its lease at the end',
    B1: 'no grant to another equal-or-lower user inside a live booking',
    B2: 'a booking holds its devices within a bound after start',
    B3: 'a booking\'s lock ends by its end + a bound',
    B4: 'two live bookings on one device never overlap',
};

// ------------------------------------------------------------------ bounds

function bounds(cfg) {
    return {
        tolMs: 5,                                         // I1: timer/clock granularity
        answerMs: cfg.redisTimeoutMs + 2000,              // I3: beyond the wait
        slackMs: 1000,                                    // I4: expiry precision and hand-over
        maxStallMs: cfg.maxStallMs,
        orphanMs: 3000 + cfg.maxStallMs,                  // I5
        brokerSettleMs: 5500,                             // I4: a dead broker's waiters (dl:broker:* PX 5000)
        graceMs: cfg.sessionGrace * 1000,
        rsvStartMs: 1000,                                 // B2: docs/reservations.md, a booking starts within 1 s
        rsvEndMs: 1000,                                   // B3: and its lock ends within 1 s of its end
        rsvTolMs: 20,                                     // B1, B4: clock conversion (wall -> monotonic)
    };
}

// ------------------------------------------------------------------ analysis

function overlaps(a0, a1, b0, b1) { return a0 <= b1 && b0 <= a1; }

// A list of ops sorted by send time, with the running maximum of their
// answer (or give-up) time, to ask fast: "the earliest moment in [s, e] at
// which one of them was in flight" (null: none was).
function flightIndex(list) {
    const xs = [...list].sort((a, b) => a.tSend - b.tSend);
    const maxEnd = [];
    let m = -Infinity;
    for (const o of xs) {
        const g = giveUp(o);
        m = Math.max(m, g === null || g === undefined ? Infinity : g);
        maxEnd.push(m);
    }
    return { xs, maxEnd };
}
function firstInFlight(ix, s, e) {
    const { xs, maxEnd } = ix;
    let lo = 0, hi = xs.length; // first with tSend >= s
    while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid].tSend < s) lo = mid + 1; else hi = mid; }
    if (lo > 0 && maxEnd[lo - 1] >= s) return s;
    if (lo < xs.length && xs[lo].tSend <= e) return xs[lo].tSend;
    return null;
}
function giveUp(op) { return op.tAns !== null && op.tAns !== undefined ? op.tAns : op.tGiveUp; }
function known(op) { return !op.aborted && op.status === 200 && op.json !== null; }

// ------------------------------------------------------------------ bookings

// What is known of every booking, from the bookers' answers (h.ops kinds
// book, bcancel, bmove) and the event stream read after the run
// (h.rsvEvents, times converted to the monotonic clock):
//   {id, devs, prio, user, key, created, windows: [{t, s, e}], over (when it
//    stopped being live: ended, cancelled or bumped), started: [t],
//    waiting: [t], lockEnds: [t]}
function bookingModel(h) {
    const bk = new Map();
    const get = (id) => {
        if (!bk.has(id)) bk.set(id, { id, devs: [], prio: 3, user: null, key: null, created: Infinity, windows: [], over: Infinity,
            cause: null, started: [], waiting: [], lockStarts: [], lockEnds: [] });
        return bk.get(id);
    };
    const fill = (k, r, t) => {
        if (!r) return;
        if (r.devs && r.devs.length) k.devs = r.devs;
        if (r.prio !== undefined) k.prio = r.prio;
        if (r.user) k.user = r.user;
        if (r.key) k.key = r.key;
        if (t < k.created) k.created = t;
        if (!k.windows.length && r.s !== undefined) k.windows.push({ t, s: r.s, e: r.e });
    };
    for (const o of h.ops) {
        if (o.kind === 'book' && o.status === 201 && o.rsv) fill(get(o.rsv.id), o.rsv, o.tAns);
    }
    for (const o of h.ops) {
        if (o.kind === 'book' && o.status === 201 && o.bumped) for (const id of o.bumped) { const k = get(id); k.over = Math.min(k.over, o.tAns); }
        if (o.kind === 'bcancel' && o.status === 200) { const k = get(o.rid); k.over = Math.min(k.over, o.tAns); }
        if (o.kind === 'bmove' && o.status === 200 && o.rsv) get(o.rsv.id).windows.push({ t: o.tAns, s: o.rsv.s, e: o.rsv.e, client: true });
    }
    for (const ev of h.rsvEvents || []) {
        const k = get(ev.id);
        switch (ev.action) {
        case 'reservation_created': fill(k, ev.r, ev.t); if (ev.t < k.created) k.created = ev.t; break;
        case 'reservation_updated': if (ev.r) k.windows.push({ t: ev.t, s: ev.r.s, e: ev.r.e }); break;
        case 'reservation_started': k.started.push(ev.t); break;
        case 'reservation_waiting': k.waiting.push(ev.t); break;
        case 'reservation_ended': case 'reservation_cancelled': case 'reservation_bumped':
            if (ev.t < k.over) { k.over = ev.t; k.cause = ev.cause || ev.action; }
            break;
        case 'lock_start': k.lockStarts.push(ev.t); break;
        case 'lock_end': k.lockEnds.push(ev.t); break;
        default: break;
        }
    }
    for (const k of bk.values()) {
        // a window moved by the client and reported by the stream: keep one,
        // in time order
        k.windows.sort((a, b) => a.t - b.t);
        k.maxEnd = k.windows.reduce((m, w) => Math.max(m, w.e), -Infinity);
        k.minStart = k.windows.reduce((m, w) => Math.min(m, w.s), Infinity);
    }
    return bk;
}
// the window of booking k in force at time t (null: none known then)
function windowAt(k, t) {
    let w = null;
    for (const x of k.windows) if (x.t <= t) w = x;
    return w || (k.windows.length ? k.windows[0] : null);
}

// h: {ops: [...], marks: [...], scans: [...], faults: [...], finalScan: [...], endT,
//     rsvEvents: [...], rsvScans: [...]}
// Returns {I1: [...], ..., X: [...], info: {...}}: the violations found.
function analyse(h, B) {
    const v = {};
    for (const k of INVARIANTS) v[k] = [];
    const ops = h.ops;
    const byId = new Map(ops.map((o) => [o.id, o]));
    const firstSend = (o) => (o.first !== undefined && byId.has(o.first) ? byId.get(o.first).tSend : o.tSend);
    const acquires = ops.filter((o) => o.kind === 'acquire');
    const grants = acquires.filter((o) => known(o) && o.json.success && o.json.lock_key);
    const keyOps = new Map(); // lock_key -> ops about it (release, renew, validate)
    for (const o of ops) {
        if (o.refKey) {
            if (!keyOps.has(o.refKey)) keyOps.set(o.refKey, []);
            keyOps.get(o.refKey).push(o);
        }
    }
    const marksByKey = new Map();
    for (const m of h.marks) {
        if (!m.key) continue;
        if (!marksByKey.has(m.key)) marksByKey.set(m.key, []);
        marksByKey.get(m.key).push(m);
    }
    // per device: force releases and acquires (possible preemptors), by time
    const perDev = new Map();
    const devList = (d) => { if (!perDev.has(d)) perDev.set(d, { force: [], acq: [], occ: [] }); return perDev.get(d); };
    for (const o of ops) {
        if (o.kind === 'force') for (const d of o.devs) devList(d).force.push(o);
        if (o.kind === 'acquire') for (const d of o.devs) devList(d).acq.push(o);
    }

    const bookings = bookingModel(h);
    for (const k of bookings.values()) for (const d of k.devs) devList(d).rsv = (devList(d).rsv || []).concat([k]);
    for (const [, L] of perDev) {
        L.forceIx = flightIndex(L.force);
        L.preIx = [0, 1, 2, 3].map((p) => flightIndex(L.acq.filter((a) => a.prio < p)));
        L.rsv = L.rsv || [];
    }
    // the earliest moment in [s, e] a force release or a request of higher
    // priority than prio was in flight on one of devs (null: none)
    const cutAt = (devs, prio, s, e) => {
        let c = null;
        for (const d of devs) {
            const L = devList(d);
            if (!L.forceIx) continue; // no acquire or force release ever named it
            for (const t of [firstInFlight(L.forceIx, s, e), firstInFlight(L.preIx[prio], s, e)]) if (t !== null && (c === null || t < c)) c = t;
            // a booking of strictly higher priority takes the device in its window
            for (const k of L.rsv) {
                if (k.prio >= prio || !(k.minStart <= e && s <= k.maxEnd + B.slackMs)) continue;
                const t = Math.max(s, k.minStart - B.rsvTolMs);
                if (c === null || t < c) c = t;
            }
        }
        return c;
    };
    // ---- I1: believed intervals
    const beliefs = [];
    for (const g of grants) {
        const start = g.tAns;
        let leaseEnd = firstSend(g) + g.lease * 1000;
        let end = leaseEnd;
        const related = (keyOps.get(g.json.lock_key) || []).filter((o) => o.tSend >= start).sort((a, b) => a.tSend - b.tSend);
        for (const o of related) {
            if (o.tSend > end) break;
            if (o.kind === 'release') { end = Math.min(end, o.tSend); break; }
            if (o.kind === 'renew' && known(o)) {
                if (o.json.success) { leaseEnd = Math.max(leaseEnd, o.tSend + o.lease * 1000); end = leaseEnd; } else { end = Math.min(end, o.tAns); break; }
            }
        }
        for (const m of marksByKey.get(g.json.lock_key) || []) if (m.t >= start) end = Math.min(end, m.t);
        // cut where a force release or a strictly higher priority request
        // might have ended it (conservatively at their send time, or at the
        // answer when it was in flight before)
        if (end > start) {
            // from the first send: a lock can be preempted or force-released
            // before its grant's answer arrives
            const c = cutAt(g.devs, g.prio, firstSend(g), end);
            if (c !== null) end = Math.min(end, Math.max(start, c));
        }
        if (end > start) beliefs.push({ key: g.json.lock_key, devs: g.devs, start, end, op: g });
    }
    for (const [d] of perDev) {
        const list = beliefs.filter((b) => b.devs.includes(d)).sort((a, b) => a.start - b.start);
        let active = [];
        let reported = 0;
        for (const b of list) {
            active = active.filter((a) => a.end > b.start + B.tolMs);
            for (const a of active) {
                if (a.key !== b.key && reported < 50) {
                    reported++;
                    v.I1.push(`${d}: ${a.op.user} (lock ${a.key.slice(0, 8)}, fence ${fenceOf(a.op, d)}) believed until ` +
                        `+${(Math.min(a.end, b.end) - b.start).toFixed(0)} ms after ${b.op.user} (lock ${b.key.slice(0, 8)}, ` +
                        `fence ${fenceOf(b.op, d)}) started believing at ${(b.start / 1000).toFixed(3)} s (ops ${a.op.id}, ${b.op.id})`);
                }
            }
            active.push(b);
        }
    }
    // ---- I1: fences strictly increase per device across grants
    const grantsByDev = new Map();
    for (const g of grants) for (const d of g.devs) {
        if (!grantsByDev.has(d)) grantsByDev.set(d, new Map());
        const m = grantsByDev.get(d);
        const k = g.json.lock_key;
        const cur = m.get(k);
        if (!cur) m.set(k, { key: k, fence: fenceOf(g, d), tAns: g.tAns, tSend: firstSend(g), op: g });
        else {
            if (cur.fence !== fenceOf(g, d)) v.I1.push(`${d}: lock ${k.slice(0, 8)} answered with fences ${cur.fence} and ${fenceOf(g, d)}`);
            cur.tAns = Math.min(cur.tAns, g.tAns);
            cur.tSend = Math.min(cur.tSend, firstSend(g));
        }
    }
    for (const [d, m] of grantsByDev) {
        const gs = [...m.values()];
        const fenceKey = new Map();
        for (const g of gs) {
            if (fenceKey.has(g.fence) && fenceKey.get(g.fence) !== g.key) v.I1.push(`${d}: fence ${g.fence} granted to two locks`);
            fenceKey.set(g.fence, g.key);
        }
        const byAns = [...gs].sort((a, b) => a.tAns - b.tAns);
        const bySend = [...gs].sort((a, b) => a.tSend - b.tSend);
        let i = 0;
        let maxF = -Infinity, maxG = null;
        let reported = 0;
        for (const g of bySend) {
            while (i < byAns.length && byAns[i].tAns < g.tSend) {
                if (byAns[i].fence > maxF) { maxF = byAns[i].fence; maxG = byAns[i]; }
                i++;
            }
            if (maxG && maxG.key !== g.key && !(g.fence > maxF) && reported++ < 20) {
                v.I1.push(`${d}: lock ${g.key.slice(0, 8)} requested after fence ${maxF} was granted got fence ${g.fence}`);
            }
        }
    }

    // ---- I2: every replayed grant is held (its validate said valid)
    const chains = new Map();
    for (const o of acquires) {
        const f = o.first !== undefined ? o.first : o.id;
        if (!chains.has(f)) chains.set(f, []);
        chains.get(f).push(o);
    }
    const checksOf = new Map();
    for (const o of ops) {
        if (o.kind === 'validate' && o.checkOf !== undefined && known(o)) {
            if (!checksOf.has(o.checkOf)) checksOf.set(o.checkOf, []);
            checksOf.get(o.checkOf).push(o);
        }
    }
    for (const g of grants) {
        if (!g.attempt) continue;
        const chain = chains.get(g.first) || [];
        for (const o of chain) {
            if (o !== g && known(o) && o.json.success && o.json.lock_key !== g.json.lock_key) {
                v.I2.push(`${g.user} request_id ${g.rid}: answered two locks ${o.json.lock_key.slice(0, 8)} and ${g.json.lock_key.slice(0, 8)}`);
            }
        }
        for (const c of checksOf.get(g.id) || []) {
            if (c.json.valid) continue;
            const d = c.devs[0];
            const leaseEnd = firstSend(g) + g.lease * 1000;
            if (c.tAns >= leaseEnd - B.tolMs) continue; // the lease may have ended
            if (cutAt(g.devs, g.prio, firstSend(g), c.tAns) !== null) continue; // preempted or force-released meanwhile
            v.I2.push(`${d}: ${g.user} retry #${g.attempt} of request_id ${g.rid} answered success with lock ${g.json.lock_key.slice(0, 8)} ` +
                `fence ${fenceOf(g, d)}, but validate says current fence ${c.json.current_fence} (${(c.tAns - g.tAns).toFixed(0)} ms later, op ${g.id})`);
        }
    }

    // ---- I3: every request answered within its wait + the bound
    const killFaults = h.faults.filter((f) => f.kind === 'broker-kill' || f.kind === 'broker-term');
    const lags = h.faults.filter((f) => f.kind === 'harness-lag');
    for (const o of ops) {
        if (o.aborted) continue;
        const limit = (o.wait || 0) * 1000 + B.answerMs;
        const t1 = giveUp(o);
        const took = (o.tAns !== null && o.tAns !== undefined ? o.tAns : t1) - o.tSend;
        if (o.tAns !== null && o.tAns !== undefined && took <= limit) continue;
        const end = t1 === undefined || t1 === null ? h.endT : t1;
        if (killFaults.some((f) => f.bi === o.bi && overlaps(f.start, f.end, o.tSend, end))) continue;
        if (lags.some((f) => overlaps(f.start, f.end, o.tSend, end))) continue;
        v.I3.push(`${o.kind} ${o.via} by ${o.user} via broker ${o.bi} (wait ${o.wait || 0} s) ${o.tAns === null || o.tAns === undefined ? 'not answered' : 'answered'} ` +
            `after ${took.toFixed(0)} ms > ${limit} ms (op ${o.id}, sent ${(o.tSend / 1000).toFixed(3)} s)`);
    }

    // ---- I4: no refusal while free and nobody waits for it
    const sessDead = new Map();
    for (const m of h.marks) if (m.kind === 'sessdead') sessDead.set(m.sid, m.t);
    for (const o of acquires) {
        let s = o.tSend;
        let e;
        if (known(o) && o.json.success && o.json.lock_key) {
            const related = (keyOps.get(o.json.lock_key) || []);
            let end = o.tAns + o.lease * 1000;
            for (const r of related) {
                if (r.kind === 'renew') end = Math.max(end, (known(r) && !r.json.success ? 0 : (giveUp(r) || o.tAns)) + r.lease * 1000);
            }
            for (const r of related) if (r.kind === 'release' && known(r)) end = Math.min(end, r.tAns);
            // a closed session ends within the grace (unless its broker died meanwhile)
            if (o.sid && sessDead.has(o.sid)) {
                const t = sessDead.get(o.sid);
                if (!killFaults.some((f) => overlaps(f.start, f.end, t - B.slackMs, t + B.graceMs + B.slackMs))) end = Math.min(end, t + B.graceMs);
            }
            e = end + B.slackMs;
        } else if (known(o) && o.json.success === false) {
            if (!o.wait) continue;
            e = o.tAns; // a waiter while it waited
        } else {
            const t1 = giveUp(o) === null || giveUp(o) === undefined ? h.endT : giveUp(o);
            e = Math.max(t1, o.tSend + (o.wait || 0) * 1000) + o.lease * 1000 + B.maxStallMs + B.slackMs;
        }
        for (const d of o.devs) devList(d).occ.push([s, e, o]);
    }
    for (const k of bookings.values()) {
        if (k.minStart === Infinity) continue;
        for (const d of k.devs) devList(d).occ.push([k.minStart - B.slackMs, k.maxEnd + B.slackMs, k]);
    }
    for (const [, L] of perDev) {
        // sorted by start, with the two largest ends so far (of different ops)
        L.occ.sort((a, b) => a[0] - b[0]);
        let m1 = [-Infinity, null], m2 = [-Infinity, null];
        L.top = L.occ.map(([, e, o]) => {
            if (e > m1[0]) { if (m1[1] !== o) m2 = m1; m1 = [e, o]; } else if (e > m2[0] && o !== m1[1]) m2 = [e, o];
            return [m1, m2];
        });
    }
    // is any occupancy other than `self`'s in [s, e]?
    const occupied = (L, s, e, self) => {
        let lo = 0, hi = L.occ.length; // last with start <= e
        while (lo < hi) { const mid = (lo + hi) >> 1; if (L.occ[mid][0] <= e) lo = mid + 1; else hi = mid; }
        if (lo === 0) return false;
        const [m1, m2] = L.top[lo - 1];
        return (m1[1] !== self ? m1[0] : m2[0]) >= s;
    };
    const quiet = h.faults.map((f) => [f.start, f.end + (f.kind === 'stall' ? B.slackMs : f.kind === 'harness-lag' ? B.slackMs : B.brokerSettleMs)]);
    for (const [, L] of perDev) L.maxLen = L.occ.reduce((m, [a, b]) => Math.max(m, b - a), 0);
    // The longest stretch of [s, e] in which none of devs is occupied (by
    // anyone but self) and no fault is settling: [from, to] or null.
    const longestFree = (devs, s, e, self) => {
        const cover = [];
        for (const d of devs) {
            const L = devList(d);
            let lo = 0, hi = L.occ.length; // last with start <= e
            while (lo < hi) { const mid = (lo + hi) >> 1; if (L.occ[mid][0] <= e) lo = mid + 1; else hi = mid; }
            for (let i = lo - 1; i >= 0 && L.occ[i][0] >= s - L.maxLen; i--) {
                const [a, b, o] = L.occ[i];
                if (o !== self && b >= s) cover.push([a, b]);
            }
        }
        for (const q of quiet) if (overlaps(q[0], q[1], s, e)) cover.push(q);
        cover.sort((x, y) => x[0] - y[0]);
        let best = null, t = s;
        for (const [a, b] of cover) {
            if (a > t && (!best || a - t > best[1] - best[0])) best = [t, Math.min(a, e)];
            t = Math.max(t, b);
            if (t >= e) break;
        }
        if (t < e && (!best || e - t > best[1] - best[0])) best = [t, e];
        return best;
    };
    let denials = 0, checked = 0;
    for (const o of acquires) {
        if (!known(o) || o.json.success !== false) continue;
        denials++;
        const s0 = firstSend(o); // a retry's denial may be the first attempt's, replayed
        if (quiet.some(([a, b]) => overlaps(a, b, s0, o.tAns))) {
            // a waiter: the device must not sit free (beyond the slack) while it waits
            if (!o.wait || o.tAns - s0 < 3 * B.slackMs) continue;
        }
        checked++;
        const free = o.devs.every((d) => !occupied(devList(d), s0, o.tAns, o));
        if (free && !quiet.some(([a, b]) => overlaps(a, b, s0, o.tAns))) {
            if (v.I4.length < 50) {
                v.I4.push(`${o.devs.join('+')}: ${o.user}'s ${o.lockType} (wait ${o.wait || 0} s) refused at ${(s0 / 1000).toFixed(3)} s ` +
                    `"${o.json.message}" with no holder or waiter in the history (op ${o.id})`);
            }
            continue;
        }
        if (o.wait && o.tAns - s0 >= 3 * B.slackMs) {
            const gap = longestFree(o.devs, s0 + B.slackMs, o.tAns - B.slackMs, o);
            if (gap && gap[1] - gap[0] >= B.slackMs && v.I4.length < 50) {
                v.I4.push(`${o.devs.join('+')}: ${o.user}'s ${o.lockType} waited ${o.wait} s and got "${o.json.message}", but the device sat ` +
                    `free with no holder or better waiter for ${(gap[1] - gap[0]).toFixed(0)} ms of it (from ${(gap[0] / 1000).toFixed(3)} s, op ${o.id})`);
            }
        }
    }

    // ---- S: what a session client saw happen to its own lock
    for (const m of h.marks) {
        if (m.kind !== 'seen_end') continue;
        if (m.cause === 'session_lost' && !m.firstDied) {
            v.S.push(`${m.dev}: ${m.user}'s session lock ${m.key.slice(0, 8)} ended session_lost while its socket (${m.handedOver ? 'the one it was handed over to' : 'the first'}) was open, at ${(m.t / 1000).toFixed(3)} s`);
        } else if (m.cause === 'expired' && m.t < m.leaseEnd - B.tolMs) {
            v.S.push(`${m.dev}: ${m.user}'s lock ${m.key.slice(0, 8)} expired ${(m.leaseEnd - m.t).toFixed(0)} ms before send time + lease`);
        }
    }

    // ---- I5 and X: the Redis scans against the keys clients received
    const keys = new Set(grants.map((g) => g.json.lock_key));
    for (const k of bookings.values()) if (k.key) keys.add(k.key);
    const seen = new Map();
    for (const s of h.scans) {
        if (keys.has(s.key)) continue;
        const x = seen.get(s.key) || { first: s.t, last: s.t, dev: s.dev, user: s.user };
        x.last = s.t;
        seen.set(s.key, x);
    }
    for (const [k, x] of seen) {
        if (x.last - x.first >= B.orphanMs) {
            v.I5.push(`${x.dev}: lock ${k.slice(0, 8)} of ${x.user} held ${(x.last - x.first).toFixed(0)} ms (>= ${B.orphanMs}) ` +
                `and its key was never answered to anyone`);
        }
    }
    for (const s of h.finalScan || []) {
        if (!keys.has(s.key)) {
            if (s.ageMs >= B.orphanMs && !v.I5.some((x) => x.includes(s.key.slice(0, 8)))) {
                v.I5.push(`${s.dev}: lock ${s.key.slice(0, 8)} of ${s.user} still held at the end (${(s.ageMs / 1000).toFixed(1)} s old), ` +
                    `its key never answered to anyone`);
            }
        } else if (s.overMs !== null && s.overMs > B.slackMs + B.maxStallMs) {
            v.X.push(`${s.dev}: lock ${s.key.slice(0, 8)} of ${s.user} still held ${(s.overMs / 1000).toFixed(1)} s past its lease end`);
        }
    }
    // ---- B1-B4: bookings
    const stallsOver = (a, b) => h.faults.filter((f) => (f.kind === 'stall' || f.kind === 'harness-lag') && overlaps(f.start, f.end, a, b));
    // a deadline pushed past the stalls (Redis answers nothing meanwhile)
    const pastStalls = (t0, bound) => {
        let dl = t0 + bound;
        for (let i = 0; i < 5; i++) {
            const fs = stallsOver(t0 - B.maxStallMs, dl);
            const m = fs.reduce((x, f) => Math.max(x, f.end + bound), dl);
            if (m === dl) break;
            dl = m;
        }
        return dl;
    };
    const grantT = new Map(); // lock_key -> the acquired event's time (the script's clock)
    for (const ev of h.rsvEvents || []) if (ev.action === 'acquired' && ev.key && !grantT.has(ev.key)) grantT.set(ev.key, ev.t);
    const rsvOn = (d) => devList(d).rsv;
    const bc = { b1: 0, b2: 0, b2OnTime: 0, b2Excused: 0, b3: 0, b4scans: (h.rsvScans || []).length, b4acks: 0,
        refusedByBooking: acquires.filter((o) => known(o) && o.json.success === false && /reserved by booking/.test(o.json.message || '')).length };
    // B1
    for (const g of grants) {
        const tg = grantT.get(g.json.lock_key);
        const a = tg !== undefined ? tg - B.rsvTolMs : firstSend(g);
        const b = tg !== undefined ? tg + B.rsvTolMs : g.tAns;
        for (const d of g.devs) {
            for (const k of rsvOn(d)) {
                if (k.user === g.user || g.prio < k.prio) continue;
                if (!(k.created < a) || !(k.over > b + B.rsvTolMs)) continue;
                if (k.windows.some((x) => x.t > a - B.rsvTolMs && x.t < b + B.rsvTolMs)) continue; // moved meanwhile
                const w = windowAt(k, a);
                if (w && overlaps(w.s - 1000, w.e + 1000, a, b)) bc.b1++; // a grant within 1 s of a window that would refuse it
                if (w && w.s + B.rsvTolMs <= a && b + B.rsvTolMs <= w.e && v.B1.length < 50) {
                    v.B1.push(`${d}: ${g.user}'s ${g.lockType} granted at ${(a / 1000).toFixed(3)}-${(b / 1000).toFixed(3)} s inside booking ${k.id} ` +
                        `(${k.user}, priority ${k.prio}, ${(w.s / 1000).toFixed(3)}-${(w.e / 1000).toFixed(3)} s, live until ` +
                        `${k.over === Infinity ? 'the end' : (k.over / 1000).toFixed(3) + ' s'}) (op ${g.id}, lock ${g.json.lock_key.slice(0, 8)})`);
                }
            }
        }
    }
    // an equal-or-higher holder on one of devs at time t, other than booking self
    const blockerAt = (devs, prio, t, self) => devs.some((d) => {
        const L = devList(d);
        if (L.occ.some(([s0, e0, o]) => o !== self && s0 <= t && t <= e0 && o.prio !== undefined && o.prio <= prio && o.kind !== undefined)) return true;
        return L.rsv.some((k) => k !== self && k.prio <= prio && k.minStart - B.slackMs <= t && t <= k.maxEnd + B.rsvEndMs + B.slackMs);
    });
    let started = 0, waited = 0;
    for (const k of bookings.values()) {
        if (!k.windows.length || k.created === Infinity) continue;
        // B2: the window in force at its start (moves before it are allowed)
        const w0 = k.windows.filter((x) => x.t <= x.s).pop() || k.windows[0];
        const s = Math.max(w0.s, k.created);
        const dl = pastStalls(s, B.rsvStartMs);
        if (k.started.length) started++;
        if (k.waiting.length) waited++;
        const seenUntil = h.streamT === undefined ? h.endT : h.streamT; // the stream was read then
        if (!(k.over < dl || dl > seenUntil || w0.e <= s)) bc.b2++;
        if (k.over < dl || dl > seenUntil || w0.e <= s) { /* gone before, or not seen to its deadline */ } else if (k.started.some((t) => t >= s - B.rsvTolMs && t <= dl)) {
            bc.b2OnTime++;
        } else if (blockerAt(k.devs, k.prio, s, k)) {
            bc.b2Excused++; // an equal or higher holder had a device
        } else if (v.B2.length < 50) {
            v.B2.push(`${k.devs.join('+')}: booking ${k.id} (${k.user}, priority ${k.prio}, ${(s / 1000).toFixed(3)}-${(w0.e / 1000).toFixed(3)} s) ` +
                `${k.started.length ? 'started at ' + k.started.map((t) => (t / 1000).toFixed(3)).join(',') + ' s' : 'never started'}` +
                `${k.waiting.length ? ', waiting at ' + (k.waiting[0] / 1000).toFixed(3) + ' s' : ''}, with no equal-or-higher holder in the history ` +
                `(deadline ${(dl / 1000).toFixed(3)} s)`);
        }
        // B3: its lock ends by its end + the bound
        if (!k.started.length && !k.lockStarts.length) continue;
        if (k.key && (keyOps.get(k.key) || []).some((o) => o.kind === 'renew')) continue;
        const end = pastStalls(k.maxEnd, B.rsvEndMs);
        if (end > seenUntil) continue;
        bc.b3++;
        const lastStart = Math.max(...k.started, ...k.lockStarts);
        const ended = k.lockEnds.some((t) => t >= lastStart - B.rsvTolMs && t <= end) || k.over <= end;
        const seen = h.scans.filter((x) => (x.rsv === k.id || (k.key && x.key === k.key)) && x.t > end);
        if ((!ended || seen.length) && v.B3.length < 50) {
            v.B3.push(`${k.devs.join('+')}: booking ${k.id}'s lock (${k.user}, end ${(k.maxEnd / 1000).toFixed(3)} s) ` +
                `${seen.length ? `still in Redis at ${(seen[0].t / 1000).toFixed(3)} s` : 'has no end in the event stream'} (deadline ${(end / 1000).toFixed(3)} s)`);
        }
    }
    // B4: Redis scans of the devices' live bookings
    for (const sc of h.rsvScans || []) {
        const live = [...sc.live].sort((a, b) => a[1] - b[1]);
        for (let i = 1; i < live.length; i++) {
            if (live[i][1] < live[i - 1][2] && v.B4.length < 50) {
                v.B4.push(`${sc.dev}: live bookings ${live[i - 1][0]} and ${live[i][0]} overlap in Redis at ${(sc.t / 1000).toFixed(3)} s ` +
                    `(${(live[i - 1][1] / 1000).toFixed(3)}-${(live[i - 1][2] / 1000).toFixed(3)} s, ${(live[i][1] / 1000).toFixed(3)}-${(live[i][2] / 1000).toFixed(3)} s)`);
            }
        }
    }
    // B4: every booking or move acknowledged over a live booking of the same
    // device (the older one neither ended nor bumped by it)
    // a POST retried with its request_id may be answered with the first
    // attempt's answer (made when that attempt ran): judge it from the
    // first attempt's send
    const firstBook = new Map();
    for (const o of ops) {
        if (o.kind !== 'book' || !o.rid) continue;
        const k = `${o.user}\n${o.rid}`;
        if (!firstBook.has(k) || o.tSend < firstBook.get(k)) firstBook.set(k, o.tSend);
    }
    for (const o of ops) {
        if (!((o.kind === 'book' && o.status === 201) || (o.kind === 'bmove' && o.status === 200)) || !o.rsv) continue;
        const mine = bookings.get(o.rsv.id);
        const t0 = o.kind === 'book' && o.rid ? firstBook.get(`${o.user}\n${o.rid}`) : o.tSend;
        if (o.rsv.devs.some((d) => rsvOn(d).some((k) => k !== mine && k.created < t0))) bc.b4acks++;
        for (const d of o.rsv.devs) {
            for (const k of rsvOn(d)) {
                if (k === mine || !(k.created < t0 - B.rsvTolMs)) continue;
                const bumpedHere = o.kind === 'book' && (o.bumped || []).includes(k.id);
                if (bumpedHere) {
                    if (k.prio <= o.rsv.prio && v.B4.length < 50) v.B4.push(`${d}: booking ${o.rsv.id} (priority ${o.rsv.prio}) bumped ${k.id} of priority ${k.prio}`);
                    continue;
                }
                if (!(k.over > o.tAns + B.rsvTolMs)) continue;
                if (k.windows.some((x) => x.t > t0 - B.rsvTolMs && x.t < o.tAns + B.rsvTolMs)) continue;
                const w = windowAt(k, t0);
                if (!w || w.e <= t0) continue; // over by now (its end event may lag)
                if (w.s + B.rsvTolMs < o.rsv.e && o.rsv.s + B.rsvTolMs < w.e && v.B4.length < 50) {
                    v.B4.push(`${d}: ${o.kind === 'book' ? 'booking' : 'move of'} ${o.rsv.id} (${o.user}, priority ${o.rsv.prio}, ` +
                        `${(o.rsv.s / 1000).toFixed(3)}-${(o.rsv.e / 1000).toFixed(3)} s) acknowledged over live ${k.id} (${k.user}, priority ${k.prio}, ` +
                        `${(w.s / 1000).toFixed(3)}-${(w.e / 1000).toFixed(3)} s) (op ${o.id})`);
                }
            }
        }
    }
    v.info = { beliefs: beliefs.length, grants: grants.length, denials, denialsChecked: checked,
        replays: grants.filter((g) => g.attempt).length, bookings: bookings.size, bookingsStarted: started, bookingsWaited: waited, checked: bc };
    return v;
}

// What the checker keeps of an answer (a long run records 200 000 of them).
function trim(j) {
    if (!j || typeof j !== 'object') return j;
    const out = {};
    for (const k of ['type', 'success', 'lock_key', 'fence', 'fences', 'valid', 'current_fence', 'session_id', 'error']) {
        if (j[k] !== undefined) out[k] = j[k];
    }
    if (typeof j.message === 'string') out.message = j.message.slice(0, 80);
    return out;
}

function fenceOf(op, d) {
    const j = op.json || {};
    if (j.fences && j.fences[d] !== undefined) return j.fences[d];
    return j.fence;
}

// ------------------------------------------------------------------ Redis reads

// Parses one RESP reply (the subset Redis sends for HGETALL/SCAN).
function parseResp(buf, i = 0) {
    const t = buf[i];
    const nl = buf.indexOf('\r\n', i);
    const line = buf.slice(i + 1, nl);
    if (t === '+' || t === '-' || t === ':') return [line, nl + 2];
    if (t === '$') {
        const n = Number(line);
        if (n < 0) return [null, nl + 2];
        return [buf.slice(nl + 2, nl + 2 + n), nl + 2 + n + 2];
    }
    if (t === '*') {
        const n = Number(line);
        const out = [];
        let j = nl + 2;
        for (let k = 0; k < n; k++) { const [x, nj] = parseResp(buf, j); out.push(x); j = nj; }
        return [out, j];
    }
    throw new Error('bad RESP');
}

// The lock hashes of the given devices, as {dev, key, user, acq, exp}.
async function readLocks(port, devs, ms = 800) {
    const out = [];
    for (const d of devs) {
        const raw = await P.redisCmd(port, ['HGETALL', `dl:{${d}}:lock`], ms);
        const [arr] = parseResp(raw);
        if (!Array.isArray(arr) || arr.length === 0) continue;
        const hsh = {};
        for (let i = 0; i + 1 < arr.length; i += 2) hsh[arr[i]] = arr[i + 1];
        if (hsh.lock_key) out.push({ dev: d, key: hsh.lock_key, user: hsh.user_id, acq: Number(hsh.acq), exp: Number(hsh.exp || 0), rsv: hsh.rsv || null });
    }
    return out;
}

// The live bookings of each device as Redis keeps them (dl:{D}:rsv, a ZSET
// of ids; dl:rsv:<id>, a HASH with start and end in µs and state):
// [{dev, live: [[id, startUs, endUs, state]]}]
async function readBookings(port, devs, ms = 800) {
    const out = [];
    for (const d of devs) {
        const [ids] = parseResp(await P.redisCmd(port, ['ZRANGE', `dl:{${d}}:rsv`, '0', '-1'], ms));
        const live = [];
        for (const id of Array.isArray(ids) ? ids : []) {
            let hsh = null;
            for (const k of [`dl:rsv:${id}`, /^r/.test(id) ? `dl:rsv:${id.slice(1)}` : `dl:rsv:r${id}`]) {
                const [arr] = parseResp(await P.redisCmd(port, ['HGETALL', k], ms));
                if (Array.isArray(arr) && arr.length) { hsh = {}; for (let i = 0; i + 1 < arr.length; i += 2) hsh[arr[i]] = arr[i + 1]; break; }
            }
            if (hsh && ['booked', 'waiting', 'active'].includes(hsh.state || 'booked')) live.push([/^r/.test(id) ? id : `r${id}`, Number(hsh.start), Number(hsh.end), hsh.state]);
        }
        out.push({ dev: d, live });
    }
    return out;
}

// RFC 3339 (Z) -> ms since the epoch, with the µs as a fraction
function wallMs(iso) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(iso || '');
    if (!m) return NaN;
    return Date.parse(`${m[1]}${m[3]}`) + Number((m[2] || '0').padEnd(6, '0').slice(0, 6)) / 1000;
}

// Redis stores acq/exp in its clock's µs (or ms in an older layout):
// milliseconds since that time, by this machine's wall clock.
function ageMs(stamp) {
    if (!stamp) return null;
    const ms = stamp > 1e14 ? stamp / 1000 : stamp;
    return Date.now() - ms;
}

// The brokers' event stream (GET /api/events, oldest first), read every
// few seconds during the run and once after it (so that a long run's
// trimmed stream loses nothing), kept as what the booking invariants need,
// on the monotonic clock: reservation_* events, the starts and ends of
// booking locks, and the time of every grant (acquired). st: {since, n}
// carries the position from one read to the next. Returns false when a
// broker did not answer (the next read goes on from the same place).
async function readStream(b, h, off, st) {
    for (let page = 0; page < 1000; page++) {
        const r = await P.httpJson(b.port, 'GET', `/api/events?limit=1000${st.since ? `&since=${encodeURIComponent(st.since)}` : ''}`, null, 5000)
            .catch(() => null);
        if (!r || r.status !== 200 || !r.json) return false;
        for (const ev of r.json.events || []) {
            st.n++;
            const t = wallMs(ev.timestamp) - off;
            const lock = ev.lock || null;
            if (typeof ev.action === 'string' && ev.action.startsWith('reservation_') && ev.reservation) {
                const x = ev.reservation;
                h.rsvEvents.push({ action: ev.action, t, dev: ev.device_name, id: x.id, cause: ev.cause || x.cause || null,
                    r: { devs: x.device_names || [], prio: x.priority, user: x.user_id, key: x.lock_key || null, s: wallMs(x.start) - off, e: wallMs(x.end) - off } });
            }
            if (lock && lock.reservation) {
                if (ev.action === 'acquired') h.rsvEvents.push({ action: 'lock_start', t, dev: ev.device_name, id: lock.reservation });
                if (ev.action === 'released' || ev.action === 'force_released') h.rsvEvents.push({ action: 'lock_end', t, dev: ev.device_name, id: lock.reservation, cause: ev.cause || null });
            }
            if (ev.action === 'acquired' && lock && lock.lock_key) h.rsvEvents.push({ action: 'acquired', t, key: lock.lock_key });
        }
        if (!r.json.count || !r.json.last_event_id || r.json.last_event_id === st.since) return true;
        st.since = r.json.last_event_id;
    }
    return true;
}

// ------------------------------------------------------------------ the run

async function runEdges(cfg) {
    const rng = P.prng(cfg.seed);
    const B = bounds(cfg);
    const log = cfg.quiet ? () => {} : (...a) => console.log(...a);
    const h = { ops: [], marks: [], scans: [], faults: [], finalScan: [], endT: 0, rsvEvents: [], rsvScans: [] };
    const counts = { ops: 0, aborts: 0, retries: 0, groups: 0, tinyWaits: 0, longWaits: 0, sessions: 0, handovers: 0,
        sockDeaths: 0, forces: 0, preemptTries: 0, renews: 0, validates: 0, longLeases: 0, hushes: 0,
        bookTries: 0, bookings: 0, bookConflicts: 0, bumps: 0, bookCancels: 0, bookMoves: 0, bookReleases: 0 };
    const faultCount = { stall: 0, 'broker-term': 0, 'broker-kill': 0, 'harness-lag': 0 };
    let nextId = 1;
    const devs = [];
    for (let i = 0; i < cfg.devices; i++) devs.push(`edge-d${i}`);

    const dir = P.mkTemp('edges');
    const redis = new P.Redis({ dir, port: await P.freePort(), fsync: 'everysec' });
    redis.start();
    await redis.ready();
    const bin = P.snapshotBinary(dir);
    const brokers = [];
    const common = ['--redis-timeout-ms', String(cfg.redisTimeoutMs), '--session-grace', String(cfg.sessionGrace),
        '--stream-maxlen', '300000', '--max-connections', '4000', '--log-level', 'WARNING'];
    for (let i = 0; i < cfg.brokers; i++) {
        const b = new P.Broker({ dir, name: `edge-broker${i}`, redisUrl: redis.url, extra: common, bin });
        b.start();
        b.up = true;
        b.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
        b.waiting = 0;
        brokers.push(b);
    }
    await Promise.all(brokers.map((b) => b.ready()));
    log(`# edges: seed ${cfg.seed}, ${cfg.durationS} s, ${cfg.clients} HTTP + ${cfg.sessionClients} WebSocket clients, ` +
        `${cfg.devices} devices, ${cfg.brokers} brokers (${brokers.map((b) => b.port).join(', ')}) on redis ${redis.port}, ` +
        `--redis-timeout-ms ${cfg.redisTimeoutMs}, --session-grace ${cfg.sessionGrace}, dir ${dir}`);

    const t0 = mono();
    const off = Date.now() - mono(); // wall clock (Redis TIME on this host) - monotonic
    const rsvOf = (r) => (r && typeof r === 'object' && r.id ? { id: r.id, devs: r.device_names || [], prio: r.priority, user: r.user_id,
        key: r.lock_key || null, s: wallMs(r.start) - off, e: wallMs(r.end) - off, state: r.state } : null);
    const deadline = t0 + cfg.durationS * 1000;
    let running = true;
    let stallActive = false;   // clients abort more often while Redis stalls
    let hushUntil = 0;         // after some stalls nobody starts anything for a while
    const live = () => running && mono() < deadline && counts.ops < cfg.maxOps;
    const hush = async () => { const ms = hushUntil - mono(); if (ms > 0) await P.delay(ms); };

    // ---- HTTP with send/answer times
    function record(op) { op.id = nextId++; h.ops.push(op); counts.ops++; return op; }
    function httpOp(op, method, p, body, { abortMs = null, hardMs } = {}) {
        const b = brokers[op.bi];
        return new Promise((resolve) => {
            const data = body ? Buffer.from(JSON.stringify(body)) : null;
            let done = false;
            op.tSend = mono();
            op.tAns = null;
            record(op);
            const finish = (status, json, err) => {
                if (done) return;
                done = true;
                clearTimeout(tHard);
                if (tAbort) clearTimeout(tAbort);
                if (err === 'aborted-by-us') { op.aborted = true; op.tGiveUp = mono(); op.status = null; op.json = null; }
                else if (err === 'timeout') { op.tGiveUp = mono(); op.status = null; op.json = null; op.err = err; }
                else { op.tAns = mono(); op.status = status; op.json = trim(json); op.err = err || null; }
                if (op.tAns !== null && json && (op.kind === 'book' || op.kind === 'bmove' || op.kind === 'bcancel')) {
                    op.rsv = rsvOf(json.reservation);
                    if (Array.isArray(json.bumped)) op.bumped = json.bumped;
                    if (json.conflict && json.conflict.id) op.conflict = json.conflict.id;
                }
                resolve(op);
            };
            const req = http.request({ host: '127.0.0.1', port: b.port, method, path: p, agent: b.agent,
                headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} }, (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => {
                    let json = null;
                    try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { /* not JSON */ }
                    finish(res.statusCode, json, null);
                });
                res.on('error', (e) => finish(null, null, e.code || e.message));
                res.on('aborted', () => finish(null, null, 'aborted'));
            });
            const tHard = setTimeout(() => { finish(null, null, 'timeout'); req.destroy(); }, hardMs);
            const tAbort = abortMs === null ? null : setTimeout(() => { finish(null, null, 'aborted-by-us'); req.destroy(); }, abortMs);
            req.on('error', (e) => finish(null, null, e.code || e.message));
            if (data) req.write(data);
            req.end();
        });
    }
    const hardFor = (wait) => (wait || 0) * 1000 + B.answerMs + 1500;
    const pickType = (r, weights) => {
        let x = r() * weights.reduce((a, w) => a + w, 0);
        for (let i = 0; i < weights.length; i++) if ((x -= weights[i]) < 0) return TYPES[i];
        return TYPES[2];
    };

    async function release(c, g, bi) {
        for (let k = 0; k < 3; k++) {
            const op = await httpOp({ kind: 'release', via: 'http', user: c.user, bi: k ? c.r.int(0, brokers.length - 1) : bi,
                devs: g.devs, refKey: g.key }, 'POST', '/api/lock/release',
            { device_name: g.devs[0], lock_key: g.key, user_id: c.user }, { hardMs: hardFor(0) });
            if (op.status && op.status < 500) return;
            await P.delay(c.r.int(20, 200));
        }
    }

    async function acquireFlow(c) {
        const r = c.r;
        const group = r() < 0.15;
        const devsOf = group ? [...devs].sort(() => r() - 0.5).slice(0, r.int(2, Math.min(3, devs.length))).sort() : [r.pick(devs)];
        const [lockType, prio] = pickType(r, [0.03, 0.1, 0.6, 0.27]);
        const long = r() < (stallActive ? 0.15 : 0.03);
        const lease = long ? 30 : Math.round((1 + r()) * 1000) / 1000;
        const w = r();
        const wait = w < 0.5 ? 0 : w < 0.68 ? 0.001 : w < 0.9 ? Math.round(r.int(100, 1000)) / 1000 : Math.round(r.int(2000, 4000)) / 1000;
        const rid = r() < 0.5 ? `${c.user}-r${c.loop}` : null;
        const abortMs = stallActive ? (r() < 0.7 ? r.int(20, cfg.redisTimeoutMs - 20) : null)
            : (rid && r() < 0.12) || r() < 0.02 ? r.int(0, 300) : null;
        if (group) counts.groups++;
        if (wait === 0.001) counts.tinyWaits++;
        if (wait >= 2) counts.longWaits++;
        if (long) counts.longLeases++;
        if (prio < 2) counts.preemptTries++;
        if (abortMs !== null) counts.aborts++;
        const body = { lock_type: lockType, user_id: c.user, timeout: lease, reason: 'edges' };
        if (group) body.device_names = devsOf; else body.device_name = devsOf[0];
        if (wait) body.wait = wait;
        if (rid) body.request_id = rid;
        const base = { kind: 'acquire', via: 'http', user: c.user, devs: devsOf, prio, lockType, lease, wait, rid };
        let bi = r.int(0, brokers.length - 1);
        if (wait) brokers[bi].waiting++;
        let op = await httpOp({ ...base, bi, attempt: 0 }, 'POST', '/api/lock/request', body, { abortMs, hardMs: hardFor(wait) });
        if (wait) brokers[bi].waiting--;
        const first = op.id;
        const firstSend0 = op.tSend;
        op.first = first;
        // retried with the same request_id until a 200 (bounded)
        for (let k = 1; rid && !known(op) && k <= 6; k++) {
            await P.delay(r.int(20, 250));
            counts.retries++;
            bi = r.int(0, brokers.length - 1);
            if (wait) brokers[bi].waiting++;
            op = await httpOp({ ...base, bi, attempt: k, first }, 'POST', '/api/lock/request', body, { hardMs: hardFor(wait) });
            if (wait) brokers[bi].waiting--;
        }
        if (!known(op) || !op.json.success || !op.json.lock_key) return;
        const g = { key: op.json.lock_key, devs: devsOf, op };
        const leaseEnd = firstSend0 + lease * 1000;
        if (op.attempt) {
            // a replayed (or late first) grant: is it held?
            for (const d of devsOf) {
                await httpOp({ kind: 'validate', via: 'http', user: c.user, bi, devs: [d], checkOf: op.id, refKey: null },
                    'POST', '/api/lock/validate', { device_name: d, fence: fenceOf(op, d) }, { hardMs: hardFor(0) });
                counts.validates++;
            }
        }
        // the work: hold a while, maybe renew or validate, then release
        // (or, 10 % of short leases, let it expire)
        const holdMs = Math.min(r.int(0, Math.round(lease * 500)), 1000);
        if (holdMs) await P.delay(holdMs);
        if (r() < 0.15 && mono() < leaseEnd) {
            counts.renews++;
            await httpOp({ kind: 'renew', via: 'http', user: c.user, bi, devs: devsOf, refKey: g.key, lease },
                'POST', '/api/lock/renew', { device_name: devsOf[0], lock_key: g.key, user_id: c.user, timeout: lease }, { hardMs: hardFor(0) });
        }
        if (r() < 0.1) {
            counts.validates++;
            await httpOp({ kind: 'validate', via: 'http', user: c.user, bi, devs: [devsOf[0]], refKey: null },
                'POST', '/api/lock/validate', { device_name: devsOf[0], fence: fenceOf(op, devsOf[0]) }, { hardMs: hardFor(0) });
        }
        if (long || r() < 0.9) await release(c, g, bi);
        else h.marks.push({ kind: 'drop', key: g.key, t: mono() }); // left to expire: stop using it now
    }

    async function httpClient(cid) {
        const c = { user: `e${cid}`, r: P.prng(cfg.seed * 7919 + cid + 1), loop: 0 };
        for (; live() && c.loop < 1e7; c.loop++) {
            await hush();
            await acquireFlow(c);
            await P.delay(c.r.int(0, 30));
        }
    }

    // ---- WebSocket session clients
    function wsOpen(bi, ms = 2000) {
        return new Promise((resolve) => {
            const b = brokers[bi];
            const s = new WebSocket(`ws://127.0.0.1:${b.port}/ws`);
            s.frames = [];
            s.waiters = [];
            s.closedAt = null;
            const t = setTimeout(() => { s.terminate(); resolve(null); }, ms);
            s.on('message', (data) => {
                let f; try { f = JSON.parse(String(data)); } catch (e) { return; }
                if (s.onFrame) s.onFrame(f);
                s.waiters = s.waiters.filter((x) => !x(f));
            });
            s.on('close', () => { s.closedAt = mono(); for (const x of s.waiters) x(null); s.waiters = []; });
            s.on('error', () => {});
            s.on('open', () => { clearTimeout(t); resolve(s); });
            s.once('close', () => { clearTimeout(t); resolve(null); });
        });
    }
    // Sends msg and resolves the first frame matching pred (null if the
    // socket closes; 'timeout' after ms).
    function wsAsk(s, msg, pred, ms) {
        return new Promise((resolve) => {
            if (s.readyState !== WebSocket.OPEN) { resolve(null); return; }
            const t = setTimeout(() => { s.waiters = s.waiters.filter((x) => x !== w); resolve('timeout'); }, ms);
            const w = (f) => { if (f === null || pred(f)) { clearTimeout(t); resolve(f); return true; } return false; };
            s.waiters.push(w);
            s.send(JSON.stringify(msg));
        });
    }
    async function wsOp(op, s, msg, pred, hardMs) {
        op.tSend = mono();
        op.tAns = null;
        record(op);
        const f = await wsAsk(s, msg, pred, hardMs);
        if (f === 'timeout') { op.tGiveUp = mono(); op.status = null; op.json = null; op.err = 'timeout'; } else if (f === null) {
            op.tAns = mono(); op.status = null; op.json = null; op.err = 'closed';
        } else { op.tAns = mono(); op.status = f.status || 200; op.json = trim(f); }
        return op;
    }

    async function sessionClient(k) {
        const r = P.prng(cfg.seed * 104729 + k + 1);
        const user = `s${k}`;
        let mid = 1;
        for (let loop = 0; live() && loop < 1e6; loop++) {
            await hush();
            const bi = r.int(0, brokers.length - 1);
            const a = await wsOpen(bi);
            if (!a) { await P.delay(r.int(50, 300)); continue; }
            const dev = r.pick(devs);
            const long = r() < 0.3;
            const lease = long ? 20 : Math.round((3 + r()) * 1000) / 1000;
            const [lockType, prio] = pickType(r, [0, 0.3, 0.7, 0]);
            const id = mid++;
            counts.sessions++;
            const op = await wsOp({ kind: 'acquire', via: 'ws', user, bi, devs: [dev], prio, lockType, lease, wait: 0, session: true },
                a, { type: 'acquire', id, device_name: dev, lock_type: lockType, user_id: user, timeout: lease, session: true },
                (f) => f.type === 'acquire_result' && f.id === id, hardFor(0));
            if (!known(op) || !op.json.success) { a.terminate(); await P.delay(r.int(20, 200)); continue; }
            const key = op.json.lock_key;
            const sid = op.json.session_id;
            op.sid = sid;
            const leaseEnd = op.tSend + lease * 1000;
            let firstDied = false;
            const watch = (s, handedOver) => {
                s.onFrame = (f) => {
                    if (f.type === 'lock_update' && f.action === 'force_released' && f.lock && f.lock.lock_key === key) {
                        h.marks.push({ kind: 'seen_end', key, t: mono(), cause: f.cause, user, dev, leaseEnd, handedOver, firstDied });
                    }
                };
                s.on('close', () => h.marks.push({ kind: 'drop', key, t: mono(), why: 'socket closed' }));
            };
            watch(a, false);
            let cur = a, curBi = bi;
            const plan = r();
            const hold = async (lo, hi) => {
                const ms = Math.min(r.int(lo, hi), Math.max(0, leaseEnd - mono() - 200));
                if (ms > 0) await P.delay(ms);
            };
            if (plan < 0.4) {
                await hold(50, 800);
            } else if (plan < 0.8) {
                await hold(0, 400);
                counts.handovers++;
                const bj = r.int(0, brokers.length - 1);
                const nb = await wsOpen(bj);
                let ok = false;
                if (nb) {
                    const id2 = mid++;
                    const at = await wsOp({ kind: 'attach', via: 'ws', user, bi: bj, devs: [dev], refKey: null },
                        nb, { type: 'attach_session', id: id2, session_id: sid }, (f) => (f.type === 'attach_session_result' ||
                            f.type === 'error') && f.id === id2, hardFor(0));
                    ok = known(at) && at.json.type === 'attach_session_result';
                    if (a.closedAt !== null) firstDied = true; // before the attach: its grace was running
                }
                if (!ok) {
                    h.marks.push({ kind: 'drop', key, t: mono(), why: 'attach failed' });
                    if (nb) nb.terminate();
                    a.terminate();
                    h.marks.push({ kind: 'sessdead', sid, t: mono() });
                    await P.delay(r.int(20, 200));
                    continue;
                }
                watch(nb, true);
                a.removeAllListeners('close');
                a.on('close', () => {});
                a.terminate(); // the old socket dies; the lock lives on nb
                cur = nb;
                curBi = bj;
                await hold(1200, 2500);
            } else {
                await hold(50, 800);
                counts.sockDeaths++;
                h.marks.push({ kind: 'drop', key, t: mono(), why: 'socket killed' });
                a.terminate();
                h.marks.push({ kind: 'sessdead', sid, t: mono() });
                await P.delay(r.int(20, 200));
                continue;
            }
            // release over the live socket (or HTTP if it died)
            if (cur.readyState === WebSocket.OPEN) {
                const id3 = mid++;
                h.marks.push({ kind: 'drop', key, t: mono(), why: 'releasing' });
                await wsOp({ kind: 'release', via: 'ws', user, bi: curBi, devs: [dev], refKey: key }, cur,
                    { type: 'release', id: id3, device_name: dev, lock_key: key, user_id: user },
                    (f) => f.type === 'release_result' && f.id === id3, hardFor(0));
            } else {
                await release({ user, r }, { key, devs: [dev] }, r.int(0, brokers.length - 1));
            }
            cur.terminate();
            h.marks.push({ kind: 'sessdead', sid, t: mono() });
            await P.delay(r.int(0, 100));
        }
    }

    // ---- the admin
    async function admin() {
        const r = P.prng(cfg.seed * 31 + 5);
        for (let i = 0; live() && i < 1e6; i++) {
            await P.delay(r.int(800, 3000));
            await hush();
            if (!live()) break;
            const d = r.pick(devs);
            counts.forces++;
            await httpOp({ kind: 'force', via: 'http', user: 'admin', bi: r.int(0, brokers.length - 1), devs: [d] },
                'POST', '/api/lock/force_release', { device_name: d, reason: 'edges admin' }, { hardMs: hardFor(0) });
        }
    }

    // ---- bookers: short windows on the same devices, random types; some
    // cancelled, some moved, some released early by their owner
    const follow = [];
    async function bookFollow(r, user, rs) {
        const x = r();
        const bi = () => r.int(0, brokers.length - 1);
        const until = (t) => P.delay(Math.max(0, t - mono())); // pacing: the window's own time
        if (x < 0.2) {
            await until(rs.s + r.int(-800, 800));
            counts.bookCancels++;
            await httpOp({ kind: 'bcancel', via: 'http', user, bi: bi(), devs: rs.devs, rid: rs.id, wait: 0 }, 'DELETE',
                `/api/reservations/${rs.id}`, null, { hardMs: hardFor(0) });
        } else if (x < 0.4) {
            const started = r() < 0.5;
            await until(started ? rs.s + r.int(50, 400) : rs.s - r.int(200, 600));
            const body = started ? { end: new Date(rs.e + off + r.int(-300, 1500)).toISOString() }
                : { start: new Date(rs.s + off + r.int(0, 800)).toISOString(), end: new Date(rs.e + off + r.int(0, 1200)).toISOString() };
            counts.bookMoves++;
            await httpOp({ kind: 'bmove', via: 'http', user, bi: bi(), devs: rs.devs, rid: rs.id, wait: 0 }, 'PATCH',
                `/api/reservations/${rs.id}`, { ...body, user_id: user }, { hardMs: hardFor(0) });
        } else if (x < 0.55 && rs.key) {
            await until(rs.s + r.int(150, 900));
            counts.bookReleases++;
            await release({ user, r }, { key: rs.key, devs: rs.devs }, bi());
        }
    }
    async function booker(k) {
        const r = P.prng(cfg.seed * 6151 + k + 1);
        const user = `b${k}`;
        for (let loop = 0; live() && loop < 1e6; loop++) {
            await P.delay(r.int(300, 1500));
            await hush();
            if (!live() || mono() > deadline - 6000) break;
            const group = r() < 0.2;
            const bdevs = group ? [...devs].sort(() => r() - 0.5).slice(0, 2).sort() : [r.pick(devs)];
            const [lockType, prio] = pickType(r, [0.05, 0.25, 0.45, 0.25]);
            const s0 = Date.now() + r.int(300, 2500);
            const e0 = s0 + r.int(800, 2500);
            const rid = `${user}-k${loop}`;
            const body = { lock_type: lockType, user_id: user, start: new Date(s0).toISOString(), end: new Date(e0).toISOString(),
                reason: 'edges booking', request_id: rid };
            if (group) body.device_names = bdevs; else body.device_name = bdevs[0];
            counts.bookTries++;
            let op = null;
            for (let a = 0; a <= 6; a++) {
                op = await httpOp({ kind: 'book', via: 'http', user, bi: r.int(0, brokers.length - 1), devs: bdevs, prio, lockType, lease: 0,
                    wait: 0, rid, attempt: a }, 'POST', '/api/reservations', body, { hardMs: hardFor(0) });
                if (op.status && op.status < 500) break;
                await P.delay(r.int(20, 250));
            }
            if (op.status === 409) counts.bookConflicts++;
            if (op.status !== 201 || !op.rsv) continue;
            counts.bookings++;
            counts.bumps += (op.bumped || []).length;
            follow.push(bookFollow(r, user, op.rsv));
        }
    }

    // ---- faults (one at a time; at least two brokers always up)
    // DEBUG SLEEP; with quiet, nobody starts a request for 3.5 s after it
    // (so nothing re-arms a broker's expiry timer by chance)
    async function stall(ms, quiet) {
        const start = mono();
        faultCount.stall++;
        log(`  fault ${((start - t0) / 1000).toFixed(1)} s: DEBUG SLEEP ${ms} ms${quiet ? ', then 3.5 s without new requests' : ''}`);
        stallActive = true;
        if (quiet) hushUntil = start + ms + 3500;
        await P.redisCmd(redis.port, ['DEBUG', 'SLEEP', String(ms / 1000)], ms + 5000).catch((e) => log('  DEBUG SLEEP: ' + e.message));
        stallActive = false;
        h.faults.push({ kind: 'stall', start, end: mono() });
        if (quiet) counts.hushes++;
    }
    const firstKinds = [0.2, 0.6, 0.9].sort(() => rng() - 0.5);
    async function faults() {
        for (let i = 0; live() && i < 100000; i++) {
            await P.delay(rng.int(cfg.faultGapMs[0], cfg.faultGapMs[1]));
            // the last fault is a stall across lease ends, just before the end
            // (then the final look at Redis shows whether expiry went on)
            if (!live() || mono() > deadline - 4000 || counts.ops >= cfg.maxOps * 0.99) break;
            // the first three faults are one of each kind (in a seeded order)
            const x = i < 3 ? firstKinds[i] : rng();
            const start = mono();
            if (x < 0.45) {
                const ms = rng.int(cfg.redisTimeoutMs + 100, cfg.maxStallMs);
                faultCount.stall++;
                await stall(ms, rng() < 0.3);
            } else {
                const kind = x < 0.7 ? 'broker-term' : 'broker-kill';
                // where waiters are queued
                const bi = brokers.map((b, j) => [b.waiting + rng() * 0.5, j]).sort((p, q) => q[0] - p[0])[0][1];
                const b = brokers[bi];
                faultCount[kind]++;
                log(`  fault ${((start - t0) / 1000).toFixed(1)} s: ${kind} ${b.name} (${b.waiting} waiting)`);
                if (kind === 'broker-term') await b.term(5000); else await b.kill();
                const down = mono();
                await P.delay(rng.int(0, 500));
                b.agent.destroy();
                b.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
                b.start();
                await b.ready(20000);
                h.faults.push({ kind, bi, start, end: mono(), down });
            }
        }
    }

    // ---- the Redis scanner and the harness lag monitor
    async function scanner() {
        for (let i = 0; running && i < 1e6; i++) {
            await P.delay(1000);
            try {
                const t = mono();
                for (const l of await readLocks(redis.port, devs)) h.scans.push({ t, dev: l.dev, key: l.key, user: l.user, rsv: l.rsv });
                if (cfg.bookers) {
                    const t2 = mono();
                    for (const x of await readBookings(redis.port, devs)) {
                        if (x.live.length > 1) h.rsvScans.push({ t: t2, dev: x.dev, live: x.live.map(([id, a, b]) => [id, a / 1000 - off, b / 1000 - off]) });
                    }
                }
            } catch (e) { /* stalled: next time */ }
        }
    }
    let lastTick = mono();
    const lagTimer = setInterval(() => {
        const t = mono();
        if (t - lastTick > 400) { h.faults.push({ kind: 'harness-lag', start: lastTick, end: t }); faultCount['harness-lag']++; }
        lastTick = t;
    }, 100);

    const progress = setInterval(() => log(`# edges ${((mono() - t0) / 1000).toFixed(0)} s: ${counts.ops} ops`), 15000);
    const scan = scanner();
    const stream = { since: null, n: 0 };
    const streamRead = (async () => {
        for (let i = 0; cfg.bookers && running && i < 1e6; i++) {
            await P.delay(3000);
            const up = brokers.filter((x) => x.alive());
            if (up.length) await readStream(up[i % up.length], h, off, stream);
        }
    })();
    const workers = [];
    for (let c = 0; c < cfg.clients; c++) workers.push(httpClient(c));
    for (let k = 0; k < cfg.sessionClients; k++) workers.push(sessionClient(k));
    workers.push(admin());
    for (let k = 0; k < (cfg.bookers || 0); k++) workers.push(booker(k));
    const fl = faults();
    await fl;
    if (mono() < deadline && counts.ops < cfg.maxOps) await P.delay(Math.max(0, deadline - 2500 - mono()));
    await stall(1200, false);
    running = false;
    await Promise.race([Promise.all(workers), P.delay(Math.max(0, deadline - mono()) + 30000)]);
    await Promise.race([Promise.all(follow), P.delay(10000)]);
    running = false;
    clearInterval(progress);
    // quiescent: every short lease ends, then the final look at Redis
    await P.delay(2000 + B.slackMs + 500); // pacing: the leases' own length
    await scan;
    clearInterval(lagTimer);
    try {
        for (const l of await readLocks(redis.port, devs, 3000)) {
            const a = ageMs(l.acq);
            const over = l.exp ? ageMs(l.exp) : null;
            h.finalScan.push({ dev: l.dev, key: l.key, user: l.user, ageMs: a, overMs: over });
        }
    } catch (e) { h.finalScan.push({ dev: '?', key: 'unreadable', user: '?', ageMs: 0, overMs: null }); }
    if (cfg.bookers) {
        await streamRead;
        const b = brokers.find((x) => x.alive()) || brokers[0];
        if (!await readStream(b, h, off, stream)) log('  reading the event stream after the run: no answer');
        h.streamEvents = stream.n;
    }
    h.endT = mono();
    h.streamT = h.endT;
    const v = analyse(h, B);
    for (const b of brokers) b.agent.destroy();
    if (INVARIANTS.some((k) => v[k].length)) {
        // the whole history, for a closer look at what was reported
        require('fs').writeFileSync(path.join(dir, 'history.json'), JSON.stringify({ cfg, h }));
    }
    return { h, v, counts, faultCount, B, redis, brokers, dir, elapsedS: (h.endT - t0) / 1000 };
}

// ------------------------------------------------------------------ self-tests

// Each mutation breaks one invariant on purpose, on devices of its own
// (so nothing else in the history changes): analyse() must then report
// more violations of exactly that invariant and no more of any other.
function mutations(h) {
    const T = (h.endT || 10000) + 20000; // after everything else
    let id = 900000000;
    const op = (o) => ({ id: id++, via: 'http', bi: 0, wait: 0, aborted: false, err: null, ...o });
    const grant = (user, dev, key, fence, tSend, tAns, lease = 1) => op({ kind: 'acquire', user, devs: [dev], prio: 2,
        lockType: 'MANUAL_OPERATOR', lease, tSend, tAns, status: 200, json: { success: true, lock_key: key, fence } });
    return {
        I1: (x) => { // a second grant while the first is believed
            x.ops.push(grant('fake1', 'selftest-1', 'fake-key-1a', 1, T, T + 5));
            x.ops.push(grant('fake2', 'selftest-1', 'fake-key-1b', 2, T + 100, T + 105));
        },
        I2: (x) => { // a replay of a released key
            const g = grant('fake3', 'selftest-2', 'fake-key-2', 1, T, T + 5, 5);
            g.rid = 'fake-rid'; g.attempt = 0; g.first = g.id;
            const rel = op({ kind: 'release', user: 'fake3', devs: ['selftest-2'], refKey: 'fake-key-2', tSend: T + 50, tAns: T + 55, status: 200, json: { success: true } });
            const rep = grant('fake3', 'selftest-2', 'fake-key-2', 1, T + 100, T + 105, 5);
            rep.rid = 'fake-rid'; rep.attempt = 1; rep.first = g.id;
            const val = op({ kind: 'validate', user: 'fake3', devs: ['selftest-2'], checkOf: rep.id, tSend: T + 106, tAns: T + 110, status: 200,
                json: { valid: false, current_fence: null } });
            rep.tSend = T + 100;
            x.ops.push(g, rel, rep, val);
            x.ops.push(op({ kind: 'release', user: 'fake3', devs: ['selftest-2'], refKey: 'fake-key-2', tSend: T + 120, tAns: T + 125, status: 404, json: { success: false } }));
        },
        I3: (x) => { // a dropped answer
            x.ops.push(op({ kind: 'validate', user: 'fake4', devs: ['selftest-3'], tSend: T, tAns: null, tGiveUp: T + 9000, status: null, json: null, err: 'timeout' }));
        },
        I4: (x) => { // a refusal while free
            x.ops.push(op({ kind: 'acquire', user: 'fake5', devs: ['selftest-4'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, tSend: T, tAns: T + 3,
                status: 200, json: { success: false, lock_key: null, message: 'Device selftest-4 is locked by nobody' } }));
        },
        S: (x) => { // a session lost under its open socket
            x.marks.push({ kind: 'seen_end', key: 'fake-key-6', t: T, cause: 'session_lost', user: 'fake6', dev: 'selftest-6', leaseEnd: T + 3000, handedOver: true });
        },
        I5: (x) => { // a lock in Redis whose key nobody got (seen for 10 s)
            x.scans.push({ t: T, dev: 'selftest-5', key: 'fake-orphan-5', user: 'ghost' }, { t: T + 10000, dev: 'selftest-5', key: 'fake-orphan-5', user: 'ghost' });
        },
        B1: (x) => { // a clean booking, and a grant to another user of its priority inside it
            fakeBooking(x, op, { id: 'rfake1', dev: 'selftest-b1', T });
            x.ops.push(grant('fake7', 'selftest-b1', 'fake-key-b1', 1, T + 900, T + 905, 0.05));
        },
        B2: (x) => { // a booking whose window passes without a start, the device free
            fakeBooking(x, op, { id: 'rfake2', dev: 'selftest-b2', T, start: false });
        },
        B3: (x) => { // a started booking whose lock is still in Redis 3 s after its end
            fakeBooking(x, op, { id: 'rfake3', dev: 'selftest-b3', T, end: false });
            x.scans.push({ t: T + 2000 + 3000, dev: 'selftest-b3', key: 'fake-rkey-rfake3', user: 'fb', rsv: 'rfake3' });
        },
        B4: (x) => { // two live bookings of one device overlapping in Redis, and one acknowledged over another
            x.rsvScans.push({ t: T, dev: 'selftest-b4', live: [['rfake4a', T + 100, T + 1000], ['rfake4b', T + 500, T + 1500]] });
            fakeBooking(x, op, { id: 'rfake5', dev: 'selftest-b5', T });
            const o = op({ kind: 'book', user: 'fc', devs: ['selftest-b5'], prio: 3, lockType: 'QUEUE_QUEUED', lease: 0, tSend: T + 50, tAns: T + 55, status: 201,
                json: { success: true } });
            o.rsv = { id: 'rfake6', devs: ['selftest-b5'], prio: 3, user: 'fc', key: 'fake-rkey-rfake6', s: T + 1500, e: T + 1800 };
            x.ops.push(o);
        },
    };
}

// A booking that behaves (created at T, window T+100..T+2000, started on
// time, its lock released at its end) on a device of its own; start: false
// leaves out the start (and the lock), end: false the end.
function fakeBooking(x, op, { id, dev, T, start = true, end = true, prio = 2, user = 'fb' }) {
    x.streamT = Math.max(x.streamT || 0, T + 10000); // the stream was read after it
    const s = T + 100, e = T + 2000, key = `fake-rkey-${id}`;
    const o = op({ kind: 'book', user, devs: [dev], prio, lockType: 'MANUAL_OPERATOR', lease: 0, tSend: T - 10, tAns: T, status: 201, json: { success: true } });
    o.rsv = { id, devs: [dev], prio, user, key, s, e };
    x.ops.push(o);
    const r = { devs: [dev], prio, user, key: null, s, e };
    x.rsvEvents.push({ action: 'reservation_created', t: T - 5, dev, id, r });
    if (start) {
        x.rsvEvents.push({ action: 'reservation_started', t: s + 3, dev, id }, { action: 'lock_start', t: s + 3, dev, id }, { action: 'acquired', t: s + 3, key });
        x.scans.push({ t: s + 500, dev, key, user, rsv: id });
        if (end) x.rsvEvents.push({ action: 'lock_end', t: e + 2, dev, id }, { action: 'reservation_ended', t: e + 2, dev, id, cause: 'reservation_end' });
    } else x.rsvEvents.push({ action: 'reservation_ended', t: e + 2, dev, id, cause: 'missed' });
}

function cloneHistory(h) {
    return { ops: h.ops.map((o) => ({ ...o })), marks: [...h.marks], scans: [...h.scans], faults: [...h.faults],
        finalScan: [...(h.finalScan || [])], endT: h.endT, streamT: h.streamT, rsvEvents: [...(h.rsvEvents || [])], rsvScans: [...(h.rsvScans || [])] };
}

// Returns [{name, ok, detail}] for each mutation against history h.
function selfTest(h, B, label) {
    const base = analyse(cloneHistory(h), B);
    const out = [];
    for (const [inv, mut] of Object.entries(mutations(h))) {
        const x = cloneHistory(h);
        mut(x);
        const v = analyse(x, B);
        const more = INVARIANTS.filter((k) => v[k].length > base[k].length);
        const ok = more.length === 1 && more[0] === inv;
        out.push({ name: `self-test ${label}: breaking ${inv} is reported as ${inv} only`, ok,
            detail: ok ? v[inv][v[inv].length - 1] : `new violations in ${JSON.stringify(more)} (want ["${inv}"]): ` +
                more.map((k) => v[k][v[k].length - 1]).join(' | ') });
    }
    return out;
}

// A small clean history (two grants in turn, a waited denial, a replay that
// validates): analyse() must find nothing in it.
function syntheticHistory() {
    let id = 1;
    const op = (o) => ({ id: id++, via: 'http', bi: 0, wait: 0, aborted: false, err: null, status: 200, ...o });
    const ops = [];
    const g1 = op({ kind: 'acquire', user: 'a', devs: ['d0'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, tSend: 0, tAns: 10, json: { success: true, lock_key: 'K1', fence: 1 } });
    const r1 = op({ kind: 'release', user: 'a', devs: ['d0'], refKey: 'K1', tSend: 500, tAns: 510, json: { success: true } });
    const g2 = op({ kind: 'acquire', user: 'b', devs: ['d0'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, wait: 1, tSend: 300, tAns: 512, json: { success: true, lock_key: 'K2', fence: 2 } });
    const d1 = op({ kind: 'acquire', user: 'c', devs: ['d0'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, tSend: 700, tAns: 705, json: { success: false, lock_key: null, message: 'locked by b' } });
    const r2 = op({ kind: 'release', user: 'b', devs: ['d0'], refKey: 'K2', tSend: 900, tAns: 910, json: { success: true } });
    const a0 = op({ kind: 'acquire', user: 'd', devs: ['d1'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 2, rid: 'r1', attempt: 0, tSend: 1000, tAns: null, tGiveUp: 1100, aborted: true, status: null, json: null });
    a0.first = a0.id;
    const a1 = op({ kind: 'acquire', user: 'd', devs: ['d1'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 2, rid: 'r1', attempt: 1, first: a0.id, tSend: 1200, tAns: 1210, json: { success: true, lock_key: 'K3', fence: 1 } });
    const v1 = op({ kind: 'validate', user: 'd', devs: ['d1'], checkOf: a1.id, tSend: 1211, tAns: 1215, json: { valid: true, current_fence: 1 } });
    const r3 = op({ kind: 'release', user: 'd', devs: ['d1'], refKey: 'K3', tSend: 1500, tAns: 1505, json: { success: true } });
    ops.push(g1, r1, g2, d1, r2, a0, a1, v1, r3);
    const x = { ops, marks: [], scans: [{ t: 100, dev: 'd0', key: 'K1', user: 'a' }, { t: 1300, dev: 'd1', key: 'K3', user: 'd' }], faults: [],
        finalScan: [], endT: 6000, rsvEvents: [], rsvScans: [] };
    // a booking on d2 that starts, is refused to an equal (not a grant), is
    // taken by a higher priority and ends on time; and a grant right after it
    fakeBooking(x, op, { id: 'r1', dev: 'd2', T: 2000 });
    ops.push(op({ kind: 'acquire', user: 'e', devs: ['d2'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, tSend: 2500, tAns: 2505,
        json: { success: false, lock_key: null, message: 'Device d2 is reserved by booking r1 (fb, MANUAL_OPERATOR) until ...' } }));
    ops.push(op({ kind: 'acquire', user: 'e', devs: ['d2'], prio: 2, lockType: 'MANUAL_OPERATOR', lease: 1, tSend: 4100, tAns: 4110,
        json: { success: true, lock_key: 'K4', fence: 3 } }));
    x.rsvEvents.push({ action: 'acquired', t: 4105, key: 'K4' });
    return x;
}

// The planted orphan: a lock hash written straight into Redis in the
// scripts' format (prelude.lua grant()); the scanner must read it and I5
// must report it.
async function plantedOrphanTest(redisPort, B) {
    const dev = 'edge-planted';
    const nowUs = Date.now() * 1000 - 60e6;
    await P.redisCmd(redisPort, ['HSET', `dl:{${dev}}:lock`, 'device_name', dev, 'lock_type', 'MANUAL_OPERATOR',
        'user_id', 'ghost', 'lock_key', '00000000-0000-4000-8000-000000000000', 'acq', String(nowUs), 'exp', '0',
        'lease', '0', 'prio', '2', 'fence', '1']);
    const finalScan = [];
    for (const l of await readLocks(redisPort, [dev], 3000)) {
        finalScan.push({ dev: l.dev, key: l.key, user: l.user, ageMs: ageMs(l.acq), overMs: null });
    }
    await P.redisCmd(redisPort, ['DEL', `dl:{${dev}}:lock`]);
    const v = analyse({ ops: [], marks: [], scans: [], faults: [], finalScan, endT: 0 }, B);
    const more = INVARIANTS.filter((k) => v[k].length > 0);
    const ok = more.length === 1 && more[0] === 'I5';
    return { name: 'self-test redis: a planted orphan lock hash is reported as I5 only', ok,
        detail: ok ? v.I5[0] : `violations ${JSON.stringify(more)} (want ["I5"]; scanned ${JSON.stringify(finalScan)})` };
}

// Two overlapping live bookings written straight into Redis in the
// scripts' format (prelude.lua: dl:rsv:<id> HASH, dl:{D}:rsv ZSET by start):
// the booking scanner must read them and B4 must report them.
async function plantedBookingTest(redisPort, B) {
    const dev = 'edge-planted-rsv';
    const t = Date.now() * 1000 + 3600e6;
    const plant = [['r990000001', t, t + 10e6], ['r990000002', t + 5e6, t + 15e6]];
    for (const [id, a, b] of plant) {
        await P.redisCmd(redisPort, ['HSET', `dl:rsv:${id}`, 'devices', dev, 'lock_type', 'MANUAL_OPERATOR', 'prio', '2', 'user_id', 'ghost',
            'lock_key', '00000000-0000-4000-8000-000000000001', 'start', String(a), 'end', String(b), 'state', 'booked']);
        await P.redisCmd(redisPort, ['ZADD', `dl:{${dev}}:rsv`, String(a), id]);
    }
    const off = Date.now() - mono();
    const rsvScans = [];
    for (const x of await readBookings(redisPort, [dev], 3000)) {
        if (x.live.length > 1) rsvScans.push({ t: mono(), dev: x.dev, live: x.live.map(([id, a, b]) => [id, a / 1000 - off, b / 1000 - off]) });
    }
    for (const [id] of plant) await P.redisCmd(redisPort, ['DEL', `dl:rsv:${id}`]);
    await P.redisCmd(redisPort, ['DEL', `dl:{${dev}}:rsv`]);
    const v = analyse({ ops: [], marks: [], scans: [], faults: [], finalScan: [], endT: 0, rsvEvents: [], rsvScans }, B);
    const more = INVARIANTS.filter((k) => v[k].length > 0);
    const ok = more.length === 1 && more[0] === 'B4';
    return { name: 'self-test redis: two overlapping bookings planted in Redis are reported as B4 only', ok,
        detail: ok ? v.B4[0] : `violations ${JSON.stringify(more)} (want ["B4"]; scanned ${JSON.stringify(rsvScans)})` };
}

module.exports = { runEdges, analyse, bounds, selfTest, syntheticHistory, plantedOrphanTest, plantedBookingTest, INVARIANTS, INV_NAMES, readLocks };
