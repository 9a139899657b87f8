#!/usr/bin/env bash
# Appends beside 64 tails that follow the log being written, as `serialserver-log tail --follow`
# does: logd_bench --connections 4 --batch 1 against serialserver-logd --synchronous full, with no
# followers, with 64 (the defaults), and with 64 and each of logd's two measures against them
# turned off (--tail-spread 0: woken tails answer at once; --max-followed-logs 0: each woken tail
# queries SQLite). The configurations run in turn in each round, so that the machine's drift
# touches them alike: compare the rows within a round.
#
#   bench/logd/followers.sh [BUILD_DIR] [SECONDS] [ROUNDS]
#
# BUILD_DIR holds bin/serialserver-logd and bin/logd_bench (default build/release).
set -euo pipefail
# shellcheck source=bench/logd/lib.sh
source "$(dirname "$0")/lib.sh"

logd_bench_init "${1:-}"
seconds=${2:-8}
rounds=${3:-3}

# One run: `$1` followers of the written log, the rest of the arguments to logd.
run() {
  local followers=$1
  shift
  logd_start 17073 --synchronous full "$@"
  "$build/bin/logd_bench" --addr 127.0.0.1:17073 --connections 4 --batch 1 \
    --seconds "$seconds" --followers "$followers" --follow-log bench | tail -1 |
    sed -E 's/.*messages_per_second=([0-9]+) batch_latency_ms_p50=([0-9.]+) p99=([0-9.]+).*/\1 \2 \3/'
  logd_stop
}

printf '| round | followers | logd flags | appends/s | p50 ms | p99 ms |\n|---|---|---|---:|---:|---:|\n'
for ((round = 1; round <= rounds; round++)); do
  for config in "0|" "64|" "64|--tail-spread 0" "64|--tail-spread 0 --max-followed-logs 0"; do
    followers=${config%%|*}
    flags=${config#*|}
    # shellcheck disable=SC2086 # the flags are words
    read -r rate p50 p99 < <(run "$followers" $flags)
    printf '| %d | %s | %s | %s | %s | %s |\n' "$round" "$followers" "${flags:-(defaults)}" \
      "$rate" "$p50" "$p99"
  done
done
