#!/bin/bash
# The figures that this shared 2-CPU machine moves most from one run to the
# next (idle CPU, CPU per delivery and p99 at a moderate rate), measured in
# ROUNDS alternating gateway/forwarder pairs, each pair with its own Redis;
# prints every round and the median ratio.
#
#   bench/rounds.sh                       idle and unicast at 20,000/s, 5 rounds
#   ROUNDS=3 SCENARIOS=unicast bench/rounds.sh
#   SCENARIOS: idle unicast unicast-max broadcast-burst connect-storm
#   GW_FLAGS="--input-batch-ms 0" ...     more gateway flags (in the file names)
#
# Raw output: bench/results-rounds/<scenario>.<target>.r<k>.txt
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${N:-15000}
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-"idle unicast"}
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results-rounds}
tag=$(echo "${GW_FLAGS:-}" | tr -c 'a-z0-9\n' '_' | tr -s _)
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
SECRET=bench-secret-0123456789
mkdir -p "$OUT"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1
cc -O2 -o "$BUILD/forwarder" "$FWD_SRC" -lhiredis -lcrypto || exit 1

tmp=$(mktemp -d /tmp/notify-rounds.XXXXXX)
spid=""
rpid=""
cleanup() { # waits for these only: a bare wait would also wait for the summary's tee
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
freeport() { echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000)); }

args_of() {
    case $1 in
    idle) echo "--conns $N --heartbeat 10 --duration 30" ;;
    unicast) echo "--conns $N --rate 20000 --duration 10" ;;
    unicast-max) echo "--conns $N --window 4096 --warmup 2 --duration 10" ;;
    broadcast-burst) echo "--conns $N --count 5 --burst 10 --interval 1" ;;
    connect-storm) echo "--conns $N --inflight 1000" ;;
    *) echo "rounds.sh: unknown scenario $1" >&2; exit 2 ;;
    esac
}

run_one() { # scenario target round
    local scen=$1 target=$2 k=$3 rport sport
    rport=$(freeport)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
        --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/redis.log" &
    rpid=$!
    for i in $(seq 30); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    sport=$(freeport)
    if [ "$target" = gateway ]; then
        "$BUILD/gateway/notify-gateway" --listen "127.0.0.1:$sport" --redis "redis://127.0.0.1:$rport/0" \
            --auth jwt --jwt-secret "$SECRET" --presence-ttl 30 --heartbeat-timeout 20 \
            --log-level warn --drain-seconds 1 ${GW_FLAGS:-} 2>"$tmp/gw.log" &
        spid=$!
        targs=(--auth jwt --jwt-secret "$SECRET")
    else
        "$BUILD/forwarder" -p "$sport" -r "127.0.0.1:$rport" -c >/dev/null 2>&1 &
        spid=$!
        targs=(--auth none --ready-on-upgrade)
    fi
    sleep 0.5
    # shellcheck disable=SC2046
    "$BUILD/tools/bench" "${scen%-burst}" --url "127.0.0.1:$sport" --redis "127.0.0.1:$rport" "${targs[@]}" \
        --server-pid "$spid" --label "$target" $(args_of "$scen") >"$OUT/$scen${tag:+-$tag}.$target.r$k.txt"
    kill "$spid" "$rpid" 2>/dev/null
    wait "$spid" "$rpid" 2>/dev/null
    spid=""
    rpid=""
    sleep 1
}

val() { grep -m1 "^$2=" "$1" | cut -d= -f2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

exec > >(tee "$OUT/summary-${SCENARIOS// /-}${tag:+-$tag}.txt")
echo "# rounds.sh: $ROUNDS rounds, $N connections,${GW_FLAGS:+ gateway flags $GW_FLAGS,} $(git describe --always --dirty), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for scen in $SCENARIOS; do
    for k in $(seq "$ROUNDS"); do
        # alternate which server goes first, so drift favours neither
        if [ $((k % 2)) -eq 1 ]; then order="gateway forwarder"; else order="forwarder gateway"; fi
        for target in $order; do run_one "$scen" "$target" "$k"; done
    done
    case $scen in
    idle) keys="server_cpu_idle_pct server_rss_per_conn_kb" ;;
    unicast) keys="server_cpu_per_msg_us lat_p50_ms lat_p99_ms lat_p999_ms" ;;
    unicast-max) keys="delivery_rate server_cpu_per_msg_us" ;;
    broadcast-burst) keys="lat_p99_ms server_cpu_per_msg_us" ;;
    connect-storm) keys="connect_rate server_cpu_per_connect_us" ;;
    esac
    for key in $keys; do
        ratios=()
        line="$scen $key:"
        for k in $(seq "$ROUNDS"); do
            g=$(val "$OUT/$scen${tag:+-$tag}.gateway.r$k.txt" "$key")
            f=$(val "$OUT/$scen${tag:+-$tag}.forwarder.r$k.txt" "$key")
            r=$(awk -v g="$g" -v f="$f" 'BEGIN { if (f > 0) printf "%.2f", g / f; else print "-" }')
            ratios+=("$r")
            line="$line r$k gw $g fw $f ($r)"
        done
        echo "$line"
        echo "$scen $key: median ratio gw/fw $(printf '%s\n' "${ratios[@]}" | median)"
    done
done
