'use strict';
// tests/webhooks/run.js - webhook delivery (docs/webhooks.md) against a real
// redis-server and real devlockd processes on loopback, with a receiver
// (node http) in this file that checks signatures and records event ids.
// "0 lost" is checked against XRANGE of dl:events filtered as the broker
// filters; "in order" on the first arrival of each id.
const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');
const harness = require('../lib/harness.js');
// WEBHOOKS_ONLY=<text>: run only the tests whose name contains it
const test = (name, ...rest) => (!process.env.WEBHOOKS_ONLY || name.includes(process.env.WEBHOOKS_ONLY)) && harness.test(name, ...rest);
const run = harness.run;
const { Redis, Broker, poll, stopAll, idCmp } = require('../lib/servers.js');

let redis;
let brokers = [];
const receivers = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-webhooks-'));

// ---- a RESP client for XRANGE and friends (nested replies) -----------------
function resp(port, args, ms = 3000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error('redis timed out')); }, ms);
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('connect', () => {
      let out = `*${args.length}\r\n`;
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
      s.write(out);
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse(buf, 0);
      if (!r) return;
      clearTimeout(t);
      s.end();
      if (r.v instanceof Error) reject(r.v); else resolve(r.v);
    });
  });
}
function parse(b, i) {
  const nl = b.indexOf('\r\n', i);
  if (nl < 0) return null;
  const line = b.toString('utf8', i + 1, nl), next = nl + 2;
  switch (String.fromCharCode(b[i])) {
    case '+': return { v: line, i: next };
    case '-': return { v: new Error(line), i: next };
    case ':': return { v: Number(line), i: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { v: null, i: next };
      if (b.length < next + n + 2) return null;
      return { v: b.toString('utf8', next, next + n), i: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { v: null, i: next };
      const out = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const r = parse(b, at);
        if (!r) return null;
        out.push(r.v);
        at = r.i;
      }
      return { v: out, i: at };
    }
    default: throw new Error('bad RESP');
  }
}

// ---- filters, as the broker applies them ------------------------------------
function globRe(g) {
  return new RegExp('^' + g.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
}
function matches(hook, ev, dev) {
  const any = (globs, values) => !globs || values.some(v => typeof v === 'string' && globs.some(g => globRe(g).test(v)));
  return any(hook.actions, [ev.action]) &&
    any(hook.devices, [ev.device_name, dev, ...(ev.device_names || [])]) &&
    any(hook.users, [ev.user_id, ev.lock && ev.lock.user_id, ev.reservation && ev.reservation.user_id]);
}
// The ids of dl:events after `after` that `hook` should get, in stream order.
async function expected(hook, after = '-') {
  const rows = await resp(redis.port, ['XRANGE', 'dl:events', after === '-' ? '-' : '(' + after, '+']);
  const ids = [];
  for (const [id, fields] of rows) {
    const f = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
    // entries without j are queue facts for the brokers' read copies, no events
    if (f.j !== undefined && matches(hook, JSON.parse(f.j), f.dev)) ids.push(id);
  }
  return ids;
}
async function lastId() {
  const r = await resp(redis.port, ['XREVRANGE', 'dl:events', '+', '-', 'COUNT', '1']);
  return r.length ? r[0][0] : '0-0';
}

// ---- the receiver -------------------------------------------------------------
function sign(secret, ts, body) {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
}
// The check a receiver makes (docs/webhooks.md): HMAC over "<timestamp>.<body>".
function verify(secret, headers, body) {
  const ts = headers['x-devlock-timestamp'], got = headers['x-devlock-signature'];
  if (!ts || !got) return false;
  const want = sign(secret, ts, body);
  return got.length === want.length && crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want));
}

