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
#   TARGETS="gateway gateway-sse forwarder"  also the gateway's Server-Sent
#                                         Events (bench --transport sse), same
#                                         rounds; its ratio is to the gateway
#   NOISE_PIDS="1 108"                    the host's processes whose threads'
#                                         runs bench records (--noise-pid):
#                                         unicast then also reports lat_quiet_*,
#                                         the messages none of them touched.
#                                         Default: PID 1 (on this sandbox its
#                                         agent, every second at nice -10) and
#                                         kdamond; "" for none
#
# Raw output: bench/results-rounds/<scenario>.<target>.r<k>.txt
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. bench/lib.sh
N=${N:-15000}
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-"idle unicast"}
TARGETS=${TARGETS:-"gateway forwarder"}
BUILD=${BUILD:-build-bench}
OUT=${OUT:-$here/bench/results-rounds}
tag=$(flags_tag "${GW_FLAGS:-}")
FWD_SRC=${FWD_SRC:-$here/../shared/reference/forwarder.c}
SECRET=bench-secret-0123456789
NOISE_PIDS=${NOISE_PIDS-"1 $(pgrep -x 'kdamond\.[0-9]+' | tr '\n' ' ')"}
noise=()
for p in $NOISE_PIDS; do noise+=(--noise-pid "$p"); done
mkdir -p "$OUT"
bench_build

tmp=$(mktemp -d /tmp/notify-rounds.XXXXXX)
spid=""
rpid=""
cleanup() { # waits for these only: a bare wait would also wait for the summary's tee
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

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
    bench_redis "$rport"
    rpid=$REDIS_PID
    sport=$(freeport)
    if [ "$target" = gateway ] || [ "$target" = gateway-sse ]; then
        "$BUILD/gateway/notify-gateway" --listen "127.0.0.1:$sport" --redis "redis://127.0.0.1:$rport/0" \
            --auth jwt --jwt-secret "$SECRET" --presence-ttl 30 --heartbeat-timeout 20 \
            --log-level warn --drain-seconds 1 ${GW_FLAGS:-} 2>"$tmp/gw.log" &
        spid=$!
        targs=(--auth jwt --jwt-secret "$SECRET")
        [ "$target" = gateway-sse ] && targs+=(--transport sse)
    else
        "$BUILD/forwarder" -p "$sport" -r "127.0.0.1:$rport" -c >/dev/null 2>&1 &
        spid=$!
        targs=(--auth none --ready-on-upgrade)
    fi
    sleep 0.5
    # shellcheck disable=SC2046
    "$BUILD/tools/bench" "${scen%-burst}" --url "127.0.0.1:$sport" --redis "127.0.0.1:$rport" "${targs[@]}" \
        --server-pid "$spid" --label "$target" "${noise[@]}" $(args_of "$scen") >"$OUT/$scen${tag:+-$tag}.$target.r$k.txt"
    kill "$spid" "$rpid" 2>/dev/null
    wait "$spid" "$rpid" 2>/dev/null
    spid=""
    rpid=""
    sleep 1
}


exec > >(tee "$OUT/summary-${SCENARIOS// /-}${tag:+-$tag}.txt")
echo "# rounds.sh: $ROUNDS rounds, $N connections,${GW_FLAGS:+ gateway flags $GW_FLAGS,}${NOISE_PIDS:+ noise from PIDs $NOISE_PIDS,} $(git describe --always --dirty), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for scen in $SCENARIOS; do
    for k in $(seq "$ROUNDS"); do
        # alternate the order of the targets, so drift favours none
        order=$TARGETS
        [ $((k % 2)) -eq 0 ] && order=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
        for target in $order; do run_one "$scen" "$target" "$k"; done
    done
    case $scen in
    idle) keys="server_cpu_idle_pct server_rss_per_conn_kb" ;;
    unicast) keys="server_cpu_per_msg_us lat_p50_ms lat_p99_ms lat_p999_ms"
        [ ${#noise[@]} -gt 0 ] && keys="$keys lat_quiet_p99_ms lat_quiet_p999_ms lat_noisy_p99_ms noise_bursts" ;;
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
        case " $TARGETS " in *" gateway-sse "*) ;; *) continue ;; esac
        ratios=()
        line="$scen $key:"
        for k in $(seq "$ROUNDS"); do
            g=$(val "$OUT/$scen${tag:+-$tag}.gateway.r$k.txt" "$key")
            e=$(val "$OUT/$scen${tag:+-$tag}.gateway-sse.r$k.txt" "$key")
            r=$(awk -v g="$g" -v e="$e" 'BEGIN { if (g > 0) printf "%.2f", e / g; else print "-" }')
            ratios+=("$r")
            line="$line r$k sse $e ws $g ($r)"
        done
        echo "$line"
        echo "$scen $key: median ratio sse/ws $(printf '%s\n' "${ratios[@]}" | median)"
    done
done
