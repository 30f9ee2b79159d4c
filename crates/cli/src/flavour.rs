//! The two WASI flavours a component may be: which `wasi:cli/run` a command exports (0.2.x or
//! 0.3.0) and which form of `wasi:keyvalue/cache` it imports (0.2's `…-get` and pollables, or
//! 0.3's `async get`), read from the component's type before it is linked.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// A WASI flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// WASI 0.2 (golem-rust 2.x).
    P2,
    /// WASI 0.3, on component-model async (golem-rust 3.x).
    P3,
}

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

/// The form of `wasi:keyvalue/cache` the component imports: 0.3 when its future resources have
/// an `async get`, else 0.2 (also for a component that does not import the cache).
pub fn cache(component: &Component, engine: &Engine) -> Flavour {
    let p3 = component
        .component_type()
        .imports(engine)
        .any(|(name, item)| match item.ty {
            ComponentItem::ComponentInstance(instance)
                if name.starts_with("wasi:keyvalue/cache@") =>
            {
                instance
                    .exports(engine)
                    .any(|(export, _)| export == "[method]future-get-result.get")
            }
            _ => false,
        });
    if p3 { Flavour::P3 } else { Flavour::P2 }
}
