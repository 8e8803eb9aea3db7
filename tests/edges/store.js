'use strict';
// store.js - issue 11, the store's edges: expiry after a Redis stall (4),
// start-up and /metrics with 100 000 held locks (10), Sentinels that answer
// nothing or hang up, and TCP keepalive on the Redis links (11).
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { test } = require('../lib/harness.js');
const { bulkLocks, slowlog } = require('./_bulk.js');
const { Redis, Broker, poll, freePort, withServers } = require('../lib/servers.js');

function check(cond, what) { if (!cond) throw new Error(what); }

// Runs redis-cli without blocking the event loop; resolves with its output.
function cliAsync(port, ...args) {
  return new Promise((resolve) => {
    const p = spawn('redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', () => resolve(out.trim()));
  });
}

async function metric(b, name) {
  const text = (await b.get('/metrics')).text;
  let sum = null;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum = (sum || 0) + Number(line.split(' ').pop());
  }
  return sum;
}

// Defect 4: the expiry run that meets a stalled Redis fails; the broker
// must retry it, not wait for some later event to re-arm its timer.
test('expiry: a lease that ends during a Redis stall ends right after the stall (no other traffic)', async () => {
  await withServers(async (redis, b) => {
    const w = await b.ws();
    const r = await b.acquire({ device_name: 'stall1', lock_type: 'MANUAL_OPERATOR', user_id: 'u', timeout: 2 });
    check(r.status === 200 && r.body.success, `granted: ${r.text}`);
    const granted = Date.now();
    const sleeping = cliAsync(redis.port, 'DEBUG', 'SLEEP', '3');
    // the broker sees the stall before the first deadline (the 80 % warning at 1.6 s)
    await poll(async () => (await b.get('/api/health/ready')).status === 503, 1200, 'the broker to see the stall');
    check(Date.now() - granted < 1500, 'stall seen before the lease warning');
    await sleeping;
    const woke = Date.now();
    const f = await w.waitFor(x => x.type === 'lock_update' && x.device_name === 'stall1' &&
      x.action === 'force_released', 3000);
    const late = Date.now() - woke;
    console.log(`# expired event ${late} ms after the stall ended`);
    check(f.cause === 'expired', `cause expired: ${f.cause}`);
    check(late < 1500, `expired event within 1.5 s of the stall's end (${late} ms)`);
    w.close();
  }, { redisArgs: ['--enable-debug-command', 'local'], brokerArgs: ['--redis-timeout-ms', '250'] });
}, { timeoutMs: 15000 });


