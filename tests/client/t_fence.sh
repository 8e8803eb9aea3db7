# tests/client/t_fence.sh - sourced by tests/client/run.sh (servers running):
# the library over TLS with a CA made here (CA file option, SSL_CERT_FILE,
# CURL_CA_BUNDLE, wrong or missing CA -> LC_ERR_TLS naming the certificate
# problem), and preemption warnings reaching a keepalive (broker with
# --preempt-grace 2 on the suite's Redis).
FP="$B/tests/client/fence_prog"
cc -O1 -g $WARN -Iclient/include -Itests -o "$FP" tests/client/fence_prog.c "$B/liblockclient.a" $DEPS_LIBS -pthread
check "fence_prog builds against liblockclient.a"

# start_extra NAME ARGS...: one more devlockd on the suite's Redis; its PID in
# $dir/NAME.pid (run.sh's cleanup stops it), its port in $dir/NAME.port
start_extra() {
    name=$1; shift
    rm -f "$dir/$name.portfile"
    "$B/devlockd" --host 127.0.0.1 --port 0 --port-file "$dir/$name.portfile" \
        --redis-url "redis://127.0.0.1:$(cat "$dir/redis.port")" "$@" >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    until_ok 10 test -s "$dir/$name.portfile" && cp "$dir/$name.portfile" "$dir/$name.port"
}

# ---- TLS ---------------------------------------------------------------------
t=$dir/tls; mkdir -p "$t"
{
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" -days 2 -subj "/CN=devlock test CA" &&
    openssl req -newkey rsa:2048 -nodes -keyout "$t/srv.key" -out "$t/srv.csr" -subj "/CN=127.0.0.1" &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$t/ext" &&
    openssl x509 -req -in "$t/srv.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -out "$t/srv.pem" \
        -days 2 -extfile "$t/ext" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/other.key" -out "$t/other.pem" -days 2 -subj "/CN=another CA"
} >"$t/openssl.log" 2>&1
check "openssl makes a CA, a server certificate it signs, and another CA" || cat "$t/openssl.log"
start_extra tls --tls-cert "$t/srv.pem" --tls-key "$t/srv.key"
check "a devlockd with --tls-cert/--tls-key"
UT="https://127.0.0.1:$(cat "$dir/tls.port")"
until_ok 10 curl -s -o /dev/null --cacert "$t/ca.pem" "$UT/api/health/ready"
check "the TLS broker answers curl --cacert"

# fp_tls NAME WANT_RC [ENV=... ...] -- ARGS: fence_prog tls with a clean TLS environment
fp_tls() {
    name=$1; want=$2; shift 2
    env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u SSL_CERT_DIR "$@" >"$dir/fp.out" 2>&1; got=$?
    if [ "$got" = "$want" ]; then ok "$name (exit $got)"; else
        bad "$name: exit $got, wanted $want"; sed 's/^/    /' "$dir/fp.out" | head -n 5; fi
}
fp_tls "TLS with LC_OPT_CA_FILE" 0 "$FP" tls "$UT" "$t/ca.pem"
grep -q "^status=ok " "$dir/fp.out" && grep -q "calls=0" "$dir/fp.out"
check "  status ok, no error callback"
grep -q "^keepalive over TLS: ok" "$dir/fp.out"
check "  a keepalive renews over TLS (its connection has the same CA)"
fp_tls "a client certificate that cannot be read: LC_ERR_TLS" 5 "$FP" tls "$UT" "$t/ca.pem" "$t/none-cert.pem"
grep -q "^status=tls_error permanent=1" "$dir/fp.out"
check "  tls_error, permanent: $(sed -n 2p "$dir/fp.out" | cut -c1-80)"
fp_tls "TLS without the CA: LC_ERR_TLS, exit 5" 5 "$FP" tls "$UT"
grep -q "^status=tls_error permanent=1 calls=1" "$dir/fp.out" && sed -n 2p "$dir/fp.out" | grep -q "^TLS: .*certificate"
check "  tls_error, permanent, the callback ran, the detail names the certificate problem: $(sed -n 2p "$dir/fp.out" | cut -c1-90)"
! grep -q "unreachable" "$dir/fp.out"
check "  a certificate problem is not called unreachable"
fp_tls "TLS with another CA: LC_ERR_TLS" 5 "$FP" tls "$UT" "$t/other.pem"
sed -n 2p "$dir/fp.out" | grep -q "^TLS: .*certificate"
check "  the detail names the certificate problem"
fp_tls "TLS with a CA file that does not exist: LC_ERR_TLS" 5 "$FP" tls "$UT" "$t/none.pem"
fp_tls "SSL_CERT_FILE is honoured" 0 env SSL_CERT_FILE="$t/ca.pem" "$FP" tls "$UT"
fp_tls "CURL_CA_BUNDLE is honoured" 0 env CURL_CA_BUNDLE="$t/ca.pem" "$FP" tls "$UT"
fp_tls "LC_OPT_CA_FILE wins over SSL_CERT_FILE" 5 env SSL_CERT_FILE="$t/ca.pem" "$FP" tls "$UT" "$t/other.pem"
fp_tls "refused: unavailable, exit 3, broker unreachable" 3 "$FP" tls "$DEAD"
grep -q "^status=unavailable permanent=0 calls=1" "$dir/fp.out" && grep -q "broker unreachable" "$dir/fp.out"
check "  unavailable, not permanent, 'broker unreachable'"

# ---- preemption warnings -----------------------------------------------------
start_extra pg --preempt-grace 2
check "a devlockd with --preempt-grace 2"
run_c "preemption warnings reach the keepalive" "$FP" preempt "http://127.0.0.1:$(cat "$dir/pg.port")"

# ---- plan_executor fails closed ------------------------------------------------
# the broker goes away while the plan runs (20 devices x 3 steps x 100 ms;
# the broker stops within ~1 s): the next fence check fails, and the
# executor stops instead of driving the device unchecked
DEVLOCK_URL=$U "$B/examples/plan_executor" "plan-fc-$$" $(seq -f fc%g 1 20) >"$dir/pe.out" 2>"$dir/pe.err" &
pepid=$!
until_ok 10 sh -c "curl -s '$U/api/locks/device/fc1' | jq -e '.locked and .lock.plan_uid == \"plan-fc-$$\"' >/dev/null"
check "plan_executor holds its devices"
$CTL stop-a
until_ok 15 sh -c "! kill -0 $pepid 2>/dev/null"
wait "$pepid"; rc=$?
$CTL start-a
[ "$rc" = 1 ] && grep -q "stopped: fence check failed" "$dir/pe.out" && grep -q "cannot check the fence" "$dir/pe.err" &&
    ! grep -q "step 2: fc20" "$dir/pe.out"
check "plan_executor stops when the fence check fails (exit $rc): $(grep "cannot check" "$dir/pe.err" | cut -c1-80)"
until_ok 10 curl -sf -o /dev/null "$U/api/health/ready"
check "broker A is back"
