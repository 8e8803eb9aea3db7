'use strict';
// harness.js - the Node test harness: each test is its own entry, run in
// order with a deadline; the last line printed is "N passed, M failed".
const tests = [];

function test(name, fn, { timeoutMs = 30000 } = {}) {
  tests.push({ name, fn, timeoutMs });
}

async function run({ onFail } = {}) {
  let passed = 0, failed = 0;
  for (const t of tests) {
    let timer;
    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${t.timeoutMs} ms`)), t.timeoutMs);
    });
    try {
      await Promise.race([t.fn(), deadline]);
      passed++;
      console.log(`ok - ${t.name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL - ${t.name}: ${e && e.stack ? e.stack : e}`);
      if (onFail) await onFail(t.name).catch(() => {});
    } finally {
      clearTimeout(timer);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed;
}

module.exports = { test, run };
