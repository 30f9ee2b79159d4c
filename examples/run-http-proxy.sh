#!/usr/bin/env bash
# Builds the example examples/http-proxy for wasm32-wasip2 and the `wasi-cache` CLI, then serves
# the proxy in front of UPSTREAM: `./examples/run-http-proxy.sh http://127.0.0.1:9000 [OPTIONS...]`,
# extra options going to `wasi-cache serve` (e.g. --addr 127.0.0.1:8081, --redis URL; the upstream's
# HOST:PORT is given to --allow-outbound, the one destination the proxy may reach). Try it with
# `curl -i http://127.0.0.1:8080/` (twice: the second answer says `x-cache: HIT`).
set -euo pipefail
cd "$(dirname "$0")/.."
upstream="${1:?usage: examples/run-http-proxy.sh UPSTREAM_URL [SERVE OPTIONS...]}"
shift
# The upstream is allowed explicitly: serve's default outbound policy (--allow-outbound public)
# refuses loopback and private addresses, where an example's upstream usually is.
authority="${upstream#*://}"
authority="${authority%%/*}"
WASI_CACHE_COMMAND=serve exec ./examples/run.sh http-proxy --env "UPSTREAM=$upstream" \
  --allow-outbound "$authority" "$@"
