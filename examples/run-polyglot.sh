#!/usr/bin/env bash
# Builds a memo example in another language (examples/NAME, by its build.sh, which installs its
# toolchain under the target directory when missing) and the `wasi-cache` CLI, then runs it
# under `wasi-cache run --stats`: `./examples/run-polyglot.sh NAME [RUN OPTIONS...]` (NAME:
# python-memo, js-memo), extra arguments being options of `wasi-cache run` (say
# `--redis redis://127.0.0.1:6379/0`).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: examples/run-polyglot.sh NAME [RUN OPTIONS...] (NAME: python-memo, js-memo)}"
shift
target_dir="${CARGO_TARGET_DIR:-target}"
wasm="$target_dir/guests/$name/memo.wasm"
"examples/$name/build.sh" "$wasm"
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache
exec "$target_dir/release/wasi-cache" run --stats "$@" "$wasm"
