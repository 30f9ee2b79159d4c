//! The near cache: the embedded engine ([`MemoryCache`]) in front of Redis, kept coherent with
//! the server by the invalidations of its tracking connections (see [`tracking`]; on a cluster,
//! one per master, see [`cluster`]).
//!
//! Entries are keyed by `<enc>` (the namespace-qualified key of the `keys` module) in one
//! namespace of the store, so an invalidation (a Redis value key) maps back to its entry without
//! interning the namespaces of other hosts' keys.
//!
//! Three rules keep it from serving a value older than an acknowledged write by more than the
//! invalidation's network latency:
//! - **Epochs.** Entries are read and inserted only while the tracking connections of the
//!   current epoch are all confirmed (`CLIENT TRACKING` answered). Losing any sets the epoch to 0
//!   and empties the store before anything else can read it; a new round of connections empties
//!   it again, then sets a new epoch.
//! - **Fetches.** A read that may insert what it fetches registers before it sends its command
//!   and remembers the key's generation, the flush count and the epoch. An invalidation bumps
//!   the key's generation (a flush or a lost connection bumps the flush count), so a reply that
//!   was in flight while its key changed is never inserted. The check and the insert happen
//!   under the lock the invalidations take, so no invalidation falls between them.
//! - **Own writes.** This host's set, delete and fill drop the entry (and bump the generation of
//!   fetches in flight) once Redis answered, before they return.

pub(crate) mod cluster;
pub(crate) mod tracking;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasi_cache_engine::{
    Config, Error, Limits, MAX_NAMESPACE_LEN, MemoryCache, Namespace, Result, Stats,
};

use crate::counters::Counters;
use crate::errors::timeout_error;

/// Largest lookup buffer a thread keeps between lookups (a huge key's is freed).
const BUFFER_KEPT: usize = 4 << 10;

/// Where the tracking connection stands, for [`Near::tracking`].
#[derive(Debug, Clone)]
pub(crate) enum Status {
    /// Not confirmed yet (connecting, or reconnecting after a loss).
    Connecting,
    /// Invalidations flow: the near cache is in use.
    Tracking,
    /// The last attempt failed with this error; retried after a back-off.
    Failed(Error),
}

/// Fetches in flight for one key.
#[derive(Default)]
struct Pending {
    /// Fetches registered and not finished.
    refs: usize,
    /// Bumped by every invalidation of the key while fetches are in flight.
    generation: u64,
}

/// The registry of fetches in flight.
#[derive(Default)]
struct Fetches {
    keys: HashMap<Vec<u8>, Pending>,
    /// Bumped by every flush: a fetch that saw an older count must not insert.
    flushes: u64,
}

/// The near cache of one backend.
pub(crate) struct Near {
    store: MemoryCache,
    /// The store's one namespace: its keys are already namespace-qualified (`<enc>`).
    ns: Namespace,
    /// The epoch of the confirmed tracking connection; 0 while there is none.
    epoch: AtomicU64,
    fetches: Mutex<Fetches>,
    counters: Arc<Counters>,
    status: watch::Sender<Status>,
    /// The tracking task (aborted when the backend goes).
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A registered fetch of one key; dropping it unfinished just unregisters it.
pub(crate) struct Fetch<'a> {
    near: &'a Near,
    enc: Vec<u8>,
    generation: u64,
    flushes: u64,
    epoch: u64,
}

impl Near {
    /// A near cache of `capacity` bytes for values within `limits`, tracking `target` (its
    /// clients speak RESP3); the tracking task starts at once.
    pub(crate) fn start(
        capacity: u64,
        limits: Limits,
        target: tracking::Target,
        op_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Arc<Self>> {
        let near = Self::new(capacity, limits, counters)?;
        let task = tokio::spawn(tracking::track(target, op_timeout, Arc::downgrade(&near)));
        *near.task.lock() = Some(task);
        Ok(near)
    }

    /// The near cache without its tracking task: not in use until [`Near::up`].
    fn new(capacity: u64, limits: Limits, counters: Arc<Counters>) -> Result<Arc<Self>> {
        let store = MemoryCache::new(Config {
            capacity,
            limits: Limits {
                // Keys are `<enc>`: the key, its namespace and the namespace's length byte.
                max_key_size: limits.max_key_size.saturating_add(1 + MAX_NAMESPACE_LEN),
                max_value_size: limits.max_value_size,
            },
            ..Config::default()
        })
        .map_err(|e| Error::InvalidConfig(format!("near cache: {e}")))?;
        Ok(Arc::new(Self {
            store,
            ns: Namespace::new("")?,
            epoch: AtomicU64::new(0),
            fetches: Mutex::new(Fetches::default()),
            counters,
            status: watch::Sender::new(Status::Connecting),
            task: Mutex::new(None),
        }))
    }

    /// Waits (at most `limit`) until the tracking connection is confirmed; the last failure (or a
    /// timeout) otherwise.
    pub(crate) async fn tracking(&self, limit: Duration) -> Result<()> {
        let mut status = self.status.subscribe();
        let confirmed = status.wait_for(|s| matches!(s, Status::Tracking));
        match tokio::time::timeout(limit, confirmed).await {
            Ok(Ok(_)) => Ok(()),
            _ => match &*self.status.borrow() {
                Status::Tracking => Ok(()),
                Status::Failed(e) => Err(e.clone()),
                Status::Connecting => Err(timeout_error(limit)),
            },
        }
    }

    /// The entry for `key` in `ns`, while the near cache is in use. The store counts its hits
    /// and misses (striped per thread: hot keys on several cores share no counter).
    pub(crate) fn lookup(&self, ns: &Namespace, key: &[u8]) -> Option<Bytes> {
        if self.epoch.load(Ordering::Acquire) == 0 {
            return None;
        }
        // A per-thread buffer: a near hit allocates nothing.
        thread_local! {
            static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        ENCODED.with_borrow_mut(|enc| {
            enc.clear();
            ns.encode_key_into(key, enc);
            let found = self.store.get(&self.ns, enc).ok().flatten();
            if enc.capacity() > BUFFER_KEPT {
                *enc = Vec::new();
            }
            found
        })
    }

    /// Registers a fetch of `enc` about to be sent; `None` while the near cache is not in use
    /// (the fetch then inserts nothing).
    pub(crate) fn begin(&self, enc: &[u8]) -> Option<Fetch<'_>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch == 0 {
            return None;
        }
        let mut fetches = self.fetches.lock();
        let flushes = fetches.flushes;
        let pending = fetches.keys.entry(enc.to_vec()).or_default();
        pending.refs += 1;
        Some(Fetch {
            near: self,
            enc: enc.to_vec(),
            generation: pending.generation,
            flushes,
            epoch,
        })
    }

