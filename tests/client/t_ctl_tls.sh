# tests/client/t_ctl_tls.sh - lockctl against a TLS broker whose certificate
# is signed by a CA made here (--cacert, --capath, DEVLOCK_CACERT,
# SSL_CERT_FILE, CURL_CA_BUNDLE), a wrong CA (exit 5, the reason), and how
# `lockctl watch` reports failures: wrong CA (exit 5), 401 (exit 1),
# connection refused (reported, retried; --exit-on-error: exit 3).
# Sourced by tests/client/run.sh with the servers running.

RL="$ROOT/$L"
tls=$dir/tls
mkdir -p "$tls/capath"
mkcert() {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 2 \
        -subj "/CN=devlock test CA" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/other.key" -out "$tls/other.pem" -days 2 \
        -subj "/CN=some other CA" &&
    openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
        -subj "/CN=localhost" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        >"$tls/ext.cnf" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -out "$tls/server.pem" -days 2 -extfile "$tls/ext.cnf" &&
    cp "$tls/ca.pem" "$tls/capath/" && openssl rehash "$tls/capath"
}
mkcert >"$tls/openssl.log" 2>&1
check "a CA, a server certificate for localhost signed by it, and another CA (openssl)" || cat "$tls/openssl.log"

# broker T: TLS, on the suite's Redis
rm -f "$dir/tlsd.portfile"
"$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$dir/tlsd.portfile" \
    --redis-url "redis://127.0.0.1:$(cat "$dir/redis.port")" \
    --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" >>"$dir/tlsd.log" 2>&1 &
echo $! >"$dir/tlsd.pid"
until_ok 10 test -s "$dir/tlsd.portfile"
PT=$(cat "$dir/tlsd.portfile" 2>/dev/null)
UT="https://localhost:$PT"
until_ok 10 curl -sf -o /dev/null --cacert "$tls/ca.pem" "$UT/api/health/ready"
check "TLS broker up: curl trusts it with the test CA"
curl -s -o /dev/null --cacert "$tls/other.pem" "$UT/api/health/ready"
[ $? = 60 ]
check "curl with the other CA refuses the certificate (the setup is sound)"

# ---- trusted ------------------------------------------------------------------------
expect_rc 0 "lockctl --url https://localhost:PORT --cacert ca.pem status" \
    "$RL" --url "$UT" --cacert "$tls/ca.pem" status
expect_rc 0 "--cacert=FILE after the command" "$RL" status --url="$UT" --cacert="$tls/ca.pem"
expect_rc 0 "DEVLOCK_CACERT" env DEVLOCK_CACERT="$tls/ca.pem" "$RL" --url "$UT" status
expect_rc 0 "SSL_CERT_FILE (the library's default)" env SSL_CERT_FILE="$tls/ca.pem" "$RL" --url "$UT" status
expect_rc 0 "CURL_CA_BUNDLE (the library's default, without SSL_CERT_FILE)" env -u SSL_CERT_FILE CURL_CA_BUNDLE="$tls/ca.pem" "$RL" --url "$UT" status
expect_rc 0 "--capath DIR of hashed certificates" "$RL" --url "$UT" --capath "$tls/capath" status
expect_rc 0 "acquire over TLS" "$RL" --url "$UT" --cacert "$tls/ca.pem" acquire --json --timeout 30 tlsdev
TKEY=$(jq -r .lock_key "$dir/out")
expect_rc 0 "release over TLS" "$RL" --url "$UT" --cacert "$tls/ca.pem" release --key "$TKEY" tlsdev
expect_rc 0 "run over TLS (acquire, keepalive, release)" \
    "$RL" --url "$UT" --cacert "$tls/ca.pem" run --timeout 2 tlsrun -- sh -c 'exit 0'

# ---- not trusted: exit 5, the reason ---------------------------------------------------
expect_rc 5 "another CA: exit 5 (TLS)" "$RL" --url "$UT" --cacert "$tls/other.pem" status
grep -qi "certificate" "$dir/err" && ! grep -qi "unreachable" "$dir/err"
check "another CA: the message names the certificate, not 'unreachable'" || sed 's/^/    /' "$dir/err"
expect_rc 5 "no CA given (the system's store): exit 5" env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u DEVLOCK_CACERT \
    "$RL" --url "$UT" status
