'use strict';
// tests/edges/orphans.js - issue 11 (3): an acquire whose Redis link is lost
// after its script ran and before the reply came back has an unknown
// outcome; the broker must give back any grant under the key it chose, once
// Redis answers again, instead of leaving the device held by nobody (with
// timeout null: for ever). The link runs through the fault proxy of
// tests/chaos with latency, so the reply is still on its way when the proxy
// cuts the connections.
const { test } = require('../lib/harness.js');
const { Redis, Broker, poll } = require('../lib/servers.js');
const { startProxy } = require('../chaos/proxy.js');

function assert(cond, msg) { if (!cond) throw new Error(msg); }

let redis, proxy, broker;

test('orphans: an acquire whose reply is lost with the link gives its grant back after the reconnect', async () => {
  redis = await Redis.start();
  proxy = await startProxy({ targetPort: redis.port });
  broker = await Broker.start(`redis://127.0.0.1:${proxy.port}`, ['--redis-timeout-ms', '5000']);
  const dev = `orphan-${process.pid}`;
  proxy.setLatency(400); // each way: the reply is 400 ms behind the script
  const answer = broker.acquire({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'alice', timeout: null })
    .catch(e => ({ status: 'error', error: e }));
  // the script ran once the lock is in Redis; its reply is still in the proxy
  await poll(() => redis.cli('EXISTS', `dl:{${dev}}:lock`) === '1', 5000, 'the acquire to run in Redis', 5);
  proxy.cut();
  proxy.setLatency(0);
  const res = await answer;
  assert(res.status !== 200, `the requester got an answer it should not have: ${res.status} ${res.text}`);
  // nobody has the key: the device must become free within the bound
  await poll(() => redis.cli('EXISTS', `dl:{${dev}}:lock`) === '0', 8000, 'the grant nobody received to be given back');
  const bob = await broker.acquire({ device_name: dev, lock_type: 'MANUAL_OPERATOR', user_id: 'bob', timeout: 5 });
  assert(bob.status === 200 && bob.body.success === true, `bob: ${bob.status} ${bob.text}`);
}, { timeoutMs: 20000 });

test('orphans: stop the servers of this file', async () => {
  if (broker) await broker.stop();
  if (proxy) await proxy.close();
  if (redis) await redis.kill();
});
