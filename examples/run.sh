#!/usr/bin/env bash
# Builds one example guest (examples/NAME) for wasm32-wasip2 and the `wasi-cache` CLI, then runs
# the guest with the cache's counters printed at exit: `./examples/run.sh NAME [ARGS...]`, extra
# arguments going to the guest. Works from a fresh clone with only rustup and cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: examples/run.sh NAME [ARGS...] (NAME: memo, fanout, golem-compat)}"
shift

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

target_dir="${CARGO_TARGET_DIR:-target}"
guest_target_dir="$target_dir/guests/$name"
cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path "examples/$name/Cargo.toml" --target-dir "$guest_target_dir"
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache

exec "$target_dir/release/wasi-cache" run --stats \
  "$guest_target_dir/wasm32-wasip2/release/$name.wasm" "$@"
