# tests/client/t_run.sh - `lockctl run` (process group, signals, kill-after,
# exit codes), lockctl's global options, and its bash completion. Sourced by
# tests/client/run.sh with the servers running (see the helpers there).
#
# The child scripts record what happened to them in files under $dir/r.*:
# their pid and process group, a CLOCK_REALTIME timestamp (date +%s%N) when
# a signal reaches them. Every wait is a poll with a deadline.

UB="http://127.0.0.1:$PB"
RL="$ROOT/$L"
now_ns() { date +%s%N; }
rfc_ns() { date -d "$1" +%s%N; }
# group_gone PGID: no process of the group is left (zombies count as gone)
group_gone() {
    [ -z "$(ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/')" ]
}
# the child of most tests: records pid/pgid, starts a grandchild in the same
# group (sleep 30 &), waits; on SIGTERM writes the time and exits 143
cat >"$dir/r.child.sh" <<'EOF'
d=$1
trap 'now=$(date +%s%N); echo "$now" >"$d/r.term"; exit 143' TERM
echo "$$ $(ps -o pgid= -p $$ | tr -d ' ')" >"$d/r.ids.tmp"
sleep 30 &
echo $! >"$d/r.grandchild"
mv "$d/r.ids.tmp" "$d/r.ids"
wait
exit 0
EOF
# run_bg NAME LOCKCTL-ARGS...: lockctl in the background; $dir/r.NAME.rc and
# r.NAME.end (realtime ns) are written when it exits, stderr in r.NAME.err
run_bg() {
    name=$1; shift
    rm -f "$dir/r.$name.rc" "$dir/r.$name.end"
    ( "$RL" "$@" 2>"$dir/r.$name.err"; echo $? >"$dir/r.$name.rc.tmp"; now_ns >"$dir/r.$name.end"
      mv "$dir/r.$name.rc.tmp" "$dir/r.$name.rc" ) &
}
reset_child() { rm -f "$dir/r.ids" "$dir/r.term" "$dir/r.grandchild" "$dir/r.sig"; }
# after a failed test: leave nothing running
kill_child_group() {
    [ -s "$dir/r.ids" ] && kill -KILL -- "-$(cut -d' ' -f2 "$dir/r.ids")" 2>/dev/null
    return 0
}

# ---- (a) THE ACCEPTANCE TEST: broker cut under run --timeout 3 -------------------
# lockctl holds rdev-a through broker A; A is SIGSTOPped after the first renew.
# The library must declare the lock lost before its lease can end on the
# server (self-fencing), lockctl must signal the whole group, and a client
# polling through broker B must get the device only after the group is dead.
reset_child
run_bg a --url "$U" run --timeout 3 rdev-a -- sh "$dir/r.child.sh" "$dir"
until_ok 10 test -s "$dir/r.ids"
check "run (a): the child started"
PGID_A=$(cut -d' ' -f2 "$dir/r.ids"); CHILD_A=$(cut -d' ' -f1 "$dir/r.ids"); GC_A=$(cat "$dir/r.grandchild")
[ "$PGID_A" = "$CHILD_A" ] && [ "$(ps -o pgid= -p "$GC_A" | tr -d ' ')" = "$PGID_A" ] &&
    [ "$(ps -o pgid= -p $$ | tr -d ' ')" != "$PGID_A" ]
check "run: CMD leads its own process group, its grandchild is in it"
first=$("$RL" --url "$UB" status --json rdev-a | jq -r .lock.expires_at)
renewed() { e=$("$RL" --url "$UB" status --json rdev-a | jq -r .lock.expires_at); [ "$e" != "$first" ]; }
until_ok 5 renewed
check "run (a): the lease was renewed once (about 1 s)"
$CTL pause-a
lease_end=$(rfc_ns "$("$RL" --url "$UB" status --json rdev-a | jq -r .lock.expires_at)")
# client B queues for the device (the broker grants it the moment it is
# free, at most 20 s) and records when it got it
rm -f "$dir/r.b.grant"
( if "$RL" --url "$UB" --user second acquire --json --timeout 30 --wait 20 rdev-a >"$dir/r.b.out" 2>/dev/null; then
      t=$(now_ns); alive=1; group_gone "$PGID_A" && alive=0
      echo "$t $alive" >"$dir/r.b.grant"
  fi ) &
