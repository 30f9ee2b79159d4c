//! The per-store cache state ([`WasiCacheCtx`]), its builder, and the view trait embedders implement.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasi_cache_engine::{Backend, Limits, Namespace};
use wasmtime::component::ResourceTable;

use crate::budget::{MemoryBudget, MemoryMeter};
use crate::error::CacheError;
use crate::future::LiveToken;
use crate::leases::Requests;
use crate::writes::{InstanceWrites, WritePool, WriteSlot};

/// The cache state of one store (one guest instance): backend, namespace, limits and counters.
pub struct WasiCacheCtx {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) namespace: Namespace,
    pub(crate) limits: Limits,
    pub(crate) max_live_futures: usize,
    pub(crate) budget: Arc<MemoryBudget>,
    live: Arc<AtomicUsize>,
    /// The pool of writes in flight this instance shares with others, and its own writes.
    writes: Option<(Arc<WritePool>, Arc<InstanceWrites>)>,
    /// Whether the instance is serving requests, and the vacancies its guest holds.
    pub(crate) requests: Requests,
    /// Owned by the context alone, so by its store: a weak handle on it tells whether the store
    /// still exists (see [`WasiCacheCtx::store_token`]).
    alive: Arc<()>,
}

impl WasiCacheCtx {
    /// A handle that stops upgrading once this context is dropped. wasmtime drops a store's
    /// data before the streams the store still holds, so a stream consumer dropped after its
    /// context went is one torn down with the store (a trap, a killed instance), not closed by
    /// the guest.
    pub(crate) fn store_token(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.alive)
    }

    /// Default cap on the futures one instance may have in flight at once.
    pub const DEFAULT_MAX_LIVE_FUTURES: usize = 4096;
    /// Default memory budget of one instance: 64 MiB of everything it makes the host hold.
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
            write_pool: None,
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

    /// The most bytes this instance may make the host hold at once (see
    /// [`WasiCacheCtxBuilder::memory_budget`]).
    pub fn memory_budget(&self) -> usize {
        self.budget.limit()
    }

    /// Bytes this instance makes the host hold now, as charged to its memory budget.
    pub fn held_bytes(&self) -> usize {
        self.budget.used()
    }

    /// A handle that tells this context whether its instance is serving requests, for hosts
    /// that reuse instances: see [`Requests`].
    pub fn requests(&self) -> Requests {
        self.requests.clone()
    }

    /// A handle on this instance's memory budget that outlives the store (for metrics).
    pub fn memory_meter(&self) -> MemoryMeter {
        MemoryMeter(Arc::clone(&self.budget))
    }

    /// How many futures are live now: held by the guest, or with a backend call still running.
    pub fn live_futures(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// A slot of the shared write pool for write `op` on a key of `key_len` bytes (nothing
    /// without a pool), or the error the guest gets when the pool is full.
    pub(crate) fn reserve_write(&self, op: &str, key_len: usize) -> Result<WriteSlot, CacheError> {
        match &self.writes {
            Some((pool, instance)) => WriteSlot::reserve(pool, instance, op, key_len),
            None => Ok(WriteSlot::default()),
        }
    }

    /// Takes one live-future slot for operation `op`, charging the call's key to the memory
    /// budget, or the error the guest gets when the cap or the budget is reached.
    pub(crate) fn acquire(&self, op: &str, key_len: usize) -> Result<Arc<LiveToken>, CacheError> {
        let held = self.budget.charge_resource(op, key_len)?;
        LiveToken::acquire(&self.live, self.max_live_futures, Some(held)).ok_or_else(|| {
            CacheError::op(
                op,
                format!(
                    "this instance already has {} live futures, the limit; read or drop some first",
                    self.max_live_futures
                ),
            )
        })
    }
}

impl Drop for WasiCacheCtx {
    fn drop(&mut self) {
        // The instance has ended: the writes it leaves running are the pool's orphans now.
        if let Some((pool, instance)) = &self.writes {
            instance.end(pool);
        }
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
    write_pool: Option<Arc<WritePool>>,
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

    /// Sets the most bytes the instance may make the host hold at once; 64 MiB unless set.
    ///
    /// Charged to it, each with a fixed overhead per resource: the values it references
    /// (`incoming-value`s and their streams, even after the cache evicted or overwrote them),
    /// outgoing-value bodies (written, or streamed at their buffer's real capacity), the key of
    /// every call in flight and a `set`'s value until its write is done, vacancies and their
    /// keys, and buckets with their names. Going beyond it fails that operation with an error
    /// resource (or a failed stream write, or an outgoing-value that refuses its body), never a
    /// trap.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Shares `pool` with other instances: each `set` and `delete` takes one of its slots at
    /// its call and holds it (with its key and value's bytes) until the write completes, even
    /// after this instance ended; a write the full pool refuses fails with an error resource.
    /// No pool unless set: an instance's writes are then bounded by its own caps alone, which
    /// they outlive.
    pub fn write_pool(mut self, pool: Arc<WritePool>) -> Self {
        self.write_pool = Some(pool);
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
            writes: self
                .write_pool
                .map(|pool| (pool, Arc::new(InstanceWrites::default()))),
            requests: Requests::default(),
            alive: Arc::new(()),
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

/// The [`HasData`](wasmtime::component::HasData) marker that lends the generated bindings of
/// both flavours a [`WasiCacheCtxView`].
pub(crate) struct HasWasiCache;

impl wasmtime::component::HasData for HasWasiCache {
    type Data<'a> = WasiCacheCtxView<'a>;
}
