//! Adapters giving every cache one interface: ours (`wasi_cache_engine::MemoryCache`),
//! quick_cache's `sync::Cache`, moka's `sync::Cache` and moka's `future::Cache`.
//!
//! Fairness choices, the same for every peer:
//! - Keys are 16 bytes. Ours keeps them under one namespace ([`NAMESPACE`]) and stores them its
//!   own way; peers store the key as an owned [`PeerKey`] (`Box<[u8]>`, allocated on insert)
//!   and are looked up by `&[u8]` without allocating, like ours.
//! - Values are [`Bytes`]; a hit clones the stored `Bytes` (a reference-count increment) in
//!   every cache.
//! - Peers hash with [`PeerHasher`] (`foldhash::fast::RandomState`), the hasher family our
//!   engine uses internally, so no cache wins or loses on its hash function.
//! - Ours is bounded in bytes and sized with [`MemoryCache::entry_charge`]; peers are bounded
//!   in entries (unit weight), for the same number of entries.

use bytes::Bytes;
use quick_cache::UnitWeighter;
use quick_cache::sync::DefaultLifecycle;
use wasi_cache_engine::{Config, MemoryCache, Namespace};

use crate::workload::{Dataset, INDEX_MASK, INSERT_BIT, KEY_LEN, VALUE_LEN};

/// The key type the peers store: an owned byte key, as ours stores.
pub type PeerKey = Box<[u8]>;

/// The hasher given to the peers: foldhash's fast variant, as our engine uses.
pub type PeerHasher = foldhash::fast::RandomState;

/// The namespace all of our engine's benchmark keys live in.
pub const NAMESPACE: &str = "b";

/// quick_cache's synchronous cache with our key, value and hasher types.
pub type QuickCacheInner = quick_cache::sync::Cache<
    PeerKey,
    Bytes,
    UnitWeighter,
    PeerHasher,
    DefaultLifecycle<PeerKey, Bytes>,
>;

/// A cache driven synchronously, one operation at a time.
pub trait SyncCache: Send + Sync {
    /// The value of `key`, if cached.
    fn get(&self, key: &[u8]) -> Option<Bytes>;
    /// Stores `value` for `key`.
    fn insert(&self, key: &[u8], value: Bytes);
    /// Entries resident now (after any pending maintenance).
    fn entries(&self) -> u64;
}

/// Our engine, with every key in the [`NAMESPACE`] namespace.
pub struct Ours {
    cache: MemoryCache,
    ns: Namespace,
}

impl Ours {
    /// Bytes one benchmark entry (16-byte key, 64-byte value) counts against our capacity.
    pub fn entry_charge() -> u64 {
        MemoryCache::entry_charge(KEY_LEN, VALUE_LEN)
    }

    /// The namespace the benchmark uses.
    pub fn namespace() -> Namespace {
        Namespace::new(NAMESPACE).expect("valid namespace")
    }

    /// A cache with the default configuration, sized for `entries` benchmark entries.
    pub fn with_entries(entries: usize) -> Self {
        Self::with_config(Config::with_capacity(entries as u64 * Self::entry_charge()))
    }

    /// A cache built from `config`.
    pub fn with_config(config: Config) -> Self {
        Self {
            cache: MemoryCache::new(config).expect("valid engine config"),
            ns: Self::namespace(),
        }
    }

    /// The engine itself.
    pub fn engine(&self) -> &MemoryCache {
        &self.cache
    }
}

impl SyncCache for Ours {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.cache.get(&self.ns, key).expect("valid key")
    }

    #[inline]
    fn insert(&self, key: &[u8], value: Bytes) {
        self.cache
            .set(&self.ns, key, value, None)
            .expect("entry fits");
    }

    fn entries(&self) -> u64 {
        self.cache.stats().entries
    }
}

/// quick_cache's `sync::Cache`, bounded in entries.
pub struct QuickCache {
    cache: QuickCacheInner,
}

impl QuickCache {
    /// A cache of `entries` entries with quick_cache's default options (shard count included).
    pub fn with_entries(entries: usize) -> Self {
        Self {
            cache: QuickCacheInner::with(
                entries,
                entries as u64,
                UnitWeighter,
                PeerHasher::default(),
                DefaultLifecycle::default(),
            ),
        }
    }

    /// A cache of `entries` entries split over `shards` shards.
    pub fn with_shards(entries: usize, shards: usize) -> Self {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(entries)
            .weight_capacity(entries as u64)
            .shards(shards)
            .build()
            .expect("valid quick_cache options");
        Self {
            cache: QuickCacheInner::with_options(
                options,
                UnitWeighter,
                PeerHasher::default(),
                DefaultLifecycle::default(),
            ),
        }
    }

    /// The quick_cache cache itself.
    pub fn inner(&self) -> &QuickCacheInner {
        &self.cache
    }
}

impl SyncCache for QuickCache {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.cache.get(key)
    }

    #[inline]
    fn insert(&self, key: &[u8], value: Bytes) {
        self.cache.insert(key.into(), value);
    }

    fn entries(&self) -> u64 {
        self.cache.len() as u64
    }
}

/// moka's `sync::Cache`, bounded in entries.
pub struct MokaSync {
    cache: moka::sync::Cache<PeerKey, Bytes, PeerHasher>,
}

impl MokaSync {
    /// A cache of at most `entries` entries.
    pub fn with_entries(entries: usize) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(entries as u64)
                .build_with_hasher(PeerHasher::default()),
        }
    }
}

