//! # wasi-cache-host
//!
//! The [wasmtime] host of `wasi:keyvalue/cache` (package `wasi:keyvalue@0.1.0`), serving guests
//! from any [`wasi_cache_engine::Backend`]: the embedded [`wasi_cache_engine::MemoryCache`],
//! Redis, or your own. It implements the interfaces `cache`, `types` and `wasi-keyvalue-error`
//! in both their forms, like wasmtime-wasi, one module each over one shared core:
//!
//! - [`p2`]: WASI 0.2 (as golem-rust 2.x imports it): `…-get` polls and `listen-to-…` pollables,
//!   `wasi:io` streams; `wasi:io` is wasmtime-wasi's own, so link [`wasmtime_wasi::p2`] too. The
//!   crate root's [`add_to_linker`] and [`bindings`] are this flavour's.
//! - [`p3`]: WASI 0.3 (as golem-rust 3.x imports it): one `get: async func()` per future,
//!   `stream<u8>` bodies, on wasmtime's component-model async (experimental in wasmtime 48): the
//!   engine needs `Config::wasm_component_model_async(true)`, and a guest's exports are called
//!   with `Store::run_concurrent`.
//!
//! Both forms declare the same names, so one linker carries one of them; a 0.2 and a 0.3
//! component get one linker each, on one engine and one backend, and share the cache (their
//! get-or-sets rendezvous with each other). The [`WasiCacheCtx`] (backend, namespace, limits,
//! live-future cap, memory budget) is the same for both, and so are the semantics below: a 0.3
//! `get` waits where a 0.2 `…-get` returns `none`. A second 0.3 `get` of one future while the
//! first still waits takes over (the first, perhaps cancelled by the guest, returns an error):
//! a future wakes one waiter, whatever the guest does.
//!
//! To run any component, ask it which form it imports ([`Flavour::of_cache_import`]) and link
//! WASI with that form ([`add_wasi_and_cache_to_linker`]), as `wasi-cache run` does.
//!
//! ## Embedding
//! Give each [`Store`](wasmtime::Store) a [`WasiCacheCtx`] (the backend handle, the namespace,
//! the limits), expose it with [`WasiCacheView`], and add the interfaces to your linker. When a
//! component needs WASI and the cache and nothing else, [`WasiCacheState`] is that store data
//! ready-made; otherwise write your own, as here:
//!
//! ```no_run
//! use std::sync::Arc;
//! use wasmtime::component::{Linker, ResourceTable};
//! use wasmtime::{Config, Engine, Store};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//! use wasi_cache_engine::{Config as CacheConfig, MemoryCache, Namespace};
//! use wasi_cache_host::{WasiCacheCtx, WasiCacheCtxView, WasiCacheView};
//!
//! struct State {
//!     table: ResourceTable,
//!     wasi: WasiCtx,
//!     cache: WasiCacheCtx,
//! }
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//! impl WasiCacheView for State {
//!     fn cache(&mut self) -> WasiCacheCtxView<'_> {
//!         WasiCacheCtxView { ctx: &self.cache, table: &mut self.table }
//!     }
//! }
//!
//! # fn main() -> wasmtime::Result<()> {
//! let engine = Engine::new(&Config::new())?;
//! let backend = Arc::new(MemoryCache::new(CacheConfig::with_capacity(64 << 20))?);
//!
//! let mut linker = Linker::<State>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
//! wasi_cache_host::add_to_linker(&mut linker)?;
//!
//! let cache = WasiCacheCtx::builder(backend).namespace(Namespace::new("tenant-a")?).build();
//! let state = State { table: ResourceTable::new(), wasi: WasiCtx::builder().build(), cache };
//! let store = Store::new(&engine, state);
//! // ... instantiate a component with `linker` in `store` and run it ...
//! # drop(store);
//! # Ok(())
//! # }
//! ```
//!
//! ## Semantics
//! - Every cache operation starts its backend call at once, on the ambient tokio runtime,
//!   concurrently with the guest; its future resource's `…-get` returns `none` until the call is
//!   done, then `some(result)` once, then `some(err(error))` ("result already taken").
//! - `listen-to-…` returns a `wasi:io/poll` pollable, a child of the future: drop it first.
//! - `vacancy-fill` returns an outgoing-value whose body fills the vacancy: on
//!   `outgoing-value-write-body-sync`, or when the stream of `outgoing-value-write-body-async` is
//!   dropped. Dropping the vacancy, or that outgoing-value before a body, abandons it (the backend
//!   hands it to a waiter), and so does a guest that traps or whose store is dropped. In 0.3,
//!   `outgoing-value-write-body-async` takes the guest's `stream<u8>`: the body is complete when
//!   the guest drops its writable end. (wasmtime 48 drops a stream's consumer for that end and
//!   for the store's teardown alike; the host tells them apart by whether the store's
//!   [`WasiCacheCtx`] still exists, since wasmtime drops a store's data first. So a 0.3 guest
//!   that traps mid-body has its partial body abandoned, as in 0.2, never stored cut short.)
//! - Dropping a `set` or `delete` future does not cancel the write; dropping a `get-or-set`
//!   future leaves the rendezvous (a vacancy it held or was about to receive is handed off).
//! - Bad input (oversized keys or values, more live futures than
//!   [`WasiCacheCtxBuilder::max_live_futures`], more memory than
//!   [`WasiCacheCtxBuilder::memory_budget`]) yields an error resource, never a trap.
//!
//! ## Untrusted guests
//! Every byte a guest can make the host hold on its behalf is charged to its instance's memory
//! budget, with a fixed overhead per resource: the values it references (`incoming-value`s and
//! their streams, which keep a value alive after the cache evicted or overwrote it), outgoing
//! bodies (streamed ones at their buffer's real capacity), the key of every call in flight, a
//! `set`'s value while it is written, vacancies and their keys, buckets and their names.
//! [`WasiCacheCtx::memory_meter`] reads it. What the budget does not cover is bounded elsewhere:
//! error resources and pollables by the store's [`ResourceTable`](wasmtime::component::ResourceTable)
//! capacity (`set_max_capacity`), and the strings and lists a call lifts from the guest by the
//! guest's own linear memory (cap it with [`wasmtime::StoreLimits`]).
//!
//! Results reach a guest however it waits: blocking, `poll`, or spinning on `…-get` or
//! `pollable.ready` without ever yielding (each of those polls the backend call itself, outside
//! tokio's cooperative budget). A panic in a host function (there should be none) traps that
//! guest instead of unwinding through the embedder, and a backend call that panics resolves to
//! an error. Writing more to a body stream than `check-write` permitted traps, as wasi:io
//! specifies.

#![deny(missing_docs)]

mod budget;
mod ctx;
mod error;
mod flavour;
mod future;
mod guard;
mod leases;
mod ops;
pub mod p2;
pub mod p3;
mod shared_impls;
mod state;
mod value;
mod writes;

pub use budget::MemoryMeter;
pub use ctx::{WasiCacheCtx, WasiCacheCtxBuilder, WasiCacheCtxView, WasiCacheView};
pub use error::CacheError;
pub use flavour::{Flavour, add_wasi_and_cache_to_linker};
pub use future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
pub use leases::Requests;
/// The WASI 0.2 flavour's linking and bindings at the crate root, as before there were two.
pub use p2::{add_to_linker, add_to_linker_with, bindings};
pub use state::WasiCacheState;
pub use value::{Bucket, Entry, IncomingValue, OutgoingValue, PendingVacancy};
pub use writes::WritePool;
