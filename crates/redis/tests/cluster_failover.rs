//! A master of a Redis Cluster with replicas is killed: operations on its slots fail with clear
//! errors within a bound of the op timeout (never hang), the other shards keep working (values
//! and rendezvous), a waiter subscribed on the killed shard gets an answer, and once its replica
//! took over, operations and a rendezvous on the shard's keys recover. A host with a near cache
//! sees its near cache emptied by the kill, never serves a value older than a write
//! acknowledged after the failover, and uses its near cache again once the promoted master's
//! invalidations reach it.

mod support;
use support::failover::*;
use support::*;

use std::time::Instant;

use wasi_cache_engine::{Backend, GetOrSet, Namespace};
use wasi_cache_redis_server::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_master_fails_only_its_slots_until_its_replica_takes_over() {
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(3, 1));
    let (holder, waiter) = (host(&cluster, None).await, host(&cluster, None).await);
    let near = host(&cluster, Some(1 << 20)).await;
    let ns_name = format!("failover-{}", std::process::id());
    let ns = Namespace::new(&ns_name).unwrap();

    // Which master serves which key.
    let Shards {
        victim,
        on_victim,
        elsewhere,
    } = shards(&cluster, &holder, &ns_name, 3).await;
    let (dead, waited, recovered) = (on_victim[0], on_victim[1], on_victim[2]);

    // The near host holds a key of the victim's shard and one of another shard.
    cached(&near, &ns, &key(dead), &b("before"), GUARD).await;
    cached(&near, &ns, &key(elsewhere[0]), &b("before"), GUARD).await;

    // A rendezvous in progress on the victim's shard: the waiter is subscribed there.
    holder.delete(&ns, &key(waited)).await.unwrap();
    let in_failover = vacant(
        holder.get_or_set(&ns, &key(waited)).await.unwrap(),
        "holder before the kill",
    );
    let before = waiter.stats().rendezvous_waits;
    let waiting = {
        let (waiter, ns) = (waiter.clone(), ns.clone());
        tokio::spawn(async move { waiter.get_or_set(&ns, &key(waited)).await })
    };
    until(GUARD, "the waiter waits on the victim's shard", || async {
        waiter.stats().rendezvous_waits > before
    })
    .await;

    tokio::task::block_in_place(|| cluster.kill(victim));

    // Losing the victim's tracking connection empties the whole near cache.
    until(GUARD, "the kill empties the near cache", || async {
        near.stats().entries == 0
    })
    .await;

    // The victim's slots fail, with a clear error, within the op timeout's bound.
    if let Some(value) = read_on_failed_shard(&holder, &ns, &key(dead)).await {
        panic!("an operation on the killed shard: Ok({value:?})");
    }

    // The other shards keep working: reads, writes and a rendezvous.
    let live = elsewhere[0];
    assert_eq!(
        holder.get(&ns, &key(live)).await.unwrap(),
        Some(b("before"))
    );
    // The near host reads the other shards from Redis meanwhile, never its emptied entries.
    other_shards_work(&holder, &waiter, &near, &ns, &key(live), &key(elsewhere[1])).await;

    // The replica takes over; the shard's operations recover.
    tokio::task::block_in_place(|| cluster.wait_until_ok(GUARD));
    assert_ne!(cluster.masters().len(), 0);
    let dead_key = key(dead);
    let value = eventually(GUARD, || holder.get(&ns, &dead_key)).await;
    assert_eq!(value, Some(b("before")), "the replica had the value");
    holder.set(&ns, &key(dead), b("after"), None).await.unwrap();
    assert_eq!(waiter.get(&ns, &key(dead)).await.unwrap(), Some(b("after")));

    // The near host never serves a value older than a write acknowledged after the failover;
    // once tracking is confirmed on the promoted master, its near hits resume and that master's
    // invalidations reach it within the bound.
    near_cache_resumes(&holder, &near, &ns, &dead_key).await;
    cached(&near, &ns, &dead_key, &b("promoted"), GUARD).await;
    holder.delete(&ns, &dead_key).await.unwrap();
    seen_within(&near, &ns, &dead_key, None, Instant::now(), BOUND).await;

    // The waiter subscribed on the killed shard gets an answer: the fill (made on the new
    // master, where its subscription moved), or the vacancy if the lock did not reach the
    // replica before the kill, or an error; never a hang.
    let fill = in_failover.fill(b("filled in failover"), None).await;
    let answer = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the waiter on the killed shard hung")
        .unwrap();
    match answer {
        Ok(GetOrSet::Occupied(v)) => {
            assert!(fill.is_ok(), "{fill:?}");
            assert_eq!(v, b("filled in failover"));
        }
        Ok(GetOrSet::Vacant(_)) => {}
        Err(e) => assert!(is_outage(&e), "{e}"),
    }

    // A fresh rendezvous on the shard works across the two hosts.
    holder.delete(&ns, &key(recovered)).await.unwrap();
    rendezvous(&holder, &waiter, &ns, &key(recovered), GUARD).await;
}
