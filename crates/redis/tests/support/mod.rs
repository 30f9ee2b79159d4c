//! What the Redis backend's integration tests share: values, configs (plain and TLS), a server
//! of a CA the backend does not trust, waiting for outcomes, a stampede of callers on several
//! hosts, a direct admin connection to the test server, a TCP proxy that can go silent, and the
//! contract suite's harness.
// Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub mod failover;
pub mod harness;
pub mod proxy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, Error, GetOrSet, Namespace, Vacancy};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTls};
use wasi_cache_redis_server::{RedisCluster, RedisServer, TestCa};

/// The test binary's Redis Cluster: 3 masters, no replicas, started on first use and stopped
/// when the binary exits (its tests use namespaces of their own, so they share it).
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 0))
}

/// The test binary's TLS Redis Cluster: 3 masters, no replicas, TLS for clients, the cluster
/// bus and replication, started on first use and stopped when the binary exits.
pub fn shared_tls_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start_tls(3, 0))
}

/// The defaults on the TLS seeds of `cluster` (a TLS cluster), trusting its CA (and showing no
/// client certificate).
pub fn cluster_tls_config(cluster: &RedisCluster) -> RedisConfig {
    let tls = RedisTls::from_files(Some(cluster.ca_cert()), None).expect("the test CA");
    RedisConfig {
        tls,
        ..RedisConfig::with_cluster(cluster.tls_seeds())
    }
}

/// `s` as a value.
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Whether `e` is one of the errors an unreachable server must give.
pub fn is_outage(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_) | Error::Timeout(_))
}

/// The vacancy of a get-or-set that must have been handed one.
pub fn vacant(got: GetOrSet, what: &str) -> Vacancy {
    match got {
        GetOrSet::Vacant(v) => v,
        GetOrSet::Occupied(v) => panic!("{what}: expected a vacancy, got {v:?}"),
    }
}

/// The value of a get-or-set that must have found one.
pub fn occupied(got: GetOrSet, what: &str) -> Bytes {
    match got {
        GetOrSet::Occupied(v) => v,
        GetOrSet::Vacant(_) => panic!("{what}: expected a value, was handed the vacancy"),
    }
}

/// A backend on `url` with these timeouts.
pub async fn connect(url: String, op_timeout: Duration, vacancy_timeout: Duration) -> RedisBackend {
    RedisBackend::connect(RedisConfig {
        op_timeout,
        vacancy_timeout,
        ..RedisConfig::with_url(url)
    })
    .await
    .expect("connecting to the test redis-server")
}

/// The defaults on the TLS port of `server`, trusting its CA (and showing no client
/// certificate).
pub fn tls_config(server: &RedisServer) -> RedisConfig {
    let tls = RedisTls::from_files(Some(server.ca_cert()), None).expect("the test CA");
    RedisConfig {
        tls,
        ..RedisConfig::with_url(server.tls_url())
    }
}

/// Asserts that connecting with `with_tls(tls)` is refused with the handshake error of a server
/// signed by an unknown CA, for `tls` trusting another private CA and for `tls` trusting the
/// system's roots (which never hold a CA made by a test).
pub async fn assert_untrusted_ca_refused(with_tls: impl Fn(RedisTls) -> RedisConfig) {
    let unrelated = RedisTls {
        ca_cert: Some(TestCa::new("unrelated CA").cert_pem().into_bytes()),
        client: None,
    };
    for tls in [unrelated, RedisTls::default()] {
        let err = RedisBackend::connect(with_tls(tls))
            .await
            .err()
            .expect("the connection must be refused");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        assert!(
            err.to_string().contains(
                "TLS handshake with Redis failed: certificate verify failed: the server's \
                 certificate is signed by an unknown CA"
            ),
            "{err}"
        );
    }
}

