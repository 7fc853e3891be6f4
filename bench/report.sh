#!/bin/bash
# Writes BENCHMARKS.md (to stdout) from the key=value results of bench/run.sh.
#   bench/report.sh [RESULTS_DIR] > BENCHMARKS.md
# bench/analysis.md, when present, is appended verbatim (the hand-written
# profile and bottleneck notes).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-$here/bench/results}

g() { # g SCEN TARGET KEY -> value or "-"
    local f="$R/$1.$2.txt"
    [ -f "$f" ] || { echo "-"; return; }
    local v
    v=$(grep -m1 "^$3=" "$f" | cut -d= -f2-)
    echo "${v:--}"
}
ratio() { # ratio A B -> A/B with 2 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print "?"; else print (a + 0 <= b + 0) ? "met" : "**missed**" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print "?"; else print (a + 0 >= b + 0) ? "met" : "**missed**" }'; }
kib() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.2f", a * 1000 / 1024 }'; }
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }

N=$(g idle gateway connections)
cat <<EOF
# Benchmarks

Produced by \`bench/run.sh\` (which runs \`build-bench/tools/bench\`, see
\`bench --help\`) and \`bench/report.sh\`; raw key=value output of every run
is in \`bench/results/\`. Every scenario ran the gateway and the reference
forwarder (\`../shared/reference/forwarder.c\`, compiled by the script into
the build dir, run with \`-c\` so that it coalesces broadcast bursts) one
after the other, with the same bench command, the same private Redis and the
same connection count. Other tenants were using this machine at the same
time, so absolute figures drift between runs: read the **ratios**.

## Machine

| | |
|---|---|
| CPUs (nproc) | $(nproc) |
| CPU model | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |
| Memory | $(free -g | awk '/^Mem:/ {print $2 " GiB"}') |
| Kernel | $(uname -r) |
| OS | $(. /etc/os-release && echo "$PRETTY_NAME") |
| open files (hard) | $(ulimit -Hn) per process |
| gateway measured | $(grep -m1 '^git=' "$R/meta.txt" 2>/dev/null | cut -d= -f2-) (built by run.sh at $(grep -m1 '^date=' "$R/meta.txt" 2>/dev/null | cut -d= -f2-)) |
| load average before / after the run | $(grep -m1 '^loadavg_before=' "$R/meta.txt" 2>/dev/null | cut -d= -f2-) / $(grep -m1 '^loadavg_after=' "$R/meta.txt" 2>/dev/null | cut -d= -f2-) |
| libwebsockets | $(ver libwebsockets17) (+ libwebsockets-evlib-uv) |
| libuv | $(ver libuv1) |
| hiredis | $(ver libhiredis0.14) |
| libjwt | $(ver libjwt0) |
| jansson | $(ver libjansson4) |
| redis-server | $(ver redis-server) |
| compiler | $(cc --version | head -1) |

Gateway build: \`cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release\`.
Load generator, publisher, Redis and the server all share the 2 CPUs, for
both targets alike. Redis runs with \`client-output-buffer-limit pubsub 0 0 0\`
so that a saturated subscriber is measured, not disconnected.

## Against the targets of issue 7 ($N connections, one server process)

| target | gateway | forwarder | ratio gw/fw | target | verdict |
|---|---|---|---|---|---|
EOF
gm=$(kib "$(g idle gateway server_rss_per_conn_kb)")
fm=$(kib "$(g idle forwarder server_rss_per_conn_kb)")
echo "| RSS per idle connection above the empty process (KiB) | $gm | $fm | $(ratio "$gm" "$fm") | <= 2 KiB | $(le "$gm" 2) |"
gc=$(g idle gateway server_cpu_idle_pct)
fc=$(g idle forwarder server_cpu_idle_pct)
echo "| idle CPU, heartbeats every 10 s (% of a core) | $gc | $fc | $(ratio "$gc" "$fc") | <= 1.5x | $(le "$(ratio "$gc" "$fc")" 1.5) |"
gs=$(g connect-storm gateway connect_rate)
fs=$(g connect-storm forwarder connect_rate)
echo "| connect storm (connects/s, JWT for the gateway) | $gs | $fs | $(ratio "$gs" "$fs") | >= 0.9x | $(ge "$(ratio "$gs" "$fs")" 0.9) |"
echo "| connect storm, absolute | $gs | | | >= 10,000/s | $(ge "$gs" 10000) |"
gr=$(g unicast-max gateway delivery_rate)
fr=$(g unicast-max forwarder delivery_rate)
echo "| max unicast delivery rate (msg/s) | $gr | $fr | $(ratio "$gr" "$fr") | >= 0.9x | $(ge "$(ratio "$gr" "$fr")" 0.9) |"
gu=$(g unicast-max gateway server_cpu_per_msg_us)
fu=$(g unicast-max forwarder server_cpu_per_msg_us)
echo "| server CPU per delivery at max rate (us) | $gu | $fu | $(ratio "$gu" "$fu") | <= 1.2x | $(le "$(ratio "$gu" "$fu")" 1.2) |"
gu=$(g unicast gateway server_cpu_per_msg_us)
fu=$(g unicast forwarder server_cpu_per_msg_us)
echo "| server CPU per delivery at 20,000/s (us) | $gu | $fu | $(ratio "$gu" "$fu") | <= 1.2x | $(le "$(ratio "$gu" "$fu")" 1.2) |"
for p in p50 p99; do
    a=$(g unicast gateway lat_${p}_ms)
    b=$(g unicast forwarder lat_${p}_ms)
    echo "| latency $p at 20,000 msg/s (ms) | $a | $b | $(ratio "$a" "$b") | <= 1.2x | $(le "$(ratio "$a" "$b")" 1.2) |"
done
a=$(g broadcast gateway lat_p99_ms)
b=$(g broadcast forwarder lat_p99_ms)
echo "| broadcast to all, p99 (ms) | $a | $b | $(ratio "$a" "$b") | <= 1.2x | $(le "$(ratio "$a" "$b")" 1.2) |"
a=$(g broadcast-burst gateway lat_p99_ms)
b=$(g broadcast-burst forwarder lat_p99_ms)
echo "| broadcast bursts of 10, p99 (ms) | $a | $b | $(ratio "$a" "$b") | <= 1.2x | $(le "$(ratio "$a" "$b")" 1.2) |"
lost=""
for s in unicast broadcast broadcast-burst rate-5000 rate-10000; do
    l=$(g "$s" gateway lost)
    d=$(g "$s" gateway duplicated)
    lost="$lost $s: lost $l dup $d;"
done
echo "| nothing lost or duplicated below saturation (gateway) | $lost | | | 0 | |"

cat <<EOF

The verdicts in this table are of this one run. Several of these figures
move by a third or more between runs on this shared machine; the verdicts
that count are those of the repeated rounds, in "What is left" below.
EOF

cat <<EOF

## Scenarios in detail

Each row is one bench run; the exact commands are listed at the end.

### Idle hold ($N connections, heartbeat every 10 s, 30 s measured)

| | gateway | forwarder | ratio |
|---|---|---|---|
EOF
row() { # row LABEL SCEN KEY
    local a b
    a=$(g "$2" gateway "$3")
    b=$(g "$2" forwarder "$3")
    echo "| $1 | $a | $b | $(ratio "$a" "$b") |"
}
row "established" idle established
row "failed" idle failed
row "server RSS empty (kB)" idle server_rss_empty_kb
row "server RSS connected (kB)" idle server_rss_connected_kb
row "RSS per connection (kB)" idle server_rss_per_conn_kb
row "server CPU while idle (% of a core)" idle server_cpu_idle_pct
row "server CPU per connection-second (us)" idle server_cpu_idle_us_per_conn_s
row "heartbeat replies received" idle heartbeat_replies
row "connections dropped by the server" idle dropped_by_server

cat <<EOF

### Steady unicast, 20,000 msg/s for 10 s (one connection per account)

| | gateway | forwarder | ratio |
|---|---|---|---|
EOF
for k in offered_rate expected delivered lost duplicated delivery_rate server_cpu_pct server_cpu_per_msg_us \
    lat_p50_ms lat_p99_ms lat_p999_ms lat_max_ms; do row "$k" unicast "$k"; done

cat <<EOF

### Max-rate unicast (closed loop: 4,096 deliveries kept in flight; 2 s warm-up, 10 s measured)

| | gateway | forwarder | ratio |
|---|---|---|---|
EOF
for k in delivery_rate expected delivered lost duplicated server_cpu_pct server_cpu_per_msg_us \
    lat_p50_ms lat_p99_ms lat_max_ms dropped_by_server; do row "$k" unicast-max "$k"; done

cat <<EOF

### Broadcast to every connection

10 rounds of 1 broadcast, 1 s apart; then 5 rounds of a burst of 10
broadcasts published back to back (one Redis pipeline). Latency is per
delivery, from PUBLISH to receipt.

| | gateway x1 | forwarder x1 | ratio | gateway x10 | forwarder x10 | ratio |
|---|---|---|---|---|---|---|
EOF
for k in expected delivered lost duplicated lat_p50_ms lat_p99_ms lat_p999_ms lat_max_ms server_cpu_per_msg_us; do
    a=$(g broadcast gateway $k)
    b=$(g broadcast forwarder $k)
    c=$(g broadcast-burst gateway $k)
    d=$(g broadcast-burst forwarder $k)
    echo "| $k | $a | $b | $(ratio "$a" "$b") | $c | $d | $(ratio "$c" "$d") |"
done

cat <<EOF

### Connect storm ($N connections opened at once, at most 1,000 handshakes in flight)

The gateway counts a connection when its register reply arrives (after JWT
verification); the forwarder, which has no register reply, at the 101.

| | gateway | forwarder | ratio |
|---|---|---|---|
EOF
for k in established failed connect_s connect_rate server_cpu_per_connect_us connect_p50_ms connect_p99_ms connect_max_ms; do
    row "$k" connect-storm "$k"
done

cat <<EOF

### Reconnect storm (all $N connections dropped at once and reopened, 3 cycles)

| | gateway | forwarder | ratio |
|---|---|---|---|
EOF
row "RSS after first connect (kB)" reconnect-storm server_rss_connected_kb
for c in 1 2 3; do
    for k in established failed s rate server_cpu_s server_rss_kb; do row "cycle $c $k" reconnect-storm "cycle${c}_$k"; done
done
for k in check_expected check_delivered check_lost check_dup; do row "$k (one message per account after the storms)" reconnect-storm "$k"; done

cat <<EOF

## How cost grows with the number of connections (idle, heartbeats every 10 s)

| connections | gw RSS/conn (kB) | fw RSS/conn (kB) | gw idle CPU % | fw idle CPU % | gw CPU/conn-s (us) | fw CPU/conn-s (us) | gw CPU per connect (us) | fw CPU per connect (us) |
|---|---|---|---|---|---|---|---|---|
EOF
for s in scale-1000 scale-5000 scale-10000 idle; do
    echo "| $(g $s gateway connections) | $(g $s gateway server_rss_per_conn_kb) | $(g $s forwarder server_rss_per_conn_kb) | $(g $s gateway server_cpu_idle_pct) | $(g $s forwarder server_cpu_idle_pct) | $(g $s gateway server_cpu_idle_us_per_conn_s) | $(g $s forwarder server_cpu_idle_us_per_conn_s) | $(g $s gateway server_cpu_per_connect_us) | $(g $s forwarder server_cpu_per_connect_us) |"
done

cat <<EOF

## Latency as the unicast rate grows ($N connections)

| offered msg/s | gw delivered/s | fw delivered/s | gw lost | fw lost | gw p50 | fw p50 | gw p99 | fw p99 | gw p99.9 | fw p99.9 | gw CPU/msg (us) | fw CPU/msg (us) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
for s in rate-5000 rate-10000 unicast rate-40000; do
    echo "| $(g $s gateway offered_rate) | $(g $s gateway delivery_rate) | $(g $s forwarder delivery_rate) | $(g $s gateway lost) | $(g $s forwarder lost) | $(g $s gateway lat_p50_ms) | $(g $s forwarder lat_p50_ms) | $(g $s gateway lat_p99_ms) | $(g $s forwarder lat_p99_ms) | $(g $s gateway lat_p999_ms) | $(g $s forwarder lat_p999_ms) | $(g $s gateway server_cpu_per_msg_us) | $(g $s forwarder server_cpu_per_msg_us) |"
done
echo
echo "Latencies in ms, PUBLISH to receipt."
# The same runs as a plot (bench/plot.sh; skipped, with a note on stderr,
# when gnuplot is missing).
"$here/bench/plot.sh" "$R" "$here/bench/latency.svg" >&2 || true
if [ -f "$here/bench/latency.svg" ]; then
    echo
    echo "![latency vs offered rate](bench/latency.svg)"
fi

cat <<EOF

## Redis command rate for presence ($N connections, --presence-ttl 30)

From INFO commandstats over the 30 s idle hold. The periodic refresh is
pipelined ZADD (all of an account's connections) and PEXPIREAT per
account, plus ZREMRANGEBYSCORE on one pass in ten, a hundredth of the
accounts every 100 ms; EVALs run only for connects and disconnects:

| command | calls/s |
|---|---|
EOF
grep '^redis_' "$R/idle.gateway.txt" 2>/dev/null | sed 's/^redis_\(.*\)_per_s=\(.*\)/| \1 | \2 |/'

if ls "$here"/bench/results-rounds/summary-*.txt >/dev/null 2>&1; then
    echo
    echo "## The noisiest targets in repeated rounds (\`bench/rounds.sh\`)"
    echo
    echo "Idle CPU, the figures at 20,000 msg/s and at the maximum rate, and broadcast"
    echo "bursts move by a third or more between runs on this shared machine."
    echo "\`bench/rounds.sh\` measures them in alternating gateway/forwarder pairs, each"
    echo "with a fresh Redis, and takes the median of the per-round ratios (raw output:"
    echo "\`bench/results-rounds/\`). These medians, not the single run above, are the"
    echo "verdicts for those rows:"
    echo
    echo '```'
    cat "$here"/bench/results-rounds/summary-*.txt
    echo '```'
