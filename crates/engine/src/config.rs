//! Configuration of the memory engine, with the defaults the CLI uses, and the checks
//! [`crate::MemoryCache::new`] runs on it.

use std::time::Duration;

use crate::backend::Limits;
use crate::clock::Clock;
use crate::error::{Error, Result};

/// How to build a [`crate::MemoryCache`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Upper bound on resident bytes: keys, values and per-entry overhead (default 256 MiB; at
    /// least 1, at most [`Config::MAX_CAPACITY`]).
    pub capacity: u64,
    /// Key and value size limits (any size: an entry that can never fit in a shard is refused
    /// with [`Error::EntryTooLarge`] when it is set).
    pub limits: Limits,
    /// How long a vacancy may stay unfilled before it is handed to a waiter (default 30 s). Any
    /// duration is accepted: one beyond what the clock can represent means never.
    pub vacancy_timeout: Duration,
    /// Number of shards (rounded down to a power of two, at most [`Config::MAX_SHARDS`]); `None`
    /// picks four per core, but never so many that a shard could not hold one maximal entry (so
    /// a small cache with the default 16 MiB value limit gets few shards: lower
    /// [`Limits::max_value_size`] to get more).
    pub shards: Option<usize>,
    /// Time source for TTLs.
    pub clock: Clock,
}

impl Config {
    /// Default capacity: 256 MiB.
    pub const DEFAULT_CAPACITY: u64 = 256 << 20;
    /// Default vacancy timeout: 30 s.
    pub const DEFAULT_VACANCY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Largest capacity: 256 TiB, the address space of a 64-bit machine with 48-bit virtual
    /// addresses; it keeps every byte count of the engine far from overflowing.
    pub const MAX_CAPACITY: u64 = 1 << 48;
    /// Most shards: 65,536 (each costs a lock and a few hundred bytes even when empty).
    pub const MAX_SHARDS: usize = 1 << 16;

    /// The defaults with another capacity.
    pub fn with_capacity(capacity: u64) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Checks the values no cache can be built from: a capacity of zero or above
    /// [`Config::MAX_CAPACITY`], a shard count of zero or above [`Config::MAX_SHARDS`]. (Whether
    /// the shards can hold a maximal entry is checked by [`crate::MemoryCache::new`].)
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfig(message));
        if self.capacity == 0 {
            return invalid("capacity must be above zero".into());
        }
        if self.capacity > Self::MAX_CAPACITY {
            return invalid(format!(
                "capacity of {} bytes is above the largest supported, {} bytes (256 TiB)",
                self.capacity,
                Self::MAX_CAPACITY
            ));
        }
        match self.shards {
            Some(0) => invalid("shard count must be above zero".into()),
            Some(n) if n > Self::MAX_SHARDS => invalid(format!(
                "{n} shards is above the most supported, {}",
                Self::MAX_SHARDS
            )),
            _ => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(config: &Config) -> String {
        match config.validate() {
            Err(Error::InvalidConfig(message)) => message,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn capacity_must_be_between_one_and_the_maximum() {
        assert!(message(&Config::with_capacity(0)).contains("above zero"));
        for capacity in [Config::MAX_CAPACITY + 1, u64::MAX] {
            let message = message(&Config::with_capacity(capacity));
            assert!(message.contains("largest supported"), "{message}");
        }
        for capacity in [1, Config::DEFAULT_CAPACITY, Config::MAX_CAPACITY] {
            Config::with_capacity(capacity).validate().unwrap();
        }
    }

    #[test]
    fn shard_count_must_be_between_one_and_the_maximum() {
        let with_shards = |shards| Config {
            shards: Some(shards),
            ..Config::default()
        };
        assert!(message(&with_shards(0)).contains("above zero"));
        for shards in [Config::MAX_SHARDS + 1, usize::MAX] {
            assert!(message(&with_shards(shards)).contains("most supported"));
        }
        with_shards(Config::MAX_SHARDS).validate().unwrap();
    }

    #[test]
    fn any_limits_and_vacancy_timeout_pass() {
        for size in [0, 1, usize::MAX / 2, usize::MAX] {
            Config {
                limits: Limits {
                    max_key_size: size,
                    max_value_size: size,
                },
                vacancy_timeout: Duration::MAX,
                ..Config::default()
            }
            .validate()
            .unwrap();
        }
    }
}
