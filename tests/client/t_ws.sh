# t_ws.sh - the library's WebSocket transport (client/lc_ws.c), sourced by
# tests/client/run.sh with its servers running: tests/client/test_ws.c
# against broker A (pause-a for the silence timeout), broker C (401 on the
# upgrade), a dead port, and an extra broker with --tls-cert on the suite's
# Redis, which pings its clients after 1 s of silence and drops them when
# no pong comes within 1 s (lc_ws must answer by itself). The certificates are made here with the openssl CLI: a CA and a
# server certificate that names only "localhost" (so https://127.0.0.1 is a
# name mismatch), and an unrelated CA that must not be trusted.
ws=$dir/ws
mkdir -p "$ws"
ws_fail_before=$fail
mkcert() {
    ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl req -x509 $ec -keyout "$ws/ca.key" -out "$ws/ca.pem" -days 2 -subj "/CN=devlock test CA" &&
    openssl req -x509 $ec -keyout "$ws/other.key" -out "$ws/other.pem" -days 2 -subj "/CN=devlock other CA" &&
    openssl req $ec -keyout "$ws/srv.key" -out "$ws/srv.csr" -subj "/CN=localhost" &&
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$ws/srv.ext" &&
    openssl x509 -req -in "$ws/srv.csr" -CA "$ws/ca.pem" -CAkey "$ws/ca.key" -CAcreateserial \
        -out "$ws/srv.pem" -days 2 -extfile "$ws/srv.ext" &&
    # signed by the right CA, for another name (test_ws's own TLS listener serves it)
    openssl req $ec -keyout "$ws/wrong.key" -out "$ws/wrong.csr" -subj "/CN=devlock.invalid" &&
    printf 'subjectAltName=DNS:devlock.invalid\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$ws/wrong.ext" &&
    openssl x509 -req -in "$ws/wrong.csr" -CA "$ws/ca.pem" -CAkey "$ws/ca.key" -CAcreateserial \
        -out "$ws/wrong.pem" -days 2 -extfile "$ws/wrong.ext"
}
mkcert >"$ws/openssl.log" 2>&1
check "openssl makes a CA, a localhost certificate and another CA" || cat "$ws/openssl.log"
rm -f "$ws/tls.portfile"
"$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$ws/tls.portfile" \
    --redis-url "redis://127.0.0.1:$(cat "$dir/redis.port")" \
    --tls-cert "$ws/srv.pem" --tls-key "$ws/srv.key" --ws-ping-interval 1 --ws-ping-timeout 1 \
    >>"$dir/wstls.log" 2>&1 &
echo $! >"$dir/wstls.pid"      # not tls.pid: t_fence.sh has that name for its own broker
until_ok 10 test -s "$ws/tls.portfile" &&
    until_ok 10 curl -s -o /dev/null -m 2 --cacert "$ws/ca.pem" "https://localhost:$(cat "$ws/tls.portfile")/api/health/ready"
check "a devlockd with --tls-cert answers https://localhost with the test CA" || tail -n 20 "$dir/wstls.log"
PT=$(cat "$ws/tls.portfile" 2>/dev/null)

export LC_T_URL_C="$UC" LC_T_TLS_URL="https://localhost:$PT" LC_T_TLS_URL_IP="https://127.0.0.1:$PT" \
    LC_T_CA="$ws/ca.pem" LC_T_CA_OTHER="$ws/other.pem" LC_T_TLS_DIR="$ws"
rm -f "$B/tests/client/test_ws" "$B/tests/client/test_ws_asan"   # never a stale binary
cc -O1 -g $WARN -Icommon -Iclient -Iclient/include -Itests $DEPS_CFLAGS -o "$B/tests/client/test_ws" \
    tests/client/test_ws.c "$B/liblockclient.a" $DEPS_LIBS -pthread
check "test_ws builds against liblockclient.a"
run_c "WebSocket transport" "$B/tests/client/test_ws"
if [ "${NO_ASAN:-0}" != 1 ]; then
    cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
        $WARN -Icommon -Iclient -Iclient/include -Itests $DEPS_CFLAGS -pthread \
        -o "$B/tests/client/test_ws_asan" tests/client/test_ws.c client/*.c common/*.c $DEPS_LIBS -lm
    check "test_ws builds with the library under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=70 UBSAN_OPTIONS=print_stacktrace=1 \
        run_c "WebSocket transport under ASan+UBSan" "$B/tests/client/test_ws_asan"
    grep -q "ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer" "$dir/c.out"
    [ $? != 0 ]
    check "ASan+UBSan report nothing for lc_ws"
fi
unset LC_T_URL_C LC_T_TLS_URL LC_T_TLS_URL_IP LC_T_CA LC_T_CA_OTHER LC_T_TLS_DIR
[ "$fail" = "$ws_fail_before" ] || { echo "--- devlockd tls log (tail)"; tail -n 20 "$dir/wstls.log"; }
$CTL cont-a >/dev/null 2>&1    # in case a test left broker A stopped
kill "$(cat "$dir/wstls.pid")" 2>/dev/null
rm -f "$dir/wstls.pid"
