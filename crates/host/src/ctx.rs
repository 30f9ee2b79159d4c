//! The per-store cache state ([`WasiCacheCtx`]), its builder, and the view trait embedders implement.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasi_cache_engine::{Backend, Limits, Namespace};
use wasmtime::component::ResourceTable;

use crate::budget::MemoryBudget;
use crate::future::LiveToken;

/// The cache state of one store (one guest instance): backend, namespace, limits and counters.
pub struct WasiCacheCtx {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) namespace: Namespace,
    pub(crate) limits: Limits,
    pub(crate) max_live_futures: usize,
    pub(crate) budget: Arc<MemoryBudget>,
    live: Arc<AtomicUsize>,
}

impl WasiCacheCtx {
    /// Default cap on the futures one instance may have in flight at once.
    pub const DEFAULT_MAX_LIVE_FUTURES: usize = 4096;
    /// Default memory budget of one instance: 64 MiB of outgoing-value bodies.
    pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

    /// A context over `backend` with the `default` namespace and the backend's own limits.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self::builder(backend).build()
    }

    /// A builder for a context over `backend`.
    pub fn builder(backend: Arc<dyn Backend>) -> WasiCacheCtxBuilder {
        WasiCacheCtxBuilder {
            limits: backend.limits(),
            backend,
            namespace: Namespace::default(),
            max_live_futures: Self::DEFAULT_MAX_LIVE_FUTURES,
            memory_budget: Self::DEFAULT_MEMORY_BUDGET,
        }
    }

    /// The backend this context serves guests from.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The namespace every key of this context lives in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The key and value size limits enforced on guests.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The cap on live futures for this instance.
    pub fn max_live_futures(&self) -> usize {
        self.max_live_futures
    }

    /// The most bytes of outgoing-value bodies this instance may hold at once.
    pub fn memory_budget(&self) -> usize {
        self.budget.limit()
    }

    /// Bytes of outgoing-value bodies this instance holds now (written, or being streamed).
    pub fn held_bytes(&self) -> usize {
        self.budget.used()
    }

    /// How many futures are live now: held by the guest, or with a backend call still running.
    pub fn live_futures(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Takes one live-future slot, or `None` when the cap is reached.
    pub(crate) fn acquire(&self) -> Option<Arc<LiveToken>> {
        LiveToken::acquire(&self.live, self.max_live_futures)
    }
}

impl std::fmt::Debug for WasiCacheCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCacheCtx")
            .field("namespace", &self.namespace)
            .field("limits", &self.limits)
            .field("max_live_futures", &self.max_live_futures)
            .field("live_futures", &self.live_futures())
            .field("memory_budget", &self.memory_budget())
            .field("held_bytes", &self.held_bytes())
            .finish_non_exhaustive()
    }
}

/// Builds a [`WasiCacheCtx`].
pub struct WasiCacheCtxBuilder {
    backend: Arc<dyn Backend>,
    namespace: Namespace,
    limits: Limits,
    max_live_futures: usize,
    memory_budget: usize,
}

impl WasiCacheCtxBuilder {
    /// Sets the namespace (tenant) the guest's keys live in; `default` unless set.
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// Sets the key and value size limits; the backend's own unless set.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the cap on futures one instance may have live at once (at least 1).
    pub fn max_live_futures(mut self, max: usize) -> Self {
        self.max_live_futures = max.max(1);
        self
    }

    /// Sets the most bytes of outgoing-value bodies the instance may hold at once, written
    /// (`outgoing-value-write-body-sync`) or being streamed (`…-write-body-async`), until the
    /// outgoing-values and their streams are dropped; 64 MiB unless set. A write beyond it
    /// fails with an error resource (sync) or a failed stream write (async), never a trap.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Builds the context.
    pub fn build(self) -> WasiCacheCtx {
        WasiCacheCtx {
            backend: self.backend,
            namespace: self.namespace,
            limits: self.limits,
            max_live_futures: self.max_live_futures,
            budget: MemoryBudget::new(self.memory_budget),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// What the host functions work on: the store's cache context and its resource table.
pub struct WasiCacheCtxView<'a> {
    /// The cache context of this store.
    pub ctx: &'a WasiCacheCtx,
    /// The store's resource table (the one wasmtime-wasi uses too).
    pub table: &'a mut ResourceTable,
}

/// Implemented by a store's data to expose its [`WasiCacheCtxView`] to [`crate::add_to_linker`].
pub trait WasiCacheView: Send {
    /// The cache context and resource table of this store.
    fn cache(&mut self) -> WasiCacheCtxView<'_>;
}
