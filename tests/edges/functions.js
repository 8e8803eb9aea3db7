'use strict';
// functions.js - issue 14, the scripts as one Redis Functions library
// (store.c): a library removed under a running broker (FUNCTION FLUSH) is
// loaded again and no call is lost or run twice; two versions of the
// library share one Redis; DEVLOCK_FUNCTIONS=0 sends EVALSHA.
const { spawn, execFileSync } = require('child_process');
const { test } = require('../lib/harness.js');
const servers = require('../lib/servers.js');
const { Redis, Broker } = servers;

function check(cond, what) { if (!cond) throw new Error(what); }

const T = 'MANUAL_OPERATOR';

// Runs redis-cli without blocking the event loop (the broker's requests stay
// in flight meanwhile); resolves with its output.
function cliAsync(port, ...args) {
  return new Promise((resolve) => {
    const p = spawn('redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', () => resolve(out.trim()));
  });
}

function json(redis, ...args) {
  return JSON.parse(execFileSync('redis-cli', ['-p', String(redis.port), '--json', ...args], { encoding: 'utf8', timeout: 5000 }));
}

function libraries(redis) { return json(redis, 'FUNCTION', 'LIST', 'WITHCODE'); }

// calls and failed calls of one command, from INFO commandstats
function cmdstat(redis, cmd) {
  const m = (redis.cli('INFO', 'commandstats') || '').match(new RegExp(`cmdstat_${cmd}:calls=(\\d+),.*failed_calls=(\\d+)`));
  return m ? { calls: Number(m[1]), failed: Number(m[2]) } : { calls: 0, failed: 0 };
}

// the stream's events of one device, by action
function actions(redis, dev) {
  const out = {};
  for (const [, fields] of json(redis, 'XRANGE', 'dl:events', '-', '+')) {
    const f = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
    if (f.dev !== dev) continue;
    const a = JSON.parse(f.j).action;
    out[a] = (out[a] || 0) + 1;
  }
  return out;
}

const withServers = (fn, env, redisArgs = []) => servers.withServers(fn, { env, redisArgs });

