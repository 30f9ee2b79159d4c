//! The WASI 0.2 flavour of the cache (`wit/p2`, as golem-rust 2.x imports it): future
//! resources read with `…-get` and `listen-to-…` pollables, bodies as `wasi:io` streams.
//! Link `wasmtime_wasi::p2` too, for `wasi:io`.

mod host;
mod streams;

/// Bindings generated from the project's WASI 0.2 WIT (`wit/p2` at the repository root).
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/p2",
        world: "wasi-cache:wit/cache",
        // Only the body write that fills a vacancy waits (for the backend's fill); every other
        // function returns at once, so it is a plain synchronous import: a guest's get is then
        // a handful of cheap calls rather than a handful of async host calls.
        imports: {
            default: trappable,
            "wasi:keyvalue/types.[method]outgoing-value.outgoing-value-write-body-sync": async | trappable,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:keyvalue/wasi-keyvalue-error.error": crate::CacheError,
            "wasi:keyvalue/types.bucket": crate::Bucket,
            "wasi:keyvalue/types.outgoing-value": crate::OutgoingValue,
            "wasi:keyvalue/types.incoming-value": crate::IncomingValue,
            "wasi:keyvalue/cache.future-get-result": crate::FutureGetResult,
            "wasi:keyvalue/cache.future-exists-result": crate::FutureExistsResult,
            "wasi:keyvalue/cache.future-result": crate::FutureResult,
            "wasi:keyvalue/cache.future-get-or-set-result": crate::FutureGetOrSetResult,
            "wasi:keyvalue/cache.vacancy": crate::PendingVacancy,
        },
    });
}

use wasmtime::component::Linker;

use crate::ctx::{HasWasiCache, WasiCacheCtxView, WasiCacheView};

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
    use bindings::wasi::keyvalue::{cache, types, wasi_keyvalue_error};
    wasi_keyvalue_error::add_to_linker::<T, HasWasiCache>(linker, get)?;
    types::add_to_linker::<T, HasWasiCache>(linker, get)?;
    cache::add_to_linker::<T, HasWasiCache>(linker, get)?;
    Ok(())
}
