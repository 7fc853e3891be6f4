#!/bin/sh
# Installs the Debian packages of the given groups (see deploy/packages.txt),
# skipping what is already installed. Usage: scripts/install-deps.sh build runtime ...
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
pkgs=""
for group in "$@"; do
    line=$(grep "^$group:" "$here/deploy/packages.txt") || { echo "install-deps: unknown group '$group'" >&2; exit 2; }
    pkgs="$pkgs ${line#*:}"
done
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
