#!/bin/sh
# run-tests.sh [SUITE...] - runs the test suites (all when none is named) and
# prints each suite's closing line, then a total. Exit status 1 if any failed.
#   unit         build/tests/test_* (no Redis, no sockets), after scripts/check-source.sh (suite "source")
#   semantics    tests/semantics/run.js (waits, groups, idempotency, sessions, preemption, delays, paging)
#   reservations tests/reservations/run.js (bookings: overlap, bumping, start/end, window refusals, cancel, move, faults)
#   ops          tests/ops/run.js (auth, TLS, CORS, limits, metrics, catalogue, logs, config)
#   integration  tests/integration/run.js (every route and error, preemption matrix, faults)
#   client       tests/client/run.sh (liblockclient + lockctl)
#   e2e          tests/e2e/run.sh (curl, wscat)
#   dashboard    tests/dashboard/run.js (headless Chromium)
#   sentinel     tests/sentinel/run.sh (Redis Sentinel failover)
#   probes       tests/probes/run.js (malformed HTTP and WebSocket bytes)
#   webhooks     tests/webhooks/run.js (delivery, filters, signatures, retries, broker SIGKILL take-over, SIGHUP)
#   edges        tests/edges/run.js (one regression test per edge-case defect: retries, stalls, sessions)
#   chaos        tests/chaos/run.js (mutual exclusion under injected faults, short form)
#   fuzz         tests/fuzz/replay.sh (corpora under ASan)
#   package      tests/package/run.sh (make deb, lintian, install the .debs, smoke-test the installed tools, purge; root)
set -u
cd "$(dirname "$0")/.."
B=${DEVLOCK_BUILD:-build}
export DEVLOCK_BUILD=$B
# Every broker the suites start checks that each script touches only the keys
# it declared (Redis Cluster's rule; docs/design.md "Keys declared"), and
# stops if one does not. DEVLOCK_TEST_STRICT_KEYS=0 runs them without.
export DEVLOCK_TEST_STRICT_KEYS=${DEVLOCK_TEST_STRICT_KEYS:-1}
suites=${*:-unit integration semantics reservations ops client e2e dashboard sentinel probes webhooks edges chaos fuzz package}
total_pass=0; total_fail=0; failed_suites=""
log=$(mktemp -d)

run_suite() {
    name=$1; shift
    echo "=== suite: $name"
    { "$@"; echo $? > "$log/$name.rc"; } 2>&1 | tee "$log/$name.out"
    st=$(tail -n 50 "$log/$name.out" | grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$st" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
    f=$(echo "$st" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
    if [ -z "$st" ]; then
        echo "suite $name: no result line (crashed?)"
        p=0; f=1
    elif [ "$(cat "$log/$name.rc")" != 0 ] && [ "$f" = 0 ]; then
        echo "suite $name: exited $(cat "$log/$name.rc") although no test failed"
        f=1
    fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    [ "$f" = 0 ] || failed_suites="$failed_suites $name"
}

for s in $suites; do
    case $s in
    unit)
        run_suite source sh -c 'sh scripts/check-source.sh --self-test && sh scripts/check-source.sh'
        [ -n "$(ls "$B"/tests/test_* 2>/dev/null)" ] || continue
        run_suite unit sh -c "p=0; f=0; for t in $B/tests/test_*; do
            case \$t in *.d) continue;; esac
            if [ \"\${VALGRIND:-}\" = 1 ]; then out=\$(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \$t 2>&1); else out=\$(\$t 2>&1); fi; rc=\$?; echo \"\$out\" | tail -n 20
            l=\$(echo \"\$out\" | tail -n 1)
            tp=\$(echo \"\$l\" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); tf=\$(echo \"\$l\" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
            [ -n \"\$tp\" ] || { tp=0; tf=1; }; [ \$rc = 0 ] || [ \"\$tf\" != 0 ] || tf=1
            p=\$((p+tp)); f=\$((f+tf)); done; echo \"\$p passed, \$f failed\"" ;;
    semantics) run_suite semantics node tests/semantics/run.js ;;
    reservations) [ -f tests/reservations/run.js ] && run_suite reservations node tests/reservations/run.js ;;
    ops) run_suite ops node tests/ops/run.js ;;
    integration) [ -f tests/integration/run.js ] && run_suite integration node tests/integration/run.js ;;
    client) [ -f tests/client/run.sh ] && run_suite client sh tests/client/run.sh ;;
    e2e) [ -f tests/e2e/run.sh ] && run_suite e2e bash tests/e2e/run.sh ;;
    dashboard) [ -f tests/dashboard/run.js ] && run_suite dashboard node tests/dashboard/run.js ;;
    sentinel) [ -f tests/sentinel/run.sh ] && run_suite sentinel bash tests/sentinel/run.sh ;;
    probes) [ -f tests/probes/run.js ] && run_suite probes node tests/probes/run.js ;;
    webhooks) [ -f tests/webhooks/run.js ] && run_suite webhooks node tests/webhooks/run.js ;;
    edges) [ -f tests/edges/run.js ] && run_suite edges node tests/edges/run.js ;;
    chaos) [ -f tests/chaos/run.js ] && run_suite chaos node tests/chaos/run.js ;;
    fuzz) [ -f tests/fuzz/replay.sh ] && run_suite fuzz sh tests/fuzz/replay.sh ;;
    package) [ -f tests/package/run.sh ] && run_suite package sh tests/package/run.sh ;;
    *) echo "unknown suite $s"; total_fail=$((total_fail + 1)) ;;
    esac
done
rm -rf "$log"
echo "=== failed suites:${failed_suites:- none}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
