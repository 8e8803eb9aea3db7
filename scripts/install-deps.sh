#!/bin/sh
# install-deps.sh - installs what devlock needs to build, run and test, and
# nothing that is already there. Idempotent; safe to run on every `make`.
#   Debian packages: compilers, libraries (-dev), redis-server, test tools.
#   npm packages (tests/package-lock.json): ws, wscat, playwright-core.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config libwebsockets-dev libhiredis-dev libcjson-dev uuid-dev
libcurl4-openssl-dev libuv1-dev libssl-dev redis-server curl jq openssl nodejs npm
clang libclang-rt-14-dev chromium"

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
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# Test tools from npm, pinned by tests/package-lock.json.
if [ -f tests/package-lock.json ]; then
    if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules/.stamp ]; then
        echo "install-deps: npm ci (tests/)"
        (cd tests && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
    fi
fi
