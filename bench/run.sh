#!/bin/bash
# Runs every benchmark scenario against the gateway (all features on: JWT
# auth, presence, heartbeats) and against the reference forwarder
# (../shared/reference/forwarder.c, compiled into the build dir, never
# committed), one after the other with the same load and the same private
# Redis, then writes BENCHMARKS.md at the repo root.
#
#   bench/run.sh                 everything (about 15 minutes)
#   N=5000 ONLY="idle unicast" bench/run.sh     a subset, smaller
#   NOMD=1 bench/run.sh          keep the raw results only (bench/results/)
#
# Raw key=value output of each run: bench/results/<scenario>.<target>.txt
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-15000}
BUILD=${BUILD:-build-bench}
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
OUT=${OUT:-$here/bench/results}
ONLY=${ONLY:-"idle unicast unicast-max broadcast connect-storm reconnect-storm scaling rates"}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1
cc -O2 -o "$BUILD/forwarder" "$FWD_SRC" -lhiredis -lcrypto || exit 1
{
    echo "git=$(git describe --always --dirty 2>/dev/null)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"
GW=$BUILD/gateway/notify-gateway
FW=$BUILD/forwarder
BENCH=$BUILD/tools/bench

tmp=$(mktemp -d /tmp/notify-bench.XXXXXX)
rpid=""
spid=""
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000)); }

# A private Redis on a random port; the pub/sub output buffer limit is lifted
# so that a saturated subscriber is measured rather than disconnected.
for attempt in 1 2 3 4 5 6; do
    RPORT=$(freeport)
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
        --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/redis.log" &
    rpid=$!
    for i in $(seq 20); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    kill "$rpid" 2>/dev/null
    rpid=""
done
[ -n "$rpid" ] || { echo "run.sh: no redis-server" >&2; exit 1; }
REDIS=127.0.0.1:$RPORT

waitport() {
    for i in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# start_server gateway|forwarder: sets spid, SPORT and the bench arguments.
start_server() {
    SPORT=$(freeport)
    redis-cli -p "$RPORT" flushall >/dev/null
    redis-cli -p "$RPORT" config resetstat >/dev/null
    if [ "$1" = gateway ]; then
        GW_CMD="$GW --listen 127.0.0.1:$SPORT --redis redis://$REDIS/0 --auth jwt --jwt-secret $SECRET --presence-ttl 30 --heartbeat-timeout 20 --log-level warn --drain-seconds 1"
        $GW_CMD 2>"$OUT/$SCEN.gateway.log" &
        spid=$!
        TARGS=(--auth jwt --jwt-secret "$SECRET")
    else
        FW_CMD="$FW -p $SPORT -r $REDIS -c"
        $FW_CMD >"$OUT/$SCEN.forwarder.log" 2>&1 &
        spid=$!
        TARGS=(--auth none --ready-on-upgrade)
    fi
    waitport "$SPORT" || { echo "run.sh: $1 did not listen" >&2; exit 1; }
    sleep 0.3
}

stop_server() {
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=""
    sleep 1 # let TIME_WAIT and the other tenant settle a little
}

# pair NAME SCENARIO ARGS...: the same bench command against both servers.
pair() {
    SCEN=$1
    local scenario=$2
    shift 2
    for target in gateway forwarder; do
        start_server "$target"
        echo "== $SCEN $target" >&2
        cmd=("$BENCH" "$scenario" --url "127.0.0.1:$SPORT" --redis "$REDIS" "${TARGS[@]}"
            --server-pid "$spid" --label "$target" "$@")
        {
            echo "command=${cmd[*]}"
            [ "$target" = gateway ] && echo "server_command=$GW_CMD" || echo "server_command=$FW_CMD"
            "${cmd[@]}"
        } >"$OUT/$SCEN.$target.txt"
        stop_server
    done
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

want idle && pair idle idle --conns "$N" --heartbeat 10 --duration 30
want unicast && pair unicast unicast --conns "$N" --rate 20000 --duration 10
want unicast-max && pair unicast-max unicast-max --conns "$N" --window 4096 --warmup 2 --duration 10
want broadcast && pair broadcast broadcast --conns "$N" --count 10 --burst 1 --interval 1
want broadcast && pair broadcast-burst broadcast --conns "$N" --count 5 --burst 10 --interval 1
want connect-storm && pair connect-storm connect-storm --conns "$N" --inflight 1000
want reconnect-storm && pair reconnect-storm reconnect-storm --conns "$N" --inflight 1000 --cycles 3
if want scaling; then
    for n in 1000 5000 10000; do
        pair "scale-$n" idle --conns "$n" --heartbeat 10 --duration 15
    done
fi
if want rates; then
    for r in 5000 10000 40000; do
        pair "rate-$r" unicast --conns "$N" --rate "$r" --duration 8
    done
fi

echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
[ -n "${NOMD:-}" ] || bench/report.sh "$OUT" >BENCHMARKS.md
echo "results in $OUT" >&2
