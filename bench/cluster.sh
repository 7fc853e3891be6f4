#!/bin/bash
# Redis Cluster: one primary vs three (issue 9). Builds the gateway and the
# bench (Release, own build dir), starts two private Redis Clusters on
# loopback: (a) one cluster-enabled node owning all 16384 slots (CLUSTER
# ADDSLOTSRANGE 0 16383), (b) three primaries (redis-cli --cluster create,
# no replicas). For each, and for each round, it runs the gateway with
# --redis-cluster and the bench's steady unicast and max-rate unicast
# (bench --redis-cluster: SPUBLISH to the owner of each channel's slot),
# taking the alternate topology between runs so that both see the same
# background load. Per run the bench reports delivered/lost/duplicated,
# latency, delivery rate, gateway CPU per message and, per primary, the
# Redis CPU (INFO cpu, used_cpu_sys + used_cpu_user) over the measured
# interval.
#
#   bench/cluster.sh                          5,000 conns, 10,000 msg/s, 3 rounds
#   N=2000 RATE=5000 ROUNDS=1 bench/cluster.sh
#
# Raw key=value output: bench/results-cluster/<scenario>.<1p|3p>.r<round>.txt;
# a Markdown summary (medians over the rounds) on stdout and in summary.md.
# Only the processes this script started are stopped.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-5000}
RATE=${RATE:-10000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
BUILD=${BUILD:-build-clubench}
OUT=${OUT:-$here/bench/results-cluster}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.log

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1
GW=$BUILD/gateway/notify-gateway
BENCH=$BUILD/tools/bench

tmp=$(mktemp -d /tmp/notify-cbench.XXXXXX)
pids=() # redis-servers we started
spid="" # the gateway
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports stay below the ephemeral range (32768 up), where outgoing connections
# of other tenants would otherwise take them between our check and our bind.
listening() { [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]; }
used=" "
# A port p with p and p + 10000 (the cluster bus) free and not handed out yet.
clusterport() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 2700))
        case "$used" in *" $p "* | *" $((p + 10000)) "* | *" $((p - 10000)) "*) continue ;; esac
        listening "$p" || listening "$((p + 10000))" || {
            used="$used$p "
            echo "$p"
            return 0
        }
    done
    return 1
}
freeport() {
    local p
    for _ in $(seq 200); do
        p=$((23000 + $(od -An -N2 -tu2 /dev/urandom) % 7000))
        case "$used" in *" $p "*) continue ;; esac
        listening "$p" || { echo "$p"; return 0; }
    done
    return 1
}

# start_node PORT: a cluster-enabled redis-server; appends to pids.
# --cluster-announce-ip: a node that never MEETs another (the one-primary
# cluster) does not know its own address, and CLUSTER SLOTS then names it
# "" ("the address you asked"), which the gateway cannot connect to.
start_node() {
    mkdir -p "$tmp/$1"
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp/$1" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-announce-ip 127.0.0.1 \
        --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/$1/redis.log" &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "cluster.sh: redis-server on port $1 did not start" >&2
    return 1
}

cluster_ok() { # cluster_ok PORT...
    for p in "$@"; do
        redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}
wait_ok() {
    for _ in $(seq 100); do cluster_ok "$@" && return 0; sleep 0.1; done
    echo "cluster.sh: cluster on $* not ok" >&2
    return 1
}

# (a) one primary with every slot
P1=$(clusterport) && start_node "$P1" || exit 1
redis-cli -p "$P1" cluster addslotsrange 0 16383 >/dev/null || exit 1
wait_ok "$P1" || exit 1
# (b) three primaries
P3=()
for _ in 1 2 3; do
    p=$(clusterport) && start_node "$p" || exit 1
    P3+=("$p")
done
redis-cli --cluster create "127.0.0.1:${P3[0]}" "127.0.0.1:${P3[1]}" "127.0.0.1:${P3[2]}" \
    --cluster-replicas 0 --cluster-yes >"$tmp/create.log" 2>&1 || {
    cat "$tmp/create.log" >&2
    exit 1
}
wait_ok "${P3[@]}" || exit 1
SEEDS_1p="127.0.0.1:$P1"
SEEDS_3p="127.0.0.1:${P3[0]},127.0.0.1:${P3[1]},127.0.0.1:${P3[2]}"
PORTS_1p="$P1"
PORTS_3p="${P3[*]}"

{
    echo "git=$(git describe --always --dirty 2>/dev/null)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "redis=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "one_primary_setup=redis-cli -p PORT cluster addslotsrange 0 16383"
    echo "three_primaries_setup=redis-cli --cluster create 127.0.0.1:P1 127.0.0.1:P2 127.0.0.1:P3 --cluster-replicas 0 --cluster-yes"
} >"$OUT/meta.txt"

