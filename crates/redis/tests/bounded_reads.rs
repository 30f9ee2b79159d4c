//! Size-bounded reads (`get_within`, `get_or_set_within`) against a real server: a value longer
//! than the limit is answered with its length and never read, over both ways of reading (the
//! script, up to 64 KiB, and the GETRANGE transaction beyond); and under faults (the server
//! frozen, then restarted empty of scripts) they fail within the op timeout and recover.

mod support;
use support::*;

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, GetOrSet, Namespace, Within};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisServer;

const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// The value of `read`, which must fit.
fn fits<T>(read: Within<T>, what: &str) -> T {
    match read {
        Within::Fits(outcome) => outcome,
        Within::TooLarge(len) => panic!("{what}: too large ({len})"),
    }
}

/// Every bounded read of `key` (holding `value`) in `ns`, below and at its length, on both
/// paths: below it Redis answers the length (the backend holds nothing in memory to share).
async fn check_reads(c: &RedisBackend, ns: &Namespace, key: &[u8], value: &Bytes) {
    for limit in [0, 1, value.len() - 1] {
        match c.get_within(ns, key, limit).await.unwrap() {
            Within::TooLarge(len) => assert_eq!(len, value.len(), "within {limit}"),
            Within::Fits(_) => panic!("a {}-byte value read within {limit}", value.len()),
        }
        match c.get_or_set_within(ns, key, limit).await.unwrap() {
            Within::TooLarge(len) => assert_eq!(len, value.len(), "within {limit}"),
            Within::Fits(_) => panic!(
                "get-or-set read a {}-byte value within {limit}",
                value.len()
            ),
        }
    }
    for limit in [value.len(), value.len() + 1, 16 << 20] {
        let got = fits(c.get_within(ns, key, limit).await.unwrap(), "get");
        assert!(got.as_ref() == Some(value), "get within {limit}");
        match fits(
            c.get_or_set_within(ns, key, limit).await.unwrap(),
            "get-or-set",
        ) {
            GetOrSet::Occupied(got) => assert!(got == *value, "get-or-set within {limit}"),
            GetOrSet::Vacant(_) => panic!("a vacancy on a present key"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longer_values_are_answered_with_their_length() {
    let server = RedisServer::start();
    let c = RedisBackend::connect(RedisConfig::with_url(server.url()))
        .await
        .unwrap();
    let ns = Namespace::new("bounded").unwrap();
    // Both sides of the script's 64 KiB: read by the script, and by GETRANGE.
    for len in [1000, 200 << 10] {
        let value = Bytes::from(vec![3u8; len]);
        c.set(&ns, b"k", value.clone(), None).await.unwrap();
        check_reads(&c, &ns, b"k", &value).await;
    }
    // Another client's non-string value under the key is an error, not a panic.
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("wc:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let value_key = keys.first().expect("the value key of k");
    let _: i64 = redis::cmd("DEL")
        .arg(value_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(value_key)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    for limit in [10, 1 << 20] {
        assert!(
            c.get_within(&ns, b"k", limit).await.is_err(),
            "within {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_reads_fail_promptly_when_frozen_and_recover_after_a_restart() {
    let mut server = RedisServer::start();
    let config = RedisConfig {
        op_timeout: OP_TIMEOUT,
        ..RedisConfig::with_url(server.url())
    };
    let c = RedisBackend::connect(config).await.unwrap();
    let ns = Namespace::new("bounded-faults").unwrap();
    let value = Bytes::from(vec![4u8; 100 << 10]);
    c.set(&ns, b"k", value.clone(), None).await.unwrap();

    server.freeze(true);
    let limit = OP_TIMEOUT + Duration::from_millis(300);
    for read_limit in [10, 1 << 20] {
        let start = Instant::now();
        let e = c.get_within(&ns, b"k", read_limit).await.unwrap_err();
        assert!(is_outage(&e), "{e}");
        let e = c
            .get_or_set_within(&ns, b"k", read_limit)
            .await
            .unwrap_err();
        assert!(is_outage(&e), "{e}");
        assert!(start.elapsed() <= 2 * limit, "{:?}", start.elapsed());
    }
    server.freeze(false);

    // Restarted: no scripts loaded; the backend loads its scripts again.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.get_within(&ns, b"k", 10).await {
            Ok(_) => break,
            Err(e) => {
                assert!(is_outage(&e), "{e}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    c.set(&ns, b"k", value.clone(), None).await.unwrap();
    check_reads(&c, &ns, b"k", &value).await;
}
