//! The backend on a Redis Cluster of 3 masters (started once for this binary): the shared
//! contract suite, unchanged, and four hosts stampeding keys spread over all three shards.

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::cluster());
