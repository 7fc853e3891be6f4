#!/bin/bash
# Profiles the gateway under one bench scenario with perf:
#   bench/profile.sh SCENARIO [bench flags...]
#   e.g. bench/profile.sh connect-storm --conns 15000
#        bench/profile.sh unicast --conns 15000 --rate 10000 --duration 8
# Starts a private Redis and a gateway (JWT, presence, heartbeats), records
# `perf record -g` on the gateway for the whole bench run and prints the top
# of `perf report --no-children` (self time) and of the call graph.
# Output files: bench/results/profile-SCENARIO.{txt,perf.data}
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scen=${1:?scenario}
shift
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1
tmp=$(mktemp -d /tmp/notify-prof.XXXXXX)
freeport() { echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000)); }
RPORT=$(freeport)
SPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/redis.log" &
rpid=$!
sleep 0.5
"$BUILD/gateway/notify-gateway" --listen "127.0.0.1:$SPORT" --redis "redis://127.0.0.1:$RPORT/0" \
    --auth jwt --jwt-secret "$SECRET" --log-level warn --drain-seconds 1 2>"$tmp/gw.log" &
gpid=$!
trap 'kill $ppid $gpid $rpid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5
perf record -g -o "$OUT/profile-$scen.perf.data" -p "$gpid" 2>/dev/null &
ppid=$!
sleep 0.5
"$BUILD/tools/bench" "$scen" --url "127.0.0.1:$SPORT" --redis "127.0.0.1:$RPORT" --auth jwt \
    --jwt-secret "$SECRET" --server-pid "$gpid" --label gateway "$@" >"$OUT/profile-$scen.bench.txt"
kill -INT "$ppid"
wait "$ppid"
{
    echo "# self time"
    perf report -i "$OUT/profile-$scen.perf.data" --no-children --stdio --percent-limit 1.5 \
        -g none 2>/dev/null | grep -v '^$'
    echo "# inclusive (children)"
    perf report -i "$OUT/profile-$scen.perf.data" --children --stdio --percent-limit 4 \
        -g none 2>/dev/null | grep -v '^$' | head -60
} >"$OUT/profile-$scen.txt"
cat "$OUT/profile-$scen.txt"
