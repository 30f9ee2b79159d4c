//! The two forms of `wasi:keyvalue/cache` a component may import, told apart from its type, and
//! a linker with WASI and the cache in either form: what a command (or a test host) runs with.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::WasiView;

use crate::WasiCacheView;

/// A WASI flavour: of the cache a component imports, or of the `wasi:cli/run` it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// WASI 0.2 (golem-rust 2.x): futures with `wasi:io` pollables.
    P2,
    /// WASI 0.3 (golem-rust 3.x), on component-model async: futures with an `async get`.
    P3,
}

impl Flavour {
    /// The form of the cache `component` imports: 0.3 when one of its future resources has an
    /// `async get` (whichever: a component imports only the functions it uses, e.g. only
    /// `future-get-or-set-result`'s), else 0.2 (also for a component that does not import the
    /// cache).
    pub fn of_cache_import(component: &Component, engine: &Engine) -> Self {
        let p3 = component
            .component_type()
            .imports(engine)
            .any(|(name, item)| match item.ty {
                ComponentItem::ComponentInstance(instance)
                    if name.starts_with("wasi:keyvalue/cache@") =>
                {
                    // 0.2's are `[method]future-get-result.future-get-result-get` and the like.
                    instance.exports(engine).any(|(export, _)| {
                        export.starts_with("[method]future-") && export.ends_with(".get")
                    })
                }
                _ => false,
            });
        if p3 { Flavour::P3 } else { Flavour::P2 }
    }
}

/// Adds WASI in both versions (wasmtime-wasi's async 0.2 and its 0.3: a 0.3 component built with
/// Rust's std imports 0.2 for std's own needs, and a 0.2 one may use 0.3 interfaces) and the
/// cache in `flavour`'s form (both forms share their names, so a linker holds one).
pub fn add_wasi_and_cache_to_linker<T>(
    linker: &mut Linker<T>,
    flavour: Flavour,
) -> wasmtime::Result<()>
where
    T: WasiView + WasiCacheView + 'static,
{
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    match flavour {
        Flavour::P2 => crate::p2::add_to_linker(linker),
        Flavour::P3 => crate::p3::add_to_linker(linker),
    }
}
