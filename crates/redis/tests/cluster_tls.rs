//! The backend on a Redis Cluster of 3 masters with TLS everywhere (clients, cluster bus,
//! replication), started once for this binary: the shared backend-contract suite unchanged,
//! two hosts stampeding keys of every shard over TLS with one fill per key, and a cluster
//! whose CA the backend does not trust refused with the documented error.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasi_cache_contract::contract_tests;
use wasi_cache_engine::{Backend, Error, GetOrSet, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTls};
use wasi_cache_redis_server::TestCa;

use support::{b, cluster_tls_config, shared_tls_cluster};

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

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (host, ns, barrier) = (hosts[i % 2].clone(), ns.clone(), barrier.clone());
            tokio::spawn(async move {
                let k = i % KEYS;
                let key = format!("stampede-{k}");
                barrier.wait().await;
                match host
                    .get_or_set(&ns, key.as_bytes())
                    .await
                    .expect("get_or_set")
                {
                    GetOrSet::Occupied(v) => (k, false, v),
                    GetOrSet::Vacant(vacancy) => {
                        // Let the others pile up on both hosts before filling.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let value = b(&format!("{k} filled by {i}"));
                        vacancy.fill(value.clone(), None).await.expect("fill");
                        (k, true, value)
                    }
                }
            })
        })
        .collect();
    let outcomes =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(callers))
            .await
            .expect("stampede hung");
    let mut by_key: HashMap<usize, Vec<(bool, Bytes)>> = HashMap::new();
    for outcome in outcomes {
        let (k, filled, value) = outcome.expect("caller task");
        by_key.entry(k).or_default().push((filled, value));
    }
    assert_eq!(by_key.len(), KEYS);
    for (k, outcomes) in &by_key {
        let fills: Vec<&Bytes> = outcomes.iter().filter(|o| o.0).map(|o| &o.1).collect();
        assert_eq!(fills.len(), 1, "key {k}: {} fills", fills.len());
        assert!(
            outcomes.iter().all(|(_, v)| v == fills[0]),
            "key {k}: a caller got another value than the fill"
        );
    }

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
    let unrelated = RedisTls {
        ca_cert: Some(TestCa::new("unrelated CA").cert_pem().into_bytes()),
        client: None,
    };
    for tls in [unrelated, RedisTls::default()] {
        let config = RedisConfig {
            tls,
            op_timeout: Duration::from_secs(2),
            ..RedisConfig::with_cluster(cluster.tls_seeds())
        };
        let err = RedisBackend::connect(config)
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
