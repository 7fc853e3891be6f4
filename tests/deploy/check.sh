#!/bin/sh
# Static checks of the deployment files (run by ctest as deploy_check):
#
#   docker-compose.yml           docker-compose config -q (when installed)
#   deploy/haproxy.cfg           haproxy -c (when installed) + required settings
#   deploy/Dockerfile            packages only from deploy/packages.txt groups,
#                                via scripts/install-deps.sh; runtime groups
#                                cover the daemon's shared libraries
#   deploy/notify-gateway.service  systemd-analyze verify (when available)
#   deploy/sysctl-notify-gateway.conf  syntax and required keys
#   shell scripts                shellcheck (when installed)
#
# Usage: tests/deploy/check.sh [path of the built notify-gateway]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
gateway_bin=${1:-}
case $gateway_bin in
'' | /*) ;;
*) gateway_bin=$(pwd)/$gateway_bin ;;
esac
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
skip() { echo "skip: $*"; }
ok() { echo "ok:   $*"; }

# Packages of a group, parsed exactly as scripts/install-deps.sh does.
group_pkgs() {
    line=$(grep "^$1:" "$root/deploy/packages.txt") || return 1
    echo "${line#*:}"
}

# ---- docker-compose.yml ---------------------------------------------------------
compose="$root/docker-compose.yml"
if command -v docker-compose >/dev/null 2>&1; then
    # A scratch HOME: docker-compose must not depend on the caller's config.
    if out=$(cd "$root" && HOME=$(mktemp -d) docker-compose -f "$compose" config -q 2>&1); then
        ok "docker-compose config -q"
    else
        fail "docker-compose config -q: $out"
    fi
    services=$(cd "$root" && docker-compose -f "$compose" config --services 2>/dev/null | sort | tr '\n' ' ')
    [ "$services" = "gateway-1 gateway-2 gateway-3 haproxy redis " ] ||
        fail "docker-compose services are '$services', want gateway-1..3, haproxy, redis"
    ids=$(cd "$root" && docker-compose -f "$compose" config 2>/dev/null | grep 'NOTIFY_NODE_ID:' | sort -u | wc -l)
    [ "$ids" -eq 3 ] || fail "docker-compose: $ids distinct NOTIFY_NODE_ID values, want 3"
else
    skip "docker-compose not installed (scripts/install-deps.sh test): compose file not validated"
fi
for want in 'image: redis:7' 'image: haproxy:2.6' 'dockerfile: deploy/Dockerfile' \
    'condition: service_healthy' 'NOTIFY_REDIS: "redis://redis:6379/0"' \
    './deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg' '"8080:8080"' 'healthcheck:'; do
    grep -qF "$want" "$compose" || fail "docker-compose.yml lacks '$want'"
done

# ---- deploy/haproxy.cfg ------------------------------------------------------------
cfg="$root/deploy/haproxy.cfg"
haproxy_bin=$(command -v haproxy 2>/dev/null || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || true)
if [ -n "$haproxy_bin" ]; then
    # Warnings are expected (gateway-N only resolve inside compose's network).
    if out=$("$haproxy_bin" -c -f "$cfg" 2>&1); then
        ok "haproxy -c -f deploy/haproxy.cfg"
    else
        fail "haproxy -c: $out"
    fi
    echo "$out" | grep '\[ALERT\]' && fail "haproxy -c printed alerts"
else
    skip "haproxy not installed (scripts/install-deps.sh test): config not validated"
fi
for want in 'balance leastconn' 'option forwardfor' 'option httpchk' 'uri /readyz' \
    'http-check expect status 200' 'timeout tunnel' 'timeout client-fin' 'timeout server-fin' \
    'timeout connect' 'timeout http-request' 'option redispatch' '# servers: begin' '# servers: end'; do
    grep -v '^[[:space:]]*#' "$cfg" | grep -qF "$want" || case $want in
        '#'*) grep -qF "$want" "$cfg" || fail "haproxy.cfg lacks '$want'" ;;
        *) fail "haproxy.cfg lacks '$want'" ;;
    esac
done
grep -E '^[[:space:]]*default-server' "$cfg" | grep -q ' inter ' ||
    fail "haproxy.cfg: default-server sets no check interval"

# ---- deploy/Dockerfile ---------------------------------------------------------------
df="$root/deploy/Dockerfile"
# Logical lines (continuations joined), comments dropped.
logical=$(sed -e '/^[[:space:]]*#/d' "$df" | awk '{ if (sub(/\\$/, "")) { acc = acc $0 " " } else { print acc $0; acc = "" } }')
# 1. Nothing installs packages but install-deps.sh.
if echo "$logical" | grep -Eq '(apt-get|apt|aptitude|dpkg)[[:space:]]+(-[^ ]+[[:space:]]+)*(install|-i)\b'; then
    fail "Dockerfile installs packages itself (use scripts/install-deps.sh <groups>)"
fi
# 2. No package of packages.txt is named in a RUN line.
all_pkgs=$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' -e 's/^[^:]*://' "$root/deploy/packages.txt" |
    tr ' ' '\n' | sort -u)
for p in $all_pkgs; do
    echo "$logical" | grep '^RUN' | sed 's/install-deps\.sh[^&;]*//' | grep -qw -- "$p" &&
        case $p in
        cmake) ;; # the build step runs cmake, it does not install it
        *) fail "Dockerfile RUN line names the package '$p': install it through a group" ;;
        esac
