//! The backend's operation counters (relaxed atomics), reported as the engine's `Stats`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wasi_cache_engine::Stats;

/// Counters shared by the backend, its vacancies and its pub/sub dispatcher.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) inserts: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) rendezvous_waits: AtomicU64,
    pub(crate) handoffs: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) round_trips: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    /// Whether the last command failed for want of a connection (the next success counts as a
    /// reconnect).
    pub(crate) broken: AtomicBool,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot; evictions, expirations, entries and bytes stay 0 (Redis does that bookkeeping;
    /// the near cache fills them in with its own).
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = Stats::default();
        s.hits = get(&self.hits);
        s.misses = get(&self.misses);
        s.inserts = get(&self.inserts);
        s.fills = get(&self.fills);
        s.rendezvous_waits = get(&self.rendezvous_waits);
        s.handoffs = get(&self.handoffs);
        s.timeouts = get(&self.timeouts);
        s.round_trips = get(&self.round_trips);
        s.reconnects = get(&self.reconnects);
        s.invalidations = get(&self.invalidations);
        s
    }
}
