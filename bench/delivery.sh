#!/bin/bash
# The cost of acknowledgements (README.md "Acknowledgements and the
# undelivered outbox"), on one private Redis, all in one run:
#
#  1. unicast, steady and max rate, four ways one after the other with the
#     same bench command: the reference forwarder (plain PUBLISH), the
#     gateway with plain PUBLISH, with FCALL notify_publish (history), and
#     with notify_publish ... ack 30 while every client acknowledges every
#     message (bench --ack 30). Redis CPU is INFO cpu over each run.
#  2. the sweep at 100,000 pending deadlines: FCALL notify_sweep with 100,000
#     deadlines not yet due (each sweep finds none due), and 100,000 due at
#     once drained by a gateway into the outbox; then one cluster-enabled
#     Redis owning all 16384 slots, where a sweep walks every slot's key.
#
#   bench/delivery.sh            (about 6 minutes)
#   N=2000 ROUNDS=1 bench/delivery.sh
#
# Raw output: bench/results-delivery/.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-5000}
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-10000}
BUILD=${BUILD:-build-bench}
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
OUT=${OUT:-$here/bench/results-delivery}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/notify-delbench.XXXXXX)
. bench/lib.sh
bench_build
GW=$BUILD/gateway/notify-gateway
FW=$BUILD/forwarder
BENCH=$BUILD/tools/bench
spid=""
REDIS_PID=""
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
{
    echo "git=$(git describe --always --dirty 2>/dev/null)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"

RPORT=$(freeport)
bench_redis "$RPORT"
R="redis-cli -p $RPORT"

redis_cpu() { $R info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'; }
waitport() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# run NAME TARGET SCENARIO ARGS...: one bench run; the result file gets
# redis_cpu_s and redis_cpu_pct appended.
run() {
    local name=$1 target=$2 scenario=$3
    shift 3
    SPORT=$(freeport)
    $R flushall >/dev/null
    if [ "$target" = forwarder ]; then
        $FW -p "$SPORT" -r "127.0.0.1:$RPORT" -c >"$OUT/$name.log" 2>&1 &
        TARGS=(--auth none --ready-on-upgrade)
    else
        $GW --listen "127.0.0.1:$SPORT" --redis "redis://127.0.0.1:$RPORT/0" --auth jwt \
            --jwt-secret "$SECRET" --presence-ttl 30 --heartbeat-timeout 20 --log-level warn \
            --drain-seconds 1 2>"$OUT/$name.log" &
        TARGS=(--auth jwt --jwt-secret "$SECRET")
    fi
    spid=$!
    waitport "$SPORT" || { echo "delivery.sh: $target did not listen" >&2; exit 1; }
    sleep 0.5
    echo "== $name" >&2
    local c0 t0
    {
        cmd=("$BENCH" "$scenario" --url "127.0.0.1:$SPORT" --redis "127.0.0.1:$RPORT" "${TARGS[@]}"
            --server-pid "$spid" --label "$name" "$@")
        echo "command=${cmd[*]}"
        c0=$(redis_cpu)
        t0=$(date +%s.%N)
        "${cmd[@]}"
        c1=$(redis_cpu)
        t1=$(date +%s.%N)
        echo "redis_cpu_s=$(echo "$c1 - $c0" | bc -l)"
        echo "redis_wall_s=$(echo "$t1 - $t0" | bc -l)"
        echo "receipts=$($R xlen notify:receipts)"
    } >"$OUT/$name.txt"
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=""
    sleep 1
}

for round in $(seq "$ROUNDS"); do
    for mode in forwarder publish history ack; do
        case $mode in
        forwarder) args=() ; target=forwarder ;;
        publish) args=() ; target=gateway ;;
        history) args=(--history) ; target=gateway ;;
        ack) args=(--ack 30) ; target=gateway ;;
        esac
        run "steady.$mode.$round" "$target" unicast --conns "$N" --rate "$RATE" --duration 10 "${args[@]}"
        run "max.$mode.$round" "$target" unicast-max --conns "$N" --window 4096 --warmup 2 \
            --duration 10 "${args[@]}"
    done
