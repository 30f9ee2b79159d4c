//! Memoising an expensive computation with the embedded engine: many concurrent requests for
//! the same missing key rendezvous on one `get_or_set`, so the computation runs once.
//!
//! Run: `cargo run --release -p wasi-cache-engine --example memoize`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Config, GetOrSet, MemoryCache, Namespace, Result};

/// A stand-in for an expensive call (a database query, a remote API): 50 ms per result.
async fn expensive_report(day: u32, computations: &AtomicUsize) -> Bytes {
    computations.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Bytes::from(format!("report for day {day}: {} orders", day * 37 % 101))
}

/// Returns the report for `day`, computing it at most once however many callers ask at once.
async fn report(
    cache: &MemoryCache,
    ns: &Namespace,
    day: u32,
    computations: &AtomicUsize,
) -> Result<Bytes> {
    let key = format!("report/{day}");
    match cache.get_or_set(ns, key.as_bytes()).await? {
        GetOrSet::Occupied(value) => Ok(value),
        GetOrSet::Vacant(vacancy) => {
            let value = expensive_report(day, computations).await;
            vacancy
                .fill(value.clone(), Some(Duration::from_secs(60)))
                .await?;
            Ok(value)
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cache = MemoryCache::new(Config::with_capacity(64 << 20))?;
    let ns = Namespace::new("reports")?;
    let computations = Arc::new(AtomicUsize::new(0));

    // 1,000 concurrent requests for 4 distinct days: 4 computations, the rest wait or hit.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1_000u32 {
        let (cache, ns, computations) = (cache.clone(), ns.clone(), computations.clone());
        tasks.push(tokio::spawn(async move {
            report(&cache, &ns, i % 4, &computations).await
        }));
    }
    for task in tasks {
        task.await.expect("request task panicked")?;
    }
    println!(
        "1000 concurrent requests over 4 keys: {} computations in {:?}",
        computations.load(Ordering::Relaxed),
        started.elapsed()
    );

    // Later requests are plain hits; a new day is a miss that computes once.
    let again = report(&cache, &ns, 2, &computations).await?;
    println!("day 2 again (hit): {}", String::from_utf8_lossy(&again));
    let fresh = report(&cache, &ns, 9, &computations).await?;
    println!(
        "day 9 (miss, computed): {}",
        String::from_utf8_lossy(&fresh)
    );

    let stats = cache.stats();
    println!(
        "stats: hits={} misses={} inserts={} rendezvous_waits={} entries={} bytes={}",
        stats.hits, stats.misses, stats.inserts, stats.rendezvous_waits, stats.entries, stats.bytes
    );
    Ok(())
}
