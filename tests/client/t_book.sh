# tests/client/t_book.sh - reservations from the client side: the library's
# calls (tests/client/test_book.c, plain and under ASan+UBSan unless
# NO_ASAN=1), lockctl book / bookings / cancel / move, and the calendar feed
# read by a third-party parser (tests/client/ics_roundtrip.js, ical.js).
# Sourced by run.sh with the servers running; uses its helpers and variables.

# ---- the library ---------------------------------------------------------------
cc -O1 -g $WARN -Iclient/include -Itests -o "$B/tests/client/test_book" tests/client/test_book.c \
    "$B/liblockclient.a" $DEPS_LIBS -pthread
check "test_book builds against liblockclient.a"
run_c "reservations (library)" "$B/tests/client/test_book"
if [ "${NO_ASAN:-0}" != 1 ]; then
    cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
        $WARN -Icommon -Iclient/include -Itests $DEPS_CFLAGS -pthread \
        -o "$B/tests/client/test_book_asan" tests/client/test_book.c client/*.c common/*.c $DEPS_LIBS -lm
    check "test_book builds with the library under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=70 UBSAN_OPTIONS=print_stacktrace=1 \
        run_c "reservations (library) under ASan+UBSan" "$B/tests/client/test_book_asan"
    grep -q "ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer" "$dir/c.out"
    [ $? != 0 ]
    check "ASan+UBSan report nothing for the reservation calls"
fi

# ---- lockctl -------------------------------------------------------------------
BL="$B/lockctl"
tb="tb$$"
NY=$(( $(date -u +%Y) + 1 ))    # next year: in the future, and within the broker's 10 years
for sub in book bookings cancel move; do
    "$BL" "$sub" --help >"$dir/out" 2>&1 && grep -q "usage: lockctl $sub" "$dir/out"
    check "lockctl $sub --help"
done
"$BL" --help >"$dir/out" 2>&1 && grep -q "^  book " "$dir/out" && grep -q "^  bookings " "$dir/out" &&
    grep -q "booking conflict" "$dir/out"
check "--help lists book and bookings, and exit 4 for a booking conflict"
"$BL" book --help >"$dir/out" 2>&1 && grep -q "+30m" "$dir/out" && grep -q "RFC 3339" "$dir/out"
check "book --help documents TIME"
expect_rc 2 "book without --to" "$BL" book "$tb.u1"
expect_rc 2 "book without a device" "$BL" book --to +1h
expect_rc 2 "book with a bad --from" "$BL" book --from tomorrow --to +1h "$tb.u1"
grep -q "not a time" "$dir/err"
check "a bad TIME is said so"
expect_rc 2 "book with a bad relative --to" "$BL" book --to +3x "$tb.u1"
expect_rc 2 "move without --from or --to" "$BL" move r1
expect_rc 2 "cancel without an ID" "$BL" cancel
expect_rc 2 "bookings with two IDs" "$BL" bookings r1 r2

expect_rc 0 "book --json" "$BL" --user tb-alice book --json --type QUEUE_EXECUTING --from +30h --to +32h \
    --reason "ctl, book; test" --plan tb-plan "$tb.m1" "$tb.m2"
ID1=$(jq -r .reservation.id "$dir/out")
[ "$(jq -r .success "$dir/out")" = true ] && case $ID1 in r[0-9]*) true;; *) false;; esac &&
    [ "$(jq -r .reservation.lock_key "$dir/out" | wc -c)" -gt 16 ] &&
    [ "$(jq -r '.reservation.device_names | join(",")' "$dir/out")" = "$tb.m1,$tb.m2" ] &&
    [ "$(jq -r .reservation.lock_type "$dir/out")" = QUEUE_EXECUTING ] &&
    [ "$(jq -r .reservation.reason "$dir/out")" = "ctl, book; test" ] &&
    [ "$(jq -r .reservation.plan_uid "$dir/out")" = tb-plan ] &&
    [ "$(jq -r .reservation.state "$dir/out")" = booked ]
check "book --json: id $ID1, lock_key, devices, type, reason, plan, state booked"
expect_rc 0 "book (text)" "$BL" --user tb-alice book --from $NY-01-01T10:00:00+01:00 --to $NY-01-01T12:00:00Z "$tb.t1"
ID2=$(sed -n 's/^booking //p' "$dir/out")
grep -q "^lock_key ." "$dir/out" && grep -q "^from $NY-01-01T09:00:00Z$" "$dir/out" &&
    grep -q "^to $NY-01-01T12:00:00Z$" "$dir/out" && grep -q "^state booked$" "$dir/out" && [ -n "$ID2" ]
check "book prints the id, the lock_key and the window (an offset time read as UTC)" ||
    sed 's/^/    /' "$dir/out" "$dir/err"
# the window overlaps ID1 on m2 by an hour: equal priority, refused
expect_rc 4 "book of a booked window (conflict)" "$BL" --user tb-bob book --type QUEUE_EXECUTING \
    --from +31h --to +33h "$tb.m2"
grep -q "$ID1" "$dir/err" && grep -q "\[conflict\]" "$dir/err"
check "the conflict names the booking ($ID1) and the code" || sed 's/^/    /' "$dir/err"
expect_rc 4 "book --json of a booked window" "$BL" --user tb-bob --json book --from +31h --to +33h "$tb.m1"
[ "$(jq -r .success "$dir/out")" = false ] && [ "$(jq -r .error "$dir/out")" = conflict ] &&
    [ "$(jq -r .exit_code "$dir/out")" = 4 ] && jq -r .detail "$dir/out" | grep -q "$ID1"
check "conflict --json: success false, error conflict, exit_code 4, the booking named"
# a higher priority bumps: MAINTENANCE over ID1 on m1
expect_rc 0 "book of a higher priority over a lower booking" "$BL" --user tb-boss --json book \
    --type MAINTENANCE --from +29h --to +31h "$tb.m1"
ID3=$(jq -r .reservation.id "$dir/out")
[ "$(jq -r '.bumped | join(",")' "$dir/out")" = "$ID1" ]
check "the new booking ($ID3) bumped $ID1"

expect_rc 0 "bookings (table)" "$BL" bookings --device "$tb.m1"
head -n 1 "$dir/out" | grep -q "^ID *DEVICES *USER *TYPE *START *END *STATE$" &&
    grep "^$ID1 " "$dir/out" | grep -q "$tb.m1,.* tb-alice .*QUEUE_EXECUTING .*bumped$" &&
    grep "^$ID3 " "$dir/out" | grep -q "tb-boss .*MAINTENANCE .*booked$" &&
    [ "$(grep -n "^$ID3 " "$dir/out" | cut -d: -f1)" -lt "$(grep -n "^$ID1 " "$dir/out" | cut -d: -f1)" ]
check "bookings: a table of both, in order of start, with devices, user, type, state" ||
    sed 's/^/    /' "$dir/out"
expect_rc 0 "bookings --json --user" "$BL" bookings --json --user tb-alice
[ "$(jq -r '[.reservations[].id] | sort | join(",")' "$dir/out")" = "$(printf '%s\n' "$ID1" "$ID2" | sort | paste -sd,)" ] &&
    [ "$(jq -r .count "$dir/out")" = 2 ]
check "bookings --json --user tb-alice: her two bookings" || sed 's/^/    /' "$dir/out"
expect_rc 0 "bookings --state" "$BL" bookings --json --device "$tb.m1" --state bumped
[ "$(jq -r '[.reservations[].id] | join(",")' "$dir/out")" = "$ID1" ]
check "bookings --state bumped: only $ID1"
expect_rc 0 "bookings --limit 1 (one page)" "$BL" bookings --json --device "$tb.m1" --limit 1
[ "$(jq -r .count "$dir/out")" = 1 ] && [ "$(jq -r .next_cursor "$dir/out")" != null ]
check "bookings --limit 1: one booking and a next_cursor"
expect_rc 0 "bookings ID" "$BL" bookings --json "$ID2"
[ "$(jq -r .reservation.id "$dir/out")" = "$ID2" ]
check "bookings ID shows that booking"
expect_rc 1 "bookings of an unknown ID (not found)" "$BL" bookings r999999999

# move and cancel
expect_rc 0 "move --to" "$BL" --user tb-alice move --json "$ID2" --to $NY-01-01T13:30:00Z
[ "$(jq -r .reservation.end "$dir/out")" = "$NY-01-01T13:30:00.000000Z" ] &&
    [ "$(jq -r .reservation.sequence "$dir/out")" = 1 ]
check "move: the new end, sequence 1" || sed 's/^/    /' "$dir/out"
expect_rc 0 "book right after it" "$BL" --user tb-alice --json book --from $NY-01-01T14:00:00Z --to $NY-01-01T15:00:00Z "$tb.t1"
ID4=$(jq -r .reservation.id "$dir/out")
expect_rc 4 "move into the next booking (conflict)" "$BL" --user tb-alice move "$ID2" --to $NY-01-01T14:30:00Z
expect_rc 0 "move (text)" "$BL" --user tb-alice move "$ID2" --from $NY-01-01T08:00:00Z --to $NY-01-01T09:00:00Z
grep -q "^moved $ID2: from $NY-01-01T08:00:00Z to $NY-01-01T09:00:00Z$" "$dir/out"
check "move prints the new window" || sed 's/^/    /' "$dir/out"
expect_rc 0 "cancel" "$BL" --user tb-alice cancel "$ID4"
grep -q "^cancelled $ID4" "$dir/out"
check "cancel says so"
expect_rc 0 "cancel again (harmless)" "$BL" --user tb-alice cancel "$ID4"
expect_rc 0 "bookings ID after the cancel" "$BL" bookings --json "$ID4"
[ "$(jq -r .reservation.state "$dir/out")" = cancelled ]
check "the cancelled booking is cancelled"
expect_rc 4 "cancel of a bumped booking (conflict)" "$BL" --user tb-alice cancel "$ID1"
expect_rc 1 "cancel of an unknown ID (not found)" "$BL" cancel r999999999

# a window that starts now: the booking is a lock with its lock_key, until cancelled
expect_rc 0 "book --from now" "$BL" --user tb-now --json book --from now --to +1m "$tb.n1"
ID5=$(jq -r .reservation.id "$dir/out"); KEY5=$(jq -r .reservation.lock_key "$dir/out")
until_ok 5 sh -c "'$BL' status --json '$tb.n1' | jq -e --arg k '$KEY5' '.locked and .lock.lock_key == \$k and .lock.user_id == \"tb-now\"' >/dev/null"
check "at its start the booking is a lock on $tb.n1 with the booking's lock_key"
expect_rc 4 "another user's acquire in the window (busy)" "$BL" --user tb-other acquire "$tb.n1"
grep -q "$ID5" "$dir/err"
check "the denial names the booking" || sed 's/^/    /' "$dir/err"
expect_rc 0 "cancel the active booking" "$BL" --user tb-now cancel "$ID5"
until_ok 5 sh -c "'$BL' status --json '$tb.n1' | jq -e '.locked == false' >/dev/null"
check "cancelling the active booking released its lock"

# completion
complete_b() {
    bash -c '. client/cli/lockctl.bash; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ));
             _lockctl; printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
[ "$(complete_b lockctl bookin)" = bookings ] && complete_b lockctl book dev --f | grep -qx -- --from &&
    [ "$(complete_b lockctl bookings --state booked,act)" = booked,active ]
check "completion: book, bookings, --from, --state lists"

# ---- the calendar feed, read by ical.js -------------------------------------------
echo "=== ics_roundtrip.js"
timeout 60 node tests/client/ics_roundtrip.js "$U" >"$dir/ics.out" 2>&1
rc=$?
sed 's/^/  /' "$dir/ics.out"
line=$(tail -n 1 "$dir/ics.out")
p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
if [ -z "$p" ]; then
    bad "ics_roundtrip.js: no result line (exit $rc)"
else
    pass=$((pass + p)); fail=$((fail + f))
    [ "$rc" = 0 ] || [ "$f" != 0 ] || bad "ics_roundtrip.js: exit $rc"
fi