class Receiver {
  constructor(secret) {
    this.secret = secret;
    this.got = [];          // {id, webhook, sigOk, body, status}
    this.answer = () => 200; // status, or 'hold'
    this.held = [];
    this.sockets = new Set();
    receivers.push(this);
  }
  listen(port = 0) {
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', c => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let j = {};
        try { j = JSON.parse(body); } catch (e) { /* recorded as is */ }
        const rec = { id: req.headers['x-devlock-event-id'], webhook: req.headers['x-devlock-webhook'],
          sigOk: verify(this.secret, req.headers, body), bodyId: j.event_id, firstKey: Object.keys(j)[0],
          body: j, ctype: req.headers['content-type'] };
        const a = this.answer(rec);
        rec.status = a;
        this.got.push(rec);
        if (a === 'hold') { this.held.push(res); return; }
        res.writeHead(a, { 'content-type': 'text/plain' });
        res.end(a < 300 ? 'ok' : 'no');
      });
    });
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
    return new Promise((resolve) => this.server.listen(port, '127.0.0.1', () => {
      this.port = this.server.address().port;
      resolve(this);
    }));
  }
  url(p = '/hook') { return `http://127.0.0.1:${this.port}${p}`; }
  close() {
    if (!this.server) return Promise.resolve();
    const s = this.server;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    return new Promise(r => s.close(() => r()));
  }
  // the ids answered 2xx, de-duplicated, in order of first arrival
  delivered(webhook) {
    const seen = new Set(), out = [];
    for (const g of this.got) {
      if (webhook && g.webhook !== webhook) continue;
      if (typeof g.status === 'number' && g.status < 300 && !seen.has(g.id)) { seen.add(g.id); out.push(g.id); }
    }
    return out;
  }
  arrivals(webhook) { return this.got.filter(g => !webhook || g.webhook === webhook); }
}

// ---- helpers --------------------------------------------------------------------
function writeHooks(file, hooks, extra = {}) {
  fs.writeFileSync(file, JSON.stringify({ webhooks: hooks, ...extra }, null, 1));
  return file;
}
async function startBroker(file) {
  const b = await Broker.start(redis.url, ['--webhooks', file, '--log-level', 'INFO']);
  brokers.push(b);
  return b;
}
async function status(b) {
  const r = await b.get('/api/webhooks');
  assert.strictEqual(r.status, 200, r.text);
  return r.body;
}
function hookStatus(st, name) { return st.webhooks.find(w => w.name === name); }
// Every webhook has an owner, so its consumer group exists: events from now on are delivered.
async function hooksReady(b, names) {
  await poll(async () => {
    const st = await status(b);
    return names.every(n => { const w = hookStatus(st, n); return w && w.owner && w.group_last_id !== undefined && w.pending !== undefined; });
  }, 10000, `webhooks ${names} owned`);
}
let seq = 0;
async function cycle(b, dev, user = 'alice') {
  const a = await b.acquire({ device_name: dev, user_id: user, lock_type: 'MANUAL_OPERATOR', timeout: 30 });
  assert.strictEqual(a.status, 200, a.text);
  assert.ok(a.body.success, a.text);
  const r = await b.release({ device_name: dev, user_id: user, lock_key: a.body.lock_key });
  assert.strictEqual(r.status, 200, r.text);
  seq++;
}
function assertInOrder(ids, what) {
  for (let i = 1; i < ids.length; i++)
    assert.ok(idCmp(ids[i - 1], ids[i]) < 0, `${what}: ${ids[i - 1]} before ${ids[i]}`);
}
async function waitDelivered(rcv, hook, after, what, ms = 15000) {
  let want;
  await poll(async () => {
    want = await expected(hook, after);
    const got = rcv.delivered(hook.name).filter(id => after === '-' || idCmp(id, after) > 0);
    return want.length > 0 && got.length >= want.length;
  }, ms, what, 100).catch((e) => {
    throw new Error(`${e.message}: want ${want && want.length}, got ${rcv.delivered(hook.name).length}`);
  });
  const got = rcv.delivered(hook.name).filter(id => after === '-' || idCmp(id, after) > 0);
  assert.deepStrictEqual(got, want, `${what}: delivered ids differ from the stream's`);
  return want;
}
async function cleanup() {
  // SIGTERM: a clean shutdown with requests in flight (the ASan build reports leaks then)
  const stopping = brokers;
  brokers = [];
  for (const b of stopping) await b.stop();
  for (const r of receivers.splice(0)) { for (const h of r.held) h.destroy(); await r.close(); }
  await resp(redis.port, ['FLUSHALL']);
}

// ---- tests -------------------------------------------------------------------------

test('the receiver check fails on a wrong secret, a changed body or a missing header', async () => {
  const body = '{"event_id":"1-0","action":"acquired"}', ts = '1700000000';
  const h = { 'x-devlock-timestamp': ts, 'x-devlock-signature': sign('right', ts, body) };
  assert.ok(verify('right', h, body));
  assert.ok(!verify('wrong', h, body));
  assert.ok(!verify('right', h, body.replace('acquired', 'released')));
  assert.ok(!verify('right', { ...h, 'x-devlock-timestamp': '1700000001' }, body));
  assert.ok(!verify('right', { 'x-devlock-timestamp': ts }, body));
});

