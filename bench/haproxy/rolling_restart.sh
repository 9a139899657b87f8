#!/usr/bin/env bash
# A rolling restart behind HAProxy, under load: HAProxy (TCP mode, health-checked with the
# keep-alive task) in front of two serialserver-demo servers on 127.0.0.1, and
# `serialbench --retry --idempotent -c 20` through it while each server in turn is sent SIGTERM,
# waited for, and started again on its port. Prints serialbench's summary; exits non-zero if any
# call failed (or a step timed out). The configuration it generates is the one that
# docs/deployment.md ("Behind HAProxy") explains.
#
#   bench/haproxy/rolling_restart.sh [BUILD_DIR] [SECONDS]
#
# BUILD_DIR holds bin/serialserver-demo and bin/serialbench (default build/release); SECONDS is
# the length of the serialbench run (default 15, at least 10). Needs haproxy (Debian: haproxy);
# it is run in the foreground from a temporary directory, not as a service. Ports: BASE_PORT
# (default 17080) for HAProxy, the next two for the servers, the one after for HAProxy's admin
# socket.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../scripts/lib.sh"
ss_install_bench_deps

build=${1:-build/release}
seconds=${2:-15}
base=${BASE_PORT:-17080}
front=$base
backend_ports=($((base + 1)) $((base + 2)))
admin=$((base + 3))
say() { echo "rolling_restart.sh: $*" >&2; }
for tool in "$build/bin/serialserver-demo" "$build/bin/serialbench"; do
  [[ -x $tool ]] || { say "$tool not built"; exit 1; }
done
command -v haproxy >/dev/null || { say "haproxy not installed"; exit 1; }
((seconds >= 10)) || { say "SECONDS must be at least 10"; exit 64; }

work=$(mktemp -d)
declare -A demo_pid=()
haproxy_pid=""
bench_pid=""
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local status=$? pid
  for pid in "${demo_pid[@]}" "$haproxy_pid" "$bench_pid"; do
    if [[ -n $pid ]]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# The configuration: see docs/deployment.md for why each setting is there.
cat >"$work/haproxy.cfg" <<EOF
global
    log stderr format raw daemon notice
    stats socket ipv4@127.0.0.1:$admin level admin

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 1s
    timeout client 31m
    timeout server 31m
    retries 3
    option redispatch 1

frontend serial
    bind 127.0.0.1:$front
    default_backend demos

backend demos
    balance leastconn
    option tcp-check
    tcp-check connect
    tcp-check send-binary fa00
    tcp-check expect binary 0000
    default-server check inter 500ms fall 2 rise 2
    server demo1 127.0.0.1:${backend_ports[0]}
    server demo2 127.0.0.1:${backend_ports[1]}
EOF

start_demo() {  # $1: the server's number (1 or 2)
  local port=${backend_ports[$(($1 - 1))]}
  "$build/bin/serialserver-demo" --listen "127.0.0.1:$port" --log-level warn --threads 1 \
    --grace 5s 2>>"$work/demo$1.log" &
  demo_pid[$1]=$!
}

# HAProxy's view of a server, from "show stat" on the admin socket: its status (UP, DOWN, ...)
# and the result of its last health check (L7OK: the keep-alive task was answered OK), as
# "UP L7OK".
server_status() {  # $1: the server's name
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$admin" && echo "show stat" >&3 && cat <&3) 2>/dev/null) ||
    return 0
  awk -F, -v name="$1" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) column[$i] = i; next }
    $1 == "demos" && $2 == name { print $column["status"], $column["check_status"] }' <<<"$reply"
}

wait_status() {  # $1: the server's name, $2: the status wanted ("UP L7OK", "DOWN"); up to 15 s
  for _ in $(seq 150); do
    [[ $(server_status "$1") == "$2"* ]] && return 0
    sleep 0.1
  done
  say "haproxy did not see $1 $2 within 15 s (it sees: $(server_status "$1"))"
  return 1
}

wait_listening() {  # $1: a port of 127.0.0.1; up to 15 s
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  say "nothing listens on 127.0.0.1:$1 after 15 s"
  return 1
}

start_demo 1
start_demo 2
wait_listening "${backend_ports[0]}"
wait_listening "${backend_ports[1]}"
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
haproxy_pid=$!
wait_status demo1 "UP L7OK"
wait_status demo2 "UP L7OK"
say "haproxy on 127.0.0.1:$front; demo1 and demo2 are UP L7OK (keep-alive health check passed)"

"$build/bin/serialbench" "127.0.0.1:$front" --retry --idempotent -c 20 -d "${seconds}s" -q \
  >"$work/bench.txt" 2>&1 &
bench_pid=$!
started=$SECONDS  # bash's clock, in seconds
sleep 2
for n in 1 2; do
  say "$((SECONDS - started))s: SIGTERM to demo$n"
  kill -TERM "${demo_pid[$n]}"
  status=0
  wait "${demo_pid[$n]}" || status=$?
  demo_pid[$n]=""
  ((status == 0)) || { say "demo$n exited with status $status"; exit 1; }
  say "$((SECONDS - started))s: demo$n exited; waiting for haproxy to see it DOWN"
  wait_status "demo$n" DOWN
  start_demo "$n"
  wait_status "demo$n" "UP L7OK"
  say "$((SECONDS - started))s: demo$n started again and UP"
  sleep 2
done

bench_status=0
wait "$bench_pid" || bench_status=$?
bench_pid=""
cat "$work/bench.txt"
echo "haproxy's log of the servers' states:"
grep -E "^(Server demos/|Health check .*2/2 UP)" "$work/haproxy.log" | sed 's/^/  /' || true
if ((bench_status != 0)); then
  say "serialbench exited with status $bench_status: calls failed"
  exit 1
fi
say "no call failed"
exit 0
