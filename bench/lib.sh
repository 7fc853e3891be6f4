# Shared by the bench scripts that pit the gateway against the reference
# forwarder (host.sh, rounds.sh): sourced, never run. Expects BUILD, FWD_SRC
# and tmp where noted.

# Builds the gateway and the bench (Release) in $BUILD and compiles the
# forwarder from $FWD_SRC into it; exits on failure.
bench_build() {
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNOTIFY_WERROR=ON >/dev/null || exit 1
    cmake --build "$BUILD" -j2 --target notify-gateway bench >/dev/null || exit 1
    cc -O2 -o "$BUILD/forwarder" "$FWD_SRC" -lhiredis -lcrypto || exit 1
}

freeport() { echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000)); }

# bench_redis PORT: a private redis-server on PORT (data and log in $tmp, no
# pub/sub output limit, so that a saturated subscriber is measured rather
# than disconnected); sets REDIS_PID and waits until it answers.
bench_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
        --client-output-buffer-limit 'pubsub 0 0 0' --logfile "$tmp/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 30); do redis-cli -p "$1" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# File-name tag of extra gateway flags ("--input-batch-ms 0" -> "_input_batch_ms_0").
flags_tag() { echo "$1" | tr -c 'a-z0-9\n' '_' | tr -s _; }

# val FILE KEY: the value of KEY=... in a bench output file.
val() { grep -m1 "^$2=" "$1" | cut -d= -f2; }

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

# Host-scale runs (host.sh, million.sh) record these beside the bench's figures.
sockstat() { # when: the kernel's TCP sockets and their memory (pages)
    awk -v w="$1" '/^TCP:/ { print "sockstat_tcp_inuse_" w "=" $3; print "sockstat_tcp_mem_pages_" w "=" $NF }' /proc/net/sockstat
    echo "sockstat_sockets_used_$1=$(awk '/^sockets:/ { print $3 }' /proc/net/sockstat)"
}

redis_info() { # port when: Redis's CPU (user+sys seconds), keys and memory
    redis-cli -p "$1" INFO | tr -d '\r' | awk -v w="$2" -F: '
        /^used_cpu_(user|sys):/ { cpu += $2 }
        /^used_memory:/ { mem = $2 }
        /^db0:keys=/ { split($2, a, /[=,]/); keys = a[2] }
        END { printf "redis_cpu_s_%s=%.2f\nredis_used_memory_%s=%d\nredis_keys_%s=%d\n", w, cpu, w, mem, w, keys + 0 }'
}