expect_rc 5 "DEVLOCK_CACERT with the other CA: exit 5" env DEVLOCK_CACERT="$tls/other.pem" "$RL" --url "$UT" health
expect_rc 125 "run with another CA: 125 (could not acquire: other), CMD not run" \
    "$RL" --url "$UT" --cacert "$tls/other.pem" run tlsrun -- sh -c "touch $dir/tls.ran"
grep -qi "certificate" "$dir/err" && [ ! -e "$dir/tls.ran" ]
check "run with another CA says why and does not run CMD"

# ---- watch ----------------------------------------------------------------------------
# wait_exit PID SECONDS: until PID has ended; its status in $wrc
# (killed after SECONDS, so nothing is left running; then it fails)
wait_exit() {
    until_ok "$2" sh -c "! kill -0 $1 2>/dev/null"; r=$?
    [ "$r" = 0 ] || kill -KILL "$1" 2>/dev/null
    wait "$1"; wrc=$?; return "$r"
}
"$RL" --url "$UT" --cacert "$tls/ca.pem" watch --json --count 1 --device tlsw >"$dir/tw.out" 2>"$dir/tw.err" &
wpid=$!
until_ok 10 grep -qs connected "$dir/tw.err"
check "watch over wss with --cacert connects"
"$RL" --url "$UT" --cacert "$tls/ca.pem" acquire --timeout 30 tlsw >/dev/null 2>&1
wait_exit "$wpid" 10 && [ "$wrc" = 0 ] && [ "$(jq -r .device_name "$dir/tw.out")" = tlsw ]
check "watch over wss sees the event and exits 0 after --count 1"

"$RL" --url "$UT" --cacert "$tls/other.pem" watch >/dev/null 2>"$dir/tw2.err" &
wpid=$!
wait_exit "$wpid" 10
check "watch with another CA ends by itself (does not hang)"
[ "$wrc" = 5 ] && grep -qi "certificate" "$dir/tw2.err"
check "watch with another CA: exit 5 and the reason (got $wrc)" || sed 's/^/    /' "$dir/tw2.err"

"$RL" --url "$UC" watch >/dev/null 2>"$dir/tw3.err" &
wpid=$!
wait_exit "$wpid" 10
check "watch of an auth broker without a token ends by itself"
[ "$wrc" = 1 ] && grep -qi "401\|unauthorized" "$dir/tw3.err"
check "watch without a token: exit 1, the 401 is said (got $wrc)" || sed 's/^/    /' "$dir/tw3.err"

# connection refused: reported each time, retried (documented), until SIGINT
"$RL" --url "$DEAD" watch >/dev/null 2>"$dir/tw4.err" &
wpid=$!
two_failures() { [ "$(grep -ci "unreachable\|refused" "$dir/tw4.err")" -ge 2 ]; }
until_ok 10 two_failures && grep -q "retrying" "$dir/tw4.err"
check "watch of a dead port: every failure on stderr, 'retrying'" || sed 's/^/    /' "$dir/tw4.err"
kill -0 "$wpid" 2>/dev/null
check "watch of a dead port keeps running"
kill -INT "$wpid" 2>/dev/null
wait_exit "$wpid" 10 && [ "$wrc" = 0 ]
check "watch of a dead port ends with 0 on SIGINT (got $wrc)"
"$RL" --url "$DEAD" watch --exit-on-error >/dev/null 2>"$dir/tw5.err" &
wpid=$!
wait_exit "$wpid" 10 && [ "$wrc" = 3 ] && grep -qi "unreachable\|refused" "$dir/tw5.err"
check "watch --exit-on-error of a dead port: exit 3 with the reason (got $wrc)" || sed 's/^/    /' "$dir/tw5.err"
"$RL" --url "$UT" --cacert "$tls/ca.pem" force-release tlsw >/dev/null 2>&1