done
# 3. Per stage: what install-deps.sh installs, from the packages.txt it copied.
stage=0
stage_groups=""
final_groups=""
build_groups=""
echo "$logical" >"${TMPDIR:-/tmp}/deploy-check.$$"
while IFS= read -r line; do
    case $line in
    FROM*)
        stage=$((stage + 1))
        stage_groups=""
        has_list=0
        has_script=0
        ;;
    COPY*deploy/packages.txt*) has_list=1 ;;
    COPY*scripts/install-deps.sh*) has_script=1 ;;
    RUN*install-deps.sh*)
        if [ "$has_list" != 1 ] || [ "$has_script" != 1 ]; then
            fail "Dockerfile stage $stage runs install-deps.sh without copying deploy/packages.txt and scripts/install-deps.sh"
        fi
        groups=$(echo "$line" | sed 's/.*install-deps\.sh//; s/[&;|].*//')
        for g in $groups; do
            group_pkgs "$g" >/dev/null || fail "Dockerfile installs unknown group '$g'"
        done
        stage_groups="$stage_groups $groups"
        ;;
    esac
    [ "$stage" = 1 ] && build_groups=$stage_groups
    final_groups=$stage_groups
done <"${TMPDIR:-/tmp}/deploy-check.$$"
rm -f "${TMPDIR:-/tmp}/deploy-check.$$"
[ "$stage" -ge 2 ] || fail "Dockerfile is not multi-stage"
echo " $build_groups " | grep -q ' build ' || fail "Dockerfile build stage does not install the 'build' group"
echo " $final_groups " | grep -q ' runtime ' || fail "Dockerfile runtime stage does not install the 'runtime' group"
echo "$final_groups" | grep -Eq ' (build|test|server)( |$)' &&
    fail "Dockerfile runtime stage installs build/test/server groups"
final_pkgs=""
for g in $final_groups; do final_pkgs="$final_pkgs $(group_pkgs "$g")"; done
ok "Dockerfile installs groups: build stage [$build_groups ], runtime stage [$final_groups ] =$final_pkgs"
grep -Eq '^FROM debian:(12|bookworm) AS build' "$df" || fail "Dockerfile build stage is not debian:12"
grep -Eq '^FROM debian:(12|bookworm)-slim' "$df" || fail "Dockerfile runtime stage is not debian:12-slim"
grep -Eq '^USER [^0r]' "$df" || fail "Dockerfile runs as root (no USER)"
echo "$logical" | grep -q '^HEALTHCHECK .*/healthz' || fail "Dockerfile has no HEALTHCHECK on /healthz"
grep -q '^EXPOSE 8080' "$df" || fail "Dockerfile does not EXPOSE 8080"
grep -q '^ENTRYPOINT \["/usr/local/bin/notify-gateway"\]' "$df" || fail "Dockerfile ENTRYPOINT is not the daemon"
# The healthcheck's tool must come from a group of the runtime stage.
if echo "$logical" | grep '^HEALTHCHECK' | grep -qw curl; then
    echo " $final_pkgs " | grep -q ' curl ' || fail "HEALTHCHECK uses curl but no runtime-stage group installs it"
