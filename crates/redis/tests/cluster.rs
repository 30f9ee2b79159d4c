//! The backend on a Redis Cluster of 3 masters (started once for this binary): the shared
//! contract suite, unchanged, and four hosts stampeding keys spread over all three shards.

mod support;

use wasi_cache_contract::contract_tests;

contract_tests!(support::harness::RedisHarness::cluster());

mod stampede {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use wasi_cache_engine::{Backend, GetOrSet, Namespace};
    use wasi_cache_redis::{RedisBackend, RedisConfig};

    use crate::support::{b, shared_cluster};

    const HOSTS: usize = 4;
    const CALLERS: usize = 1_000;
    /// Enough keys that all three shards get some (checked below).
    const KEYS: usize = 30;

    fn key(k: usize) -> String {
        format!("key-{k}")
    }

    /// 4 backends (own connections each, as 4 hosts would have) × 1,000 concurrent callers on
    /// 30 keys spread over the three shards: exactly one caller per key is handed the vacancy
    /// and fills it, every other caller (on any host) gets that value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_hosts_stampeding_every_shard_fill_each_key_once() {
        let cluster = shared_cluster();
        let mut hosts = Vec::new();
        for _ in 0..HOSTS {
            let config = RedisConfig::with_cluster(cluster.seeds());
            hosts.push(Arc::new(
                RedisBackend::connect(config).await.expect("connect"),
            ));
        }
        let ns_name = format!("four-hosts-{}", std::process::id());
        let ns = Namespace::new(&ns_name).unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let callers: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (host, ns, barrier) = (hosts[i % HOSTS].clone(), ns.clone(), barrier.clone());
                tokio::spawn(async move {
                    let k = i % KEYS;
                    barrier.wait().await;
                    match host
                        .get_or_set(&ns, key(k).as_bytes())
                        .await
                        .expect("get_or_set")
                    {
                        GetOrSet::Occupied(v) => (k, false, v),
                        GetOrSet::Vacant(vacancy) => {
                            // Let the others pile up on every host before filling.
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
            assert_eq!(fills.len(), 1, "key {k}: exactly one fill");
            assert!(
                outcomes.iter().all(|o| o.1 == *fills[0]),
                "key {k}: every caller gets the one fill"
            );
            for host in &hosts {
                let stored = host.get(&ns, key(*k).as_bytes()).await.unwrap();
                assert_eq!(stored.as_ref(), Some(fills[0]), "key {k}");
            }
        }
        let fills: u64 = hosts.iter().map(|h| h.stats().fills).sum();
        assert_eq!(fills, KEYS as u64);
        let waits: u64 = hosts.iter().map(|h| h.stats().rendezvous_waits).sum();
        assert!(waits > 0, "callers waited on the rendezvous");

        // The keys really are spread: every master holds some of them, and each key's value
        // lives on exactly one of them.
        let masters = cluster.masters();
        assert_eq!(masters.len(), 3, "three masters serve the slots");
        let mut shards_used = 0;
        let mut found = 0;
        for &master in &masters {
            let names = cluster.keys_on(master, &format!("*{ns_name}key-*"));
            shards_used += usize::from(!names.is_empty());
            found += names.len();
        }
        assert_eq!(found, KEYS, "one value key per cache key, no lock left");
        assert_eq!(shards_used, 3, "the keys cover all three shards");
    }
}
