#!/bin/bash
# Host scale: 100,000 idle connections over six gateway processes sharing
# one port with --reuse-port (each under the 20,000 open-files limit), JWT,
# presence (ttl 30), one private Redis; the bench holds the connections
# from six worker processes and measures the six gateways together.
#
#   bench/host.sh                       heartbeats every 10 s
#   HB=30 TIMEOUT=60 bench/host.sh      heartbeats every 30 s
#
# Raw output: bench/results-host/idle-<N>-hb<HB>.txt
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-100000}
PROCS=${PROCS:-6}
HB=${HB:-10}
TIMEOUT=${TIMEOUT:-20}
DURATION=${DURATION:-30}
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results-host}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1

tmp=$(mktemp -d /tmp/notify-host.XXXXXX)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
freeport() { echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000)); }

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/redis.log" &
pids+=($!)
for i in $(seq 30); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

SPORT=$(freeport)
gw_pids=()
for i in $(seq "$PROCS"); do
    build-bench/gateway/notify-gateway --listen "127.0.0.1:$SPORT" --reuse-port \
        --redis "redis://127.0.0.1:$RPORT/0" --node-id "host-$i" --auth jwt --jwt-secret "$SECRET" \
        --presence-ttl 30 --heartbeat-timeout "$TIMEOUT" --max-connections 19900 \
        --log-level warn --drain-seconds 1 2>"$tmp/gw-$i.log" &
    pids+=($!)
    gw_pids+=(--server-pid $!)
done
sleep 1
out="$OUT/idle-$N-hb$HB.txt"
{
    echo "git=$(git describe --always --dirty)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "gateway_flags=--reuse-port --auth jwt --presence-ttl 30 --heartbeat-timeout $TIMEOUT --max-connections 19900 (x$PROCS)"
    "$BUILD/tools/bench" idle --url "127.0.0.1:$SPORT" --redis "127.0.0.1:$RPORT" --auth jwt \
        --jwt-secret "$SECRET" --conns "$N" --procs "$PROCS" --heartbeat "$HB" \
        --duration "$DURATION" --inflight 500 "${gw_pids[@]}" --label "six-gateways"
    echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out"
for i in $(seq "$PROCS"); do
    echo "gateway_$i=$(grep -c . "$tmp/gw-$i.log") log lines"
done >>"$out"
cat "$out"
