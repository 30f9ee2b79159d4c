//! The backend contract: the operations of `wasi:keyvalue/cache` that every backend serves.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;
use crate::namespace::Namespace;
use crate::stats::Stats;

/// A boxed, sendable future, as backends return from object-safe methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A cache backend: the embedded engine, Redis, or anything else an embedder plugs in.
///
/// Semantics shared by every backend (see the crate docs for the rendezvous):
/// - `ttl` is the time-to-live of an entry: `Some(Duration::ZERO)` means the entry is never
///   visible, `None` means no expiry (the entry may still be evicted).
/// - Namespaces are separate keyspaces.
/// - Hits share the stored [`Bytes`]; they never copy the value.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The value stored for `key`, if present and not expired.
    async fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Bytes>>;

    /// [`get`](Backend::get), without making this process or a server materialise more than
    /// `limit` bytes of value for it: a larger value is answered [`Within::TooLarge`] with its
    /// length, so that the caller can reserve that much and ask again.
    ///
    /// A backend may still return a value over `limit` that it already holds in memory (shared,
    /// not copied), as the default does: it materialises nothing new.
    async fn get_within(
        &self,
        ns: &Namespace,
        key: &[u8],
        limit: usize,
    ) -> Result<Within<Option<Bytes>>> {
        let _ = limit;
        Ok(Within::Fits(self.get(ns, key).await?))
    }

    /// Whether a value is stored for `key` and not expired.
    async fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool>;

    /// Stores `value` for `key` with an optional time-to-live, resolving pending rendezvous.
    async fn set(
        &self,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()>;

    /// Removes any value stored for `key`.
    async fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<()>;

    /// The value for `key`, or the one [`Vacancy`] concurrent callers rendezvous on.
    async fn get_or_set(&self, ns: &Namespace, key: &[u8]) -> Result<GetOrSet>;

    /// [`get_or_set`](Backend::get_or_set), bounded as [`get_within`](Backend::get_within): a
    /// present value over `limit` that the backend would have to materialise is answered
    /// [`Within::TooLarge`] (and this caller leaves the rendezvous).
    async fn get_or_set_within(
        &self,
        ns: &Namespace,
        key: &[u8],
        limit: usize,
    ) -> Result<Within<GetOrSet>> {
        let _ = limit;
        Ok(Within::Fits(self.get_or_set(ns, key).await?))
    }

    /// How many copies of a call's key and value the backend (and its server) may hold at once
    /// while the call is in flight, besides the caller's own: embedders charge a caller for
    /// them. See [`Copies`].
    fn copies(&self) -> Copies {
        Copies::default()
    }

    /// Waits, at most `limit`, until work the backend still does for callers that no longer wait
    /// on it is done: writes whose futures were dropped, releases of abandoned vacancies. Call
    /// it before shutting down. Backends that finish such work at once (the memory engine) return
    /// at once.
    async fn settle(&self, limit: Duration) {
        let _ = limit;
    }

    /// Checks that the backend answers (a remote one within its operation timeout), for health
    /// checks. The embedded engine always does.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// A snapshot of the backend's counters.
    fn stats(&self) -> Stats;

    /// The key and value size limits this backend enforces.
    fn limits(&self) -> Limits;
}

/// The outcome of a size-bounded read ([`Backend::get_within`], [`Backend::get_or_set_within`]).
#[derive(Debug)]
pub enum Within<T> {
    /// The outcome, its value (if any) within the limit or already in memory.
    Fits(T),
    /// The key holds a value of this many bytes, more than the limit: nothing of it was read.
    TooLarge(usize),
}

/// What a backend holds of one call in flight, in copies of its key and of its value (whole,
/// or as part of a longer name or command), at most, besides the caller's own: embedders
/// charge a key `key` times and a value being written `value` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copies {
    /// Copies of the key (map entries, names derived from it, commands and their buffers).
    pub key: usize,
    /// Copies of a value being written (commands and their buffers, a server's input buffer).
    pub value: usize,
}

impl Default for Copies {
    /// One of each: the embedded engine's rendezvous keeps the key once, and a write is charged
    /// its value once more while under way (the guest may drop its own meanwhile).
    fn default() -> Self {
        Self { key: 1, value: 1 }
    }
}

/// The outcome of [`Backend::get_or_set`].
#[derive(Debug)]
pub enum GetOrSet {
    /// The key has a value (present already, or filled by the caller that held the vacancy).
    Occupied(Bytes),
    /// The key has no value and this caller is the one to fill it.
    Vacant(Vacancy),
}

/// The right, and duty, to fill one missing key that other callers may be waiting on.
///
/// Fill it with [`Vacancy::fill`]; dropping it unfilled abandons it, which hands it to exactly
/// one waiting caller (or leaves the key absent when nobody waits).
#[must_use = "dropping a vacancy abandons it and hands it to a waiter"]
pub struct Vacancy {
    slot: Box<dyn VacancySlot>,
}

impl Vacancy {
    /// Wraps a backend's vacancy; backends call this, users receive the result.
    pub fn new(slot: impl VacancySlot) -> Self {
        Self {
            slot: Box::new(slot),
        }
    }

    /// Stores `value` with `ttl` and resolves every waiter with it.
    ///
    /// When the vacancy was already handed off (its timeout passed), the value is still stored,
    /// as an ordinary `set`.
    pub async fn fill(self, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.slot.fill(value, ttl).await
    }
}

impl fmt::Debug for Vacancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vacancy").finish_non_exhaustive()
    }
}

/// A backend's side of a [`Vacancy`]: filling it, and abandoning it on drop.
pub trait VacancySlot: Send + 'static {
    /// Stores the value and wakes the waiters; see [`Vacancy::fill`].
    fn fill(self: Box<Self>, value: Bytes, ttl: Option<Duration>)
    -> BoxFuture<'static, Result<()>>;
}

/// Size limits on keys and values; the host reports violations to guests as errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest key, in bytes (default 64 KiB).
    pub max_key_size: usize,
    /// Largest value, in bytes (default 16 MiB).
    pub max_value_size: usize,
}

impl Limits {
    /// Default largest key: 64 KiB.
    pub const DEFAULT_MAX_KEY_SIZE: usize = 64 << 10;
    /// Default largest value: 16 MiB.
    pub const DEFAULT_MAX_VALUE_SIZE: usize = 16 << 20;

    /// Checks a key against the limit.
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.max_key_size {
            return Err(crate::Error::KeyTooLong {
                len: key.len(),
                max: self.max_key_size,
            });
        }
        Ok(())
    }

    /// Checks a value's length against the limit.
    pub fn check_value(&self, len: usize) -> Result<()> {
        if len > self.max_value_size {
            return Err(crate::Error::ValueTooLarge {
                len,
                max: self.max_value_size,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_size: Self::DEFAULT_MAX_KEY_SIZE,
            max_value_size: Self::DEFAULT_MAX_VALUE_SIZE,
        }
    }
}
