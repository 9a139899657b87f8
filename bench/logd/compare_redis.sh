#!/usr/bin/env bash
# Acknowledged messages per second: serialserver-logd (--synchronous full, 50 connections sending
# batches of 100 with logd_bench) beside redis-server with --appendonly yes --appendfsync
# everysec taking the same messages with RPUSH pipelined 100 deep (redis-benchmark), from the
# same run. Needs a quiet machine: the figures mean nothing on a shared, busy one.
#
#   bench/logd/compare_redis.sh [BUILD_DIR] [SECONDS]
#
# BUILD_DIR holds bin/serialserver-logd and bin/logd_bench (default build/release). Needs
# redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
# shellcheck source=bench/logd/lib.sh
source "$(dirname "$0")/lib.sh"

logd_bench_init "${1:-}"
seconds=${2:-10}
for tool in redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "compare_redis.sh: $tool not installed" >&2; exit 1; }
done

redis_pid=""
cleanup() {
  [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  logd_bench_cleanup
}
trap cleanup EXIT

echo "== serialserver-logd --synchronous full: 50 connections, batches of 100, ${seconds}s"
logd_start 17070 --synchronous full
"$build/bin/logd_bench" --addr 127.0.0.1:17070 --connections 50 --batch 100 \
  --seconds "$seconds" --text-bytes 60

echo "== redis-server --appendonly yes --appendfsync everysec: RPUSH, 50 clients, pipeline 100"
redis-server --port 17071 --dir "$work" --appendonly yes --appendfsync everysec \
  --save '' --daemonize no --loglevel warning &
redis_pid=$!
sleep 1
# About as many requests as logd acknowledges in the same time at 0.5 M/s.
redis-benchmark -p 17071 -c 50 -P 100 -d 60 -n $((seconds * 500000)) -t rpush -q
