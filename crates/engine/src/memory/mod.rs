//! The embedded memory engine: sharded, byte-bounded, S3-FIFO eviction, per-entry TTL, and the
//! get-or-set rendezvous.
//!
//! Layout: a key's hash picks a shard; each shard is one `RwLock` over a [`store::Store`] (the
//! entries) and a [`rendezvous::PendingTable`] (keys someone is filling). Hits take the read
//! lock only and record the access in a relaxed atomic, so concurrent readers never write to
//! shared lines beyond the lock word; writes, misses of `get_or_set` and hand-offs take the
//! write lock. Expired entries are reclaimed in bounded batches by whichever operation notices
//! that the shard's earliest expiry has passed.

mod ghost;
mod key;
mod namespaces;
mod rendezvous;
mod store;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;

pub use store::ENTRY_OVERHEAD;

use crate::backend::{Backend, GetOrSet, Limits};
use crate::clock::{Clock, Millis};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::stats::{Counter, Counters, Stats};
use namespaces::Namespaces;
use rendezvous::{Claim, PendingTable};
use store::Store;

/// Expired entries one operation reclaims at most, so no call pays for a backlog.
const SWEEP_BUDGET: usize = 16;

/// Hashes `(namespace, key)` pairs with a per-cache random seed.
#[derive(Clone)]
pub(crate) struct KeyHasher(foldhash::fast::RandomState);

impl KeyHasher {
    #[inline]
    fn hash(&self, ns: u32, key: &[u8]) -> u64 {
        let mut h = self.0.build_hasher();
        h.write_u32(ns);
        h.write(key);
        h.finish()
    }
}

struct ShardState {
    store: Store,
    pending: PendingTable,
}

/// One shard, on its own cache lines so that neighbouring locks do not contend.
#[repr(align(128))]
struct Shard {
    state: RwLock<ShardState>,
    /// Earliest expiry in the shard (`Millis::MAX` for none): lets readers notice due work
    /// without taking the write lock.
    next_expiry: AtomicU64,
}

pub(crate) struct Core {
    shards: Box<[Shard]>,
    shard_mask: usize,
    shard_capacity: u64,
    hasher: KeyHasher,
    namespaces: Namespaces,
    limits: Limits,
    vacancy_timeout: Duration,
    clock: Clock,
    counters: Counters,
    next_token: AtomicU64,
}

/// The embedded in-memory cache: the default backend of wasi-cache.
///
/// Cloning is cheap and shares the cache. All methods but [`MemoryCache::get_or_set`] are
/// synchronous and never block on I/O; `get_or_set` waits (asynchronously) only while another
/// caller holds the key's vacancy, and must be polled inside a Tokio runtime with time enabled,
/// which enforces the vacancy timeout.
#[derive(Clone)]
pub struct MemoryCache {
    core: Arc<Core>,
}

