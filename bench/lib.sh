# bench/lib.sh: what the scripts in bench/ share. Sourced, not run. Sets ROOT, PEERS, BIN and
# PEERS_BIN (each overridable from the environment), installs what is missing with apt (unless
# SERIALSERVER_SKIP_INSTALL=1), and defines the helpers below.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
ss_install_bench_deps
PEERS=${PEERS:-$ROOT/../shared/peers}
BIN=${BIN:-$ROOT/build/release/bin}
PEERS_BIN=${PEERS_BIN:-${TMPDIR:-/tmp}/serial-peers-bin}

# Builds the peers' C load generator and limit server into PEERS_BIN, as peers/run-peers.sh does.
bench_build_c_peers() {
  mkdir -p "$PEERS_BIN"
  gcc -O2 -Wall -o "$PEERS_BIN/loadgen" "$PEERS/loadgen/loadgen.c" -lpthread
  gcc -O2 -Wall -o "$PEERS_BIN/limit" "$PEERS/limit/limit.c"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 15 s for a listener on 127.0.0.1:$1.
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
