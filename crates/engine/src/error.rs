//! The one error type every backend returns, phrased so a user can act on it.

use std::time::Duration;

/// What went wrong with a cache operation; every variant names the limit or the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the configured maximum.
    #[error("key is {len} bytes, above the limit of {max} bytes")]
    KeyTooLong {
        /// Length of the rejected key.
        len: usize,
        /// The configured maximum key size.
        max: usize,
    },
    /// The value is larger than the configured maximum.
    #[error("value is {len} bytes, above the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The configured maximum value size.
        max: usize,
    },
    /// The entry (key, value and overhead) is larger than a cache shard can ever hold.
    #[error(
        "entry of {size} bytes can never fit in a cache shard of {capacity} bytes; raise the capacity"
    )]
    EntryTooLarge {
        /// Bytes the entry would count against capacity.
        size: u64,
        /// Capacity of the shard the entry belongs to.
        capacity: u64,
    },
    /// The namespace name cannot be used (too long).
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
    /// The configuration is inconsistent (for example capacity below one maximal entry).
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),
    /// The backend cannot be reached (for example the Redis server went away).
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the configured time.
    #[error("cache backend did not answer within {0:?}")]
    Timeout(Duration),
    /// Any other backend failure, with the backend's own message.
    #[error("cache backend error: {0}")]
    Backend(String),
}

/// Result of a cache operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