test('delivery with action, device and user filters; signatures; body and headers', async () => {
  const rcv = await new Receiver('s3cret').listen();
  const other = await new Receiver('not-the-secret').listen();
  const hooks = [
    { name: 'motors', url: rcv.url(), actions: ['acquired'], devices: ['motor*'], secret: 's3cret' },
    { name: 'all', url: rcv.url('/all'), secret: 's3cret' },
    { name: 'bob', url: rcv.url('/bob'), users: ['bob'], actions: ['rel*'], secret: 's3cret' },
    { name: 'badsig', url: other.url(), devices: ['pump1'], secret: 's3cret' },
  ];
  const b = await startBroker(writeHooks(path.join(dir, 'filters.json'), hooks));
  await hooksReady(b, hooks.map(h => h.name));
  const from = await lastId();
  await cycle(b, 'motor1', 'alice');
  await cycle(b, 'pump1', 'bob');
  await cycle(b, 'motor2', 'bob');
  await cycle(b, 'valve1', 'carol');
  const all = await waitDelivered(rcv, hooks[1], from, 'all');
  assert.strictEqual(all.length, 8);
  const motors = await waitDelivered(rcv, hooks[0], from, 'motors');
  assert.strictEqual(motors.length, 2);
  const bob = await waitDelivered(rcv, hooks[2], from, 'bob');
  assert.strictEqual(bob.length, 2);
  await waitDelivered(other, hooks[3], from, 'badsig');
  for (const g of rcv.got) {
    assert.ok(g.sigOk, `signature of ${g.id} (${g.webhook})`);
    assert.strictEqual(g.bodyId, g.id);
    assert.strictEqual(g.firstKey, 'event_id');
    assert.strictEqual(g.ctype, 'application/json');
    assert.strictEqual(g.body.lock.lock_key, null, 'lock keys are not sent by default');
  }
  assert.ok(rcv.arrivals('motors').every(g => g.body.action === 'acquired' && /^motor/.test(g.body.device_name)));
  assert.ok(rcv.arrivals('bob').every(g => g.body.lock.user_id === 'bob' && g.body.action === 'released'));
  assert.ok(other.got.length === 2 && other.got.every(g => !g.sigOk), 'a receiver with the wrong secret sees bad signatures');
  const st = await status(b);
  const s = hookStatus(st, 'all');
  assert.strictEqual(s.last_event_id, all[all.length - 1]);
  assert.strictEqual(s.last_status, 200);
  assert.ok(!JSON.stringify(st).includes('s3cret'), 'the status never shows a secret');
  assert.strictEqual(s.owner, st.broker_id);
  await cleanup();
});

test('reservation events: actions ["reservation_*"] and users matched on the booking\'s owner', async () => {
  const rcv = await new Receiver('k').listen();
  const hook = { name: 'bookings', url: rcv.url(), actions: ['reservation_*'], users: ['alice'], secret: 'k' };
  const b = await startBroker(writeHooks(path.join(dir, 'bookings.json'), [hook]));
  await hooksReady(b, ['bookings']);
  const from = await lastId();
  const now = Math.floor(Date.now() / 1000);
  const book = async (user, dev) => {
    const r = await b.post('/api/reservations', { device_names: [dev], lock_type: 'MANUAL_OPERATOR', user_id: user,
      start: now + 3600, end: now + 7200 });
    assert.strictEqual(r.status, 201, r.text);
    return r.body.reservation.id;
  };
  const mine = await book('alice', 'scope1');
  await book('bob', 'scope2');
  await cycle(b, 'scope3', 'alice');
  const d = await b.request('DELETE', `/api/reservations/${mine}?user_id=alice`, { user_id: 'alice' });
  assert.strictEqual(d.status, 200, d.text);
  const ids = await waitDelivered(rcv, hook, from, 'bookings');
  const actions = rcv.arrivals().map(g => g.body.action);
  assert.deepStrictEqual(actions, ['reservation_created', 'reservation_cancelled']);
  assert.ok(rcv.got.every(g => g.sigOk && g.body.reservation.user_id === 'alice'));
  assert.strictEqual(ids.length, 2);
  await cleanup();
});

