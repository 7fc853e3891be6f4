#!/bin/bash
# The cost of --presence-events on a connect storm and a reconnect storm:
# the reference forwarder, the gateway without and the gateway with the
# flag (default debounce), in the same run, against one private Redis,
# ROUNDS times interleaved. Besides the bench figures it records Redis's
# own work (INFO commandstats and used_cpu over the run) and the events
# written (XLEN), into bench/results-presence-events/.
#
#   bench/presence_events.sh            N=15000 ROUNDS=2
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-15000}
ROUNDS=${ROUNDS:-2}
BUILD=${BUILD:-build-bench}
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
OUT=${OUT:-$here/bench/results-presence-events}
SECRET=bench-secret-0123456789
. bench/lib.sh
mkdir -p "$OUT"
bench_build
GW=$BUILD/gateway/notify-gateway
BENCH=$BUILD/tools/bench
tmp=$(mktemp -d /tmp/notify-pev.XXXXXX)
spid=""
REDIS_PID=""
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
RPORT=$(freeport)
bench_redis "$RPORT"
{
    echo "git=$(git describe --always --dirty 2>/dev/null)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"

rcpu() { redis-cli -p "$RPORT" info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.3f", s}'; }

run() { # target scenario round
    local target=$1 scen=$2 round=$3 sport flags=() extra=()
    sport=$(freeport)
    redis-cli -p "$RPORT" flushall >/dev/null
    redis-cli -p "$RPORT" config resetstat >/dev/null
    case $target in
    forwarder)
        "$BUILD/forwarder" -p "$sport" -r "127.0.0.1:$RPORT" -c 2>/dev/null &
        extra=(--auth none --ready-on-upgrade) ;;
    gateway | gateway-events)
        [ "$target" = gateway-events ] && flags=(--presence-events)
        "$GW" --listen "127.0.0.1:$sport" --redis "redis://127.0.0.1:$RPORT/0" --auth jwt \
            --jwt-secret $SECRET --presence-ttl 30 --heartbeat-timeout 20 --log-level warn \
            --drain-seconds 1 "${flags[@]}" 2>"$OUT/$scen.$target.$round.log" &
        extra=(--auth jwt --jwt-secret $SECRET) ;;
    esac
    spid=$!
    sleep 0.5
    local cpu0 out=$OUT/$scen.$target.$round.txt
    cpu0=$(rcpu)
    if [ "$scen" = connect-storm ]; then
        "$BENCH" connect-storm --url "127.0.0.1:$sport" --redis "127.0.0.1:$RPORT" "${extra[@]}" \
            --server-pid "$spid" --label "$target" --conns "$N" --inflight 1000 >"$out" 2>&1
    else
        "$BENCH" reconnect-storm --url "127.0.0.1:$sport" --redis "127.0.0.1:$RPORT" "${extra[@]}" \
            --server-pid "$spid" --label "$target" --conns "$N" --inflight 1000 --cycles 3 >"$out" 2>&1
    fi
    sleep 3 # debounced offlines of the last cycle are written by now
    echo "redis_cpu_s=$(echo "$(rcpu) $cpu0" | awk '{printf "%.3f", $1 - $2}')" >>"$out"
    echo "events=$(redis-cli -p "$RPORT" xlen notify:presence:events)" >>"$out"
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' | grep '^cmdstat_' |
        sed 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/cmd_\1=\2/' >>"$out"
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=""
}

for round in $(seq "$ROUNDS"); do
    for scen in connect-storm reconnect-storm; do
        for target in forwarder gateway gateway-events; do
            run "$target" "$scen" "$round"
        done
    done
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
find "$OUT" -name '*.log' -empty -delete # the gateways logged nothing at warn
