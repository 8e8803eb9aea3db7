#!/bin/sh
# bench-instructions.sh - what one script call costs inside Redis, in
# instructions rather than time: a private redis-server runs under
# callgrind while lockbench drives N acquire+release cycles (HTTP, 4
# connections) through a devlockd of each build given. Instruction counts
# do not move with the machine's load, so two builds compare in one run
# where `make bench`'s times would differ by more than the change.
#
#   sh scripts/bench-instructions.sh [CYCLES] BUILD_DIR [BUILD_DIR...]
#
# Prints per build: the FCALLs counted (INFO commandstats) and the
# instructions (Ir) per FCALL, inside FCALL (the script, its commands,
# their AOF feed) and in all of redis-server over the same span (the
# stream reads and the protocol too). About a minute per build.
# Needs valgrind (scripts/install-deps.sh test) and build/lockbench.
set -eu
n=1000
case ${1:-} in [0-9]*) n=$1; shift ;; esac
[ $# -ge 1 ] || { echo "usage: $0 [CYCLES] BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }
LB=${LB:-build/lockbench}
for t in valgrind callgrind_control callgrind_annotate redis-server redis-cli curl "$LB"; do
    command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "bench-instructions: $t missing" >&2; exit 1; }
done

# until SECONDS CMD...: polls CMD every 0.1 s until it succeeds, or fails
until_ok() {
    left=$(($1 * 10)); shift
    until "$@" >/dev/null 2>&1; do
        left=$((left - 1)); [ "$left" -gt 0 ] || return 1
        sleep 0.1
    done
}

one() { # one BUILD_DIR
    d=$(mktemp -d /tmp/devlock-instr.XXXXXX)
    rp=$("$LB" --free-port)
    (cd "$d" && exec valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" redis-server --port "$rp" \
        --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir "$d" >"$d/redis.log" 2>&1) &
    vp=$!
    until_ok 60 redis-cli -p "$rp" ping || { echo "bench-instructions: redis did not start" >&2; return 1; }
    "$1/devlockd" --host 127.0.0.1 --port 0 --port-file "$d/port" --redis-url "redis://127.0.0.1:$rp" \
        --redis-timeout-ms 5000 --log-level WARNING >"$d/devlockd.log" 2>&1 &
    bp=$!
    until_ok 20 test -s "$d/port" || { echo "bench-instructions: devlockd did not start" >&2; return 1; }
    p=$(cat "$d/port")
    until_ok 60 curl -sf -o /dev/null "http://127.0.0.1:$p/api/health/ready" ||
        { echo "bench-instructions: devlockd did not become ready" >&2; return 1; }
    # warm up (Redis under callgrind translates its code as it first runs it)
    "$LB" --port "$p" --scenario cycle --proto http --conns 4 --count 200 >/dev/null 2>&1 || true
    redis-cli -p "$rp" config resetstat >/dev/null
    callgrind_control -z "$vp" >/dev/null 2>&1
    "$LB" --port "$p" --scenario cycle --proto http --conns 4 --count "$n" >"$d/lockbench.out"
    calls=$(redis-cli -p "$rp" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_fcall:calls=\([0-9]*\),.*/\1/p')
    callgrind_control -d "$vp" >/dev/null 2>&1
    all=$(sed -n 's/^totals: *//p' "$d"/cg.out.* | head -n 1)
    inside=$(callgrind_annotate --inclusive=yes "$d"/cg.out.* 2>/dev/null |
        awk '/fcallCommand/ { gsub(",", "", $1); print $1; exit }')
    echo "$1: $calls FCALLs; Redis instructions per FCALL: inside FCALL $((inside / calls)), all of redis-server $((all / calls))"
    kill "$bp"; wait "$bp" 2>/dev/null || true
    redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1 || true
    wait "$vp" 2>/dev/null || true
    rm -rf "$d"
}

for b in "$@"; do one "$b"; done