bpoll=$!
until_ok 15 test -s "$dir/r.a.rc"
check "run (a): lockctl ended while broker A was stopped (self-fencing)"
until_ok 25 sh -c "! kill -0 $bpoll 2>/dev/null"
$CTL cont-a
until_ok 15 test -s "$dir/r.a.rc"
rc_a=$(cat "$dir/r.a.rc" 2>/dev/null)
[ "$rc_a" = 120 ]
check "run (a): exit 120, lock lost (got ${rc_a:-none})" || sed 's/^/    /' "$dir/r.a.err"
grep -q "lock on rdev-a lost: .*; sent SIGTERM to process group $PGID_A" "$dir/r.a.err"
check "run (a): one line says the lock was lost and the group was signalled"
group_gone "$PGID_A" && ! kill -0 "$GC_A" 2>/dev/null
check "run (a): the whole process group (child and grandchild) is gone"
t_term=$(cat "$dir/r.term" 2>/dev/null || echo 0)
[ "$t_term" -gt 0 ] && [ "$t_term" -lt "$lease_end" ]
check "run (a): the group was signalled before the lease could end on the server ($(( (lease_end - t_term) / 1000000 )) ms before)"
b_acq=$(jq -r .lock.acquired_at "$dir/r.b.out" 2>/dev/null)
b_ns=$( [ -n "$b_acq" ] && [ "$b_acq" != null ] && rfc_ns "$b_acq" || echo 0)
a_end=$(cat "$dir/r.a.end" 2>/dev/null || echo 0)
[ -s "$dir/r.b.grant" ] && [ "$(cut -d' ' -f2 "$dir/r.b.grant")" = 0 ] && [ "$b_ns" -gt "$a_end" ] && [ "$a_end" -gt 0 ]
check "run (a): broker B granted the device only after the group was dead (grant $(( (b_ns - a_end) / 1000000 )) ms after lockctl's end)"
kill_child_group
"$RL" --url "$UB" force-release rdev-a >/dev/null 2>&1
until_ok 10 curl -sf -o /dev/null "$U/api/health/ready"

# ---- (b) --timeout none and an admin force-release --------------------------------
reset_child
run_bg b --url "$U" run --timeout none rdev-b -- sh "$dir/r.child.sh" "$dir"
until_ok 10 test -s "$dir/r.ids"
PGID_B=$(cut -d' ' -f2 "$dir/r.ids"); GC_B=$(cat "$dir/r.grandchild")
[ "$("$RL" status --json rdev-b | jq -r .lock.expires_at)" = null ]
check "run (b): the lock has no expiry"
"$RL" --url "$UC" --token s3cret-alice force-release --reason t_run rdev-b >/dev/null
check "run (b): admin force-release through the auth broker"
until_ok 10 test -s "$dir/r.b.rc"
[ "$(cat "$dir/r.b.rc" 2>/dev/null)" = 120 ] && test -s "$dir/r.term"
check "run (b): --timeout none, force-released: the group got SIGTERM, exit 120" || sed 's/^/    /' "$dir/r.b.err"
group_gone "$PGID_B" && ! kill -0 "$GC_B" 2>/dev/null
check "run (b): the whole process group is gone"
kill_child_group

