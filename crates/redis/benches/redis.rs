//! Throughput of the Redis backend's `get` and `set` at 50 concurrent callers, next to
//! `redis-benchmark -t get,set -c 50 -d 64` against the same private `redis-server` in the same
//! run; prints one `RATIO case=<case> peer=redis-benchmark value=<ours/theirs>` line per case.
//! The same backend through the server's TLS port runs in the same run too, with
//! `RATIO case=tls-<op> peer=plain value=<tls/plain>` lines, and on a private Redis Cluster of 3
//! masters (on the same machine), with `RATIO case=cluster3-<op> peer=one-server
//! value=<cluster/one server>` lines.
//!
//! Hot-key gets through the near cache run in the same run, next to plain Redis gets and the
//! embedded engine: `RATIO case=near-get peer=plain-redis value=…` and
//! `RATIO case=near-get peer=engine value=…` (goals: at least 20, and at least 0.5).
//!
//! Run with `cargo bench -p wasi-cache-redis --bench redis` (needs `redis-server` and
//! `redis-benchmark` on the PATH: `apt-get install redis-server`); `-- --near-only` runs only
//! the hot-key case.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Backend, Config, MemoryCache, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTls};
use wasi_cache_redis_server::{ClientAuth, RedisCluster, RedisServer};

/// Concurrent callers, as `redis-benchmark -c 50`.
const CLIENTS: usize = 50;
/// Operations per case, as `redis-benchmark -n 100000`.
const REQUESTS: usize = 100_000;
/// Value size, as `redis-benchmark -d 64`.
const VALUE_SIZE: usize = 64;
/// Distinct keys the callers cycle over.
const KEYS: usize = 10_000;

/// Runs `REQUESTS` operations over `CLIENTS` tasks; operations per second.
async fn run(backend: &Arc<RedisBackend>, set: bool) -> f64 {
    let key = |c: usize, i: usize| format!("key:{}", (c * 7919 + i) % KEYS);
    run_on(backend, "bench", REQUESTS, key, set).await
}

