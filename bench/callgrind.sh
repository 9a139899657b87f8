#!/usr/bin/env bash
# bench/callgrind.sh: instructions the demo server executes per request (valgrind --tool=callgrind),
# a figure that stays stable on a noisy machine, unlike requests per second. User-space
# instructions only: the kernel's share of each syscall is not counted.
#
# usage: bench/callgrind.sh [BIN]   BIN: a release bin dir with serialserver-demo and serialbench
#                                   (default build/release/bin)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        REQUESTS=20000  PORT=23480  PEERS=../shared/peers (the limit server's source)
# Points: C=50 P=1 ping (task 2), C=50 P=16 ping, C=50 P=1 4 KiB echo (task 1), C=1000 P=1 ping;
# one I/O thread.
# Figures per point: the demo's whole run's total over REQUESTS (start-up, 50 connects and
# shutdown included), and the marginal cost of a request (runs of REQUESTS and 5 x REQUESTS
# compared), for the demo and, measured the same way, for the limit peer (a minimal C server:
# what answering costs with no framework at all).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
ss_install_bench_deps
BIN=${1:-$ROOT/build/release/bin}
PEERS=${PEERS:-$ROOT/../shared/peers}
REQUESTS=${REQUESTS:-20000}
PORT=${PORT:-23480}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
gcc -O2 -Wall -o "$OUT/limit" "$PEERS/limit/limit.c"

# One callgrind run of a server (demo or limit) under serialbench; prints the server's total
# instructions.
instructions() { # server name c p size task requests
  local which=$1 name=$2 c=$3 p=$4 size=$5 task=$6 requests=$7
  local -a cmd=("$BIN/serialserver-demo" --listen "127.0.0.1:$PORT" --threads 1 --log-level warn)
  [[ $which == limit ]] && cmd=("$OUT/limit" -a 127.0.0.1 -p "$PORT")
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "${cmd[@]}" >"$OUT/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
  "$BIN/serialbench" "127.0.0.1:$PORT" -c "$c" -P "$p" -s "$size" -t "$task" \
    --requests "$requests" --json >"$OUT/$name.json"
  # The demo stops on SIGINT; the limit peer has no handler, and a background job of a script
  # ignores SIGINT, so it gets SIGTERM (callgrind still writes its counts).
  if [[ $which == limit ]]; then kill -TERM "$server"; else kill -INT "$server"; fi
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
marginal() { # server name c p size task
  local short long
  short=$(instructions "$1" "$2" "$3" "$4" "$5" "$6" "$REQUESTS")
  long=$(instructions "$1" "$2_long" "$3" "$4" "$5" "$6" "$((5 * REQUESTS))")
  echo "$short $(((long - short) / (4 * REQUESTS)))"
}
echo "| point | demo, whole run | demo, marginal | limit, marginal |"
echo "|---|---:|---:|---:|"
for point in "50 1 0 2 c50_ping" "50 16 0 2 c50_P16_ping" "50 1 4096 1 c50_echo4k" \
             "1000 1 0 2 c1000_ping"; do
  read -r c p size task name <<<"$point"
  demo_result=$(marginal demo "$name" "$c" "$p" "$size" "$task")
  limit_result=$(marginal limit "limit_$name" "$c" "$p" "$size" "$task")
  read -r short demo <<<"$demo_result"
  read -r _ limit <<<"$limit_result"
  echo "| $name | $((short / REQUESTS)) | $demo | $limit |"
done
