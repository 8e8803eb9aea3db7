#!/bin/sh
# bench.sh - what `make bench` runs: a private redis-server (append-only file,
# appendfsync everysec, free loopback port, temp dir), devlockd (--port 0) and
# nginx (a private config and prefix in the temp dir, one process, `return
# 200`), then every lockbench scenario, each bounded in time, one line each.
#
# The ceilings are measured in the same run, next to the scenario they bound:
# Redis's for a write path that runs one script per operation (redis-benchmark,
# EVALSHA of a script doing one INCR and one XADD, as many connections as the
# scenario) and nginx's for HTTP (`return 200`, and a static file as large as
# the status answer). Two floors are measured beside them, each the same work
# with our code taken out: the Redis commands one acquire and one release ran
# (captured with MONITOR, replayed with no logic: scripts/bench-floor.awk), and
# one send() of a lock_update to each of 1 000 loopback sockets with no broker
# (lockbench --scenario rawfan). A target can be met only where its floor meets
# it. The scenarios of issue 14's targets run BENCH_REPEAT
# times, each next to its ceiling; the run ends with those targets as ratios
# (medians), the cost of each Lua script inside Redis (INFO commandstats,
# one script kind per phase), devlockd's syscalls per HTTP request and per
# WebSocket frame (strace -c) and its peak RSS over the whole run (VmHWM).
#
# Environment:
#   B=build                 build directory (devlockd, lockbench)
#   BENCH_DURATION=5        seconds per scenario
#   BENCH_REPEAT=3          repetitions of the target scenarios and their ceilings
#   BENCH_ONLY="cycle-http-16 fanout-1000"   run only these scenarios (and
#                           their ceilings; the sections "scripts" and
#                           "syscalls" are names too)
#   BENCH_PROFILE=1         also record the broker with perf (cpu-clock, call
#                           graphs) during cycle-http-16, read-64, status-16 and
#                           fanout-1000 and print the top of each report
#                           (the numbers of that run are lower: perf is sampling)
#   BENCH_KEEP=1            keep the temp dir (logs, perf data, strace output)
# Needs nginx and strace (make bench installs them: install-deps.sh bench); without them
# their sections are skipped with a warning.
# Exit status: 0 when every scenario ran without errors or missed frames.
# shellcheck disable=SC3045 # ulimit -n and -H: dash and bash both have them
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
LB=$B/lockbench
DURATION=${BENCH_DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
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
broker_pid=""
nginx_pid=""
strace_pid=""
lb_pid=""
ceiling=""
failed=""

cleanup() {
    trap - INT TERM EXIT
    for p in $lb_pid $strace_pid $nginx_pid $broker_pid $redis_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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

rcli() { redis-cli -p "$redis_port" "$@"; }

redis_port=$("$LB" --free-port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$T" --logfile "$T/redis.log" &
redis_pid=$!
if ! wait_for 100 rcli ping; then
    echo "bench: redis-server did not answer" >&2; cat "$T/redis.log" >&2; failed=1; exit 1
fi

# start_broker: a fresh devlockd on a free port, ready (its mirror loaded).
brokers=0
hwm_kb=0
start_broker() {
    brokers=$((brokers + 1))
    rm -f "$T/port"
    "$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$T/port" \
        --redis-url "redis://127.0.0.1:$redis_port" --log-level WARNING >>"$T/devlockd.log" 2>&1 &
    broker_pid=$!
    if ! wait_for 100 test -s "$T/port"; then
        echo "bench: devlockd did not start" >&2; cat "$T/devlockd.log" >&2; failed=1; exit 1
    fi
    port=$(cat "$T/port")
    if ! wait_for 100 curl -sf "http://127.0.0.1:$port/api/health/ready"; then
        echo "bench: devlockd did not become ready" >&2; cat "$T/devlockd.log" >&2; failed=1; exit 1
    fi
}
# broker_hwm: the largest VmHWM (KiB) of every devlockd of this run so far.
broker_hwm() {
    h=$(awk '/^VmHWM:/ { print $2 }' "/proc/$broker_pid/status" 2>/dev/null || echo 0)
    [ "${h:-0}" -le "$hwm_kb" ] || hwm_kb=$h
}
stop_broker() {
    broker_hwm
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
}
start_broker

# nginx: one process (master_process off), like the single-threaded broker;
# keep-alive without a request limit; everything under $T.
nginx_port=""
if command -v nginx >/dev/null 2>&1; then
    nginx_port=$("$LB" --free-port)
    mkdir -p "$T/nginx/www"
    cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$nginx_port;
        root $T/nginx/www;
        location = / { return 200; }
        location = /status.json { default_type application/json; }
    }
}
EOF
    nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" &
    nginx_pid=$!
    if ! wait_for 100 curl -sf "http://127.0.0.1:$nginx_port/"; then
        echo "bench: warning: nginx did not start; its ceilings are skipped" >&2
        cat "$T/nginx/error.log" >&2 || true
        kill "$nginx_pid" 2>/dev/null || true
        nginx_pid=""
        nginx_port=""
    fi
else
    echo "bench: warning: no nginx (apt-get install nginx-light); the nginx ceilings are skipped" >&2
fi

echo "bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ {printf "%.1f GB RAM", $2 / 1048576}' /proc/meminfo)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), ulimit -n $(ulimit -n)"
echo "bench: load before:$(uptime | sed 's/.*load average//')"
echo "bench: redis-server 127.0.0.1:$redis_port (appendonly, everysec), devlockd 127.0.0.1:$port," \
    "nginx 127.0.0.1:${nginx_port:-none}; $DURATION s per scenario, targets x $REPEAT"

wanted() {
    [ -z "$ONLY" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; esac
    # a floor runs with the scenario it bounds
    [ "$1" = rawfan-1000 ] && wanted fanout-1000 && return 0
    return 1
}

# lockbench's summary lines of a scenario, one per repetition, go to $T/res.NAME.
# bench NAME lockbench-args...: one scenario against devlockd, bounded by timeout(1).
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
    if timeout 300 "$LB" --port "$port" --pid "$broker_pid" --redis-pid "$redis_pid" --label "$name" \
        --duration "$DURATION" ${ceiling:+--ceiling "$ceiling"} "$@" >"$T/out" 2>"$T/$name.err"; then
        cat "$T/out"
        head -1 "$T/out" >>"$T/res.$name"
    else
        cat "$T/out"
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

# nginx_bench NAME PATH CONNS SCENARIO: the nginx ceiling of SCENARIO, driven by the same client.
nginx_bench() {
    [ -n "$nginx_port" ] || return 0
    wanted "$1" || wanted "$4" || return 0
    [ "$2" != /status.json ] || [ -s "$T/nginx/www/status.json" ] || return 0
    if timeout 120 "$LB" --port "$nginx_port" --pid "$nginx_pid" --label "$1" --scenario get --path "$2" \
        --conns "$3" --duration "$DURATION" >"$T/out" 2>"$T/$1.err"; then
        sed 's/| cpu devlockd/| cpu nginx/' "$T/out"
        head -1 "$T/out" >>"$T/res.$1"
    else
        cat "$T/out"
        echo "$1: FAILED ($(head -3 "$T/$1.err" | tr '\n' ' '))"
        failed="$failed $1"
    fi
}

# The Redis ceiling: EVALSHA of a script that does one INCR and one XADD
# (MAXLEN ~ 100000), $1 clients, no pipelining, on this same Redis; sets
# $ceiling. The line goes to the results of redis-evalsha-$1 unless $2 is "once".
trivial_sha=""
redis_ceiling() {
    name=redis-evalsha-$1
    [ "${2:-}" != once ] || name=redis-evalsha-$1-once
    [ -n "$trivial_sha" ] || trivial_sha=$(rcli SCRIPT LOAD \
        "local n = redis.call('INCR', KEYS[1]) redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'n', n) return n")
    n=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d * 40000 }')
    line=$(timeout 120 redis-benchmark -p "$redis_port" -c "$1" -n "$n" --csv evalsha "$trivial_sha" 2 bench:ctr bench:stream |
        sed -n 2p | tr -d '"')
    ceiling=$(echo "$line" | cut -d, -f2)
    echo "$line" | awk -F, -v n="$n" -v name="$name" -v c="$1" '{ printf "%-22s %9.0f scripts/s  p50 %7.3f  p99 %7.3f ms | redis-benchmark -c %d -n %d: EVALSHA of one INCR + one XADD\n", name, $2, $5, $7, c, n }' |
        tee -a "$T/res.$name"
    rcli DEL bench:ctr bench:stream >/dev/null
}

# The data model's floor: the Redis commands one acquire and one release of a
# free device ran, captured with MONITOR from this broker, replayed with the
# same arguments and no logic at all (scripts/bench-floor.awk makes the
# library: one function, odd calls the acquire's commands, even calls the
# release's), driven like the ceiling ($1 clients, one call each in flight, the
# acquire's keys and arguments on every call). What lies between it and
# cycle-http-16 is the scripts' own logic; what lies between it and the
# trivial script is what a transition stores.
floor_ready=""
floor_capture() {
    mkdir -p "$T/floor"
    timeout 30 redis-cli -p "$redis_port" MONITOR >"$T/floor/monitor.txt" 2>/dev/null &
    mon_pid=$!
    # MONITOR is on once it shows a command sent after it
    rcli ECHO bench-floor-start >/dev/null
    until grep -q bench-floor-start "$T/floor/monitor.txt" 2>/dev/null; do
        kill -0 "$mon_pid" 2>/dev/null || { echo "bench: MONITOR ended" >&2; return 1; }
        rcli ECHO bench-floor-start >/dev/null
        sleep 0.05
    done
    curl -s -XPOST -H 'content-type: application/json' -o "$T/floor/acquire.json" \
        -d '{"device_name":"bench-floor","lock_type":"MANUAL_OPERATOR","user_id":"bench","timeout":120}' \
        "http://127.0.0.1:$port/api/lock/request"
    key=$(sed -n 's/.*"lock_key":"\([^"]*\)".*/\1/p' "$T/floor/acquire.json")
    curl -s -XPOST -o "$T/floor/release.json" \
        "http://127.0.0.1:$port/api/lock/release?device_name=bench-floor&lock_key=$key&user_id=bench"
    rcli ECHO bench-floor-end >/dev/null
    until grep -q bench-floor-end "$T/floor/monitor.txt"; do
        kill -0 "$mon_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill "$mon_pid" 2>/dev/null || true
    wait "$mon_pid" 2>/dev/null || true
    grep -q '"success":true' "$T/floor/release.json" || { echo "bench: the floor's capture failed" >&2; return 1; }
    awk -v out="$T/floor" -v devices=16 -v acquire_reply="$(wc -c <"$T/floor/acquire.json")" \
        -v release_reply="$(wc -c <"$T/floor/release.json")" -f scripts/bench-floor.awk "$T/floor/monitor.txt" \
        >"$T/floor/commands" || return 1
    rcli -x FUNCTION LOAD REPLACE <"$T/floor/floor.lua" >/dev/null || return 1
    floor_ready=1
}
# redis_floor CLIENTS: one run of the floor next to the ceiling (res.redis-floor-CLIENTS).
redis_floor() {
    [ -n "$floor_ready" ] || return 0
    c=$1
    n=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d * 20000 }')
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done <"$T/floor/args"
    line=$(timeout 120 redis-benchmark -p "$redis_port" -c "$c" -n "$n" --csv fcall floor_cycle "$@" | sed -n 2p | tr -d '"')
    echo "$line" | awk -F, -v n="$n" -v c="$c" -v what="$(cat "$T/floor/commands")" '{ printf "%-22s %9.0f scripts/s  p50 %7.3f  p99 %7.3f ms | redis-benchmark -c %d -n %d: the floor (%s, captured; no logic)\n", "redis-floor-" c, $2, $5, $7, c, n, what }' |
        tee -a "$T/res.redis-floor-$c"
    rcli EVAL "for _, k in ipairs(redis.call('KEYS', 'fl:*')) do redis.call('UNLINK', k) end" 0 >/dev/null
}

