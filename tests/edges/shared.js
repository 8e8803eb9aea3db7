'use strict';
// tests/edges/shared.js - issue 14, "serialise once, send many": the full
// status listing (GET /api/locks/status, WebSocket initial_status and
// get_status) is built once per version of the read copy and shared by
// every reader. These tests check that the shared answer is byte for byte
// the unshared one (the paged read, built per request) across changes, that
// a lease ending with no event yet drops the lock from it, that many
// watchers connecting at once all get a whole, correct initial_status (sent
// in fragments), and that with --auth-file each viewer sees only its own
// lock keys.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll, withServers } = require('../lib/servers.js');

function assert(c, msg) { if (!c) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

// The listing the shared path must produce, from the paged read (built per
// request, the unshared path) and the answer's own timestamp: the same
// lock texts in the same order, total_count = how many are listed.
async function expected(b, timestamp) {
  const page = await b.get('/api/locks/status?limit=10000');
  eq(page.status, 200, 'paged read');
  const locks = page.text.slice('{"locks":'.length, page.text.indexOf(',"total_count":'));
  return `{"locks":${locks},"total_count":${page.body.locks.length},"timestamp":${JSON.stringify(timestamp)}}`;
}

// GET /api/locks/status, checked byte for byte against the paged read (no
// change happens between the two reads in these tests).
async function status(b, headers = {}) {
  const r = await b.get('/api/locks/status', headers);
  eq(r.status, 200, 'status');
  eq(r.text, await expected(b, r.body.timestamp), 'the shared answer is the unshared one');
  eq(Number(r.headers['content-length']), Buffer.byteLength(r.text), 'Content-Length');
  return r;
}

const names = (r) => r.body.locks.map(l => l.device_name).join(',');
const lock = (dev, extra = {}) => ({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'u1', timeout: 600, ...extra });

const withBroker = (args, fn) => withServers((redis, b) => fn(b, redis), { brokerArgs: args });

test('shared status: byte-identical to the unshared read across grants and releases', () => withBroker([], async (b) => {
  eq(names(await status(b)), '', 'empty table');
  for (const d of ['sh-b', 'sh-a', 'sh-c']) {
    const g = await b.acquire(lock(d));
    assert(g.body && g.body.success, `granted ${d}: ${g.text}`);
  }
  const one = await status(b);
  eq(names(one), 'sh-a,sh-b,sh-c', 'three locks, in name order');
  const again = await status(b); // served from the shared listing
  eq(names(again), 'sh-a,sh-b,sh-c', 'the same listing read twice');
  const r = await b.release({ device_name: 'sh-b', user_id: 'u1', lock_key: one.body.locks[1].lock_key });
  assert(r.body && r.body.success, `released: ${r.text}`);
  eq(names(await status(b)), 'sh-a,sh-c', 'a release between two reads changes the answer');
  const g = await b.acquire(lock('sh-d'));
  assert(g.body && g.body.success, `granted: ${g.text}`);
  eq(names(await status(b)), 'sh-a,sh-c,sh-d', 'a grant between two reads changes the answer');
  // a renewal changes a listed lock's text (expires_at), not the names
  const before = (await status(b)).body.locks[2].expires_at;
  const key = (await status(b)).body.locks[2].lock_key;
  await poll(async () => {
    const n = await b.post('/api/lock/renew', { device_name: 'sh-d', user_id: 'u1', lock_key: key, timeout: 900 });
    return n.body && n.body.success;
  }, 5000, 'the renewal');
  const after = await status(b);
  assert(after.body.locks[2].expires_at !== before, `the renewed lease is listed: ${after.body.locks[2].expires_at}`);
  // WebSocket get_status carries the same data
  const w = await b.ws();
  const init = await w.waitFor(f => f.type === 'initial_status');
  eq(JSON.stringify(init.data.locks), JSON.stringify(after.body.locks), 'initial_status lists the same locks');
  w.send({ type: 'get_status', id: 7 });
  const gs = await w.waitFor(f => f.type === 'status_response' && f.id === 7);
  eq(JSON.stringify(gs.data.locks), JSON.stringify(after.body.locks), 'status_response lists the same locks');
  eq(gs.data.total_count, 3, 'status_response total_count');
  w.close();
}));

// A lease that ends drops its lock from the listing at once, even when its
// expiry event has not come (here it never comes: the lock is written into
// Redis without its dl:expiry entry, so no broker reaps it), as the
// unshared read did. A listing kept until the next change would list it on.
test('shared status: a lease ending with no event drops the lock from the answer', async () => {
  const redis = await Redis.start();
  let b;
  try {
    const now = Date.now() * 1000, end = now + 2000000;
    const hset = (dev, exp) => redis.cli('HSET', `dl:{${dev}}:lock`, 'device_name', dev, 'lock_type', 'MANUAL_OPERATOR',
      'user_id', 'bulk', 'lock_key', `key-${dev}`, 'acq', String(now), 'exp', String(exp), 'lease', exp ? '2' : '0',
      'prio', '2', 'fence', '1');
    hset('sx-long', 0);
    hset('sx-short', end);
    for (const d of ['sx-long', 'sx-short']) {
      redis.cli('SET', `dl:{${d}}:fence`, '1');
      redis.cli('ZADD', 'dl:held', '0', d);
    }
    b = await Broker.start(redis.url, []);
    let first;
    await poll(async () => { first = await b.get('/api/locks/status'); return first.status === 200; }, 5000, 'a status');
    if (Date.parse(first.body.timestamp) * 1000 < end - 500000) { // (a slow start leaves no time to check it)
      eq(names(first), 'sx-long,sx-short', 'both listed before the lease end');
      eq(names(await status(b)), 'sx-long,sx-short', 'read again (shared)');
    }
    await poll(async () => !names(await b.get('/api/locks/status')).includes('sx-short'), 6000,
      'the ended lease to leave the listing', 50);
    const r = await status(b);
    assert(Date.parse(r.body.timestamp) * 1000 >= end - 1000, `listed until its lease end: ${r.body.timestamp}`);
    eq(names(r), 'sx-long', 'only the live lock');
    eq(r.body.total_count, 1, 'total_count');
    eq(redis.cli('ZSCORE', 'dl:held', 'sx-short'), '0', 'no event removed it');
  } finally {
    if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
});

test('shared initial_status: 300 watchers connecting at once each get the whole listing', () => withBroker([], async (b) => {
  // 400 locks: the frame is several 16 KB fragments
  for (let i = 0; i < 400; i++) {
    const g = await b.acquire(lock(`fw${String(i).padStart(4, '0')}`));
    assert(g.body && g.body.success, `granted: ${g.text}`);
  }
  const ref = await status(b);
  const want = JSON.stringify(ref.body.locks);
  assert(ref.text.length > 3 * 16384, `the listing spans fragments: ${ref.text.length} bytes`);
  const ws = await Promise.all(Array.from({ length: 300 }, () => b.ws()));
  const inits = await Promise.all(ws.map(w => w.waitFor(f => f.type === 'initial_status', 20000)));
  for (const f of inits) {
    eq(JSON.stringify(f.data.locks), want, 'initial_status lists every lock');
    eq(f.data.total_count, 400, 'total_count');
    assert(typeof f.event_id === 'string' && /^\d+-\d+$/.test(f.event_id), `event_id: ${f.event_id}`);
  }
  // live events follow the fragmented frame, whole
  const g = await b.acquire(lock('fw-live'));
  assert(g.body.success, 'granted');
  await Promise.all(ws.map(w => w.waitFor(f => f.type === 'lock_update' && f.device_name === 'fw-live', 10000)));
  await Promise.all(ws.map(w => w.close()));
}), { timeoutMs: 90000 });

test('shared status with --auth-file: each viewer sees only its own lock keys', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-shared-'));
  const auth = path.join(tmp, 'auth.json');
  const TOK = { ann: 'ann-token-0001', ben: 'ben-token-0002', root: 'root-token-0003' };
  fs.writeFileSync(auth, JSON.stringify({ users: [
    { user_id: 'ann', token: TOK.ann, roles: ['operator'] },
    { user_id: 'ben', token: TOK.ben, roles: ['operator'] },
    { user_id: 'root', token: TOK.root, roles: ['admin'] }] }));
  const as = (u) => ({ authorization: `Bearer ${TOK[u]}` });
  try {
    await withBroker(['--auth-file', auth], async (b) => {
      for (const [u, d] of [['ann', 'sa-1'], ['ben', 'sa-2'], ['ann', 'sa-3']]) {
        const g = await b.acquire(lock(d, { user_id: u }), as(u));
        assert(g.body && g.body.success, `granted ${d}: ${g.text}`);
      }
      for (let round = 0; round < 2; round++) { // the second round reads the shared listing again
        const root = await b.get('/api/locks/status', as('root'));
        assert(root.body.locks.every(l => typeof l.lock_key === 'string'), 'the admin sees every key');
        for (const u of ['ann', 'ben']) {
          const r = await b.get('/api/locks/status', as(u));
          eq(r.status, 200, `${u}'s status`);
          for (const l of r.body.locks)
            eq(typeof l.lock_key === 'string', l.user_id === u, `${u} sees the key of ${l.device_name} (${l.user_id})`);
          const w = await b.ws('', as(u));
          const init = await w.waitFor(f => f.type === 'initial_status');
          for (const l of init.data.locks)
            eq(typeof l.lock_key === 'string', l.user_id === u, `${u}'s initial_status: the key of ${l.device_name}`);
          w.close();
        }
        const w = await b.ws('', as('root'));
        const init = await w.waitFor(f => f.type === 'initial_status');
        eq(JSON.stringify(init.data.locks), JSON.stringify(root.body.locks), 'the admin\'s initial_status: every key');
        w.close();
      }
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