waitport() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
waitready() { # until /readyz answers 200 (every channel subscribed)
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return 0
        sleep 0.1
    done
    return 1
}

# run TOPO SCEN ROUND ARGS...
run() {
    local topo=$1 scen=$2 round=$3
    shift 3
    local seeds ports
    eval "seeds=\$SEEDS_$topo ports=\$PORTS_$topo"
    for p in $ports; do
        redis-cli -p "$p" flushall >/dev/null
        redis-cli -p "$p" config resetstat >/dev/null
    done
    local sport attempt
    for attempt in 1 2 3 4 5; do
        sport=$(freeport)
        GW_CMD="$GW --listen 127.0.0.1:$sport --redis-cluster $seeds --auth jwt --jwt-secret $SECRET --presence-ttl 30 --heartbeat-timeout 20 --log-level warn --drain-seconds 1"
        $GW_CMD 2>"$OUT/$scen.$topo.r$round.log" &
        spid=$!
        waitport "$sport" && kill -0 "$spid" 2>/dev/null && break
        kill "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
        spid=""
    done
    [ -n "$spid" ] || { echo "cluster.sh: gateway did not listen" >&2; exit 1; }
    waitready "$sport" || echo "cluster.sh: gateway not ready after 10 s" >&2
    local cmd=("$BENCH" "$scen" --url "127.0.0.1:$sport" --redis-cluster "$seeds" --auth jwt
        --jwt-secret "$SECRET" --server-pid "$spid" --label "gateway-$topo" "$@")
    echo "== $scen $topo round $round" >&2
    {
        echo "command=${cmd[*]}"
        echo "server_command=$GW_CMD"
        "${cmd[@]}"
    } >"$OUT/$scen.$topo.r$round.txt"
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=""
    sleep 1
}

for r in $(seq "$ROUNDS"); do
    # alternate which topology goes first
    if [ $((r % 2)) = 1 ]; then order="1p 3p"; else order="3p 1p"; fi
    for t in $order; do run "$t" unicast "$r" --conns "$N" --rate "$RATE" --duration "$DURATION"; done
    for t in $order; do run "$t" unicast-max "$r" --conns "$N" --window 4096 --warmup 2 --duration "$DURATION"; done
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"

# ---- summary: medians over the rounds
med() { # med SCEN TOPO KEY
    local v
    v=$(for f in "$OUT/$1.$2".r*.txt; do grep -m1 "^$3=" "$f" | cut -d= -f2-; done | sort -g)
    [ -n "$v" ] || { echo "-"; return; }
    echo "$v" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
all() { # all SCEN TOPO KEY: every round's value, "a / b"
    for f in "$OUT/$1.$2".r*.txt; do grep -m1 "^$3=" "$f" | cut -d= -f2-; done | paste -sd/ | sed 's#/# / #g'
}
percore() { # per-primary CPU % as "a + b + c"
    local s=$1 t=$2 n i out=""
    n=$(med "$s" "$t" redis_primaries)
    for i in $(seq "$n"); do out="$out${out:+ + }$(med "$s" "$t" "redis_primary${i}_cpu_pct")"; done
    echo "$out"
}
{
    echo "| | 1 primary | 3 primaries |"
    echo "|---|---|---|"
    for s in unicast unicast-max; do
        if [ "$s" = unicast ]; then
            echo "| **steady unicast, $RATE msg/s for ${DURATION} s, $N connections** | | |"
        else
            echo "| **max-rate unicast (4,096 in flight, 2 s warm-up, ${DURATION} s), $N connections** | | |"
        fi
        for k in expected delivered lost duplicated publish_errors delivery_rate lat_p50_ms lat_p99_ms \
            server_cpu_pct server_cpu_per_msg_us redis_cpu_pct redis_cpu_busiest_primary_pct \
            redis_cpu_per_msg_us; do
            echo "| $k | $(med $s 1p $k) | $(med $s 3p $k) |"
        done
        echo "| Redis CPU % per primary | $(percore $s 1p) | $(percore $s 3p) |"
        echo "| slots per primary | $(all $s 1p redis_primary1_slots | cut -d' ' -f1) | $(for i in 1 2 3; do med $s 3p redis_primary${i}_slots; done | paste -sd/) |"
        echo "| messages per primary (round 1) | $(grep -m1 '^redis_primary1_published=' "$OUT/$s.1p.r1.txt" | cut -d= -f2) | $(for i in 1 2 3; do grep -m1 "^redis_primary${i}_published=" "$OUT/$s.3p.r1.txt" | cut -d= -f2; done | paste -sd/) |"
        for k in delivery_rate lat_p99_ms server_cpu_per_msg_us redis_cpu_busiest_primary_pct; do
            echo "| $k, each round | $(all $s 1p $k) | $(all $s 3p $k) |"
        done
    done
} | tee "$OUT/summary.md"
echo "results in $OUT" >&2