# ---- medians ---------------------------------------------------------------------

median() {
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# col NAME: field 2 (the rate) of each repetition; after TOKEN: the field after it.
rates() { [ -f "$T/res.$1" ] && awk '{ print $2 }' "$T/res.$1"; }
after() { [ -f "$T/res.$1" ] && awk -v t="$2" '{ for (i = 1; i < NF; i++) if ($i == t) { print $(i + 1); break } }' "$T/res.$1"; }
before() { [ -f "$T/res.$1" ] && awk -v t="$2" '{ for (i = 2; i <= NF; i++) if ($i == t) { print $(i - 1); break } }' "$T/res.$1"; }
# grab NAME SED-REGEX: the \1 of each repetition's line.
grab() { [ -f "$T/res.$1" ] && sed -n "s/$2/\\1/p" "$T/res.$1"; }
# ratios A B M: per repetition, M x rate of A / rate of B (paired: each scenario
# ran next to its ceiling); a repetition where either failed is left out.
ratios() {
    rates "$1" >"$T/ra" || return 0
    rates "$2" >"$T/rb" || return 0
    [ "$(wc -l <"$T/ra")" = "$(wc -l <"$T/rb")" ] || return 0
    paste -d' ' "$T/ra" "$T/rb" | awk -v m="$3" '$2 > 0 { printf "%.3f\n", m * $1 / $2 }'
}

# ---- memory, on a fresh broker (its heap is not yet grown by the load) -------------

bench idle-1000 --scenario idle --watchers 1000
bench idle-10000 --scenario idle --watchers 10000
# A second fresh broker for the rest (the first one's heap keeps what 10 000
# watchers grew). It starts with 1 000 locks held, so that its first snapshot
# (snapshot.lua, in pages) has them all; their 5 s leases then end.
if wanted scripts; then
    "$LB" --port "$port" --label snapshot-locks --scenario hold --hold 1000 --timeout 5 >/dev/null 2>"$T/snapshot-locks.err" ||
        { echo "snapshot-locks: FAILED ($(head -3 "$T/snapshot-locks.err" | tr '\n' ' '))"; failed="$failed snapshot-locks"; }
fi
stop_broker
rcli CONFIG RESETSTAT >/dev/null
start_broker
rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p' >"$T/cs.snapshot"
i=0
while [ "$(rcli ZCARD dl:held)" != 0 ]; do
    i=$((i + 1))
    [ $i -le 300 ] || { echo "bench: the 1 000 locks of 5 s did not end within 30 s" >&2; failed="$failed snapshot-locks"; break; }
    sleep 0.1
done
# 1 000 watchers connecting while 1 000 locks are held: each initial_status holds them all
bench watch-1000-held-1000 --scenario idle --watchers 1000 --hold 1000

# ---- issue 14's targets, each next to its ceiling, BENCH_REPEAT times ---------------

r=0
while [ "$r" -lt "$REPEAT" ]; do
    r=$((r + 1))
    echo "--- repetition $r of $REPEAT ---"
    ceiling=""
    if wanted redis-evalsha-16 || wanted cycle-http-16; then
        redis_ceiling 16
        [ "$r" != 1 ] || floor_capture || echo "bench: warning: no floor of the data model (see above)" >&2
        redis_floor 16
    fi
    bench cycle-http-16 --scenario cycle --proto http --conns 16
    nginx_bench nginx-64 / 64 read-64
    bench read-64 --scenario read --conns 64
    # status-16 saves one answer: nginx serves it as a static file of the same size
    bench status-16 --scenario status --conns 16 --hold 1000 ${nginx_port:+--save-body "$T/nginx/www/status.json"}
    nginx_bench nginx-status-16 /status.json 16 status-16
    bench fanout-1000 --scenario fanout --watchers 1000
    # fanout's floor on this machine: one send() per socket, no broker (lockbench forks the sender)
    bench rawfan-1000 --scenario rawfan --watchers 1000
done
ceiling=""

# ---- the other scenarios, once ------------------------------------------------------

echo "--- the other scenarios ---"
# devlockd sends every script on one connection, pipelined: the same script
# driven that way (one connection, 16 in flight), for comparison only
if [ -z "$ONLY" ] || wanted redis-evalsha-1x16; then
    [ -n "$trivial_sha" ] || redis_ceiling 16 once >/dev/null
    n=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d * 40000 }')
    timeout 120 redis-benchmark -p "$redis_port" -c 1 -P 16 -n "$n" --csv evalsha "$trivial_sha" 2 bench:ctr bench:stream |
        sed -n 2p | tr -d '"' | awk -F, -v n="$n" '{ printf "%-22s %9.0f scripts/s  p50 %7.3f  p99 %7.3f ms | redis-benchmark -c 1 -P 16 -n %d: the same script, one connection, 16 in flight\n", "redis-evalsha-1x16", $2, $5, $7, n }'
    rcli DEL bench:ctr bench:stream >/dev/null
