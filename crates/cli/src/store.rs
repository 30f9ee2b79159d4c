//! The store of one instance: its data ([`InstanceState`]: WASI, wasi:http and the cache over
//! one resource table) and the one builder of such stores ([`new_store_with`]), which `run` calls
//! once and `serve` once per request.

use std::sync::Arc;
use std::time::Instant;

use wasi_cache_engine::Backend;
use wasi_cache_host::{WasiCacheCtx, WasiCacheCtxView, WasiCacheState, WasiCacheView};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::backend::cache_limits;
use crate::limits;
use crate::options::CommonArgs;
use crate::outgoing::Hooks;
use crate::shared::Shared;

/// Store data of one instance: WASI and the cache ([`WasiCacheState`], also the store's
/// resource limiter) and wasi:http, all over the resource table of `cache`.
pub struct InstanceState {
    /// WASI, the cache, the resource table and the limits on memories and tables.
    pub cache: WasiCacheState,
    /// The wasi:http context (used only by components linked with wasi:http: `serve`).
    pub http: WasiHttpCtx,
    /// How its outgoing requests are sent.
    pub hooks: Hooks,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.cache.ctx()
    }
}

impl WasiCacheView for InstanceState {
    fn cache(&mut self) -> WasiCacheCtxView<'_> {
        self.cache.cache()
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.cache.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A store for one instance of a component run with `args`: `wasi`, wasi:http, the cache on
/// `backend` with the options' namespace, size limits, live-future cap and memory budget, and
/// the limits on memory, resources and (up to `deadline`) time of [`limits::apply`]. The one
/// place such a store is made: `run` makes one, `serve` one per request.
pub fn new_store(
    engine: &Engine,
    args: &CommonArgs,
    backend: Arc<dyn Backend>,
    wasi: WasiCtx,
    deadline: Option<Instant>,
) -> Store<InstanceState> {
    new_store_with(engine, args, backend, wasi, deadline, &Shared::default())
}

/// [`new_store`] for an instance of a server, sharing `shared` with the others: the outbound
/// policy of its requests and the pool of its writes.
pub fn new_store_with(
    engine: &Engine,
    args: &CommonArgs,
    backend: Arc<dyn Backend>,
    wasi: WasiCtx,
    deadline: Option<Instant>,
    shared: &Shared,
) -> Store<InstanceState> {
    let mut cache = WasiCacheCtx::builder(backend)
        .namespace(args.namespace.clone())
        .limits(cache_limits(args))
        .max_live_futures(args.max_live_futures)
        .memory_budget(args.memory_budget);
    if let Some(pool) = &shared.write_pool {
        cache = cache.write_pool(pool.clone());
    }
    let state = InstanceState {
        cache: WasiCacheState::new(wasi, cache.build()),
        http: WasiHttpCtx::new(),
        hooks: shared.hooks.clone(),
    };
    limits::apply(engine, state, args, deadline)
}
