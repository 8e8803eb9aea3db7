#!/bin/bash
# Redis Sentinel failover: a primary, one replica and three Sentinels on
# loopback; devlockd finds the master through the Sentinels, acknowledges
# changes only once the replica has them (--redis-wait-replicas 1), and
# follows the failover when the primary is SIGKILLed.
# Checks: served again within 5 s, no acknowledged lock lost, fences never
# repeat or go back. Last line: "N passed, M failed".
set -u
B=${DEVLOCK_BUILD:-build}
dir=$(mktemp -d /tmp/devlock-sentinel.XXXXXX)
pass=0; fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
cleanup() {
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    [ -n "${broker:-}" ] && kill "$broker" 2>/dev/null
    wait 2>/dev/null
    if [ "$fail" != 0 ]; then tail -n 30 "$dir"/*.log; fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_for() { # wait_for SECONDS CMD...: polls CMD until it succeeds or the deadline passes
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do [ "$(date +%s%N)" -ge "$deadline" ] && return 1; sleep 0.05; done
}
PP=$(free_port); RP=$(free_port); S1=$(free_port); S2=$(free_port); S3=$(free_port)
redis-server --port "$PP" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir" --appendfilename p.aof \
    --repl-diskless-sync-delay 0 --daemonize yes --logfile "$dir/primary.log" --pidfile "$dir/primary.pid"
mkdir -p "$dir/r"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir/r" --replicaof 127.0.0.1 "$PP" \
    --repl-diskless-sync-delay 0 --daemonize yes --logfile "$dir/replica.log" --pidfile "$dir/replica.pid"
for s in $S1 $S2 $S3; do
    printf 'port %s\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n' \
        "$s" "$PP" > "$dir/s$s.conf"
    redis-server "$dir/s$s.conf" --sentinel --daemonize yes --logfile "$dir/sentinel$s.log" --pidfile "$dir/s$s.pid"
done
replica_up() { redis-cli -p "$RP" info replication 2>/dev/null | grep -q master_link_status:up; }
sentinels_see_replica() { redis-cli -p "$S1" sentinel replicas mymaster 2>/dev/null | grep -q "$RP"; }
wait_for 20 replica_up || bad "replica synced"
wait_for 20 sentinels_see_replica || bad "sentinels know the replica"

"$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$dir/port" \
    --redis-sentinel "127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3" --redis-wait-replicas 1 > "$dir/devlockd.log" 2>&1 &
broker=$!
wait_for 10 test -s "$dir/port" || bad "devlockd started"
P=$(cat "$dir/port")
api() { curl -s -m 2 -XPOST "http://127.0.0.1:$P/api/lock/$1" -H 'content-type: application/json' -d "$2"; }
ready() { curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P/api/health/ready" | grep -q 200; }
wait_for 10 ready || bad "ready through the Sentinels"

declare -A fence
for d in s1 s2 s3; do
    r=$(api request "{\"device_name\":\"$d\",\"lock_type\":\"MANUAL_OPERATOR\",\"user_id\":\"u\",\"timeout\":600}")
    fence[$d]=$(echo "$r" | jq -r .fence)
done
if [ "$(echo "${fence[@]}" | wc -w)" = 3 ] && ! echo "${fence[@]}" | grep -q null; then ok "locks acknowledged before the failover"; else bad "locks acknowledged before the failover"; fi

kill -9 "$(cat "$dir/primary.pid")"
t0=$(date +%s%N)
served() { [ "$(api request '{"device_name":"after","lock_type":"QUEUE_QUEUED","user_id":"u","request_id":"after-1"}' | jq -r .success 2>/dev/null)" = true ]; }
if wait_for 20 served; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "# served again ${ms} ms after the primary was killed"
    if [ "$ms" -le 5000 ]; then ok "served again within 5 s (${ms} ms)"; else bad "served again within 5 s (${ms} ms)"; fi
else
    bad "served again after the failover"
fi
status=$(curl -s -m 2 "http://127.0.0.1:$P/api/locks/status")
lost=0
for d in s1 s2 s3; do
    f=$(echo "$status" | jq -r ".locks[] | select(.device_name==\"$d\") | .fence")
    [ "$f" = "${fence[$d]}" ] || lost=$((lost + 1))
done
if [ "$lost" = 0 ]; then ok "no acknowledged lock lost"; else bad "no acknowledged lock lost ($lost lost)"; fi
f2=$(api request '{"device_name":"s1","lock_type":"MAINTENANCE","user_id":"u"}' | jq -r .fence)
if [ "$f2" != null ] && [ "$f2" -gt "${fence[s1]}" ]; then ok "fence after the failover is higher (${fence[s1]} -> $f2)"; else bad "fence after the failover is higher (${fence[s1]} -> $f2)"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