fi
if [ -z "$ONLY" ] || wanted redis-evalsha-64 || wanted cycle-http-64 || wanted cycle-ws-64; then
    redis_ceiling 64
fi
bench cycle-http-64 --scenario cycle --proto http --conns 64
bench cycle-ws-64 --scenario cycle --proto ws --conns 64
if [ -z "$ONLY" ] || wanted cycle-ws-16 || wanted ladder-http-16; then
    redis_ceiling 16 once
fi
bench cycle-ws-16 --scenario cycle --proto ws --conns 16
bench ladder-http-16 --scenario ladder --proto http --conns 16
ceiling=""
bench fanout-100 --scenario fanout --watchers 100
bench fanout-10000 --scenario fanout --watchers 10000

# ---- phases with boundaries: lockbench --sync ----------------------------------------

# lb_bg NAME "PHASES" lockbench-args...: starts lockbench in the background; it
# stops at each of PHASES (begin held start stop end) until `go PHASE`.
lb_bg() {
    lb_name=$1
    stops=$2
    shift 2
    S=$T/sync.$lb_name
    rm -rf "$S"
    mkdir -p "$S"
    for ph in begin held start stop end; do
        case " $stops " in *" $ph "*) ;; *) : >"$S/$ph.go" ;; esac
    done
    timeout 300 "$LB" --port "$port" --pid "$broker_pid" --redis-pid "$redis_pid" --label "$lb_name" --sync "$S" \
        "$@" >"$T/$lb_name.out" 2>"$T/$lb_name.err" &
    lb_pid=$!
}
# at PHASE: waits until lockbench is there (or has ended: 1).
at() {
    until [ -e "$S/$1" ]; do
        kill -0 "$lb_pid" 2>/dev/null || { echo "bench: $lb_name ended before $1: $(head -3 "$T/$lb_name.err")" >&2; return 1; }
        sleep 0.02
    done
}
go() { : >"$S/$1.go"; }
# lb_wait: waits for lockbench; 1 (and the run fails) if it failed.
lb_wait() {
    rc=0
    wait "$lb_pid" || rc=$?
    lb_pid=""
    if [ "$rc" != 0 ]; then
        echo "$lb_name: FAILED ($(head -3 "$T/$lb_name.err" | tr '\n' ' '))"
        failed="$failed $lb_name"
        return 1
    fi
}