done

# ---- the sweep at 100,000 deadlines ----
SPORT=$(freeport)
$R flushall >/dev/null
$GW --listen "127.0.0.1:$SPORT" --redis "redis://127.0.0.1:$RPORT/0" --auth none --log-level warn \
    --ack-sweep-ms 60000 2>"$OUT/sweep.log" &
spid=$!
waitport "$SPORT"
sleep 0.5
# 100,000 deadlines an hour ahead, as notify_publish ... ack 3600 leaves them
now=$($R time | head -1)
$R eval "for i = 1, 100000 do redis.call('ZADD', KEYS[1], ARGV[1] + 3600000, 'u' .. i .. '/' .. ARGV[1] .. '-' .. i) end return 1" 1 notify:deadlines "${now}000" >/dev/null
$R config resetstat >/dev/null
for _ in $(seq 1000); do echo "FCALL notify_sweep 0 notify: bench 0 1000"; done | $R >/dev/null
{
    echo "pending=$($R zcard notify:deadlines)"
    $R info commandstats | grep -E '^cmdstat_fcall:'
} >"$OUT/sweep.pending.txt"
kill "$spid"; wait "$spid" 2>/dev/null; spid=""

# the same 100,000 all due: a gateway sweeping every 1000 ms drains them
$R flushall >/dev/null
now=$($R time | head -1)
$R eval "for i = 1, 100000 do redis.call('ZADD', KEYS[1], ARGV[1] - 1000, 'u' .. i .. '/' .. ARGV[1] .. '-' .. i) end return 1" 1 notify:deadlines "${now}000" >/dev/null
$R config resetstat >/dev/null
c0=$(redis_cpu)
t0=$(date +%s.%N)
$GW --listen "127.0.0.1:$SPORT" --redis "redis://127.0.0.1:$RPORT/0" --auth none --log-level warn \
    2>>"$OUT/sweep.log" &
spid=$!
while [ "$($R zcard notify:deadlines)" -gt 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
c1=$(redis_cpu)
{
    echo "drained=$($R xlen notify:undelivered)"
    echo "left=$($R zcard notify:deadlines)"
    echo "wall_s=$(echo "$t1 - $t0" | bc -l)"
    echo "redis_cpu_s=$(echo "$c1 - $c0" | bc -l)"
    $R info commandstats | grep -E '^cmdstat_fcall:'
} >"$OUT/sweep.due.txt"
kill "$spid"; wait "$spid" 2>/dev/null; spid=""

# one cluster-enabled Redis owning every slot: a sweep walks 16384 slots
for attempt in 1 2 3 4 5; do
    CPORT=$(freeport)
    rm -f "$tmp/nodes.conf"
    redis-server --port "$CPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
        --cluster-enabled yes --cluster-config-file "$tmp/nodes.conf" \
        --logfile "$OUT/cluster-redis.log" &
    CPID=$!
    for _ in $(seq 30); do redis-cli -p "$CPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$CPORT" ping >/dev/null 2>&1 && break
    kill "$CPID" 2>/dev/null
done
redis-cli -p "$CPORT" cluster addslotsrange 0 16383 >/dev/null
for _ in $(seq 50); do redis-cli -p "$CPORT" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done
$GW --listen "127.0.0.1:$SPORT" --redis-cluster "127.0.0.1:$CPORT" --auth none --log-level warn \
    --ack-sweep-ms 60000 2>>"$OUT/sweep.log" &
spid=$!
waitport "$SPORT"
sleep 1
redis-cli -p "$CPORT" config resetstat >/dev/null
for _ in $(seq 100); do echo "FCALL notify_sweep 0 notify: bench 0 1000 0 16383"; done | redis-cli -p "$CPORT" >/dev/null
{
    echo "slots=16384"
    redis-cli -p "$CPORT" info commandstats | grep -E '^cmdstat_fcall:'
} >"$OUT/sweep.cluster.txt"
kill "$spid"; wait "$spid" 2>/dev/null; spid=""
kill "$CPID"; wait "$CPID" 2>/dev/null
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
echo "done: $OUT" >&2
