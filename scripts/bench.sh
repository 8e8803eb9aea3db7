#!/bin/sh
# bench.sh - what `make bench` runs: a private redis-server (append-only file,
# appendfsync everysec, free loopback port, temp dir) and devlockd (--port 0),
# then every lockbench scenario, each bounded in time, one summary line each.
# The Redis ceiling for a write path that runs one script per operation is
# measured in the same run with redis-benchmark (EVALSHA of a script that does
# one INCR and one XADD) and every write scenario prints its ratio to it.
#
# Environment:
#   B=build                 build directory (devlockd, lockbench)
#   BENCH_DURATION=5        seconds per scenario
#   BENCH_ONLY="cycle-http-16 fanout-1000"   run only these scenarios
#   BENCH_PROFILE=1         also record the broker with perf (cpu-clock, call
#                           graphs) during cycle-http-16, read-64, status-16 and
#                           fanout-1000 and print the top of each report
#                           (the numbers of that run are lower: perf is sampling)
#   BENCH_KEEP=1            keep the temp dir (logs, perf data)
# Exit status: 0 when every scenario ran without errors or missed frames.
# shellcheck disable=SC3045 # ulimit -n and -H: dash and bash both have them
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
LB=$B/lockbench
DURATION=${BENCH_DURATION:-5}
ONLY=${BENCH_ONLY:-}
PROFILE=${BENCH_PROFILE:-0}

for f in "$B/devlockd" "$LB"; do
    [ -x "$f" ] || { echo "bench: $f is missing; run make bench" >&2; exit 2; }
done

# 10 000 watchers need more than 10 000 descriptors in devlockd and in lockbench.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10200 ]; then
    echo "bench: warning: ulimit -n is $(ulimit -n); fanout-10000 and idle-10000 need about 10 200" >&2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/devlock-bench.XXXXXX")
redis_pid=""
ceiling=""
broker_pid=""
failed=""

cleanup() {
    trap - INT TERM EXIT
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ -n "$failed" ]; then
        echo "bench: logs kept in $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls a command until it succeeds, at most $1 tenths of a second.
wait_for() {
    n=$1
    shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le "$n" ] || return 1
        sleep 0.1
    done
}

redis_port=$("$LB" --free-port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$T" --logfile "$T/redis.log" &
redis_pid=$!
if ! wait_for 100 redis-cli -p "$redis_port" ping; then
    echo "bench: redis-server did not answer" >&2; cat "$T/redis.log" >&2; failed=1; exit 1
fi

"$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$T/port" \
    --redis-url "redis://127.0.0.1:$redis_port" --log-level WARNING >"$T/devlockd.log" 2>&1 &
broker_pid=$!
if ! wait_for 100 test -s "$T/port"; then
    echo "bench: devlockd did not start" >&2; cat "$T/devlockd.log" >&2; failed=1; exit 1
fi
port=$(cat "$T/port")

echo "bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ {printf "%.1f GB RAM", $2 / 1048576}' /proc/meminfo)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), ulimit -n $(ulimit -n)"
echo "bench: load before:$(uptime | sed 's/.*load average//')"
echo "bench: redis-server 127.0.0.1:$redis_port (appendonly, everysec), devlockd 127.0.0.1:$port, $DURATION s per scenario"

wanted() {
    [ -z "$ONLY" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; esac
    return 1
}

# bench NAME lockbench-args...: one scenario, bounded by timeout(1) as well.
bench() {
    name=$1
    shift
    wanted "$name" || return 0
    perf_pid=""
    if [ "$PROFILE" = 1 ]; then
        case $name in cycle-http-16 | read-64 | status-16 | fanout-1000)
            perf record -e cpu-clock -F 999 -g -p "$broker_pid" -o "$T/perf-$name.data" -- sleep "$DURATION" \
                >"$T/perf-$name.log" 2>&1 &
            perf_pid=$! ;;
        esac
    fi
    if ! timeout 300 "$LB" --port "$port" --pid "$broker_pid" --redis-pid "$redis_pid" --label "$name" \
        --duration "$DURATION" ${ceiling:+--ceiling "$ceiling"} "$@" 2>"$T/$name.err"; then
        echo "$name: FAILED ($(head -3 "$T/$name.err" | tr '\n' ' '))"
        failed="$failed $name"
    fi
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        echo "--- perf: devlockd during $name (self time, top 25) ---"
        perf report -i "$T/perf-$name.data" --stdio --no-children --sort symbol 2>/dev/null |
            grep -E '^ +[0-9]+\.[0-9]+%' | head -25
        echo "--- perf: devlockd during $name (by shared object) ---"
        perf report -i "$T/perf-$name.data" --stdio --no-children --sort dso 2>/dev/null |
            grep -E '^ +[0-9]+\.[0-9]+%' | head -10
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "bench: devlockd died during $name" >&2; cat "$T/devlockd.log" >&2; failed="$failed $name"; exit 1
    fi
}

# Memory first, on a fresh broker (its heap is not yet grown by the load).
bench idle-1000 --scenario idle --watchers 1000
bench idle-10000 --scenario idle --watchers 10000

# The ceiling: EVALSHA of a script that does one INCR and one XADD (MAXLEN ~ 100000),
# 16 clients, no pipelining, on this same Redis.
ceiling=""
if wanted redis-evalsha-16 || [ -z "$ONLY" ] || echo "$ONLY" | grep -q -e cycle -e ladder; then
    sha=$(redis-cli -p "$redis_port" SCRIPT LOAD \
        "local n = redis.call('INCR', KEYS[1]) redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'n', n) return n")
    n=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d * 40000 }')
    line=$(timeout 120 redis-benchmark -p "$redis_port" -c 16 -n "$n" --csv evalsha "$sha" 2 bench:ctr bench:stream |
        sed -n 2p | tr -d '"')
    ceiling=$(echo "$line" | cut -d, -f2)
    echo "$line" | awk -F, -v n="$n" '{ printf "%-22s %9.0f scripts/s  p50 %7.3f  p99 %7.3f ms | redis-benchmark -c 16 -n %d: EVALSHA of one INCR + one XADD\n", "redis-evalsha-16", $2, $5, $7, n }'
    redis-cli -p "$redis_port" DEL bench:ctr bench:stream >/dev/null
fi

bench cycle-http-16 --scenario cycle --proto http --conns 16
bench cycle-http-64 --scenario cycle --proto http --conns 64
bench cycle-ws-16 --scenario cycle --proto ws --conns 16
bench cycle-ws-64 --scenario cycle --proto ws --conns 64
bench ladder-http-16 --scenario ladder --proto http --conns 16
bench read-64 --scenario read --conns 64
bench status-16 --scenario status --conns 16 --hold 1000
bench fanout-100 --scenario fanout --watchers 100
bench fanout-1000 --scenario fanout --watchers 1000
bench fanout-10000 --scenario fanout --watchers 10000

echo "bench: load after:$(uptime | sed 's/.*load average//')"
if [ -n "$failed" ]; then
    echo "bench: FAILED:$failed"
    exit 1
fi