stats_reset() { rcli CONFIG RESETSTAT >/dev/null; }
# stats_take FILE: "command calls usec" of every command since the reset.
stats_take() {
    rcli INFO commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p' >"$T/cs.$1"
}
# script_row FILE LABEL [UNITS NAME]: one line of the per-script table: the
# script calls (FCALL, or EVALSHA and EVAL with DEVLOCK_FUNCTIONS=0) of the phase, their us per call, and the rest.
script_row() {
    awk -v label="$2" -v units="${3:-0}" -v uname="${4:-}" '
        $1 == "evalsha" || $1 == "eval" || $1 == "fcall" || $1 == "fcall_ro" { c += $2; u += $3; next }
        $1 ~ /^(config|info|script)/ { next }
        { o = o sprintf(" %s %d x %.1f", $1, $2, $2 ? $3 / $2 : 0) }
        END {
            per = units > 0 ? sprintf("%.1f us per %s", u / units, uname) : ""
            printf "  %-40s %8d %9.1f %10d  %-22s |%s\n", label, c, c ? u / c : 0, u, per, o == "" ? " -" : o
        }' "$T/cs.$1"
}

if wanted scripts; then
    echo "--- cost of each script inside Redis (CONFIG RESETSTAT, one script kind per phase, INFO commandstats) ---"
    printf "  %-40s %8s %9s %10s  %-22s | %s\n" "script (phase)" calls "us/call" "us total" "" "other commands in the phase: calls x us"
    # the ceiling's script, driven like ours (16 connections, one call each in flight)
    stats_reset
    [ -n "$trivial_sha" ] || redis_ceiling 16 >/dev/null
    stats_reset
    timeout 120 redis-benchmark -p "$redis_port" -c 16 -n 50000 -q evalsha "$trivial_sha" 2 bench:ctr bench:stream >/dev/null
    stats_take trivial
    rcli DEL bench:ctr bench:stream >/dev/null
    script_row trivial "trivial INCR + XADD (redis-benchmark)"
    script_row snapshot "snapshot.lua etc.: a broker's start, 1 000 held" 1000 lock
    # acquire (a free device, granted) and release: 2 000 of each
    lb_bg script-acquire "begin held stop end" --scenario status --conns 1 --count 1 --duration 1 --hold 2000
    if at begin; then
        stats_reset; go begin
        at held && { stats_take acquire; go held; }
        at stop && { stats_reset; go stop; }
        at end && { stats_take release; go end; }
    fi
    lb_wait && { script_row acquire "acquire.lua (2 000 free devices)" 2000 lock; script_row release "release.lua (2 000 holders)" 2000 lock; }
    for sc in read renew ladder status; do
        case $sc in
            read) label="device.lua (GET /api/locks/device, 16 conns)"; args="--scenario read --conns 16" ;;
            renew) label="renew.lua (POST /api/lock/renew, 16 conns)"; args="--scenario renew --conns 16" ;;
            ladder) label="acquire.lua preempting x4 + release.lua"; args="--scenario ladder --conns 16" ;;
            status) label="GET /api/locks/status, 1 000 locks"; args="--scenario status --conns 16 --hold 1000" ;;
        esac
        # shellcheck disable=SC2086 # args are words
        lb_bg "script-$sc" "start stop" $args --duration 2
        if at start; then
            stats_reset; go start
            at stop && { stats_take "$sc"; go stop; }
        fi
        lb_wait && script_row "$sc" "$label"
    done
    # expire: 1 000 locks with a 1 s lease, until the timer has ended them all
    lb_bg script-expire "held" --scenario hold --hold 1000 --timeout 1
    if at held; then
        stats_reset; go held
        if lb_wait; then
            i=0
            while [ "$(rcli ZCARD dl:held)" != 0 ] || [ "$(rcli ZCARD dl:expiry)" != 0 ]; do
                i=$((i + 1))
                [ $i -le 300 ] || { echo "bench: the 1 000 locks did not expire within 30 s" >&2; failed="$failed script-expire"; break; }
                sleep 0.1
            done
            stats_take expire
            script_row expire "expire.lua (1 000 leases of 1 s ending)" 1000 lock
        fi
    else
        lb_wait || true
    fi
    # calls sent again with the keys their script asked for (docs/design.md "Keys declared")
    echo "  NEEDKEYS resends since the broker started (every scenario so far): $(curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^devlock_script_key_rounds_total //p')"
