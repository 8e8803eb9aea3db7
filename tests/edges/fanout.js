'use strict';
// tests/edges/fanout.js - the broadcast writes an event at once to a watcher
// with nothing waiting (issue 14, fan-out); a watcher with something waiting
// (a sync in flight, a queue, a partial send lws keeps) gets it behind that.
// Either way each watcher gets every lock_update once, in stream order.
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll, idCmp } = require('../lib/servers.js');
const { rawWs } = require('./_rawws.js');

function assert(c, msg) { if (!c) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

// a raw WebSocket client that can stop reading, keeping every message
const rawWatcher = port => rawWs(port, { keep: true });

const updates = frames => frames.filter(f => f.type === 'lock_update');

// The watcher's lock_updates after its sync (an initial_status first, or
// with ?since= a replay, then resume_result): none at or below the
// snapshot's event_id (or since), ids strictly increasing, and exactly the
// reference's lock_updates after that id (the reference saw the whole run).
function checkFeed(frames, ref, what, since) {
  let floor = since, got;
  if (since === undefined) {
    eq(frames[0] && frames[0].type, 'initial_status', `${what}: the first frame`);
    floor = frames[0].event_id;
    got = updates(frames.slice(1)).map(f => f.event_id);
  } else {
    const i = frames.findIndex(f => f.type === 'resume_result');
    assert(i >= 0, `${what}: a resume_result`);
    eq(frames.slice(0, i).filter(f => f.type !== 'lock_update').length, 0, `${what}: frames before resume_result other than the replay`);
    eq(frames[i].replayed, i, `${what}: resume_result's replayed`);
    const after = updates(frames.slice(i + 1));
    assert(!after.length || idCmp(after[0].event_id, frames[i].event_id) > 0,
      `${what}: live lock_update ${after.length && after[0].event_id} after resume_result ${frames[i].event_id}`);
    got = updates(frames).map(f => f.event_id);
  }
  let prev = floor;
  for (const id of got) {
    assert(idCmp(id, prev) > 0, `${what}: lock_update ${id} after ${prev} (a repeat, a step back or at/below the sync)`);
    prev = id;
  }
  const want = ref.filter(id => idCmp(id, floor) > 0);
  eq(got.length, want.length, `${what}: lock_updates after ${floor}`);
  for (let i = 0; i < want.length; i++) eq(got[i], want[i], `${what}: lock_update ${i} after ${floor}`);
}

test('ws fan-out: a watcher that stops reading (partial sends, a queue) gets every lock_update once, in order', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--ws-queue-max', '100000', '--ws-queue-max-bytes', '268435456']);
  const ref = await A.ws();
  await ref.waitFor(f => f.type === 'initial_status');
  const slow = await rawWatcher(A.port);
  await poll(() => slow.frames.length > 0, 5000, 'the slow watcher\'s initial_status');
  slow.sock.pause(); // reads nothing more: the kernel buffers fill, then lws's, then the queue
  // 40 x 64 lock_updates of ~2.4 KB: ~6 MB, more than loopback buffers take from a client that does not read
  const pad = 'p'.repeat(1000);
  const N = 40, per = 64;
  const batch = async (i) => {
    const res = await A.acquire({ device_names: Array.from({ length: per }, (_, k) => `fan-${i}-${k}`),
      lock_type: 'MANUAL_OPERATOR', user_id: 'fan', timeout: 600, reason: pad, plan_uid: pad });
    eq(res.status, 200, `batch ${i}: ${res.text.slice(0, 200)}`);
  };
  for (let i = 0; i < N; i++) await batch(i);
  await poll(() => updates(ref.frames).length >= N * per, 20000, 'the reference watcher has every lock_update');
  assert(JSON.stringify(updates(ref.frames)[0]).length > 2000, 'lock_updates are large');
  const before = updates(slow.frames).length;
  assert(before < N * per, `the slow watcher stalled (it has ${before} of ${N * per} already)`);
  // it reads again while as many lock_updates more come: they go behind its queue as it drains
  slow.sock.resume();
  for (let i = N; i < 2 * N; i++) await batch(i);
  await poll(() => updates(ref.frames).length >= 2 * N * per, 20000, 'the reference watcher has every lock_update');
  const fast = updates(ref.frames).map(f => f.event_id);
  await poll(() => updates(slow.frames).length >= fast.length || slow.closed, 20000,
    `the slow watcher catches up (it has ${updates(slow.frames).length} of ${fast.length})`);
  assert(!slow.closed, 'the slow watcher is still connected');
  checkFeed(slow.frames, fast, 'slow watcher');
  checkFeed(ref.frames, fast, 'reference watcher');
  slow.sock.destroy();
  ref.close();
}, { timeoutMs: 60000 });

