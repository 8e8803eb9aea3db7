'use strict';
// tests/edges/run.js - one regression test per defect of issue 11 (lock
// safety at the edges): keep-alive, replays, late replies, expiry retries,
// tiny waits, dead waiters, sessions, queue bounds, cross-site requests,
// large scripts, Sentinel, lingering close. Each test fails on the broker
// before the fix. The tests live in the other files of this directory, one
// per area; files starting with '_' are shared helpers.
// Last line printed: "N passed, M failed"; exit status 1 on any failure.
const fs = require('fs');
const path = require('path');
const { run } = require('../lib/harness.js');
const { stopAll } = require('../lib/servers.js');

for (const f of fs.readdirSync(__dirname).sort()) {
  if (f.endsWith('.js') && f !== 'run.js' && !f.startsWith('_')) require(path.join(__dirname, f));
}

run().then(async (failed) => {
  await stopAll();
  process.exit(failed || process.exitCode ? 1 : 0);
});
