//! What the cluster fault tests (a master killed, a master frozen) share: the hosts' settings,
//! their connection, and the map of which master serves which test key.

use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisCluster;

use super::b;

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
