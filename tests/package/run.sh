#!/bin/sh
# tests/package/run.sh - the Debian packages, end to end, on this machine:
# `make deb`, lintian (no errors), install the four .debs, check what they put
# where (files, the devlock user, the conffile, pkg-config, man pages), start
# a private redis-server and the INSTALLED devlockd the way the package runs
# it (systemd when it is PID 1, else the unit's own command line, user and
# environment file), compile the README's example against the installed
# library and run it and /usr/bin/lockctl against that broker, stop it, purge
# the packages and check nothing of them is left.
#
# Needs root (it installs packages): run as root, or with passwordless sudo.
# Loopback only. Every wait is polled with a deadline. Last line: "N passed,
# M failed"; exit status 1 when a check failed.
set -u
cd "$(dirname "$0")/../.."
B=${DEVLOCK_BUILD:-build}
export DEBIAN_FRONTEND=noninteractive
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR LD_LIBRARY_PATH

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n -E sh "$0" "$@"
    fi
    echo "package: needs root (installs packages) or passwordless sudo"
    echo "0 passed, 1 failed"
    exit 1
fi

started=$(date +%s)
pass=0; fail=0
dir=$(mktemp -d /tmp/devlock-package.XXXXXX)
chmod 755 "$dir"        # the devlock user runs programs from here
PKGS="devlockd lockctl liblockclient-dev liblockclient1"
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
VERSION=$(sed -n 's/^LC_VERSION *:= *//p' Makefile)
UNIT=/lib/systemd/system/devlockd.service
redis_pid=""; broker_pid=""; installed=0; use_systemd=0

ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
# `cmd; check "what"`: records the status of the command just run
check() { if [ $? = 0 ]; then ok "$@"; else bad "$@"; fi; }
# until_ok SECONDS CMD...: polls CMD every 0.1 s until it succeeds or the deadline passes
until_ok() {
    deadline=$(( $(date +%s) + $1 )); shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
# expect_rc RC WHAT CMD...: runs CMD (output in $dir/out) and checks its exit status
expect_rc() {
    want=$1; what=$2; shift 2
    "$@" >"$dir/out" 2>&1
    got=$?
    if [ "$got" = "$want" ]; then ok "$what"; else bad "$what (exit $got, want $want)"; sed 's/^/    | /' "$dir/out"; fi
}
installed_pkgs() {
    for p in $PKGS; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^[ic]' && echo "$p"
    done
}
# a TCP port nobody listens on, below the ephemeral range (kernel-picked ports
# cannot be used: the unit's command line takes a fixed --port)
free_port() {
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        p=$(shuf -i 20000-32000 -n 1)
        [ -z "$(ss -Htan "sport = :$p")" ] && { echo "$p"; return 0; }
    done
    return 1
}
broker_alive() {
    if [ "$use_systemd" = 1 ]; then systemctl is-active --quiet devlockd
    else [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; fi
}
stop_broker() {
    if [ "$use_systemd" = 1 ]; then systemctl stop devlockd 2>/dev/null
    elif [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid"
        until_ok 10 sh -c "! kill -0 $broker_pid" || kill -KILL "$broker_pid"
        wait "$broker_pid" 2>/dev/null
    fi
    broker_pid=""
}
cleanup() {
    stop_broker
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; redis_pid=""; fi
    if [ "$installed" = 1 ] && [ -n "$(installed_pkgs)" ]; then dpkg --purge $PKGS >/dev/null 2>&1; fi
    rm -rf "$dir"
}
finish() {
    cleanup
    trap - EXIT INT TERM
    echo "package suite: $(( $(date +%s) - started )) s"
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ] && exit 0 || exit 1
}
trap finish EXIT
trap 'exit 1' INT TERM

# A run that died half-way may have left our packages installed: start clean,
# so the installation below (and the user it creates) is this run's doing.
if [ -n "$(installed_pkgs)" ]; then
    echo "package: purging packages left by an earlier run: $(installed_pkgs | tr '\n' ' ')"
    dpkg --purge $PKGS >/dev/null 2>&1
fi
if getent passwd devlock | grep -q ':devlock device lock broker,*:'; then
    deluser --system --quiet devlock >/dev/null 2>&1
fi

# ---- build ------------------------------------------------------------------
echo "=== make deb"
git status --porcelain --untracked-files=all 2>/dev/null | sort >"$dir/tree.before"
# the Makefile's DEB_BUILD_OPTIONS: nocheck noautodbgsym parallel=2
env -u DEB_BUILD_OPTIONS make -s B="$B" deb >"$dir/deb.log" 2>&1
check "make deb builds" || tail -n 40 "$dir/deb.log"
debs=""
for p in $PKGS; do
    f="$B/deb/${p}_${VERSION}-1_$(dpkg --print-architecture).deb"
    [ -f "$f" ]
    check "$p $VERSION-1 built ($f)" && debs="$debs $PWD/$f"
done
git status --porcelain --untracked-files=all 2>/dev/null | sort | cmp -s - "$dir/tree.before"
check "make deb leaves the source tree as it was (it builds in $B/deb/)"

echo "=== lintian"
changes=$(ls "$B"/deb/*.changes 2>/dev/null | head -n 1)
lintian --fail-on error --show-overrides --tag-display-limit 0 ${changes:-$debs} >"$dir/lintian.txt" 2>&1
lrc=$?
sed 's/^/    | /' "$dir/lintian.txt"
[ "$lrc" = 0 ] && ! grep -q '^E: ' "$dir/lintian.txt"
check "lintian reports no errors ($(grep -c '^W: ' "$dir/lintian.txt") warnings, $(grep -c '^O: ' "$dir/lintian.txt") overridden)"

# ---- install ------------------------------------------------------------------
echo "=== install"
[ -n "$debs" ] || finish
installed=1
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confnew $debs >"$dir/apt.log" 2>&1
check "apt-get install the four .debs" || tail -n 30 "$dir/apt.log"
[ "$(installed_pkgs | wc -l)" = 4 ]
check "all four are installed"

for p in $PKGS; do dpkg -L "$p" >"$dir/files.$p" 2>/dev/null; done
has() { grep -qx "$2" "$dir/files.$1"; }
has devlockd /usr/bin/devlockd && has devlockd $UNIT && has devlockd /etc/devlock/devlockd.env &&
    has devlockd /usr/share/man/man8/devlockd.8.gz && has devlockd /usr/share/doc/devlockd/operations.md
check "devlockd ships the daemon, the unit, the env file, devlockd.8, the docs"
has liblockclient1 "/usr/lib/$MA/liblockclient.so.1" && has liblockclient1 "/usr/lib/$MA/liblockclient.so.$VERSION"
check "liblockclient1 ships liblockclient.so.1 -> .so.$VERSION"
readelf -d "/usr/lib/$MA/liblockclient.so.$VERSION" | grep -q 'SONAME.*\[liblockclient\.so\.1\]'
check "its SONAME is liblockclient.so.1"
has liblockclient-dev /usr/include/lockclient.h && has liblockclient-dev "/usr/lib/$MA/liblockclient.so" &&
    has liblockclient-dev "/usr/lib/$MA/liblockclient.a" && has liblockclient-dev "/usr/lib/$MA/pkgconfig/lockclient.pc" &&
    has liblockclient-dev /usr/share/doc/liblockclient-dev/examples/acquire_release.c
check "liblockclient-dev ships the header, .so, .a, lockclient.pc and the examples"
has lockctl /usr/bin/lockctl && has lockctl /usr/share/man/man1/lockctl.1.gz
check "lockctl ships the binary and lockctl.1"
if [ -f client/cli/lockctl.bash ]; then
    has lockctl /usr/share/bash-completion/completions/lockctl &&
        bash -c '. /usr/share/bash-completion/completions/lockctl && complete -p lockctl' >/dev/null 2>&1
    check "lockctl ships its bash completion, which registers for lockctl"
fi
dpkg-query -W -f='${Conffiles}\n' devlockd | grep -q '^ /etc/devlock/devlockd.env '
check "/etc/devlock/devlockd.env is a conffile"

getent passwd devlock >"$dir/pw"
check "the system user devlock exists"
IFS=: read -r _ _ uid gid _ home shell <"$dir/pw"
[ "${uid:-0}" -gt 0 ] && [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] &&
    case $shell in */nologin|*/false) true;; *) false;; esac &&
    [ "$(getent group devlock | cut -d: -f3)" = "$gid" ]
check "devlock is a system account (uid $uid < 1000, group devlock, no home, no login shell)"
[ "$(stat -c '%U:%G %a' /etc/devlock/devlockd.env)" = "root:devlock 640" ] &&
    [ "$(stat -c '%U:%G %a' /etc/devlock)" = "root:devlock 750" ]
check "/etc/devlock is root:devlock 750, devlockd.env 640 (it may hold a Redis password)"
[ -L /etc/systemd/system/multi-user.target.wants/devlockd.service ]
check "the unit is enabled (multi-user.target.wants)"

[ "$(pkg-config --modversion lockclient 2>&1)" = "$VERSION" ]
check "pkg-config --modversion lockclient = $VERSION"
[ "$(man -w lockctl devlockd 2>&1 | tr '\n' ' ')" = "/usr/share/man/man1/lockctl.1.gz /usr/share/man/man8/devlockd.8.gz " ]
check "man -w lockctl devlockd finds both pages"
missing=""
/usr/bin/devlockd --help >"$dir/help.txt" 2>&1
zcat /usr/share/man/man8/devlockd.8.gz 2>/dev/null | sed 's/\\-/-/g' >"$dir/devlockd.8"
for w in $(sed -n 's/^  \(--[a-z0-9-]*\).*/\1/p; s/^ *env \([A-Z_]*\),.*/\1/p' "$dir/help.txt"); do
    grep -q -e "\(^\|[^A-Za-z0-9_-]\)$w\([^A-Za-z0-9_-]\|$\)" "$dir/devlockd.8" || missing="$missing $w"
done
[ -s "$dir/help.txt" ] && [ -z "$missing" ]
check "devlockd.8 documents every option and variable of devlockd --help${missing:+ (missing:$missing)}"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$UNIT" >"$dir/verify.txt" 2>&1
    check "systemd-analyze verify accepts the installed unit" || sed 's/^/    | /' "$dir/verify.txt"
fi

# ---- run the installed broker --------------------------------------------------
echo "=== installed devlockd"
RP=$(free_port) && DP=$(free_port) && [ "$RP" != "$DP" ]
check "free loopback ports: redis $RP, devlockd $DP" || finish
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
until_ok 10 sh -c "redis-cli -h 127.0.0.1 -p $RP ping | grep -q PONG"
check "private redis-server on 127.0.0.1:$RP" || { cat "$dir/redis.log"; finish; }

# The settings go where the package reads them: its conffile (purge removes
# it even though it is modified). Written in place, so owner and mode stay.
cat >/etc/devlock/devlockd.env <<EOF
# written by tests/package/run.sh
COORDINATION_HOST=127.0.0.1
COORDINATION_PORT=$DP
COORDINATION_REDIS_URL=redis://127.0.0.1:$RP/0
COORDINATION_LOG_LEVEL=INFO
COORDINATION_LOG_FORMAT=text
EOF

# unit_value KEY: the last KEY= line of the installed unit's [Service] section
unit_value() { sed -n '/^\[Service\]/,/^\[/p' "$UNIT" | sed -n "s/^$1=//p" | tail -n 1; }
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && [ -d /run/systemd/system ]; then
    use_systemd=1
    systemctl daemon-reload
    systemctl restart devlockd
    check "systemctl restart devlockd (systemd is PID 1)"
else
    # No systemd here: run the unit's own command line the way systemd would:
    # its environment file only (a clean environment), its user and group,
    # its umask and file limit, from /.
    exec_start=$(unit_value ExecStart | sed 's/^[-@:+!]*//')
    env_file=$(unit_value EnvironmentFile)
    env_optional=0
    case $env_file in -*) env_optional=1; env_file=${env_file#-};; esac
    user=$(unit_value User); group=$(unit_value Group)
    umask_value=$(unit_value UMask); nofile=$(unit_value LimitNOFILE)
    [ -n "$exec_start" ] && [ -x "${exec_start%% *}" ] && [ -n "$user" ] &&
        { [ -r "$env_file" ] || [ "$env_optional" = 1 ]; }
    check "the unit names ExecStart=$exec_start, User=$user, EnvironmentFile=$env_file"
    # VARIABLE=value lines as systemd reads them: comments and blank lines
    # skipped, one pair of surrounding quotes removed (no shell expansion)
    set --
    if [ -r "$env_file" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            case $line in ''|'#'*|';'*) continue;; esac
            k=${line%%=*}; v=${line#*=}
            case $v in \"*\") v=${v#\"}; v=${v%\"};; \'*\') v=${v#\'}; v=${v%\'};; esac
            set -- "$@" "$k=$v"
        done <"$env_file"
    fi
    (
        cd / || exit 1
        [ -z "$umask_value" ] || umask "$umask_value"
        [ -z "$nofile" ] || ulimit -n "$nofile" 2>/dev/null
        # shellcheck disable=SC2086
        exec setpriv --reuid="$user" --regid="${group:-$user}" --init-groups --no-new-privs \
            env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" $exec_start
    ) >"$dir/devlockd.log" 2>&1 &
    broker_pid=$!
    set --
    echo "    devlockd pid $broker_pid (as $user, from $UNIT)"
fi
URL=http://127.0.0.1:$DP
ready() { curl -fsS --max-time 2 "$URL/api/health/ready" | grep -q '"status": *"ready"'; }
until_ok 15 ready
check "the installed devlockd answers ready on $URL" || { cat "$dir/devlockd.log" 2>/dev/null; journalctl -u devlockd -n 30 2>/dev/null; finish; }
main_pid=$broker_pid
[ "$use_systemd" = 0 ] || main_pid=$(systemctl show -p MainPID --value devlockd)
[ -n "$main_pid" ] && [ "$(ps -o user= -p "$main_pid")" = devlock ] &&
    [ "$(readlink /proc/"$main_pid"/exe)" = /usr/bin/devlockd ]
check "it is /usr/bin/devlockd running as devlock (pid $main_pid)"

# ---- the README's example against the installed library -------------------------
echo "=== the README's example, installed library"
# "the" example: the first C block of README.md's "Using the library"
sed -n '/^## Using the library/,/^## /p' README.md |
    awk '/^```c$/ { if (!done) on = 1; next } /^```$/ { if (on) { on = 0; done = 1 } next } on' >"$dir/hello_lock.c"
grep -q lc_acquire "$dir/hello_lock.c" &&
    cc -std=c11 -Wall -Wextra -Werror "$dir/hello_lock.c" $(pkg-config --cflags --libs lockclient) -o "$dir/hello_lock" 2>"$dir/cc.log"
check "README's hello_lock.c compiles with cc \$(pkg-config --cflags --libs lockclient)" || cat "$dir/cc.log"
# (ldd may name it through /lib, a link to /usr/lib on a merged-/usr system)
so=$(ldd "$dir/hello_lock" 2>/dev/null | sed -n 's/^[[:space:]]*liblockclient\.so\.1 => \([^ ]*\) .*/\1/p')
[ -n "$so" ] && [ "$(readlink -f "$so")" = "$(readlink -f "/usr/lib/$MA/liblockclient.so.1")" ]
check "it links the installed /usr/lib/$MA/liblockclient.so.1"
DEVLOCK_URL=$URL expect_rc 0 "hello_lock runs against the installed devlockd" "$dir/hello_lock"
grep -q '^fence [0-9][0-9]*$' "$dir/out"
check "it prints the fence"
ex=/usr/share/doc/liblockclient-dev/examples/acquire_release.c
cc -std=c11 -Wall -Wextra -Werror "$ex" $(pkg-config --cflags --libs lockclient) -o "$dir/acquire_release" 2>"$dir/cc.log"
check "the installed example acquire_release.c compiles" || cat "$dir/cc.log"
DEVLOCK_URL=$URL expect_rc 0 "acquire_release runs" "$dir/acquire_release" pkg-example
grep -q '^released pkg-example$' "$dir/out"
check "acquire_release held and released pkg-example"

# ---- /usr/bin/lockctl ---------------------------------------------------------------
echo "=== installed lockctl"
L="/usr/bin/lockctl --url $URL"
expect_rc 0 "lockctl health" $L health
expect_rc 0 "lockctl acquire pkg-dev1" $L --json acquire --timeout 60 --reason package-test pkg-dev1
key=$(jq -r .lock_key "$dir/out" 2>/dev/null)
[ -n "$key" ] && [ "$key" != null ]
check "acquire prints the lock key"
expect_rc 0 "lockctl status pkg-dev1" $L --json status pkg-dev1
[ "$(jq -r .locked "$dir/out" 2>/dev/null)" = true ]
check "status shows pkg-dev1 held"
expect_rc 4 "a second acquire of pkg-dev1 is busy (exit 4)" $L acquire --timeout 60 pkg-dev1
expect_rc 0 "lockctl release pkg-dev1 --key" $L release pkg-dev1 --key "$key"
$L --json status pkg-dev1 >"$dir/out" 2>&1 && [ "$(jq -r .locked "$dir/out")" = false ]
check "status shows pkg-dev1 free after the release"
expect_rc 0 "lockctl run pkg-dev2 -- true" $L run --timeout 10 pkg-dev2 -- true
# the lock is held while the command runs, and the command's status comes back
expect_rc 7 "lockctl run passes the command's status through (7)" \
    $L run --timeout 10 pkg-dev2 -- sh -c "$L --json status pkg-dev2 > $dir/inner; exit 7"
[ "$(jq -r .locked "$dir/inner" 2>/dev/null)" = true ]
check "pkg-dev2 is held while the command runs"
$L --json status pkg-dev2 >"$dir/out" 2>&1 && [ "$(jq -r .locked "$dir/out")" = false ]
check "and released when it ends"

# ---- signals, stop ----------------------------------------------------------------
echo "=== reload, stop"
if [ "$use_systemd" = 1 ]; then systemctl reload devlockd; else kill -HUP "$broker_pid"; fi
until_ok 5 ready && broker_alive
check "after SIGHUP (reload) the broker still runs and answers ready"
if [ "$use_systemd" = 1 ]; then
    systemctl stop devlockd
    check "systemctl stop devlockd"
    ! systemctl is-active --quiet devlockd
    check "the service is inactive"
else
    kill -TERM "$broker_pid"
    until_ok 10 sh -c "! kill -0 $broker_pid 2>/dev/null"
    check "SIGTERM stops devlockd within 10 s"
    wait "$broker_pid"
    rc=$?
    broker_pid=""
    [ "$rc" = 0 ]
    check "devlockd exits 0 after SIGTERM (exit $rc)"
fi
! curl -fsS --max-time 2 "$URL/api/health/live" >/dev/null 2>&1
check "nothing answers on $URL any more"

# ---- purge --------------------------------------------------------------------------
echo "=== purge"
dpkg --purge $PKGS >"$dir/purge.log" 2>&1
check "dpkg --purge the four packages" || cat "$dir/purge.log"
[ -z "$(installed_pkgs)" ] && ! dpkg-query -W -f='${db:Status-Abbrev}\n' $PKGS 2>/dev/null | grep -qv '^un\|^pn'
check "none of them is installed or half-removed (config-files) any more"
left=""
for p in $PKGS; do
    while IFS= read -r f; do
        [ -d "$f" ] && continue     # shared directories (/usr, /etc, /lib -> usr/lib, ...) stay
        { [ -e "$f" ] || [ -L "$f" ]; } && left="$left $f"
    done <"$dir/files.$p"
done
for f in /etc/devlock /etc/systemd/system/multi-user.target.wants/devlockd.service \
         /var/lib/systemd/deb-systemd-helper-enabled/devlockd.service.dsh-also; do
    { [ -e "$f" ] || [ -L "$f" ]; } && left="$left $f"
done
[ -z "$left" ]
check "purge leaves none of their files, /etc/devlock or the unit's enablement behind${left:+ (left:$left)}"
# Debian keeps system users on purge (files with their uid may remain; a new
# account must not inherit them): documented in debian/devlockd.postrm.
getent passwd devlock >/dev/null
check "the system user devlock stays after purge (Debian convention)"
installed=0

finish
