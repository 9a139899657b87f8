# shellcheck shell=bash
# bench/logd/lib.sh: what the logd benchmarks share. Sourced, not run: installs the benchmark
# packages, and defines the helpers below.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
ss_install_bench_deps

# Sets `build` (BUILD_DIR, default build/release) and `work` (a fresh directory, removed on exit
# with any logd still running), after checking that serialserver-logd and logd_bench are built.
#   logd_bench_init [BUILD_DIR]
logd_bench_init() {
  build=${1:-build/release}
  for tool in "$build/bin/serialserver-logd" "$build/bin/logd_bench"; do
    [[ -x $tool ]] || { echo "$(basename "$0"): $tool not built" >&2; exit 1; }
  done
  work=$(mktemp -d)
  logd_pid=""
  trap logd_bench_cleanup EXIT
}

# Stops the logd that logd_start started, if it runs, and removes `work`. A script with more to
# clean up sets its own EXIT trap and calls this from it.
logd_bench_cleanup() {
  logd_stop
  rm -rf "$work"
}

# Starts serialserver-logd on 127.0.0.1:PORT with a fresh database in `work`, quiet logs and the
# given flags, and gives it a second to listen.
#   logd_start PORT [FLAGS...]
logd_start() {
  local port=$1
  shift
  rm -f "$work"/logd.sqlite*
  "$build/bin/serialserver-logd" --listen "127.0.0.1:$port" --db "$work/logd.sqlite" \
    --log-level warn "$@" &
  logd_pid=$!
  sleep 1
}

# Stops the logd that logd_start started (SIGTERM, then waits for it).
logd_stop() {
  if [[ -n ${logd_pid:-} ]]; then
    kill "$logd_pid" 2>/dev/null || true
    wait "$logd_pid" 2>/dev/null || true
    logd_pid=""
  fi
}
