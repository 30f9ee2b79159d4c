//! The WASI 0.3 flavour of the cache (`wit/p3`, as golem-rust 3.x imports it): each future
//! resource has one `get: async func()`, bodies are `stream<u8>`. The engine must have
//! component-model async on (`Config::wasm_component_model_async`); WASI 0.3 itself comes from
//! `wasmtime_wasi::p3`. Both flavours share one [`WasiCacheCtx`](crate::WasiCacheCtx), so
//! a store may serve either, and their guests share the backend (and its rendezvous).

mod host;
mod streams;

/// Bindings generated from the project's WASI 0.3 WIT (`wit/p3` at the repository root).
#[allow(missing_docs)]
pub mod bindings {
    crate::shared_impls::cache_bindgen!(
        path: "../../wit/p3",
        imports: {
            // Waits for the backend's fill when the value fills a vacancy, as in 0.2.
            "wasi:keyvalue/types.[method]outgoing-value.outgoing-value-write-body-sync": async | trappable,
            // The stream functions make or consume a `stream<u8>`: they need the store.
            "wasi:keyvalue/types.[method]outgoing-value.outgoing-value-write-body-async": store | trappable,
            "wasi:keyvalue/types.[method]incoming-value.incoming-value-consume-async": store | trappable,
            "wasi:keyvalue/cache.[method]future-get-result.get": async | store | trappable,
            "wasi:keyvalue/cache.[method]future-exists-result.get": async | store | trappable,
            "wasi:keyvalue/cache.[method]future-result.get": async | store | trappable,
            "wasi:keyvalue/cache.[method]future-get-or-set-result.get": async | store | trappable,
            default: trappable,
        },
        with: {
        }
    );
}

use wasmtime::component::Linker;

use crate::ctx::{WasiCacheCtxView, WasiCacheView};

/// Adds the WASI 0.3 `wasi:keyvalue/{types, wasi-keyvalue-error, cache}@0.1.0` to `linker`.
///
/// Its engine needs `Config::wasm_component_model_async(true)`; a guest's exports are called
/// with `Store::run_concurrent` (or `Func::call_concurrent`).
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