impl MemoryCache {
    /// Builds a cache; fails with [`Error::InvalidConfig`] (never panics) if the configuration
    /// is out of range ([`Config::validate`]) or its shards cannot hold the entries its limits
    /// allow.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        // Saturating: limits near `usize::MAX` count as an entry no shard can hold.
        let max_entry =
            store::entry_charge(config.limits.max_key_size, config.limits.max_value_size);
        let fitting = usize::try_from((config.capacity / max_entry).max(1)).unwrap_or(usize::MAX);
        let shards = match config.shards {
            Some(n) => {
                let n = prev_power_of_two(n);
                if n > fitting {
                    return Err(Error::InvalidConfig(format!(
                        "{n} shards of {} bytes each cannot hold a maximal entry of {max_entry} \
                         bytes; use at most {fitting} shards, a larger capacity or smaller limits",
                        config.capacity / n as u64
                    )));
                }
                n
            }
            None => {
                let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
                prev_power_of_two((cores * 4).min(fitting))
            }
        };
        let shard_capacity = config.capacity / shards as u64;
        let hasher = KeyHasher(foldhash::fast::RandomState::default());
        let shards = (0..shards)
            .map(|_| Shard {
                state: RwLock::new(ShardState {
                    store: Store::new(hasher.clone(), shard_capacity),
                    pending: PendingTable::new(),
                }),
                next_expiry: AtomicU64::new(Millis::MAX),
            })
            .collect::<Box<[_]>>();
        Ok(Self {
            core: Arc::new(Core {
                shard_mask: shards.len() - 1,
                shards,
                shard_capacity,
                hasher,
                namespaces: Namespaces::new(),
                limits: config.limits,
                vacancy_timeout: config.vacancy_timeout,
                clock: config.clock,
                counters: Counters::default(),
                next_token: AtomicU64::new(1),
            }),
        })
    }

    /// The value stored for `key` in `ns`, if present and not expired.
    #[inline]
    pub fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Bytes>> {
        self.core.limits.check_key(key)?;
        Ok(self.core.lookup(ns, key))
    }

    /// Whether a live value is stored for `key` in `ns`.
    pub fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool> {
        self.get(ns, key).map(|v| v.is_some())
    }

    /// Stores `value` for `key` in `ns`; see [`Backend::set`] for the TTL rules.
    pub fn set(
        &self,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.core.set(ns, key, value, ttl)
    }

    /// Removes the value of `key` in `ns`; whether there was one (expired or not).
    pub fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool> {
        self.core.limits.check_key(key)?;
        let (id, hash) = self.core.locate(ns, key);
        let shard = self.core.shard(hash);
        let mut state = shard.state.write();
        let removed = state.store.remove(hash, id, key);
        self.core.after_write(shard, &mut state);
        Ok(removed)
    }

    /// The value of `key` in `ns`, or the vacancy that concurrent callers rendezvous on.
    ///
    /// See the crate docs for the rendezvous rules. Dropping the returned future while it waits
    /// leaves the rendezvous; a vacancy it had been handed goes on to the next waiter.
    pub async fn get_or_set(&self, ns: &Namespace, key: &[u8]) -> Result<GetOrSet> {
        let core = &self.core;
        core.limits.check_key(key)?;
        let (id, hash) = core.locate(ns, key);
        if let Some(value) = core.lookup_hashed(hash, id, key, false) {
            return Ok(GetOrSet::Occupied(value));
        }
        let shard = core.shard(hash);
        let claim = {
            let mut state = shard.state.write();
            let now = core.clock.now();
            if let Some(slot) = state
                .store
                .find(hash, id, key)
                .filter(|s| !s.expired(|| now))
            {
                slot.touch();
                core.counters.bump(Counter::Hits);
                return Ok(GetOrSet::Occupied(slot.value().clone()));
            }
            core.counters.bump(Counter::Misses);
            core.claim(&mut state, hash, ns, key)
        };
        Ok(match claim {
            Claim::Vacant(token) => GetOrSet::Vacant(core.vacancy(hash, ns, key, token)),
            Claim::Wait(waiter, deadline) => core.wait(hash, ns, key, waiter, deadline).await,
        })
    }

    /// Reclaims every expired entry now (operations also do this in small batches).
    pub fn run_pending_tasks(&self) {
        let now = self.core.clock.now();
        for shard in self.core.shards.iter() {
            if shard.next_expiry.load(Ordering::Relaxed) <= now {
                let mut state = shard.state.write();
                let n = state.store.sweep_expired(now, usize::MAX);
                self.core.counters.add(Counter::Expirations, n);
                shard
                    .next_expiry
                    .store(state.store.next_expiry(), Ordering::Relaxed);
            }
        }
    }

    /// Drops every entry at once (pending rendezvous are kept), as a near cache must when it
    /// can no longer tell which of its entries are stale.
    pub fn clear(&self) {
        for shard in self.core.shards.iter() {
            let fresh = Store::new(self.core.hasher.clone(), self.core.shard_capacity);
            let old = {
                let mut state = shard.state.write();
                shard.next_expiry.store(Millis::MAX, Ordering::Relaxed);
                std::mem::replace(&mut state.store, fresh)
            };
            // Freed outside the lock: readers of the shard need not wait for it.
            drop(old);
        }
    }

    /// A snapshot of the counters and of the resident entries and bytes.
    pub fn stats(&self) -> Stats {
        let mut stats = self.core.counters.snapshot();
        for shard in self.core.shards.iter() {
            let state = shard.state.read();
            stats.entries += state.store.len() as u64;
            stats.bytes += state.store.bytes();
        }
        stats
    }

    /// The key and value size limits.
    pub fn limits(&self) -> Limits {
        self.core.limits
    }

    /// The total byte capacity (the sum over shards, which may round the configured one down).
    pub fn capacity(&self) -> u64 {
        self.core.shard_capacity * self.core.shards.len() as u64
    }

    /// Number of shards in use.
    pub fn shard_count(&self) -> usize {
        self.core.shards.len()
    }

    /// Bytes an entry counts against capacity, for sizing a cache to a number of entries.
    pub fn entry_charge(key_len: usize, value_len: usize) -> u64 {
        store::entry_charge(key_len, value_len)
    }
}