// Defect 10: with 100 000 locks, the start-up snapshot and /metrics run in
// bounded steps: the broker becomes ready, serves events and paged status,
// and no Redis command takes 100 ms.
test('100 000 held locks: a broker starts, serves events and paged status, no Redis command over 100 ms', async () => {
  const redis = await Redis.start();
  let b;
  try {
    const N = 100000;
    const tw = Date.now();
    check(bulkLocks(redis, N, 'big'), 'locks written');
    check(redis.cli('ZCARD', 'dl:held') === String(N), 'all held');
    console.log(`# ${N} locks written in ${Date.now() - tw} ms`);
    redis.cli('CONFIG', 'SET', 'slowlog-log-slower-than', '100000');
    redis.cli('SLOWLOG', 'RESET');
    const t0 = Date.now();
    b = await Broker.start(redis.url);
    // (a broker without the gauge goes on at once: the checks below still apply)
    await poll(async () => [1, null].includes(await metric(b, 'devlock_read_copy_ready')), 15000, 'the read copy to be built', 100);
    console.log(`# ready with its read copy ${Date.now() - t0} ms after start`);
    const first = await b.get('/api/locks/status?limit=100');
    check(first.status === 200, `paged status: ${first.status}`);
    check(first.body.locks.length === 100 && first.body.total_count === N, `first page: ${first.body.locks.length} of ${first.body.total_count}`);
    check(first.body.locks[0].device_name === 'big000001', `first device ${first.body.locks[0].device_name}`);
    const second = await b.get(`/api/locks/status?limit=100&cursor=${encodeURIComponent(first.body.next_cursor)}`);
    check(second.status === 200 && second.body.locks[0].device_name === 'big000101', `second page starts after the cursor: ${second.text.slice(0, 200)}`);
    // events: a WebSocket resumed from the last event sees a new grant
    const g1 = await b.acquire({ device_name: 'probe1', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
    check(g1.body && g1.body.success, `probe1 granted: ${g1.text}`);
    const lastId = redis.cli('XREVRANGE', 'dl:events', '+', '-', 'COUNT', '1').split('\n')[0];
    const w = await b.ws(`?since=${encodeURIComponent(lastId)}`);
    const g2 = await b.acquire({ device_name: 'probe2', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
    check(g2.body && g2.body.success, `probe2 granted: ${g2.text}`);
    await w.waitFor(x => x.type === 'lock_update' && x.device_name === 'probe2' && x.action === 'acquired', 5000);
    w.close();
    const dev = await b.get('/api/locks/device/big050000');
    check(dev.body && dev.body.locked === true, 'a bulk lock is seen held');
    // /metrics: held counts without a scan (counted once at start, in pages)
    await poll(async () => (await metric(b, 'devlock_locks_held')) === N + 2, 10000, 'held counters to reach N + 2', 100);
    for (let i = 0; i < 3; i++) check((await b.get('/metrics')).status === 200, 'scrape');
    const slow = slowlog(redis);
    check(!slow, `no Redis command over 100 ms; SLOWLOG: ${slow}`);
  } finally {
    if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
}, { timeoutMs: 60000 });

// The pages are read over many round trips while other brokers write: the
// events read meanwhile are applied on top, so the copy matches Redis; a
// stall while paging fails the snapshot, which is started again.
test('start-up snapshot in pages: writes meanwhile and a Redis stall, then the copy matches Redis', async () => {
  const redis = await Redis.start({ args: ['--enable-debug-command', 'local'] });
  let a, b;
  try {
    const N = 60000;
    check(bulkLocks(redis, N, 'pg'), 'locks written');
    a = await Broker.start(redis.url);
    const t0 = Date.now();
    b = await Broker.start(redis.url, ['--redis-timeout-ms', '300']);
    // writes spread over the name range, through the other broker, while b
    // pages: before a stall (that snapshot fails), and while the next one pages
    const wave = (off) => {
      const ops = [];
      for (let i = 1; i <= 250; i++) {
        const k = i * 199 + off, dev = `pg${String(k).padStart(6, '0')}`;
        ops.push(a.release({ device_name: dev, lock_key: `key-${k}`, user_id: 'bulk' }));
        ops.push(a.acquire({ device_name: `${dev}x`, lock_type: 'QUEUE_QUEUED', user_id: 'w' }));
      }
      return Promise.all(ops);
    };
    const first = wave(0);
    await cliAsync(redis.port, 'DEBUG', 'SLEEP', '0.6');
    const answers = [...await first, ...await wave(100)];
    const ready = await metric(b, 'devlock_read_copy_ready');
    console.log(`# writes and stall done ${Date.now() - t0} ms after b was ready; read copy ready then: ${ready}`);
    check(answers.every(r => r.status === 200 || r.status === 503), 'writes answered');
    await poll(async () => [1, null].includes(await metric(b, 'devlock_read_copy_ready')), 15000, 'the read copy to be built', 100);
    // one more change, and b has read it: its copy then has everything before
    await a.acquire({ device_name: 'pgzz-last', lock_type: 'QUEUE_QUEUED', user_id: 'w' });
    const held = new Map();
    for (const line of redis.cli('ZRANGE', 'dl:held', '0', '-1').split('\n')) held.set(line, true);
    let copy;
    await poll(async () => {
      copy = (await b.get('/api/locks/status')).body;
      return copy && copy.locks.some(l => l.device_name === 'pgzz-last');
    }, 5000, 'b to show the last change');
    const names = copy.locks.map(l => l.device_name), shown = new Set(names);
    const missing = [...held.keys()].filter(n => n && !shown.has(n));
    check(names.length === held.size, `b shows ${names.length} locks, Redis holds ${held.size}; missing ${missing.slice(0, 5)}`);
    check(names.every(n => held.has(n)), 'b shows no lock Redis does not hold');
  } finally {
    if (b) await b.stop().catch(() => {});
    if (a) await a.stop().catch(() => {});
    await redis.kill();
  }
}, { timeoutMs: 60000 });

// The held counters follow grants and ends (kept by the scripts, not
// counted by /metrics), also for a database written before they existed.
test('/metrics: held counts follow grants, releases and expiry', async () => {
  await withServers(async (redis, b) => {
    const base = await metric(b, 'devlock_locks_held');
    check(base === 0, `nothing held at start: ${base}`);
    const a = await b.acquire({ device_name: 'm1', lock_type: 'MAINTENANCE', user_id: 'u' });
    await b.acquire({ device_name: 'm2', lock_type: 'QUEUE_QUEUED', user_id: 'u', timeout: 0.3 });
    check((await metric(b, 'devlock_locks_held')) === 2, 'two held');
    await poll(async () => (await metric(b, 'devlock_locks_held')) === 1, 3000, 'expiry to count one out');
    await b.release({ device_name: 'm1', lock_key: a.body.lock_key, user_id: 'u' });
    check((await metric(b, 'devlock_locks_held')) === 0, 'none held after release');
    await b.acquire({ device_name: 'm3', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
    const pre = await b.acquire({ device_name: 'm3', lock_type: 'QUEUE_EXECUTING', user_id: 'q' });
    check(pre.body.success && pre.body.preempted, `preempted: ${pre.text}`);
    const text = (await b.get('/metrics')).text;
    check(/devlock_locks_held\{type="QUEUE_EXECUTING"\} 1\n/.test(text) && /devlock_locks_held\{type="MANUAL_OPERATOR"\} 0\n/.test(text),
      'the preemptor counted in, the preempted out');
    check((await b.post('/api/lock/force_release', { device_name: 'm3', reason: 't' })).body.success, 'force release');
    check((await metric(b, 'devlock_locks_held')) === 0, 'none held after force release');
  });
}, { timeoutMs: 15000 });

// A fake Sentinel: connection i behaves as behaviours[i] ('hangup': closes
// once it has the query; 'silent': never answers); later ones are counted.
function fakeSentinel(port, behaviours) {
  const conns = [];
  const server = net.createServer((sock) => {
    const how = behaviours[conns.length] || 'silent';
    conns.push(sock);
    sock.on('error', () => {});
    sock.on('data', () => { if (how === 'hangup') sock.destroy(); });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, conns })));
}

function startSentinel(dir, port, masterPort, downAfterMs = 5000) {
  const conf = path.join(dir, `sentinel-${port}.conf`);
  fs.writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${masterPort} 1\n` +
    `sentinel down-after-milliseconds mymaster ${downAfterMs}\nsentinel failover-timeout mymaster 5000\n`);
  const log = fs.openSync(path.join(dir, `sentinel-${port}.log`), 'a');
  return spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', log, log] });
}

// Defect 11: the broker's only Sentinel misbehaves (behaviours), then a real
// Sentinel takes its address: the broker keeps asking and finds the master.
async function sentinelComesBack(behaviours) {
  const redis = await Redis.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-sentinel-'));
  const sport = await freePort();
  const fake = await fakeSentinel(sport, behaviours);
  let sentinel, b;
  try {
    const starting = Broker.start('redis://127.0.0.1:1', ['--redis-sentinel', `127.0.0.1:${sport}`, '--redis-timeout-ms', '300']);
    starting.catch(() => {});
    await poll(() => fake.conns.length > behaviours.length, 5000, `the broker to ask again after: ${behaviours.join(', ')}`);
    for (const s of fake.conns) s.destroy();
    await new Promise(resolve => fake.server.close(resolve));
    sentinel = startSentinel(dir, sport, redis.port);
    b = await starting;
    const r = await b.acquire({ device_name: 'sent1', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
    check(r.body && r.body.success, `served through the Sentinel: ${r.text}`);
    check(redis.cli('EXISTS', 'dl:{sent1}:lock') === '1', 'the lock is on the master');
  } finally {
    for (const s of fake.conns) s.destroy();
    fake.server.close();
    if (b) await b.stop().catch(() => {});
    if (sentinel) sentinel.kill('SIGKILL');
    await redis.kill();
  }
}

test('Sentinel: one that hangs up before answering is asked again until a real one answers', async () => {
  await sentinelComesBack(['hangup', 'hangup']);
}, { timeoutMs: 20000 });

test('Sentinel: one that never answers is given up (query timeout) and asked again', async () => {
  await sentinelComesBack(['silent', 'silent']);
}, { timeoutMs: 20000 });

// A master frozen with SIGSTOP keeps its TCP connections (the kernel still
// acknowledges): the broker must not wait on it forever, but ask the
// Sentinels again and follow the failover to the replica.
test('Sentinel: a frozen master (SIGSTOP) is left for the one the Sentinel promotes', async () => {
  const primary = await Redis.start();
  const replica = await Redis.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devlock-sentinel-'));
  let sentinel, b, stopped = false;
  try {
    await poll(() => /master_link_status:up/.test(replica.cli('INFO', 'replication') || ''), 10000, 'the replica to sync');
    const sport = await freePort();
    sentinel = startSentinel(dir, sport, primary.port, 1000);
    await poll(() => (execFileSync('redis-cli', ['-p', String(sport), 'SENTINEL', 'replicas', 'mymaster'], { encoding: 'utf8' })
      .includes(String(replica.port))), 15000, 'the Sentinel to know the replica', 100);
    b = await Broker.start('redis://127.0.0.1:1', ['--redis-sentinel', `127.0.0.1:${sport}`]);
    check((await b.acquire({ device_name: 'fz0', lock_type: 'MANUAL_OPERATOR', user_id: 'u' })).body.success, 'served before');
    primary.proc.kill('SIGSTOP');
    stopped = true;
    const t0 = Date.now();
    let n = 0;
    await poll(async () => {
      const r = await b.acquire({ device_name: `fz${++n}`, lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
      return r.status === 200 && r.body.success;
    }, 12000, 'served again through the promoted replica', 200);
    console.log(`# served again ${Date.now() - t0} ms after the master froze`);
    check(replica.cli('ROLE').startsWith('master'), 'the replica was promoted');
  } finally {
    if (stopped) primary.proc.kill('SIGCONT');
    if (b) await b.stop().catch(() => {});
    if (sentinel) sentinel.kill('SIGKILL');
    await replica.kill();
    await primary.kill();
  }
}, { timeoutMs: 30000 });

// The broker's TCP sockets to Redis, as `ss -tnoi` shows them.
function brokerSockets(pid, port) {
  let out = '';
  try { out = execFileSync('ss', ['-tnoipH', 'state', 'established', 'dport', '=', `:${port}`], { encoding: 'utf8' }); } catch (e) { return []; }
  return out.split('\n').filter(l => l.includes(`pid=${pid},`));
}

test('Redis links have TCP keepalive (ss shows a keepalive timer on each)', async () => {
  await withServers(async (redis, b) => {
    const socks = await poll(() => { const s = brokerSockets(b.proc.pid, redis.port); return s.length >= 2 && s; },
      3000, 'the broker\'s two Redis connections');
    // a socket with a reply in flight shows its retransmission timer: look a few times
    const seen = new Set();
    await poll(() => {
      brokerSockets(b.proc.pid, redis.port).forEach((l) => {
        if (/timer:\(keepalive/.test(l)) seen.add(l.split(/\s+/)[2]);
      });
      return seen.size >= socks.length;
    }, 3000, `a keepalive timer on every Redis socket; last: ${brokerSockets(b.proc.pid, redis.port).join(' | ')}`, 50);
  });
}, { timeoutMs: 10000 });