impl SyncCache for MokaSync {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.cache.get(key)
    }

    #[inline]
    fn insert(&self, key: &[u8], value: Bytes) {
        self.cache.insert(key.into(), value);
    }

    fn entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// moka's `future::Cache`, bounded in entries, driven from a current-thread Tokio runtime.
pub struct MokaFuture {
    cache: moka::future::Cache<PeerKey, Bytes, PeerHasher>,
}

impl MokaFuture {
    /// A cache of at most `entries` entries.
    pub fn with_entries(entries: usize) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(entries as u64)
                .build_with_hasher(PeerHasher::default()),
        }
    }

    /// The moka cache itself.
    pub fn inner(&self) -> &moka::future::Cache<PeerKey, Bytes, PeerHasher> {
        &self.cache
    }

    /// Runs `f` to completion on a fresh current-thread runtime (one per calling thread).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
            .block_on(f)
    }
}

/// The caches a benchmark can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Our engine.
    Ours,
    /// quick_cache `sync::Cache`.
    QuickCache,
    /// moka `sync::Cache`.
    MokaSync,
    /// moka `future::Cache`.
    MokaFuture,
}

impl Kind {
    /// Every kind, ours first.
    pub const ALL: [Kind; 4] = [
        Kind::Ours,
        Kind::QuickCache,
        Kind::MokaSync,
        Kind::MokaFuture,
    ];

    /// The name used in tables and `RATIO` lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::QuickCache => "quick_cache",
            Kind::MokaSync => "moka_sync",
            Kind::MokaFuture => "moka_future",
        }
    }

    /// The kind named `name` (as [`Kind::name`] prints it).
    pub fn parse(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One cache of any [`Kind`], behind one interface.
pub enum Contender {
    /// Our engine.
    Ours(Ours),
    /// quick_cache `sync::Cache`.
    QuickCache(QuickCache),
    /// moka `sync::Cache`.
    MokaSync(MokaSync),
    /// moka `future::Cache`.
    MokaFuture(MokaFuture),
}

impl Contender {
    /// A cache of `kind` sized to hold `entries` benchmark entries.
    pub fn new(kind: Kind, entries: usize) -> Self {
        match kind {
            Kind::Ours => Contender::Ours(Ours::with_entries(entries)),
            Kind::QuickCache => Contender::QuickCache(QuickCache::with_entries(entries)),
            Kind::MokaSync => Contender::MokaSync(MokaSync::with_entries(entries)),
            Kind::MokaFuture => Contender::MokaFuture(MokaFuture::with_entries(entries)),
        }
    }

    /// Which cache this is.
    pub fn kind(&self) -> Kind {
        match self {
            Contender::Ours(_) => Kind::Ours,
            Contender::QuickCache(_) => Kind::QuickCache,
            Contender::MokaSync(_) => Kind::MokaSync,
            Contender::MokaFuture(_) => Kind::MokaFuture,
        }
    }

    /// Inserts every `(key, value)` pair, in order.
    pub fn insert_all(&self, items: impl Iterator<Item = ([u8; KEY_LEN], Bytes)>) {
        match self {
            Contender::Ours(c) => items.for_each(|(k, v)| c.insert(&k, v)),
            Contender::QuickCache(c) => items.for_each(|(k, v)| c.insert(&k, v)),
            Contender::MokaSync(c) => items.for_each(|(k, v)| c.insert(&k, v)),
            Contender::MokaFuture(c) => MokaFuture::block_on(async {
                for (k, v) in items {
                    c.cache.insert(k[..].into(), v).await;
                }
            }),
        }
    }

    /// Runs the operation words `ops` over `data`; returns the number of gets that hit.
    ///
    /// With `mixed`, words marked with [`INSERT_BIT`] insert the key's value instead of getting
    /// it; without it every word is a get.
    pub fn run_ops(&self, data: &Dataset, ops: &[u32], mixed: bool) -> u64 {
        match self {
            Contender::Ours(c) => run_sync(c, data, ops, mixed),
            Contender::QuickCache(c) => run_sync(c, data, ops, mixed),
            Contender::MokaSync(c) => run_sync(c, data, ops, mixed),
            Contender::MokaFuture(c) => MokaFuture::block_on(async {
                let mut hits = 0;
                for &op in ops {
                    let i = (op & INDEX_MASK) as usize;
                    if mixed && op & INSERT_BIT != 0 {
                        c.cache
                            .insert(data.keys[i][..].into(), data.values[i].clone())
                            .await;
                    } else if c.cache.get(&data.keys[i][..]).await.is_some() {
                        hits += 1;
                    }
                }
                hits
            }),
        }
    }

    /// Entries resident now (after any pending maintenance).
    pub fn entries(&self) -> u64 {
        match self {
            Contender::Ours(c) => c.entries(),
            Contender::QuickCache(c) => c.entries(),
            Contender::MokaSync(c) => c.entries(),
            Contender::MokaFuture(c) => {
                MokaFuture::block_on(c.cache.run_pending_tasks());
                c.cache.entry_count()
            }
        }
    }
}

/// The hot loop of a synchronous cache: see [`Contender::run_ops`].
#[inline(never)]
pub fn run_sync<C: SyncCache>(cache: &C, data: &Dataset, ops: &[u32], mixed: bool) -> u64 {
    let mut hits = 0;
    for &op in ops {
        let i = (op & INDEX_MASK) as usize;
        if mixed && op & INSERT_BIT != 0 {
            cache.insert(&data.keys[i], data.values[i].clone());
        } else if cache.get(&data.keys[i]).is_some() {
            hits += 1;
        }
    }
    hits
}
