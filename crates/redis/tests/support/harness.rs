//! The contract suite's harness: backends on a `redis-server` of the case's own, over plain TCP
//! or over TLS.

use std::sync::Arc;

use wasi_cache_contract::{Harness, HarnessConfig};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::{ClientAuth, RedisServer};

use super::tls_config;

/// Builds backends (own connections each) on a `redis-server` of the case's own, stopped when
/// the case ends.
pub struct RedisHarness {
    server: RedisServer,
    config: RedisConfig,
}

impl RedisHarness {
    /// Starts the case's server; backends connect in the clear.
    pub fn plain() -> Self {
        let server = RedisServer::start();
        Self {
            config: RedisConfig::with_url(server.url()),
            server,
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
            server,
        }
    }

    /// Starts the case's server with TLS; backends connect to its TLS port, trusting its CA.
    pub fn tls() -> Self {
        let server = RedisServer::start_tls(ClientAuth::Optional);
        Self {
            config: tls_config(&server),
            server,
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
        Arc::new(RedisBackend::connect(config).await.unwrap_or_else(|e| {
            panic!(
                "connecting to the test redis-server on port {}: {e}",
                self.server.port()
            )
        }))
    }

    fn stampede_callers(&self) -> usize {
        1_000
    }
}
