#!/bin/sh
# replay.sh - builds the fuzz targets (clang, ASan + UBSan) and runs every
# input of their seed corpora (tests/fuzz/corpus/<target>/) once, so a crash
# found once stays fixed. Last line: "N passed, M failed" (one per target).
set -u
cd "$(dirname "$0")/../.."
if ! make -s B=build/fuzz CC=clang WERROR=0 CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" fuzz-targets >build/fuzz-build.log 2>&1; then
    tail -n 30 build/fuzz-build.log
    echo "0 passed, 1 failed"
    exit 1
fi
pass=0; fail=0
for bin in build/fuzz/fuzzers/fuzz_*; do
    case $bin in *.d) continue ;; esac
    name=${bin##*/fuzz_}
    dir=tests/fuzz/corpus/$name
    [ -d "$dir" ] || { echo "FAIL - $name: no corpus in $dir"; fail=$((fail + 1)); continue; }
    n=$(find "$dir" -type f | wc -l)
    if find "$dir" -type f -print0 | xargs -0 "$bin" -runs=1 >"build/fuzz-$name.log" 2>&1; then
        echo "ok - $name ($n inputs)"; pass=$((pass + 1))
    else
        echo "FAIL - $name"; tail -n 30 "build/fuzz-$name.log"; fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
