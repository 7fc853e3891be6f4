#!/bin/sh
# Installs what is missing, builds, and runs every test: the unit and
# integration suites (each starting its own redis-server), then the same
# suites under AddressSanitizer + UndefinedBehaviorSanitizer, then a bounded
# libFuzzer run of every fuzz target on its committed corpus.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/install-deps.sh build runtime server test
jobs=$(nproc)

# Every build here is -Werror (NOTIFY_WERROR=ON; off by default for users).
echo "== build and test (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOTIFY_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== build and test under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON -DNOTIFY_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$jobs")

# Some warnings (format truncation) appear only at other optimisation
# levels: the remaining build types are built, not tested.
for type in Release MinSizeRel; do
    echo "== build ($type)"
    cmake -S . -B "build-$type" -DCMAKE_BUILD_TYPE="$type" -DNOTIFY_WERROR=ON >/dev/null
    cmake --build "build-$type" -j"$jobs"
done

if [ -x tests/fuzz/run.sh ]; then
    echo "== fuzz targets (bounded runs on the committed corpus)"
    tests/fuzz/run.sh
fi
echo "== all tests passed"
