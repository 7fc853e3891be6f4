#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang in their own build
# directory and runs each one for a bounded number of runs on a copy of its
# committed seed corpus. Exits non-zero if a target fails to build, crashes,
# leaks, trips a sanitizer or breaks one of its own checks.
#
#   tests/fuzz/run.sh                 # all targets, 20000 runs each
#   tests/fuzz/run.sh jsoncheck       # some targets
#   FUZZ_RUNS=1000000 tests/fuzz/run.sh
#
# Environment: FUZZ_BUILD_DIR (default <repo>/build-fuzz), FUZZ_RUNS
# (default 20000), FUZZ_CC (default clang), FUZZ_JOBS (build jobs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
runs=${FUZZ_RUNS:-20000}
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

all_targets=(jsoncheck envelope validate redisurl config streamid auth wsframe httphead resp)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    if [ ! -f "$here/fuzz_$t.c" ] || [ ! -d "$here/corpus/$t" ]; then
        echo "run.sh: unknown target '$t' (have: ${all_targets[*]})" >&2
        exit 2
    fi
done

echo "== configure $build (CC=$cc, FUZZ=ON)"
mkdir -p "$build"
CC=$cc cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DFUZZ=ON -DNOTIFY_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
}

echo "== build ${targets[*]/#/fuzz_}"
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"

work=$(mktemp -d "$build/fuzz-run.XXXXXX")
failed=()
for t in "${targets[@]}"; do
    dir="$work/$t"
    mkdir -p "$dir/corpus"
    cp "$here/corpus/$t/." "$dir/corpus/" -R
    opts=(-runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$dir/")
    # config_parse prints --help and its errors: keep the log readable
    [ "$t" = config ] && opts+=(-close_fd_mask=3)
    echo "== fuzz_$t: $runs runs"
    if (cd "$dir" && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$build/tests/fuzz/fuzz_$t" "${opts[@]}" corpus) >"$dir/log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|Done)' "$dir/log" | sed 's/^/   /' || true
    else
        echo "!! fuzz_$t FAILED; log $dir/log, last lines:" >&2
        tail -n 40 "$dir/log" >&2
        ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null | sed 's/^/   artifact: /' >&2 || true
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (work dir $work)" >&2
    exit 1
fi
rm -rf "$work"
echo "OK: ${targets[*]} ($runs runs each)"
