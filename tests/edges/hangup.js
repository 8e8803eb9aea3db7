'use strict';
// tests/edges/hangup.js - issue 11 (2, 3): a requester that hangs up while
// its acquire waits in the queue must not be handed the device: a grant that
// finds its connection closed (the close not yet seen by the broker, whose
// input is held back while an answer is pending) is not written into the
// dead socket but given back, and a client that only half-closed gets a 503
// or nothing, never a grant it would believe in (the old broker wrote the
// grant to it and kept the lock, with timeout null for ever).
const net = require('net');
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');

function assert(cond, msg) { if (!cond) throw new Error(msg); }
const T = 'MANUAL_OPERATOR';
let redis, broker, seq = 0;

// A raw HTTP/1.1 acquire; returns the socket and a promise of all it read.
function rawAcquire(port, fields) {
  const body = JSON.stringify(fields);
  const sock = net.connect(port, '127.0.0.1');
  const chunks = [];
  const done = new Promise((resolve) => {
    sock.on('data', c => chunks.push(c));
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', () => {});
  });
  sock.write(`POST /api/lock/request HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  return { sock, done };
}

async function queuedThenHangUp(how) {
  const dev = `hangup-${process.pid}-${++seq}`;
  const h = await broker.acquire({ device_name: dev, lock_type: T, user_id: 'holder', timeout: 60 });
  assert(h.body && h.body.success, h.text);
  const w = rawAcquire(broker.port, { device_name: dev, lock_type: T, user_id: 'gone', wait: 30, timeout: null });
  await poll(async () => (await broker.get(`/api/locks/device/${dev}`)).body.waiters.length === 1, 5000, 'the waiter to queue');
  // the hang-up is on the wire (FIN sent) before the grant can happen
  const sent = new Promise(r => w.sock.once(how === 'close' ? 'close' : 'finish', r));
  if (how === 'close') w.sock.destroy(); else w.sock.end();
  await sent;
  const rel = await broker.release({ device_name: dev, lock_key: h.body.lock_key, user_id: 'holder' });
  assert(rel.status === 200, rel.text);
  // nobody holds the key: the device must end up free, its queue empty
  await poll(async () => {
    const d = await broker.get(`/api/locks/device/${dev}`);
    return !d.body.locked && d.body.waiters.length === 0;
  }, 5000, `the device to be free after the waiter ${how === 'close' ? 'hung up' : 'half-closed'}`);
  return how === 'close' ? null : w.done;
}

test('hang-up: a queued requester that closed its connection is not handed the device', async () => {
  redis = await Redis.start();
  broker = await Broker.start(redis.url);
  await queuedThenHangUp('close');
}, { timeoutMs: 20000 });

test('hang-up: a queued requester that half-closed gets no grant it would believe in', async () => {
  const text = await Promise.race([queuedThenHangUp('end'),
    new Promise(r => setTimeout(() => r('(still open)'), 8000))]);
  assert(!/"success":\s*true/.test(text), `the half-closed requester was told success: ${text.slice(0, 300)}`);
}, { timeoutMs: 20000 });

test('hang-up: stop the servers of this file', async () => {
  if (broker) await broker.stop();
  if (redis) await redis.kill();
});
