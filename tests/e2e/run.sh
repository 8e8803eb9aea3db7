#!/bin/bash
# The seed README's flows with clients nobody here wrote: curl for HTTP and
# wscat (npm) for the WebSocket, against a private redis-server and devlockd.
# Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
B=${DEVLOCK_BUILD:-build}
WSCAT=tests/node_modules/.bin/wscat
dir=$(mktemp -d /tmp/devlock-e2e.XXXXXX)
pass=0; fail=0; pids=""
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
jqr() { printf '%s' "$1" | jq -r "$2"; }
# check NAME: the status of the previous command decides
check() { if [ "$?" = 0 ]; then ok "$1"; else bad "$1"; fi; }
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ "$fail" = 0 ] || { echo "--- devlockd log"; tail -n 20 "$dir/devlockd.log"; echo "--- wscat"; cat "$dir/ws.out"; }
    rm -rf "$dir"
}
trap cleanup EXIT
# poll CMD until it succeeds, for at most SECONDS
until_ok() {
    local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do [ "$(date +%s%N)" -ge "$end" ] && return 1; sleep 0.05; done
}

rport=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir" --logfile "$dir/redis.log" &
pids="$pids $!"
until_ok 10 redis-cli -p "$rport" ping >/dev/null 2>&1 || bad "redis-server started"
"$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$dir/port" --redis-url "redis://127.0.0.1:$rport" >"$dir/devlockd.log" 2>&1 &
pids="$pids $!"
until_ok 10 test -s "$dir/port" || bad "devlockd started"
P=$(cat "$dir/port")
U="http://127.0.0.1:$P"
api() { curl -s -XPOST "$U/api/lock/$1" -H 'content-type: application/json' -d "$2"; }

# wscat stays connected for the whole run: its stdin is a fifo this shell
# holds open (fd 3) until it exits
mkfifo "$dir/ws.in"
"$WSCAT" -c "ws://127.0.0.1:$P/ws" <"$dir/ws.in" >"$dir/ws.out" 2>&1 &
pids="$pids $!"
exec 3>"$dir/ws.in"
seen() { grep -q -- "$1" "$dir/ws.out"; }
until_ok 10 seen '"type":"initial_status"'
check "wscat gets initial_status"

r=$(api request '{"device_name":"detector1","lock_type":"MANUAL_OPERATOR","user_id":"operator123","timeout":300,"reason":"Calibration"}')
key=$(jqr "$r" .lock_key); fence=$(jqr "$r" .fence)
[ "$(jqr "$r" .success)" = true ] && [[ "$key" =~ ^[0-9a-f-]{36}$ ]] && [ "$fence" -ge 1 ]
check "curl acquire: success, lock_key, fence"
until_ok 5 seen '"action":"acquired","device_name":"detector1"'
check "wscat sees the acquire"

r=$(api request '{"device_name":"detector1","lock_type":"MANUAL_OPERATOR","user_id":"user456"}')
[ "$(jqr "$r" .success)" = false ] && jqr "$r" .message | grep -q operator123 && [ "$(jqr "$r" .holder.user_id)" = operator123 ]
check "equal priority is denied and names the holder"

r=$(api request '{"device_name":"detector1","lock_type":"QUEUE_EXECUTING","user_id":"queue_server","plan_uid":"plan-1"}')
qkey=$(jqr "$r" .lock_key)
[ "$(jqr "$r" .success)" = true ] && [ "$(jqr "$r" .preempted.user_id)" = operator123 ] && [ "$(jqr "$r" .fence)" -gt "$fence" ]
check "QUEUE_EXECUTING preempts MANUAL_OPERATOR"
until_ok 5 seen '"action":"force_released","device_name":"detector1"'
grep '"action":"force_released","device_name":"detector1"' "$dir/ws.out" | grep -q '"cause":"preempted"'
check "wscat sees force_released with cause preempted"

r=$(curl -s -XPOST "$U/api/lock/release?device_name=detector1&lock_key=$qkey&user_id=queue_server")
[ "$(jqr "$r" .success)" = true ]
check "release with the old client's query string"
until_ok 5 seen '"action":"released","device_name":"detector1"'
check "wscat sees the release"

r=$(api request '{"device_name":"shutter1","lock_type":"QUEUE_QUEUED","user_id":"q","timeout":1}')
exp_at=$(jqr "$r" .expires_at)
until_ok 5 seen '"action":"force_released","device_name":"shutter1"'
line=$(grep '"action":"force_released","device_name":"shutter1"' "$dir/ws.out" | head -n 1)
printf '%s' "$line" | grep -q '"cause":"expired"'
check "a 1-second lock expires with cause expired"
late=$(node -e "const l=process.argv[1]; const m=JSON.parse(l.slice(l.indexOf('{'))); console.log(Date.parse(m.timestamp)-Date.parse(process.argv[2]))" "$line" "$exp_at")
echo "# expired ${late} ms after expires_at"
[ "$late" -ge 0 ] && [ "$late" -le 100 ]
check "on time (0..100 ms late)"

s=$(curl -s "$U/api/locks/status"); d=$(curl -s "$U/api/locks/device/detector1")
[ "$(jqr "$s" .total_count)" = 0 ] && [ "$(jqr "$d" .locked)" = false ]
check "status and device answer like the old service"
[ "$(curl -s "$U/api/health/live" | jq -r .status)" = alive ] && [ "$(curl -s "$U/api/health/ready" | jq -r .status)" = ready ]
check "health"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
