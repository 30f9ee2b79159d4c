//! What the cluster fault tests (a master killed, a master frozen) share: the hosts' settings,
//! their connection, the map of which master serves which test key, and the checks on the
//! failed shard, on the other shards, and on the near cache after the failover.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, Error, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisCluster;

use super::{b, cached, eventually, rendezvous, seen_within};

/// Short, so that an operation on the failed shard ends well before its replica can take over
/// (the cluster needs its node timeout, 1 s, to even notice the master is gone).
pub const OP: Duration = Duration::from_millis(800);
/// Longer than every hang guard: no waiter gets anything from a lock expiring.
pub const VACANCY: Duration = Duration::from_secs(120);
/// Hang guard of the steps that wait for the cluster or the backend to recover.
pub const GUARD: Duration = Duration::from_secs(60);
/// The invalidation bound the issue sets: a write by another host is seen within it.
pub const BOUND: Duration = Duration::from_millis(100);
/// Keys written to find out which shard serves what.
pub const KEYS: usize = 30;

/// The test key number `k`.
pub fn key(k: usize) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// A host on `cluster`, with a near cache of `near` bytes (`None`: without one).
pub async fn host(cluster: &RedisCluster, near: Option<u64>) -> Arc<RedisBackend> {
    let config = RedisConfig {
        near_cache: near,
        op_timeout: OP,
        vacancy_timeout: VACANCY,
        ..RedisConfig::with_cluster(cluster.seeds())
    };
    Arc::new(RedisBackend::connect(config).await.expect("connect"))
}

/// The keys of namespace `ns_name` as the cluster spreads them.
pub struct Shards {
    /// The master serving the first key: the one a test fails.
    pub victim: usize,
    /// The keys on the victim.
    pub on_victim: Vec<usize>,
    /// The keys on the other masters.
    pub elsewhere: Vec<usize>,
}

/// Writes the test keys through `host` and finds which master serves each; at least `each`
/// keys are on the victim and `each` elsewhere.
pub async fn shards(
    cluster: &RedisCluster,
    host: &RedisBackend,
    ns_name: &str,
    each: usize,
) -> Shards {
    let ns = Namespace::new(ns_name).unwrap();
    for k in 0..KEYS {
        host.set(&ns, &key(k), b("before"), None).await.unwrap();
    }
    let shard_of = |k: usize| {
        let suffix = format!("{ns_name}key-{k}");
        cluster
            .masters()
            .into_iter()
            .find(|&m| !cluster.keys_on(m, &format!("*{suffix}")).is_empty())
            .expect("every key is on a master")
    };
    let shards: Vec<usize> = (0..KEYS).map(shard_of).collect();
    let victim = shards[0];
    let on_victim: Vec<usize> = (0..KEYS).filter(|&k| shards[k] == victim).collect();
    let elsewhere: Vec<usize> = (0..KEYS).filter(|&k| shards[k] != victim).collect();
    assert!(
        on_victim.len() >= each && elsewhere.len() >= each,
        "{shards:?}"
    );
    Shards {
        victim,
        on_victim,
        elsewhere,
    }
}

/// A read of `key` on the failed shard through `host`: it ends within twice the op timeout,
/// and fails with a clear error (`Unavailable`, naming the Redis Cluster), unless it succeeds
/// (the failed shard served again: its value); panics on any other error.
pub async fn read_on_failed_shard(
    host: &RedisBackend,
    ns: &Namespace,
    key: &[u8],
) -> Option<Option<Bytes>> {
    let start = Instant::now();
    let got = host.get(ns, key).await;
    let took = start.elapsed();
    assert!(took <= OP * 2, "a failing operation took {took:?}");
    match got {
        Err(e @ Error::Unavailable(_)) => {
            assert!(e.to_string().contains("Redis Cluster"), "{e}");
            None
        }
        Ok(value) => Some(value),
        Err(other) => panic!("an operation on the failed shard: {other:?}"),
    }
}

/// The shards the failover spares keep working, for `holder`, `waiter` and the `near` host:
/// `holder`'s write of `live` is read by the others, and a rendezvous on `other` (another key
/// there) goes through.
pub async fn other_shards_work(
    holder: &RedisBackend,
    waiter: &Arc<RedisBackend>,
    near: &RedisBackend,
    ns: &Namespace,
    live: &[u8],
    other: &[u8],
) {
    holder.set(ns, live, b("during"), None).await.unwrap();
    assert_eq!(waiter.get(ns, live).await.unwrap(), Some(b("during")));
    assert_eq!(near.get(ns, live).await.unwrap(), Some(b("during")));
    waiter.delete(ns, other).await.unwrap();
    rendezvous(holder, waiter, ns, other, GUARD).await;
}

/// After the failover, with `holder` having written `after` at `key` (on the failed shard):
/// the `near` host never serves a value older than that write, its near hits resume, and
/// `holder`'s next write reaches it within the [`BOUND`].
pub async fn near_cache_resumes(
    holder: &RedisBackend,
    near: &RedisBackend,
    ns: &Namespace,
    key: &[u8],
) {
    let after = eventually(GUARD, || near.get(ns, key)).await;
    assert_eq!(after, Some(b("after")), "a value from before the failover");
    cached(near, ns, key, &b("after"), GUARD).await;
    holder.set(ns, key, b("promoted"), None).await.unwrap();
    seen_within(near, ns, key, Some(b("promoted")), Instant::now(), BOUND).await;
}
