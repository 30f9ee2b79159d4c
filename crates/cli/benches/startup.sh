#!/usr/bin/env bash
# Start-up of `wasi-cache run` with the compilation cache cold (an empty --cache-dir) and warm:
# the Python memo example (examples/python-memo, an 18 MB componentize-py component), the
# JavaScript one (examples/js-memo, 12 MB, ComponentizeJS) and the Rust memo example
# (examples/memo), measured side by side in one run. Each figure is the
# median wall time of ROUNDS whole runs (start-up and the example's own work):
# `bash crates/cli/benches/startup.sh [ROUNDS]`. Prints a table and RATIO lines.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-5}"
target_dir="${CARGO_TARGET_DIR:-target}"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache
python_wasm="$target_dir/guests/python-memo/memo.wasm"
examples/python-memo/build.sh "$python_wasm"
js_wasm="$target_dir/guests/js-memo/memo.wasm"
examples/js-memo/build.sh "$js_wasm"
cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path examples/memo/Cargo.toml --target-dir "$target_dir/guests/memo"
rust_wasm="$target_dir/guests/memo/wasm32-wasip2/release/memo.wasm"
bin="$target_dir/release/wasi-cache"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Milliseconds one run of `wasi-cache run --cache-dir DIR WASM` takes; fails if the run does.
run_ms() {
  local start end
  start=$(date +%s%N)
  "$bin" run --cache-dir "$1" "$2" >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

declare -A cold warm
for name in python js rust; do
  wasm="${name}_wasm"
  wasm="${!wasm}"
  cold[$name]=$(for r in $(seq "$rounds"); do run_ms "$scratch/cold-$name-$r" "$wasm"; done | median)
  run_ms "$scratch/warm-$name" "$wasm" >/dev/null
  warm[$name]=$(for r in $(seq "$rounds"); do run_ms "$scratch/warm-$name" "$wasm"; done | median)
done

{
  echo "wasi-cache run start-up, median of $rounds runs (ms, wall; nproc=$(nproc), $(uptime | sed 's/.*load/load/'))"
  printf '%-8s %12s %10s %10s %8s\n' component size cold warm cold/warm
  for name in python js rust; do
    wasm="${name}_wasm"
    size=$(stat -c %s "${!wasm}")
    printf '%-8s %12s %10s %10s %8s\n' "$name" "$size" "${cold[$name]}" "${warm[$name]}" \
      "$(awk -v c="${cold[$name]}" -v w="${warm[$name]}" 'BEGIN { printf "%.1f", c / w }')"
  done
} >&2
for name in python js rust; do
  awk -v n="$name" -v c="${cold[$name]}" -v w="${warm[$name]}" \
    'BEGIN { printf "RATIO case=%s_startup peer=cold_cache value=%.1f\n", n, c / w }'
  echo "STARTUP component=$name cold_ms=${cold[$name]} warm_ms=${warm[$name]}"
done
