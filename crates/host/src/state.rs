//! Ready-made store data for the common embedding: a WASI context and the cache over one
//! resource table. Embedders with more state write their own, as the crate docs show.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{WasiCacheCtx, WasiCacheCtxView, WasiCacheView};

/// Store data (`T` of `Store<T>`) for a component that needs WASI and the cache and nothing else.
pub struct WasiCacheState {
    /// The resource table WASI and the cache share.
    pub table: ResourceTable,
    /// The WASI context (stdio, arguments, environment, files).
    pub wasi: WasiCtx,
    /// The cache context (backend, namespace, limits).
    pub cache: WasiCacheCtx,
}

impl WasiCacheState {
    /// Store data over a new, empty resource table.
    pub fn new(wasi: WasiCtx, cache: WasiCacheCtx) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi,
            cache,
        }
    }
}

impl WasiView for WasiCacheState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiCacheView for WasiCacheState {
    fn cache(&mut self) -> WasiCacheCtxView<'_> {
        WasiCacheCtxView {
            ctx: &self.cache,
            table: &mut self.table,
        }
    }
}
