//! The contract suite's harness: backends on a `redis-server` of the case's own, over plain TCP
//! or over TLS, or on the test binary's Redis Cluster (plain or TLS); with or without a near
//! cache.

use std::sync::Arc;

use wasi_cache_contract::{Harness, HarnessConfig};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::{ClientAuth, RedisServer};

use super::{cluster_tls_config, shared_cluster, shared_tls_cluster, tls_config};

/// Builds backends (own connections each) on a `redis-server` of the case's own, stopped when
/// the case ends, or on the binary's cluster (cases use namespaces of their own, so they share
/// it).
pub struct RedisHarness {
    /// The case's own server, if it has one.
    _server: Option<RedisServer>,
    config: RedisConfig,
}

impl RedisHarness {
    /// Starts the case's server; backends connect in the clear.
    pub fn plain() -> Self {
        let server = RedisServer::start();
        Self {
            config: RedisConfig::with_url(server.url()),
            _server: Some(server),
        }
    }

    /// Starts the case's server; backends connect in the clear, each with a near cache of
    /// `bytes`.
    pub fn near(bytes: u64) -> Self {
        let server = RedisServer::start();
        Self {
            config: RedisConfig {
                near_cache: Some(bytes),
                ..RedisConfig::with_url(server.url())
            },
            _server: Some(server),
        }
    }

    /// Starts the case's server with TLS; backends connect to its TLS port, trusting its CA.
    pub fn tls() -> Self {
        let server = RedisServer::start_tls(ClientAuth::Optional);
        Self {
            config: tls_config(&server),
            _server: Some(server),
        }
    }

    /// Backends on the test binary's 3-master cluster (started by the first case).
    pub fn cluster() -> Self {
        Self {
            config: RedisConfig::with_cluster(shared_cluster().seeds()),
            _server: None,
        }
    }

    /// Backends on the test binary's 3-master TLS cluster (started by the first case), trusting
    /// its CA.
    pub fn cluster_tls() -> Self {
        Self {
            config: cluster_tls_config(shared_tls_cluster()),
            _server: None,
        }
    }

    /// Backends on the test binary's 3-master cluster, each with a near cache of `bytes`.
    pub fn cluster_near(bytes: u64) -> Self {
        Self {
            config: RedisConfig {
                near_cache: Some(bytes),
                ..RedisConfig::with_cluster(shared_cluster().seeds())
            },
            _server: None,
        }
    }
}

impl Harness for RedisHarness {
    type Backend = RedisBackend;

    async fn backend(&self, config: HarnessConfig) -> Arc<RedisBackend> {
        let config = RedisConfig {
            vacancy_timeout: config.vacancy_timeout,
            ..self.config.clone()
        };
        let target = format!("{:?}", config.target);
        Arc::new(
            RedisBackend::connect(config)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test Redis {target}: {e}")),
        )
    }

    fn stampede_callers(&self) -> usize {
        1_000
    }
}