// A wait writes queue facts (entries without j, for the brokers' read
// copies) into dl:events: acknowledged with the batch, never POSTed, not
// counted as skipped, no warning.
test('queue facts in the stream are not delivered, skipped or warned about', async () => {
  const rcv = await new Receiver('k').listen();
  const hook = { name: 'facts', url: rcv.url(), secret: 'k' };
  const b = await startBroker(writeHooks(path.join(dir, 'facts.json'), [hook]));
  await hooksReady(b, ['facts']);
  const from = await lastId();
  const a = await b.acquire({ device_name: 'qf1', user_id: 'alice', lock_type: 'MAINTENANCE', timeout: 30 });
  assert.ok(a.body && a.body.success, a.text);
  const ctl = new AbortController();
  const waiting = b.post('/api/lock/request', { device_name: 'qf1', user_id: 'bob', lock_type: 'QUEUE_QUEUED', wait: 30 },
    {}, { signal: ctl.signal }).catch(() => null);
  await poll(async () => (await b.get('/api/locks/device/qf1')).body.waiters.length === 1, 5000, 'the waiter');
  ctl.abort();
  await waiting;
  await poll(async () => (await b.get('/api/locks/device/qf1')).body.waiters.length === 0, 5000, 'the waiter gone');
  const r = await b.release({ device_name: 'qf1', user_id: 'alice', lock_key: a.body.lock_key });
  assert.strictEqual(r.status, 200, r.text);
  const rows = await resp(redis.port, ['XRANGE', 'dl:events', '(' + from, '+']);
  assert.strictEqual(rows.length, 4, 'acquired, two queue facts, released in the stream');
  await waitDelivered(rcv, hook, from, 'facts');
  assert.deepStrictEqual(rcv.arrivals('facts').map(g => g.body.action), ['acquired', 'released']);
  await poll(async () => hookStatus(await status(b), 'facts').pending === 0, 5000, 'all acknowledged');
  assert.strictEqual(hookStatus(await status(b), 'facts').this_broker.skipped, 0, 'nothing counted as skipped');
  assert.ok(!/not a JSON object/.test(b.log()), 'no warning about the facts');
  await cleanup();
});

test('a burst of 640 events with two brokers and three webhooks: each gets its events once, in order', async () => {
  const rcv = await new Receiver('k').listen();
  const hooks = [{ name: 'b1', url: rcv.url('/1'), secret: 'k' }, { name: 'b2', url: rcv.url('/2'), devices: ['even*'] },
    { name: 'b3', url: rcv.url('/3'), actions: ['released'], secret: 'k' }];
  const file = writeHooks(path.join(dir, 'burst.json'), hooks);
  const x = await startBroker(file), y = await startBroker(file);
  await hooksReady(x, hooks.map(h => h.name));
  const from = await lastId();
  const t0 = Date.now();
  // 320 cycles, 8 at a time, through both brokers
  await Promise.all([...Array(8).keys()].map(async (k) => {
    for (let i = 0; i < 40; i++) await cycle(k % 2 ? x : y, `${k % 2 ? 'odd' : 'even'}${k}`);
  }));
  for (const h of hooks) await waitDelivered(rcv, h, from, h.name, 30000);
  const ms = Date.now() - t0;
  const total = rcv.got.length;
  assert.strictEqual(new Set(rcv.got.map(g => `${g.webhook} ${g.id}`)).size, total, 'no duplicates without faults');
  for (const h of hooks) assertInOrder(rcv.arrivals(h.name).map(g => g.id), h.name);
  console.log(`# ${total} deliveries of ${rcv.delivered('b1').length} events in ${ms} ms (lock traffic included)`);
  await cleanup();
}, { timeoutMs: 60000 });

