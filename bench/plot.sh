#!/bin/bash
# Plots unicast latency (p50 and p99) against the offered rate, gateway vs the
# reference forwarder, from the key=value results of bench/run.sh
# (rate-<R>.<target>.txt and unicast.<target>.txt), as an SVG.
#   bench/plot.sh [RESULTS_DIR [OUT.svg]]    defaults: bench/results bench/latency.svg
# Needs gnuplot (Debian: apt-get install gnuplot-nox); without it, says so on
# stderr and exits 0, leaving OUT untouched, so that bench/report.sh still works.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-$here/bench/results}
OUT=${2:-$here/bench/latency.svg}

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "plot.sh: gnuplot not found, $OUT not written (apt-get install gnuplot-nox)" >&2
    exit 0
fi

g() { # g FILE KEY -> value or "-"
    local v
    v=$(grep -m1 "^$2=" "$1" 2>/dev/null | cut -d= -f2-)
    echo "${v:--}"
}

tmp=$(mktemp -d /tmp/notify-plot.XXXXXX) || exit 1
new=""
trap 'rm -rf "$tmp"; [ -n "$new" ] && rm -f "$new"' EXIT
dat=$tmp/latency.dat

# One block per target (gnuplot index 0 = gateway, 1 = forwarder), one row per
# run, sorted by offered rate; "-" marks a missing value (the point is skipped,
# the line joins its neighbours).
for target in gateway forwarder; do
    echo "# $target: offered_rate lat_p50_ms lat_p99_ms delivery_rate label"
    for f in "$R"/rate-*."$target".txt "$R"/unicast."$target".txt; do
        [ -f "$f" ] || continue
        off=$(g "$f" offered_rate)
        [ "$off" = "-" ] && continue
        del=$(g "$f" delivery_rate)
        # A run that delivers clearly less than offered is saturated: say so
        # next to its points, since its latency is then mostly queueing.
        label=$(awk -v t="$target" -v o="$off" -v d="$del" 'BEGIN {
            if (d == "-" || d + 0 >= 0.95 * o) { print "\"\""; exit }
            s = sprintf("%d", d); l = ""
            while (length(s) > 3) { l = "," substr(s, length(s) - 2) l; s = substr(s, 1, length(s) - 3) }
            printf "\"%s delivers only %s msg/s\"", t, s l }')
        echo "$off $(g "$f" lat_p50_ms) $(g "$f" lat_p99_ms) $del $label"
    done | sort -g -k1,1
    printf '\n\n'
done >"$dat"
rows=$(grep -c '^[0-9]' "$dat")
if [ "$rows" -eq 0 ]; then
    echo "plot.sh: no rate-*.txt or unicast.*.txt results with offered_rate in $R, $OUT not written" >&2
    exit 0
fi

# x tics at the offered rates rounded to two significant digits (5000, 10000,
# 20000, 40000 rather than 4999 and 9999), written with thousands separators.
xtics=$(awk '/^[0-9]/ { r = $1 + 0; if (r <= 0) next
        m = 10 ^ (int(log(r) / log(10)) - 1); t = int(r / m + 0.5) * m
        if (!(t in seen)) { seen[t] = 1; s = sprintf("%d", t); l = ""
            while (length(s) > 3) { l = "," substr(s, length(s) - 2) l; s = substr(s, 1, length(s) - 3) }
            out = out (out == "" ? "" : ", ") "\"" s l "\" " t } }
    END { print out }' "$dat")
xmin=$(awk '/^[0-9]/ && (m == "" || $1 < m) { m = $1 } END { print m / 1.4 }' "$dat")
xmax=$(awk '/^[0-9]/ && $1 > m { m = $1 } END { print m * 1.4 }' "$dat")
title="Unicast latency as the offered rate grows"
for f in "$R"/rate-*.gateway.txt "$R"/unicast.gateway.txt "$R"/rate-*.forwarder.txt "$R"/unicast.forwarder.txt; do
    conns=$(g "$f" connections)
    [ "$conns" != "-" ] && { title="$title ($conns connections)"; break; }
done

# Written next to OUT first, then renamed over it: OUT is either the old plot
# or the whole new one.
new=$(mktemp "$(dirname "$OUT")/.latency.XXXXXX.svg") || exit 1
gnuplot <<EOF || { echo "plot.sh: gnuplot failed, $OUT not written" >&2; exit 1; }
set terminal svg size 800,450 font "sans,13" background rgb "white" noenhanced
set output "$new"
set datafile missing "-"
set title "$title" font "sans,15"
set xlabel "offered rate (msg/s, log scale)"
set ylabel "latency, PUBLISH to receipt (ms, log scale)"
set logscale x
set logscale y
set xrange [$xmin:$xmax]
set xtics ($xtics)
set mxtics default
set format y "%g"
set grid xtics ytics mytics lc rgb "#dddddd" lw 1, lc rgb "#f0f0f0" lw 1
set key top left box opaque
set border 3
set tics nomirror
set style line 1 lc rgb "#1f5fbf" lw 2.5 dt solid pt 7 ps 1.1
set style line 2 lc rgb "#1f5fbf" lw 2.5 dt (8,4) pt 5 ps 1.1
set style line 3 lc rgb "#d9661a" lw 2.5 dt solid pt 9 ps 1.3
set style line 4 lc rgb "#d9661a" lw 2.5 dt (8,4) pt 11 ps 1.3
plot "$dat" index 0 using 1:2 with linespoints ls 1 title "gateway p50", \
     "$dat" index 0 using 1:3 with linespoints ls 2 title "gateway p99", \
     "$dat" index 1 using 1:2 with linespoints ls 3 title "forwarder p50", \
     "$dat" index 1 using 1:3 with linespoints ls 4 title "forwarder p99", \
     "$dat" index 0 using 1:3:5 with labels right offset -1,1 font "sans,11" tc rgb "#1f5fbf" notitle, \
     "$dat" index 1 using 1:3:5 with labels right offset -1,1 font "sans,11" tc rgb "#d9661a" notitle
EOF
[ -s "$new" ] || { echo "plot.sh: gnuplot wrote nothing, $OUT not written" >&2; exit 1; }
chmod 644 "$new" && mv -f "$new" "$OUT" || exit 1
new=""
echo "plot.sh: wrote $OUT ($rows runs from $R)" >&2
