# tests/client/t_loop.sh - the event-loop API (lc_loop): the examples
# poll_loop and uv_loop against broker A, then tests/client/test_loop.c
# (plain, and under ASan+UBSan unless NO_ASAN=1). Sourced by run.sh with the
# servers running; uses its helpers and variables.

# the examples: watch + acquire + release from the program's own loop
for ex in poll_loop uv_loop; do
    devx="tl-ex-$ex-$$"
    DEVLOCK_URL=$U timeout 30 "$B/examples/$ex" "$devx" >"$dir/ex.out" 2>"$dir/ex.err"
    rc=$?
    [ "$rc" = 0 ] && grep -qx "connected" "$dir/ex.out" &&
        grep -q "^acquired $devx fence [0-9][0-9]*$" "$dir/ex.out" &&
        grep -qx "released $devx" "$dir/ex.out" &&
        grep -qx "event acquired $devx" "$dir/ex.out" &&
        grep -qx "event released $devx" "$dir/ex.out" &&
        [ "$(grep -n "event acquired $devx" "$dir/ex.out" | cut -d: -f1)" -lt \
          "$(grep -n "event released $devx" "$dir/ex.out" | cut -d: -f1)" ]
    check "example $ex: connects, acquires, releases and sees both events in order" ||
        sed 's/^/    /' "$dir/ex.out" "$dir/ex.err" | head -n 20
    # the broker's view: the device is free again
    curl -sf "$U/api/locks/device/$devx" | grep -q '"locked":false'
    check "example $ex left $devx free"
done
# a permanent refusal (401 on the upgrade) ends the example at once with an
# error, not after its 20 s limit
t0=$(date +%s)
DEVLOCK_URL=$UC timeout 30 "$B/examples/poll_loop" "tl-ex-401-$$" >"$dir/ex.out" 2>"$dir/ex.err"
rc=$?
[ "$rc" = 1 ] && [ $(( $(date +%s) - t0 )) -lt 10 ] && grep -q "giving up" "$dir/ex.err" &&
    ! grep -q "^acquired" "$dir/ex.out"
check "example poll_loop without a token on the auth broker gives up at once (exit $rc)" ||
    sed 's/^/    /' "$dir/ex.err" | head -n 5

# the C tests
cc -O1 -g $WARN -Iclient/include -Itests -o "$B/tests/client/test_loop" tests/client/test_loop.c \
    "$B/liblockclient.a" $DEPS_LIBS -pthread
check "test_loop builds against liblockclient.a"
export LC_T_URL_C="$UC" LC_T_DIR="$dir" LC_T_DEVLOCKD="$ROOT/$B/devlockd"
run_c "event loop" "$B/tests/client/test_loop"
if [ "${NO_ASAN:-0}" != 1 ]; then
    cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
        $WARN -Icommon -Iclient/include -Itests $DEPS_CFLAGS -pthread \
        -o "$B/tests/client/test_loop_asan" tests/client/test_loop.c client/*.c common/*.c $DEPS_LIBS -lm
    check "test_loop builds with the library under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=70 UBSAN_OPTIONS=print_stacktrace=1 \
        run_c "event loop under ASan+UBSan" "$B/tests/client/test_loop_asan"
    grep -q "ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer" "$dir/c.out"
    [ $? != 0 ]
    check "ASan+UBSan report nothing for the event loop"
fi
$CTL cont-a >/dev/null 2>&1; $CTL start-a >/dev/null 2>&1
unset LC_T_URL_C LC_T_DIR LC_T_DEVLOCKD
