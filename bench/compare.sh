#!/usr/bin/env bash
# bench/compare.sh: the demo server beside the peers (goserial: the Go original's way of serving;
# limit: a minimal single-threaded C epoll server, the physical limit), all driven by the same
# load generator at the same points, in one run; then streaming, idle memory and write syscalls.
#
# usage: bench/compare.sh            (about 10 minutes; results in $OUTDIR, table on stdout)
# env:   SERIALSERVER_SKIP_INSTALL=1 (do not install missing Debian packages)
#        PEERS=../shared/peers (where run-peers.sh is)  REPS=3  CONFIGS="split unpinned"
#        STREAM_BYTES=1073741824  IDLE_CONNS=10000  SKIP_PEERS=1 (only the extra measurements)
#        DEMO_ARGS="--threads 1" (extra flags for the demo server; default none: its defaults)
# Loopback only. Every process started here is stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
REPS=${REPS:-3}
CONFIGS=${CONFIGS:-"split unpinned"}
STREAM_BYTES=${STREAM_BYTES:-1073741824}
IDLE_CONNS=${IDLE_CONNS:-10000}
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/serialserver-compare/$STAMP}
mkdir -p "$OUTDIR"

log() { echo "$*" | tee -a "$OUTDIR/compare.log" >&2; }

# ---- build -------------------------------------------------------------------------------
if [ ! -x "$BIN/serialserver-demo" ] || [ ! -x "$BIN/stream_bench" ]; then
  (cd "$ROOT" && cmake --preset release >/dev/null && cmake --build --preset release -j2 \
     --target serialserver-demo stream_bench >/dev/null)
fi
bench_build_c_peers
(cd "$PEERS/goserial" && GOCACHE=${GOCACHE:-$PEERS_BIN/gocache} go build -o "$PEERS_BIN/goserial" .)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "demo flags: ${DEMO_ARGS:-(defaults)}"
} >"$OUTDIR/env.txt"
cat "$OUTDIR/env.txt" >&2

PIDS=()
stop_all() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
             for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
start() { # name prefix cmd... ; sets PORT and PID
  local name=$1 prefix=$2; shift 2
  PORT=$(free_port)
  local cmd=${*//\{PORT\}/$PORT}
  # shellcheck disable=SC2086
  $prefix $cmd >>"$OUTDIR/server-$name.log" 2>&1 &
  PID=$!; PIDS+=("$PID")
  wait_port "$PORT" || { log "!! $name did not start"; return 1; }
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "NA"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

DEMO="$BIN/serialserver-demo --listen 127.0.0.1:{PORT} --log-level warn${DEMO_ARGS:+ $DEMO_ARGS}"

# ---- 1. request/response points, via the peers' runner -------------------------------------
if [ "${SKIP_PEERS:-0}" != 1 ]; then
  log "== request/response points (run-peers.sh; about 5 minutes)"
  OUTDIR_PEERS=$OUTDIR/peers
  (cd "$ROOT" && OUTDIR=$OUTDIR_PEERS PEERS_BIN=$PEERS_BIN REPS=$REPS CONFIGS=$CONFIGS \
     EXTRA_NAME=cpp bash "$PEERS/run-peers.sh" "$DEMO") >"$OUTDIR/peers.log" 2>&1 || true
  # Ratios of the medians: cpp and go against limit, per config and point.
  awk -F'\t' '
    NR == 1 { next }
    $5 != "NA" { k = $1 SUBSEP $3 SUBSEP $2; rps[k] = rps[k] " " $5; p99[k] = p99[k] " " $7; cpu[k] = cpu[k] " " $9
                 if (!(($1 SUBSEP $3) in seen)) { seen[$1 SUBSEP $3] = 1; order[++n] = $1 SUBSEP $3 } }
    function med(s,  a, m, i, j, t) { m = split(s, a, " "); if (!m) return 0
      for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
    END {
      print "| config | point | cpp rps | limit rps | go rps | cpp/limit | go/limit | cpp p99 us | limit p99 us | cpp p99/limit | cpp CPU us/req | limit CPU us/req | cpp CPU/limit |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) { split(order[i], cp, SUBSEP); c = order[i] SUBSEP "cpp"; l = order[i] SUBSEP "limit"; g = order[i] SUBSEP "go"
        cr = med(rps[c]); lr = med(rps[l]); gr = med(rps[g]); cq = med(p99[c]); lq = med(p99[l]); cc = med(cpu[c]); lc = med(cpu[l])
        printf "| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %s | %s | %.2f | %s | %s | %.2f |\n", cp[1], cp[2], cr, lr, gr,
          lr ? cr / lr : 0, lr ? gr / lr : 0, cq, lq, lq ? cq / lq : 0, cc, lc, lc ? cc / lc : 0 }
    }' "$OUTDIR_PEERS/raw.tsv" >"$OUTDIR/points.md" || true
fi

# ---- 2. streaming: 1 GiB into task 6, 1 GiB from task 4, beside limit echoing 1 GiB ---------
log "== streaming ($STREAM_BYTES bytes, $REPS runs each, median)"
echo "| config | measurement | MB/s (median) | ratio to limit echo (one direction) | server peak RSS KiB |" >"$OUTDIR/stream.md"
echo "|---|---|---:|---:|---:|" >>"$OUTDIR/stream.md"
for cfg in $CONFIGS; do
  case $cfg in split) SC="taskset -c 0"; LC="taskset -c 1" ;; *) SC=""; LC="" ;; esac
  start limit "$SC" "$PEERS_BIN/limit -a 127.0.0.1 -p {PORT}"; LPORT=$PORT
  # No request size limit: the demo's default (64 MiB) would answer the 1 GiB upload Error 254.
  start cpp "$SC" "$DEMO --max-request-bytes 0"; CPORT=$PORT; CPID=$PID
  limit_mbps=$(for _ in $(seq "$REPS"); do $LC "$BIN/stream_bench" echo 127.0.0.1 "$LPORT" "$STREAM_BYTES" | sed -n 's/.*mbps=//p'; done | median)
  up=$(for _ in $(seq "$REPS"); do $LC "$BIN/stream_bench" upload 127.0.0.1 "$CPORT" 6 "$STREAM_BYTES" | sed -n 's/.*mbps=//p'; done | median)
  down=$(for _ in $(seq "$REPS"); do $LC "$BIN/stream_bench" download 127.0.0.1 "$CPORT" "$STREAM_BYTES" | sed -n 's/.*mbps=//p'; done | median)
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$CPID/status")
  echo "| $cfg | limit: echo 1 GiB | $limit_mbps | 1.00 | |" >>"$OUTDIR/stream.md"
  echo "| $cfg | cpp: 1 GiB request into task 6 | $up | $(awk -v a="$up" -v b="$limit_mbps" 'BEGIN{printf "%.2f", a/b}') | $peak |" >>"$OUTDIR/stream.md"
  echo "| $cfg | cpp: 1 GiB response from task 4 | $down | $(awk -v a="$down" -v b="$limit_mbps" 'BEGIN{printf "%.2f", a/b}') | $peak |" >>"$OUTDIR/stream.md"
  stop_all
