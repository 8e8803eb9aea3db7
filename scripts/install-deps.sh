#!/bin/sh
# install-deps.sh [run|test|bench] - installs what devlock needs, and nothing
# that is already there. Idempotent; safe to run on every `make`.
#   run:  compilers, libraries (-dev), redis-server        (make run)
#   bench: the same, plus nginx-light (the HTTP ceiling) and strace (syscall
#         counts); nginx's own service is kept from starting (policy-rc.d):
#         the bench starts a private nginx on loopback     (make bench)
#   test: the same, plus test tools: node + npm packages (ws, wscat,
#         playwright-core from tests/package-lock.json), clang for the
#         fuzzers, Debian's chromium for the dashboard test, debhelper
#         and lintian for the package test                   (make test)
set -eu
cd "$(dirname "$0")/.."
mode=${1:-test}

PKGS="build-essential pkg-config libwebsockets-dev libhiredis-dev libcjson-dev uuid-dev
libcurl4-openssl-dev libuv1-dev libssl-dev redis-server curl openssl"
if [ "$mode" = test ]; then
    PKGS="$PKGS jq clang libclang-rt-14-dev chromium valgrind wrk"
    # the package suite: make deb (debhelper, dpkg-dev), lintian, and what it
    # uses on the installed packages (man -w, ss, adduser for the postinst)
    PKGS="$PKGS debhelper dpkg-dev lintian man-db iproute2 adduser"
    # Node may come from elsewhere than Debian (this image has its own):
    # install Debian's only when there is none.
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
fi

if [ "$mode" = bench ]; then
    PKGS="$PKGS nginx-light strace"
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # no package's service starts listening (nginx's default site is port 80 on
    # every address) unless the machine already says otherwise
    norc=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        norc=1
    fi
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing || { [ -z "$norc" ] || $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -z "$norc" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

# Test tools from npm, pinned by tests/package-lock.json.
if [ "$mode" = test ] && [ -f tests/package-lock.json ]; then
    if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules/.stamp ]; then
        echo "install-deps: npm ci (tests/)"
        (cd tests && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
    fi
fi
