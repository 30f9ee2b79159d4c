//! The shared backend-contract suite, unchanged, over TLS: a private `redis-server` per case
//! with a TLS port, on certificates of a CA made for the case.

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::tls());
