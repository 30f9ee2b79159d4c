//! Ready-made store data for the common embedding: a WASI context and the cache over one
//! resource table, with caps on the guest's memories, tables and instances (it is the store's
//! resource limiter). Embedders with more state write their own, as the crate docs show.

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{WasiCacheCtx, WasiCacheCtxView, WasiCacheView};

/// Store data (`T` of `Store<T>`) for a component that needs WASI and the cache and nothing else.
///
/// It is also the store's [`ResourceLimiter`]: with `store.limiter(|state| state)` the guest's
/// linear memories, tables and instances stay within [`WasiCacheState::limits`] (and all its
/// memories together within [`WasiCacheState::with_memory_total`]), and a growth refused is
/// remembered ([`WasiCacheState::refused_memory_growth`]) so that a trap that follows can be
/// explained.
pub struct WasiCacheState {
    /// The resource table WASI and the cache share (cap it with `set_max_capacity`).
    pub table: ResourceTable,
    /// The WASI context (stdio, arguments, environment, files).
    pub wasi: WasiCtx,
    /// The cache context (backend, namespace, limits).
    pub cache: WasiCacheCtx,
    /// Caps on the guest's linear memories, tables and instances (wasmtime's defaults: none on
    /// sizes); in force once the store's limiter is this state.
    pub limits: StoreLimits,
    /// Cap on the bytes of all the guest's linear memories together (`None`: no cap).
    memory_total_limit: Option<usize>,
    /// Bytes of all the guest's linear memories together, as granted by this limiter.
    memory_total: usize,
    /// The size (bytes) of the last memory growth the limits refused.
    refused_memory: Option<usize>,
    /// The size (elements) of the last table growth the limits refused.
    refused_table: Option<usize>,
}

impl WasiCacheState {
    /// Store data over a new, empty resource table, with wasmtime's default [`StoreLimits`].
    pub fn new(wasi: WasiCtx, cache: WasiCacheCtx) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi,
            cache,
            limits: StoreLimits::default(),
            memory_total_limit: None,
            memory_total: 0,
            refused_memory: None,
            refused_table: None,
        }
    }

    /// The same state with other caps on memories, tables and instances.
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same state with a cap on the bytes of all the guest's linear memories together
    /// ([`Self::limits`] caps each one): a component with several memories cannot multiply it.
    pub fn with_memory_total(mut self, bytes: usize) -> Self {
        self.memory_total_limit = Some(bytes);
        self
    }

    /// The size in bytes a linear memory was last refused to grow to by [`Self::limits`] or the
    /// total cap (not by the memory's own declared maximum), if ever.
    pub fn refused_memory_growth(&self) -> Option<usize> {
        self.refused_memory
    }

    /// The number of elements a table was last refused to grow to by [`Self::limits`] (not by
    /// the table's own declared maximum), if ever.
    pub fn refused_table_growth(&self) -> Option<usize> {
        self.refused_table
    }
}

/// Whether a refused growth to `desired` was the limits' doing, not the declared `maximum`'s.
fn refused_by_limits(allowed: bool, desired: usize, maximum: Option<usize>) -> bool {
    !allowed && maximum.is_none_or(|maximum| desired <= maximum)
}

impl ResourceLimiter for WasiCacheState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_total.saturating_sub(current)).saturating_add(desired);
        let allowed = self.limits.memory_growing(current, desired, maximum)?
            && self.memory_total_limit.is_none_or(|limit| total <= limit);
        if allowed {
            self.memory_total = total;
        } else if refused_by_limits(allowed, desired, maximum) {
            self.refused_memory = Some(desired);
        }
        Ok(allowed)
    }

    // A growth granted here that then fails (the host is out of memory) stays counted in the
    // total: the cap only gets stricter for a guest already at the host's limits.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        if refused_by_limits(allowed, desired, maximum) {
            self.refused_table = Some(desired);
        }
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasi_cache_engine::{Config, MemoryCache};
    use wasmtime::StoreLimitsBuilder;

    use super::*;

    #[test]
    fn refusals_of_the_limits_are_remembered() {
        let backend = Arc::new(MemoryCache::new(Config::with_capacity(1 << 20)).unwrap());
        let limits = StoreLimitsBuilder::new()
            .memory_size(1 << 20)
            .table_elements(100)
            .build();
        let mut state = WasiCacheState::new(WasiCtx::builder().build(), WasiCacheCtx::new(backend))
            .with_limits(limits);
        assert!(state.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(state.refused_memory_growth(), None);
        // Above the memory's own declared maximum: refused, but not by the limits.
        assert!(!state.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert_eq!(state.refused_memory_growth(), None);
        assert!(!state.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(state.refused_memory_growth(), Some(2 << 20));
        // Two memories of 768 KiB each fit the per-memory cap, not the 1 MiB total.
        let mut state = state.with_memory_total(1 << 20);
        state.memory_total = 0;
        assert!(state.memory_growing(0, 768 << 10, None).unwrap());
        assert!(!state.memory_growing(0, 768 << 10, None).unwrap());
        assert_eq!(state.refused_memory_growth(), Some(768 << 10));
        assert!(state.memory_growing(0, 256 << 10, None).unwrap());
        assert!(!state.memory_growing(256 << 10, 320 << 10, None).unwrap());
        assert!(state.table_growing(0, 100, None).unwrap());
        assert!(!state.table_growing(100, 101, Some(1000)).unwrap());
        assert_eq!(state.refused_table_growth(), Some(101));
    }
}
