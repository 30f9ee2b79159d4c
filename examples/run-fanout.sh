#!/usr/bin/env bash
# Builds the example guest examples/fanout (on the wasi-cache-guest SDK) for wasm32-wasip2 and the
# `wasi-cache` CLI, then runs the guest with the cache's counters printed at exit. Extra arguments
# go to the guest (e.g. `./examples/run-fanout.sh 500` for 500 keys). Works from a fresh clone
# with only rustup and cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

target_dir="${CARGO_TARGET_DIR:-target}"
guest_target_dir="$target_dir/guests/fanout"
cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path examples/fanout/Cargo.toml --target-dir "$guest_target_dir"
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache

exec "$target_dir/release/wasi-cache" run --stats \
  "$guest_target_dir/wasm32-wasip2/release/fanout.wasm" "$@"
