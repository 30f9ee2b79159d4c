//! The engine's time source for TTLs, injectable so tests move time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the clock's origin; the engine's unit for expiry times.
pub(crate) type Millis = u64;

/// Where the engine reads "now" for TTLs: the system's monotonic clock, or a manual one.
#[derive(Clone, Debug)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    System(Instant),
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The monotonic system clock (the default).
    pub fn system() -> Self {
        Self {
            kind: Kind::System(Instant::now()),
        }
    }

    /// A clock that only moves when [`Clock::advance`] is called; for tests.
    pub fn manual() -> Self {
        Self {
            kind: Kind::Manual(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Moves a manual clock forward (sub-millisecond parts are dropped); no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Kind::Manual(now) = &self.kind {
            now.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Milliseconds since this clock's origin.
    #[inline]
    pub(crate) fn now(&self) -> Millis {
        match &self.kind {
            Kind::System(origin) => origin.elapsed().as_millis() as u64,
            Kind::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}
