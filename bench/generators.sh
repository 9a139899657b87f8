#!/usr/bin/env bash
# bench/generators.sh: is serialbench ever the bottleneck? Drives the peers' C limit server with
# the peers' loadgen and with serialbench (each engine in ENGINES) at the same points (ping: task
# 2, empty request, pipeline 1, C in CONNS), split placement (server on CPU 0, generator on
# CPU 1), NGROUPS groups with the order of the generators rotated from group to group so that none
# always runs first. The limit server is started once for all runs.
#
# usage: bench/generators.sh              (about 3 minutes with the defaults)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        NGROUPS=10  CONNS="1 50"  ENGINES="epoll io_uring"  BIN=build/release/bin
#        PEERS=../shared/peers
# Prints every run (req/s, errors, the generator's and the limit server's CPU over the run), then
# per C: each generator's median req/s, its ratio to loadgen's median, the median of its per-group
# ratios to the loadgen run of the same group and in how many groups it was at least as fast.
# Loopback only; every process started here is stopped.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
NGROUPS=${NGROUPS:-10}
CONNS=${CONNS:-"1 50"}
ENGINES=${ENGINES:-"epoll io_uring"}
[ "$(nproc)" -ge 2 ] || { echo "generators.sh: needs two CPUs for the split placement" >&2; exit 1; }
bench_build_c_peers
RUNS=$(mktemp)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; rm -f "$RUNS"; }
trap cleanup EXIT

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

port=$(free_port)
# The limit peer has no signal handler of its own; SIGTERM (the default action) ends it.
taskset -c 0 "$PEERS_BIN/limit" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
SERVER=$!
wait_port "$port"
HZ=$(getconf CLK_TCK)

generators="loadgen"
for e in $ENGINES; do generators="$generators $e"; done
read -r -a gens <<<"$generators"
echo "date: $(date -u +%FT%TZ)  cpus: $(nproc)  commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "group C generator req/s errors generator_cpu_% limit_cpu_%"
for g in $(seq "$NGROUPS"); do
  for c in $CONNS; do
    for i in $(seq 0 $((${#gens[@]} - 1))); do
      gen=${gens[$(((i + g) % ${#gens[@]}))]}
      t0=$(cpu_ticks "$SERVER")
      s0=$(date +%s.%N)
      if [ "$gen" = loadgen ]; then
        line=$(taskset -c 1 "$PEERS_BIN/loadgen" -h 127.0.0.1 -p "$port" -c "$c" -P 1 -s 0 -t 2 \
                 -d 2 -w 0.5 -q | grep '^RESULT' | tail -1)
        rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
        errs=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
        gcpu=$(sed -n 's/.* lg_cpu_pct=\([0-9.]*\).*/\1/p' <<<"$line")
      else
        json=$(taskset -c 1 "$BIN/serialbench" "127.0.0.1:$port" -c "$c" -P 1 -s 0 -t 2 -d 2s \
                 -w 500ms --json --engine "$gen")
        rps=$(sed -n 's/.*"requests_per_second":\([0-9.]*\).*/\1/p' <<<"$json")
        errs=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$json")
        gcpu=$(sed -n 's/.*"cpu_percent":\([0-9.]*\).*/\1/p' <<<"$json")
      fi
      t1=$(cpu_ticks "$SERVER")
      s1=$(date +%s.%N)
      lcpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v s0="$s0" -v s1="$s1" \
               'BEGIN {printf "%.0f", 100 * t / hz / (s1 - s0)}')
      echo "$g $c $gen ${rps:-0} ${errs:-?} ${gcpu:-?} $lcpu" | tee -a "$RUNS"
    done
  done
done

echo
echo "| C | generator | req/s (median) | against loadgen's median | per-group ratio (median) | groups at least as fast | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
for c in $CONNS; do
  for gen in "${gens[@]}"; do
    awk -v c="$c" -v gen="$gen" '
      function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      $2 == c && $3 == "loadgen" { base[$1] = $4; lg[++nl] = $4 }
      $2 == c && $3 == gen { mine[$1] = $4; me[++nm] = $4; errs += $5 }
      END {
        for (g in mine) if (g in base && base[g] > 0) { r[++nr] = mine[g] / base[g]; if (mine[g] >= base[g]) wins++ }
        ml = median(lg, nl); mm = median(me, nm)
        w = gen == "loadgen" ? "-" : sprintf("%d of %d", wins, nr)
        printf "| %s | %s | %.0f | %.3fx | %.3f | %s | %d |\n", c, gen, mm, mm / ml, median(r, nr), w, errs
      }' "$RUNS"
  done
done