test('a receiver answering 500 gets the same event again with backoff; nothing lost, order kept', async () => {
  const rcv = await new Receiver('k').listen();
  let failing = true;
  rcv.answer = () => (failing ? 500 : 200);
  const hook = { name: 'flaky', url: rcv.url(), secret: 'k' };
  const b = await startBroker(writeHooks(path.join(dir, 'flaky.json'), [hook]));
  await hooksReady(b, ['flaky']);
  const from = await lastId();
  for (let i = 0; i < 3; i++) await cycle(b, `dev${i}`);
  const st = await poll(async () => {
    const s = hookStatus(await status(b), 'flaky');
    return s.consecutive_failures >= 3 && s ? s : null;
  }, 15000, 'three failures in a row');
  assert.ok(st.next_attempt, 'next attempt time shown');
  assert.strictEqual(st.last_status, 500);
  assert.ok(st.pending >= 6, `pending ${st.pending}`);
  const m = (await b.get('/metrics')).text;
  assert.match(m, /devlock_webhook_deliveries_total\{webhook="flaky",result="failed"\} [3-9]/);
  assert.match(m, /devlock_webhook_consecutive_failures\{webhook="flaky"\} [3-9]/);
  // every failed attempt was for the first event: later ones wait
  const firstId = (await expected(hook, from))[0];
  assert.ok(rcv.got.every(g => g.id === firstId), 'only the first event is retried while it fails');
  failing = false;
  const ids = await waitDelivered(rcv, hook, from, 'after recovery');
  assert.strictEqual(ids.length, 6);
  assertInOrder(rcv.arrivals().filter(g => g.status === 200).map(g => g.id), 'arrivals');
  await poll(async () => hookStatus(await status(b), 'flaky').consecutive_failures === 0, 5000, 'failures reset');
  const m2 = (await b.get('/metrics')).text;
  assert.match(m2, /devlock_webhook_deliveries_total\{webhook="flaky",result="delivered"\} 6/);
  assert.match(m2, /devlock_webhook_pending\{webhook="flaky"\} 0/);
  await cleanup();
}, { timeoutMs: 40000 });

test('two brokers: the delivering one is SIGKILLed mid-delivery, the other takes over: 0 lost, 0 out of order', async () => {
  const rcv = await new Receiver('k').listen();
  let n = 0;
  rcv.answer = () => (++n === 4 ? 'hold' : 200);
  const hook = { name: 'ha', url: rcv.url(), secret: 'k', timeout_ms: 30000 };
  const file = writeHooks(path.join(dir, 'ha.json'), [hook], { lease_ms: 2000 });
  const b1 = await startBroker(file), b2 = await startBroker(file);
  await hooksReady(b1, ['ha']);
  await hooksReady(b2, ['ha']);
  const from = await lastId();
  for (let i = 0; i < 5; i++) await cycle(b1, `ha${i}`);
  await poll(() => rcv.held.length === 1, 10000, 'the receiver holding a request');
  const heldId = rcv.got.find(g => g.status === 'hold').id;
  const st1 = await status(b1);
  const owner = hookStatus(st1, 'ha').owner;
  const [dying, survivor] = owner === st1.broker_id ? [b1, b2] : [b2, b1];
  assert.strictEqual(hookStatus(await status(dying), 'ha').in_flight, true);
  await dying.stop('SIGKILL');
  for (let i = 5; i < 10; i++) await cycle(survivor, `ha${i}`);
  const ids = await waitDelivered(rcv, hook, from, 'after the take-over', 20000);
  assert.strictEqual(ids.length, 20);
  const arrivals = rcv.arrivals().map(g => g.id);
  const dups = arrivals.filter((id, i) => arrivals.indexOf(id) !== i);
  assert.ok(dups.every(id => id === heldId), `only the in-flight event twice, got ${dups}`);
  console.log(`# held ${heldId} on the killed broker; arrived twice: ${dups.join(' ') || 'none'}; ${arrivals.length} requests for ${ids.length} events`);
  assertInOrder(rcv.delivered(), 'first arrivals');
  const st = hookStatus(await status(survivor), 'ha');
  assert.strictEqual(st.owner_is_this_broker, true);
  assert.strictEqual(st.pending, 0);
  await cleanup();
}, { timeoutMs: 40000 });

