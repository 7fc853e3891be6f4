#!/bin/sh
# End-to-end test of the browser demo and clients/js/notify-client.js in
# Debian's chromium, driven by playwright-core (never a downloaded browser).
#
#   tests/browser/run.sh [GATEWAY_BINARY [WORK_DIR]]
#
# Starts its own redis-server on a free loopback port and the gateway with
# --demo --auth none --api-key, installs playwright-core with `npm ci` into
# WORK_DIR, then runs e2e.test.mjs and then sse.test.mjs (node:test). The screenshot of the page
# is written to WORK_DIR/demo.png. Registered with ctest as browser_e2e
# (tests/browser/CMakeLists.txt).
#
# Needs chromium, nodejs, npm, redis-server, redis-cli (scripts/install-deps.sh
# server test). Missing ones FAIL the test, with a message saying what to
# install; set NOTIFY_SKIP_BROWSER_TESTS=1 to skip it instead (exit 77).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gateway=${1:-${NOTIFY_GATEWAY_BIN:-$root/build/gateway/notify-gateway}}
work=${2:-${TMPDIR:-/tmp}/notify-browser-test}
chromium=${CHROMIUM:-/usr/bin/chromium}

missing=""
[ -x "$chromium" ] || missing="$missing chromium($chromium)"
for tool in node npm redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -x "$gateway" ] || missing="$missing notify-gateway($gateway)"
if [ -n "$missing" ]; then
    if [ "${NOTIFY_SKIP_BROWSER_TESTS:-0}" = 1 ]; then
        echo "browser_e2e: SKIPPED (NOTIFY_SKIP_BROWSER_TESTS=1), missing:$missing" >&2
        exit 77
    fi
    echo "browser_e2e: FAIL: missing:$missing" >&2
    echo "  install with: scripts/install-deps.sh server test  (chromium, nodejs, redis-server, redis-tools;" >&2
    echo "  npm comes with Node.js 20 from NodeSource, which playwright-core needs)" >&2
    echo "  or set CHROMIUM=/path/to/chromium; NOTIFY_SKIP_BROWSER_TESTS=1 skips this test" >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "browser_e2e: FAIL: node $(node --version) is too old (playwright-core needs 20+)" >&2
    exit 1
fi

mkdir -p "$work"
rm -f "$work/gateway.log" "$work/demo.png"
cp "$here/package.json" "$here/package-lock.json" "$here/lib.mjs" "$here/e2e.test.mjs" \
    "$here/sse.test.mjs" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "browser_e2e: FAIL: npm ci (playwright-core) failed in $work" >&2
    exit 1
}

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
redis_port=$(free_port)
gateway_port=$(free_port)
while [ "$gateway_port" = "$redis_port" ]; do gateway_port=$(free_port); done

redis_pid=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    if [ -f "$work/gateway.pid" ]; then
        gpid=$(cat "$work/gateway.pid")
        kill "$gpid" 2>/dev/null || true
        n=0 # it drains for --drain-seconds 1; nothing is left behind
        while kill -0 "$gpid" 2>/dev/null && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
        kill -9 "$gpid" 2>/dev/null || true
        rm -f "$work/gateway.pid"
    fi
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
i=0
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 50 ] || ! kill -0 "$redis_pid" 2>/dev/null; then
        echo "browser_e2e: FAIL: redis-server did not start on port $redis_port" >&2
        cat "$work/redis.log" >&2
        exit 1
    fi
    sleep 0.1
done

# The gateway; the Node test restarts it with exactly this command line
# (GATEWAY_BIN GATEWAY_ARGS) and keeps its pid in $work/gateway.pid.
GATEWAY_ARGS="--listen 127.0.0.1:$gateway_port --redis redis://127.0.0.1:$redis_port/0 \
--node-id browser-test-node --demo --auth none --api-key browser-test-key --drain-seconds 1 --log-level info"
export GATEWAY_BIN="$gateway" GATEWAY_ARGS REDIS_PORT="$redis_port" GATEWAY_PORT="$gateway_port"
export GATEWAY_NODE_ID="browser-test-node" API_KEY="browser-test-key" WORK_DIR="$work" CHROMIUM="$chromium"
# shellcheck disable=SC2086
"$gateway" $GATEWAY_ARGS >>"$work/gateway.log" 2>&1 &
echo $! >"$work/gateway.pid"
# shellcheck disable=SC2016  # JavaScript, not shell
node -e '
const url = `http://127.0.0.1:${process.env.GATEWAY_PORT}/readyz`;
const until = Date.now() + 15000;
(async () => {
  for (;;) {
    try { if ((await fetch(url)).ok) return; } catch {}
    if (Date.now() > until) { console.error(`browser_e2e: FAIL: gateway not ready at ${url}`); process.exit(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
})();' || { tail -n 30 "$work/gateway.log" >&2; exit 1; }

echo "browser_e2e: redis :$redis_port, gateway :$gateway_port ($gateway), work dir $work" >&2
cd "$work"
status=0
# One file after the other: both restart the one gateway.
node --test --test-reporter=spec e2e.test.mjs || status=$?
node --test --test-reporter=spec sse.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
    echo "browser_e2e: last gateway log lines ($work/gateway.log):" >&2
    tail -n 40 "$work/gateway.log" >&2
fi
exit "$status"
