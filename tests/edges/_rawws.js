'use strict';
// _rawws.js - a raw WebSocket client for the edge tests, one that can stop
// reading (raw.sock.pause()) and sees what the ws package hides: it counts
// the server's pings, and with { keep: true } keeps every text message
// (joined from its fragments) as parsed JSON in raw.frames. Resolves once
// the upgrade is answered 101.
const crypto = require('crypto');
const net = require('net');

function rawWs(port, { keep = false } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const raw = { sock, pings: 0, frames: [], closed: false, buf: Buffer.alloc(0), upgraded: false, parts: [] };
    raw.closedP = new Promise(r => sock.on('close', () => { raw.closed = true; r(); }));
    sock.on('error', () => {});
    const key = crypto.randomBytes(16).toString('base64');
    sock.on('connect', () => sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    sock.on('data', (d) => {
      raw.buf = Buffer.concat([raw.buf, d]);
      if (!raw.upgraded) {
        const i = raw.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = raw.buf.slice(0, i).toString();
        raw.buf = raw.buf.slice(i + 4);
        if (!/^HTTP\/1\.1 101/.test(head)) { reject(new Error(`upgrade refused: ${head}`)); return; }
        raw.upgraded = true;
        resolve(raw);
      }
      for (;;) { // server frames are unmasked
        if (raw.buf.length < 2) return;
        let len = raw.buf[1] & 0x7f, off = 2;
        if (len === 126) { if (raw.buf.length < 4) return; len = raw.buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (raw.buf.length < 10) return; len = Number(raw.buf.readBigUInt64BE(2)); off = 10; }
        if (raw.buf.length < off + len) return;
        const fin = raw.buf[0] & 0x80, op = raw.buf[0] & 0x0f;
        if (op === 9) raw.pings++;
        if (keep && (op === 1 || op === 0)) {
          raw.parts.push(raw.buf.slice(off, off + len));
          if (fin) {
            raw.frames.push(JSON.parse(Buffer.concat(raw.parts).toString('utf8')));
            raw.parts = [];
          }
        }
        raw.buf = raw.buf.slice(off + len);
      }
    });
  });
}

module.exports = { rawWs };
