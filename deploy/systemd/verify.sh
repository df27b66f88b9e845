#!/bin/sh
# Checks the units with systemd-analyze verify (and prints their exposure score)
# against a scratch root holding the binary, so nothing is installed on this host.
# Usage: deploy/systemd/verify.sh [path/to/falcon-lake]   (default target/release, else target/debug)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-}
[ -n "$bin" ] || for b in "$repo/target/release/falcon-lake" "$repo/target/debug/falcon-lake"; do [ -x "$b" ] && bin=$b && break; done
[ -n "$bin" ] || { echo "build falcon-lake first (cargo build --release)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/usr/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$bin" "$root/usr/local/bin/falcon-lake"
cp "$(command -v curl)" "$(command -v systemctl)" "$root/usr/bin/"
cp "$here"/*.service "$here"/*.timer "$root/etc/systemd/system/"
units=$(cd "$here" && ls *.service *.timer | sed 's|^|/etc/systemd/system/|')
# verify exits 0 on unknown keys but prints them: any output is a failure.
out=$(systemd-analyze verify --root="$root" $units 2>&1) || { echo "$out" >&2; exit 1; }
[ -z "$out" ] || { echo "$out" >&2; exit 1; }
echo "systemd-analyze verify: $(echo $units | wc -w) units OK"
systemd-analyze security --offline=yes --root="$root" /etc/systemd/system/falcon-lake.service 2>&1 | tail -1