fi

if ls "$here"/bench/results-host/*.summary.txt >/dev/null 2>&1; then
    echo
    echo "## Host scale in repeated rounds (\`bench/host.sh\`)"
    echo
    echo "100,000 idle connections over six processes sharing the port, six gateways"
    echo "and six reference forwarders in alternating rounds under the same load (raw"
    echo "output: \`bench/results-host/\`; discussed under \"Host scale\" below):"
    echo
    echo '```'
    cat "$here"/bench/results-host/*.summary.txt
    echo '```'
fi

if [ -f "$here/bench/analysis.md" ]; then
    echo
    cat "$here/bench/analysis.md"
fi

echo
echo "## Exact commands"
echo
echo '```'
echo "bench/run.sh   # N=$N; compiles the forwarder: cc -O2 -o build-bench/forwarder ../shared/reference/forwarder.c -lhiredis -lcrypto"
for f in "$R"/*.gateway.txt "$R"/*.forwarder.txt; do
    [ -f "$f" ] || continue
    echo "# $(basename "$f" .txt)"
    grep -m1 '^server_command=' "$f" | cut -d= -f2- | sed 's/127\.0\.0\.1:[0-9]*/127.0.0.1:PORT/'
    grep -m1 '^command=' "$f" | cut -d= -f2- | sed 's/--server-pid [0-9]*/--server-pid PID/'
done
echo '```'
echo
echo "Ports are random free ports; PID is the server's pid."