    /// Drops the entry of `enc` and spoils the fetches of it in flight (an invalidation, or
    /// this host's own write).
    pub(crate) fn forget(&self, enc: &[u8]) {
        let mut fetches = self.fetches.lock();
        if let Some(pending) = fetches.keys.get_mut(enc) {
            pending.generation = pending.generation.wrapping_add(1);
        }
        // A key beyond the store's limits was never stored: nothing to drop.
        let _ = self.store.delete(&self.ns, enc);
        drop(fetches);
    }

    /// Redis said `enc` changed.
    pub(crate) fn invalidate(&self, enc: &[u8]) {
        self.forget(enc);
        Counters::bump(&self.counters.invalidations);
    }

    /// Redis said every key may have changed (FLUSHDB, FLUSHALL).
    pub(crate) fn invalidate_all(&self) {
        self.flush();
        Counters::bump(&self.counters.invalidations);
    }

    /// Empties the store and spoils every fetch in flight.
    fn flush(&self) {
        let mut fetches = self.fetches.lock();
        fetches.flushes = fetches.flushes.wrapping_add(1);
        self.store.clear();
        drop(fetches);
    }

    /// The tracking connection of `epoch` is confirmed: start afresh and use the near cache.
    fn up(&self, epoch: u64) {
        let fetches = self.fetches.lock();
        self.store.clear();
        self.epoch.store(epoch, Ordering::Release);
        drop(fetches);
        self.status.send_replace(Status::Tracking);
    }

    /// The tracking connection of `epoch` is lost (or was never confirmed): stop using the near
    /// cache and empty it, unless a newer connection took over already.
    fn down(&self, epoch: u64) {
        if self
            .epoch
            .compare_exchange(epoch, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.flush();
        self.status.send_if_modified(|s| {
            let changed = matches!(s, Status::Tracking);
            if changed {
                *s = Status::Connecting;
            }
            changed
        });
    }

    /// An attempt to (re)connect failed with `e`.
    fn failed(&self, e: Error) {
        self.status.send_replace(Status::Failed(e));
    }

    /// The store's figures: its hits (near hits, which are hits too) and misses, entries and
    /// bytes now, evictions and expirations so far.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        let store = self.store.stats();
        stats.near_hits = store.hits;
        stats.near_misses = store.misses;
        stats.hits += store.hits;
        stats.entries = store.entries;
        stats.bytes = store.bytes;
        stats.evictions = store.evictions;
        stats.expirations = store.expirations;
    }
}

impl Drop for Near {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

impl Fetch<'_> {
    /// The fetch's reply: inserts `value` (with the TTL `pttl`, as PTTL answered it `elapsed`
    /// after the command was sent) unless the key changed, the near cache was flushed or the
    /// tracking connection changed since the fetch was registered.
    pub(crate) fn finish(self, value: &Bytes, pttl: i64, elapsed: Duration) {
        let Some(ttl) = near_ttl(pttl, elapsed) else {
            return;
        };
        let near = self.near;
        let fetches = near.fetches.lock();
        let current = fetches
            .keys
            .get(&self.enc)
            .is_some_and(|p| p.generation == self.generation)
            && fetches.flushes == self.flushes
            && near.epoch.load(Ordering::Acquire) == self.epoch;
        if current {
            // Too large for the store (or a shard of it): simply not cached.
            let _ = near.store.set(&near.ns, &self.enc, value.clone(), ttl);
        }
        drop(fetches);
    }
}

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        let mut fetches = self.near.fetches.lock();
        if let Some(pending) = fetches.keys.get_mut(&self.enc) {
            pending.refs -= 1;
            if pending.refs == 0 {
                fetches.keys.remove(&self.enc);
            }
        }
    }
}

/// The near entry's TTL for a value whose PTTL was `pttl` (ms; -1 for none) when read, at most
/// `elapsed` ago: counted from when the command was sent, so the near entry never outlives the
/// Redis one. `None` when it should not be cached at all (expiring now, or gone).
fn near_ttl(pttl: i64, elapsed: Duration) -> Option<Option<Duration>> {
    match pttl {
        -1 => Some(None),
        ms if ms > 0 => Duration::from_millis(ms as u64)
            .checked_sub(elapsed)
            .filter(|left| !left.is_zero())
            .map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
