#!/usr/bin/env bash
# bench/callgrind.sh: instructions the demo server executes per request (valgrind --tool=callgrind),
# a figure that stays stable on a noisy machine, unlike requests per second. User-space
# instructions only: the kernel's share of each syscall is not counted.
#
# usage: bench/callgrind.sh [BIN]   BIN: a release bin dir with serialserver-demo and serialbench
#                                   (default build/release/bin)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        REQUESTS=20000  PORT=23480
# Points: C=50 P=1 ping (task 2), C=50 P=16 ping, C=50 P=1 4 KiB echo (task 1); one I/O thread.
# Two figures per point: the whole run's total over REQUESTS (start-up, 50 connects and shutdown
# included), and the marginal cost of a request (runs of REQUESTS and 5 x REQUESTS compared).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
ss_install_bench_deps
BIN=${1:-$ROOT/build/release/bin}
REQUESTS=${REQUESTS:-20000}
PORT=${PORT:-23480}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# One callgrind run of the demo server under serialbench; prints the server's total instructions.
instructions() { # name c p size task requests
  local name=$1 c=$2 p=$3 size=$4 task=$5 requests=$6
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$BIN/serialserver-demo" \
    --listen "127.0.0.1:$PORT" --threads 1 --log-level warn >"$OUT/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
  "$BIN/serialbench" "127.0.0.1:$PORT" -c "$c" -P "$p" -s "$size" -t "$task" \
    --requests "$requests" --json >"$OUT/$name.json"
  kill -INT "$server"
  wait "$server" || true
  grep -q '"errors":0' "$OUT/$name.json" || { echo "$name: serialbench saw errors" >&2; exit 1; }
  # awk reads to the end: an early exit (grep -m1) would kill callgrind_annotate with SIGPIPE,
  # which pipefail turns into a failure of the script.
  callgrind_annotate "$OUT/$name.out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ && !found {gsub(",", "", $1); print $1; found = 1}'
}

# Whole run: the total over REQUESTS (start-up, the dynamic linker's relocations, 50 connects and
# shutdown included; the figure earlier entries of BENCHMARKS.md give). Marginal: the difference
# between a run of 5 x REQUESTS and one of REQUESTS, over 4 x REQUESTS: what one more request
# costs once the server is running.
echo "| point | instructions per request, whole run | marginal |"
echo "|---|---:|---:|"
for point in "50 1 0 2 c50_ping" "50 16 0 2 c50_P16_ping" "50 1 4096 1 c50_echo4k"; do
  read -r c p size task name <<<"$point"
  short=$(instructions "$name" "$c" "$p" "$size" "$task" "$REQUESTS")
  long=$(instructions "${name}_long" "$c" "$p" "$size" "$task" "$((5 * REQUESTS))")
  echo "| $name | $((short / REQUESTS)) | $(((long - short) / (4 * REQUESTS))) |"
done
