//! Re-subscription after the pub/sub connection is killed finishes for thousands of pending
//! channels (batched SUBSCRIBEs), so every waiter is still woken by its fill.

mod support;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis_server::RedisServer;

const KEYS: usize = 5_000;
const OP: Duration = Duration::from_secs(2);
/// Far longer than the test's hang guard: no waiter gets anything from a lock expiring.
const VACANCY: Duration = Duration::from_secs(300);
/// Hang guard for each step.
const GUARD: Duration = Duration::from_secs(120);

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_waiters_survive_a_killed_pubsub_connection() {
    let server = RedisServer::start();
    let holder = Arc::new(connect(server.url(), OP, VACANCY).await);
    let waiting = Arc::new(connect(server.url(), OP, VACANCY).await);
    let ns = Namespace::new("resubscribe").unwrap();

    let mut vacancies = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        vacancies.push(vacant(
            holder.get_or_set(&ns, &key(i)).await.unwrap(),
            "holder",
        ));
    }
    let waiters: Vec<_> = (0..KEYS)
        .map(|i| {
            let (c, ns) = (waiting.clone(), ns.clone());
            tokio::spawn(async move { c.get_or_set(&ns, &key(i)).await })
        })
        .collect();
    let admin = Admin::connect(&server.url()).await;
    until(GUARD, "every waiter subscribes", || async {
        admin.channels().await.len() == KEYS
    })
    .await;

    let killed: i64 = admin
        .run(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .await
        .unwrap();
    assert!(
        killed >= 1,
        "the waiting backend's pub/sub connection was killed"
    );
    until(GUARD, "every channel is subscribed again", || async {
        admin.channels().await.len() == KEYS && waiting.stats().reconnects >= 1
    })
    .await;

    let fills = vacancies.into_iter().enumerate().map(|(i, v)| async move {
        v.fill(b(&format!("value-{i}")), None).await.unwrap();
    });
    futures::future::join_all(fills).await;
    let outcomes = tokio::time::timeout(GUARD, futures::future::join_all(waiters))
        .await
        .expect("waiters were not woken after the re-subscription");
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let got = outcome.unwrap().expect("waiter failed");
        assert_eq!(occupied(got, "waiter"), b(&format!("value-{i}")), "key {i}");
    }
    assert_eq!(waiting.stats().timeouts, 0, "{:?}", waiting.stats());
}
