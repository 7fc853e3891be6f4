#!/bin/sh
# The docker-compose.yml topology without Docker, on loopback only:
# one redis-server, CLUSTER_NODES (3) notify-gateway processes on their own
# ports, and haproxy in front of them using deploy/haproxy.cfg (its server
# lines replaced by the local nodes).
#
#   deploy/local-cluster.sh up       start everything, wait until ready
#   deploy/local-cluster.sh status   each process, its port, /readyz, haproxy's view
#   deploy/local-cluster.sh down     drain the nodes (SIGTERM), stop haproxy and redis
#   deploy/local-cluster.sh env      print the cluster's ports as shell assignments
#
# Then: ws://127.0.0.1:8080/ws?user_id=u42 (development mode: --auth none).
#
# Environment (all optional):
#   CLUSTER_DIR           logs, pids, generated haproxy.cfg   [./.local-cluster]
#   CLUSTER_PORT          haproxy's public port               [8080]
#   CLUSTER_STATS_PORT    haproxy stats (/stats, /metrics)    [random free]
#   CLUSTER_REDIS_PORT    redis-server                        [random free]
#   CLUSTER_NODE_PORTS    the nodes' ports, space-separated   [random free]
#   CLUSTER_NODES         number of gateway nodes             [3]
#   CLUSTER_GATEWAY_ARGS  extra daemon flags (they win)       [none]
#                         default flags: --auth none --drain-seconds 5
#   CLUSTER_STOP_TIMEOUT  seconds "down" waits for each process [30]
#   GATEWAY_BIN  REDIS_SERVER_BIN  HAPROXY_BIN   the binaries to run
#
# Every pid is written with its start time and checked against /proc before
# any signal: this script only ever signals processes it started itself.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
cfg_src="$here/deploy/haproxy.cfg"

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

# ---- processes ---------------------------------------------------------------

# Start time of a pid (clock ticks since boot, field 22 of /proc/PID/stat),
# empty if there is no such process. The comm field may hold spaces: cut
# after the last ')'.
starttime() {
    [ -r "/proc/$1/stat" ] || return 0
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

# Records pid $2 in pidfile $1 as "pid starttime".
record_pid() {
    echo "$2 $(starttime "$2")" >"$1"
}

# Prints the pid of pidfile $1 if that very process still runs.
live_pid() {
    [ -f "$1" ] || return 0
    read -r pid st <"$1" || return 0
    [ -n "${pid:-}" ] && [ -n "${st:-}" ] || return 0
    [ "$(starttime "$pid")" = "$st" ] && echo "$pid"
    return 0
}

# Sends signal $2 to the process of pidfile $1 if it is still ours.
signal_pid() {
    pid=$(live_pid "$1")
    [ -n "$pid" ] && kill "-$2" "$pid" 2>/dev/null
    return 0
}

# Waits up to $2 seconds for the process of pidfile $1 to end; 0 if it did.
wait_gone() {
    n=$(($2 * 10))
    while [ "$n" -gt 0 ]; do
        [ -z "$(live_pid "$1")" ] && return 0
        sleep 0.1
        n=$((n - 1))
    done
    [ -z "$(live_pid "$1")" ]
}

# SIGTERM, wait up to $2 s, then SIGKILL. $3: a name for messages.
stop_pidfile() {
    signal_pid "$1" TERM
    reap_pidfile "$@"
}

# Waits up to $2 s for an already signalled process, then SIGKILL. (Never
# a second SIGTERM: the gateway takes that as "skip the drain, exit now".)
reap_pidfile() {
    [ -n "$(live_pid "$1")" ] || { rm -f "$1"; return 0; }
    if ! wait_gone "$1" "$2"; then
        echo "local-cluster: $3 still running after $2 s: SIGKILL" >&2
        signal_pid "$1" KILL
        wait_gone "$1" 5 || echo "local-cluster: $3 did not die" >&2
    fi
    rm -f "$1"
}

# ---- ports and HTTP ------------------------------------------------------------

rand_port() {
    # 20000-32767: below Linux's default ephemeral range (32768-60999).
    echo $((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12768))
}

# 0 if nothing listens on TCP port $1 (any address), from /proc/net/tcp{,6}.
port_free() {
    hex=$(printf '%04X' "$1")
    ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v p="$hex" 'NR > 1 { n = split($2, a, ":"); if (a[n] == p && $4 == "0A") f = 1 } END { exit !f }'
}

free_port() {
    i=0
    while [ "$i" -lt 100 ]; do
        p=$(rand_port)
        if port_free "$p"; then
            echo "$p"
            return 0
        fi
        i=$((i + 1))
    done
    die "no free port found"
}

# HTTP status of GET http://127.0.0.1:$1$2 ("000" when nothing answers).
http_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" 2>/dev/null || true
}

