//! # wasi-cache-engine
//!
//! The embedded cache engine of wasi-cache, and the backend contract every wasi-cache backend
//! (this engine, Redis) implements for the `wasi:keyvalue/cache` host.
//!
//! - [`Backend`] is the contract: `get`, `exists`, `set` with a TTL, `delete` and `get_or_set`,
//!   over [`Namespace`]d keys and [`bytes::Bytes`] values, with [`Error`]s a user can act on.
//! - [`MemoryCache`] is the engine: sharded, bounded by bytes (keys, values and per-entry
//!   overhead), S3-FIFO eviction (scan-resistant), per-entry TTLs in milliseconds, counters.
//!
//! ## Rendezvous
//! `get_or_set` on a missing key lets concurrent callers meet:
//! - exactly one caller gets [`GetOrSet::Vacant`] with a [`Vacancy`]; every other caller waits
//!   (asynchronously) and resolves [`GetOrSet::Occupied`] with the value the holder fills in;
//! - dropping a vacancy unfilled hands it to exactly one waiter, which resolves `Vacant` and
//!   becomes the filler; with no waiter the key stays absent;
//! - a vacancy not filled within the vacancy timeout ([`Config::vacancy_timeout`], 30 s by
//!   default) is handed off the same way (to a waiter whose wait ends, or to the next caller);
//!   a late fill from the old holder is still stored, as an ordinary `set`;
//! - a plain `set` on a key with a pending rendezvous resolves all its waiters with that value;
//! - dropping a waiting `get_or_set` future leaves the rendezvous; if it had just been handed
//!   the vacancy, the vacancy goes on to the next waiter.
//!
//! ## TTL
//! `Some(Duration::ZERO)` means the value is never visible (a `set` with it removes the key;
//! waiters of a fill with it still receive the value); `None` means no expiry, though the
//! entry may be evicted. An expired entry is never returned, and expired entries are reclaimed
//! in bounded batches by later operations or by [`MemoryCache::run_pending_tasks`].
//!
//! ## Example
//! ```
//! use bytes::Bytes;
//! use wasi_cache_engine::{Config, GetOrSet, MemoryCache, Namespace};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> wasi_cache_engine::Result<()> {
//! let cache = MemoryCache::new(Config::with_capacity(64 << 20))?;
//! let ns = Namespace::new("tenant-a")?;
//! cache.set(&ns, b"greeting", Bytes::from_static(b"hello"), None)?;
//! assert_eq!(cache.get(&ns, b"greeting")?, Some(Bytes::from_static(b"hello")));
//!
//! match cache.get_or_set(&ns, b"answer").await? {
//!     GetOrSet::Occupied(value) => println!("cached: {value:?}"),
//!     GetOrSet::Vacant(vacancy) => vacancy.fill(Bytes::from_static(b"42"), None).await?,
//! }
//! assert_eq!(cache.get(&ns, b"answer")?, Some(Bytes::from_static(b"42")));
//! # Ok(())
//! # }
//! ```

mod backend;
mod clock;
mod config;
mod error;
mod memory;
mod namespace;
mod stats;

pub use backend::{Backend, BoxFuture, Copies, GetOrSet, Limits, Vacancy, VacancySlot, Within};
pub use clock::Clock;
pub use config::Config;
pub use error::{Error, Result};
pub use memory::{ENTRY_OVERHEAD, MemoryCache};
pub use namespace::{MAX_NAMESPACE_LEN, Namespace};
pub use stats::Stats;
