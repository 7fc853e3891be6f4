#!/bin/sh
# Installs what is missing, builds, starts a private redis-server on a free
# loopback port and runs the gateway in the foreground on PORT (default
# 8080) in development mode (--auth none) with the browser demo at / (--demo).
# Ctrl-C drains and stops both.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/install-deps.sh build runtime server
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
port=${PORT:-8080}
dir=$(mktemp -d /tmp/notify-local.XXXXXX)
# A private redis-server on a random free port: 6379 may belong to someone.
for attempt in 1 2 3 4 5 6 7 8; do
    rport=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000))
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" &
    rpid=$!
    for i in 1 2 3 4 5 6 7 8 9 10; do
        redis-cli -p "$rport" ping >/dev/null 2>&1 && break
        sleep 0.2
    done
    kill -0 "$rpid" 2>/dev/null && redis-cli -p "$rport" ping >/dev/null 2>&1 && break
    rpid=""
done
[ -n "$rpid" ] || { echo "run-local: could not start redis-server (see $dir/redis.log)" >&2; exit 1; }
trap 'kill "$rpid" 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
apikey=dev-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
cat <<MSG

  demo page:    http://127.0.0.1:$port/            (open it in a browser)
  WebSocket:    ws://127.0.0.1:$port/ws?user_id=u42   (--auth none: development only)
  redis-server: 127.0.0.1:$rport (private, removed on exit)
  API key:      $apikey   (POST /publish; the demo page uses it)

  Try, in another terminal:
    redis-cli -p $rport PUBLISH 'notify:acct:{alice}' '{"type":"hello","content":{"body":"hi","meta_data":""}}'
    redis-cli -p $rport FCALL notify_publish 1 'notify:stream:{alice}' '{"type":"kept","content":{"body":"replayed on reconnect","meta_data":""}}'
    curl -s localhost:$port/metrics | grep ^notify_

MSG
build/gateway/notify-gateway --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$rport/0" \
    --auth none --demo --api-key "$apikey" --drain-delay 0 --drain-seconds 1 "$@"
