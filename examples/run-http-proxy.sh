#!/usr/bin/env bash
# Builds the example examples/http-proxy for wasm32-wasip2 and the `wasi-cache` CLI, then serves
# the proxy in front of UPSTREAM: `./examples/run-http-proxy.sh http://127.0.0.1:9000 [OPTIONS...]`,
# extra options going to `wasi-cache serve` (e.g. --addr 127.0.0.1:8081, --redis URL). Try it with
# `curl -i http://127.0.0.1:8080/` (twice: the second answer says `x-cache: HIT`).
set -euo pipefail
cd "$(dirname "$0")/.."
upstream="${1:?usage: examples/run-http-proxy.sh UPSTREAM_URL [SERVE OPTIONS...]}"
shift

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

target_dir="${CARGO_TARGET_DIR:-target}"
guest_target_dir="$target_dir/guests/http-proxy"
cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path examples/http-proxy/Cargo.toml --target-dir "$guest_target_dir"
cargo build --quiet --release -p wasi-cache-cli --bin wasi-cache

exec "$target_dir/release/wasi-cache" serve --stats --env "UPSTREAM=$upstream" "$@" \
  "$guest_target_dir/wasm32-wasip2/release/http-proxy.wasm"
