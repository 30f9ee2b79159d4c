//! `wasi-cache run --redis-cluster`: the memo example on a private 3-master Redis Cluster (its
//! keys on the shards that serve them, its rendezvous through sharded pub/sub), plain and over
//! TLS (`rediss://` seeds with `--redis-ca-cert`), and the option's errors (with --redis; a
//! cluster nobody serves; a TLS cluster signed by another CA), each one `error:` line with exit
//! code 2.

mod common;
use common::*;

use std::path::Path;

use wasi_cache_redis_server::{RedisCluster, free_port};

/// Runs `wasi-cache run --redis-cluster SEEDS OPTIONS… MEMO` (the memo example).
fn run_memo_on(seeds: &str, options: &[&Path]) -> Run {
    let head = [
        Path::new("run"),
        Path::new("--redis-cluster"),
        Path::new(seeds),
    ];
    wasi_cache(
        head.into_iter()
            .chain(options.iter().copied())
            .chain([memo_wasm()]),
    )
}

/// Asserts that the memo example's values are on `cluster`: its three keys, wherever their
/// slots are.
fn assert_memo_values_on(cluster: &RedisCluster) {
    let stored: usize = cluster
        .masters()
        .into_iter()
        .map(|m| cluster.keys_on(m, "wc:*nth-prime*").len())
        .sum();
    assert_eq!(stored, 3);
}

#[test]
fn memo_example_computes_once_per_key_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.seeds().join(",");
    let run = run_memo_on(&seeds, &[Path::new("--stats")]);
    assert_memo_ran(&run);
    let stats = run.stderr.trim_end();
    let fields = [
        "wasi-cache stats: ",
        "inserts=3",
        "round_trips=",
        "reconnects=0",
    ];
    let missing: Vec<&str> = fields.into_iter().filter(|f| !stats.contains(f)).collect();
    assert!(missing.is_empty(), "{missing:?} not in {stats}");
    assert_memo_values_on(&cluster);
}

#[test]
fn memo_example_computes_once_per_key_on_a_tls_cluster() {
    let cluster = RedisCluster::start_tls(3, 0);
    let seeds = cluster.tls_seeds().join(",");
    let run = run_memo_on(&seeds, &[Path::new("--redis-ca-cert"), cluster.ca_cert()]);
    assert_memo_ran(&run);
    assert_memo_values_on(&cluster);

    // The same cluster with another CA's certificate: the handshake's failure, on one line.
    let other_ca =
        std::env::temp_dir().join(format!("wasi-cache-other-ca-{}.crt", std::process::id()));
    write_unrelated_ca_cert(&other_ca);
    let refused = run_memo_on(&seeds, &[Path::new("--redis-ca-cert"), &other_ca]);
    let _ = std::fs::remove_file(&other_ca);
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:#?}");
    assert!(
        refused
            .stderr
            .starts_with("error: cannot connect to the Redis Cluster at "),
        "{refused:#?}"
    );
    assert_unknown_ca(&refused.stderr, &refused);
}

#[test]
fn cluster_option_errors_are_one_line() {
    let both = wasi_cache([
        "run",
        "--redis",
        "redis://127.0.0.1:1",
        "--redis-cluster",
        "redis://127.0.0.1:2",
        "x.wasm",
    ]);
    assert_eq!(both.code, Some(2), "{both:#?}");
    assert!(both.stderr.contains("cannot be used with"), "{both:#?}");

    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let run = run_memo_on(&nobody, &[Path::new("--redis-timeout"), Path::new("500ms")]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot connect to the Redis Cluster at {nobody}"
        )),
        "{run:#?}"
    );
}
