#!/bin/bash
# A million idle connections on one host (BENCHMARKS.md, "A million"):
# PROCS gateways sharing one port with --reuse-port (each under the 20,000
# open-files limit), one Redis, presence and heartbeats on (clients
# heartbeat every HB s, presence TTL PRESENCE_TTL s), the connections held
# by PROCS bench workers from 200 source addresses in 127.0.0.0/8.
#
# One bench run, on the same connections, in phases (PHASES picks some):
#   idle       held HOLD s: the gateways' RSS and CPU, Redis's presence writes
#   broadcast  BCAST rounds of one broadcast to every connection: lost, p99
#   unicast    RATE/s for UNI s across the million: lost, p99, p99.9
#   rolling    each gateway in turn gets SIGTERM (drains) and is replaced by a
#              new process on the same port; every client the drain closes
#              reconnects (at once, then backing off from 100 ms to 2 s);
#              how long each took to be back, and the fewest ready at once
# Beside them, every 10 s: the gateways' summed RSS, the kernel's TCP
# sockets and their memory (/proc/net/sockstat), Redis's CPU and keys.
#
#   bench/million.sh                  N=1000000 PROCS=80
#   N=200000 PROCS=16 HOLD=60 bench/million.sh
#
# PROCS is more than the 50 that would hold 1M under 20,000 descriptors
# each: a drain's clients go to the other processes, and over a rolling
# restart the processes restarted last have taken a share of every drain
# before theirs (about e = 2.7 times the average by the end). MAXC caps
# each process's connections (503 past it) below the descriptor limit, so
# a full process refuses a client, who tries again elsewhere, instead of
# leaving it in a backlog it cannot accept from.
#
# Raw output in bench/results-million/: <N>.bench.txt (the bench's key=value
# lines), <N>.timeline.txt, <N>.gateways.txt (log lines per process).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. bench/lib.sh
N=${N:-1000000}
PROCS=${PROCS:-80}
MAXC=${MAXC:-18000}
HB=${HB:-60}
PRESENCE_TTL=${PRESENCE_TTL:-120}
HOLD=${HOLD:-300}
BCAST=${BCAST:-3}
RATE=${RATE:-20000}
UNI=${UNI:-10}
PHASES=${PHASES:-idle,broadcast,unicast,rolling} # any of them, comma-joined
DRAIN=${DRAIN:-2}
CONNECT=${CONNECT:-600} # s the connect phase may take
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results-million}
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
bench_build

tmp=$(mktemp -d /tmp/notify-million.XXXXXX)
base="$OUT/$N"
pids=() # the gateways, by index 1..PROCS (index 0 unused)
others=()
stop_all() {
    kill "${pids[@]:1}" "${others[@]}" 2>/dev/null
    wait "${pids[@]:1}" "${others[@]}" 2>/dev/null
}
logs() { # what the gateways logged, kept also when the run is cut short
    for f in "$tmp"/gw-*.log; do echo "$(basename "$f" .log)=$(grep -c . "$f") log lines"; done
    cat "$tmp"/gw-*.log | sed -E 's/^ts=[^ ]+ //; s/=[0-9a-f./-]+/=N/g' | sort | uniq -c | sort -rn | head -30
} 2>/dev/null
trap 'stop_all; logs >"$base.gateways.txt"; rm -rf "$tmp"' EXIT

# 1,000,000 connections from 200 source addresses are 5,000 ports each,
# inside the default ephemeral range: no sysctl is changed.
rport=$(freeport)
bench_redis "$rport"
others+=("$REDIS_PID")
# Every gateway and every client waits on the one Redis: with 160 busy
# processes on 2 cores, a fair share leaves it about 1% of a CPU, its
# answers take over 5 s and the gateways fail it (BENCHMARKS.md, "A
# million"). REDIS_NICE (-10; needs root) puts it ahead of them, as Redis
# on a host of its own would be; "" leaves it at the others' priority.
# nice_to NICE PID: renices PID to NICE ("" leaves it); prints the nice it has.
nice_to() {
    if [ -n "$1" ] && renice -n "$1" -p "$2" >/dev/null 2>&1; then echo "$1"; else echo 0; fi
}
REDIS_NICE=${REDIS_NICE--10}
redis_nice=$(nice_to "$REDIS_NICE" "$REDIS_PID")
sport=$(freeport)
gw_args=(--listen "127.0.0.1:$sport" --reuse-port --redis "redis://127.0.0.1:$rport/0"
    --auth jwt --jwt-secret "$SECRET" --presence-ttl "$PRESENCE_TTL"
    --heartbeat-timeout $((HB * 2)) --max-connections "$MAXC" --log-level warn
    --drain-delay 0 --drain-seconds "$DRAIN")
