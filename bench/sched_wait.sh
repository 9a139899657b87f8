#!/usr/bin/env bash
# bench/sched_wait.sh: where the time goes when nothing is pinned. For the limit peer, the demo
# server with its defaults and the demo server with each --threads value in THREADS, runs the
# peers' load generator at C=50 (pipeline P, empty requests, task 2) with nothing pinned, and
# reads the kernel's scheduler statistics (/proc/PID/task/*/schedstat: time on a CPU, time
# runnable but waiting for one, times scheduled). A server with more busy threads than the cores
# the generator leaves it makes the generator, and itself, wait for a CPU: this shows how much.
#
# usage: bench/sched_wait.sh              (about 1 minute)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        P="1 16"  REPS=3  THREADS="1"  BIN=build/release/bin  PEERS=../shared/peers
# Prints one line per run: req/s, p50/p99 (us), the server's CPU and run-queue wait per request
# (us), how often its threads were scheduled per request, and the generator's CPU and
# run-queue wait (s) over its 2.5 s run. Loopback only; every process started here is stopped.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
REPS=${REPS:-3}
PIPELINES=${P:-"1 16"}
THREADS=${THREADS:-1}
bench_build_c_peers
OUT=$(mktemp)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -f "$OUT"; }
trap cleanup EXIT

# Sums over a process's threads: ns on a CPU, ns runnable and waiting, times scheduled.
schedstat() { cat /proc/"$1"/task/*/schedstat 2>/dev/null |
              awk '{r += $1; w += $2; s += $3} END {printf "%.0f %.0f %.0f\n", r, w, s}'; }

echo "date: $(date -u +%FT%TZ)  cpus: $(nproc)  commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
configs="limit default"
for t in $THREADS; do configs="$configs threads$t"; done
for p in $PIPELINES; do
  for rep in $(seq "$REPS"); do
    for cfg in $configs; do
      port=$(free_port)
      case $cfg in
        limit) "$PEERS_BIN/limit" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 & ;;
        default) "$BIN/serialserver-demo" --listen "127.0.0.1:$port" --log-level warn & ;;
        threads*) "$BIN/serialserver-demo" --listen "127.0.0.1:$port" --log-level warn \
                    --threads "${cfg#threads}" & ;;
      esac
      SERVER=$!
      wait_port "$port"
      sleep 0.3
      read -r run0 wait0 sched0 < <(schedstat "$SERVER")
      "$PEERS_BIN/loadgen" -h 127.0.0.1 -p "$port" -c 50 -P "$p" -s 0 -t 2 -d 2 -w 0.5 -q >"$OUT" &
      gen=$!
      sleep 2.4  # the generator's own statistics, read just before it ends
      read -r grun gwait _ < <(schedstat "$gen")
      wait "$gen"
      read -r run1 wait1 sched1 < <(schedstat "$SERVER")
      kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
      awk -v cfg="$cfg" -v p="$p" -v rep="$rep" -v r="$((run1 - run0))" -v w="$((wait1 - wait0))" \
          -v s="$((sched1 - sched0))" -v gr="$grun" -v gw="$gwait" '
        /^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
          n = f["validated"]; if (n == 0) n = 1
          printf "P=%s %-9s rep=%s req/s=%s p50=%s p99=%s server_cpu_us/req=%.2f server_wait_us/req=%.2f server_scheduled/req=%.3f generator_cpu_s=%.2f generator_wait_s=%.2f\n",
            p, cfg, rep, f["rps"], f["p50_us"], f["p99_us"], r / 1000 / n, w / 1000 / n, s / n, gr / 1e9, gw / 1e9 }' "$OUT"
    done
  done
done