fi

# ---- syscalls per request and per frame: strace -c attached to devlockd ----------------

TRACE=epoll_ctl,epoll_wait,read,write,recvfrom,sendto,writev
if wanted syscalls && ! command -v strace >/dev/null 2>&1; then
    echo "bench: warning: no strace (apt-get install strace); syscall counts skipped" >&2
elif wanted syscalls; then
    echo "--- syscalls of devlockd (strace -f -c -e trace=$TRACE, attached from the start to the stop of each phase) ---"
    printf "  %-28s %8s %8s %8s %9s %8s %8s %9s %9s %11s\n" phase "HTTP req" "WS in" "WS out" epoll_ctl "/ req" "/ frame" epoll_wait "read+recv" "write+send"
    for sc in read cycle-http cycle-ws fanout; do
        case $sc in
            read) args="--scenario read --conns 16 --count 3000" ;;
            cycle-http) args="--scenario cycle --proto http --conns 16 --count 1500" ;;
            cycle-ws) args="--scenario cycle --proto ws --conns 16 --count 1500" ;;
            fanout) args="--scenario fanout --watchers 1000 --count 5" ;;
        esac
        # shellcheck disable=SC2086 # args are words
        lb_bg "strace-$sc" "start stop" $args --duration 60
        if at start; then
            strace -f -c -o "$T/strace.$sc" -e trace="$TRACE" -p "$broker_pid" 2>"$T/strace.$sc.err" &
            strace_pid=$!
            wait_for 100 grep -q attached "$T/strace.$sc.err" || echo "bench: strace did not attach" >&2
            go start
            if at stop; then
                kill -INT "$strace_pid" 2>/dev/null || true
                wait "$strace_pid" 2>/dev/null || true
                strace_pid=""
                go stop
            fi
        fi
        # under strace a fan-out frame may be later than its 2 s deadline: a failure here is noted, not fatal
        rc=0
        wait "$lb_pid" || rc=$?
        lb_pid=""
        [ -n "$strace_pid" ] && { kill "$strace_pid" 2>/dev/null || true; wait "$strace_pid" 2>/dev/null || true; strace_pid=""; }
        counts=$(sed -n 's/.* \([0-9]*\) HTTP answers, \([0-9]*\) WS frames sent, \([0-9]*\) received.*/\1 \2 \3/p' "$T/strace-$sc.out")
        [ -n "$counts" ] || counts="0 0 0"
        # shellcheck disable=SC2086 # three numbers
        set -- $counts
        awk -v name="$sc" -v http="$1" -v wsin="$2" -v wsout="$3" -v rc="$rc" '
            $NF ~ /^(epoll_ctl|epoll_wait|read|recvfrom|write|sendto|writev)$/ { n[$NF] = $4 }
            END {
                ctl = n["epoll_ctl"] + 0
                fr = wsin + wsout
                printf "  %-28s %8d %8d %8d %9d %8s %8s %9d %9d %11d%s\n", name, http, wsin, wsout, ctl,
                    http && !fr ? sprintf("%.2f", ctl / http) : "-", fr ? sprintf("%.2f", ctl / fr) : "-",
                    n["epoll_wait"], n["read"] + n["recvfrom"], n["write"] + n["sendto"] + n["writev"],
                    rc != 0 ? "  (lockbench failed under strace)" : ""
            }' "$T/strace.$sc"
    done
    echo "  (WS in = frames devlockd received, WS out = frames it sent; / frame = epoll_ctl / (in + out);"
    echo "   fanout: 1 000 watchers, 5 rounds; its HTTP requests are the driver's 10)"
