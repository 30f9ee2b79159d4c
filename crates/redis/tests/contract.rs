//! The shared backend-contract suite, unchanged, against a private `redis-server` per case.

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::plain());
