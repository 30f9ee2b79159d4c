#!/usr/bin/env bash
# Builds the JavaScript memo example (examples/js-memo, with ComponentizeJS; see its build.sh)
# and the `wasi-cache` CLI, then runs it under `wasi-cache run --stats`; extra arguments are
# options of `wasi-cache run` (say `--redis redis://127.0.0.1:6379/0`).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
wasm="$target_dir/guests/js-memo/memo.wasm"
examples/js-memo/build.sh "$wasm"
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache
exec "$target_dir/release/wasi-cache" run --stats "$@" "$wasm"
