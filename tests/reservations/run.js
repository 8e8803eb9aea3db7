'use strict';
// tests/reservations/run.js - the acceptance tests of reservations (issue 13,
// docs/reservations.md is the contract), against a real redis-server
// (appendonly yes, appendfsync always) and two devlockd brokers A and B that
// share it, plus a third broker C with --auth-file for the roles. A booking
// is made on one broker and observed on the other:
//   overlap rules and bumping (groups included), adjacent windows;
//   start (the owner holds the booking's lock within 1 s of start; a lower
//   holder is preempted; an equal holder keeps the device and the booking
//   waits); the window's refusals (equal/lower refused naming the booking,
//   higher preempts and the booking takes the device back, the owner is not
//   refused, wait-queued requests are served after the window); end
//   (reservation_end, renewed past end, early release); cancel (owner,
//   admin, other user 403, an active booking's lock released, twice 200);
//   move and extend (PATCH); the list's filters and paging, GET by id,
//   404s, request_id retries; and faults: a broker SIGKILLed just before a
//   window's start (the other broker starts it on time) and Redis killed
//   and restarted from its AOF (no booking lost; a window that fell in the
//   outage starts after it). The tests named "contract: ..." are points where
//   the server of 6050aca/2f4fdb1 differs from the contract (SERVER_BUGS.md).
//
// Windows are short (they start 1.5-2 s ahead and last 1.5-4 s). No sleeps
// to synchronise: every wait is for a lock_update frame, an HTTP answer or a
// poll with a deadline; the only pauses model time passing (a fault just
// before a start, an outage) or bound the wait for something that must not
// happen. Last line printed: "N passed, M failed"; exit status 1 on failure.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { test, run } = require('../lib/harness.js');
const { Redis, Broker, poll, stopAll } = require('../lib/servers.js');

let redis = null;
let A = null, B = null, C = null;  // two plain brokers and one with --auth-file
let wA = null, wB = null;         // a watcher on each plain broker
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-rsv-'));

// ---- small helpers ---------------------------------------------------------

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(got, want, msg) {
  if (got !== want) throw new Error(`${msg}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`.slice(0, 900));
}
function deepEq(got, want, msg) { eq(JSON.stringify(got), JSON.stringify(want), msg); }
function pause(ms) { return new Promise(r => setTimeout(r, Math.max(0, ms))); } // models time passing, never synchronises

// RFC 3339 (Z, fraction optional) -> milliseconds since the epoch, fractional
function tsMs(iso) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso || '');
  assert(m, `bad timestamp ${JSON.stringify(iso)}`);
  return Date.parse(`${m[1]}Z`) + Number((m[2] || '0').padEnd(6, '0').slice(0, 6)) / 1000;
}
const iso = (ms) => new Date(ms).toISOString();
const HOUR = 3600e3;
const MIN = 60e3;

let devSeq = 0;
const dev = (tag) => `${tag}-${++devSeq}`;   // every test has devices of its own

// auth: users of broker C
const TOK = { owner: 'owner-token-0001', other: 'other-token-0002', root: 'root-token-0003', viewer: 'viewer-token-0004' };
const ROLES = { owner: ['operator'], other: ['operator'], root: ['admin'], viewer: ['viewer'] };
const AS = (u) => ({ authorization: `Bearer ${TOK[u]}` });

function book(b, devs, type, user, startMs, endMs, extra = {}, headers = {}) {
  const names = Array.isArray(devs) ? { device_names: devs } : { device_name: devs };
  return b.post('/api/reservations', { ...names, lock_type: type, user_id: user, start: iso(startMs), end: iso(endMs), ...extra }, headers);
}
function booked(res, msg) {
  if (!res || res.status !== 201 || !res.body || res.body.success !== true || !res.body.reservation) {
    throw new Error(`${msg}: expected 201 with a reservation, got ${res && res.status} ${res && res.text}`.slice(0, 900));
  }
  return res.body.reservation;
}
async function getR(b, id, headers = {}) {
  const r = await b.get(`/api/reservations/${encodeURIComponent(id)}`, headers);
  eq(r.status, 200, `GET /api/reservations/${id} (${r.text.slice(0, 300)})`);
  return r.body.reservation;
}
async function list(b, query, headers = {}) {
  const r = await b.get(`/api/reservations?${query}`, headers);
  eq(r.status, 200, `GET /api/reservations?${query} (${r.text.slice(0, 300)})`);
  assert(Array.isArray(r.body.reservations), 'reservations is an array');
  eq(r.body.count, r.body.reservations.length, 'count is the number listed');
  return r.body;
}
const ids = (rs) => rs.map(x => x.id).join(',');
function cancel(b, id, headers = {}) { return b.request('DELETE', `/api/reservations/${encodeURIComponent(id)}`, undefined, headers); }
function patch(b, id, fields, headers = {}) { return b.request('PATCH', `/api/reservations/${encodeURIComponent(id)}`, fields, headers); }

function acq(b, devs, type, user, extra = {}, headers = {}) {
  const names = Array.isArray(devs) ? { device_names: devs } : { device_name: devs };
  return b.acquire({ ...names, lock_type: type, user_id: user, ...extra }, headers);
}
function granted(res, msg) {
  if (!res || res.status !== 200 || !res.body || res.body.success !== true) {
    throw new Error(`${msg}: expected a grant, got ${res && res.status} ${res && res.text}`.slice(0, 900));
  }
  return res.body;
}
function denied(res, msg) {
  if (!res || res.status !== 200 || !res.body || res.body.success !== false) {
    throw new Error(`${msg}: expected a denial (200, success false), got ${res && res.status} ${res && res.text}`.slice(0, 900));
  }
  return res.body;
}
function rel(b, d, key, user) { return b.release({ device_name: d, lock_key: key, user_id: user }); }
async function lockOf(b, d) {
  const r = await b.get(`/api/locks/device/${encodeURIComponent(d)}`);
  eq(r.status, 200, `GET /api/locks/device/${d}`);
  return r.body;
}

async function watcher(b) {
  const w = await b.ws();
  await w.waitFor(f => f.type === 'initial_status', 5000);
  // the arrival time of every frame (the Watcher keeps only the frames)
  w.sock.on('message', () => { const f = w.frames[w.frames.length - 1]; if (f && f.rx === undefined) f.rx = Date.now(); });
  return w;
}
const upd = (action, d, extra = () => true) => f =>
  f.type === 'lock_update' && f.action === action && f.device_name === d && extra(f);
const ofR = (id) => f => f.reservation && f.reservation.id === id;
// waits for a frame of watcher w after index `from`, until the absolute time `untilMs`
function frameBy(w, pred, untilMs, from, what) {
  return w.waitFor(pred, Math.max(50, untilMs - Date.now()), from).catch((e) => { throw new Error(`${what}: ${e.message}`); });
}
// resolves true if no matching frame comes before the absolute time untilMs
async function noFrameBy(w, pred, untilMs, from) {
  try { await w.waitFor(pred, Math.max(1, untilMs - Date.now()), from); return false; } catch (e) { return true; }
}
const late = (t, ref) => `${(t - ref).toFixed(0)} ms`;

