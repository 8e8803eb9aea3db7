#!/bin/bash
# The seed README's flows with clients nobody here wrote: curl for HTTP and
# wscat (npm) for the WebSocket, against a private redis-server and devlockd.
# Each check prints "ok - ..." or "FAIL - ..."; last line "N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh
trap e2e_cleanup EXIT

# check NAME [DETAIL]: the status of the previous command decides
check() { if [ "$?" = 0 ]; then ok "$1"; else bad "$1" "${2:-}"; fi; }
jqr() { printf '%s' "$1" | jq -r "$2" 2>/dev/null; }
# post PATH JSON: prints the body, then the HTTP status on the last line
post() { curl -s -m 5 -XPOST "$U$1" -H 'content-type: application/json' -d "$2" -w '\n%{http_code}'; }
body() { printf '%s' "$1" | sed '$d'; }
code() { printf '%s' "$1" | tail -n 1; }
UUID4='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

start_redis || bad "redis-server starts"
start_devlockd || { bad "devlockd starts"; e2e_cleanup; echo "$pass passed, $fail failed"; exit 1; }

# A wscat watcher stays connected for the whole run; its stdin is a fifo
# this shell holds open (fd 3).
W="$E2E_DIR/ws.out"
mkfifo "$E2E_DIR/ws.in"
exec 3<>"$E2E_DIR/ws.in"
"$WSCAT" -c "$WSU" <&3 >"$W" 2>&1 &
pids="$pids $!"
until_ok 10 has_frame "$W" '.type == "initial_status" and (.event_id | test("^[0-9]+-[0-9]+$")) and .data.total_count == 0'
check "wscat watcher gets initial_status with an event_id"

f=$(ws_once '{"type":"ping"}' '.type == "pong"')
check "wscat -x ping gets pong" "$f"
f=$(ws_once '{"type":"get_status"}' '.type == "status_response" and (.data.locks | type) == "array"')
check "wscat -x get_status gets status_response" "$f"

# --- the README's flow: operator takes detector1 -----------------------------------
r=$(post /api/lock/request '{"device_name":"detector1","lock_type":"MANUAL_OPERATOR","user_id":"operator123","timeout":300,"reason":"Calibration"}')
b=$(body "$r"); key=$(jqr "$b" .lock_key); fence=$(jqr "$b" .fence)
[ "$(code "$r")" = 200 ] && [ "$(jqr "$b" .success)" = true ] && [[ "$key" =~ $UUID4 ]] &&
    [[ "$fence" =~ ^[0-9]+$ ]] && [ "$fence" -ge 1 ] && [ "$(jqr "$b" .lock.lock_key)" = "$key" ] &&
    [ "$(jqr "$b" '.expires_at | test("Z$")')" = true ] && [ "$(jqr "$b" .lock.reason)" = Calibration ]
check "curl acquire: 200, success, lock_key (UUID v4), fence, expires_at" "$r"
until_ok 5 has_frame "$W" ".type == \"lock_update\" and .action == \"acquired\" and .lock.lock_key == \"$key\""
check "wscat sees the acquire"

r=$(post /api/lock/request '{"device_name":"detector1","lock_type":"MANUAL_OPERATOR","user_id":"user456"}')
b=$(body "$r")
[ "$(code "$r")" = 200 ] && [ "$(jqr "$b" .success)" = false ] && jqr "$b" .message | grep -q operator123 &&
    [ "$(jqr "$b" .holder.lock_key)" = "$key" ] && [ "$(jqr "$b" .lock_key)" = null ]
check "equal priority is denied, names the holder, carries the holder's lock" "$r"

r=$(post /api/lock/request '{"device_name":"detector1","lock_type":"QUEUE_QUEUED","user_id":"queue_server"}')
b=$(body "$r")
[ "$(jqr "$b" .success)" = false ] && [ "$(jqr "$b" .holder.user_id)" = operator123 ]
check "lower priority is denied" "$r"

# --- the queue server starts a plan: QUEUE_EXECUTING preempts the operator ----------
r=$(post /api/lock/request '{"device_name":"detector1","lock_type":"QUEUE_EXECUTING","user_id":"queue_server","plan_uid":"plan-1"}')
b=$(body "$r"); qkey=$(jqr "$b" .lock_key); qfence=$(jqr "$b" .fence)
[ "$(jqr "$b" .success)" = true ] && [ "$(jqr "$b" .preempted.lock_key)" = "$key" ] &&
    [ "$(jqr "$b" .preempted.user_id)" = operator123 ] && [ "$qfence" -gt "$fence" ]
