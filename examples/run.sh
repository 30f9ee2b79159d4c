#!/usr/bin/env bash
# Builds one example guest (examples/NAME) for wasm32-wasip2 and the `wasi-cache` CLI, then runs
# the guest with the cache's counters printed at exit: `./examples/run.sh NAME [ARGS...]`, extra
# arguments going to the guest. With WASI_CACHE_COMMAND=serve it serves an HTTP component
# instead, extra arguments being options of `wasi-cache serve`. Works from a fresh clone with
# only rustup and cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: examples/run.sh NAME [ARGS...] (NAME: memo, fanout, golem-compat, http-proxy)}"
shift

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

target_dir="${CARGO_TARGET_DIR:-target}"
guest_target_dir="$target_dir/guests/$name"
# The guest and the CLI build side by side: the guest's crates fill the cores the CLI's long
# serial stretches (Cranelift, then wasmtime) leave idle.
cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path "examples/$name/Cargo.toml" --target-dir "$guest_target_dir" &
guest_build=$!
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache
wait "$guest_build"

wasm="$guest_target_dir/wasm32-wasip2/release/$name.wasm"
if [ "${WASI_CACHE_COMMAND:-run}" = serve ]; then
  # `serve` takes its options first and serves the component until SIGINT or SIGTERM.
  exec "$target_dir/release/wasi-cache" serve --stats "$@" "$wasm"
fi
exec "$target_dir/release/wasi-cache" run --stats "$wasm" "$@"
