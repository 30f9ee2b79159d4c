//! The near cache against a private `redis-server`: writes by another host reach it within the
//! invalidation bound (100 ms, checked by polling), its own writes at once; a killed tracking
//! connection, a silently dead one (within its PING bound) or a restarted server empties it; it is used (near hits) and bounded (bytes); and
//! it survives hostile inputs (values near its size, many keys, TTLs of 0 and 1 ms).

mod support;
use support::proxy::Proxy;
use support::*;

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisServer;

/// The invalidation bound the issue sets: a write by another host is seen within it.
const BOUND: Duration = Duration::from_millis(100);
/// Hang guard for what has no bound of its own (reconnecting).
const GUARD: Duration = Duration::from_secs(10);

/// A backend on `server` with a near cache of `bytes` (`None`: without one).
async fn host(server: &RedisServer, bytes: Option<u64>) -> RedisBackend {
    RedisBackend::connect(RedisConfig {
        near_cache: bytes,
        ..RedisConfig::with_url(server.url())
    })
    .await
    .expect("connecting to the test redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_another_host_reach_the_near_cache_within_the_bound() {
    let server = RedisServer::start();
    let near = host(&server, Some(1 << 20)).await;
    let other = host(&server, None).await;
    let ns = Namespace::new("bound").unwrap();

    other.set(&ns, b"k", b("v1"), None).await.unwrap();
    cached(&near, &ns, b"k", &b("v1"), GUARD).await;
    for round in 0..20 {
        let value = b(&format!("v{}", round + 2));
        other.set(&ns, b"k", value.clone(), None).await.unwrap();
        seen_within(&near, &ns, b"k", Some(value.clone()), Instant::now(), BOUND).await;
        cached(&near, &ns, b"k", &value, GUARD).await;
    }

    other.delete(&ns, b"k").await.unwrap();
    seen_within(&near, &ns, b"k", None, Instant::now(), BOUND).await;
    assert!(!near.exists(&ns, b"k").await.unwrap());

    // Expiry: the near entry honours the Redis entry's TTL.
    other
        .set(&ns, b"t", b("short"), Some(Duration::from_millis(300)))
        .await
        .unwrap();
    let expires = Instant::now() + Duration::from_millis(300);
    cached(&near, &ns, b"t", &b("short"), GUARD).await;
    tokio::time::sleep_until(expires.into()).await;
    seen_within(&near, &ns, b"t", None, expires, BOUND).await;

    let stats = near.stats();
    assert!(stats.invalidations >= 21, "{stats:?}");
    assert!(stats.near_hits >= 21 && stats.near_misses > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_replace_the_near_entry_before_they_return() {
    let server = RedisServer::start();
    let near = host(&server, Some(1 << 20)).await;
    let ns = Namespace::new("own").unwrap();
    near.set(&ns, b"k", b("a"), None).await.unwrap();
    cached(&near, &ns, b"k", &b("a"), GUARD).await;
    for i in 0..50 {
        let value = b(&format!("v{i}"));
        near.set(&ns, b"k", value.clone(), None).await.unwrap();
        assert_eq!(near.get(&ns, b"k").await.unwrap(), Some(value));
    }
    near.delete(&ns, b"k").await.unwrap();
    assert_eq!(near.get(&ns, b"k").await.unwrap(), None);
    // A fill too, and the rendezvous still works: a near hit answers get-or-set.
    let vacancy = vacant(near.get_or_set(&ns, b"k").await.unwrap(), "a missing key");
    vacancy.fill(b("filled"), None).await.unwrap();
    assert_eq!(near.get(&ns, b"k").await.unwrap(), Some(b("filled")));
    cached(&near, &ns, b"k", &b("filled"), GUARD).await;
    let hits = near.stats().near_hits;
    let got = occupied(near.get_or_set(&ns, b"k").await.unwrap(), "a cached key");
    assert_eq!(got, b("filled"));
    assert!(near.exists(&ns, b"k").await.unwrap());
    assert_eq!(
        near.stats().near_hits,
        hits + 2,
        "get-or-set and exists hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_empties_the_near_cache() {
    let server = RedisServer::start();
    let admin = Admin::connect(&server.url()).await;
    let near = host(&server, Some(1 << 20)).await;
    let ns = Namespace::new("kill").unwrap();
    admin.run::<()>(&["FLUSHALL"]).await.unwrap();
    near.set(&ns, b"k", b("before"), None).await.unwrap();
    cached(&near, &ns, b"k", &b("before"), GUARD).await;
    assert!(near.stats().entries > 0);

    // Every client but the admin: the tracking connection goes, and with it the near cache.
    let killed: i64 = admin
        .run(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .await
        .unwrap();
    assert!(killed >= 2, "killed {killed} connections");
    until(GUARD, "the near cache empties", || async {
        near.stats().entries == 0
    })
    .await;
    // Written while this host may hear of nothing: never served stale afterwards.
    let changed = Instant::now();
    let other = host(&server, None).await;
    other.set(&ns, b"k", b("after"), None).await.unwrap();
    let got = eventually(GUARD, || near.get(&ns, b"k")).await;
    assert_eq!(
        got,
        Some(b("after")),
        "{:?} after the kill",
        changed.elapsed()
    );
    cached(&near, &ns, b"k", &b("after"), GUARD).await;
    // The new tracking connection delivers invalidations again.
    other.set(&ns, b"k", b("later"), None).await.unwrap();
    seen_within(&near, &ns, b"k", Some(b("later")), Instant::now(), BOUND).await;
    // The tracking connection's return is counted (the command connection's may go unnoticed:
    // redis-rs reconnects it and retries by itself).
    assert!(near.stats().reconnects >= 1, "{:?}", near.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_tracking_connection_empties_the_near_cache_within_its_ping_bound() {
    const OP: Duration = Duration::from_millis(500);
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let near = RedisBackend::connect(RedisConfig {
        op_timeout: OP,
        near_cache: Some(1 << 20),
        ..RedisConfig::with_url(proxy.url())
    })
    .await
    .unwrap();
    let other = host(&server, None).await;
    let ns = Namespace::new("silent").unwrap();
    other.set(&ns, b"k", b("before"), None).await.unwrap();
    cached(&near, &ns, b"k", &b("before"), GUARD).await;

    // The path goes silent: the write's invalidation is lost in the black hole.
    proxy.silence();
    let silenced = Instant::now();
    other.set(&ns, b"k", b("after"), None).await.unwrap();
    // A PING every half op timeout, answered within one: found dead within 1.5 op timeouts
    // (and some scheduling slack on a busy machine).
    let bound = OP * 3 / 2 + Duration::from_millis(500);
    until(GUARD, "the near cache empties", || async {
        near.stats().entries == 0
    })
    .await;
    assert!(
        silenced.elapsed() < bound,
        "emptied {:?} after the path went silent",
        silenced.elapsed()
    );
    // From now on the stale value is never served: reads fail (the path is silent) or are fresh.
    for _ in 0..3 {
        if let Ok(got) = near.get(&ns, b"k").await {
            assert_eq!(got, Some(b("after")));
        }
    }
    proxy.resume();
    let got = eventually(GUARD, || near.get(&ns, b"k")).await;
    assert_eq!(got, Some(b("after")));
    cached(&near, &ns, b"k", &b("after"), GUARD).await;
    other.set(&ns, b"k", b("later"), None).await.unwrap();
    seen_within(&near, &ns, b"k", Some(b("later")), Instant::now(), BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_empties_the_near_cache() {
    let mut server = RedisServer::start();
    let near = host(&server, Some(1 << 20)).await;
    let ns = Namespace::new("restart").unwrap();
    near.set(&ns, b"k", b("before"), None).await.unwrap();
    cached(&near, &ns, b"k", &b("before"), GUARD).await;
    server.restart();
    // The restarted server holds nothing (no persistence): the near cache must not either.
    let got = eventually(GUARD, || near.get(&ns, b"k")).await;
    assert_eq!(got, None);
    assert_eq!(near.stats().entries, 0);
    let other = eventually(GUARD, || {
        RedisBackend::connect(RedisConfig::with_url(server.url()))
    })
    .await;
    other.set(&ns, b"k", b("new"), None).await.unwrap();
    let got = eventually(GUARD, || near.get(&ns, b"k")).await;
    assert_eq!(got, Some(b("new")));
    cached(&near, &ns, b"k", &b("new"), GUARD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_is_used_and_bounded_by_its_size() {
    const SIZE: u64 = 64 << 10;
    let server = RedisServer::start();
    let near = host(&server, Some(SIZE)).await;
    let other = host(&server, None).await;
    let ns = Namespace::new("bounded").unwrap();
    let value = Bytes::from(vec![b'x'; 1 << 10]);
    for i in 0..300 {
        let key = format!("k{i}");
        let invalidated = near.stats().invalidations;
        other
            .set(&ns, key.as_bytes(), value.clone(), None)
            .await
            .unwrap();
        // The set's invalidation may trail it; arriving after the first get, it would drop the
        // entry and make the second get a miss.
        until(GUARD, "the set's invalidation arrives", || async {
            near.stats().invalidations > invalidated
        })
        .await;
        for _ in 0..2 {
            assert_eq!(
                near.get(&ns, key.as_bytes()).await.unwrap(),
                Some(value.clone())
            );
            let stats = near.stats();
            assert!(
                stats.bytes <= SIZE,
                "{} bytes in a {SIZE}-byte near cache",
                stats.bytes
            );
        }
    }
    let stats = near.stats();
    assert!(stats.near_hits >= 250, "{stats:?}");
    assert!(stats.evictions > 0 && stats.entries < 300, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_served_correctly() {
    const SIZE: u64 = 1 << 20;
    let server = RedisServer::start();
    let near = host(&server, Some(SIZE)).await;
    let other = host(&server, None).await;
    let ns = Namespace::new("hostile").unwrap();

    // Values around the near cache's size: served from Redis, never beyond the bound.
    for len in [
        SIZE as usize - 4096,
        SIZE as usize,
        SIZE as usize + 1,
        4 << 20,
    ] {
        let value = Bytes::from(vec![b'h'; len]);
        other.set(&ns, b"huge", value.clone(), None).await.unwrap();
        // The previous length's value, cached near, goes when its invalidation arrives.
        seen_within(
            &near,
            &ns,
            b"huge",
            Some(value.clone()),
            Instant::now(),
            BOUND,
        )
        .await;
        for _ in 0..3 {
            assert_eq!(near.get(&ns, b"huge").await.unwrap(), Some(value.clone()));
            assert!(near.stats().bytes <= SIZE);
        }
    }

    // Many keys, each read twice.
    for i in 0..3_000 {
        let key = format!("many{i}");
        other.set(&ns, key.as_bytes(), b(&key), None).await.unwrap();
        for _ in 0..2 {
            assert_eq!(near.get(&ns, key.as_bytes()).await.unwrap(), Some(b(&key)));
        }
    }
    assert!(near.stats().bytes <= SIZE);

    // TTL 0: never visible, and it drops a cached value too.
    other.set(&ns, b"zero", b("z"), None).await.unwrap();
    cached(&near, &ns, b"zero", &b("z"), GUARD).await;
    other
        .set(&ns, b"zero", b("z2"), Some(Duration::ZERO))
        .await
        .unwrap();
    seen_within(&near, &ns, b"zero", None, Instant::now(), BOUND).await;
    near.set(&ns, b"zero", b("z3"), Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(near.get(&ns, b"zero").await.unwrap(), None);

    // TTL 1 ms: gone once the millisecond passed, however it was read in between.
    for i in 0..50 {
        let key = format!("ms{i}");
        other
            .set(&ns, key.as_bytes(), b("m"), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        let written = Instant::now();
        let _ = near.get(&ns, key.as_bytes()).await.unwrap();
        let _ = near.get(&ns, key.as_bytes()).await.unwrap();
        tokio::time::sleep_until((written + Duration::from_millis(2)).into()).await;
        assert_eq!(near.get(&ns, key.as_bytes()).await.unwrap(), None, "{key}");
    }
}
