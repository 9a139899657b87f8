#!/usr/bin/env bash
# Installs a built tree into a temporary prefix (`cmake --install BUILD --prefix TMP`) and builds
# programs against the installed package only:
#   1. tests/package/consumer with CMake (find_package(serialserver CONFIG)), once with the shared
#      libraries and once with the static ones;
#   2. the same main.cpp with pkg-config (`pkg-config --cflags --libs serialclient`);
#   3. examples/tutorial with CMake, then runs it and calls it with the installed serialctl
#      (tutorial_check.sh).
# Every program must run and report OK. A sanitizer build's package carries its -fsanitize flags
# in its CMake targets and pkg-config files, so the programs here are built the same way.
# The prefix and the build trees are removed on any exit.
#
# Usage: package_test.sh BUILD_DIR SOURCE_DIR CXX_COMPILER CMAKE_GENERATOR
set -euo pipefail

build_dir="$1"
source_dir="$2"
cxx="$3"
generator="$4"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

step() { printf '\n== package_test: %s\n' "$*"; }
fail() {
  echo "package_test: FAIL: $*" >&2
  exit 1
}

step "cmake --install $build_dir --prefix <tmp>"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" || {
  cat "$work/install.log"
  fail "cmake --install"
}
for f in include/serialserver/serialserver.hpp include/serialclient/serialclient.hpp \
  bin/serialctl bin/serialserver-demo bin/serialbench bin/serialserver-logd bin/serialserver-log; do
  [[ -e "$prefix/$f" ]] || fail "not installed: $f"
done
config="$(find "$prefix" -name serialserverConfig.cmake)"
pc="$(find "$prefix" -name serialserver.pc)"
[[ -n "$config" ]] || fail "not installed: serialserverConfig.cmake"
[[ -n "$pc" ]] || fail "not installed: serialserver.pc"

step "CMake consumer (find_package(serialserver CONFIG)), shared and static"
nice cmake -S "$source_dir/tests/package/consumer" -B "$work/consumer" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$work/consumer-configure.log" || {
  cat "$work/consumer-configure.log"
  fail "configuring the consumer"
}
nice cmake --build "$work/consumer" -j2 || fail "building the consumer"
# The shared build must load the installed shared libraries, the static one none of them.
readelf -d "$work/consumer/consumer" | grep -q 'NEEDED.*libserialserver\.so' ||
  fail "consumer does not link libserialserver.so"
readelf -d "$work/consumer/consumer" | grep -q 'NEEDED.*libserialclient\.so' ||
  fail "consumer does not link libserialclient.so"
if readelf -d "$work/consumer/consumer_static" | grep -q 'NEEDED.*libserial'; then
  fail "consumer_static links a shared serialserver library"
fi
[[ "$(timeout 60 "$work/consumer/consumer")" == OK ]] || fail "consumer (shared)"
[[ "$(timeout 60 "$work/consumer/consumer_static")" == OK ]] || fail "consumer (static)"
echo "consumer: OK, consumer_static: OK"

step "pkg-config consumer"
export PKG_CONFIG_PATH="$(dirname "$pc")"
[[ "$(pkg-config --variable=prefix serialserver)" == "$prefix" ]] ||
  fail "serialserver.pc has prefix $(pkg-config --variable=prefix serialserver), not the install prefix"
libdir="$(pkg-config --variable=libdir serialclient)"
read -r -a pc_flags <<<"$(pkg-config --cflags --libs serialclient)"
nice "$cxx" -std=c++20 "$source_dir/tests/package/consumer/main.cpp" -o "$work/consumer_pc" \
  "${pc_flags[@]}" -Wl,-rpath,"$libdir" || fail "building with pkg-config"
[[ "$(timeout 60 "$work/consumer_pc")" == OK ]] || fail "consumer_pc"
echo "consumer_pc: OK"

step "the tutorial's server, built against the installed package"
nice cmake -S "$source_dir/examples/tutorial" -B "$work/tutorial" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$work/tutorial-configure.log" || {
  cat "$work/tutorial-configure.log"
  fail "configuring the tutorial"
}
nice cmake --build "$work/tutorial" -j2 || fail "building the tutorial"
"$source_dir/tests/package/tutorial_check.sh" "$work/tutorial/tutorial-server" "$prefix/bin/serialctl" ||
  fail "the tutorial's server"

echo "package_test: OK"
