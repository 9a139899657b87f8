#!/usr/bin/env bash
# bench/cache_misses.sh: first-level data cache misses per request in the demo server, from
# callgrind's cache model. With many connections each request finds its connection's state out of
# the cache, so the cache lines a request touches, more than its instructions, set its cost at
# C=1000 (bench/history.md, runs K to Q). The model counts those lines at C=50 on any machine and does
# not move with the host's load, unlike requests per second.
#
# usage: bench/cache_misses.sh [BIN]   BIN: a release bin dir with serialserver-demo and serialbench
#                                      (default build/release/bin)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        C=50 (connections)  P=1 (pipeline depth)  REQUESTS=40000  PORT=23490
# The model: a 48 KiB 12-way first level and a 1 MiB 16-way last level (this machine's level-2
# cache), 64-byte lines. One I/O thread; counters are zeroed after a warm-up run of 5,000
# requests, so start-up is not counted, but the measured run's connects are (C of them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
ss_install_bench_deps
BIN=${1:-$ROOT/build/release/bin}
C=${C:-50}
P=${P:-1}
REQUESTS=${REQUESTS:-40000}
PORT=${PORT:-23490}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=1048576,16,64 \
  --callgrind-out-file="$OUT/cg.out" \
  "$BIN/serialserver-demo" --listen "127.0.0.1:$PORT" --threads 1 --log-level warn \
  >"$OUT/server.log" 2>&1 &
server=$!
for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
bench() { "$BIN/serialbench" "127.0.0.1:$PORT" -c "$C" -P "$P" -s 0 -t 2 --requests "$1" --json; }
bench 5000 >"$OUT/warm.json"
callgrind_control -z "$server" >/dev/null 2>&1
bench "$REQUESTS" >"$OUT/run.json"
callgrind_control -d "$server" >/dev/null 2>&1
kill -INT "$server"
wait "$server" || true
grep -q '"errors":0' "$OUT/run.json" || { echo "serialbench saw errors" >&2; exit 1; }
# The dump after zeroing is the file's ".1" part. awk reads to the end (see bench/callgrind.sh).
callgrind_annotate "$OUT/cg.out.1" 2>/dev/null |
  awk -v n="$REQUESTS" '/PROGRAM TOTALS/ && !found {
      # Without the percentages (absent after a zero) and the commas, the columns are:
      # Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
      line = $0
      gsub(/\([^)]*\)/, "", line)
      gsub(",", "", line)
      split(line, v, " ")
      printf "instructions per request: %.0f\n", v[1] / n
      printf "first-level data misses per request: %.1f (reads %.1f, writes %.1f)\n", (v[5] + v[6]) / n, v[5] / n, v[6] / n
      printf "last-level data misses per request: %.2f\n", (v[8] + v[9]) / n
      found = 1
    }'