start_gw() { # index
    "$BUILD/gateway/notify-gateway" "${gw_args[@]}" --node-id "m-$1" 2>>"$tmp/gw-$1.log" &
    pids[$1]=$!
}
for i in $(seq "$PROCS"); do start_gw "$i"; done
sleep 1
spids=()
for i in $(seq "$PROCS"); do spids+=(--server-pid "${pids[$i]}"); done

timeline() {
    while sleep 10; do
        rss=0 pss=0 # the processes of the port now (the rolling phase replaces them)
        for p in $(pgrep -f -- "--listen 127.0.0.1:$sport "); do
            r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
            rss=$((rss + ${r:-0}))
            # Pss shares each library page among the processes mapping it:
            # the sum is what the gateways hold, each page counted once.
            r=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
            pss=$((pss + ${r:-0}))
        done
        echo "$(date -u +%T) gateways_rss_kb=$rss gateways_pss_kb=$pss" $(sockstat now) \
            $(redis_info "$rport" now) \
            "load=$(cut -d' ' -f1 /proc/loadavg)"
    done
}
timeline >"$base.timeline.txt" &
others+=($!)

{
    echo "git=$(git describe --always --dirty)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "server_flags=${gw_args[*]} (x$PROCS)"
    echo "redis_nice=$redis_nice"
} >"$base.bench.txt"
"$BUILD/tools/bench" "$PHASES" --url "127.0.0.1:$sport" \
    --redis "127.0.0.1:$rport" --auth jwt --jwt-secret "$SECRET" --conns "$N" --procs "$PROCS" \
    --heartbeat "$HB" --hold "$HOLD" --count "$BCAST" --burst 1 --interval 5 --rate "$RATE" \
    --duration "$UNI" --rolling $((PROCS * (DRAIN + 2))) --inflight 500 --connect-timeout "$CONNECT" \
    "${spids[@]}" --label "$PROCS-gateways" >>"$base.bench.txt" 2>&1 &
bench_pid=$!
# The bench's parent is the producer (it publishes); its workers only hold
# connections. Like Redis, a producer would have a host of its own: at a
# fair share among 160 busy processes it offered 2,382 of 20,000/s
# (BENCHMARKS.md, "A million"). PUB_NICE (-10; needs root) puts the parent,
# and only it once its workers are forked, ahead of the others.
PUB_NICE=${PUB_NICE--10}
until [ "$(pgrep -c -P "$bench_pid")" -ge "$PROCS" ]; do
    kill -0 "$bench_pid" 2>/dev/null || break
    sleep 0.2
done
pub_nice=$(nice_to "$PUB_NICE" "$bench_pid")

# The rolling restart, once the bench says its phase began.
until grep -q '^phase=rolling' "$base.bench.txt" 2>/dev/null; do
    kill -0 "$bench_pid" 2>/dev/null || break
    sleep 1
done
if grep -q '^phase=rolling' "$base.bench.txt"; then
    t0=$(date +%s.%N)
    for i in $(seq "$PROCS"); do
        kill -TERM "${pids[$i]}"
        wait "${pids[$i]}" 2>/dev/null
        start_gw "$i"
        sleep 1
    done
    echo "restart_all_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" \
        >"$base.restart.txt"
fi
wait "$bench_pid"
cat "$base.restart.txt" >>"$base.bench.txt" 2>/dev/null
echo "publisher_nice=$pub_nice" >>"$base.bench.txt"
echo "$base.bench.txt"
