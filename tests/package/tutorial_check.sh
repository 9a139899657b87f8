#!/usr/bin/env bash
# Runs tutorial-server (examples/tutorial, docs/tutorial.md) on a Unix socket, calls its tasks with
# serialctl as the tutorial does and checks the answers, then stops it with SIGTERM and checks
# that it shuts down cleanly. Bounded: every wait has a limit; the server and the temporary
# directory are removed on any exit.
#
# Usage: tutorial_check.sh TUTORIAL_SERVER SERIALCTL
set -euo pipefail

server_bin="$1"
serialctl="$2"
work="$(mktemp -d)"
server_pid=""

cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "tutorial_check: FAIL: $*" >&2
  if [[ -f "$work/server.log" ]]; then
    echo "--- server log:" >&2
    cat "$work/server.log" >&2
  fi
  exit 1
}

# Calls serialctl and captures its status, stdout as hex, and stderr.
call() {
  local status=0
  timeout 60 "$serialctl" "$@" >"$work/out" 2>"$work/err" || status=$?
  last_status=$status
  last_hex="$(od -An -v -tx1 "$work/out" | tr -d ' \n')"
  last_err="$(cat "$work/err")"
}

expect() {  # expect STATUS HEX-STDOUT WHAT
  [[ "$last_status" == "$1" ]] || fail "$3: exit status $last_status, expected $1 (stderr: $last_err)"
  [[ "$last_hex" == "$2" ]] || fail "$3: output $last_hex, expected $2"
}

sock="$work/tutorial.sock"
"$server_bin" "$sock" 2>"$work/server.log" &
server_pid=$!

# The socket appears once the listener is bound; 30 s is far more than a loaded machine needs.
for ((i = 0; i < 300; i++)); do
  [[ -S "$sock" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening"
  sleep 0.1
done
[[ -S "$sock" ]] || fail "no socket after 30 s"

call call "$sock" 1 --data 68656c6c6f  # "hello"
expect 0 48454c4c4f "upper"           # "HELLO"

call call "$sock" 2 --data '00000001 00000002 00000003 0000000a'
# count 4, sum 16 (uint64), min 1, max 10
expect 0 "00000004""0000000000000010""00000001""0000000a" "stats"

call call "$sock" 2 --data 000001
expect 1 "" "stats of 3 bytes"
[[ "$last_err" == *"serialctl: error 1"* ]] || fail "stats of 3 bytes: stderr '$last_err'"

call call "$sock" 2
expect 1 "" "stats of nothing"
[[ "$last_err" == *"serialctl: error 2"* ]] || fail "stats of nothing: stderr '$last_err'"

call call "$sock" 3 --data 00000032  # 50 ms
expect 0 646f6e65 "delay 50 ms"       # "done"

call call "$sock" 3 --data 00002710 --timeout 300ms  # 10 s, but the caller waits 300 ms
expect 3 "" "delay past the caller's timeout"

call call "$sock" 9
expect 1 "" "unknown task"
[[ "$last_err" == *"serialctl: error 255 (unknown task)"* ]] || fail "unknown task: stderr '$last_err'"

call keepalive "$sock"
expect 0 "$(printf 'OK\n' | od -An -tx1 | tr -d ' \n')" "keepalive"

# Graceful shutdown: the server still serves the delay task above (until its 10 s are up or the
# 3 s grace period ends), then exits 0.
kill -TERM "$server_pid"
status=0
for ((i = 0; i < 300; i++)); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "still running 30 s after SIGTERM"
wait "$server_pid" || status=$?
server_pid=""
[[ "$status" == 0 ]] || fail "exit status $status after SIGTERM"
grep -q "listening on $sock" "$work/server.log" || fail "no 'listening on' line in the log"
grep -q "stopped" "$work/server.log" || fail "no 'stopped' line in the log"
echo "tutorial_check: OK"
