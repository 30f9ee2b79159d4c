//! Several backend instances (separate connections, as separate hosts would have) on one private
//! `redis-server`: cross-instance stampede, a crashed holder, namespace isolation, and the
//! channel bookkeeping of the pub/sub dispatcher.

mod support;
use support::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, GetOrSet, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTarget};

use wasi_cache_redis_server::RedisServer;

/// `n` backends on `server`, each with its own connections.
async fn instances(server: &RedisServer, n: usize, config: RedisConfig) -> Vec<Arc<RedisBackend>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let config = RedisConfig {
            target: RedisTarget::Server(server.url()),
            ..config.clone()
        };
        out.push(Arc::new(
            RedisBackend::connect(config).await.expect("connect"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_across_four_instances_has_exactly_one_fill() {
    const CALLERS: usize = 1_000;
    let server = RedisServer::start();
    let backends = instances(&server, 4, RedisConfig::default()).await;
    let ns = Namespace::new("stampede-4").unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let handles: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (c, ns, barrier) = (backends[i % 4].clone(), ns.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                match c.get_or_set(&ns, b"hot").await.expect("get_or_set") {
                    GetOrSet::Occupied(v) => (false, v),
                    GetOrSet::Vacant(vacancy) => {
                        // Let the others pile up on every instance before filling.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let value = b(&format!("filled by {i}"));
                        vacancy.fill(value.clone(), None).await.expect("fill");
                        (true, value)
                    }
                }
            })
        })
        .collect();
    let outcomes =
        tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(handles))
            .await
            .expect("stampede hung");
    let outcomes: Vec<(bool, Bytes)> = outcomes.into_iter().map(|r| r.unwrap()).collect();
    let fills: Vec<&Bytes> = outcomes.iter().filter(|o| o.0).map(|o| &o.1).collect();
    assert_eq!(
        fills.len(),
        1,
        "exactly one of {CALLERS} callers on 4 instances fills"
    );
    let value = fills[0].clone();
    assert!(
        outcomes.iter().all(|o| o.1 == value),
        "all callers see the one fill"
    );
    for c in &backends {
        assert_eq!(c.get(&ns, b"hot").await.unwrap(), Some(value.clone()));
    }
    let waits: u64 = backends.iter().map(|c| c.stats().rendezvous_waits).sum();
    assert!(waits > 0, "callers waited on the rendezvous");
    // Each instance's callers shared its claims: far fewer round trips than callers.
    let trips: u64 = backends.iter().map(|c| c.stats().round_trips).sum();
    assert!(
        trips < CALLERS as u64,
        "{trips} round trips for {CALLERS} callers"
    );
}

/// A holder on a backend that dies without abandoning (its runtime is shut down, the vacancy is
/// leaked): a waiter on another instance gets the vacancy once the lock expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_holder_is_replaced_after_the_vacancy_timeout() {
    const VACANCY: Duration = Duration::from_secs(1);
    let server = RedisServer::start();
    let config = RedisConfig {
        vacancy_timeout: VACANCY,
        ..RedisConfig::with_url(server.url())
    };
    let ns = Namespace::new("crash").unwrap();
    // The doomed host: its own runtime on its own thread.
    let claimed_at = {
        let (config, ns) = (config.clone(), ns.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let at = rt.block_on(async {
                let backend = RedisBackend::connect(config).await.unwrap();
                match backend.get_or_set(&ns, b"k").await.unwrap() {
                    GetOrSet::Vacant(v) => {
                        let at = Instant::now();
                        // Crash: the vacancy is never filled nor abandoned.
                        std::mem::forget(v);
                        at
                    }
                    GetOrSet::Occupied(_) => panic!("first caller must hold the vacancy"),
                }
            });
            rt.shutdown_background();
            at
        })
        .join()
        .unwrap()
    };
    let survivor = RedisBackend::connect(config).await.unwrap();
    let waiter = tokio::time::timeout(
        VACANCY + Duration::from_secs(1),
        survivor.get_or_set(&ns, b"k"),
    )
    .await
    .expect("the waiter must get the vacancy within vacancy timeout + 1 s")
    .unwrap();
    let elapsed = claimed_at.elapsed();
    match waiter {
        GetOrSet::Vacant(v) => v.fill(b("recovered"), None).await.unwrap(),
        GetOrSet::Occupied(v) => panic!("nobody filled, yet got {v:?}"),
    }
    assert!(
        elapsed + Duration::from_millis(50) >= VACANCY,
        "taken over after {elapsed:?}, before the lock expired"
    );
    assert!(
        elapsed < VACANCY + Duration::from_secs(1),
        "taken over after {elapsed:?}"
    );
    assert_eq!(survivor.get(&ns, b"k").await.unwrap(), Some(b("recovered")));
    assert_eq!(
        survivor.stats().timeouts,
        1,
        "a takeover on the vacancy timeout"
    );
}

