#!/usr/bin/env bash
# bench/kernel_split.sh: where a server's CPU time per request goes, the demo server beside the
# limit peer, at one point (default C=1000 P=1 ping), split placement: server on CPU 0, the
# peers' load generator on CPU 1. `perf record -g` samples the server for 2 s of a 4 s run; the
# samples are split into user space and, in the kernel, the receive syscall (recvmsg for the
# demo, read for the limit peer), the send syscall (send / write: on loopback it also carries
# the packet into the generator's socket in softirq, and wakes the generator if it sleeps), and
# epoll_wait. "wake" is the part of all that in sock_def_readable (waking whoever waits on a
# socket: here, the generator). The generator's own CPU share tells whether it waited for the
# server (below 100 %).
#
# usage: bench/kernel_split.sh [C]     (about 30 seconds per round)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        ROUNDS=2  DEMO_ARGS="--threads 1"  BIN=build/release/bin  PEERS=../shared/peers
# Prints one line per server and round, all figures in ns per request. Loopback only; every
# process started here is stopped.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
C=${1:-1000}
ROUNDS=${ROUNDS:-2}
DEMO_ARGS=${DEMO_ARGS:---threads 1}
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
bench_build_c_peers
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
OUT=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT

# The children share (percent) of each kernel symbol named, from `perf report --children`.
# (The syscalls' inner functions: their x64 entry points are not always on the stack.)
shares() { # perf.data symbols...
  local data=$1; shift
  perf report -i "$data" --children --sort symbol --stdio -g none 2>/dev/null |
    awk -v want="$*" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) s[w[i]] = 0 }
      /%/ && $3 == "[k]" && ($4 in s) { v = $1; sub("%", "", v); s[$4] += v }
      END { for (i = 1; i <= n; i++) printf "%s ", s[w[i]]; print "" }'
}

measure() { # name command...
  local name=$1; shift
  local port; port=$(free_port)
  local -a cmd=("${@//\{PORT\}/$port}")
  taskset -c 0 "${cmd[@]}" >"$OUT/$name.log" 2>&1 &
  SERVER=$!
  wait_port "$port" || { echo "$name did not start" >&2; exit 1; }
  (sleep 1.5; perf record -F 2000 -g -p "$SERVER" -o "$OUT/$name.data" -- sleep 2 \
     >/dev/null 2>&1) &
  local recorder=$!
  local res
  res=$(taskset -c 1 "$PEERS_BIN/loadgen" -h 127.0.0.1 -p "$port" -c "$C" -P 1 -s 0 -t 2 \
        -d 4 -w 0.5 -q | grep '^RESULT' | tail -1)
  wait "$recorder" || true
  kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=
  local rps lg samples kernel
  rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<" $res")
  lg=$(sed -n 's/.* lg_cpu_pct=\([0-9.]*\).*/\1/p' <<<" $res")
  # Samples per shared object (-n): their sum, and the kernel's share in percent.
  read -r samples kernel < <(perf report -i "$OUT/$name.data" --no-children --stdio -n \
      -g none --sort dso 2>/dev/null |
    awk '/%/ { v = $1; sub("%", "", v); n += $2; if ($3 == "[kernel.kallsyms]") k = v }
         END { print n, k + 0 }')
  # Each sample stands for 1/2000 s; the requests in those 2 s are rps x 2. The shares come in
  # the order asked: three receive syscalls, three send syscalls, epoll_wait, the wake-up.
  shares "$OUT/$name.data" __sys_recvmsg __sys_recvfrom ksys_read __sys_sendto __sys_sendmsg \
      ksys_write do_epoll_wait sock_def_readable |
    awk -v name="$name" -v rps="$rps" -v lg="$lg" -v samples="$samples" -v kernel="$kernel" '{
      per = samples / 2000 * 1e9 / (rps * 2) / 100   # ns per request for one percent
      printf "%-6s rps=%-7d lg_cpu=%3s%%  ns/req: total=%5.0f user=%4.0f kernel=%5.0f recv=%5.0f send=%5.0f epoll_wait=%4.0f wake=%4.0f\n",
        name, rps, lg, 100 * per, (100 - kernel) * per, kernel * per, ($1 + $2 + $3) * per,
        ($4 + $5 + $6) * per, $7 * per, $8 * per }'
}

echo "kernel_split: C=$C P=1 ping, split (server CPU 0, generator CPU 1), $(date -u +%FT%TZ)"
for _ in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086
  measure demo "$BIN/serialserver-demo" --listen "127.0.0.1:{PORT}" --log-level warn $DEMO_ARGS
  measure limit "$PEERS_BIN/limit" -a 127.0.0.1 -p "{PORT}"
done