// the booking's lock must be its owner's, with its key, to its end
function isBookingLock(l, r, endMs, msg) {
  assert(l, `${msg}: no lock`);
  eq(l.user_id, r.user_id, `${msg}: holder`);
  eq(l.lock_key, r.lock_key, `${msg}: the lock's key is the booking's`);
  eq(l.reservation, r.id, `${msg}: the lock names its booking`);
  eq(l.lock_type, r.lock_type, `${msg}: lock_type`);
  assert(l.expires_at && Math.abs(tsMs(l.expires_at) - endMs) <= 5, `${msg}: the lease runs to the end (expires_at ${l.expires_at}, end ${iso(endMs)})`);
}

// ---- set-up -----------------------------------------------------------------

test('setup: redis-server (appendonly, appendfsync always), brokers A and B, broker C with --auth-file', async () => {
  redis = await Redis.start({ dir: fs.mkdtempSync(path.join(tmp, 'redis-')), fsync: 'always' });
  A = await Broker.start(redis.url);
  B = await Broker.start(redis.url);
  const authFile = path.join(tmp, 'auth.json');
  fs.writeFileSync(authFile, JSON.stringify({ users: Object.keys(TOK).map(u => ({ user_id: u, token: TOK[u], roles: ROLES[u] })) }));
  C = await Broker.start(redis.url, ['--auth-file', authFile]);
  wA = await watcher(A);
  wB = await watcher(B);
});

// ---- overlap rules ------------------------------------------------------------

test('overlap: a booking overlapping one of equal or lower priority is refused 409 conflict naming it (booked on A, refused on B)', async () => {
  const d = dev('ov');
  const s = Date.now() + HOUR, e = s + HOUR;
  const mark = wB.frames.length;
  const r1 = booked(await book(A, d, 'MANUAL_OPERATOR', 'alice', s, e, { reason: 'first', plan_uid: 'plan-ov' }), 'first booking');
  assert(/^r\d+$/.test(r1.id), `id is r and a number (${r1.id})`);
  deepEq(r1.device_names, [d], 'device_names');
  eq(r1.lock_type, 'MANUAL_OPERATOR', 'lock_type');
  eq(r1.priority, 2, 'priority');
  eq(r1.user_id, 'alice', 'user_id');
  assert(typeof r1.lock_key === 'string' && r1.lock_key.length >= 16, `the owner gets the lock_key (${r1.lock_key})`);
  eq(tsMs(r1.start), s, 'start as given');
  eq(tsMs(r1.end), e, 'end as given');
  eq(r1.reason, 'first', 'reason');
  eq(r1.plan_uid, 'plan-ov', 'plan_uid');
  eq(r1.state, 'booked', 'state');
  eq(r1.cause, null, 'cause');
  eq(r1.bumped_by, null, 'bumped_by');
  eq(r1.sequence, 0, 'sequence');
  const ev = await wB.waitFor(upd('reservation_created', d, ofR(r1.id)), 3000, mark);
  eq(ev.reservation.state, 'booked', 'the created event carries the booking');
  for (const [type, what] of [['MANUAL_OPERATOR', 'equal'], ['QUEUE_QUEUED', 'lower']]) {
    for (const [a, b, how] of [[s + 10 * MIN, e + 10 * MIN, 'overlapping its end'], [s - 10 * MIN, s + 1, 'overlapping its start by 1 ms'],
      [s + MIN, e - MIN, 'inside it'], [s - MIN, e + MIN, 'around it']]) {
      const r = await book(B, d, type, 'bob', a, b);
      eq(r.status, 409, `${what} priority ${how}: status (${r.text.slice(0, 300)})`);
      eq(r.body.error, 'conflict', `${what} ${how}: error`);
      assert(r.body.conflict && r.body.conflict.id === r1.id, `${what} ${how}: the conflict object is ${r1.id} (${JSON.stringify(r.body.conflict)})`);
      assert(typeof r.body.detail === 'string' && r.body.detail.includes(r1.id) && r.body.detail.includes(d),
        `${what} ${how}: the detail names the device and the booking (${r.body.detail})`);
    }
  }
  eq(ids((await list(B, `device=${d}`)).reservations), r1.id, 'nothing else was booked on the device');
  eq((await getR(B, r1.id)).state, 'booked', 'the first booking is untouched');
});

test('overlap: a lower-priority group booking that a new one overlaps on one device is bumped on all of its devices', async () => {
  const x = dev('bx'), y = dev('by');
  const s = Date.now() + HOUR, e = s + HOUR;
  const low = booked(await book(A, [x, y], 'QUEUE_QUEUED', 'qs', s, e), 'low group booking');
  const mark = wB.frames.length, markA = wA.frames.length;
  const res = await book(B, y, 'MANUAL_OPERATOR', 'op', s + 30 * MIN, e + 30 * MIN);
  const hi = booked(res, 'higher booking');
  deepEq(res.body.bumped, [low.id], 'the answer lists the bumped booking');
  const now = await getR(A, low.id);
  eq(now.state, 'bumped', 'the low booking is bumped');
  eq(now.bumped_by, hi.id, 'bumped_by names the new booking');
  eq(now.sequence, 1, 'a bump counts in sequence');
  for (const d of [x, y]) {
    const f = await wB.waitFor(upd('reservation_bumped', d, ofR(low.id)), 3000, mark);
    eq(f.bumped_by, hi.id, `reservation_bumped on ${d} names the bumper`);
    await wA.waitFor(upd('reservation_bumped', d, ofR(low.id)), 3000, markA);
  }
  eq((await list(A, `device=${x}&state=booked,waiting,active`)).count, 0, `${x} is not left half booked`);
  booked(await book(B, x, 'QUEUE_QUEUED', 'qs2', s, e), `${x} is free again for the whole window`);
  eq((await cancel(B, low.id)).status, 409, 'a bumped booking cannot be cancelled');
  const again = await book(A, y, 'QUEUE_QUEUED', 'qs', s, e);
  eq(again.status, 409, 'the lower priority cannot take the time back');
  eq(again.body.conflict && again.body.conflict.id, hi.id, 'the conflict names the higher booking');
  const stillLive = await list(A, `device=${y}&state=booked`);
  eq(ids(stillLive.reservations), hi.id, `the live booking on ${y}`);
});