test('a delivering broker frozen (SIGSTOP) past its lease: the other takes over; thawed, it starts nothing new', async () => {
  const rcv = await new Receiver('k').listen();
  let n = 0;
  rcv.answer = () => (++n === 3 ? 'hold' : 200);
  const hook = { name: 'freeze', url: rcv.url(), secret: 'k', timeout_ms: 30000 };
  const file = writeHooks(path.join(dir, 'freeze.json'), [hook], { lease_ms: 2000 });
  const b1 = await startBroker(file), b2 = await startBroker(file);
  await hooksReady(b1, ['freeze']);
  await hooksReady(b2, ['freeze']);
  const st = await status(b1);
  const [frozen, other] = hookStatus(st, 'freeze').owner === st.broker_id ? [b1, b2] : [b2, b1];
  const from = await lastId();
  for (let i = 0; i < 3; i++) await cycle(other, `fz${i}`);
  await poll(() => rcv.held.length === 1, 10000, 'the receiver holding a request');
  const heldId = rcv.got.find(g => g.status === 'hold').id;
  frozen.proc.kill('SIGSTOP');
  try {
    for (let i = 3; i < 6; i++) await cycle(other, `fz${i}`);
    await waitDelivered(rcv, hook, from, 'taken over', 20000);
    // the frozen broker's request gets its 200 only now, then it wakes up
    const res = rcv.held.pop();
    res.writeHead(200);
    res.end('late');
  } finally {
    frozen.proc.kill('SIGCONT');
  }
  await poll(async () => !hookStatus(await status(frozen), 'freeze').owner_is_this_broker &&
    !hookStatus(await status(frozen), 'freeze').in_flight, 5000, 'the thawed broker standing down');
  const mid = await lastId();
  for (let i = 6; i < 9; i++) await cycle(other, `fz${i}`);
  await waitDelivered(rcv, hook, mid, 'after the thaw');
  const arrivals = rcv.arrivals().map(g => g.id);
  const dups = arrivals.filter((id, i) => arrivals.indexOf(id) !== i);
  assert.ok(dups.every(id => id === heldId), `only the in-flight event twice, got ${dups}`);
  assertInOrder(rcv.delivered(), 'first arrivals');
  assert.deepStrictEqual(rcv.delivered(), await expected(hook, from));
  await cleanup();
}, { timeoutMs: 40000 });

test('a broker stopped with SIGTERM gives its webhooks up: another takes over at once, not after the lease', async () => {
  const rcv = await new Receiver('k').listen();
  const hook = { name: 'handover', url: rcv.url(), secret: 'k' };
  const file = writeHooks(path.join(dir, 'handover.json'), [hook], { lease_ms: 30000 });
  const b1 = await startBroker(file);
  await hooksReady(b1, ['handover']);
  const b2 = await startBroker(file);
  await hooksReady(b2, ['handover']);
  assert.strictEqual(hookStatus(await status(b1), 'handover').owner_is_this_broker, true);
  const from = await lastId();
  await cycle(b1, 'hand1');
  await waitDelivered(rcv, hook, from, 'before the stop');
  brokers = brokers.filter(b => b !== b1);
  await b1.stop();
  await cycle(b2, 'hand2');
  await poll(async () => hookStatus(await status(b2), 'handover').owner_is_this_broker, 5000, 'the take-over');
  const ids = await waitDelivered(rcv, hook, from, 'after the stop', 5000);
  assert.strictEqual(ids.length, 4);
  await cleanup();
});

test('receiver outage (port closed), then back: retried until delivered, in order', async () => {
  const rcv = await new Receiver('k').listen();
  const port = rcv.port;
  const hook = { name: 'outage', url: rcv.url(), secret: 'k', timeout_ms: 2000 };
  const b = await startBroker(writeHooks(path.join(dir, 'outage.json'), [hook]));
  await hooksReady(b, ['outage']);
  const from = await lastId();
  await cycle(b, 'o1');
  await waitDelivered(rcv, hook, from, 'before the outage');
  await rcv.close();
  for (let i = 2; i <= 4; i++) await cycle(b, `o${i}`);
  const st = await poll(async () => {
    const s = hookStatus(await status(b), 'outage');
    return s.consecutive_failures >= 2 ? s : null;
  }, 15000, 'failures while the port is closed');
  assert.ok(st.last_error && st.last_status === null, `error ${st.last_error}`);
  await rcv.listen(port);
  const ids = await waitDelivered(rcv, hook, from, 'after the outage', 20000);
  assert.strictEqual(ids.length, 8);
  assertInOrder(rcv.delivered(), 'first arrivals');
  await cleanup();
}, { timeoutMs: 45000 });

