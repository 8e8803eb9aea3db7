'use strict';
// reads.js - issue 11, whole-table reads (10): GET /api/locks/status
// without a limit, /api/devices and the WebSocket initial_status are served
// from the broker's read copy; while it is still being built they wait for
// it (at most --redis-timeout-ms) and then read Redis a page at a time, so
// no read runs one script over the whole lock table, and a large page
// (limit 10 000) is read from Redis in pages too.
const { test } = require('../lib/harness.js');
const { bulkLocks, slowlog } = require('./_bulk.js');
const { Redis, Broker, poll } = require('../lib/servers.js');

function check(cond, what) { if (!cond) throw new Error(what); }


async function copyReady(b) {
  const text = (await b.get('/metrics')).text;
  const m = /^devlock_read_copy_ready (\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

// Defect 10: a dashboard reconnecting to a broker that has just started
// (its read copy of 100 000 locks still being read in pages) must not make
// the broker run one 1.2 s script over every lock; neither may a page of
// 10 000. Requesters that leave while their read waits are let go.
async function bigReads(brokerArgs, { leaveWhilePaging = false } = {}) {
  const redis = await Redis.start();
  let b;
  try {
    const N = 100000;
    check(bulkLocks(redis, N, 'rd'), 'locks written');
    check(redis.cli('ZCARD', 'dl:held') === String(N), 'all held');
    redis.cli('CONFIG', 'SET', 'slowlog-log-slower-than', '100000');
    redis.cli('SLOWLOG', 'RESET');
    b = await Broker.start(redis.url, brokerArgs);
    // at once, while the copy is read in pages of 1000
    const ac = new AbortController();
    const gone = [];
    for (let i = 0; i < 8; i++) gone.push(b.get('/api/locks/status', {}, { signal: ac.signal }).catch(e => e));
    // (settled promises: a failed check below leaves none unhandled)
    const settle = p => p.then(v => v, e => ({ status: 0, text: String(e) }));
    const wsP = b.ws();
    const allP = settle(b.get('/api/locks/status'));
    const bigP = settle(b.get('/api/locks/status?limit=10000'));
    const devP = settle(b.get('/api/devices'));
    ac.abort(); // those requesters leave while their reads wait
    const late = new AbortController();
    const left = [];
    if (leaveWhilePaging) {
      for (let i = 0; i < 4; i++) left.push(b.get('/api/locks/status', {}, { signal: late.signal }).catch(e => e));
      // these leave once the reads have stopped waiting and page Redis (a
      // broker that does not say so gets the same checks after 5 s)
      await poll(() => /reading Redis in pages/.test(b.log()), 5000, 'reads to page Redis', 20).catch(() => {});
      late.abort();
    }
    const w = await wsP;
    const init = await w.waitFor(f => f.type === 'initial_status', 20000);
    const copy = await copyReady(b);
    const paged = (b.log().match(/reading Redis in pages/g) || []).length;
    console.log(`# initial_status in; read copy ready now: ${copy}; reads paged from Redis: ${paged}`);
    check(init.data && init.data.locks.length === N && init.data.total_count === N,
      `initial_status lists every lock: ${init.data && init.data.locks.length}`);
    check(typeof init.event_id === 'string', 'initial_status names its stream position');
    const all = await allP;
    check(all.status === 200 && all.body.locks.length === N && all.body.total_count === N,
      `whole status: ${all.status} ${all.body ? all.body.locks.length : all.text.slice(0, 200)}`);
    check(all.body.locks[0].device_name === 'rd000001' && all.body.locks[N - 1].device_name === 'rd100000', 'in name order');
    const big = await bigP;
    check(big.status === 200 && big.body.locks.length === 10000 && big.body.total_count === N,
      `a page of 10000: ${big.status} ${big.body ? big.body.locks.length : big.text.slice(0, 200)}`);
    check(big.body.locks[0].device_name === 'rd000001' && big.body.next_cursor === 'rd010000',
      `page bounds: ${big.body.locks[0].device_name} .. next_cursor ${big.body.next_cursor}`);
    const dev = await devP;
    check(dev.status === 200 && dev.body && dev.body.devices.length === N, `devices: ${dev.status} ${dev.body ? dev.body.devices.length : dev.text.slice(0, 200)}`);
    for (const g of await Promise.all([...gone, ...left])) check(g instanceof Error || g.status === 200, `a left read: ${g.status}`);
    // the copy is built and serves; paging on from the cursor
    await poll(async () => (await copyReady(b)) !== 0, 15000, 'the read copy to be built', 100);
    const next = await b.get(`/api/locks/status?limit=10000&cursor=${big.body.next_cursor}`);
    check(next.status === 200 && next.body.locks[0].device_name === 'rd010001' && next.body.locks.length === 10000,
      `the next page: ${next.text.slice(0, 200)}`);
    const g = await b.acquire({ device_name: 'rdprobe', lock_type: 'MANUAL_OPERATOR', user_id: 'u' });
    check(g.body && g.body.success, `granted: ${g.text}`);
    await w.waitFor(f => f.type === 'lock_update' && f.device_name === 'rdprobe' && f.action === 'acquired', 5000);
    w.close();
    const slow = slowlog(redis);
    check(!slow, `no Redis command over 100 ms; SLOWLOG: ${slow}`);
  } finally {
    if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
}

// the reads wait for the copy (it takes a second or two) and are served from it
test('100 000 held locks: whole-table reads while the read copy is built are answered, no Redis command over 100 ms',
  () => bigReads(['--redis-timeout-ms', '5000']), { timeoutMs: 60000 });
// the copy takes longer than the reads wait: they read Redis in pages
test('100 000 held locks, reads that stop waiting for the copy page through Redis: no Redis command over 100 ms',
  () => bigReads(['--redis-timeout-ms', '600'], { leaveWhilePaging: true }), { timeoutMs: 60000 });

// A broker shutting down answers the large reads still waiting or paging
// (503) and exits cleanly (none is left with a Redis reply on its way).
test('100 000 held locks: SIGTERM while whole-table reads page Redis: answered, clean exit', async () => {
  const redis = await Redis.start();
  let b;
  try {
    check(bulkLocks(redis, 100000, 'rs'), 'locks written');
    b = await Broker.start(redis.url, ['--redis-timeout-ms', '600']);
    const settle = p => p.then(v => v, e => ({ status: 0, text: String(e) }));
    const reads = [];
    for (let i = 0; i < 4; i++) reads.push(settle(b.get('/api/locks/status')));
    await poll(() => /reading Redis in pages/.test(b.log()), 5000, 'reads to page Redis', 20).catch(() => {});
    const res = await b.stop();
    b = null;
    check(res && res.code === 0, `clean exit: ${JSON.stringify(res)}`);
    for (const r of await Promise.all(reads)) check([0, 200, 503].includes(r.status), `a read: ${r.status} ${r.text.slice(0, 120)}`);
  } finally {
    if (b) await b.stop().catch(() => {});
    await redis.kill();
  }
}, { timeoutMs: 30000 });