fi

# ---- issue 14's targets as ratios -------------------------------------------------------

broker_hwm
hwm=$(awk -v k="$hwm_kb" 'BEGIN { printf "%.1f", k / 1024 }')
rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$broker_pid/status")
# target_line WHAT DEVLOCKD CEILING RATIO TARGET MET(0/1/"")
target_line() {
    verdict="not met"
    [ "$6" = 1 ] && verdict=met
    [ -z "$6" ] && verdict="not measured"
    printf "%-36s devlockd %s, ceiling %s, ratio %s (target %s): %s\n" "$1" "$2" "$3" "$4" "$5" "$verdict"
}
# floor_line WHAT FIGURE RELATION MET(0/1): a floor under a target, measured in this
# run: the target can be met only where its floor meets it.
floor_line() {
    verdict="the floor misses the target too"
    [ "$4" = 1 ] && verdict="the floor meets the target"
    printf "  %-34s %s %s: %s\n" "$1" "$2" "$3" "$verdict"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a != "" && a + 0 >= b + 0) }' && echo 1 || echo 0; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a != "" && a + 0 <= b + 0) }' && echo 1 || echo 0; }
f0() { awk -v a="$1" 'BEGIN { if (a == "nan" || a == "") print "-"; else printf "%.0f", a }'; }
f2() { awk -v a="$1" 'BEGIN { if (a == "nan" || a == "") print "-"; else printf "%.2f", a }'; }