/// `callers` concurrent get-or-sets, spread over `hosts` (caller `i` on host `i % hosts`) and
/// `keys` keys (caller `i` on key `name(i % keys)` of `ns`), started together; a caller handed
/// the vacancy fills it, 200 ms later (the others pile up on every host meanwhile), with a value
/// of its own. Asserts that every key had exactly one fill and that every caller got the
/// filled value; returns each key number's fill. Panics after 60 s (a hang guard).
pub async fn stampede(
    hosts: &[Arc<RedisBackend>],
    ns: &Namespace,
    callers: usize,
    keys: usize,
    name: fn(usize) -> String,
) -> HashMap<usize, Bytes> {
    let barrier = Arc::new(tokio::sync::Barrier::new(callers));
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let host = hosts[i % hosts.len()].clone();
            let (ns, barrier) = (ns.clone(), barrier.clone());
            tokio::spawn(async move {
                let k = i % keys;
                barrier.wait().await;
                match host
                    .get_or_set(&ns, name(k).as_bytes())
                    .await
                    .expect("get_or_set")
                {
                    GetOrSet::Occupied(v) => (k, false, v),
                    GetOrSet::Vacant(vacancy) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let value = b(&format!("{k} filled by {i}"));
                        vacancy.fill(value.clone(), None).await.expect("fill");
                        (k, true, value)
                    }
                }
            })
        })
        .collect();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("stampede hung");
    let mut by_key: HashMap<usize, Vec<(bool, Bytes)>> = HashMap::new();
    for outcome in outcomes {
        let (k, filled, value) = outcome.expect("caller task");
        by_key.entry(k).or_default().push((filled, value));
    }
    assert_eq!(by_key.len(), keys);
    by_key
        .into_iter()
        .map(|(k, outcomes)| {
            let fills: Vec<&Bytes> = outcomes.iter().filter(|o| o.0).map(|o| &o.1).collect();
            assert_eq!(fills.len(), 1, "key {k}: {} fills", fills.len());
            assert!(
                outcomes.iter().all(|(_, v)| v == fills[0]),
                "key {k}: a caller got another value than the fill"
            );
            (k, fills[0].clone())
        })
        .collect()
}

/// A rendezvous on `key` between two backends: `holder` takes the vacancy, `waiter` waits (in
/// a task) until the fill reaches it through pub/sub; panics after `guard` (a hang guard).
pub async fn rendezvous(
    holder: &RedisBackend,
    waiter: &std::sync::Arc<RedisBackend>,
    ns: &wasi_cache_engine::Namespace,
    key: &[u8],
    guard: Duration,
) {
    let vacancy = vacant(holder.get_or_set(ns, key).await.expect("holder"), "holder");
    let before = waiter.stats().rendezvous_waits;
    let task = {
        let (waiter, ns, key) = (waiter.clone(), ns.clone(), key.to_vec());
        tokio::spawn(async move { waiter.get_or_set(&ns, &key).await })
    };
    until(guard, "the waiter waits", || async {
        waiter.stats().rendezvous_waits > before
    })
    .await;
    vacancy.fill(b("filled"), None).await.expect("fill");
    let got = tokio::time::timeout(guard, task)
        .await
        .expect("the waiter was not woken by the fill")
        .unwrap()
        .expect("waiter");
    assert_eq!(occupied(got, "waiter"), b("filled"));
}

/// Retries `op` until it succeeds; panics after `limit` (a hang guard, not a timing claim).
pub async fn eventually<T, F, Fut>(limit: Duration, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = wasi_cache_engine::Result<T>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    start.elapsed() < limit,
                    "still failing after {limit:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until `condition` holds; panics with `what` after `limit` (a hang guard).
pub async fn until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `near`'s `get` of `key` until it answers `want`; fails unless that happens within
/// `bound` of `since`.
pub async fn seen_within(
    near: &RedisBackend,
    ns: &Namespace,
    key: &[u8],
    want: Option<Bytes>,
    since: Instant,
    bound: Duration,
) {
    loop {
        let got = near.get(ns, key).await.unwrap();
        // The time the read ended: what the message reports is what was checked.
        let after = since.elapsed();
        if got == want {
            return;
        }
        assert!(
            after < bound,
            "{key:?} still {got:?} (not {want:?}) {after:?} after the write"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads `key` until a read is answered by the near cache (a near hit); panics after `guard`.
pub async fn cached(
    near: &RedisBackend,
    ns: &Namespace,
    key: &[u8],
    want: &Bytes,
    guard: Duration,
) {
    let start = Instant::now();
    loop {
        let before = near.stats().near_hits;
        assert_eq!(near.get(ns, key).await.unwrap().as_ref(), Some(want));
        if near.stats().near_hits > before {
            return;
        }
        assert!(
            start.elapsed() < guard,
            "{key:?} never served from the near cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A direct connection to the test server, for what the tests check or do behind the backend.
#[derive(Clone)]
pub struct Admin(redis::aio::MultiplexedConnection);

impl Admin {
    /// Connects to `url`. Its answers may take long on a loaded machine (redis-rs's default
    /// half-second response timeout failed `PUBSUB CHANNELS` of thousands of channels there).
    pub async fn connect(url: &str) -> Self {
        let client = redis::Client::open(url).unwrap();
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_connection_timeout(Some(Duration::from_secs(30)));
        let conn = client.get_multiplexed_async_connection_with_config(&config);
        Self(conn.await.unwrap())
    }

    /// Runs `args` (one command) and returns its reply.
    pub async fn run<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.0.clone()).await
    }

    /// The channels some client subscribes to.
    pub async fn channels(&self) -> Vec<Vec<u8>> {
        self.run(&["PUBSUB", "CHANNELS", "*"]).await.unwrap()
    }
}