# Waits up to $3 seconds for GET $2 on port $1 to answer 200; pidfile $4 must
# stay alive meanwhile. 0 when it did.
wait_http_200() {
    n=$(($3 * 10))
    while [ "$n" -gt 0 ]; do
        [ "$(http_status "$1" "$2")" = 200 ] && return 0
        [ -n "$(live_pid "$4")" ] || return 1
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# haproxy's view of its backend servers: lines "gwN STATUS".
haproxy_servers() {
    curl -s --max-time 2 "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null |
        awk -F, '$1 == "gateways" && $2 ~ /^gw[0-9]+$/ { print $2, $18 }'
}

# ---- setup -----------------------------------------------------------------------

setup_dir() {
    dir=${CLUSTER_DIR:-./.local-cluster}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    envfile="$dir/cluster.env"
}

load_env() {
    [ -f "$envfile" ] || die "no cluster in $dir (run: $0 up)"
    # shellcheck disable=SC1090
    . "$envfile"
}

find_haproxy() {
    if [ -n "${HAPROXY_BIN:-}" ]; then
        echo "$HAPROXY_BIN"
    elif command -v haproxy >/dev/null 2>&1; then
        command -v haproxy
    elif [ -x /usr/sbin/haproxy ]; then
        echo /usr/sbin/haproxy
    fi
}

any_running() {
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        [ -n "$(live_pid "$f")" ] && return 0
    done
    return 1
}

# Starts node $1 on port $2 (or random ports until one binds when $2 is
# empty); sets node_port.
start_node() {
    i=$1
    want=$2
    tries=0
    while :; do
        port=${want:-$(free_port)}
        # shellcheck disable=SC2086
        "$gateway_bin" --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$REDIS_PORT/0" \
            --node-id "local-$i" --auth none --drain-seconds 5 ${CLUSTER_GATEWAY_ARGS:-} \
            </dev/null >>"$dir/node$i.log" 2>&1 &
        record_pid "$dir/node$i.pid" $!
        if wait_http_200 "$port" /healthz 15 "$dir/node$i.pid"; then
            node_port=$port
            return 0
        fi
        stop_pidfile "$dir/node$i.pid" 5 "node$i"
        tries=$((tries + 1))
        [ -z "$want" ] && [ "$tries" -lt 5 ] || return 1
        echo "local-cluster: node$i did not start on port $port, trying another" >&2
    done
}

start_redis() {
    want=${CLUSTER_REDIS_PORT:-}
    tries=0
    while :; do
        port=${want:-$(free_port)}
        "$redis_bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" --daemonize no --logfile '' </dev/null >>"$dir/redis.log" 2>&1 &
        record_pid "$dir/redis.pid" $!
        n=50
        while [ "$n" -gt 0 ] && [ -n "$(live_pid "$dir/redis.pid")" ]; do
            if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
                REDIS_PORT=$port
                return 0
            fi
            sleep 0.1
            n=$((n - 1))
        done
        stop_pidfile "$dir/redis.pid" 5 redis
        tries=$((tries + 1))
        [ -z "$want" ] && [ "$tries" -lt 5 ] || return 1
    done
}

# deploy/haproxy.cfg with the lines between "# servers: begin" and
# "# servers: end" replaced by the local nodes. Everything else (timeouts,
# checks, balance) is the production file's.
write_haproxy_cfg() {
    servers=""
    i=1
    for p in $NODE_PORTS; do
        servers="$servers    server gw$i 127.0.0.1:$p
"
        i=$((i + 1))
    done
    {
        echo "# Generated by deploy/local-cluster.sh from deploy/haproxy.cfg: do not edit."
        awk -v servers="$servers" '
            /^[ \t]*# servers: begin/ { print; printf "%s", servers; skip = 1; next }
            /^[ \t]*# servers: end/ { skip = 0 }
            !skip { print }' "$cfg_src"
    } >"$dir/haproxy.cfg"
    grep -q "server gw1 127.0.0.1:" "$dir/haproxy.cfg" ||
        die "deploy/haproxy.cfg has no '# servers: begin' / '# servers: end' block"
}

start_haproxy() {
    # Two sockets per tunnel: stay within this shell's open-files limit.
    nofile=$(awk '/^Max open files/ { print $4 }' /proc/self/limits)
    case $nofile in
    unlimited) maxconn=500000 ;;
    *) maxconn=$(((nofile - 200) / 2)) ;;
    esac
    [ "$maxconn" -gt 500000 ] && maxconn=500000
    export HAPROXY_BIND="127.0.0.1:$HAPROXY_PORT"
    export HAPROXY_STATS_BIND="127.0.0.1:$STATS_PORT"
    export HAPROXY_MAXCONN="$maxconn"
    "$haproxy_bin" -c -q -f "$dir/haproxy.cfg" >"$dir/haproxy-check.log" 2>&1 ||
        { cat "$dir/haproxy-check.log" >&2; return 1; }
    "$haproxy_bin" -db -f "$dir/haproxy.cfg" </dev/null >>"$dir/haproxy.log" 2>&1 &
    record_pid "$dir/haproxy.pid" $!
    wait_http_200 "$STATS_PORT" "/stats;csv" 10 "$dir/haproxy.pid"
}