test('Redis restarted under a delivering broker: delivery resumes, in order, nothing lost', async () => {
  const rcv = await new Receiver('k').listen();
  const hook = { name: 'redis', url: rcv.url(), secret: 'k' };
  const b = await startBroker(writeHooks(path.join(dir, 'redis.json'), [hook], { lease_ms: 2000 }));
  await hooksReady(b, ['redis']);
  const from = await lastId();
  await cycle(b, 'r1');
  await waitDelivered(rcv, hook, from, 'before the restart');
  await redis.kill('SIGTERM'); // a clean stop: the AOF has everything
  const down = await status(b);
  assert.strictEqual(down.redis_available, false);
  assert.strictEqual(hookStatus(down, 'redis').name, 'redis');
  await redis.restart();
  await poll(async () => (await b.get('/api/health/ready')).status === 200, 15000, 'the broker ready again');
  await cycle(b, 'r2');
  const ids = await waitDelivered(rcv, hook, from, 'after the restart');
  assert.strictEqual(ids.length, 4);
  assertInOrder(rcv.delivered(), 'delivered');
  await cleanup();
}, { timeoutMs: 40000 });

test('events trimmed from the stream before delivery are counted as lost, the rest delivered in order', async () => {
  const rcv = await new Receiver('k').listen();
  let failing = true;
  rcv.answer = () => (failing ? 503 : 200);
  const hook = { name: 'trim', url: rcv.url(), secret: 'k' };
  const b = await Broker.start(redis.url, ['--webhooks', writeHooks(path.join(dir, 'trim.json'), [hook]), '--stream-maxlen', '10']);
  brokers.push(b);
  await hooksReady(b, ['trim']);
  await poll(async () => hookStatus(await status(b), 'trim').group_last_id !== undefined, 2000, 'group');
  const cycles = 80;
  for (let i = 0; i < cycles; i++) await cycle(b, `t${i % 4}`);
  const len = Number(await resp(redis.port, ['XLEN', 'dl:events']));
  assert.ok(len < 2 * cycles, `the stream was trimmed (${len} kept of ${2 * cycles})`);
  failing = false;
  const st = await poll(async () => {
    const s = hookStatus(await status(b), 'trim');
    return s.pending === 0 && s.delivered > 0 ? s : null;
  }, 20000, 'the backlog done', 100).catch(async (e) => {
    throw new Error(`${e.message}: ${JSON.stringify(hookStatus(await status(b), 'trim'))}`);
  });
  const got = rcv.delivered();
  assertInOrder(got, 'delivered');
  assert.ok(st.lost > 0, 'some were lost');
  assert.strictEqual(got.length + st.lost, 2 * cycles, `delivered ${got.length} + lost ${st.lost}`);
  assert.match((await b.get('/metrics')).text, new RegExp(`devlock_webhook_lost_total\\{webhook="trim"\\} ${st.lost}\\b`));
  await cleanup();
}, { timeoutMs: 40000 });

test('SIGHUP re-reads the file: a webhook added, one removed, a bad file keeps the old ones', async () => {
  const rcv = await new Receiver('k').listen();
  const x = { name: 'x', url: rcv.url('/x'), secret: 'k' }, y = { name: 'y', url: rcv.url('/y'), secret: 'k' };
  const file = writeHooks(path.join(dir, 'hup.json'), [x]);
  const b = await startBroker(file);
  await hooksReady(b, ['x']);
  const before = await lastId();
  await cycle(b, 'h1');
  writeHooks(file, [x, y]);
  b.proc.kill('SIGHUP');
  await hooksReady(b, ['x', 'y']);
  const mid = await lastId();
  await cycle(b, 'h2');
  await waitDelivered(rcv, x, before, 'x');
  await waitDelivered(rcv, y, mid, 'y');
  assert.ok(rcv.arrivals('y').every(g => idCmp(g.id, mid) > 0), 'a new webhook starts with new events');
  writeHooks(file, [y]);
  b.proc.kill('SIGHUP');
  await poll(async () => (await status(b)).webhooks.map(w => w.name).join() === 'y', 5000, 'x removed');
  fs.writeFileSync(file, '{"webhooks": [ this is not json');
  b.proc.kill('SIGHUP');
  const late = await lastId();
  await cycle(b, 'h3');
  await waitDelivered(rcv, y, late, 'y after the bad file');
  assert.deepStrictEqual((await status(b)).webhooks.map(w => w.name), ['y'], 'the bad file changed nothing');
  assert.ok(rcv.arrivals('x').every(g => idCmp(g.id, late) <= 0), 'x gets nothing once removed');
  assert.strictEqual(b.proc.exitCode, null, 'the broker still runs');
  await cleanup();
}, { timeoutMs: 30000 });