test('overlap: adjacent windows [a,b) [b,c) are both allowed; a group booking conflicts on any of its devices and books none', async () => {
  const d = dev('adj');
  const a = Date.now() + 2 * HOUR, b = a + 10 * MIN, c = b + 10 * MIN;
  const r1 = booked(await book(A, d, 'MANUAL_OPERATOR', 'u1', a, b), '[a,b)');
  const r2 = booked(await book(B, d, 'MANUAL_OPERATOR', 'u2', b, c), '[b,c) right after');
  const r0 = booked(await book(B, d, 'MANUAL_OPERATOR', 'u0', a - 10 * MIN, a), '[a-10m,a) right before');
  const x = await book(A, d, 'MANUAL_OPERATOR', 'u3', b - 1, b + 1);
  eq(x.status, 409, '[b-1ms,b+1ms) overlaps both');
  const y = await book(A, d, 'MANUAL_OPERATOR', 'u3', b - 1000, b);
  eq(y.status, 409, '[b-1s,b) overlaps [a,b)');
  eq(y.body.conflict.id, r1.id, '... and names it');
  eq(ids((await list(B, `device=${d}`)).reservations), [r0.id, r1.id, r2.id].join(), 'listed in order of start');

  const p = dev('gp'), q = dev('gq');
  const rp = booked(await book(A, p, 'MANUAL_OPERATOR', 'u1', a, b), 'single booking on p');
  const g = await book(B, [q, p], 'MANUAL_OPERATOR', 'u2', a + MIN, b + MIN);
  eq(g.status, 409, 'the group overlaps the booking on p');
  eq(g.body.conflict && g.body.conflict.id, rp.id, 'the conflict names it');
  eq((await list(A, `device=${q}`)).count, 0, 'the refused group booked nothing on q');
  booked(await book(B, q, 'MANUAL_OPERATOR', 'u2', a + MIN, b + MIN), 'q alone is free');
});

// ---- start, end, preemption ---------------------------------------------------

test('start: the owner holds the booking\'s lock within 1 s of start (booked on A, seen on B); a shorter renewal lets it expire (cause expired)', async () => {
  const d = dev('st');
  const s = Date.now() + 1500, e = s + 2500;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e, { reason: 'start test' }), 'booking');
  const st = await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 3000, mark, 'reservation_started');
  assert(st.rx >= s - 5, `started before its start (${late(st.rx, s)})`);
  assert(st.rx <= s + 1000, `started ${late(st.rx, s)} after start (> 1 s)`);
  console.log(`# booked on A, the start seen on B ${late(st.rx, s)} after the start`);
  assert(st.lock && st.lock.reservation === r.id, `reservation_started carries the lock (${JSON.stringify(st.lock)})`);
  const acquired = await wB.waitFor(upd('acquired', d), 1000, mark);
  eq(acquired.lock.reservation, r.id, 'the acquired event names the booking');
  isBookingLock((await lockOf(B, d)).lock, r, e, 'on B');
  eq((await getR(B, r.id)).state, 'active', 'the booking is active');
  // the owner holds it: a renew with the booking's key works; this one is
  // shorter than the window, so the lock expires before the end
  const rn = await B.post('/api/lock/renew', { device_name: d, lock_key: r.lock_key, user_id: 'owner', timeout: 0.5 });
  eq(rn.status, 200, `the owner renews with the booking's key (${rn.text.slice(0, 200)})`);
  const exp = tsMs(rn.body.expires_at);
  assert(exp < e - 500, `the renewal ends before the window (${rn.body.expires_at})`);
  const fr = await frameBy(wB, f => f.type === 'lock_update' && f.device_name === d && ['released', 'force_released'].includes(f.action),
    exp + 1000, mark, 'the end of the lock');
  eq(`${fr.action}/${fr.cause}`, 'force_released/expired', 'the shorter renewal let it expire');
  const ended = await frameBy(wB, upd('reservation_ended', d, ofR(r.id)), exp + 1500, mark, 'reservation_ended');
  eq(ended.cause, 'expired', 'reservation_ended cause');
  const g = await getR(A, r.id);
  eq(`${g.state}/${g.cause}`, 'ended/expired', 'the booking ended, cause expired');
  eq((await lockOf(A, d)).locked, false, 'the device is free');
  granted(await acq(A, d, 'QUEUE_QUEUED', 'anyone', { timeout: 1 }), 'and no longer reserved, though its window runs on');
});

test('end: at end the lock is released with cause reservation_end, the booking ended with the same cause (seen on A)', async () => {
  const d = dev('en');
  const s = Date.now() + 1500, e = s + 1500;
  const mark = wA.frames.length;
  const r = booked(await book(B, d, 'QUEUE_EXECUTING', 'qx', s, e), 'booking');
  await frameBy(wA, upd('reservation_started', d, ofR(r.id)), s + 1000, mark, 'reservation_started within 1 s');
  isBookingLock((await lockOf(A, d)).lock, r, e, 'on A');
  const relF = await frameBy(wA, upd('released', d), e + 1000, mark, 'released within 1 s of end');
  eq(relF.cause, 'reservation_end', 'cause');
  assert(relF.rx >= e - 5, `released ${late(e, relF.rx)} before end`);
  eq(relF.lock.lock_key, r.lock_key, 'the booking\'s lock');
  const ended = await frameBy(wA, upd('reservation_ended', d, ofR(r.id)), e + 1500, mark, 'reservation_ended');
  eq(ended.cause, 'reservation_end', 'reservation_ended cause');
  const g = await getR(B, r.id);
  eq(g.state, 'ended', 'state');
  eq(g.cause, 'reservation_end', 'cause');
  const del = await cancel(A, r.id);
  eq(del.status, 409, `an ended booking cannot be cancelled (${del.text.slice(0, 200)})`);
});

test('start: a lower-priority holder is preempted at start; the owner\'s early release ends the booking (cause released)', async () => {
  const d = dev('pre');
  const low = granted(await acq(B, d, 'QUEUE_QUEUED', 'low', { timeout: 30 }), 'the low holder');
  const s = Date.now() + 1500, e = s + 3000;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
  const fr = await frameBy(wB, upd('force_released', d, f => f.lock && f.lock.lock_key === low.lock_key), s + 1000, mark, 'the low holder preempted within 1 s');
  eq(fr.cause, 'preempted', 'cause');
  await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 1000, mark, 'reservation_started within 1 s');
  isBookingLock((await lockOf(B, d)).lock, r, e, 'on B');
  const lost = await B.post('/api/lock/renew', { device_name: d, lock_key: low.lock_key, user_id: 'low' });
  assert(lost.status === 403 || lost.status === 404, `the preempted holder's key no longer renews (${lost.status})`);
  // early release by the owner
  const mark2 = wA.frames.length;
  eq((await rel(A, d, r.lock_key, 'owner')).status, 200, 'the owner releases early');
  const ended = await wA.waitFor(upd('reservation_ended', d, ofR(r.id)), 3000, mark2);
  eq(ended.cause, 'released', 'reservation_ended cause');
  const g = await getR(B, r.id);
  eq(g.state, 'ended', 'state');
  eq(g.cause, 'released', 'cause');
  const other = granted(await acq(B, d, 'QUEUE_QUEUED', 'anyone', { timeout: 5 }), 'the device is free for everyone after an early end');
  eq((await rel(B, d, other.lock_key, 'anyone')).status, 200, 'release');
});