# ---- commands --------------------------------------------------------------------

cmd_up() {
    gateway_bin=${GATEWAY_BIN:-$here/build/gateway/notify-gateway}
    redis_bin=${REDIS_SERVER_BIN:-redis-server}
    haproxy_bin=$(find_haproxy)
    [ -x "$gateway_bin" ] || die "no gateway binary at $gateway_bin (build first, or set GATEWAY_BIN)"
    command -v "$redis_bin" >/dev/null 2>&1 || die "redis-server not found (scripts/install-deps.sh server)"
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (scripts/install-deps.sh server)"
    [ -n "$haproxy_bin" ] || die "haproxy not found (scripts/install-deps.sh test)"
    command -v curl >/dev/null 2>&1 || die "curl not found (scripts/install-deps.sh test)"
    any_running && die "a cluster is already running in $dir (run: $0 down)"
    rm -f "$dir"/*.pid "$dir"/*.log "$dir/cluster.env" "$dir/haproxy.cfg"

    nodes=${CLUSTER_NODES:-3}
    HAPROXY_PORT=${CLUSTER_PORT:-8080}
    port_free "$HAPROXY_PORT" || die "port $HAPROXY_PORT is taken (set CLUSTER_PORT)"
    STATS_PORT=${CLUSTER_STATS_PORT:-$(free_port)}
    # shellcheck disable=SC2086
    set -- ${CLUSTER_NODE_PORTS:-}
    if [ $# -gt 0 ] && [ $# -ne "$nodes" ]; then
        die "CLUSTER_NODE_PORTS has $# ports for $nodes nodes"
    fi

    start_redis || { down_all 5; die "redis-server did not start (see $dir/redis.log)"; }
    NODE_PORTS=""
    i=1
    while [ "$i" -le "$nodes" ]; do
        want=""
        if [ $# -gt 0 ]; then
            want=$1
            shift
        fi
        start_node "$i" "$want" || { down_all 5; die "node$i did not start (see $dir/node$i.log)"; }
        NODE_PORTS="$NODE_PORTS $node_port"
        i=$((i + 1))
    done
    NODE_PORTS=${NODE_PORTS# }
    cat >"$envfile" <<EOF
# deploy/local-cluster.sh: this cluster's ports (source it)
CLUSTER_DIR='$dir'
HAPROXY_PORT=$HAPROXY_PORT
STATS_PORT=$STATS_PORT
REDIS_PORT=$REDIS_PORT
NODES=$nodes
NODE_PORTS='$NODE_PORTS'
EOF
    # Every node must have Redis before haproxy starts sending clients.
    i=1
    for p in $NODE_PORTS; do
        wait_http_200 "$p" /readyz 20 "$dir/node$i.pid" ||
            { down_all 5; die "node$i never became ready (see $dir/node$i.log)"; }
        i=$((i + 1))
    done
    write_haproxy_cfg
    start_haproxy || { down_all 5; die "haproxy did not start (see $dir/haproxy.log)"; }
    # ...and haproxy's health checks must have every node in the pool.
    n=100
    while [ "$n" -gt 0 ]; do
        up=$(haproxy_servers | awk '$2 == "UP" { c++ } END { print c + 0 }')
        [ "$up" -eq "$nodes" ] && break
        sleep 0.1
        n=$((n - 1))
    done
    [ "$n" -gt 0 ] || { down_all 5; die "haproxy never saw all $nodes nodes UP"; }
    cat <<EOF
local-cluster: up in $dir
  haproxy    ws://127.0.0.1:$HAPROXY_PORT/ws?user_id=u42   (stats: http://127.0.0.1:$STATS_PORT/stats)
  nodes      $(for p in $NODE_PORTS; do printf '127.0.0.1:%s ' "$p"; done)
  redis      127.0.0.1:$REDIS_PORT
  try        redis-cli -p $REDIS_PORT PUBLISH 'notify:acct:{u42}' '{"type":"hello","content":{"body":"hi","meta_data":""}}'
EOF
}

# Stops everything this directory's pidfiles name: nodes first (they drain
# in parallel), then haproxy, then redis. $1: seconds to wait for each.
down_all() {
    for f in "$dir"/node*.pid; do
        [ -e "$f" ] && signal_pid "$f" TERM
    done
    for f in "$dir"/node*.pid; do
        [ -e "$f" ] || continue
        reap_pidfile "$f" "$1" "$(basename "$f" .pid)"
    done
    [ -e "$dir/haproxy.pid" ] && stop_pidfile "$dir/haproxy.pid" "$1" haproxy
    [ -e "$dir/redis.pid" ] && stop_pidfile "$dir/redis.pid" "$1" redis
    return 0
}

cmd_down() {
    down_all "${CLUSTER_STOP_TIMEOUT:-30}"
    rm -f "$envfile"
    echo "local-cluster: down (logs kept in $dir)"
}

cmd_status() {
    load_env
    rc=0
    views=$(haproxy_servers)
    printf '%-8s %-22s %-20s %s\n' NAME ADDRESS PROCESS HEALTH
    line() { # name address extra
        pid=$(live_pid "$dir/$1.pid")
        if [ -n "$pid" ]; then
            proc="pid $pid running"
        else
            proc="not running"
            rc=1
        fi
        printf '%-8s %-22s %-20s %s\n' "$1" "$2" "$proc" "$3"
    }
    line redis "127.0.0.1:$REDIS_PORT" ""
    i=1
    for p in $NODE_PORTS; do
        ready=$(http_status "$p" /readyz)
        [ "$ready" = 200 ] || rc=1
        view=$(echo "$views" | awk -v s="gw$i" '$1 == s { print $2 }')
        line "node$i" "127.0.0.1:$p" "readyz $ready, haproxy ${view:-?}"
        i=$((i + 1))
    done
    line haproxy "127.0.0.1:$HAPROXY_PORT" "stats http://127.0.0.1:$STATS_PORT/stats"
    return "$rc"
}

[ $# -eq 1 ] || usage
setup_dir
case $1 in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env)
    load_env
    cat "$envfile"
    ;;
*) usage ;;
esac
