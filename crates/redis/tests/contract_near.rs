//! The shared backend-contract suite, unchanged, against backends with a near cache of 1 MiB
//! (a private `redis-server` per case).

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::near(1 << 20));
