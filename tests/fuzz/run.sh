#!/bin/sh
# run.sh SECONDS - fuzzes every target for SECONDS each (make fuzz), starting
# from the seed corpus. New inputs go to build/fuzz/corpus/<target>/ (copy
# the interesting ones into tests/fuzz/corpus/); crashes to build/fuzz/crashes/.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
mkdir -p build/fuzz/crashes
status=0
for bin in build/fuzz/fuzzers/fuzz_*; do
    case $bin in *.d) continue ;; esac
    name=${bin##*/fuzz_}
    mkdir -p "build/fuzz/corpus/$name"
    echo "=== fuzz_$name for ${secs}s"
    "$bin" -max_total_time="$secs" -max_len=65536 -artifact_prefix="build/fuzz/crashes/$name-" \
        "build/fuzz/corpus/$name" "tests/fuzz/corpus/$name" 2>&1 | grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|SUMMARY" | tail -n 3 || true
    ls build/fuzz/crashes/"$name"-* >/dev/null 2>&1 && { echo "fuzz_$name: CRASH, see build/fuzz/crashes/"; status=1; }
done
exit $status