impl Core {
    /// The engine's id for `ns` and the hash of `key` in it.
    #[inline]
    fn locate(&self, ns: &Namespace, key: &[u8]) -> (u32, u64) {
        let id = self.namespaces.id(ns);
        (id, self.hasher.hash(id, key))
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 40) as usize & self.shard_mask]
    }

    #[inline]
    fn lookup(&self, ns: &Namespace, key: &[u8]) -> Option<Bytes> {
        let (id, hash) = self.locate(ns, key);
        self.lookup_hashed(hash, id, key, true)
    }

    /// The live value under the read lock; counts a miss only if `count_miss`.
    #[inline]
    fn lookup_hashed(&self, hash: u64, ns: u32, key: &[u8], count_miss: bool) -> Option<Bytes> {
        let shard = self.shard(hash);
        let mut now = None;
        let found = {
            let state = shard.state.read();
            state.store.find(hash, ns, key).and_then(|slot| {
                if slot.expired(|| *now.get_or_insert_with(|| self.clock.now())) {
                    return None;
                }
                slot.touch();
                Some(slot.value().clone())
            })
        };
        match &found {
            Some(_) => self.counters.bump(Counter::Hits),
            None if count_miss => self.counters.bump(Counter::Misses),
            None => {}
        }
        if let Some(now) = now
            && shard.next_expiry.load(Ordering::Relaxed) <= now
            && let Some(mut state) = shard.state.try_write()
        {
            self.after_write(shard, &mut state);
        }
        found
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.limits.check_key(key)?;
        self.limits.check_value(value.len())?;
        let size = store::entry_charge(key.len(), value.len());
        if size > self.shard_capacity {
            return Err(Error::EntryTooLarge {
                size,
                capacity: self.shard_capacity,
            });
        }
        let (id, hash) = self.locate(ns, key);
        let shard = self.shard(hash);
        let expires = ttl.map(|ttl| self.clock.now().saturating_add(ceil_millis(ttl)));
        let mut state = shard.state.write();
        self.resolve_waiters(&mut state, hash, ns, key, &value);
        match ttl {
            // Never visible: the set replaces any older value with nothing.
            Some(ttl) if ttl.is_zero() => {
                state.store.remove(hash, id, key);
            }
            _ => {
                state
                    .store
                    .insert(hash, id, key, value, expires.unwrap_or(0), &self.counters);
                self.counters.bump(Counter::Inserts);
            }
        }
        self.after_write(shard, &mut state);
        Ok(())
    }

    /// Reclaims a bounded batch of expired entries and republishes the shard's next expiry.
    fn after_write(&self, shard: &Shard, state: &mut ShardState) {
        let due = state.store.next_expiry();
        if due != Millis::MAX {
            let now = self.clock.now();
            if due <= now {
                let n = state.store.sweep_expired(now, SWEEP_BUDGET);
                self.counters.add(Counter::Expirations, n);
            }
        }
        shard
            .next_expiry
            .store(state.store.next_expiry(), Ordering::Relaxed);
    }
}

