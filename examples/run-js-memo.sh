#!/usr/bin/env bash
# Builds and runs the JavaScript memo example (examples/js-memo) under `wasi-cache run --stats`
# (see run-polyglot.sh); extra arguments are options of `wasi-cache run`.
exec "$(dirname "$0")/run-polyglot.sh" js-memo "$@"
