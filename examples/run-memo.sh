#!/usr/bin/env bash
# Builds and runs the example guest examples/memo under `wasi-cache run --stats` (see run.sh);
# extra arguments go to the guest.
exec "$(dirname "$0")/run.sh" memo "$@"
