'use strict';
// proxy.js - a small TCP proxy for fault injection between a broker and
// Redis (this kernel has no tc netem). Per connection pair it can
//   - add latency to every chunk, in both directions (order is kept),
//   - pause: hold all data (both ways) until resumed, connections stay open,
//   - cut: destroy every open connection (the peer sees a reset/close),
//   - refuse: close new connections at once while set.
//
// As a module:  const p = await startProxy({listenPort: 0, targetPort});
//               p.setLatency(200); p.pause(); p.resume(); p.cut(); p.close();
// Standalone:   node proxy.js LISTEN_PORT TARGET_PORT [LATENCY_MS]
//               (SIGUSR1 toggles pause, SIGUSR2 cuts all connections)

const net = require('net');

function startProxy({ listenPort = 0, targetPort, targetHost = '127.0.0.1', latencyMs = 0 }) {
    const st = {
        latency: latencyMs,
        paused: false,
        refuse: false,
        conns: new Set(),
        stats: { accepted: 0, cut: 0, bytes: 0 },
    };

    // One direction of a pair: chunks are queued with their release time
    // and written in order; a pause holds the queue.
    function pipe(from, to) {
        const q = [];
        let timer = null;
        const flush = () => {
            timer = null;
            if (st.paused || to.destroyed) return;
            const now = Date.now();
            while (q.length && q[0].at <= now) {
                const c = q.shift().chunk;
                st.stats.bytes += c.length;
                to.write(c);
            }
            if (q.length) timer = setTimeout(flush, Math.max(1, q[0].at - now));
        };
        from.on('data', (chunk) => {
            q.push({ chunk, at: Date.now() + st.latency });
            if (!timer && !st.paused) timer = setTimeout(flush, st.latency > 0 ? st.latency : 0);
        });
        return { kick: () => { if (!timer && q.length) flush(); }, drop: () => { q.length = 0; if (timer) clearTimeout(timer); timer = null; } };
    }

    const server = net.createServer((client) => {
        st.stats.accepted++;
        if (st.refuse) { client.destroy(); return; }
        const upstream = net.connect(targetPort, targetHost);
        client.setNoDelay(true);
        upstream.setNoDelay(true);
        const pair = { client, upstream };
        const a = pipe(client, upstream);
        const b = pipe(upstream, client);
        pair.kick = () => { a.kick(); b.kick(); };
        pair.destroy = () => {
            a.drop(); b.drop();
            client.destroy();
            upstream.destroy();
            st.conns.delete(pair);
        };
        st.conns.add(pair);
        for (const s of [client, upstream]) {
            s.on('error', () => pair.destroy());
            s.on('close', () => pair.destroy());
        }
    });

    return new Promise((resolve, reject) => {
        server.on('error', reject);
        server.listen(listenPort, '127.0.0.1', () => {
            resolve({
                port: server.address().port,
                stats: st.stats,
                setLatency(ms) { st.latency = Math.max(0, ms | 0); },
                pause() { st.paused = true; },
                resume() {
                    st.paused = false;
                    for (const p of st.conns) p.kick();
                },
                cut() {
                    for (const p of [...st.conns]) { st.stats.cut++; p.destroy(); }
                },
                setRefuse(on) { st.refuse = !!on; },
                heal() {
                    st.latency = 0;
                    st.refuse = false;
                    this.resume();
                },
                connections() { return st.conns.size; },
                close() {
                    return new Promise((r) => {
                        this.cut();
                        server.close(() => r());
                    });
                },
            });
        });
    });
}

module.exports = { startProxy };

if (require.main === module) {
    const [lp, tp, lat] = process.argv.slice(2).map(Number);
    if (!tp) {
        console.error('usage: node proxy.js LISTEN_PORT TARGET_PORT [LATENCY_MS]');
        process.exit(2);
    }
    startProxy({ listenPort: lp || 0, targetPort: tp, latencyMs: lat || 0 }).then((p) => {
        console.log(`proxy 127.0.0.1:${p.port} -> 127.0.0.1:${tp}, latency ${lat || 0} ms`);
        let paused = false;
        process.on('SIGUSR1', () => { paused = !paused; if (paused) p.pause(); else p.resume(); });
        process.on('SIGUSR2', () => p.cut());
    });
}