/// Whole milliseconds in `ttl`, rounding a non-zero sub-millisecond part up so it still expires
/// after the TTL, never before.
fn ceil_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis().min(u64::MAX as u128) as u64;
    if !ttl.subsec_nanos().is_multiple_of(1_000_000) {
        ms.saturating_add(1)
    } else {
        ms
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[async_trait::async_trait]
impl Backend for MemoryCache {
    async fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Bytes>> {
        MemoryCache::get(self, ns, key)
    }

    async fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool> {
        MemoryCache::exists(self, ns, key)
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        MemoryCache::set(self, ns, key, value, ttl)
    }

    async fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<()> {
        MemoryCache::delete(self, ns, key).map(drop)
    }

    async fn get_or_set(&self, ns: &Namespace, key: &[u8]) -> Result<GetOrSet> {
        MemoryCache::get_or_set(self, ns, key).await
    }

    fn stats(&self) -> Stats {
        MemoryCache::stats(self)
    }

    fn limits(&self) -> Limits {
        MemoryCache::limits(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(config: Config) -> String {
        match MemoryCache::new(config) {
            Err(Error::InvalidConfig(message)) => message,
            Err(other) => panic!("expected InvalidConfig, got {other:?}"),
            Ok(_) => panic!("expected InvalidConfig, got a cache"),
        }
    }

    #[test]
    fn out_of_range_configs_are_invalid_not_panics() {
        assert!(invalid(Config::with_capacity(0)).contains("above zero"));
        assert!(invalid(Config::with_capacity(u64::MAX)).contains("largest supported"));
        for shards in [0, Config::MAX_SHARDS + 1, usize::MAX] {
            invalid(Config {
                shards: Some(shards),
                ..Config::default()
            });
        }
        // Shards that could not hold a maximal entry (even one of saturated size).
        let huge = Limits {
            max_key_size: usize::MAX,
            max_value_size: usize::MAX,
        };
        assert!(
            invalid(Config {
                limits: huge,
                shards: Some(2),
                ..Config::default()
            })
            .contains("cannot hold a maximal entry")
        );
    }

    #[test]
    fn limits_whose_entry_overflows_make_one_shard() {
        // This value limit once wrapped the maximal entry's charge to zero: a division by zero.
        for (max_key_size, max_value_size) in [
            (Limits::DEFAULT_MAX_KEY_SIZE, 18_446_744_073_709_485_996),
            (usize::MAX, usize::MAX),
            (usize::MAX, 1),
        ] {
            let cache = MemoryCache::new(Config {
                limits: Limits {
                    max_key_size,
                    max_value_size,
                },
                ..Config::default()
            })
            .unwrap();
            assert_eq!(cache.shard_count(), 1);
            let ns = Namespace::new("n").unwrap();
            cache
                .set(&ns, b"k", Bytes::from_static(b"v"), None)
                .unwrap();
            assert_eq!(
                cache.get(&ns, b"k").unwrap(),
                Some(Bytes::from_static(b"v"))
            );
        }
        assert_eq!(MemoryCache::entry_charge(usize::MAX, usize::MAX), u64::MAX);
    }

    #[tokio::test]
    async fn clear_drops_every_entry_and_keeps_pending_rendezvous() {
        let cache = Arc::new(MemoryCache::new(Config::with_capacity(1 << 20)).unwrap());
        let ns = Namespace::new("n").unwrap();
        for i in 0..100u32 {
            let ttl = (i % 2 == 0).then_some(Duration::from_secs(60));
            cache
                .set(&ns, &i.to_be_bytes(), Bytes::from_static(b"v"), ttl)
                .unwrap();
        }
        let GetOrSet::Vacant(vacancy) = cache.get_or_set(&ns, b"pending").await.unwrap() else {
            panic!("a missing key's first caller holds the vacancy");
        };
        let waiter = {
            let (cache, ns) = (cache.clone(), ns.clone());
            tokio::spawn(async move { cache.get_or_set(&ns, b"pending").await.unwrap() })
        };
        while cache.stats().rendezvous_waits == 0 {
            tokio::task::yield_now().await;
        }
        cache.clear();
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (0, 0));
        assert_eq!(cache.get(&ns, &7u32.to_be_bytes()).unwrap(), None);
        vacancy
            .fill(Bytes::from_static(b"filled"), None)
            .await
            .unwrap();
        let GetOrSet::Occupied(got) = waiter.await.unwrap() else {
            panic!("the waiter gets the fill");
        };
        assert_eq!(got, Bytes::from_static(b"filled"));
        assert_eq!(
            cache.get(&ns, b"pending").unwrap(),
            Some(Bytes::from_static(b"filled"))
        );
        cache
            .set(
                &ns,
                b"again",
                Bytes::from_static(b"v"),
                Some(Duration::from_secs(60)),
            )
            .unwrap();
        assert_eq!(cache.stats().entries, 2);
    }

    #[tokio::test]
    async fn a_vacancy_timeout_beyond_the_clock_means_never() {
        for vacancy_timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
            let cache = Arc::new(
                MemoryCache::new(Config {
                    vacancy_timeout,
                    ..Config::with_capacity(1 << 20)
                })
                .unwrap(),
            );
            let ns = Namespace::new("n").unwrap();
            let GetOrSet::Vacant(holder) = cache.get_or_set(&ns, b"k").await.unwrap() else {
                panic!("the first caller holds the vacancy");
            };
            let waiter = {
                let (cache, ns) = (cache.clone(), ns.clone());
                tokio::spawn(async move { cache.get_or_set(&ns, b"k").await.unwrap() })
            };
            while cache.stats().rendezvous_waits == 0 {
                tokio::task::yield_now().await;
            }
            // Dropping the vacancy hands it to the waiter with a fresh (never-ending) deadline.
            drop(holder);
            let GetOrSet::Vacant(handed) = waiter.await.unwrap() else {
                panic!("the waiter is handed the vacancy");
            };
            let late = {
                let (cache, ns) = (cache.clone(), ns.clone());
                tokio::spawn(async move { cache.get_or_set(&ns, b"k").await.unwrap() })
            };
            while cache.stats().rendezvous_waits < 2 {
                tokio::task::yield_now().await;
            }
            handed.fill(Bytes::from_static(b"v"), None).await.unwrap();
            let GetOrSet::Occupied(value) = late.await.unwrap() else {
                panic!("a later caller waits for the fill, it never takes over");
            };
            assert_eq!(value, Bytes::from_static(b"v"));
            assert_eq!(cache.stats().timeouts, 0);
        }
    }
}