check "QUEUE_EXECUTING preempts MANUAL_OPERATOR with a larger fence" "$r"
until_ok 5 has_frame "$W" ".type == \"lock_update\" and .action == \"acquired\" and .lock.lock_key == \"$qkey\""
seq=$(frames "$W" '.type == "lock_update" and .device_name == "detector1"' | jq -r '"\(.action)/\(.cause // "-")"' | tr '\n' ' ')
[ "$seq" = "acquired/- force_released/preempted acquired/- " ]
check "wscat sees force_released (cause preempted) then the new acquire" "$seq"

r=$(curl -s -m 5 -XPOST "$U/api/lock/release?device_name=detector1&lock_key=$key&user_id=operator123" -w '\n%{http_code}')
[ "$(code "$r")" = 403 ] && [ "$(jqr "$(body "$r")" .error)" = forbidden ]
check "the preempted operator's key no longer releases (403)" "$r"

r=$(curl -s -m 5 -XPOST "$U/api/lock/release?device_name=detector1&lock_key=$qkey&user_id=queue_server" -w '\n%{http_code}')
[ "$(code "$r")" = 200 ] && [ "$(jqr "$(body "$r")" .success)" = true ]
check "release with the old client's query string" "$r"
until_ok 5 has_frame "$W" ".type == \"lock_update\" and .action == \"released\" and .lock.lock_key == \"$qkey\""
check "wscat sees the release"

r=$(curl -s -m 5 -XPOST "$U/api/lock/release?device_name=detector1&lock_key=$qkey&user_id=queue_server" -w '\n%{http_code}')
[ "$(code "$r")" = 404 ] && [ "$(jqr "$(body "$r")" .error)" = not_found ]
check "releasing again is 404" "$r"

r=$(post /api/lock/request '{"device_name":"bad name","lock_type":"MANUAL_OPERATOR","user_id":"u"}')
[ "$(code "$r")" = 400 ] && [ "$(jqr "$(body "$r")" .error)" = invalid_device_name ] && [ -n "$(jqr "$(body "$r")" .detail)" ]
check "an invalid device name is 400 with detail and error" "$r"

# --- a 1-second lease ends by itself --------------------------------------------------
r=$(post /api/lock/request '{"device_name":"shutter1","lock_type":"QUEUE_QUEUED","user_id":"q","timeout":1}')
b=$(body "$r"); skey=$(jqr "$b" .lock_key); exp_at=$(jqr "$b" .expires_at)
exp_ms=$(node -e 'console.log(Date.parse(process.argv[1]))' "$exp_at")
expired_seen() { grep -q '"cause":"expired"' "$W"; }
until_ok 5 expired_seen; seen_ms=$(now_ms)
f=$(frames "$W" ".type == \"lock_update\" and .action == \"force_released\" and .lock.lock_key == \"$skey\"")
[ "$(jqr "$f" .cause)" = expired ]
check "a 1-second lock ends with force_released, cause expired" "$f"
late=$(( seen_ms - exp_ms ))
stamp_late=$(node -e 'console.log(Date.parse(process.argv[1]) - Date.parse(process.argv[2]))' "$(jqr "$f" .timestamp)" "$exp_at")
echo "# expiry event stamped ${stamp_late} ms and seen by wscat ${late} ms after expires_at"
[ "$stamp_late" -ge 0 ] && [ "$stamp_late" -le 100 ] && [ "$late" -ge -20 ] && [ "$late" -le 250 ]
check "on time (stamped 0..100 ms after expires_at; seen by a 20 ms file poll within 250 ms)"

s=$(curl -s -m 5 "$U/api/locks/status"); d=$(curl -s -m 5 "$U/api/locks/device/shutter1")
[ "$(jqr "$s" .total_count)" = 0 ] && [ "$(jqr "$s" '.locks | length')" = 0 ] &&
    [ "$(jqr "$d" .locked)" = false ] && [ "$(jqr "$d" .lock)" = null ]
check "status and device answer like the old service" "$s $d"
[ "$(curl -s -m 5 "$U/api/health/live" | jq -r .status)" = alive ] &&
    [ "$(curl -s -m 5 "$U/api/health/ready" | jq -r '"\(.status) \(.redis_connected)"')" = "ready true" ]
check "health live and ready"

e2e_cleanup
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
