#!/usr/bin/env bash
# Runs tutorial-server (examples/tutorial, docs/tutorial.md) on a Unix socket, calls its tasks with
# serialctl as the tutorial does and checks the answers, then stops it with SIGTERM while a task
# runs (section 9) and checks that it shuts down cleanly. Bounded: every wait has a limit; the
# server and the temporary directory are removed on any exit.
#
# The log lines and serialctl messages that the tutorial shows are compared with the real ones.
# The expected lines live in one place, docs/tutorial.md itself: every line of it that starts
# with a "[YYYY-MM-DD" timestamp is a log line the server must print (sections 5, 8 and 9), and
# the line after a `$ serialctl call ...` command quoted below is what serialctl must print.
# Both sides are compared after normalise() below, which masks only what differs from run to run
# (times, addresses, connection ids, durations, the number of I/O threads). When the format of
# the log changes, run the tutorial's commands and paste the new lines into the tutorial.
#
# Usage: tutorial_check.sh TUTORIAL_SERVER SERIALCTL [TUTORIAL_MD]
set -euo pipefail

server_bin="$1"
serialctl="$2"
tutorial="${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/docs/tutorial.md}"
[[ -r "$tutorial" ]] || { echo "tutorial_check: FAIL: cannot read $tutorial" >&2; exit 1; }
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

# What varies from run to run, masked in the tutorial's lines and in the real ones alike: the
# time stamp, addresses (TCP in the tutorial, a Unix socket here, whose peer is "unix"),
# connection ids, durations and the number of I/O threads (one per core).
normalise() {
  local path_pattern
  path_pattern="$(printf '%s' "$sock" | sed 's/[][\\/.*^$]/\\&/g')"
  sed -E \
    -e 's/^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+\]/[TIME]/' \
    -e "s/$path_pattern/ADDR/g" \
    -e 's/[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]+/ADDR/g' \
    -e 's/\[[0-9a-fA-F:]+\]:[0-9]+/ADDR/g' \
    -e 's/(^|[ =])unix(->| |$)/\1ADDR\2/g' \
    -e 's/(^| )id=[0-9]+/\1id=N/g' \
    -e 's/duration_ms=[0-9]+/duration_ms=N/g' \
    -e 's/with [0-9]+ I\/O threads/with N I\/O threads/'
}

# The line the tutorial shows right after the line that contains $1 (a command it quotes).
tutorial_line_after() {
  awk -v cmd="$1" 'found { print; exit } index($0, cmd) { found = 1 }' "$tutorial"
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
shown="$(tutorial_line_after 'serialctl call 127.0.0.1:7070 9')"
[[ "$last_err" == "$shown" ]] || fail "unknown task: serialctl printed '$last_err', the tutorial shows '$shown'"

call keepalive "$sock"
expect 0 "$(printf 'OK\n' | od -An -tx1 | tr -d ' \n')" "keepalive"

# Graceful shutdown, as section 9 shows it: a 5 s delay is running when SIGTERM comes; the 3 s
# grace period ends first, so the task is cancelled, its connection closed without an answer,
# and the server exits 0.
opened_before="$(grep -c 'connection opened' "$work/server.log" || true)"
timeout 60 "$serialctl" call "$sock" 3 --data 00001388 >"$work/delay.out" 2>"$work/delay.err" &
delay_pid=$!
for ((i = 0; i < 300; i++)); do  # until the delay's connection is open (30 s at most)
  (($(grep -c 'connection opened' "$work/server.log" || true) > opened_before)) && break
  sleep 0.1
done
sleep 0.5  # and its request read: the task is running
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

delay_status=0
wait "$delay_pid" || delay_status=$?
[[ "$delay_status" == 3 ]] || fail "delay cut by the shutdown: serialctl exit status $delay_status, expected 3"
shown="$(tutorial_line_after 'serialctl call 127.0.0.1:7070 3 --data 00001388')"
[[ "$(cat "$work/delay.err")" == "$shown" ]] ||
  fail "delay cut by the shutdown: serialctl printed '$(cat "$work/delay.err")', the tutorial shows '$shown'"

# Every log line the tutorial shows must be one the server printed.
normalise <"$work/server.log" >"$work/server.normalised"
expected=0
while IFS= read -r line; do
  expected=$((expected + 1))
  grep -qxF -- "$line" "$work/server.normalised" ||
    fail "the tutorial shows a log line the server did not print:
  $line
the server printed (normalised):
$(sed 's/^/  /' "$work/server.normalised")"
done < <(grep -E '^\[[0-9]{4}-[0-9]{2}-[0-9]{2} ' "$tutorial" | normalise)
((expected >= 6)) || fail "only $expected log lines found in $tutorial (sections 5, 8 and 9 show 6)"
echo "tutorial_check: OK ($expected log lines of the tutorial compared)"
