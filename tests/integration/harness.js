'use strict';
// harness.js - every test is its own entry, run one after the other under a
// deadline. Prints "ok - name" or "FAIL - name: reason" per test and, last,
// "N passed, M failed". Hooks: beforeEach(name), afterEach(name) (may throw:
// the test then fails), onFail(name) (print logs).
const entries = [];

function test(name, fn, { timeoutMs = 30000 } = {}) {
  entries.push({ name, fn, timeoutMs });
}

function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function run({ beforeEach, afterEach, onFail, only } = {}) {
  let passed = 0, failed = 0;
  for (const t of entries) {
    if (only && !only.test(t.name)) continue;
    let error = null;
    try {
      if (beforeEach) await beforeEach(t.name);
      await withDeadline(Promise.resolve().then(t.fn), t.timeoutMs, 'test');
    } catch (e) { error = e; }
    try {
      if (afterEach) await withDeadline(Promise.resolve().then(() => afterEach(t.name)), 30000, 'cleanup');
    } catch (e) { error = error || e; }
    if (error) {
      failed++;
      console.log(`FAIL - ${t.name}: ${error && error.stack ? error.stack : error}`);
      if (onFail) { try { await onFail(t.name); } catch (e) { /* logs are best effort */ } }
    } else {
      passed++;
      console.log(`ok - ${t.name}`);
    }
  }
  return { passed, failed };
}

module.exports = { test, run, withDeadline };
