//! The two WASI flavours a component may be: which `wasi:cli/run` a command exports (0.2.x or
//! 0.3.0), which HTTP handler a served component exports (`wasi:http/incoming-handler@0.2.x` or
//! `wasi:http/handler@0.3.x`) and which form of `wasi:keyvalue/cache` it imports (0.2's `…-get`
//! and pollables, or 0.3's `async get`), read from the component's type.

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
    exported(component, engine, "wasi:cli/run@0.2", "wasi:cli/run@0.3").ok_or_else(|| {
        format!(
            "it must export wasi:cli/run@0.2.x (a WASI 0.2 command) or wasi:cli/run@0.3.0 (a WASI 0.3 command); it exports {}",
            exports(component, engine)
        )
    })
}

/// The HTTP handler a component served by `serve` exports: `wasi:http/incoming-handler@0.2.x`
/// (a WASI 0.2 `wasi:http/proxy`) or `wasi:http/handler@0.3.x` (a WASI 0.3 `wasi:http/service`),
/// or — when it exports neither — one line naming what it exports instead. A component exporting
/// both is served as 0.3, as [`command`] runs one.
pub fn http(component: &Component, engine: &Engine) -> Result<Flavour, String> {
    exported(
        component,
        engine,
        "wasi:http/incoming-handler@0.2",
        "wasi:http/handler@0.3",
    )
    .ok_or_else(|| {
        format!(
            "it must export wasi:http/incoming-handler@0.2.x (a WASI 0.2 wasi:http/proxy) or wasi:http/handler@0.3.x (a WASI 0.3 wasi:http/service); it exports {}",
            exports(component, engine)
        )
    })
}

/// Which of two interfaces, each named up to its minor version (`wasi:cli/run@0.2`), the
/// component exports: the 0.3 one first.
fn exported(component: &Component, engine: &Engine, p2: &str, p3: &str) -> Option<Flavour> {
    let exports_one = |prefix: &str| {
        component
            .component_type()
            .exports(engine)
            .any(|(name, _)| name.starts_with(&format!("{prefix}.")))
    };
    if exports_one(p3) {
        Some(Flavour::P3)
    } else if exports_one(p2) {
        Some(Flavour::P2)
    } else {
        None
    }
}

/// The component's exports, comma-separated, or `nothing`.
fn exports(component: &Component, engine: &Engine) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}
