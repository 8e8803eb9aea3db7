# lib.sh - sourced by tests/e2e/run.sh: a private redis-server and devlockd
# on free loopback ports in a temp dir, only those PIDs killed, polling with
# deadlines, ok/FAIL counting. Needs: redis-server, redis-cli, node, curl, jq.
B=${DEVLOCK_BUILD:-build}
WSCAT=tests/node_modules/.bin/wscat
E2E_DIR=$(mktemp -d /tmp/devlock-e2e.XXXXXX)
pass=0; fail=0; pids=""

ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1${2:+: $2}"; fail=$((fail + 1)); }
now_ms() { date +%s%3N; }

# until_ok SECONDS CMD...: runs CMD every 20 ms until it succeeds or the time is up
until_ok() {
    local deadline=$(( $(now_ms) + $1 * 1000 )); shift
    until "$@"; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1; sleep 0.02  # poll until the deadline
    done
}

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_redis: sets REDIS_PORT
start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes \
        --dir "$E2E_DIR" --logfile "$E2E_DIR/redis.log" &
    pids="$pids $!"
    until_ok 10 sh -c "redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG"
}

# start_devlockd: sets PORT, U (http base) and WSU (ws url)
start_devlockd() {
    "$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$E2E_DIR/port" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" >"$E2E_DIR/devlockd.log" 2>&1 &
    pids="$pids $!"
    until_ok 10 test -s "$E2E_DIR/port" || return 1
    PORT=$(cat "$E2E_DIR/port")
    U="http://127.0.0.1:$PORT"
    WSU="ws://127.0.0.1:$PORT/ws"
    until_ok 10 sh -c "curl -sf '$U/api/health/ready' >/dev/null"
}

# frames FILE JQ: the JSON frames in FILE (one per line, as wscat prints them
# without a terminal) that match the jq condition JQ, one per line
frames() { jq -c -R "fromjson? | select($2)" "$1" 2>/dev/null; }
has_frame() { [ -n "$(frames "$1" "$2")" ]; }

# ws_once MESSAGE JQ: a fresh wscat connection sends MESSAGE; prints the
# first frame matching JQ (waits at most 5 s). wscat quits when its stdin
# closes, so it reads from a fifo this shell holds open until it is done.
ws_once() {
    local out="$E2E_DIR/once.$RANDOM" fifo="$E2E_DIR/once.in.$RANDOM" p rc=0
    mkfifo "$fifo"
    exec 4<>"$fifo"
    "$WSCAT" -c "$WSU" -x "$1" -w 10 <&4 >"$out" 2>&1 &
    p=$!
    until_ok 5 has_frame "$out" "$2" || rc=1
    kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
    exec 4>&-
    frames "$out" "$2" | head -n 1
    rm -f "$out" "$fifo"
    return $rc
}

# Idempotent: run.sh calls it before its last line, and on EXIT.
e2e_cleanup() {
    [ -d "$E2E_DIR" ] || return 0
    exec 3>&- 2>/dev/null
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    if [ "$fail" != 0 ]; then
        for f in devlockd.log redis.log ws.out; do
            echo "--- $f"; tail -n 40 "$E2E_DIR/$f" 2>/dev/null | sed 's/^/# /'
        done
    fi
    rm -rf "$E2E_DIR"
}