/// Waiters on several instances are released by one fill on another, and a dropped vacancy goes
/// to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_and_fill_reach_waiters_on_other_instances() {
    let server = RedisServer::start();
    let backends = instances(&server, 3, RedisConfig::default()).await;
    let ns = Namespace::new("cross").unwrap();
    let holder = vacant(
        backends[0].get_or_set(&ns, b"k").await.unwrap(),
        "expected a vacancy",
    );
    let waiters: Vec<_> = (0..6)
        .map(|i| {
            let (c, ns) = (backends[1 + i % 2].clone(), ns.clone());
            tokio::spawn(async move {
                match c.get_or_set(&ns, b"k").await.unwrap() {
                    GetOrSet::Vacant(v) => {
                        v.fill(b("second"), None).await.unwrap();
                        true
                    }
                    GetOrSet::Occupied(v) => {
                        assert_eq!(v, b("second"));
                        false
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(holder);
    let filled = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(waiters))
        .await
        .expect("waiters hung");
    let fills = filled.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(fills, 1, "exactly one waiter gets the abandoned vacancy");
    assert_eq!(backends[0].get(&ns, b"k").await.unwrap(), Some(b("second")));
}

/// Adversarial (namespace, key) pairs written through one instance are read back, each its own,
/// through another; a rendezvous in one namespace does not block the same-looking key elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated_across_instances() {
    let server = RedisServer::start();
    let backends = instances(&server, 2, RedisConfig::default()).await;
    let pairs: Vec<(&str, &[u8])> = vec![
        ("a", b"b:c"),
        ("a:b", b"c"),
        ("a}", b"b"),
        ("a", b"}b"),
        ("{a", b"b"),
        ("a", b"{b"),
        ("", b"\x01ab"),
        ("a", b"b"),
        ("\0", b"\0"),
        ("", b"\0\0"),
        ("x", b"y:lock"),
        ("x", b"y}:lock"),
        ("x", b"y"),
        ("wc:{", b"}"),
    ];
    for (i, (ns, key)) in pairs.iter().enumerate() {
        let ns = Namespace::new(ns).unwrap();
        backends[0]
            .set(&ns, key, b(&format!("v{i}")), None)
            .await
            .unwrap();
    }
    for (i, (ns, key)) in pairs.iter().enumerate() {
        let ns = Namespace::new(ns).unwrap();
        assert_eq!(
            backends[1].get(&ns, key).await.unwrap(),
            Some(b(&format!("v{i}"))),
            "pair {i}"
        );
    }
    // A pending vacancy on ("x", "y") does not make ("x", "y}:lock") or ("x", "y:lock") wait.
    let x = Namespace::new("x").unwrap();
    backends[0].delete(&x, b"y").await.unwrap();
    let holder = vacant(
        backends[0].get_or_set(&x, b"y").await.unwrap(),
        "deleted key must be vacant",
    );
    for key in [&b"y}:lock"[..], b"y:lock"] {
        let got = tokio::time::timeout(Duration::from_secs(1), backends[1].get_or_set(&x, key))
            .await
            .expect("another key must not wait on the vacancy")
            .unwrap();
        assert!(matches!(got, GetOrSet::Occupied(_)));
    }
    let other_ns = Namespace::new("x:").unwrap();
    match backends[1].get_or_set(&other_ns, b"y").await.unwrap() {
        GetOrSet::Vacant(v) => drop(v),
        GetOrSet::Occupied(v) => panic!("other namespace saw {v:?}"),
    }
    holder.fill(b("filled"), None).await.unwrap();
    assert_eq!(backends[1].get(&x, b"y").await.unwrap(), Some(b("filled")));
    assert_eq!(backends[1].get(&other_ns, b"y").await.unwrap(), None);
}

/// The dispatcher unsubscribes a key's channel once its last local waiter leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_unsubscribed_after_the_rendezvous() {
    let server = RedisServer::start();
    let backends = instances(&server, 2, RedisConfig::default()).await;
    let ns = Namespace::new("unsub").unwrap();
    let holder = vacant(
        backends[0].get_or_set(&ns, b"k").await.unwrap(),
        "expected a vacancy",
    );
    let waiter = {
        let (c, ns) = (backends[1].clone(), ns.clone());
        tokio::spawn(async move { c.get_or_set(&ns, b"k").await })
    };
    let admin = Admin::connect(&server.url()).await;
    until(Duration::from_secs(2), "the waiter subscribes", || async {
        !admin.channels().await.is_empty()
    })
    .await;
    // `wc:{<16 hex digits>}c<db>:<len(ns)><ns><key>` (see the crate docs).
    let subscribed = admin.channels().await;
    assert_eq!(subscribed.len(), 1, "{subscribed:?}");
    assert!(
        subscribed[0].starts_with(b"wc:{") && subscribed[0].ends_with(b"}c0:\x05unsubk"),
        "{subscribed:?}"
    );
    assert_eq!(subscribed[0].len(), b"wc:{}c0:\x05unsubk".len() + 16);
    holder.fill(b("v"), None).await.unwrap();
    assert!(matches!(waiter.await.unwrap().unwrap(), GetOrSet::Occupied(v) if v == b("v")));
    until(
        Duration::from_secs(2),
        "the channel is unsubscribed",
        || async { admin.channels().await.is_empty() },
    )
    .await;
}

/// `get_or_set` futures dropped while their claim is in flight leave no orphan lock behind: the
/// next caller gets the vacancy at once, not after the vacancy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_claims_leave_no_orphan_lock() {
    use futures::FutureExt;
    let server = RedisServer::start();
    let backends = instances(&server, 2, RedisConfig::default()).await;
    let ns = Namespace::new("cancel-claim").unwrap();
    for round in 0..50 {
        // Polled once (the claim is sent), then dropped before its answer.
        if let Some(result) = backends[round % 2].get_or_set(&ns, b"k").now_or_never() {
            drop(result);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(2), backends[1].get_or_set(&ns, b"k"))
        .await
        .expect("an orphan lock made the next caller wait")
        .unwrap();
    match got {
        GetOrSet::Vacant(v) => v.fill(b("v"), None).await.unwrap(),
        GetOrSet::Occupied(v) => panic!("nobody filled, yet got {v:?}"),
    }
}