# ---- (c) a group that ignores SIGTERM gets SIGKILL after --kill-after -------------
reset_child
cat >"$dir/r.stubborn.sh" <<'EOF'
d=$1
trap '' TERM
echo "$$ $$" >"$d/r.ids"
deadline=$(( $(date +%s) + 30 )); while [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
EOF
run_bg c --url "$U" run --timeout 3 --kill-after 1 rdev-c -- sh "$dir/r.stubborn.sh" "$dir"
until_ok 10 test -s "$dir/r.ids"
PGID_C=$(cut -d' ' -f2 "$dir/r.ids")
t0=$(now_ns)
"$RL" force-release rdev-c >/dev/null
until_ok 10 test -s "$dir/r.c.rc"
t1=$(cat "$dir/r.c.end" 2>/dev/null || echo 0)
[ "$(cat "$dir/r.c.rc" 2>/dev/null)" = 120 ] && grep -q "sent SIGKILL" "$dir/r.c.err" &&
    grep -q "killed by signal 9" "$dir/r.c.err"
check "run (c): SIGTERM ignored, SIGKILL after --kill-after 1, exit 120" || sed 's/^/    /' "$dir/r.c.err"
[ $(( (t1 - t0) / 1000000 )) -ge 1000 ] && [ $(( (t1 - t0) / 1000000 )) -lt 4500 ]
check "run (c): the SIGKILL came after 1 s, not the default 5 s ($(( (t1 - t0) / 1000000 )) ms)"
group_gone "$PGID_C"
check "run (c): the group is gone"
kill_child_group

# ---- (d) exit codes --------------------------------------------------------------
expect_rc 7 "run: CMD's exit 7 passes through" "$RL" run rdev-d -- sh -c 'exit 7'
expect_rc 137 "run: CMD killed by SIGKILL gives 137" "$RL" run rdev-d -- sh -c 'kill -KILL $$'
expect_rc 127 "run: a missing command gives 127" "$RL" run rdev-d -- "$dir/no-such-command"
grep -q "No such file" "$dir/err"
check "run: 127 says why"
printf 'echo hi\n' >"$dir/r.noexec"; chmod 644 "$dir/r.noexec"
expect_rc 126 "run: a file that is not executable gives 126" "$RL" run rdev-d -- "$dir/r.noexec"
[ "$("$RL" status --json rdev-d | jq -r .locked)" = false ]
check "run: released after 7, 137, 127 and 126"
"$RL" --user boss acquire --type MAINTENANCE --timeout 60 rdev-d2 >/dev/null
expect_rc 123 "run: held by a higher priority gives 123" "$RL" run rdev-d2 -- sh -c "touch $dir/r.ran"
[ ! -e "$dir/r.ran" ]
check "run: CMD not started when busy"
expect_rc 123 "run --wait: the wait runs out, 123" "$RL" run --wait 0.5 rdev-d2 -- true
"$RL" force-release rdev-d2 >/dev/null
expect_rc 124 "run: broker unreachable gives 124" "$RL" --url "$DEAD" run rdev-d -- true
expect_rc 125 "run: unauthorized gives 125" "$RL" --url "$UC" run rdev-d -- true
expect_rc 125 "run: an invalid device name gives 125" "$RL" run 'bad name!' -- true
expect_rc 122 "run: no -- gives 122" "$RL" run rdev-d true
expect_rc 122 "run: no command after -- gives 122" "$RL" run rdev-d --
expect_rc 122 "run: a bad option gives 122" "$RL" run --kill-after soon rdev-d -- true
expect_rc 122 "run: a bad global option gives 122" "$RL" --call-timeout x run rdev-d -- true
expect_rc 122 "run: a bad URL gives 122" "$RL" --url ftp://x run rdev-d -- true

# ---- (e) the release fails: 121 -----------------------------------------------------
# CMD itself stops broker A (SIGSTOP), so lockctl's release times out.
expect_rc 121 "run: release failed gives 121" "$RL" --url "$U" --call-timeout 500 run rdev-e -- \
    sh -c "kill -STOP \$(cat $dir/a.pid)"
grep -q "release" "$dir/err"
check "run: 121 says the release failed"
$CTL cont-a
until_ok 10 curl -sf -o /dev/null "$U/api/health/ready"
"$RL" force-release rdev-e >/dev/null 2>&1

# ---- (f) signals by name, global options, --type, --version -----------------------
reset_child
cat >"$dir/r.usr1.sh" <<'EOF'
d=$1
trap 'echo USR1 >"$d/r.sig"; exit 0' USR1
echo "$$ $$" >"$d/r.ids"
deadline=$(( $(date +%s) + 30 )); while [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
EOF
run_bg f --url="$U" run --signal usr1 --timeout 3 rdev-f -- sh "$dir/r.usr1.sh" "$dir"
until_ok 10 test -s "$dir/r.ids"
"$RL" force-release rdev-f >/dev/null
until_ok 10 test -s "$dir/r.f.rc"
[ "$(cat "$dir/r.f.rc" 2>/dev/null)" = 120 ] && [ "$(cat "$dir/r.sig" 2>/dev/null)" = USR1 ] &&
    grep -q "sent SIGUSR1" "$dir/r.f.err"
check "run --signal usr1: the group got SIGUSR1, exit 120 although CMD exited 0" || sed 's/^/    /' "$dir/r.f.err"
kill_child_group
for s in TERM SIGTERM sigint HUP 10 KILL; do
    "$RL" run --signal "$s" rdev-f -- true >/dev/null 2>&1
    check "run --signal $s is accepted"
done
expect_rc 122 "run --signal NOPE" "$RL" run --signal NOPE rdev-f -- true
expect_rc 122 "run --signal 0" "$RL" run --signal 0 rdev-f -- true
expect_rc 0 "global options before the command: --url=URL --call-timeout 2000" \
    "$RL" --url="$U" --call-timeout 2000 status
expect_rc 3 "global --url=DEAD before the command is used" env -u DEVLOCK_URL "$RL" --url="$DEAD" --call-timeout=1000 status
expect_rc 0 "global --token=T and --url URL before the command" "$RL" --url "$UC" --token=s3cret-alice status
expect_rc 0 "global --json --user before the command" "$RL" --json --user dora acquire --timeout 30 rdev-g
[ "$(jq -r .lock.user_id "$dir/out")" = dora ]
check "global --user applies"
"$RL" force-release rdev-g >/dev/null
expect_rc 2 "an unknown global option" "$RL" --frob status
expect_rc 0 "--type in lower case" "$RL" acquire --json --type queue_executing --timeout 30 rdev-t
[ "$(jq -r .lock.lock_type "$dir/out")" = QUEUE_EXECUTING ]
check "--type queue_executing acquires QUEUE_EXECUTING"
"$RL" force-release rdev-t >/dev/null
expect_rc 0 "--type Maintenance (mixed case)" "$RL" acquire --type Maintenance --timeout 30 rdev-t
"$RL" force-release rdev-t >/dev/null
expect_rc 0 "--version" "$RL" --version
grep -q "^lockctl 1\.[0-9]*\.[0-9]" "$dir/out" && grep -q "^liblockclient [0-9]*\.[0-9]*\.[0-9]" "$dir/out"
check "--version prints lockctl's and the library's versions"
expect_rc 0 "run --help" "$RL" run --help
grep -q -- "--kill-after" "$dir/out" && grep -q -- "--preempt-signal" "$dir/out" && grep -q "120" "$dir/out" &&
    grep -q -- "--cacert" "$dir/out"
check "run --help shows --kill-after, --preempt-signal, the codes, the TLS options"

# ---- preemption warning: --preempt-signal ------------------------------------------
# Broker E (--preempt-grace 6, same Redis) lets a QUEUE_EXECUTING request wait
# for a MANUAL_OPERATOR holder; lockctl's keepalive sees preempt_requested,
# says so, and sends --preempt-signal, on which CMD stops in time (exit 0).
free_port_e=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$B/devlockd" --host 127.0.0.1 --port "$free_port_e" --redis-url "redis://127.0.0.1:$(cat "$dir/redis.port")" \
    --preempt-grace 6 >>"$dir/e.log" 2>&1 &
echo $! >"$dir/e.pid"
UE="http://127.0.0.1:$free_port_e"
until_ok 10 curl -sf -o /dev/null "$UE/api/health/ready"
check "broker E (--preempt-grace 6) started"
reset_child
run_bg p --url "$U" run --preempt-signal USR1 --timeout 6 rdev-p -- sh "$dir/r.usr1.sh" "$dir"
until_ok 10 test -s "$dir/r.ids"
curl -s -m 20 -XPOST "$UE/api/lock/request" -H 'content-type: application/json' \
    -d '{"device_name":"rdev-p","lock_type":"QUEUE_EXECUTING","user_id":"planner","timeout":30,"wait":15}' \
    >"$dir/r.p.grant" &
ppid_e=$!
until_ok 10 test -s "$dir/r.p.rc"
[ "$(cat "$dir/r.p.rc" 2>/dev/null)" = 0 ] && [ "$(cat "$dir/r.sig" 2>/dev/null)" = USR1 ] &&
    grep -q "preemption of rdev-p requested" "$dir/r.p.err" && grep -q "sent SIGUSR1" "$dir/r.p.err"
check "run --preempt-signal USR1: warned on stderr, CMD stopped at the signal, released, exit 0" ||
    sed 's/^/    /' "$dir/r.p.err"
until_ok 20 sh -c "! kill -0 $ppid_e 2>/dev/null"
[ "$(jq -r .success "$dir/r.p.grant" 2>/dev/null)" = true ]
check "the preempting request got the device"
kill_child_group
"$RL" force-release rdev-p >/dev/null 2>&1

# ---- bash completion --------------------------------------------------------------
# complete_words WORDS...: what _lockctl offers for the last word
complete_words() {
    bash -c '. client/cli/lockctl.bash; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ));
             _lockctl; printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
[ "$(complete_words lockctl ru)" = run ] && complete_words lockctl "" | grep -qx force-release
check "completion: commands"
complete_words lockctl run --ki | grep -qx -- --kill-after && complete_words lockctl --ca | grep -qx -- --cacert
check "completion: options (of run, and global)"
[ "$(complete_words lockctl acquire --type queue_e)" = QUEUE_EXECUTING ] &&
    [ "$(complete_words lockctl acquire --type M | sort | tr '\n' ' ')" = "MAINTENANCE MANUAL_OPERATOR " ]
check "completion: --type values"
complete_words lockctl run --signal T | grep -qx TERM && complete_words lockctl run --preempt-signal US | grep -qx USR1
check "completion: --signal names"
complete_words lockctl run dev -- ech | grep -qx echo
check "completion: after -- it completes commands"
