#!/bin/sh
# tests/client/run.sh - liblockclient, lockctl, the examples and the
# installed library, against a private redis-server and devlockd (two
# brokers on one Redis, plus one with --auth-file, plus two on a second
# Redis that keeps only a few events, for resume_gap). Last line:
# "N passed, M failed"; exit status 1 on any failure.
#
#   sh tests/client/run.sh            everything
#   NO_ASAN=1 sh tests/client/run.sh  without the ASan+UBSan pass
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
B=${DEVLOCK_BUILD:-build}
export DEVLOCK_BUILD=$B
dir=$(mktemp -d /tmp/devlock-client.XXXXXX)
CTL="sh $ROOT/tests/client/ctl.sh $dir"
pass=0; fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
# check NAME: the status of the previous command decides
check() { if [ "$?" = 0 ]; then ok "$1"; else bad "$1"; return 1; fi; }
# expect_rc WANT NAME CMD...: runs CMD, its exit status must be WANT
expect_rc() {
    want=$1; name=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; got=$?
    if [ "$got" = "$want" ]; then ok "$name (exit $got)"; else
        bad "$name: exit $got, wanted $want"; sed 's/^/    /' "$dir/out" "$dir/err" | head -n 10; fi
}
until_ok() {
    deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do [ "$(date +%s%N)" -ge "$deadline" ] && return 1; sleep 0.05; done
}
cleanup() {
    for p in "$dir"/*.pid; do
        [ -s "$p" ] && kill -CONT "$(cat "$p")" 2>/dev/null && kill "$(cat "$p")" 2>/dev/null
    done
    rm -rf "$dir"
}
# finish: the servers' logs when something failed, then the result line last
finish() {
    if [ "$fail" != 0 ]; then
        for l in a b c d1 d2; do [ -f "$dir/$l.log" ] && { echo "--- devlockd $l log (tail)"; tail -n 30 "$dir/$l.log"; }; done
        for l in redis redis2; do [ -f "$dir/$l.log" ] && { echo "--- $l log (tail)"; tail -n 15 "$dir/$l.log"; }; done
    fi
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build ----------------------------------------------------------------
WARN="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Werror -D_GNU_SOURCE"
DEPS_CFLAGS=$(pkg-config --cflags libcurl libwebsockets libcjson openssl)
DEPS_LIBS=$(pkg-config --libs libcurl libwebsockets libcjson openssl)
make -s -j2 B="$B" "$B/devlockd" "$B/liblockclient.so" "$B/liblockclient.a" "$B/lockclient.pc" \
    "$B/lockctl" examples >"$dir/build.log" 2>&1
check "make builds the library, lockctl and the examples" || cat "$dir/build.log"
mkdir -p "$B/tests/client"
cc -O1 -g $WARN -Iclient/include -Itests -o "$B/tests/client/test_lib" tests/client/test_lib.c \
    "$B/liblockclient.a" $DEPS_LIBS -pthread
check "test_lib builds against liblockclient.a"
if [ "${NO_ASAN:-0}" != 1 ]; then
    # the library's own sources, instrumented, with the test
    cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
        $WARN -Icommon -Iclient/include -Itests $DEPS_CFLAGS -pthread \
        -o "$B/tests/client/test_lib_asan" tests/client/test_lib.c client/*.c common/*.c $DEPS_LIBS -lm
    check "test_lib builds with the library under ASan+UBSan"
fi

# ---- servers ----------------------------------------------------------------
echo '{"users": [{"user_id": "alice", "token": "s3cret-alice", "roles": ["operator", "admin"]}]}' >"$dir/auth.json"
$CTL start-redis && $CTL start-a && $CTL start-b && $CTL start-c && $CTL start-gap
check "two redis-server and five devlockd started" || finish
PA=$(cat "$dir/a.port"); PB=$(cat "$dir/b.port"); PC=$(cat "$dir/c.port")
U="http://127.0.0.1:$PA"
UC="http://127.0.0.1:$PC"
dead_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
DEAD="http://127.0.0.1:$dead_port"

# ---- the library ------------------------------------------------------------
# run_c NAME BINARY: a C test program; its "N passed, M failed" counts
run_c() {
    name=$1; shift
    echo "=== $name"
    LC_T_URL=$U LC_T_URL_B="http://127.0.0.1:$PB" LC_T_DEAD_URL=$DEAD LC_T_CTL="$CTL" \
    LC_T_URL_D1="http://127.0.0.1:$(cat "$dir/d1.port")" LC_T_URL_D2="http://127.0.0.1:$(cat "$dir/d2.port")" \
        "$@" >"$dir/c.out" 2>&1
    rc=$?
    sed 's/^/  /' "$dir/c.out"
    line=$(tail -n 1 "$dir/c.out")
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    if [ -z "$p" ]; then
        bad "$name: no result line (exit $rc)"
        return
    fi
    pass=$((pass + p)); fail=$((fail + f))
    [ "$rc" = 0 ] || [ "$f" != 0 ] || bad "$name: exit $rc"
}
LC_T_SLOW=1 run_c "library" "$B/tests/client/test_lib"
if [ "${NO_ASAN:-0}" != 1 ]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=70 UBSAN_OPTIONS=print_stacktrace=1 \
        run_c "library under ASan+UBSan" "$B/tests/client/test_lib_asan"
    grep -q "ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer" "$dir/c.out"
    [ $? != 0 ]
    check "ASan+UBSan report nothing"
fi
$CTL cont-a >/dev/null 2>&1; $CTL start-a >/dev/null 2>&1; $CTL start-redis >/dev/null 2>&1   # in case a test left them down
until_ok 10 curl -sf -o /dev/null "$U/api/health/ready"
check "broker A ready after the library tests"

# ---- lockctl ----------------------------------------------------------------
L="$B/lockctl"
export DEVLOCK_URL="$U"
unset DEVLOCK_TOKEN
echo "=== lockctl"
expect_rc 0 "lockctl --help" "$L" --help
grep -q "force-release" "$dir/out" && grep -q "exit codes" "$dir/out"
check "--help lists the commands and the exit codes"
for sub in acquire release renew force-release status watch run history health; do
    "$L" "$sub" --help >"$dir/out" 2>&1 && grep -q "usage: lockctl $sub" "$dir/out"
    check "lockctl $sub --help"
done
expect_rc 2 "no command is a usage error" "$L"
expect_rc 2 "unknown command" "$L" frobnicate
expect_rc 2 "unknown option" "$L" status --frob
expect_rc 2 "release without --key" "$L" release dev1
expect_rc 122 "run without -- (run's own usage code)" "$L" run dev1 true
expect_rc 2 "bad --type" "$L" acquire --type BOSS dev1
expect_rc 2 "invalid device name" "$L" acquire 'bad name!'
grep -q "invalid_device_name" "$dir/err"
check "the broker's error code is printed"

expect_rc 0 "health" "$L" health
grep -q "^ready" "$dir/out"
check "health says ready"
expect_rc 0 "health --json" "$L" --json health
[ "$(jq -r .ready "$dir/out")" = true ] && [ "$(jq -r .redis_connected "$dir/out")" = true ]
check "health --json: ready, redis_connected"
expect_rc 3 "health, broker unreachable" "$L" --url "$DEAD" health
grep -q "unreachable" "$dir/err"
check "unreachable is said so"
expect_rc 3 "acquire, broker unreachable" "$L" --url "$DEAD" acquire dev1
expect_rc 3 "acquire --json, broker unreachable" "$L" --url "$DEAD" --json acquire dev1
[ "$(jq -r .error "$dir/out")" = unavailable ] && [ "$(jq -r .exit_code "$dir/out")" = 3 ]
check "unreachable --json: error unavailable, exit_code 3"
expect_rc 3 "health --json, broker unreachable" "$L" --url "$DEAD" --json health
[ "$(jq -r .ready "$dir/out")" = false ] && [ "$(jq -r .error "$dir/out")" = unavailable ]
check "health --json when unreachable: one JSON line, ready false"
DEVLOCK_URL=$DEAD "$L" status >/dev/null 2>&1
[ $? = 3 ]
check "DEVLOCK_URL is used (status, unreachable, exit 3)"

expect_rc 0 "acquire --json" "$L" --user alice acquire --json --timeout 60 --reason 'ctl test' --plan p-ctl dev1
KEY=$(jq -r .lock_key "$dir/out"); FENCE=$(jq -r .fence "$dir/out")
[ "$(jq -r .success "$dir/out")" = true ] && [ ${#KEY} = 36 ] && [ "$FENCE" -ge 1 ] &&
    [ "$(jq -r .lock.reason "$dir/out")" = "ctl test" ] && [ "$(jq -r .lock.plan_uid "$dir/out")" = p-ctl ] &&
    [ "$(jq -r .lock.client.name "$dir/out")" = lockctl ]
check "acquire --json: success, lock_key, fence, reason, plan, client"
expect_rc 4 "acquire of a held device (busy)" "$L" --user bob acquire dev1
grep -q alice "$dir/err"
check "busy names the holder"
expect_rc 4 "acquire --json of a held device" "$L" --user bob --json acquire dev1
[ "$(jq -r .success "$dir/out")" = false ] && [ "$(jq -r .error "$dir/out")" = lock_denied ] &&
    jq -r .detail "$dir/out" | grep -q alice && [ "$(jq -r .exit_code "$dir/out")" = 4 ]
check "busy --json: success false, error lock_denied, the holder, exit_code 4"
expect_rc 0 "status" "$L" status
grep -q "^DEVICE" "$dir/out" && grep "^dev1 " "$dir/out" | grep -q alice
check "status: a table with dev1 held by alice"
expect_rc 0 "status --json" "$L" status --json
jq -e '.locks | map(.device_name) | index("dev1") != null' "$dir/out" >/dev/null
check "status --json lists dev1"
expect_rc 0 "status DEVICE --json" "$L" status --json dev1
[ "$(jq -r .locked "$dir/out")" = true ] && [ "$(jq -r .lock.user_id "$dir/out")" = alice ] &&
    [ "$(jq -r .lock.fence "$dir/out")" = "$FENCE" ]
check "status DEVICE --json: locked by alice with the fence"
expect_rc 0 "status of a free device" "$L" status free-dev
grep -q "free" "$dir/out"
check "status says free"
expect_rc 0 "renew --json" "$L" --user alice renew --json --key "$KEY" --timeout 120 dev1
jq -e '.success and (.expires_at | length > 0)' "$dir/out" >/dev/null
check "renew --json: new expires_at"
expect_rc 1 "renew with a wrong key" "$L" --user alice renew --key 00000000-0000-4000-8000-000000000000 dev1
expect_rc 1 "release with a wrong user" "$L" --user mallory release --key "$KEY" dev1
expect_rc 0 "release" "$L" --user alice release --key "$KEY" dev1
expect_rc 1 "release again (not found)" "$L" --user alice release --key "$KEY" dev1
expect_rc 0 "history --json" "$L" history --json --device dev1
[ "$(jq -r '[.events[].action] | join(",")' "$dir/out")" = "acquired,renewed,released" ]
check "history --json: acquired, renewed, released in order"
expect_rc 0 "history" "$L" history --device dev1 --limit 2
[ "$(grep -c " dev1 " "$dir/out")" = 2 ] && head -n 1 "$dir/out" | grep -q EVENT
check "history: a table, --limit respected"
expect_rc 0 "acquire a group" "$L" acquire --json grp1 grp2
[ "$(jq -r '.devices | length' "$dir/out")" = 2 ]
check "acquire of two devices is one group"
expect_rc 0 "force-release" "$L" force-release --reason test grp1
expect_rc 1 "force-release of a free device" "$L" force-release grp1
"$L" status grp2 >/dev/null 2>&1
[ "$("$L" status --json grp2 | jq -r .locked)" = false ]
check "force-release of one device ends the whole group"

# tokens
expect_rc 1 "auth broker without a token" "$L" --url "$UC" status
grep -q unauthorized "$dir/err"
check "unauthorized is said so"
expect_rc 0 "auth broker with --token" "$L" --url "$UC" --token s3cret-alice status
DEVLOCK_TOKEN=s3cret-alice "$L" --url "$UC" --user alice acquire tokdev >/dev/null 2>&1
check "DEVLOCK_TOKEN is sent as the bearer token"
"$L" --url "$UC" --token s3cret-alice force-release tokdev >/dev/null 2>&1
check "force-release with an admin token"

# run
cat >"$dir/inside.sh" <<EOF
"$ROOT/$L" status --json runa | jq -r .lock.user_id >"$dir/inside"
curl -s "$U/api/locks/device/runb" | jq -r .lock.lock_key >>"$dir/inside"
echo "\$DEVLOCK_LOCK_KEY \$DEVLOCK_FENCE" >>"$dir/inside"
exit 3
EOF
expect_rc 3 "run exits with CMD's status" "$L" --user carol run runa runb -- sh "$dir/inside.sh"
[ "$(sed -n 1p "$dir/inside")" = carol ] && [ "$(sed -n 2p "$dir/inside")" = "$(sed -n 3p "$dir/inside" | cut -d' ' -f1)" ] &&
    [ "$(sed -n 3p "$dir/inside" | cut -d' ' -f2)" -ge 1 ]
check "run: the locks are held inside CMD (lockctl and curl), key and fence in the environment"
[ "$("$L" status --json runa | jq -r .locked)" = false ] && [ "$("$L" status --json runb | jq -r .locked)" = false ]
check "run: released after CMD"
expect_rc 0 "run of a command that succeeds" "$L" run runa -- true
"$L" --user zed acquire --timeout 60 runc >/dev/null 2>&1
expect_rc 123 "run on a busy device does not run CMD (run's busy code)" "$L" run runc -- sh -c "touch $dir/ran"
[ ! -e "$dir/ran" ]
check "run: CMD not started when busy"
# a 2 s lease kept past its first expiry: CMD polls (deadline 10 s) until the
# clock is past the expires_at it started with, then checks the lock is still
# held, with a later expires_at
expect_rc 0 "run renews the lease" "$L" run --timeout 2 rund -- sh -c \
    "first=\$($ROOT/$L status --json rund | jq -r .lock.expires_at); past=\$(date -d \"\$first\" +%s%N); deadline=\$((\$(date +%s) + 10)); until [ \$(date +%s%N) -gt \$past ]; do [ \$(date +%s) -ge \$deadline ] && exit 9; sleep 0.1; done; $ROOT/$L status --json rund | jq -e --arg f \"\$first\" '.locked and .lock.expires_at != \$f' >/dev/null"
# a lock lost while CMD runs: CMD gets SIGTERM
cat >"$dir/victim.sh" <<EOF
trap 'echo TERM >"$dir/got"; exit 143' TERM
echo started >"$dir/started"
deadline=\$((\$(date +%s) + 20)); while [ \$(date +%s) -lt \$deadline ]; do sleep 0.1; done  # until SIGTERM (the event under test)
exit 0
EOF
"$L" run --timeout 2 rune -- sh "$dir/victim.sh" >"$dir/run.out" 2>"$dir/run.err" &
runpid=$!
until_ok 10 test -e "$dir/started"
curl -s -XPOST "$U/api/lock/request" -H 'content-type: application/json' \
    -d '{"device_name":"rune","lock_type":"MAINTENANCE","user_id":"boss","timeout":30}' >/dev/null
until_ok 10 test -e "$dir/got"
check "run: CMD gets SIGTERM when the lock is preempted"
wait "$runpid"; rc=$?
[ "$rc" = 120 ] && grep -q "lost" "$dir/run.err"
check "run: exits 120 (lock lost) after the loss, whatever CMD's status (got $rc)"

# watch
"$L" watch --json --count 2 --device wdev >"$dir/w.out" 2>"$dir/w.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/w.err"
check "watch connects"
r=$(curl -s -XPOST "$U/api/lock/request" -H 'content-type: application/json' \
    -d '{"device_name":"wdev","lock_type":"MANUAL_OPERATOR","user_id":"curl-user"}')
curl -s -XPOST "$U/api/lock/release?device_name=wdev&lock_key=$(echo "$r" | jq -r .lock_key)&user_id=curl-user" >/dev/null
until_ok 10 sh -c "! kill -0 $wpid 2>/dev/null"
check "watch --count 2 exits after two events"
wait "$wpid"
[ "$(jq -r '.action + ":" + .device_name + ":" + .lock.user_id' "$dir/w.out" | tr '\n' ' ')" = "acquired:wdev:curl-user released:wdev:curl-user " ]
check "watch --json prints curl's acquire and release, in order"
"$L" watch --count 1 >"$dir/w2.out" 2>"$dir/w2.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/w2.err"
curl -s -XPOST "$U/api/lock/request" -H 'content-type: application/json' \
    -d '{"device_name":"wdev2","lock_type":"QUEUE_QUEUED","user_id":"curl-user","timeout":30}' >/dev/null
until_ok 10 sh -c "! kill -0 $wpid 2>/dev/null"
wait "$wpid"
grep "acquired" "$dir/w2.out" | grep "wdev2" | grep "curl-user" | grep -q QUEUE_QUEUED
check "watch prints a human line for an event made with curl"
"$L" --url "$UC" --token s3cret-alice watch --json --count 1 >"$dir/w4.out" 2>"$dir/w4.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/w4.err"
check "watch connects to a broker with auth, with the token"
"$L" --url "$UC" --token s3cret-alice --user alice acquire authw >/dev/null 2>&1
until_ok 10 sh -c "! kill -0 $wpid 2>/dev/null"
wait "$wpid"
[ "$(jq -r .device_name "$dir/w4.out")" = authw ]
check "watch with a token sees the event"
"$L" watch >"$dir/w3.out" 2>"$dir/w3.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/w3.err"
kill -INT "$wpid"
until_ok 10 sh -c "! kill -0 $wpid 2>/dev/null"
wait "$wpid"
check "watch ends with status 0 on SIGINT"

# ---- installed library --------------------------------------------------------
echo "=== install"
stage=$dir/stage
make -s B="$B" install DESTDIR="$stage" PREFIX=/usr >"$dir/install.log" 2>&1
check "make install DESTDIR=... PREFIX=/usr" || cat "$dir/install.log"
LCV=$(sed -n 's/^LC_VERSION := //p' Makefile)   # the library's full version, e.g. 1.2.0
for f in include/lockclient.h lib/liblockclient.so.$LCV lib/liblockclient.so.1 lib/liblockclient.so \
         lib/liblockclient.a lib/pkgconfig/lockclient.pc bin/lockctl; do
    test -e "$stage/usr/$f" || { bad "installed $f"; continue; }
done
ok "installed the header, .so (+ links), .a, .pc and lockctl"
readelf -d "$stage/usr/lib/liblockclient.so.$LCV" | grep -q 'SONAME.*\[liblockclient.so.1\]'
check "SONAME liblockclient.so.1"
others=$(nm -D --defined-only "$stage/usr/lib/liblockclient.so.$LCV" | awk '{print $3}' | grep -v '^lc_' | grep -v "^LOCKCLIENT_1\(\.[0-9]*\)\?$")
[ -z "$others" ]
check "the .so exports only lc_* ${others:+(also: $others)}"
sed -n 's/^LC_API [^(]*[ *]\(lc_[a-z_0-9]*\)(.*/\1/p' client/include/lockclient.h | sort >"$dir/api.want"
nm -D --defined-only "$stage/usr/lib/liblockclient.so.$LCV" | awk '{print $3}' | sed 's/@.*//' | grep '^lc_' | sort >"$dir/api.have"
[ "$(wc -l <"$dir/api.want")" -ge 50 ] && cmp -s "$dir/api.want" "$dir/api.have"
check "the .so exports every function of lockclient.h ($(wc -l <"$dir/api.have") of $(wc -l <"$dir/api.want"))" ||
    diff "$dir/api.want" "$dir/api.have" | head
grep -q '^prefix=/usr$' "$stage/usr/lib/pkgconfig/lockclient.pc"
check "lockclient.pc has prefix=/usr"
export PKG_CONFIG_PATH="$stage/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage"
PC=$(pkg-config --cflags --libs lockclient)
check "pkg-config finds lockclient: $PC"
for src in client/examples/*.c; do
    name=$(basename "$src" .c)
    extra=""    # uv_loop is the libuv adapter example: it needs libuv besides
    [ "$name" = uv_loop ] && extra=$(pkg-config --cflags --libs libuv)
    cc -std=c11 -Wall -Wextra -Werror -o "$dir/ex_$name" "$src" $PC $extra >"$dir/cc.log" 2>&1
    check "example $name compiles with only pkg-config --cflags --libs lockclient${extra:+ (and libuv)}" || cat "$dir/cc.log"
done
# the program of docs/client.md, "Using the library"
sed -n '/^## Using the library/,/^## /p' docs/client.md | sed -n '/^```c$/,/^```$/p' | sed '1d;$d' >"$dir/hello_lock.c"
grep -q lc_acquire "$dir/hello_lock.c" &&
    cc -std=c11 -Wall -Wextra -Werror "$dir/hello_lock.c" $(pkg-config --cflags --libs lockclient) -o "$dir/hello_lock"
check "the example of docs/client.md compiles as documented"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
export LD_LIBRARY_PATH="$stage/usr/lib"
ldd "$dir/ex_acquire_release" | grep -q "$stage/usr/lib/liblockclient.so.1"
check "the example links the staged liblockclient.so.1"
expect_rc 0 "installed example acquire_release runs against the broker" "$dir/ex_acquire_release" inst-dev
grep -q "released inst-dev" "$dir/out"
check "acquire_release held and released"
expect_rc 0 "installed example with_lock (2 s lease, 3 s body)" "$dir/ex_with_lock" inst-wl
expect_rc 0 "installed example guard" "$dir/ex_guard" inst-g
expect_rc 0 "installed example plan_executor" "$dir/ex_plan_executor" plan-inst inst-p1 inst-p2
"$dir/ex_watch_monitor" 1 >"$dir/wm.out" 2>"$dir/wm.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/wm.err"
"$dir/ex_acquire_release" inst-w >/dev/null 2>&1
until_ok 10 sh -c "! kill -0 $wpid 2>/dev/null"
wait "$wpid"
grep -q "acquired.*inst-w" "$dir/wm.out"
check "installed example watch_monitor sees an event"
expect_rc 0 "the example of docs/client.md runs" "$dir/hello_lock"
grep -q "^fence [0-9]" "$dir/out"
check "it prints the fence"
unset LD_LIBRARY_PATH
cc -std=c11 -Wall -Werror -I"$stage/usr/include" -o "$dir/ex_static" client/examples/acquire_release.c \
    "$stage/usr/lib/liblockclient.a" $DEPS_LIBS -pthread && "$dir/ex_static" inst-static >/dev/null
check "the static library links and runs"
make -s B="$B" uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1
[ -z "$(find "$stage" -type f -o -type l)" ]
check "make uninstall removes every installed file"

# ---- further parts: tests/client/t_*.sh, in name order ------------------------
# Each is sourced here with the servers above running and may use every
# helper and variable of this file ($CTL, $U, $L, $dir, ok, bad, check,
# expect_rc, until_ok, run_c, $DEPS_CFLAGS, $DEPS_LIBS, $WARN).
for part in tests/client/t_*.sh; do
    [ -f "$part" ] || continue
    echo "=== $(basename "$part")"
    . "./$part"
done

finish
