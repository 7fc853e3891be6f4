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
