'use strict';
// _bulk.js - large lock tables for the edge tests: n held locks written
// straight into Redis in prelude.lua's format (dl:{D}:lock, dl:{D}:fence,
// dl:held) with redis-cli --pipe, and the SLOWLOG they are judged by.
const { execFileSync } = require('child_process');

// Writes n locks named prefix000001...; true when Redis took every command.
function bulkLocks(redis, n, prefix) {
  const resp = (...a) => `*${a.length}\r\n` + a.map(x => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('');
  const now = String(Date.now() * 1000);
  const parts = [];
  for (let i = 1; i <= n; i++) {
    const dev = prefix + String(i).padStart(6, '0');
    parts.push(resp('HSET', `dl:{${dev}}:lock`, 'device_name', dev, 'lock_type', 'MANUAL_OPERATOR', 'user_id', 'bulk',
      'lock_key', `key-${i}`, 'acq', now, 'exp', '0', 'lease', '0', 'prio', '2', 'fence', '1'));
    parts.push(resp('SET', `dl:{${dev}}:fence`, '1'));
    parts.push(resp('ZADD', 'dl:held', '0', dev));
  }
  const out = execFileSync('redis-cli', ['-p', String(redis.port), '--pipe'], { input: parts.join(''), encoding: 'utf8', timeout: 30000 });
  const m = /errors: (\d+), replies: (\d+)/.exec(out);
  return Boolean(m) && m[1] === '0' && Number(m[2]) === 3 * n;
}

// The slow commands Redis logged ('' when none), shortened for a message.
function slowlog(redis) {
  const out = redis.cli('SLOWLOG', 'GET', '20') || '';
  return out.trim() ? out.replace(/\s+/g, ' ').slice(0, 1600) : '';
}

module.exports = { bulkLocks, slowlog };
