//! Cheap operation counters: relaxed atomics, striped so that cores do not share a cache line.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a backend's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups (`get`, `exists`, `get-or-set`) that found a live value.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Values stored (by `set` or a vacancy fill).
    pub inserts: u64,
    /// Vacancies filled by their holder (a part of `inserts`).
    pub fills: u64,
    /// Entries removed to stay within capacity.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// `get-or-set` callers that waited for another caller's fill.
    pub rendezvous_waits: u64,
    /// Vacancies handed to a waiter after being dropped unfilled.
    pub handoffs: u64,
    /// Vacancies taken from their holder because the vacancy timeout passed.
    pub timeouts: u64,
    /// Round trips to a remote backend (zero for the embedded engine).
    pub round_trips: u64,
    /// Reconnections to a remote backend (zero for the embedded engine).
    pub reconnects: u64,
    /// Lookups a remote backend answered from its near cache, without a round trip.
    pub near_hits: u64,
    /// Lookups that consulted a remote backend's near cache and went on to the server.
    pub near_misses: u64,
    /// Keys (and flushes) the server told a remote backend's near cache to drop.
    pub invalidations: u64,
    /// Entries resident now.
    pub entries: u64,
    /// Bytes resident now (keys, values and per-entry overhead).
    pub bytes: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub(crate) enum Counter {
    Hits,
    Misses,
    Inserts,
    Evictions,
    Expirations,
    RendezvousWaits,
    Handoffs,
    Timeouts,
    Fills,
}

const COUNTERS: usize = 9;
const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

/// Striped counters; each thread bumps the stripe its id hashes to.
#[derive(Default)]
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES],
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.stripes[stripe_index()].0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// The counters as a [`Stats`], with resident sizes filled in by the caller.
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            hits: self.sum(Counter::Hits),
            misses: self.sum(Counter::Misses),
            inserts: self.sum(Counter::Inserts),
            evictions: self.sum(Counter::Evictions),
            expirations: self.sum(Counter::Expirations),
            rendezvous_waits: self.sum(Counter::RendezvousWaits),
            handoffs: self.sum(Counter::Handoffs),
            timeouts: self.sum(Counter::Timeouts),
            fills: self.sum(Counter::Fills),
            ..Stats::default()
        }
    }
}

fn stripe_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut v = i.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            i.set(v);
        }
        v
    })
}
