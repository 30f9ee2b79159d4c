//! Configuration of the Redis backend, with the defaults the CLI uses.

use std::time::Duration;

use wasi_cache_engine::Limits;

use crate::tls::RedisTls;

/// Where the backend's Redis lives: one server, or a Redis Cluster.
///
/// Only the connections differ between the two: keys, scripts and the rendezvous are the same
/// (every key of one cache key shares a hash tag, so a cluster keeps them in one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server by URL, e.g. `redis://127.0.0.1:6379/0`; `rediss://` connects with TLS.
    Server(String),
    /// A Redis Cluster (Redis or Valkey 7 or later) by seed node URLs (`redis://` or `rediss://`,
    /// all alike, database 0); the other nodes are found from them.
    Cluster(Vec<String>),
}

/// How to reach Redis and how long to wait for it.
///
/// Namespaces are not configured here: one backend serves every namespace, each mapped to keys
/// of its own (see the crate docs).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server or cluster (default the server `redis://127.0.0.1:6379`).
    pub target: RedisTarget,
    /// Certificates for `rediss://` URLs (default: the system's roots, no client certificate);
    /// anything else with `redis://` URLs is refused.
    pub tls: RedisTls,
    /// Longest wait for any single Redis operation before it fails with `Error::Timeout` (on a
    /// cluster, `Error::Unavailable` naming the shard's problem) (default 2 s); also bounds
    /// connecting and reconnecting.
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

    /// The defaults with another server URL.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            target: RedisTarget::Server(url.into()),
            ..Self::default()
        }
    }

    /// The defaults on a Redis Cluster reached through these seed node URLs.
    pub fn with_cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        Self {
            target: RedisTarget::Cluster(seeds.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            target: RedisTarget::Server(Self::DEFAULT_URL.to_owned()),
            tls: RedisTls::default(),
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
            vacancy_timeout: Self::DEFAULT_VACANCY_TIMEOUT,
            limits: Limits::default(),
            near_cache: None,
        }
    }
}