/// Runs `requests` operations in namespace `ns` over `CLIENTS` tasks, the `i`-th of task `c` on
/// `key(c, i)`: sets of a `VALUE_SIZE`-byte value, or gets of preloaded keys; operations per
/// second.
async fn run_on<B: Backend>(
    backend: &Arc<B>,
    ns: &str,
    requests: usize,
    key: fn(usize, usize) -> String,
    set: bool,
) -> f64 {
    let ns = Namespace::new(ns).unwrap();
    let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (backend, ns, value) = (backend.clone(), ns.clone(), value.clone());
            tokio::spawn(async move {
                for i in 0..requests / CLIENTS {
                    let key = key(c, i);
                    if set {
                        backend
                            .set(&ns, key.as_bytes(), value.clone(), None)
                            .await
                            .expect("set");
                    } else {
                        let got = backend.get(&ns, key.as_bytes()).await.expect("get");
                        assert!(got.is_some(), "keys are preloaded");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    requests as f64 / start.elapsed().as_secs_f64()
}

/// `redis-benchmark`'s requests per second for `GET` and `SET`; over TLS (trusting `tls_ca`)
/// when given one.
fn redis_benchmark(port: u16, pipeline: usize, tls_ca: Option<&Path>) -> (String, f64, f64) {
    let tls = tls_ca.map(|ca| {
        let ca = ca.to_str().expect("utf-8 path");
        ["--tls".to_owned(), "--cacert".to_owned(), ca.to_owned()]
    });
    let common = [
        "-P",
        &pipeline.to_string(),
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "get,set",
        "-c",
        &CLIENTS.to_string(),
        "-n",
        &REQUESTS.to_string(),
        "-d",
        &VALUE_SIZE.to_string(),
        "-q",
    ]
    .map(String::from);
    let args: Vec<String> = tls.into_iter().flatten().chain(common).collect();
    let out = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .expect("running redis-benchmark (apt-get install redis-server)");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |name: &str| -> f64 {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .filter(|l| l.contains("requests per second"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no {name} rate in redis-benchmark output: {text}"))
    };
    let command = format!("redis-benchmark {}", args.join(" "));
    (command, rate("GET"), rate("SET"))
}

/// What one pass of sets and gets through one backend gave.
struct Measured {
    /// Sets per second.
    set: f64,
    /// Gets per second.
    get: f64,
    /// Redis round trips per operation (the backend's own count).
    trips: f64,
    /// Reads the server made per operation (`total_reads_processed`): how well requests were
    /// batched on their way to it (one read per request is no batching at all).
    reads: f64,
}

/// Sets then gets through a backend made with `config`, after a warm-up pass of sets (which
/// also preloads every key for the gets); `reads` gives the server's (or the masters', summed)
/// `total_reads_processed`.
async fn measure(config: RedisConfig, reads: impl Fn() -> u64) -> Measured {
    let backend = Arc::new(RedisBackend::connect(config).await.unwrap());
    run(&backend, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = (backend.stats().round_trips, reads());
    let set = run(&backend, true).await;
    let get = run(&backend, false).await;
    let ops = (2 * REQUESTS) as f64;
    Measured {
        set,
        get,
        trips: (backend.stats().round_trips - before.0) as f64 / ops,
        reads: ((reads() - before.1) as f64) / ops,
    }
}

/// Keys the hot-key case reads.
const HOT_KEYS: usize = 16;

/// `requests` gets of the hot keys (all present) over `CLIENTS` tasks; gets per second.
async fn hot_gets<B: Backend>(backend: &Arc<B>, requests: usize) -> f64 {
    let key = |c: usize, i: usize| format!("hot:{}", (c + i) % HOT_KEYS);
    run_on(backend, "hot", requests, key, false).await
}

/// Stores the hot keys through `backend`, then reads each twice (the near cache keeps them).
async fn preload<B: Backend>(backend: &Arc<B>) {
    let ns = Namespace::new("hot").unwrap();
    let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
    for k in 0..HOT_KEYS {
        let key = format!("hot:{k}");
        backend
            .set(&ns, key.as_bytes(), value.clone(), None)
            .await
            .unwrap();
        for _ in 0..2 {
            backend.get(&ns, key.as_bytes()).await.unwrap();
        }
    }
}

/// Hot-key gets through a near cache, through plain Redis and on the embedded engine; prints
/// their rates and the two `RATIO` lines.
async fn hot_keys(url: &str) {
    const FAST_REQUESTS: usize = 2_000_000;
    let near = Arc::new(
        RedisBackend::connect(RedisConfig {
            near_cache: Some(64 << 20),
            ..RedisConfig::with_url(url)
        })
        .await
        .unwrap(),
    );
    let plain = Arc::new(
        RedisBackend::connect(RedisConfig::with_url(url))
            .await
            .unwrap(),
    );
    let engine = Arc::new(MemoryCache::new(Config::with_capacity(64 << 20)).unwrap());
    preload(&near).await;
    preload(&engine).await;
    // Warm-up passes, then the measured ones.
    hot_gets(&near, FAST_REQUESTS / 10).await;
    hot_gets(&engine, FAST_REQUESTS / 10).await;
    hot_gets(&plain, REQUESTS / 10).await;
    let hits_before = near.stats().near_hits;
    let through_near = hot_gets(&near, FAST_REQUESTS).await;
    let near_hits = near.stats().near_hits - hits_before;
    let through_redis = hot_gets(&plain, REQUESTS).await;
    let embedded = hot_gets(&engine, FAST_REQUESTS).await;
    println!(
        "hot-key gets ({CLIENTS} tasks, {HOT_KEYS} keys of {VALUE_SIZE} bytes): near cache \
         {through_near:.0} ops/s ({:.4} near hits/get), plain Redis {through_redis:.0} ops/s, \
         embedded engine {embedded:.0} ops/s",
        near_hits as f64 / FAST_REQUESTS as f64
    );
    println!(
        "RATIO case=near-get peer=plain-redis value={:.3}",
        through_near / through_redis
    );
    println!(
        "RATIO case=near-get peer=engine value={:.3}",
        through_near / embedded
    );
}

fn main() {
    // One server for every case: its plain port, and its TLS port on a CA made here.
    let server = RedisServer::start_tls(ClientAuth::Optional);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("redis-server: {}", redis_version());
    runtime.block_on(hot_keys(&server.url()));
    if std::env::args().any(|a| a == "--near-only") {
        return;
    }
    let plain = runtime.block_on(measure(RedisConfig::with_url(server.url()), || {
        server.reads_processed()
    }));
    let tls = RedisConfig {
        tls: RedisTls::from_files(Some(server.ca_cert()), None).unwrap(),
        ..RedisConfig::with_url(server.tls_url())
    };
    let tls = runtime.block_on(measure(tls, || server.reads_processed()));
    // Three masters on this machine: the same work spread over three servers, each key's
    // commands sent to the node serving its slot.
    let cluster = RedisCluster::start(3, 0);
    let sharded = runtime.block_on(measure(RedisConfig::with_cluster(cluster.seeds()), || {
        cluster.reads_processed()
    }));
    drop(cluster);
    let (ours_set, ours_get) = (plain.set, plain.get);
    let (command, theirs_get, theirs_set) = redis_benchmark(server.port(), 1, None);
    // The same with 16 requests pipelined per connection: closer to what one multiplexed
    // connection does with 50 concurrent callers (it batches their requests).
    let (piped_command, piped_get, piped_set) = redis_benchmark(server.port(), 16, None);
    // What TLS costs the server itself, a yardstick for ours: the pipelined peer over TLS.
    let (tls_command, tls_piped_get, tls_piped_set) =
        redis_benchmark(server.tls_port(), 16, Some(server.ca_cert()));
    println!("peer: {command}");
    println!(
        "ours: set {ours_set:.0} ops/s, get {ours_get:.0} ops/s ({CLIENTS} tasks, one multiplexed connection, {:.2} round trips/op, {:.3} server reads/op)",
        plain.trips, plain.reads
    );
    println!("redis-benchmark: set {theirs_set:.0} ops/s, get {theirs_get:.0} ops/s");
    println!(
        "RATIO case=get peer=redis-benchmark value={:.3}",
        ours_get / theirs_get
    );
    println!(
        "RATIO case=set peer=redis-benchmark value={:.3}",
        ours_set / theirs_set
    );
    println!("peer: {piped_command}");
    println!("redis-benchmark -P 16: set {piped_set:.0} ops/s, get {piped_get:.0} ops/s");
    println!(
        "RATIO case=get peer=redis-benchmark-P16 value={:.3}",
        ours_get / piped_get
    );
    println!(
        "RATIO case=set peer=redis-benchmark-P16 value={:.3}",
        ours_set / piped_set
    );
    println!(
        "ours over TLS: set {:.0} ops/s, get {:.0} ops/s ({CLIENTS} tasks, one multiplexed TLS connection, {:.2} round trips/op, {:.3} server reads/op)",
        tls.set, tls.get, tls.trips, tls.reads
    );
    println!(
        "RATIO case=tls-get peer=plain value={:.3}",
        tls.get / ours_get
    );
    println!(
        "RATIO case=tls-set peer=plain value={:.3}",
        tls.set / ours_set
    );
    println!(
        "ours on a 3-master cluster: set {:.0} ops/s, get {:.0} ops/s ({CLIENTS} tasks, one multiplexed connection per master, {:.2} round trips/op, {:.3} server reads/op, all masters)",
        sharded.set, sharded.get, sharded.trips, sharded.reads
    );
    println!(
        "RATIO case=cluster3-get peer=one-server value={:.3}",
        sharded.get / ours_get
    );
    println!(
        "RATIO case=cluster3-set peer=one-server value={:.3}",
        sharded.set / ours_set
    );
    println!("peer: {tls_command}");
    println!(
        "redis-benchmark -P 16 over TLS: set {tls_piped_set:.0} ops/s, get {tls_piped_get:.0} ops/s (its own TLS/plain: get {:.3}, set {:.3})",
        tls_piped_get / piped_get,
        tls_piped_set / piped_set
    );
}

/// The server's version line.
fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
