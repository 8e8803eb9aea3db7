'use strict';
// util.js - helpers of the operations suite: assertions, a seeded PRNG, a
// dump of devlock's Redis state, a lock_key leak check, raw sockets, curl.
// Processes (also the TLS brokers) are started by tests/lib/procs.js.
const { execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const procs = require('../lib/procs.js');

function assert(c, m) { if (!c) throw new Error(m); }
function eq(a, e, m) {
  if (a !== e) throw new Error(`${m}: expected ${JSON.stringify(e)}, got ${JSON.stringify(a)}`.slice(0, 800));
}
const bearer = (t) => ({ authorization: `Bearer ${t}` });

// The seeded PRNG of tests/lib/procs.js, so a failing sweep can be replayed;
// int(n) is in [0, n).
function prng(seed) {
  const next = procs.prng(seed);
  return { next, int: (n) => next.int(0, n - 1), pick: next.pick };
}

// Every devlock key in Redis with its full contents (hashes, fence counters,
// sets, sorted sets, the stream's length and last id), as one string. Broker
// liveness keys (dl:broker:*) are left out: their value is a heartbeat.
function redisState(redis) {
  const keys = (redis.cli('--scan', '--pattern', 'dl:*') || '').split('\n').filter(k => k && !k.startsWith('dl:broker:')).sort();
  return keys.map(k => {
    const t = redis.cli('TYPE', k);
    let v;
    if (t === 'hash') v = redis.cli('HGETALL', k).split('\n').reduce((acc, x, i, a) => (i % 2 ? acc : acc.concat(`${x}=${a[i + 1]}`)), []).sort().join(' ');
    else if (t === 'string') v = redis.cli('GET', k);
    else if (t === 'zset') v = redis.cli('ZRANGE', k, '0', '-1', 'WITHSCORES').replace(/\n/g, ' ');
    else if (t === 'set') v = redis.cli('SMEMBERS', k).split('\n').sort().join(' ');
    else if (t === 'list') v = redis.cli('LRANGE', k, '0', '-1').replace(/\n/g, ' ');
    else if (t === 'stream') v = `xlen=${redis.cli('XLEN', k)} last=${(redis.cli('XREVRANGE', k, '+', '-', 'COUNT', '1') || '').split('\n')[0]}`;
    else v = '?';
    return `${k} (${t}) ${v}`;
  }).join('\n');
}

// Where a JSON value shows a lock_key its viewer must not see: with auth on,
// a lock object's key is visible only to its owner and to admins.
function keyLeaks(value, viewer, admin, where = '$', out = []) {
  if (Array.isArray(value)) value.forEach((v, i) => keyLeaks(v, viewer, admin, `${where}[${i}]`, out));
  else if (value && typeof value === 'object') {
    if ('lock_key' in value && 'user_id' in value && value.lock_key !== null && !admin && value.user_id !== viewer)
      out.push(`${where}.lock_key of ${value.user_id}'s lock`);
    for (const [k, v] of Object.entries(value)) keyLeaks(v, viewer, admin, `${where}.${k}`, out);
  }
  return out;
}
// The lock objects in a JSON value (objects with lock_type, user_id and lock_key).
function lockObjects(value, out = []) {
  if (Array.isArray(value)) value.forEach(v => lockObjects(v, out));
  else if (value && typeof value === 'object') {
    if ('lock_key' in value && 'user_id' in value && 'lock_type' in value) out.push(value);
    Object.values(value).forEach(v => lockObjects(v, out));
  }
  return out;
}

// A raw TCP connection that records what it receives and when it closes.
function rawConnect(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    s.data = '';
    s.closedAt = null;
    s.ended = new Promise(res => s.on("close", () => { s.closedAt = Date.now(); res(); }));
    s.on('data', d => { s.data += d.toString('latin1'); });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// curl, for HTTPS with a CA file: {code (curl exit), status, body}
function curl(args) {
  try {
    const out = execFileSync('curl', ['-s', '-S', '-m', '10', '-w', '\n%{http_code}', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const i = out.lastIndexOf('\n');
    const text = out.slice(0, i);
    let body; try { body = JSON.parse(text); } catch (e) { body = undefined; }
    return { code: 0, status: Number(out.slice(i + 1)), text, body };
  } catch (e) {
    return { code: e.status, status: Number(String(e.stdout || '').split('\n').pop()) || 0, text: '', stderr: String(e.stderr || '') };
  }
}

module.exports = { assert, eq, bearer, prng, redisState, keyLeaks, lockObjects, rawConnect, rssKb, curl };
