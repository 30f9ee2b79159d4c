//! The shared backend-contract suite, unchanged, against a private `redis-server` per case.

use std::sync::Arc;

use wasi_cache_contract::{Harness, HarnessConfig, contract_tests};
use wasi_cache_redis::{RedisBackend, RedisConfig};

/// Builds backends (own connections each) on a `redis-server` of the case's own, stopped when
/// the case ends.
struct RedisHarness {
    server: wasi_cache_redis_server::RedisServer,
}

impl RedisHarness {
    /// Starts the case's server.
    fn new() -> Self {
        Self {
            server: wasi_cache_redis_server::RedisServer::start(),
        }
    }
}

impl Harness for RedisHarness {
    type Backend = RedisBackend;

    async fn backend(&self, config: HarnessConfig) -> Arc<RedisBackend> {
        let config = RedisConfig {
            vacancy_timeout: config.vacancy_timeout,
            ..RedisConfig::with_url(self.server.url())
        };
        Arc::new(
            RedisBackend::connect(config)
                .await
                .expect("connecting to the test redis-server"),
        )
    }

    fn stampede_callers(&self) -> usize {
        1_000
    }
}

contract_tests!(RedisHarness::new());
