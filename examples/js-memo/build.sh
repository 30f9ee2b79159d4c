#!/usr/bin/env bash
# Builds the JavaScript memo example into a component: `examples/js-memo/build.sh OUT.wasm`.
# ComponentizeJS (pinned; the engine under `jco componentize`) is installed by npm into the
# target directory when missing. Its WIT is one folder: the memo world of examples/wit with the
# project's wit/p2/ (the cache interfaces and their world) as its dependencies. Needs node and npm;
# no Rust. The component has no wasi:http (`--disable http fetch-event`): `wasi-cache run`
# links WASI and the cache only.
set -euo pipefail
out="${1:?usage: examples/js-memo/build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

componentize_js_version=0.23.0
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
tools="$target_dir/js-tools"
installed="$tools/node_modules/@bytecodealliance/componentize-js/package.json"
if ! [ -f "$installed" ] || ! grep -q "\"version\": \"$componentize_js_version\"" "$installed"; then
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" \
    "@bytecodealliance/componentize-js@$componentize_js_version"
fi

build="$(dirname "$out")/js-memo-build"
rm -rf "$build"
mkdir -p "$build/wit/deps/wasi-cache"
cp "$root/examples/wit/world.wit" "$build/wit/"
cp -r "$root/examples/wit/deps/cli" "$root/wit/p2/deps/keyvalue" "$root/wit/p2/deps/io" "$build/wit/deps/"
cp "$root/wit/p2/world.wit" "$build/wit/deps/wasi-cache/"
cp "$here/app.js" "$build/"
cd "$build"
"$tools/node_modules/.bin/componentize-js" app.js --wit wit --world-name example:memo/memo \
  --disable http fetch-event -o "$out" >/dev/null