test('functions: one versioned library, no-writes on the read-only scripts, calls are FCALL', async () => {
  await withServers(async (redis, b) => {
    const libs = libraries(redis);
    check(libs.length === 1, `one library: ${libs.map(l => l.library_name)}`);
    const m = libs[0].library_name.match(/^devlock_([0-9a-f]{12})$/);
    check(m, `library named devlock_<hash>: ${libs[0].library_name}`);
    const ro = [];
    for (const f of libs[0].functions) {
      check(f.name.startsWith(`dl_${m[1]}_`), `function ${f.name} carries the library's hash`);
      if (f.flags.includes('no-writes')) ro.push(f.name.slice(16));
    }
    check(libs[0].functions.length === 17, `17 functions: ${libs[0].functions.length}`);
    check(ro.sort().join() === 'device,events,reservations,resume,snapshot', `no-writes: ${ro}`);
    const r = await b.acquire({ device_name: 'f1', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success, `acquired: ${r.text}`);
    check(cmdstat(redis, 'fcall').calls > 0 && cmdstat(redis, 'evalsha').calls === 0, 'calls are FCALL, not EVALSHA');
  });
});

test('functions: FUNCTION FLUSH under a running broker: the library is loaded again, no write lost or doubled', async () => {
  await withServers(async (redis, b) => {
    // removed while idle: the next call meets "Function not found", is resent once
    const before = cmdstat(redis, 'fcall').failed;
    check(redis.cli('FUNCTION', 'FLUSH') === 'OK', 'flushed');
    const r = await b.acquire({ device_name: 'idle', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success && r.body.fence === 1, `granted after the flush, fence 1: ${r.text}`);
    check(cmdstat(redis, 'fcall').failed === before + 1, 'the call met a missing function once');
    check(libraries(redis).length === 1, 'the library is there again');
    let a = actions(redis, 'idle');
    check(a.acquired === 1 && Object.keys(a).length === 1, `one acquired event: ${JSON.stringify(a)}`);

    // removed again and again while calls are in flight
    const N = 40;
    const devs = Array.from({ length: N }, (_, i) => `busy${i}`);
    const flushes = async (n) => { for (let i = 0; i < n; i++) await cliAsync(redis.port, 'FUNCTION', 'FLUSH'); };
    const [grants] = await Promise.all([
      Promise.all(devs.map(d => b.acquire({ device_name: d, lock_type: T, user_id: `u-${d}`, timeout: 60 }))),
      flushes(8),
    ]);
    for (const [i, g] of grants.entries())
      check(g.status === 200 && g.body.success && g.body.fence === 1, `${devs[i]} granted once, fence 1: ${g.status} ${g.text}`);
    const [releases] = await Promise.all([
      Promise.all(devs.map((d, i) => b.release({ device_name: d, lock_key: grants[i].body.lock_key, user_id: `u-${d}` }))),
      flushes(8),
    ]);
    for (const [i, x] of releases.entries())
      check(x.status === 200 && x.body.success, `${devs[i]} released: ${x.status} ${x.text}`);
    for (const d of devs) {
      a = actions(redis, d);
      check(a.acquired === 1 && a.released === 1 && Object.keys(a).length === 2,
        `${d}: one acquired and one released event: ${JSON.stringify(a)}`);
      check(redis.cli('GET', `dl:{${d}}:fence`) === '1', `${d}: fence incremented once`);
    }
    check(redis.cli('ZRANGE', 'dl:held', '0', '-1') === 'idle', 'only idle held');
    const s = cmdstat(redis, 'fcall');
    console.log(`# ${s.failed - before - 1} calls met a flushed library while in flight`);
    check(libraries(redis).length === 1, 'one library after the flushes');
    const after = await b.acquire({ device_name: 'idle2', lock_type: T, user_id: 'u', timeout: 60 });
    check(after.status === 200 && after.body.success, `still serving: ${after.text}`);
    check(!/FUNCTION LOAD .* failed|Function not found/.test(b.log()), 'no error logged');
  });
}, { timeoutMs: 30000 });

test('functions: two versions of the library share one Redis', async () => {
  await withServers(async (redis, b) => {
    const [lib] = libraries(redis);
    const hash = lib.library_name.slice(8);
    // another version: the same code under another hash (names and functions)
    const other = hash === 'abcdefabcdef' ? '123456123456' : 'abcdefabcdef';
    const code = lib.library_code.split(hash).join(other).replace('-- prelude.lua', '-- another version of prelude.lua');
    const loaded = execFileSync('redis-cli', ['-p', String(redis.port), '-x', 'FUNCTION', 'LOAD'], { input: code, encoding: 'utf8' }).trim();
    check(loaded === `devlock_${other}`, `the other version loads beside: ${loaded}`);
    check(libraries(redis).length === 2, 'two libraries');
    // each version's functions answer, on the same keys
    const r = await b.acquire({ device_name: 'v1', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success, `this version grants: ${r.text}`);
    // called without its keys, a script names them (NEEDKEYS) and does nothing
    const ask = json(redis, 'FCALL', `dl_${other}_device`, '0', 'v1', '0');
    check(ask[0] === 'NEEDKEYS' && ask.includes('dl:{v1}:lock') && ask.includes('dl:{v1}:waitq'), `asks for its keys: ${JSON.stringify(ask)}`);
    const dev = json(redis, 'FCALL', `dl_${other}_device`, String(ask.length - 1), ...ask.slice(1), 'v1', '0');
    check(JSON.parse(dev[1]).lock_key === r.body.lock_key, `the other version reads the same lock: ${dev[1]}`);
    // a broker restarted (or another of this version) finds its library there
    await b.restart();
    const x = await b.release({ device_name: 'v1', lock_key: r.body.lock_key, user_id: 'u' });
    check(x.status === 200 && x.body.success, `released after a restart: ${x.text}`);
    check(libraries(redis).length === 2, 'still two libraries: the restart loaded none');
    check(!/FUNCTION LOAD .* failed/.test(b.log()), 'its load was "already exists", not a failure');
  });
});

test('functions: DEVLOCK_FUNCTIONS=0 sends EVALSHA and loads no library', async () => {
  await withServers(async (redis, b) => {
    const r = await b.acquire({ device_name: 'e1', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success, `acquired: ${r.text}`);
    check(libraries(redis).length === 0, 'no library');
    check(cmdstat(redis, 'fcall').calls === 0 && cmdstat(redis, 'evalsha').calls > 0, 'calls are EVALSHA');
    check(redis.cli('SCRIPT', 'FLUSH') === 'OK', 'script cache flushed');
    const x = await b.release({ device_name: 'e1', lock_key: r.body.lock_key, user_id: 'u' });
    check(x.status === 200 && x.body.success, `released after SCRIPT FLUSH (NOSCRIPT, resent as EVAL): ${x.text}`);
    const a = actions(redis, 'e1');
    check(a.acquired === 1 && a.released === 1, `one event each: ${JSON.stringify(a)}`);
  }, { DEVLOCK_FUNCTIONS: '0' });
});

test('functions: a Redis that refuses FUNCTION LOAD as an unknown command (Redis 6) gets EVALSHA', async () => {
  await withServers(async (redis, b) => {
    const r = await b.acquire({ device_name: 'r6', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success, `acquired: ${r.text}`);
    const x = await b.release({ device_name: 'r6', lock_key: r.body.lock_key, user_id: 'u' });
    check(x.status === 200 && x.body.success, `released: ${x.text}`);
    check(cmdstat(redis, 'fcall').calls === 0 && cmdstat(redis, 'evalsha').calls > 0, 'calls are EVALSHA');
    check(/FUNCTION LOAD refused \(ERR unknown command/.test(b.log()), 'the fallback is logged');
  }, {}, ['--rename-command', 'FUNCTION', '']);
});

test('functions: a library that cannot be loaded again (ACL without FUNCTION): the call is resent as EVAL, once', async () => {
  await withServers(async (redis, b) => {
    check(redis.cli('ACL', 'SETUSER', 'admin', 'on', '>pw', '~*', '&*', '+@all') === 'OK', 'admin user');
    check(redis.cli('ACL', 'SETUSER', 'default', '-function') === 'OK', 'the broker may no longer load');
    const admin = (...a) => execFileSync('redis-cli', ['-p', String(redis.port), '--user', 'admin', '--pass', 'pw', '--no-auth-warning', ...a], { encoding: 'utf8' }).trim();
    check(admin('FUNCTION', 'FLUSH') === 'OK', 'flushed');
    const r = await b.acquire({ device_name: 'ev', lock_type: T, user_id: 'u', timeout: 60 });
    check(r.status === 200 && r.body.success && r.body.fence === 1, `granted by the EVAL resend: ${r.text}`);
    const f = cmdstat(redis, 'fcall'), e = cmdstat(redis, 'eval');
    check(f.failed === 2 && e.calls === 1, `two not-founds, then one EVAL: fcall ${JSON.stringify(f)} eval ${JSON.stringify(e)}`);
    const a = actions(redis, 'ev');
    check(a.acquired === 1 && Object.keys(a).length === 1, `one acquired event: ${JSON.stringify(a)}`);
    check(/FUNCTION LOAD of devlock_\w+ failed: NOPERM/.test(b.log()), 'the failed load is logged');
  });
});