test('start: an equal-priority holder keeps the device; the booking is waiting, then active when the holder releases (seen on A)', async () => {
  const d = dev('eq');
  const holder = granted(await acq(A, d, 'MANUAL_OPERATOR', 'eqh', { timeout: 30 }), 'the equal holder');
  const s = Date.now() + 1500, e = s + 3500;
  const mark = wA.frames.length;
  const r = booked(await book(B, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
  await frameBy(wA, upd('reservation_waiting', d, ofR(r.id)), s + 1000, mark, 'reservation_waiting within 1 s of start');
  eq((await getR(A, r.id)).state, 'waiting', 'state');
  const info = await lockOf(B, d);
  eq(info.lock && info.lock.lock_key, holder.lock_key, 'the equal holder keeps the device');
  assert(info.waiters.length >= 1 && info.waiters[0].user_id === 'owner', `the booking waits at the head of the queue (${JSON.stringify(info.waiters)})`);
  // a waiter of the same priority queued behind it stays behind it
  const queued = acq(A, d, 'MANUAL_OPERATOR', 'third', { wait: 15, timeout: 1 });
  await poll(async () => (await lockOf(B, d)).waiters.length === 2, 3000, 'the third request to queue');
  eq((await lockOf(B, d)).waiters[0].user_id, 'owner', 'the booking is ranked ahead of a waiter of its priority');
  const t = Date.now();
  const mark2 = wA.frames.length;
  eq((await rel(B, d, holder.lock_key, 'eqh')).status, 200, 'the holder releases');
  const st = await wA.waitFor(upd('reservation_started', d, ofR(r.id)), 2000, mark2);
  assert(st.rx - t <= 1000, `the booking took the device ${late(st.rx, t)} after the release`);
  isBookingLock((await lockOf(A, d)).lock, r, e, 'after the hand-over');
  eq((await getR(B, r.id)).state, 'active', 'active');
  const third = await queued;
  const tThird = Date.now();
  granted(third, 'the queued request, after the window');
  assert(tThird >= e - 5, `the queued request was served ${late(e, tThird)} before the window's end`);
  const g = await getR(A, r.id);
  eq(`${g.state}/${g.cause}`, 'ended/reservation_end', 'ended at end');
});

test('start: with --preempt-grace 1 the lower holder is warned first (preempt_requested), then preempted; the booking starts then (own Redis and broker)', async () => {
  const r2 = await Redis.start({ dir: fs.mkdtempSync(path.join(tmp, 'redis-grace-')), fsync: 'always' });
  const G = await Broker.start(r2.url, ['--preempt-grace', '1']);
  try {
    const w = await watcher(G);
    const d = dev('grace');
    const low = granted(await acq(G, d, 'QUEUE_QUEUED', 'low', { timeout: 30 }), 'the low holder');
    const s = Date.now() + 1500, e = s + 3000;
    const r = booked(await book(G, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
    const pr = await frameBy(w, upd('preempt_requested', d), s + 1000, 0, 'preempt_requested within 1 s of start');
    eq(pr.lock && pr.lock.lock_key, low.lock_key, 'the holder is warned');
    eq(pr.grace_s, 1, 'grace_s');
    eq(pr.requested_by && pr.requested_by.user_id, 'owner', 'requested_by names the booking\'s owner');
    const fr = await frameBy(w, upd('force_released', d, f => f.lock && f.lock.lock_key === low.lock_key), pr.rx + 2000, 0, 'preempted after the grace');
    eq(fr.cause, 'preempted', 'cause');
    assert(fr.rx - pr.rx >= 950, `the holder kept it for the grace (${late(fr.rx, pr.rx)})`);
    const st = await frameBy(w, upd('reservation_started', d, ofR(r.id)), fr.rx + 1000, 0, 'reservation_started after the preemption');
    assert(st.rx - fr.rx <= 1000, `started ${late(st.rx, fr.rx)} after the preemption`);
    isBookingLock((await lockOf(G, d)).lock, r, e, 'after the grace');
    w.sock.terminate();
  } finally {
    await G.stop();
    await r2.kill();
  }
});

// ---- during the window ---------------------------------------------------------

test('window: other users of equal or lower priority are refused naming the booking; a wait is served after the window; a higher priority preempts and the booking takes the device back', async () => {
  const d = dev('win');
  const s = Date.now() + 1500, e = s + 4000;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
  await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 1000, mark, 'reservation_started within 1 s');
  for (const [type, what] of [['MANUAL_OPERATOR', 'equal'], ['QUEUE_QUEUED', 'lower']]) {
    const no = denied(await acq(B, d, type, 'intruder', { timeout: 5 }), `${what} priority`);
    assert(no.message.includes(`reserved by booking ${r.id}`) && no.message.includes(d) && no.message.includes('owner'),
      `${what}: the message names the booking (${no.message})`);
  }
  const own = denied(await acq(A, d, 'MANUAL_OPERATOR', 'owner', { timeout: 5 }), 'the owner, while its booking holds the device');
  assert(!/reserved by booking/.test(own.message) && /locked by owner/.test(own.message), `the owner is refused by its lock, not the window (${own.message})`);
  const tq = Date.now();
  const queued = acq(B, d, 'MANUAL_OPERATOR', 'patient', { wait: 12, timeout: 2 }).then(x => ({ x, t: Date.now() }));
  await poll(async () => (await lockOf(A, d)).waiters.some(w => w.user_id === 'patient'), 3000, 'the waiting request to queue');
  // a higher priority preempts the booking's lock
  const mark2 = wB.frames.length;
  const m = granted(await acq(A, d, 'MAINTENANCE', 'maint', { timeout: 10 }), 'MAINTENANCE during the window');
  eq(m.preempted && m.preempted.lock_key, r.lock_key, 'it preempted the booking\'s lock');
  await poll(async () => (await getR(B, r.id)).state === 'waiting', 2000, 'the booking to wait again');
  const info = await lockOf(B, d);
  eq(info.waiters[0] && info.waiters[0].user_id, 'owner', 'the booking is at the head of the queue, ahead of the earlier waiter');
  const t = Date.now();
  eq((await rel(B, d, m.lock_key, 'maint')).status, 200, 'MAINTENANCE releases');
  const back = await wB.waitFor(upd('reservation_started', d, ofR(r.id)), 2000, mark2);
  assert(back.rx - t <= 1000, `the booking took the device back ${late(back.rx, t)} after`);
  isBookingLock((await lockOf(A, d)).lock, r, e, 'taken back');
  eq((await getR(A, r.id)).state, 'active', 'active again');
  const { x, t: tAns } = await queued;
  granted(x, 'the waiting request');
  assert(tAns >= e - 5, `the waiting request (queued ${late(tq, s)} after start) was served ${late(e, tAns)} before the end`);
  assert(tAns <= e + 1000, `... and within 1 s of the end (${late(tAns, e)})`);
  const relF = await wB.waitFor(upd('released', d, f => f.lock && f.lock.lock_key === r.lock_key), 1000, mark2);
  eq(relF.cause, 'reservation_end', 'the booking\'s lock ended at end');
});

test('window: the owner is not refused by its own window (a group booking waiting for one device); cancelling the active booking releases its lock', async () => {
  const g1 = dev('og1'), g2 = dev('og2');
  const holder = granted(await acq(B, g1, 'MANUAL_OPERATOR', 'eqh', { timeout: 30 }), 'holder of g1');
  const s = Date.now() + 1500, e = s + 3000;
  const mark = wB.frames.length;
  const r = booked(await book(A, [g1, g2], 'MANUAL_OPERATOR', 'owner', s, e), 'group booking');
  await frameBy(wB, f => f.type === 'lock_update' && f.action === 'reservation_waiting' && ofR(r.id)(f), s + 1000, mark, 'reservation_waiting');
  eq((await lockOf(A, g2)).locked, false, 'a waiting group holds none of its devices');
  const no = denied(await acq(B, g2, 'MANUAL_OPERATOR', 'intruder', { timeout: 5 }), 'another user on the free device of the window');
  assert(no.message.includes(`booking ${r.id}`), `the message names the booking (${no.message})`);
  // the owner is not refused by the window; the device is still kept for
  // the booking itself, a better-ranked waiter (semantics.md: a free device
  // is kept for the waiter ranked first)
  const mine = denied(await acq(B, g2, 'MANUAL_OPERATOR', 'owner', { timeout: 5 }), 'the owner on the free device of its window');
  assert(!/reserved by booking/.test(mine.message), `the owner is not refused by its own window (${mine.message})`);
  assert(/waiting request/.test(mine.message), `... but by its booking, waiting at the head of the queue (${mine.message})`);
  const mark2 = wA.frames.length;
  eq((await rel(A, g1, holder.lock_key, 'eqh')).status, 200, 'the holder of g1 releases');
  for (const d of [g1, g2]) await wA.waitFor(upd('reservation_started', d, ofR(r.id)), 2000, mark2);
  isBookingLock((await lockOf(B, g1)).lock, r, e, 'g1');
  isBookingLock((await lockOf(B, g2)).lock, r, e, 'g2');
  // cancel the active booking: its lock is released (reservation_cancelled)
  const mark3 = wB.frames.length;
  const del = await cancel(B, r.id);
  eq(del.status, 200, `cancel the active booking (${del.text.slice(0, 200)})`);
  eq(del.body.reservation.state, 'cancelled', 'state');
  for (const d of [g1, g2]) {
    const f = await wB.waitFor(upd('released', d, f2 => f2.lock && f2.lock.lock_key === r.lock_key), 2000, mark3);
    eq(f.cause, 'reservation_cancelled', `${d} released with cause reservation_cancelled`);
    await wB.waitFor(upd('reservation_cancelled', d, ofR(r.id)), 2000, mark3);
  }
  eq((await lockOf(A, g1)).locked, false, 'g1 free');
  eq((await lockOf(A, g2)).locked, false, 'g2 free');
  const twice = await cancel(A, r.id);
  eq(twice.status, 200, 'cancelling twice answers 200');
  eq(twice.body.reservation.state, 'cancelled', 'still cancelled');
});

test('end: a lock renewed past end is kept (no release at end); releasing it then ends the booking', async () => {
  const d = dev('rn');
  const s = Date.now() + 1500, e = s + 1500;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
  await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 1000, mark, 'reservation_started');
  const rn = await B.post('/api/lock/renew', { device_name: d, lock_key: r.lock_key, user_id: 'owner', timeout: 8 });
  eq(rn.status, 200, `renew past end (${rn.text.slice(0, 200)})`);
  const newExp = tsMs(rn.body.expires_at);
  assert(newExp > e + 5000, `the renewal runs past end (${rn.body.expires_at})`);
  const quiet = await noFrameBy(wB, f => f.type === 'lock_update' && f.device_name === d && ['released', 'force_released'].includes(f.action), e + 1200, mark);
  assert(quiet, 'the renewed lock was not released at end');
  const info = await lockOf(A, d);
  eq(info.lock && info.lock.lock_key, r.lock_key, 'still held with the booking\'s key after end');
  assert(Math.abs(tsMs(info.lock.expires_at) - newExp) <= 5, 'its lease runs as renewed');
  const mark2 = wA.frames.length;
  eq((await rel(A, d, r.lock_key, 'owner')).status, 200, 'release');
  await wA.waitFor(upd('released', d), 2000, mark2);
  const g = await getR(B, r.id);
  eq(g.state, 'ended', `the booking is ended (${JSON.stringify(g)})`);
});

// ---- cancel, move ----------------------------------------------------------------

test('cancel: owner and admin may, another user is 403, twice is 200, unknown is 404; others never see the lock_key (broker C, --auth-file)', async () => {
  const d = dev('cx');
  const s = Date.now() + HOUR, e = s + HOUR;
  const r = booked(await book(C, d, 'MANUAL_OPERATOR', 'owner', s, e, {}, AS('owner')), 'the owner books');
  assert(r.lock_key, 'the owner sees its lock_key');
  eq((await getR(C, r.id, AS('other'))).lock_key, null, 'another user does not see the lock_key');
  assert((await getR(C, r.id, AS('root'))).lock_key === r.lock_key, 'an admin sees it');
  const listed = (await list(C, `device=${d}`, AS('viewer'))).reservations;
  eq(listed.length === 1 && listed[0].lock_key, null, 'a viewer\'s list hides it');
  const vw = await C.ws(`?token=${TOK.viewer}`);
  await vw.waitFor(f => f.type === 'initial_status', 5000);
  const r9 = booked(await book(C, dev('cx'), 'MANUAL_OPERATOR', 'owner', s, e, {}, AS('owner')), 'a booking seen by a viewer');
  const seen = await vw.waitFor(f => f.type === 'lock_update' && f.action === 'reservation_created' && ofR(r9.id)(f), 3000);
  eq(seen.reservation.lock_key, null, 'a viewer\'s frame hides the lock_key');
  vw.sock.terminate();
  const cf = await book(C, d, 'MANUAL_OPERATOR', 'other', s, e, {}, AS('other'));
  eq(cf.status, 409, 'conflict');
  eq(cf.body.conflict.lock_key, null, 'the conflict object hides the lock_key');
  eq((await book(C, dev('cx'), 'MANUAL_OPERATOR', 'owner', s, e, {}, AS('other'))).status, 403, 'booking for another user_id: 403');
  eq((await book(C, dev('cx'), 'MAINTENANCE', 'owner', s, e, {}, AS('owner'))).status, 403, 'a lock type the roles do not allow: 403');
  eq((await book(C, dev('cx'), 'MANUAL_OPERATOR', 'owner', s, e)).status, 401, 'no token: 401');
  const no = await cancel(C, r.id, AS('other'));
  eq(no.status, 403, `another user cannot cancel (${no.text.slice(0, 200)})`);
  eq((await patch(C, r.id, { reason: 'mine now' }, AS('other'))).status, 403, 'another user cannot move it');
  eq((await getR(C, r.id, AS('owner'))).state, 'booked', 'still booked');
  const mark = wA.frames.length;
  const yes = await cancel(C, r.id, AS('owner'));
  eq(yes.status, 200, 'the owner cancels');
  eq(yes.body.success, true, 'success');
  eq(yes.body.reservation.state, 'cancelled', 'state');
  eq(yes.body.reservation.sequence, 1, 'a cancel counts in sequence');
  await wA.waitFor(upd('reservation_cancelled', d, ofR(r.id)), 3000, mark);
  const again = await cancel(C, r.id, AS('owner'));
  eq(again.status, 200, 'a retried DELETE answers 200');
  eq(again.body.reservation.sequence, 1, 'and changes nothing');
  const r2 = booked(await book(C, d, 'MANUAL_OPERATOR', 'owner', s, e, {}, AS('owner')), 'the time is free again');
  const adm = await cancel(C, r2.id, AS('root'));
  eq(adm.status, 200, 'an admin cancels');
  eq(adm.body.reservation.state, 'cancelled', 'state');
  eq((await cancel(C, 'r999999999', AS('root'))).status, 404, 'unknown id: 404');
  // without --auth-file anyone may cancel or move, but a user_id given must be the owner's
  const r3 = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'a booking on a broker without auth');
  eq((await B.request('DELETE', `/api/reservations/${r3.id}?user_id=other`)).status, 403, 'DELETE ?user_id=another user: 403');
  eq((await patch(B, r3.id, { reason: 'x', user_id: 'other' })).status, 403, 'PATCH with another user_id: 403');
  eq((await patch(B, r3.id, { reason: 'mine', user_id: 'owner' })).status, 200, 'PATCH with the owner\'s user_id');
  eq((await B.request('DELETE', `/api/reservations/${r3.id}?user_id=owner`)).status, 200, 'DELETE ?user_id=owner');
  eq((await cancel(A, 'r999999999')).status, 404, 'unknown id without auth: 404');
});

test('move: PATCH into free time is allowed (reservation_updated), into any other live booking 409; an active booking\'s end moves its lock\'s lease', async () => {
  const d = dev('mv');
  const h = Date.now() + 3 * HOUR;
  const r1 = booked(await book(A, d, 'MANUAL_OPERATOR', 'u1', h, h + 10 * MIN), 'r1');
  const r2 = booked(await book(A, d, 'QUEUE_QUEUED', 'u2', h + 20 * MIN, h + 30 * MIN), 'r2 (lower priority)');
  const mark = wB.frames.length;
  const mv = await patch(B, r1.id, { start: iso(h + 10 * MIN), end: iso(h + 20 * MIN), reason: 'moved' });
  eq(mv.status, 200, `move into the free gap (${mv.text.slice(0, 200)})`);
  eq(tsMs(mv.body.reservation.start), h + 10 * MIN, 'new start');
  eq(tsMs(mv.body.reservation.end), h + 20 * MIN, 'new end');
  eq(mv.body.reservation.reason, 'moved', 'reason');
  eq(mv.body.reservation.sequence, 1, 'a move counts in sequence');
  await wB.waitFor(upd('reservation_updated', d, ofR(r1.id)), 3000, mark);
  const bad = await patch(A, r1.id, { end: iso(h + 25 * MIN) });
  eq(bad.status, 409, `extending into a lower-priority booking is refused (${bad.text.slice(0, 200)})`);
  eq(bad.body.error, 'conflict', 'error');
  eq((await getR(A, r2.id)).state, 'booked', 'the lower booking is not bumped by a move');
  eq(tsMs((await getR(B, r1.id)).end), h + 20 * MIN, 'the refused move changed nothing');
  eq((await patch(A, r1.id, { end: iso(h + 5 * MIN) })).status >= 400, true, 'an end before the start is refused');
  eq((await patch(A, 'r999999999', { reason: 'x' })).status, 404, 'unknown id: 404');

  // extend an active booking
  const x = dev('ext');
  const s = Date.now() + 1500, e = s + 1500, e2 = s + 3000;
  const markX = wB.frames.length;
  const r = booked(await book(A, x, 'MANUAL_OPERATOR', 'owner', s, e), 'short booking');
  await frameBy(wB, upd('reservation_started', x, ofR(r.id)), s + 1000, markX, 'reservation_started');
  const ps = await patch(B, r.id, { start: iso(s + 500) });
  assert(ps.status >= 400 && ps.status < 500, `start can no longer change once the window started (${ps.status})`);
  const ext = await patch(B, r.id, { end: iso(e2) });
  eq(ext.status, 200, `extend the active booking (${ext.text.slice(0, 200)})`);
  eq(tsMs(ext.body.reservation.end), e2, 'new end');
  isBookingLock((await lockOf(A, x)).lock, r, e2, 'the lock\'s lease moved to the new end');
  const relF = await frameBy(wB, upd('released', x), e2 + 1000, markX, 'released at the new end');
  eq(relF.cause, 'reservation_end', 'cause');
  assert(relF.rx >= e2 - 5, `released ${late(e2, relF.rx)} before the new end`);
});

// ---- reading -----------------------------------------------------------------

test('list: filters by device, user, from/to and state; pages with limit and cursor; GET by id; 404s; a request_id retry gets the same booking', async () => {
  const L1 = dev('l1'), L2 = dev('l2'), u1 = `lu1-${devSeq}`, u2 = `lu2-${devSeq}`;
  const base = Date.now() + 5 * HOUR;
  const b1 = booked(await book(A, L1, 'MANUAL_OPERATOR', u1, base, base + 10 * MIN, { reason: 'b1' }), 'b1');
  const b2 = booked(await book(B, L1, 'MANUAL_OPERATOR', u2, base + 10 * MIN, base + 20 * MIN), 'b2');
  const b3 = booked(await book(A, L2, 'QUEUE_EXECUTING', u1, base + 5 * MIN, base + 15 * MIN), 'b3');
  const b4 = booked(await book(B, L2, 'MANUAL_OPERATOR', u2, base + 20 * MIN, base + 30 * MIN), 'b4');
  const b5 = booked(await book(A, L1, 'MANUAL_OPERATOR', u1, base + 30 * MIN, base + 40 * MIN), 'b5');
  eq((await cancel(B, b5.id)).status, 200, 'cancel b5');
  eq(ids((await list(B, `device=${L1}`)).reservations), [b1.id, b2.id, b5.id].join(), 'device=L1, every state, in order of start');
  eq(ids((await list(B, `user=${u1}`)).reservations), [b1.id, b3.id, b5.id].join(), 'user=u1');
  eq(ids((await list(A, `device=${L2}&user=${u2}`)).reservations), b4.id, 'device and user');
  eq(ids((await list(A, `device=${L1}&state=booked`)).reservations), [b1.id, b2.id].join(), 'state=booked');
  eq(ids((await list(A, `device=${L1}&state=cancelled`)).reservations), b5.id, 'state=cancelled');
  eq(ids((await list(A, `device=${L1}&state=booked,cancelled`)).reservations), [b1.id, b2.id, b5.id].join(), 'state=booked,cancelled');
  const win = (a, b) => `from=${encodeURIComponent(iso(a))}&to=${encodeURIComponent(iso(b))}`;
  eq(ids((await list(B, `device=${L1}&${win(base + 10 * MIN, base + 20 * MIN)}`)).reservations), b2.id,
    'from/to: [from,to) overlap, adjacent windows excluded');
  eq(ids((await list(B, `user=${u1}&${win(base + 9 * MIN, base + 31 * MIN)}`)).reservations), [b1.id, b3.id, b5.id].join(), 'from/to with user');
  eq((await list(B, `user=${u1}&${win(base - 2 * HOUR, base - HOUR)}`)).count, 0, 'a window before all of them');
  // paging
  const seen = [];
  let cursor = null, pages = 0;
  for (; pages < 10; pages++) {
    const p = await list(A, `user=${u1}&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert(p.count <= 1, `limit=1 gives at most one (${p.count})`);
    seen.push(...p.reservations.map(x => x.id));
    cursor = p.next_cursor;
    if (cursor === null) break;
    assert(typeof cursor === 'string' && cursor.length, `next_cursor (${JSON.stringify(cursor)})`);
  }
  eq(seen.join(), [b1.id, b3.id, b5.id].join(), 'paging visits every booking once, in order');
  assert(pages <= 3, `the last page has next_cursor null (${pages + 1} pages)`);
  const p2 = await list(B, `user=${u2}&limit=5`);
  eq(p2.next_cursor, null, 'one page: next_cursor null');
  assert(typeof p2.timestamp === 'string', 'timestamp');
  // by id, on the other broker: the same object
  const g1 = await getR(B, b1.id);
  for (const k of ['id', 'device_names', 'lock_type', 'priority', 'user_id', 'start', 'end', 'reason', 'plan_uid', 'state', 'created_at', 'sequence']) {
    deepEq(g1[k], b1[k], `GET ${b1.id}: ${k}`);
  }
  for (const p of ['/api/reservations/r999999999', '/api/reservations/nonsense']) eq((await A.get(p)).status, 404, `GET ${p}`);
  // request_id: a retry on the other broker gets the first answer again
  const L3 = dev('l3');
  const body = [L3, 'MANUAL_OPERATOR', u1, base, base + 10 * MIN, { request_id: 'retry-1' }];
  const first = await book(A, ...body);
  const f1 = booked(first, 'first try');
  const f2 = booked(await book(B, ...body), 'the retry');
  eq(f2.id, f1.id, 'the same booking');
  eq(f2.lock_key, f1.lock_key, 'the same lock_key');
  eq((await list(A, `device=${L3}`)).count, 1, 'booked once');
  const other = await book(B, L3, 'MANUAL_OPERATOR', u2, base, base + 10 * MIN, { request_id: 'retry-1' });
  eq(other.status, 409, 'the same request_id from another user is its own request (and conflicts)');
  // input checks
  eq((await book(A, dev('bad'), 'MANUAL_OPERATOR', u1, base + MIN, base)).status >= 400, true, 'end before start');
  eq((await book(A, dev('bad'), 'MANUAL_OPERATOR', u1, Date.now() - 2 * HOUR, Date.now() - HOUR)).status >= 400, true, 'end in the past');
  eq((await book(A, dev('bad'), 'NO_SUCH_TYPE', u1, base, base + MIN)).status, 422, 'unknown lock_type');
  const many = Array.from({ length: 65 }, (_, i) => `many-${devSeq}-${i}`);
  eq((await book(A, many, 'MANUAL_OPERATOR', u1, base, base + MIN)).status >= 400, true, '65 devices');
  booked(await book(A, many.slice(0, 64), 'MANUAL_OPERATOR', u1, base + 50 * MIN, base + 51 * MIN), '64 devices');
  eq((await book(A, dev('bad'), 'MANUAL_OPERATOR', u1, base, base + 367 * 24 * HOUR)).status >= 400, true, 'a window longer than 366 days');
  eq((await book(A, dev('bad'), 'MANUAL_OPERATOR', u1, Date.now() + 11 * 365 * 24 * HOUR, Date.now() + 11 * 365 * 24 * HOUR + HOUR)).status >= 400,
    true, 'a start more than 10 years ahead');
  // times as numbers of seconds and with a +hh:mm offset
  const n = booked(await A.post('/api/reservations', { device_name: dev('num'), lock_type: 'MANUAL_OPERATOR', user_id: u1,
    start: base / 1000, end: base / 1000 + 60.5 }), 'times as seconds since the epoch');
  eq(tsMs(n.start), base, 'numeric start');
  eq(tsMs(n.end), base + 60500, 'numeric end with a fraction');
  const off = (ms) => new Date(ms + 2 * HOUR).toISOString().replace('Z', '+02:00');
  const o = booked(await A.post('/api/reservations', { device_name: dev('tz'), lock_type: 'MANUAL_OPERATOR', user_id: u1,
    start: off(base), end: off(base + MIN) }), 'times with a +02:00 offset');
  eq(tsMs(o.start), base, 'offset start in UTC');
  eq(tsMs(o.end), base + MIN, 'offset end in UTC');
});

test('start: a start in the past means now: the booking starts at once (and ends at its end)', async () => {
  const d = dev('past');
  const e = Date.now() + 1500;
  const mark = wB.frames.length;
  const t = Date.now();
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', t - 60e3, e), 'booking from a minute ago');
  assert(Math.abs(tsMs(r.start) - t) < 1000, `its start is now (${r.start})`);
  const st = await frameBy(wB, upd('reservation_started', d, ofR(r.id)), t + 2000, mark, 'reservation_started');
  assert(st.rx - t <= 1000, `started ${late(st.rx, t)} after it was booked`);
  isBookingLock((await lockOf(B, d)).lock, r, e, 'at once');
  const relF = await frameBy(wB, upd('released', d), e + 1000, mark, 'released at end');
  eq(relF.cause, 'reservation_end', 'cause');
});

// ---- faults ------------------------------------------------------------------------

test('fault: broker A SIGKILLed just before a window\'s start: the lock still starts within 1 s of start (B\'s timer)', async () => {
  const d = dev('kill');
  const s = Date.now() + 2000, e = s + 2000;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booked on A');
  await pause(s - 300 - Date.now()); // the fault comes 300 ms before the start
  await A.stop('SIGKILL');
  const st = await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 3000, mark, 'reservation_started with A dead');
  console.log(`# with A killed 300 ms before the start, B started the booking ${late(st.rx, s)} after its start`);
  assert(st.rx <= s + 1000, `started ${late(st.rx, s)} after start with A dead (> 1 s)`);
  isBookingLock((await lockOf(B, d)).lock, r, e, 'on B');
  const relF = await frameBy(wB, upd('released', d), e + 1000, mark, 'released at end, with A still dead');
  eq(relF.cause, 'reservation_end', 'cause');
  A.args[A.args.indexOf('--port') + 1] = String(A.port);
  await A.spawn();
  wA = await watcher(A);
});

test('fault: Redis SIGKILLed and restarted from its AOF: every acknowledged booking is listed again with the same fields; a window that fell in the outage starts after it', async () => {
  const user = `aof-${devSeq}`;
  const base = Date.now() + 6 * HOUR;
  const made = [];
  for (let i = 0; i < 8; i++) {
    const devs = i % 3 === 0 ? [dev('aof'), dev('aof')] : dev('aof');
    const type = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'][i % 4];
    made.push(booked(await book(i % 2 ? A : B, devs, type, user, base + i * 10 * MIN, base + (i + 1) * 10 * MIN,
      { reason: `aof ${i} ✓ "quoted"`, plan_uid: `plan-${i}`, request_id: `aof-${i}` }), `booking ${i}`));
  }
  eq((await cancel(A, made[1].id)).status, 200, 'one cancelled');
  const moved = await patch(B, made[2].id, { end: iso(base + 3 * 10 * MIN - MIN), reason: 'moved' });
  eq(moved.status, 200, 'one moved');
  // the window that falls in the outage
  const d = dev('aofw');
  const s = Date.now() + 1200, e = s + 4000;
  const w = booked(await book(A, d, 'MANUAL_OPERATOR', user, s, e), 'the outage booking');
  const before = new Map();
  for (const x of (await list(B, `user=${user}&from=${encodeURIComponent(iso(Date.now() - HOUR))}&limit=1000`)).reservations) before.set(x.id, x);
  eq(before.size, made.length + 1, 'everything listed before the outage');
  await redis.kill('SIGKILL');
  await pause(s + 600 - Date.now()); // the outage covers the start
  await redis.restart();
  const tUp = Date.now();
  await poll(async () => (await A.get('/api/health/ready')).status === 200 && (await B.get('/api/health/ready')).status === 200,
    10000, 'both brokers ready again');
  const after = (await list(A, `user=${user}&from=${encodeURIComponent(iso(Date.now() - 2 * HOUR))}&limit=1000`)).reservations;
  eq(ids(after), [...before.keys()].join(), 'every acknowledged booking is listed again, in the same order');
  for (const x of after) {
    if (x.id === w.id) continue;
    deepEq(x, before.get(x.id), `${x.id} after the restart`);
  }
  const fresh = await getR(B, made[0].id);
  deepEq(fresh, before.get(made[0].id), 'GET by id after the restart');
  await poll(async () => (await getR(B, w.id)).state === 'active', 4000, 'the outage booking to start after the restart');
  const tStart = Date.now();
  // B reads devices from its copy: a start made by A's timer reaches it with the stream
  isBookingLock(await poll(async () => (await lockOf(B, d)).lock, 2000, 'the booking\'s lock on B'), w, e, 'after the outage');
  console.log(`# the outage booking started ${late(tStart, tUp)} after Redis was up again (${late(tStart, s)} after its start)`);
  const ids2 = new Set(after.map(x => x.id));
  const next = booked(await book(B, dev('aofn'), 'MANUAL_OPERATOR', user, base, base + MIN), 'a new booking after the restart');
  assert(!ids2.has(next.id) && Number(next.id.slice(1)) > Math.max(...[...ids2].map(x => Number(x.slice(1)))),
    `ids are never used twice: ${next.id} after ${[...ids2].join(',')}`);
});

// ---- contract points the server of 6050aca misses (SERVER_BUGS.md) ----------------

test('contract: a retry with the same request_id after a 409 gets the 409 again and books nothing', async () => {
  const d = dev('rid409');
  const h = Date.now() + 7 * HOUR;
  const x = booked(await book(A, d, 'MANUAL_OPERATOR', 'u1', h, h + 10 * MIN), 'the first booking');
  const first = await book(B, d, 'MANUAL_OPERATOR', 'u2', h, h + 10 * MIN, { request_id: 'after-409' });
  eq(first.status, 409, 'refused');
  eq((await cancel(A, x.id)).status, 200, 'the conflicting booking is cancelled');
  const retry = await book(A, d, 'MANUAL_OPERATOR', 'u2', h, h + 10 * MIN, { request_id: 'after-409' });
  eq(retry.status, 409, `the retry gets the first answer again (${retry.text.slice(0, 160)})`);
  eq((await list(B, `device=${d}&state=booked`)).count, 0, 'and books nothing new');
});

test('contract: a booking preempted during its window and still waiting at its end ends with cause reservation_end, not missed', async () => {
  const d = dev('pmiss');
  const s = Date.now() + 1500, e = s + 1500;
  const mark = wB.frames.length;
  const r = booked(await book(A, d, 'MANUAL_OPERATOR', 'owner', s, e), 'booking');
  await frameBy(wB, upd('reservation_started', d, ofR(r.id)), s + 1000, mark, 'reservation_started');
  const m = granted(await acq(B, d, 'MAINTENANCE', 'maint', { timeout: 10 }), 'MAINTENANCE preempts it');
  const ended = await frameBy(wB, upd('reservation_ended', d, ofR(r.id)), e + 1500, mark, 'reservation_ended at end');
  eq((await rel(A, d, m.lock_key, 'maint')).status, 200, 'release MAINTENANCE');
  eq(ended.cause, 'reservation_end', 'it had its devices: not missed');
});

test('contract: PATCH refuses a start more than 10 years ahead, as POST does', async () => {
  const h = Date.now() + 8 * HOUR;
  const r = booked(await book(A, dev('p10y'), 'MANUAL_OPERATOR', 'u1', h, h + MIN), 'booking');
  const far = Date.now() + 11 * 365 * 24 * HOUR;
  const p = await patch(B, r.id, { start: iso(far), end: iso(far + MIN) });
  assert(p.status >= 400 && p.status < 500, `a move 11 years ahead is refused (${p.status} ${p.text.slice(0, 160)})`);
});

(async () => {
  const failed = await run({
    onFail: async (name) => {
      for (const [label, b] of [['A', A], ['B', B], ['C', C]]) {
        if (b) console.log(`--- devlockd ${label} log (last 3000 chars) after "${name}" ---\n${b.log().slice(-3000)}`);
      }
      if (redis && redis.proc && redis.proc.logFile) {
        try { console.log(`--- redis log ---\n${fs.readFileSync(redis.proc.logFile, 'utf8').slice(-1200)}`); } catch (e) { /* none */ }
      }
    },
  });
  for (const w of [wA, wB]) if (w) w.sock.terminate();
  await stopAll();
  process.exitCode = failed ? 1 : 0;
})();
