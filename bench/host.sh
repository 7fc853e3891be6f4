#!/bin/bash
# Host scale: 100,000 idle connections over six processes sharing one port
# with --reuse-port (each under the 20,000 open-files limit), one private
# Redis per run; the bench holds the connections from six worker processes
# and measures the six servers together. Each round runs six gateways (JWT,
# presence ttl 30, heartbeats) and six reference forwarders
# (../shared/reference/forwarder.c, SO_REUSEPORT too) under the same load,
# the order alternating per round, and the summary gives the medians.
#
#   bench/host.sh                       heartbeats every 10 s, one round
#   HB=30 TIMEOUT=60 ROUNDS=3 bench/host.sh
#   GW_FLAGS="--input-batch-ms 0" ...   more gateway flags (in the file names)
#   TARGETS=gateway ...                 the gateways only
#   N=1000000 PROCS=55 HB=60 TIMEOUT=120 PRESENCE_TTL=120 DURATION=300 \
#       TARGETS=gateway bench/host.sh   a million (BENCHMARKS.md)
#
# Each run also records the kernel's socket memory (/proc/net/sockstat:
# TCP "mem" is in pages) before and after, and Redis's CPU, key count and
# memory, since at host scale they matter as much as the gateways' RSS.
#
# Raw output: bench/results-host/idle-<N>-hb<HB>[-flags].<target>.r<k>.txt,
# summary in the same directory, idle-<N>-hb<HB>[-flags].summary.txt.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. bench/lib.sh
N=${N:-100000}
PROCS=${PROCS:-6}
HB=${HB:-10}
TIMEOUT=${TIMEOUT:-20}
PRESENCE_TTL=${PRESENCE_TTL:-30}
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-1}
TARGETS=${TARGETS:-gateway forwarder}
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results-host}
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
bench_build

tmp=$(mktemp -d /tmp/notify-host.XXXXXX)
pids=()
stop_all() { # waits for these only: a bare wait would also wait for the summary's tee
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null
        wait "${pids[@]}" 2>/dev/null
    fi
    pids=()
}
trap 'stop_all; rm -rf "$tmp"' EXIT
tag=$(flags_tag "${GW_FLAGS:-}")
base="$OUT/idle-$N-hb$HB${tag:+-$tag}"

run_one() { # target round
    local target=$1 k=$2 rport sport out
    rport=$(freeport)
    bench_redis "$rport"
    pids+=("$REDIS_PID")
    sport=$(freeport)
    local spids=() targs flags
    for i in $(seq "$PROCS"); do
        if [ "$target" = gateway ]; then
            "$BUILD/gateway/notify-gateway" --listen "127.0.0.1:$sport" --reuse-port \
                --redis "redis://127.0.0.1:$rport/0" --node-id "host-$i" --auth jwt \
                --jwt-secret "$SECRET" --presence-ttl "$PRESENCE_TTL" --heartbeat-timeout "$TIMEOUT" \
                --max-connections 19900 --log-level warn --drain-seconds 1 ${GW_FLAGS:-} \
                2>"$tmp/gw-$i.log" &
        else
            "$BUILD/forwarder" -p "$sport" -r "127.0.0.1:$rport" -c >/dev/null 2>&1 &
        fi
        pids+=($!)
        spids+=(--server-pid $!)
    done
    if [ "$target" = gateway ]; then
        targs=(--auth jwt --jwt-secret "$SECRET")
        flags="--reuse-port --auth jwt --presence-ttl $PRESENCE_TTL --heartbeat-timeout $TIMEOUT --max-connections 19900 ${GW_FLAGS:-}"
    else
        targs=(--auth none --ready-on-upgrade)
        flags="-c (SO_REUSEPORT)"
    fi
    sleep 1
    out="$base.$target.r$k.txt"
    {
        echo "git=$(git describe --always --dirty)"
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        sockstat before
        redis_info "$rport" before
        echo "server_flags=$flags (x$PROCS)"
        "$BUILD/tools/bench" idle --url "127.0.0.1:$sport" --redis "127.0.0.1:$rport" "${targs[@]}" \
            --conns "$N" --procs "$PROCS" --heartbeat "$HB" --duration "$DURATION" \
            --inflight 500 --connect-timeout "${CONNECT_TIMEOUT:-60}" "${spids[@]}" --label "$PROCS-${target}s"
        echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
        sockstat after
        redis_info "$rport" after
        if [ "$target" = gateway ]; then
            for i in $(seq "$PROCS"); do echo "gateway_$i=$(grep -c . "$tmp/gw-$i.log") log lines"; done
        fi
    } >"$out"
    stop_all
    sleep 2
}


for k in $(seq "$ROUNDS"); do
    # alternate which goes first, so drift favours neither
    order=$TARGETS
    [ $((k % 2)) -eq 0 ] && order=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for target in $order; do run_one "$target" "$k"; done
done

exec > >(tee "$base.summary.txt")
echo "# host.sh: $ROUNDS rounds, $N connections over $PROCS processes, heartbeats every $HB s," \
    "$(git describe --always --dirty), $(date -u '+%Y-%m-%d %H:%M UTC')"
for key in established server_rss_per_conn_kb connect_rate server_cpu_idle_pct; do
    line="$key:"
    for target in $TARGETS; do
        vals=()
        for k in $(seq "$ROUNDS"); do vals+=("$(val "$base.$target.r$k.txt" "$key")"); done
        line="$line $target ${vals[*]} (median $(printf '%s\n' "${vals[@]}" | median))"
    done
    echo "$line"
done
if [ "$TARGETS" = "gateway forwarder" ]; then
    ratios=()
    for k in $(seq "$ROUNDS"); do
        g=$(val "$base.gateway.r$k.txt" server_cpu_idle_pct)
        f=$(val "$base.forwarder.r$k.txt" server_cpu_idle_pct)
        ratios+=("$(awk -v g="$g" -v f="$f" 'BEGIN { if (f > 0) printf "%.2f", g / f; else print "-" }')")
    done
    echo "server_cpu_idle_pct ratio gateway/forwarder: ${ratios[*]} (median $(printf '%s\n' "${ratios[@]}" | median))"
fi
