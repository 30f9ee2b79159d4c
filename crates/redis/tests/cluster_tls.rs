//! The backend on a Redis Cluster of 3 masters with TLS everywhere (clients, cluster bus,
//! replication), started once for this binary: the shared backend-contract suite unchanged,
//! two hosts stampeding keys of every shard over TLS with one fill per key, and a cluster
//! whose CA the backend does not trust refused with the documented error.

mod support;

use std::sync::Arc;
use std::time::Duration;

use wasi_cache_contract::contract_tests;
use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};

use support::{assert_untrusted_ca_refused, b, cluster_tls_config, shared_tls_cluster, stampede};

contract_tests!(support::harness::RedisHarness::cluster_tls());

/// Enough keys that all three shards get some (checked below).
const KEYS: usize = 30;
/// Concurrent callers, spread over the two hosts and the keys.
const CALLERS: usize = 300;

/// Two hosts (own TLS connections each) read and write keys of every shard, then 300
/// concurrent callers stampede those keys: exactly one caller per key fills it, every other
/// caller (on either host) gets that value, and the values are on all three masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_over_tls_fill_each_key_of_every_shard_once() {
    let cluster = shared_tls_cluster();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let backend = RedisBackend::connect(cluster_tls_config(cluster))
            .await
            .expect("connect over TLS");
        hosts.push(Arc::new(backend));
    }
    let ns_name = format!("tls-shards-{}", std::process::id());
    let ns = Namespace::new(&ns_name).unwrap();

    // Plain operations on every shard, one host writing, the other reading.
    for k in 0..KEYS {
        let key = format!("plain-{k}");
        hosts[0]
            .set(&ns, key.as_bytes(), b("v"), None)
            .await
            .unwrap();
        assert_eq!(
            hosts[1].get(&ns, key.as_bytes()).await.unwrap(),
            Some(b("v"))
        );
        hosts[1].delete(&ns, key.as_bytes()).await.unwrap();
        assert_eq!(hosts[0].get(&ns, key.as_bytes()).await.unwrap(), None);
    }

    stampede(&hosts, &ns, CALLERS, KEYS, |k| format!("stampede-{k}")).await;

    // The keys are on all three masters (read over the nodes' plain ports).
    let shards = cluster
        .masters()
        .into_iter()
        .filter(|&m| {
            !cluster
                .keys_on(m, &format!("*{ns_name}stampede-*"))
                .is_empty()
        })
        .count();
    assert_eq!(shards, 3, "the keys cover all three masters");
}

/// A backend that trusts another CA, or only the system's roots, is refused at connect with
/// the handshake error a single server gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_signed_by_an_untrusted_ca_is_refused() {
    let cluster = shared_tls_cluster();
    assert_untrusted_ca_refused(|tls| RedisConfig {
        tls,
        op_timeout: Duration::from_secs(2),
        ..RedisConfig::with_cluster(cluster.tls_seeds())
    })
    .await;
}