test('a webhook that keeps failing (refused, or hanging) does not hold up lock traffic', async () => {
  const hang = await new Receiver('k').listen();
  hang.answer = () => 'hold';
  const closed = await new Receiver('k').listen();
  const deadUrl = closed.url();
  await closed.close();
  const hooks = [{ name: 'hang', url: hang.url(), timeout_ms: 3000 }, { name: 'dead', url: deadUrl }];
  const withHooks = await startBroker(writeHooks(path.join(dir, 'dead.json'), hooks));
  const plain = await Broker.start(redis.url, []);
  brokers.push(plain);
  await hooksReady(withHooks, ['hang', 'dead']);
  const timeRun = async (b, tag) => {
    const t0 = Date.now();
    for (let i = 0; i < 60; i++) await cycle(b, `${tag}${i % 5}`);
    return Date.now() - t0;
  };
  const tPlain = await timeRun(plain, 'p');
  const tHooks = await timeRun(withHooks, 'w');
  const st = await status(withHooks);
  assert.ok(hookStatus(st, 'dead').consecutive_failures >= 1, 'the dead webhook fails');
  assert.ok(hang.held.length >= 1, 'the hanging webhook has a request open');
  // every request was answered (cycle asserts it); the ratio is generous
  assert.ok(tHooks < 5 * tPlain + 2000, `with failing webhooks ${tHooks} ms, without ${tPlain} ms`);
  console.log(`# 120 requests: ${tPlain} ms without webhooks, ${tHooks} ms with two failing ones`);
  await cleanup();
}, { timeoutMs: 40000 });

test('with auth on, GET /api/webhooks needs the admin role; the secret is never shown', async () => {
  const auth = path.join(dir, 'auth.json');
  fs.writeFileSync(auth, JSON.stringify({ users: [
    { user_id: 'root', token: 'admin-token', roles: ['admin'] },
    { user_id: 'eve', token: 'viewer-token', roles: ['viewer', 'operator'] }] }));
  const hooks = [{ name: 'private', url: 'http://user:pw@127.0.0.1:9/x', secret: 'top-secret' }];
  const b = await Broker.start(redis.url, ['--webhooks', writeHooks(path.join(dir, 'auth-hooks.json'), hooks), '--auth-file', auth]);
  brokers.push(b);
  assert.strictEqual((await b.get('/api/webhooks')).status, 401);
  assert.strictEqual((await b.get('/api/webhooks', { authorization: 'Bearer viewer-token' })).status, 403);
  const r = await b.get('/api/webhooks', { authorization: 'Bearer admin-token' });
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.body.webhooks[0].name, 'private');
  assert.strictEqual(r.body.webhooks[0].url, 'http://***@127.0.0.1:9/x');
  assert.ok(!r.text.includes('top-secret') && !r.text.includes(':pw@'), r.text);
  await cleanup();
});

test('a bad webhooks file is refused at start (exit 2)', async () => {
  const file = path.join(dir, 'bad.json');
  const { spawnSync } = require('child_process');
  const { BUILD } = require('../lib/servers.js');
  for (const text of ['[]', '{"webhooks":[{"name":"a b","url":"http://x/"}]}',
    '{"webhooks":[{"name":"a","url":"ftp://x/"}]}', '{"webhooks":[{"name":"a","url":"http://x/","colour":1}]}',
    '{"webhooks":[{"name":"a","url":"http://x/"},{"name":"a","url":"http://y/"}]}',
    '{"webhooks":[{"name":"a","url":"http://x/","actions":[]}]}']) {
    fs.writeFileSync(file, text);
    const r = spawnSync(path.join(BUILD, 'devlockd'), ['--webhooks', file, '--port', '0', '--redis-url', redis.url],
      { encoding: 'utf8', timeout: 5000 });
    assert.strictEqual(r.status, 2, `${text}: exit ${r.status} ${r.stderr}${r.stdout}`);
  }
});

(async () => {
  redis = await Redis.start({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-wh-redis-')) });
  const failed = await run({
    onFail: async () => {
      for (const b of brokers) console.log(`--- ${b.proc.logFile}\n${b.log().split('\n').slice(-40).join('\n')}`);
      await cleanup().catch(() => {});
    },
  });
  await stopAll();
  process.exit(failed ? 1 : 0);
})();
