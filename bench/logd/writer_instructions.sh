#!/usr/bin/env bash
# Instructions per acknowledged message (valgrind --tool=callgrind): serialserver-logd's busiest
# thread (the writer, which commits every append) and the whole process, with logd_bench's 20
# connections sending batches of 100 for SECONDS. A figure that stays put on a noisy machine,
# unlike messages a second: use it before and after a change to the store's write path.
# User-space instructions only; start-up is included in the process's figure.
#
#   bench/logd/writer_instructions.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
# shellcheck source=bench/logd/lib.sh
source "$(dirname "$0")/lib.sh"

logd_bench_init "${1:-}"
seconds=${2:-10}
command -v valgrind >/dev/null || { echo "writer_instructions.sh: valgrind not installed" >&2; exit 1; }

valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/callgrind.%p" \
  "$build/bin/serialserver-logd" --listen 127.0.0.1:17074 --db "$work/logd.sqlite" \
  --log-level warn --synchronous full >/dev/null 2>&1 &
logd_pid=$!
sleep 6  # start-up under valgrind
result=$("$build/bin/logd_bench" --addr 127.0.0.1:17074 --connections 20 --batch 100 \
  --seconds "$seconds" --text-bytes 60)
echo "$result"
logd_stop  # callgrind writes its files at exit
acked=$(grep -o 'acked_messages=[0-9]*' <<<"$result" | cut -d= -f2)
for f in "$work"/callgrind.*-*; do
  awk '/^(summary|totals):/ { print $2; exit }' "$f"
done | sort -rn | awk -v acked="$acked" '
  NR == 1 { busiest = $1 }
  { all += $1 }
  END {
    printf "instructions per acknowledged message: busiest thread %.0f, whole process %.0f\n",
      busiest / acked, all / acked
  }'