fi
# 4. The runtime groups hold every shared library the daemon links (or a
#    dependency of one of them, or libc): catches a new -l without a package.
if [ -n "$gateway_bin" ] && [ -x "$gateway_bin" ] && command -v ldd >/dev/null 2>&1 &&
    ldd "$gateway_bin" | grep -q 'libasan\|libubsan'; then
    skip "the daemon is a sanitizer build: shared-library coverage is checked on the normal build"
elif [ -n "$gateway_bin" ] && [ -x "$gateway_bin" ] && command -v dpkg-query >/dev/null 2>&1 &&
    command -v ldd >/dev/null 2>&1; then
    deps=" libc6 libgcc-s1 "
    for p in $final_pkgs; do
        deps="$deps $p $(dpkg-query -W -f='${Depends} ${Pre-Depends}' "$p" 2>/dev/null |
            tr ',|' '\n' | sed 's/(.*//; s/:any//; s/^ *//; s/ *$//' | tr '\n' ' ') "
    done
    for lib in $(ldd "$gateway_bin" | awk '$3 ~ /^\// { print $3 }'); do
        real=$(readlink -f "$lib")
        pkg=$(dpkg -S "$real" 2>/dev/null | head -1 | cut -d: -f1)
        [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1)
        case $pkg in
        '' | *-dev) ;; # not from a package (or a sanitizer build): nothing to say
        *) echo "$deps" | grep -q " $pkg " ||
            fail "the daemon links $lib from package $pkg, which no runtime-stage group installs" ;;
        esac
    done
    ok "runtime groups cover the daemon's shared libraries"
else
    skip "no built daemon given (or no dpkg/ldd): shared-library coverage not checked"
fi

# ---- systemd unit ------------------------------------------------------------------------
unit="$root/deploy/notify-gateway.service"
for want in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
    'Restart=on-failure' 'LimitNOFILE=1048576' 'EnvironmentFile=/etc/notify-gateway/env' 'User='; do
    grep -q "^$want" "$unit" || fail "notify-gateway.service lacks $want"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    tmpd=$(mktemp -d)
    # verify wants ExecStart to exist: point it at something that does.
    sed "s#^ExecStart=/usr/local/bin/notify-gateway#ExecStart=${gateway_bin:-/bin/true}#" "$unit" \
        >"$tmpd/notify-gateway.service"
    if out=$(systemd-analyze verify "$tmpd/notify-gateway.service" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify notify-gateway.service"
    else
        fail "systemd-analyze verify: $out"
    fi
    rm -rf "$tmpd"
else
    skip "systemd-analyze not available: unit not verified"
fi

# ---- sysctl ---------------------------------------------------------------------------------
sc="$root/deploy/sysctl-notify-gateway.conf"
bad=$(grep -Ev '^[[:space:]]*(#|$)' "$sc" | grep -Ev '^[a-z0-9_.-]+ = [0-9]+( [0-9]+)*$' || true)
if [ -z "$bad" ]; then
    ok "sysctl file syntax"
else
    fail "sysctl lines not 'key = numbers': $bad"
fi
for key in fs.file-max fs.nr_open net.core.somaxconn net.ipv4.ip_local_port_range \
    net.ipv4.tcp_mem net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.netfilter.nf_conntrack_max; do
    grep -q "^$key = " "$sc" || fail "sysctl file lacks $key"
done
# Every key a running kernel knows must exist (conntrack only when loaded).
keys=$(grep -Ev '^[[:space:]]*(#|$)' "$sc" | cut -d' ' -f1)
for key in $keys; do
    path=/proc/sys/$(echo "$key" | tr . /)
    case $key in net.netfilter.*) [ -d /proc/sys/net/netfilter ] || continue ;; esac
    [ -e "$path" ] || fail "sysctl key $key does not exist in this kernel"
done

# ---- shell scripts ---------------------------------------------------------------------------
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck -s sh "$root/deploy/local-cluster.sh" "$root/tests/deploy/check.sh"; then
        ok "shellcheck"
    else
        fail "shellcheck"
    fi
else
    skip "shellcheck not installed"
fi

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all deployment checks passed"
