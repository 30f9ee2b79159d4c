#!/usr/bin/env bash
# Builds and runs the example guest examples/fanout under `wasi-cache run --stats` (see run.sh);
# extra arguments go to the guest.
exec "$(dirname "$0")/run.sh" fanout "$@"
