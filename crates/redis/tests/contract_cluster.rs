//! The shared backend-contract suite, unchanged, on a Redis Cluster of 3 masters started once
//! for this binary (cases use namespaces of their own, so they share it).

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::cluster());
