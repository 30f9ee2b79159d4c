//! A connection that dies silently (no reset, no answer: a TCP proxy that stops forwarding
//! without closing) is noticed by the health checks and replaced, on both the command and the
//! pub/sub connection: waiters blocked in a rendezvous meanwhile still get the value filled, or
//! the vacancy abandoned, through another path, and the backend works again.

mod support;
use support::proxy::Proxy;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis_server::RedisServer;

const OP: Duration = Duration::from_millis(500);
/// Far longer than the test's hang guards: no waiter gets anything from a lock expiring.
const VACANCY: Duration = Duration::from_secs(120);
/// Hang guard for each step.
const GUARD: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_ride_out_a_silently_dead_connection() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let holder = connect(server.url(), OP, VACANCY).await;
    let behind_proxy = Arc::new(connect(proxy.url(), OP, VACANCY).await);
    let ns = Namespace::new("black-hole").unwrap();

    let to_fill = vacant(holder.get_or_set(&ns, b"filled").await.unwrap(), "holder");
    let to_drop = vacant(holder.get_or_set(&ns, b"dropped").await.unwrap(), "holder");
    let waiters: Vec<_> = [&b"filled"[..], b"dropped"]
        .into_iter()
        .map(|key| {
            let (c, ns) = (behind_proxy.clone(), ns.clone());
            tokio::spawn(async move { c.get_or_set(&ns, key).await })
        })
        .collect();
    let admin = Admin::connect(&server.url()).await;
    until(GUARD, "both waiters subscribe", || async {
        admin.channels().await.len() == 2
    })
    .await;

    // The path dies silently; the holder fills one key and abandons the other meanwhile: the
    // announcements are lost in the black hole.
    proxy.silence();
    assert!(proxy.silenced() >= 2, "command and pub/sub connections");
    to_fill.fill(b("value"), None).await.unwrap();
    drop(to_drop);
    until(
        GUARD,
        "the backend gives up both dead connections",
        || async { proxy.silenced_all_closed() },
    )
    .await;
    assert!(
        !waiters.iter().any(|w| w.is_finished()),
        "waiters keep waiting"
    );

    proxy.resume();
    let mut outcomes = Vec::new();
    for waiter in waiters {
        let got = tokio::time::timeout(GUARD, waiter)
            .await
            .expect("a waiter hung after the path came back")
            .unwrap()
            .expect("a waiter failed instead of riding out the dead connection");
        outcomes.push(got);
    }
    let mut outcomes = outcomes.into_iter();
    assert_eq!(occupied(outcomes.next().unwrap(), "filled key"), b("value"));
    let handed = vacant(outcomes.next().unwrap(), "abandoned key");
    handed.fill(b("taken over"), None).await.unwrap();

    // The command connection works again, and both connections were replaced.
    assert_eq!(
        eventually(GUARD, || behind_proxy.get(&ns, b"dropped")).await,
        Some(b("taken over"))
    );
    // The command connection's reconnect is counted by its health check's next good PING,
    // which may come just after the get that proved the connection works.
    until(GUARD, "command and pub/sub reconnect", || async {
        behind_proxy.stats().reconnects >= 2
    })
    .await;
    let stats = behind_proxy.stats();
    assert_eq!(
        stats.timeouts, 0,
        "nothing came from a lock expiring: {stats:?}"
    );
}
