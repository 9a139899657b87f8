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
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../scripts/lib.sh"
ss_install_bench_deps

build=${1:-build/release}
seconds=${2:-10}
for tool in "$build/bin/serialserver-logd" "$build/bin/logd_bench"; do
  [[ -x $tool ]] || { echo "compare_redis.sh: $tool not built" >&2; exit 1; }
done
for tool in redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "compare_redis.sh: $tool not installed" >&2; exit 1; }
done

work=$(mktemp -d)
logd_pid=""
redis_pid=""
cleanup() {
  [[ -n $logd_pid ]] && kill "$logd_pid" 2>/dev/null && wait "$logd_pid" 2>/dev/null
  [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== serialserver-logd --synchronous full: 50 connections, batches of 100, ${seconds}s"
"$build/bin/serialserver-logd" --listen 127.0.0.1:17070 --db "$work/logd.sqlite" \
  --synchronous full --log-level warn &
logd_pid=$!
sleep 1
"$build/bin/logd_bench" --addr 127.0.0.1:17070 --connections 50 --batch 100 \
  --seconds "$seconds" --text-bytes 60

echo "== redis-server --appendonly yes --appendfsync everysec: RPUSH, 50 clients, pipeline 100"
redis-server --port 17071 --dir "$work" --appendonly yes --appendfsync everysec \
  --save '' --daemonize no --loglevel warning &
redis_pid=$!
sleep 1
# About as many requests as logd acknowledges in the same time at 0.5 M/s.
redis-benchmark -p 17071 -c 50 -P 100 -d 60 -n $((seconds * 500000)) -t rpush -q