done

# ---- 3. resident memory per idle connection ------------------------------------------------
log "== memory with $IDLE_CONNS idle connections"
echo "| server | RSS before KiB | RSS with $IDLE_CONNS idle KiB | per connection bytes |" >"$OUTDIR/memory.md"
echo "|---|---:|---:|---:|" >>"$OUTDIR/memory.md"
for name in cpp go; do
  if [ $name = cpp ]; then start cpp "" "$DEMO"; else start go "" "$PEERS_BIN/goserial -addr 127.0.0.1:{PORT}"; fi
  SPID=$PID
  sleep 0.5
  before=$(rss_kb "$SPID")
  "$BIN/stream_bench" idle 127.0.0.1 "$PORT" "$IDLE_CONNS" 6 >"$OUTDIR/idle-$name.txt" &
  IPID=$!
  for _ in $(seq 200); do grep -q READY "$OUTDIR/idle-$name.txt" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  after=$(rss_kb "$SPID")
  wait "$IPID" || true
  echo "| $name | $before | $after | $(( (after - before) * 1024 / IDLE_CONNS )) |" >>"$OUTDIR/memory.md"
  stop_all
done

# ---- 4. write syscalls per response at P=16 -------------------------------------------------
if command -v strace >/dev/null; then
  log "== write syscalls per response at C=50 P=16"
  start cpp "" "$DEMO"; SPID=$PID
  out=$(mktemp)
  timeout 60 strace -c -f -q -e trace=write,writev,sendto,sendmsg -p "$SPID" -o "$out" &
  STPID=$!
  sleep 1
  res=$("$PEERS_BIN/loadgen" -h 127.0.0.1 -p "$PORT" -c 50 -P 16 -s 0 -t 2 -d 3 -w 0.5 -q | grep '^RESULT' | tail -1)
  kill -INT "$STPID" 2>/dev/null || true; wait "$STPID" 2>/dev/null || true
  calls=$(awk '$NF ~ /^(write|writev|sendto|sendmsg)$/ {s += $4} END {print s + 0}' "$out")
  validated=$(grep -o ' validated=[0-9]*' <<<"$res" | head -1 | cut -d= -f2)
  {
    echo "| measurement | value |"
    echo "|---|---:|"
    echo "| write syscalls (strace -c, whole run incl. warm-up) | $calls |"
    echo "| responses validated by loadgen (measured part) | $validated |"
    echo "| write syscalls per response (upper bound) | $(awk -v c="$calls" -v n="$validated" 'BEGIN{ if (n>0) printf "%.3f", c/n; else print "NA"}') |"
  } >"$OUTDIR/syscalls.md"
  rm -f "$out"
  stop_all
else
  echo "strace not installed: write syscalls not counted" >"$OUTDIR/syscalls.md"
fi

# ---- table ----------------------------------------------------------------------------------
{
  echo "# serialserver compare run $STAMP"
  echo
  sed 's/^/    /' "$OUTDIR/env.txt"
  echo
  [ -f "$OUTDIR/points.md" ] && { echo "## Requests (medians of $REPS)"; echo; cat "$OUTDIR/points.md"; echo; }
  echo "## Streaming"; echo; cat "$OUTDIR/stream.md"; echo
  echo "## Idle memory"; echo; cat "$OUTDIR/memory.md"; echo
  echo "## Write syscalls at P=16"; echo; cat "$OUTDIR/syscalls.md"
} | tee "$OUTDIR/summary.md"
log "results in $OUTDIR"
