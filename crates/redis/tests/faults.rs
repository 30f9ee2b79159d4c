//! Redis going away and coming back: errors within the op timeout (never a hang), waiters
//! released, and the same backend working again after a restart on the same port (over plain
//! TCP and over TLS).

mod support;
use support::*;

use std::time::{Duration, Instant};

use wasi_cache_engine::{Backend, Error, GetOrSet, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};

use wasi_cache_redis_server::{ClientAuth, RedisServer};

const OP_TIMEOUT: Duration = Duration::from_millis(500);
const VACANCY: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_gives_prompt_errors_and_restart_recovers() {
    let server = RedisServer::start();
    let config = RedisConfig::with_url(server.url());
    outage_and_restart(server, config).await;
}

/// The same through the TLS port: the backends' new connections to the restarted server (same
/// port, same certificates) make TLS handshakes again, for commands and for pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_outage_gives_prompt_errors_and_restart_recovers() {
    let server = RedisServer::start_tls(ClientAuth::Optional);
    let config = tls_config(&server);
    outage_and_restart(server, config).await;
}

/// Kills `server` under two backends made with `base` (a rendezvous in progress), checks every
/// operation fails promptly, restarts it, and checks operations and the rendezvous recover.
async fn outage_and_restart(mut server: RedisServer, base: RedisConfig) {
    let config = RedisConfig {
        op_timeout: OP_TIMEOUT,
        vacancy_timeout: VACANCY,
        ..base
    };
    let a = RedisBackend::connect(config.clone()).await.unwrap();
    let c = RedisBackend::connect(config.clone()).await.unwrap();
    let ns = Namespace::new("faults").unwrap();
    a.set(&ns, b"k", b("v"), None).await.unwrap();
    assert_eq!(a.get(&ns, b"k").await.unwrap(), Some(b("v")));

    // A rendezvous in progress when the server dies: the waiter on `c` is released within the
    // vacancy timeout (plus an op timeout for its last claim), with an error.
    let holder = vacant(
        a.get_or_set(&ns, b"pending").await.unwrap(),
        "expected a vacancy",
    );
    // The waiter notes when it was released: the checks below take time of their own.
    let waiter = {
        let (c, ns) = (c.clone(), ns.clone());
        tokio::spawn(async move {
            let outcome = c.get_or_set(&ns, b"pending").await;
            (outcome, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop();
    let stopped = Instant::now();

    let limit = OP_TIMEOUT + Duration::from_millis(300);
    for round in 0..3 {
        let start = Instant::now();
        let results = [
            a.get(&ns, b"k").await.err(),
            a.set(&ns, b"k", b("w"), None).await.err(),
            a.exists(&ns, b"k").await.err(),
            a.delete(&ns, b"k").await.err(),
            a.get_or_set(&ns, b"other").await.err(),
        ];
        for (i, e) in results.iter().enumerate() {
            let e = e
                .as_ref()
                .unwrap_or_else(|| panic!("op {i} succeeded with Redis down"));
            assert!(is_outage(e), "op {i} round {round}: {e}");
            assert!(!e.to_string().is_empty());
        }
        assert!(
            start.elapsed() < limit * 5,
            "round {round} took {:?}",
            start.elapsed()
        );
    }
    // Nothing is reported stored: the holder's fill fails too.
    let fill = tokio::time::timeout(limit, holder.fill(b("lost"), None))
        .await
        .expect("a fill with Redis down must not hang");
    assert!(is_outage(&fill.unwrap_err()));

    let (waited, released) = tokio::time::timeout(VACANCY + OP_TIMEOUT * 3, waiter)
        .await
        .expect("the waiter must be released while Redis is down")
        .unwrap();
    assert!(
        matches!(&waited, Err(e) if is_outage(e)),
        "waiter ended with {waited:?}"
    );
    let after = released.saturating_duration_since(stopped);
    assert!(
        after < VACANCY + OP_TIMEOUT * 4,
        "waiter released {after:?} after the stop"
    );

    // Same port, same backends: operations succeed again.
    server.restart();
    eventually(Duration::from_secs(5), || a.set(&ns, b"k", b("back"), None)).await;
    assert_eq!(a.get(&ns, b"k").await.unwrap(), Some(b("back")));
    assert_eq!(
        eventually(Duration::from_secs(5), || c.get(&ns, b"k")).await,
        Some(b("back"))
    );
    // Counted by a health check's first good PING, which may follow the operations above.
    until(Duration::from_secs(5), "a reconnect is counted", || async {
        a.stats().reconnects >= 1
    })
    .await;

    // The rendezvous (pub/sub included) works again across the two backends.
    let holder = vacant(
        eventually(Duration::from_secs(5), || a.get_or_set(&ns, b"after")).await,
        "fresh server: expected a vacancy",
    );
    let waiter = {
        let (c, ns) = (c.clone(), ns.clone());
        tokio::spawn(async move { c.get_or_set(&ns, b"after").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let filled_at = Instant::now();
    holder.fill(b("again"), None).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("waiter after restart")
        .unwrap()
        .unwrap();
    assert!(matches!(got, GetOrSet::Occupied(v) if v == b("again")));
    assert!(
        filled_at.elapsed() < VACANCY / 2,
        "woken by the fill's message, not the lock timer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_connect_promptly() {
    let server = RedisServer::start();
    let port = server.port();
    drop(server);
    let config = RedisConfig {
        op_timeout: OP_TIMEOUT,
        ..RedisConfig::with_url(format!("redis://127.0.0.1:{port}"))
    };
    let start = Instant::now();
    let err = RedisBackend::connect(config.clone())
        .await
        .err()
        .expect("nothing listens");
    assert!(is_outage(&err), "{err}");
    assert!(start.elapsed() < OP_TIMEOUT + Duration::from_millis(300));
    // A lazily built backend answers every operation with an error, promptly.
    let lazy = RedisBackend::connect_lazy(config).unwrap();
    let ns = Namespace::new("lazy").unwrap();
    let start = Instant::now();
    assert!(is_outage(&lazy.get(&ns, b"k").await.unwrap_err()));
    assert!(is_outage(&lazy.get_or_set(&ns, b"k").await.unwrap_err()));
    assert!(start.elapsed() < (OP_TIMEOUT + Duration::from_millis(300)) * 2);
    assert!(matches!(
        RedisBackend::connect_lazy(RedisConfig::with_url("not a url")).err(),
        Some(Error::InvalidConfig(_))
    ));
}

/// A server that stops answering (frozen): concurrent callers of one key all fail within about
/// one op timeout (the local single-flight hands the driver's error to its followers instead of
/// letting them queue), and everything works again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_server_times_out_every_caller_promptly() {
    let server = RedisServer::start();
    let config = RedisConfig {
        op_timeout: OP_TIMEOUT,
        ..RedisConfig::with_url(server.url())
    };
    let c = std::sync::Arc::new(RedisBackend::connect(config).await.unwrap());
    let ns = Namespace::new("frozen").unwrap();
    c.set(&ns, b"present", b("v"), None).await.unwrap();
    server.freeze(true);
    let start = Instant::now();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (c, ns) = (c.clone(), ns.clone());
            tokio::spawn(async move { c.get_or_set(&ns, b"k").await })
        })
        .collect();
    let results = tokio::time::timeout(OP_TIMEOUT * 4, futures::future::join_all(callers))
        .await
        .expect("callers of a frozen server must not queue for one op timeout each");
    for r in results {
        let err = r.unwrap().expect_err("no answer from a frozen server");
        assert!(is_outage(&err), "{err}");
    }
    let elapsed = start.elapsed();
    assert!(elapsed < OP_TIMEOUT * 3, "took {elapsed:?}");
    let err = c.get(&ns, b"present").await.unwrap_err();
    assert!(is_outage(&err), "{err}");
    server.freeze(false);
    assert_eq!(
        eventually(Duration::from_secs(5), || c.get(&ns, b"present")).await,
        Some(b("v"))
    );
}

/// Absurdly long durations (as a user might pass them) neither panic nor get refused by Redis:
/// the backend clamps what it hands the kernel and the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_are_clamped() {
    let server = RedisServer::start();
    let c = connect(server.url(), Duration::MAX, Duration::MAX).await;
    let ns = Namespace::new("huge").unwrap();
    c.set(&ns, b"k", b("v"), Some(Duration::MAX)).await.unwrap();
    assert_eq!(c.get(&ns, b"k").await.unwrap(), Some(b("v")));
    let holder = vacant(c.get_or_set(&ns, b"g").await.unwrap(), "fresh key");
    holder.fill(b("w"), Some(Duration::MAX)).await.unwrap();
    assert_eq!(c.get(&ns, b"g").await.unwrap(), Some(b("w")));
    c.settle(Duration::MAX).await;
}