echo "=== issue 14 targets (medians of $REPEAT repetitions; a ratio is the median of the per-repetition ratios to the ceiling measured next to it) ==="
if [ -f "$T/res.cycle-http-16" ]; then
    c=$(rates cycle-http-16 | median)
    sc=$(awk -v c="$c" 'BEGIN { print 2 * c }')
    ce=$(rates redis-evalsha-16 | median)
    ra=$(ratios cycle-http-16 redis-evalsha-16 2 | median)
    p99=$(after cycle-http-16 p99 | median)
    target_line "acquire+release, 16 conns" "$(f0 "$sc") scripts/s ($(f0 "$c") cycles/s)" \
        "$(f0 "$ce")/s (Redis trivial script)" "$(f2 "$ra")" ">= 0.5" "$(ge "$ra" 0.5)"
    if [ -f "$T/res.redis-floor-16" ]; then
        fl=$(rates redis-floor-16 | median)
        fr=$(ratios redis-floor-16 redis-evalsha-16 1 | median)
        floor_line "its floor: the same commands, no logic" "$(f0 "$fl") scripts/s, $(f2 "$fr") x the trivial script;" \
            "cycle-http-16 is $(f2 "$(awk -v a="$ra" -v b="$fr" 'BEGIN { if (b > 0) print a / b }')") of it" "$(ge "$fr" 0.5)"
    fi
    target_line "  p99 per request, 16 conns" "$(f2 "$p99") ms" "-" "$(f2 "$(awk -v p="$p99" 'BEGIN { if (p > 0) print 2 / p }')")" "<= 2 ms" "$(le "$p99" 2)"
    if [ -f "$T/res.redis-floor-16" ]; then
        fp=$(after redis-floor-16 p99 | median)
        floor_line "its floor: the floor's calls alone" "p99 $(f2 "$fp") ms in Redis, with no HTTP and no broker;" \
            "cycle-http-16's is $(f2 "$(awk -v a="$p99" -v b="$fp" 'BEGIN { if (b > 0) print a / b }')") x it" "$(le "$fp" 2)"
    fi
