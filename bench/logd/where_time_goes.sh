#!/usr/bin/env bash
# Where serialserver-logd's CPU time goes under logd_bench (--synchronous full, 50 connections
# sending batches of 100): perf samples of the logd process by thread (the writer thread is
# named logd-writer), by shared object (SQLite, libc, the kernel, logd itself) and the top
# symbols, beside the context switches per acknowledged message. Also runs the same load with
# --synchronous normal, to show what the fsync at each commit costs.
#
#   bench/logd/where_time_goes.sh [BUILD_DIR] [SECONDS]
#
# BUILD_DIR holds bin/serialserver-logd and bin/logd_bench (default build/release). Needs perf
# (Debian: linux-perf) and a kernel that lets this user record (perf_event_paranoid <= 1, or
# root). Needs a quiet machine: the shares mean little on a busy one.
set -euo pipefail
# shellcheck source=bench/logd/lib.sh
source "$(dirname "$0")/lib.sh"

logd_bench_init "${1:-}"
seconds=${2:-8}

# One run: logd with `$1` as --synchronous, logd_bench for $seconds, perf on logd throughout.
run() {
  local synchronous=$1
  logd_start 17072 --synchronous "$synchronous"
  perf record -q -F 999 -g -o "$work/perf.data" -p "$logd_pid" -- sleep "$seconds" \
    >/dev/null 2>&1 &
  local perf_pid=$!
  perf stat -e context-switches -p "$logd_pid" -o "$work/stat.txt" -- sleep "$seconds" &
  local stat_pid=$!
  "$build/bin/logd_bench" --addr 127.0.0.1:17072 --connections 50 --batch 100 \
    --seconds "$seconds" --text-bytes 60 | tee "$work/bench.txt"
  wait "$perf_pid" "$stat_pid"
  logd_stop
  local acked switches
  acked=$(grep -o 'acked_messages=[0-9]*' "$work/bench.txt" | cut -d= -f2)
  switches=$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$work/stat.txt")
  echo "context switches in logd: $switches, $(awk -v s="$switches" -v a="$acked" \
    'BEGIN { printf "%.3f", s / a }') per acknowledged message"
}

echo "== --synchronous full (the default): ${seconds}s"
run full
echo
echo "-- logd's CPU samples by thread (name: samples)"
perf script -i "$work/perf.data" -F comm,tid 2>/dev/null | awk '{print $1}' | sort | uniq -c |
  sort -rn | awk '{printf "  %-20s %s\n", $2, $1}'
echo "-- by thread and shared object (share of all of logd's samples)"
perf report -i "$work/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null |
  grep '%' | sed -n '1,10p'
echo "-- the top symbols"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
  grep '%' | sed -n '1,15p'
echo
echo "== --synchronous normal (no fsync at each commit): ${seconds}s"
run normal
