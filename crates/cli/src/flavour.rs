//! The two WASI flavours a component may be: which `wasi:cli/run` a command exports (0.2.x or
//! 0.3.0) and which form of `wasi:keyvalue/cache` it imports (0.2's `…-get` and pollables, or
//! 0.3's `async get`), read from the component's type before it is linked.

pub use wasi_cache_host::Flavour;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The `wasi:cli/run` a command component exports, or — when it exports none — one line
/// naming what it exports instead.
///
/// A component exporting both runs as a 0.3 command: a Rust binary for `wasm32-wasip2` always
/// exports the 0.2 `run` (its `_start`, which traps when the crate has no `main`), so a 0.3
/// export beside it is the one its author wrote (e.g. the guest SDK's `p3` test binaries).
pub fn command(component: &Component, engine: &Engine) -> Result<Flavour, String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports_run = |version: &str| {
        exports
            .iter()
            .any(|name| name.starts_with(&format!("wasi:cli/run@{version}.")))
    };
    if exports_run("0.3") {
        return Ok(Flavour::P3);
    }
    if exports_run("0.2") {
        return Ok(Flavour::P2);
    }
    let found = if exports.is_empty() {
        "nothing".to_owned()
    } else {
        exports.join(", ")
    };
    Err(format!(
        "it must export wasi:cli/run@0.2.x (a WASI 0.2 command) or wasi:cli/run@0.3.0 (a WASI 0.3 command); it exports {found}"
    ))
}
