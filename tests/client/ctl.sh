#!/bin/sh
# ctl.sh DIR ACTION - the private servers of the client suite, kept in DIR:
#   start-redis | stop-redis | start-a | stop-a | start-b | stop-b
#   start-c (a broker with --auth-file DIR/auth.json) | stop-c
#   start-gap: a second Redis (tiny stream nodes) with brokers d1, d2 that
#   keep only ~10 events (--stream-maxlen 10), to provoke resume_gap
#   stop-d1 | start-d1
#   pause-a | cont-a: SIGSTOP / SIGCONT broker a (a silent, half-dead peer)
# Redis and the brokers keep their ports across restarts (DIR/*.port); each
# process's PID is in DIR/NAME.pid and only those PIDs are ever signalled.
# Every wait is a poll with a deadline.
set -u
dir=$1; action=$2
B=${DEVLOCK_BUILD:-build}

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
# until_ok SECONDS CMD...: polls CMD every 50 ms until it succeeds
until_ok() {
    deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do [ "$(date +%s%N)" -ge "$deadline" ] && return 1; sleep 0.05; done
}
alive() { [ -s "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
dead() { ! alive "$1"; }
stop() {
    alive "$1" || return 0
    kill "-$2" "$(cat "$dir/$1.pid")"
    until_ok 10 dead "$1" || return 1
    rm -f "$dir/$1.pid"
}

start_redis() {
    name=${1:-redis}; shift
    alive "$name" && return 0     # never a second one (its PID would replace the first's)
    [ -s "$dir/$name.port" ] || free_port >"$dir/$name.port"
    p=$(cat "$dir/$name.port")
    mkdir -p "$dir/$name.data"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir/$name.data" \
        --logfile "$dir/$name.log" "$@" >/dev/null 2>&1 &
    echo $! >"$dir/$name.pid"
    until_ok 10 sh -c "redis-cli -p $p ping 2>/dev/null | grep -q PONG"
}

ready() { curl -s -o /dev/null -m 2 "http://127.0.0.1:$1/api/health/ready"; }
start_broker() {
    name=$1; redis=$2; shift 2
    alive "$name" && return 0
    port=0
    [ -s "$dir/$name.port" ] && port=$(cat "$dir/$name.port")
    rm -f "$dir/$name.portfile"
    "$B/devlockd" --host 127.0.0.1 --port "$port" --port-file "$dir/$name.portfile" \
        --redis-url "redis://127.0.0.1:$(cat "$dir/$redis.port")" "$@" >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    until_ok 10 test -s "$dir/$name.portfile" || return 1
    cp "$dir/$name.portfile" "$dir/$name.port"
    until_ok 10 ready "$(cat "$dir/$name.port")"
}

case $action in
start-redis) start_redis redis ;;
stop-redis) stop redis KILL ;;
start-a) start_broker a redis ;;
stop-a) stop a TERM ;;
pause-a) kill -STOP "$(cat "$dir/a.pid")" ;;
cont-a) kill -CONT "$(cat "$dir/a.pid")" ;;
start-b) start_broker b redis ;;
stop-b) stop b TERM ;;
start-c) start_broker c redis --auth-file "$dir/auth.json" ;;
start-gap) start_redis redis2 --stream-node-max-entries 2 && start_broker d1 redis2 --stream-maxlen 10 &&
    start_broker d2 redis2 --stream-maxlen 10 ;;
start-d1) start_broker d1 redis2 --stream-maxlen 10 ;;
stop-d1) stop d1 TERM ;;
stop-c) stop c TERM ;;
*) echo "ctl.sh: unknown action $action" >&2; exit 2 ;;
esac
