//! Configuration of the memory engine, with the defaults the CLI uses.

use std::time::Duration;

use crate::backend::Limits;
use crate::clock::Clock;

/// How to build a [`crate::MemoryCache`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Upper bound on resident bytes: keys, values and per-entry overhead (default 256 MiB).
    pub capacity: u64,
    /// Key and value size limits.
    pub limits: Limits,
    /// How long a vacancy may stay unfilled before it is handed to a waiter (default 30 s).
    pub vacancy_timeout: Duration,
    /// Number of shards (rounded down to a power of two); `None` picks four per core, but never so
    /// many that a shard could not hold one maximal entry (so a small cache with the default
    /// 16 MiB value limit gets few shards: lower [`Limits::max_value_size`] to get more).
    pub shards: Option<usize>,
    /// Time source for TTLs.
    pub clock: Clock,
}

impl Config {
    /// Default capacity: 256 MiB.
    pub const DEFAULT_CAPACITY: u64 = 256 << 20;
    /// Default vacancy timeout: 30 s.
    pub const DEFAULT_VACANCY_TIMEOUT: Duration = Duration::from_secs(30);

    /// The defaults with another capacity.
    pub fn with_capacity(capacity: u64) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            capacity: Self::DEFAULT_CAPACITY,
            limits: Limits::default(),
            vacancy_timeout: Self::DEFAULT_VACANCY_TIMEOUT,
            shards: None,
            clock: Clock::system(),
        }
    }
}
