//! The WASI 0.2 flavour of the cache (`wit/p2`, as golem-rust 2.x imports it): future
//! resources read with `…-get` and `listen-to-…` pollables, bodies as `wasi:io` streams.
//! Link `wasmtime_wasi::p2` too, for `wasi:io`.

mod host;
mod streams;

/// Bindings generated from the project's WASI 0.2 WIT (`wit/p2` at the repository root).
#[allow(missing_docs)]
pub mod bindings {
    crate::shared_impls::cache_bindgen!(
        path: "../../wit/p2",
        // Only the body write that fills a vacancy waits (for the backend's fill); every other
        // function returns at once, so it is a plain synchronous import: a guest's get is then
        // a handful of cheap calls rather than a handful of async host calls.
        imports: {
            default: trappable,
            "wasi:keyvalue/types.[method]outgoing-value.outgoing-value-write-body-sync": async | trappable,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
        }
    );
}

use wasmtime::component::Linker;

use crate::ctx::{WasiCacheCtxView, WasiCacheView};

/// Adds the WASI 0.2 `wasi:keyvalue/{types, wasi-keyvalue-error, cache}@0.1.0` to `linker`.
///
/// `wasi:io` must be linked too, from wasmtime-wasi (e.g. `wasmtime_wasi::p2::add_to_linker_async`).
/// Guests importing any `wasi:io@0.2.x` link, by semver.
pub fn add_to_linker<T: WasiCacheView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    add_to_linker_with(linker, T::cache)
}

/// Like [`add_to_linker`], with an explicit accessor from the store's data to the cache state.
pub fn add_to_linker_with<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> WasiCacheCtxView<'_>,
) -> wasmtime::Result<()> {
    crate::shared_impls::link_interfaces!(bindings, linker, get)
}
