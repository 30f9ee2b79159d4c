#!/usr/bin/env bash
# Builds the Python memo example into a component: `examples/python-memo/build.sh OUT.wasm`.
# componentize-py (pinned) is installed into a virtual environment under the target directory
# when missing; the bindings come from the project's wit/p2/ and examples/wit/ (the memo world and
# the one WASI interface it exports, wasi:cli/run). Needs python3 with venv (Debian:
# python3-venv); no Rust.
set -euo pipefail
out="${1:?usage: examples/python-memo/build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

componentize_py_version=0.25.1
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="$target_dir/python-venv"
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $componentize_py_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$componentize_py_version"
fi

mkdir -p "$(dirname "$out")"
cd "$here"
"$venv/bin/componentize-py" --quiet -d "$root/wit/p2" -d "$root/examples/wit" -w example:memo/memo \
  componentize app -o "$out"
