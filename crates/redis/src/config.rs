//! Configuration of the Redis backend, with the defaults the CLI uses.

use std::time::Duration;

use wasi_cache_engine::Limits;

use crate::tls::RedisTls;

/// How to reach Redis and how long to wait for it.
///
/// Namespaces are not configured here: one backend serves every namespace, each mapped to keys
/// of its own (see the crate docs).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server's URL, e.g. `redis://127.0.0.1:6379/0` (default `redis://127.0.0.1:6379`);
    /// `rediss://` connects with TLS.
    pub url: String,
    /// Certificates for a `rediss://` URL (default: the system's roots, no client
    /// certificate); anything else with a `redis://` URL is refused.
    pub tls: RedisTls,
    /// Longest wait for any single Redis operation before it fails with `Error::Timeout`
    /// (default 2 s); also bounds connecting and reconnecting.
    pub op_timeout: Duration,
    /// How long a vacancy may stay unfilled before its lock expires and a waiter takes it over
    /// (default 30 s, as in the memory engine).
    pub vacancy_timeout: Duration,
    /// Key and value size limits (default 64 KiB keys, 16 MiB values).
    pub limits: Limits,
    /// Bytes of the near cache, the embedded engine kept in front of Redis and coherent with it
    /// through client-side caching (see the crate docs); `None` (the default) for none.
    pub near_cache: Option<u64>,
}

impl RedisConfig {
    /// Default operation timeout: 2 s.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default vacancy timeout: 30 s.
    pub const DEFAULT_VACANCY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default URL: a local server on the standard port.
    pub const DEFAULT_URL: &'static str = "redis://127.0.0.1:6379";

    /// The defaults with another URL.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: Self::DEFAULT_URL.to_owned(),
            tls: RedisTls::default(),
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
            vacancy_timeout: Self::DEFAULT_VACANCY_TIMEOUT,
            limits: Limits::default(),
            near_cache: None,
        }
    }
}
