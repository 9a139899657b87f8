#!/usr/bin/env bash
# Shared helpers for scripts/run, scripts/test, scripts/fuzz and scripts/lint. Source it; do not run it.
#
# Environment:
#   SERIALSERVER_SKIP_INSTALL=1  do not check or install Debian packages
#   SERIALSERVER_JOBS=N          parallel build and test jobs (default 2)

# The Debian 12 packages that building, testing and linting need. This is the only list.
SERIALSERVER_APT_PACKAGES=(
  build-essential
  cmake
  ninja-build
  g++
  libasio-dev
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libspdlog-dev
  libfmt-dev
  libcli11-dev
  libssl-dev
  openssl
  # serialbench's io_uring engine.
  liburing-dev
  # serialbench's --json and --csv summaries.
  nlohmann-json3-dev
  libsqlite3-dev
  # The server library's Prometheus metrics (PrometheusMetrics).
  prometheus-cpp-dev
  # Every JSON the project writes: the structured logger's JSON lines, serialserver-log's
  # --output json, serialbench's --json.
  nlohmann-json3-dev
  # serialserver-log's time parsing (Howard Hinnant's date library).
  libhowardhinnant-date-dev
  pkg-config
  python3
  clang-format
  clang-tidy
  doxygen
  # The programs' man pages, generated from their --help at build time (cmake/SerialserverDocs.cmake).
  help2man
  # The fuzz targets (scripts/fuzz): clang with libFuzzer, its sanitizer runtimes and
  # FuzzedDataProvider.h.
  clang
  libclang-rt-14-dev
)

# The Debian 12 packages that bench/ needs besides the above, installed by its scripts only (not
# by scripts/run or scripts/test): go builds the goserial peer, strace counts write system calls,
# valgrind counts instructions, and perf and heaptrack are used by the commands in BENCHMARKS.md.
SERIALSERVER_BENCH_APT_PACKAGES=(
  golang-go
  strace
  linux-perf
  valgrind
  heaptrack
  redis-server  # bench/logd/compare_redis.sh: the peer logd is measured beside
  redis-tools   # redis-benchmark, for the same script
  haproxy       # bench/haproxy/rolling_restart.sh: the balancer in front of two demos
)

SERIALSERVER_JOBS="${SERIALSERVER_JOBS:-2}"

# The repository root (the parent of this file's directory).
SERIALSERVER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ss_log() {
  printf '[serialserver] %s\n' "$*"
}

ss_die() {
  printf '[serialserver] error: %s\n' "$*" >&2
  exit 1
}

# A banner that stands out in long logs.
ss_banner() {
  local line='========================================================================'
  printf '\n%s\n== %s\n%s\n' "$line" "$*" "$line"
}

# Prints the packages among its arguments that are not installed, one a line.
ss_missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Installs whichever of the packages given are missing (default: SERIALSERVER_APT_PACKAGES), with
# apt-get. Runs `apt-get update` once, and only when something is missing. Uses sudo only when not
# root.
ss_install_deps() {
  local -a wanted=("$@")
  [[ ${#wanted[@]} -gt 0 ]] || wanted=("${SERIALSERVER_APT_PACKAGES[@]}")
  if [[ "${SERIALSERVER_SKIP_INSTALL:-0}" == 1 ]]; then
    ss_log "SERIALSERVER_SKIP_INSTALL=1: not checking Debian packages"
    return 0
  fi
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    ss_log "dpkg-query/apt-get not found (not Debian?): install these yourself: ${wanted[*]}"
    return 0
  fi

  local -a missing
  mapfile -t missing < <(ss_missing_packages "${wanted[@]}")
  if [[ ${#missing[@]} -eq 0 ]]; then
    ss_log "all required Debian packages are installed"
    return 0
  fi

  local -a sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || ss_die "not root and sudo not found; install: ${missing[*]}"
    sudo=(sudo)
  fi

  ss_banner "Installing missing packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}"
}

# The build packages and the benchmark tools (SERIALSERVER_BENCH_APT_PACKAGES); the bench/ scripts
# call this. Logs to stderr, since those scripts print their tables on stdout.
ss_install_bench_deps() {
  ss_install_deps "${SERIALSERVER_APT_PACKAGES[@]}" "${SERIALSERVER_BENCH_APT_PACKAGES[@]}" >&2
}

# Configures and builds one preset of CMakePresets.json. Returns non-zero on failure (also when
# called in a condition, where `set -e` does not apply).
ss_configure_build() {
  local preset="$1"
  ( cd "$SERIALSERVER_ROOT" && cmake --preset "$preset" ) || return 1
  ( cd "$SERIALSERVER_ROOT" && cmake --build --preset "$preset" -j"$SERIALSERVER_JOBS" ) || return 1
}