fi
if [ -f "$T/res.read-64" ]; then
    rd=$(rates read-64 | median)
    ng=$(rates nginx-64 | median)
    ra=$(ratios read-64 nginx-64 1 | median)
    target_line "device reads, 64 conns" "$(f0 "$rd")/s" "$(f0 "$ng")/s (nginx return 200)" "$(f2 "$ra")" ">= 0.6" \
        "$([ -f "$T/res.nginx-64" ] && ge "$ra" 0.6)"
fi
if [ -f "$T/res.status-16" ]; then
    st=$(rates status-16 | median)
    ng=$(rates nginx-status-16 | median)
    ra=$(ratios status-16 nginx-status-16 1 | median)
    size=$(wc -c <"$T/nginx/www/status.json" 2>/dev/null || echo 0)
    target_line "status, 1 000 locks, 16 conns" "$(f0 "$st")/s" "$(f0 "$ng")/s (nginx, the same $((size / 1024)) KB as a static file)" \
        "$(f2 "$ra"); $(f2 "$(awk -v s="$st" 'BEGIN { print s / 5000 }')") of the target" ">= 5000/s" "$(ge "$st" 5000)"
fi
if [ -f "$T/res.fanout-1000" ]; then
    p99=$(after fanout-1000 p99 | median)
    missed=$(grab fanout-1000 '.* \([0-9]*\) frames missed.*' | awk '{ s += $1 } END { print s + 0 }')
    dropped=$(grab fanout-1000 '.* \([0-9]*\) watchers dropped.*' | awk '{ s += $1 } END { print s + 0 }')
    target_line "fan-out to 1 000 watchers" "p99 $(f2 "$p99") ms, $missed missed, $dropped dropped (all repetitions)" "-" \
        "$(f2 "$(awk -v p="$p99" 'BEGIN { if (p > 0) print 10 / p }')")" "p99 <= 10 ms, 0 missed" \
        "$([ "$missed" = 0 ] && [ "$dropped" = 0 ] && le "$p99" 10 || echo 0)"
    if [ -f "$T/res.rawfan-1000" ]; then
        rp99=$(after rawfan-1000 p99 | median)
        floor_line "its floor: one send() a socket, no broker" "p99 $(f2 "$rp99") ms;" \
            "fanout-1000's p99 is $(f2 "$(awk -v a="$p99" -v b="$rp99" 'BEGIN { if (b > 0) print a / b }')") x it" "$(le "$rp99" 10)"
    fi
fi
held=$(rates watch-1000-held-1000 | median)
[ -n "$held" ] && [ "$held" != nan ] &&
    target_line "1 000 watchers connecting, 1 000 held" "$(f2 "$held") MB RSS, VmHWM $(grab watch-1000-held-1000 '.* VmHWM \([0-9.]*\) MB.*') MB" "-" \
        "-" "<= 64 MB, part of the peak" "$(le "$(grab watch-1000-held-1000 '.* VmHWM \([0-9.]*\) MB.*')" 64)"
target_line "peak RSS over this whole run" "$hwm MB (largest VmHWM of its $brokers brokers; $rss MB at the end)" "-" \
    "$(f2 "$(awk -v h="$hwm" 'BEGIN { if (h > 0) print 64 / h }')")" "<= 64 MB" "$([ -z "$ONLY" ] && le "$hwm" 64)"
idle=$(rates idle-10000 | median)
[ -n "$idle" ] && [ "$idle" != nan ] &&
    target_line "10 000 idle watchers" "$(f2 "$idle") MB RSS" "-" "$(f2 "$(awk -v h="$idle" 'BEGIN { if (h > 0) print 100 / h }')")" \
        "<= 100 MB" "$(le "$idle" 100)"
echo "(a ratio without a ceiling is target / measured: >= 1 is met)"

echo "bench: load after:$(uptime | sed 's/.*load average//')"
if [ -n "$failed" ]; then
    echo "bench: FAILED:$failed"
    exit 1
fi
