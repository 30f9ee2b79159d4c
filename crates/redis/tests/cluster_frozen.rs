//! A master of a Redis Cluster with replicas is frozen (`SIGSTOP`: its kernel still accepts
//! and acknowledges, the process answers nothing): operations on its slots fail within a bound
//! of the op timeout while the other shards keep working, and once the cluster promoted its
//! replica, operations and a rendezvous on those slots recover on the promoted master although
//! no connection to the frozen node ever broke. A host with a near cache sees it emptied by the
//! freeze (its tracking connection's PING goes unanswered), never serves a value older than a
//! write acknowledged after the failover, and uses its near cache again on the promoted master.
//! The node is thawed at the end, even when the test fails (a guard).

mod support;
use support::failover::*;
use support::*;

use std::time::{Duration, Instant};

use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis_server::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_masters_slots_recover_on_its_promoted_replica() {
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3, 1));
    let (holder, waiter) = (host(&cluster, None).await, host(&cluster, None).await);
    let near = host(&cluster, Some(1 << 20)).await;
    let ns_name = format!("frozen-{}", std::process::id());
    let ns = Namespace::new(&ns_name).unwrap();

    // Which master serves which key.
    let Shards {
        victim,
        on_victim,
        elsewhere,
    } = shards(&cluster, &holder, &ns_name, 2).await;
    let (dead, recovered) = (on_victim[0], on_victim[1]);
    cached(&near, &ns, &key(dead), &b("before"), GUARD).await;

    let frozen = cluster.freeze(victim);

    // The frozen master's tracking connection stops answering PINGs: the near cache is emptied.
    until(GUARD, "the freeze empties the near cache", || async {
        near.stats().entries == 0
    })
    .await;

    // The other shards keep working: reads, writes and a rendezvous. Checked first, while the
    // frozen master still serves its slots as far as the cluster knows: once its replica is
    // promoted, the backend's slot map rebuild may hold every command once, up to the op
    // timeout, if redis-rs asks the frozen node first (documented).
    let live = elsewhere[0];
    other_shards_work(&holder, &waiter, &near, &ns, &key(live), &key(elsewhere[1])).await;

    // The frozen shard's operations fail, with a clear error, within the op timeout's bound
    // (each one's timeout has the backend look at the cluster's masters).
    for attempt in 0..3 {
        match read_on_failed_shard(&holder, &ns, &key(dead)).await {
            None => {}
            // The cluster may promote the replica (its node timeout is 1 s) while these run, and
            // the backend then serves the slot from it: only the first must fail.
            Some(_) if attempt > 0 => break,
            Some(value) => panic!("an operation on the frozen shard: Ok({value:?})"),
        }
    }

    // The cluster promotes the frozen master's replica (seen from the running nodes).
    let start = Instant::now();
    tokio::task::block_in_place(|| {
        loop {
            let masters = cluster.masters();
            if masters.len() == 3 && !masters.contains(&victim) {
                break;
            }
            assert!(
                start.elapsed() < GUARD,
                "the frozen master's replica was not promoted: masters {masters:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    // Operations on the frozen shard's keys recover on the promoted master, for both hosts,
    // while the old master is still frozen (its connections never broke).
    let dead_key = key(dead);
    let value = eventually(GUARD, || holder.get(&ns, &dead_key)).await;
    assert_eq!(value, Some(b("before")), "the replica had the value");
    holder.set(&ns, &dead_key, b("after"), None).await.unwrap();
    let value = eventually(GUARD, || waiter.get(&ns, &dead_key)).await;
    assert_eq!(value, Some(b("after")));
    assert_eq!(
        waiter.get(&ns, &key(live)).await.unwrap(),
        Some(b("during"))
    );

    // The near host never serves a value older than a write acknowledged after the failover;
    // once it tracks the promoted master, its near hits resume and that master's invalidations
    // reach it within the bound.
    near_cache_resumes(&holder, &near, &ns, &dead_key).await;

    // A rendezvous on the shard works across the two hosts: the waiter's subscription is on
    // the promoted master.
    let recovered_key = key(recovered);
    eventually(GUARD, || holder.delete(&ns, &recovered_key)).await;
    rendezvous(&holder, &waiter, &ns, &recovered_key, GUARD).await;

    // Thawed, the old master rejoins as a replica; the shard keeps answering.
    drop(frozen);
    tokio::task::block_in_place(|| cluster.wait_until_ok(GUARD));
    let value = eventually(GUARD, || waiter.get(&ns, &dead_key)).await;
    assert_eq!(value, Some(b("promoted")));
}
