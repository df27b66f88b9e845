#!/bin/sh
# Runs the workspace's test binaries side by side: `cargo test` runs them one
# after another, and most of them spend their time waiting (on emulated
# latency, back-off, a child process, a 60 s client timeout), so one binary at
# a time leaves the machine half idle. Each binary still runs its own tests on
# libtest's threads, exactly as `cargo test` would.
#
# usage: scripts/test-lanes.sh LANES < messages.json
#   messages.json: `cargo test --no-run --message-format=json-render-diagnostics`
#
# Each binary's output goes to target/test-lanes/<binary>.log and is printed
# when it fails. Exits non-zero if any binary failed, naming each.
set -eu

out="$PWD/target/test-lanes"

# One binary: run it from its package's directory as cargo does, log its
# output, print one line (and the whole log if it failed).
run_one() {
	dir=$1 exe=$2 log="$out/$(basename "$exe").log"
	start=$(date +%s)
	# Where GNU time is installed, each binary's CPU seconds are printed too.
	timer= cpu=
	[ -x /usr/bin/time ] && timer="/usr/bin/time -o $log.cpu -f %U+%S"
	if (cd "$dir" && CARGO_MANIFEST_DIR="$dir" $timer "$exe") > "$log" 2>&1; then status=ok; else status=FAILED; fi
	[ -s "$log.cpu" ] && cpu=", $(tail -n 1 "$log.cpu") CPU-s"
	result=$(grep '^test result:' "$log" | tail -n 1 || true)
	echo "test-lanes: $status in $(($(date +%s) - start)) s$cpu: ${exe##*/} (${dir#"$PWD"}) $result"
	if [ "$status" != ok ]; then
		echo "$exe" >> "$out/failed"
		sed 's/^/    /' "$log"
		return 1
	fi
}

if [ "${1:-}" = --one ]; then
	shift
	run_one "$@"
	exit
fi

lanes=${1:?usage: scripts/test-lanes.sh LANES < cargo-messages.json}
case $lanes in '' | *[!0-9]* | 0) echo "test-lanes: LANES must be a positive number, not '$lanes'" >&2; exit 2 ;; esac
rm -rf "$out"
mkdir -p "$out"

# The slowest binaries first, so none of them starts last and runs alone at
# the end (measured in `make test`; unknown names keep cargo's order after).
slow_first='smartmodule fluvio pipeline falcon_lake crash falcon properties client source'

# One "rank dir exe" line per test binary (a test-profile artifact with an
# executable; the binaries built for CARGO_BIN_EXE_* have a non-test profile).
awk -v slow="$slow_first" '
	BEGIN { n = split(slow, names, " "); for (i = 1; i <= n; i++) rank[names[i]] = i }
	/"reason":"compiler-artifact"/ {
		if (!match($0, /"profile":\{[^}]*\}/)) next
		if (substr($0, RSTART, RLENGTH) !~ /"test":true/) next
		if (!match($0, /"executable":"[^"]+"/)) next
		exe = substr($0, RSTART + 14, RLENGTH - 15)
		if (!match($0, /"manifest_path":"[^"]+"/)) next
		dir = substr($0, RSTART + 17, RLENGTH - 18); sub(/\/Cargo\.toml$/, "", dir)
		match($0, /"target":\{[^}]*"name":"[^"]+"/); t = substr($0, RSTART, RLENGTH)
		sub(/.*"name":"/, "", t); sub(/"$/, "", t)
		seen++
		printf "%d %s %s\n", (t in rank ? rank[t] : 100 + seen), dir, exe
	}' | sort -n -k1,1 | cut -d' ' -f2- > "$out/list"

count=$(wc -l < "$out/list")
[ "$count" -gt 0 ] || { echo "test-lanes: no test binaries in the cargo messages on standard input" >&2; exit 2; }
echo "test-lanes: $count test binaries, $lanes at a time"

started=$(date +%s)
# A failed binary is recorded in $out/failed; the others run on.
xargs -P "$lanes" -L 1 sh "$0" --one < "$out/list" || true

if [ -s "$out/failed" ]; then
	echo "test-lanes: $(wc -l < "$out/failed") of $count test binaries FAILED:" >&2
	sed 's/^/    /' "$out/failed" >&2
	exit 1
fi
echo "test-lanes: all $count test binaries passed in $(($(date +%s) - started)) s"
