'use strict';
// _monitor.js - Redis's MONITOR output of one redis-server, collected as
// text (redis-cli MONITOR), for tests that check what scripts ran: keys.js
// (every key a command names is declared) and fastpath.js (which calls
// took a fast path).
const { spawn } = require('child_process');
const { poll } = require('../lib/servers.js');

class Monitor {
  constructor(port) {
    this.text = '';
    this.proc = spawn('redis-cli', ['-p', String(port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.proc.stdout.on('data', (d) => { this.text += d; });
  }
  async started() { await poll(() => this.text.startsWith('OK'), 5000, 'MONITOR to start'); }
  stop() { this.proc.kill(); }
}

module.exports = { Monitor };
