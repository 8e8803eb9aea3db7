#!/bin/sh
# run-local.sh [devlockd flags...] - what `make run` runs: a private
# redis-server (127.0.0.1:60590, append-only file under ./var/) unless one
# already answers at COORDINATION_REDIS_URL, then devlockd in the foreground
# on 0.0.0.0:60620. Ctrl-C stops both.
#
# Persistence: appendonly yes + appendfsync always. Every acknowledged grant
# is on disk before devlockd answers, so neither a Redis crash nor a power
# cut can lose a lock or hand out a fence twice (see docs/operations.md).
set -eu
cd "$(dirname "$0")/.."
B=${DEVLOCK_BUILD:-build}
URL=${COORDINATION_REDIS_URL:-redis://localhost:60590}
export COORDINATION_REDIS_URL="$URL"
redis_pid=""

answers() {
    case $URL in
    unix://*) p=${URL#unix://}; redis-cli -s "${p%%\?*}" ping 2>/dev/null | grep -q PONG ;;
    *) redis-cli -u "$URL" ping 2>/dev/null | grep -q PONG ;;
    esac
}

cleanup() {
    trap - INT TERM EXIT
    [ -n "${devlockd_pid:-}" ] && kill "$devlockd_pid" 2>/dev/null || true
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
}
trap cleanup INT TERM EXIT

if answers; then
    echo "run: using the Redis that answers at $URL"
else
    mkdir -p var
    echo "run: starting redis-server on 127.0.0.1:60590 (append-only file in ./var/)"
    redis-server --bind 127.0.0.1 --port 60590 --dir "$(pwd)/var" --appendonly yes \
        --appendfsync always --save '' --logfile "$(pwd)/var/redis.log" &
    redis_pid=$!
    i=0
    until answers; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$redis_pid" 2>/dev/null; then
            echo "run: redis-server did not start; see var/redis.log" >&2
            exit 1
        fi
        sleep 0.1
    done
fi

echo "run: devlockd on http://0.0.0.0:60620 (dashboard /, WebSocket /ws); Ctrl-C stops"
"$B/devlockd" "$@" &
devlockd_pid=$!
wait "$devlockd_pid" || true
