//! The shared backend-contract suite, unchanged, on a Redis Cluster of 3 masters started once
//! for this binary (cases use namespaces of their own, so they share it): without, and with a
//! near cache.

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::cluster());

/// The contract suite again, each backend with a near cache of 1 MiB.
mod near_contract {
    wasi_cache_contract::contract_tests!(crate::support::harness::RedisHarness::cluster_near(
        1 << 20
    ));
}
