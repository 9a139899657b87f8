#!/usr/bin/env bash
# bench/recv_cost.sh: what the server's TCP read costs beside plainer ones. Builds
# bench/tools/recv_cost.c and runs each receive variant (read, recv, recvmsg with TCP_INQ, with
# one and two iovecs) ROUNDS times in turn, pinned to CPU ${CPU:-1}, N receives each.
#
# usage: bench/recv_cost.sh          (about 30 seconds)
# env:   ROUNDS=3  N=300000  CPU=1   (no Debian packages needed beyond gcc)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
N=${N:-300000}
CPU=${CPU:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
gcc -O2 -Wall -o "$OUT/recv_cost" "$ROOT/bench/tools/recv_cost.c"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  for mode in 0 1 2 3; do
    taskset -c "$CPU" "$OUT/recv_cost" "$mode" "$N"
  done
done
