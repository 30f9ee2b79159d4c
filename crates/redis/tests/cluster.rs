//! The backend on a Redis Cluster of 3 masters (started once for this binary): four hosts
//! stampeding keys spread over all three shards, writes on every shard reaching another host's
//! near cache, and the ACL a cluster user needs. (The contract suite runs on a cluster of its
//! own, in `contract_cluster.rs`: its TTL cases must not compete with 4,000 stampeding callers.)

mod support;

mod near_cache {
    use std::time::{Duration, Instant};

    use wasi_cache_engine::{Backend, Namespace};
    use wasi_cache_redis::{RedisBackend, RedisConfig};

    use crate::support::{b, cached, seen_within, shared_cluster};

    /// The invalidation bound the issue sets: a write by another host is seen within it.
    const BOUND: Duration = Duration::from_millis(100);
    /// Hang guard for what has no bound of its own.
    const GUARD: Duration = Duration::from_secs(10);
    /// Enough keys that all three shards get some (checked below).
    const KEYS: usize = 30;

    fn key(k: usize) -> Vec<u8> {
        format!("key-{k}").into_bytes()
    }

    /// A host on the binary's cluster, with a near cache of `bytes` (`None`: without one).
    async fn host(bytes: Option<u64>) -> RedisBackend {
        let config = RedisConfig {
            near_cache: bytes,
            ..RedisConfig::with_cluster(shared_cluster().seeds())
        };
        RedisBackend::connect(config).await.expect("connect")
    }

    /// A set and a delete by one host, on keys of every shard, are seen by another host's near
    /// cache within the bound: each master's invalidations reach it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_every_shard_reach_the_near_cache_within_the_bound() {
        let cluster = shared_cluster();
        let (near, other) = (host(Some(1 << 20)).await, host(None).await);
        let ns_name = format!("near-shards-{}", std::process::id());
        let ns = Namespace::new(&ns_name).unwrap();
        for k in 0..KEYS {
            other.set(&ns, &key(k), b("v0"), None).await.unwrap();
        }
        let shards = cluster
            .masters()
            .into_iter()
            .filter(|&m| !cluster.keys_on(m, &format!("*{ns_name}key-*")).is_empty())
            .count();
        assert_eq!(shards, 3, "the keys cover all three masters");

        for k in 0..KEYS {
            cached(&near, &ns, &key(k), &b("v0"), GUARD).await;
        }
        assert!(near.stats().entries >= KEYS as u64, "{:?}", near.stats());
        for k in 0..KEYS {
            other.set(&ns, &key(k), b("v1"), None).await.unwrap();
            seen_within(&near, &ns, &key(k), Some(b("v1")), Instant::now(), BOUND).await;
            cached(&near, &ns, &key(k), &b("v1"), GUARD).await;
            other.delete(&ns, &key(k)).await.unwrap();
            seen_within(&near, &ns, &key(k), None, Instant::now(), BOUND).await;
        }
        let stats = near.stats();
        assert!(stats.invalidations >= 2 * KEYS as u64, "{stats:?}");
    }
}

mod stampede {
    use std::sync::Arc;

    use wasi_cache_engine::{Backend, Namespace};
    use wasi_cache_redis::{RedisBackend, RedisConfig};

    use crate::support::{shared_cluster, stampede};

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
        let fills = stampede(&hosts, &ns, CALLERS, KEYS, key).await;
        for (k, fill) in &fills {
            for host in &hosts {
                let stored = host.get(&ns, key(*k).as_bytes()).await.unwrap();
                assert_eq!(stored.as_ref(), Some(fill), "key {k}");
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

mod acl {
    use std::sync::Arc;
    use std::time::Duration;

    use wasi_cache_engine::{Backend, Error, Namespace};
    use wasi_cache_redis::{CLUSTER_ACL_RULES, RedisBackend, RedisConfig};

    use crate::support::{b, rendezvous, shared_cluster};

    /// Creates `user` (password `pw`) with `rules` on every node: ACL users are per node.
    fn set_user(user: &str, rules: &str) {
        let cluster = shared_cluster();
        let mut args = vec!["ACL", "SETUSER", user, "reset", "on", ">pw"];
        args.extend(rules.split_whitespace());
        for node in 0..cluster.len() {
            assert_eq!(cluster.cli(node, &args), "OK", "ACL SETUSER on node {node}");
        }
    }

    /// The cluster's seed URLs as `user`.
    fn seeds_as(user: &str) -> Vec<String> {
        shared_cluster()
            .seeds()
            .iter()
            .map(|url| url.replace("redis://", &format!("redis://{user}:pw@")))
            .collect()
    }

    /// [`CLUSTER_ACL_RULES`] are enough for everything the backend does on a cluster (values, a
    /// rendezvous across two hosts, a near cache), and a user without the sharded channel rights is refused
    /// at connect with what to grant.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_documented_cluster_rules_are_enough() {
        set_user(
            "clustercache",
            &format!("resetkeys resetchannels -@all {CLUSTER_ACL_RULES}"),
        );
        let config = RedisConfig::with_cluster(seeds_as("clustercache"));
        let holder = RedisBackend::connect(config.clone())
            .await
            .expect("connect");
        // With a near cache: the rules cover its tracking connections and CLUSTER SLOTS.
        let near = RedisConfig {
            near_cache: Some(1 << 20),
            ..config
        };
        let waiter = Arc::new(RedisBackend::connect(near).await.expect("connect"));
        let ns = Namespace::new(format!("acl-{}", std::process::id())).unwrap();
        for k in 0..10 {
            let key = format!("k{k}");
            holder.set(&ns, key.as_bytes(), b("v"), None).await.unwrap();
            assert_eq!(waiter.get(&ns, key.as_bytes()).await.unwrap(), Some(b("v")));
            assert!(waiter.exists(&ns, key.as_bytes()).await.unwrap());
            holder.delete(&ns, key.as_bytes()).await.unwrap();
        }
        rendezvous(&holder, &waiter, &ns, b"r", Duration::from_secs(30)).await;
        holder.ping().await.unwrap();

        set_user(
            "nosharded",
            "resetkeys resetchannels -@all ~wc:* &wc:* +@all -spublish",
        );
        match RedisBackend::connect(RedisConfig::with_cluster(seeds_as("nosharded"))).await {
            Err(Error::InvalidConfig(msg)) => assert!(
                msg.contains("SPUBLISH") && msg.contains("+spublish +ssubscribe +sunsubscribe"),
                "{msg}"
            ),
            Err(other) => panic!("expected InvalidConfig, got {other}"),
            Ok(_) => panic!("connected without SPUBLISH"),
        }
    }
}