test('ws fan-out: watchers connecting while events flow (snapshot or resume) get each later lock_update once, in order', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, []);
  const ref = await A.ws();
  await ref.waitFor(f => f.type === 'initial_status');
  let stop = false, cycles = 0;
  const driver = (async () => {
    for (let i = 0; !stop && i < 5000; i++) {
      const g = await A.acquire({ device_name: 'fan-flow', lock_type: 'MANUAL_OPERATOR', user_id: 'fan', timeout: 60 });
      eq(g.status, 200, `acquire ${i}`);
      eq((await A.release({ device_name: 'fan-flow', lock_key: g.body.lock_key, user_id: 'fan' })).status, 200, `release ${i}`);
      cycles++;
    }
  })();
  // each connects (and syncs) while lock_updates are broadcast: with no
  // since the snapshot comes from the read copy at once, with ?since= the
  // replay is read from Redis while the live events are held
  const ws = [], sinces = [];
  try {
    for (let i = 0; i < 24; i++) {
      const from = cycles;
      await poll(() => cycles > from + 1, 5000, 'the events flow');
      const seen = updates(ref.frames);
      const since = i % 2 && seen.length > 4 ? seen[seen.length - 4].event_id : undefined;
      ws.push(await A.ws(since ? `?since=${since}` : ''));
      sinces.push(since);
    }
  } finally {
    stop = true;
    await driver;
  }
  const last = await A.acquire({ device_name: 'fan-last', lock_type: 'MANUAL_OPERATOR', user_id: 'fan', timeout: 60 });
  eq(last.status, 200, 'the last event');
  const isLast = f => f.type === 'lock_update' && f.device_name === 'fan-last';
  await ref.waitFor(isLast, 10000);
  const fast = updates(ref.frames).map(f => f.event_id);
  for (let i = 0; i < ws.length; i++) {
    await ws[i].waitFor(isLast, 10000);
    checkFeed(ws[i].frames, fast, `watcher ${i}${sinces[i] ? ` (since ${sinces[i]})` : ''}`, sinces[i]);
    ws[i].close();
  }
  ref.close();
}, { timeoutMs: 60000 });

test('ws fan-out: a watcher that stops reading is dropped by --ws-queue-max-bytes, not kept by lws\'s buffer', async () => {
  const r = await Redis.start();
  const A = await Broker.start(r.url, ['--ws-queue-max-bytes', '262144']);
  const slow = await rawWatcher(A.port);
  await poll(() => slow.frames.length > 0, 5000, 'the slow watcher\'s initial_status');
  slow.sock.pause();
  const dropped = async () => {
    const m = /^devlock_websocket_dropped_total (\d+)/m.exec((await A.get('/metrics')).text);
    return m ? Number(m[1]) : 0;
  };
  eq(await dropped(), 0, 'none dropped before');
  const pad = 'p'.repeat(1000);
  for (let i = 0; i < 100 && await dropped() === 0; i++) { // up to ~15 MB; it stops at the drop
    const res = await A.acquire({ device_names: Array.from({ length: 64 }, (_, k) => `drop-${i}-${k}`),
      lock_type: 'MANUAL_OPERATOR', user_id: 'fan', timeout: 600, reason: pad, plan_uid: pad });
    eq(res.status, 200, `batch ${i}`);
  }
  eq(await dropped(), 1, 'the watcher that does not read is dropped');
  slow.sock.resume();
  await poll(() => slow.closed, 5000, 'its socket closed');
  eq((await A.get('/api/health/ready')).status, 200, 'broker fine');
}, { timeoutMs: 30000 });
