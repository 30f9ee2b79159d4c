//! `wasi-cache run --redis-cluster`: the memo example on a private 3-master Redis Cluster (its
//! keys on the shards that serve them, its rendezvous through sharded pub/sub), plain and over
//! TLS (`rediss://` seeds with `--redis-ca-cert`), and the option's errors (with --redis; a
//! cluster nobody serves; a TLS cluster signed by another CA), each one `error:` line with exit
//! code 2.

mod common;
use common::*;

use std::path::Path;

use wasi_cache_redis_server::{RedisCluster, TestCa, free_port};

#[test]
fn memo_example_computes_once_per_key_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.seeds().join(",");
    let run = wasi_cache([
        Path::new("run"),
        Path::new("--stats"),
        Path::new("--redis-cluster"),
        Path::new(&seeds),
        memo_wasm(),
    ]);
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
    // The values are on the cluster: the three keys, wherever their slots are.
    let stored: usize = cluster
        .masters()
        .into_iter()
        .map(|m| cluster.keys_on(m, "wc:*nth-prime*").len())
        .sum();
    assert_eq!(stored, 3);
}

#[test]
fn memo_example_computes_once_per_key_on_a_tls_cluster() {
    let cluster = RedisCluster::start_tls(3, 0);
    let seeds = cluster.tls_seeds().join(",");
    let run = wasi_cache([
        Path::new("run"),
        Path::new("--redis-cluster"),
        Path::new(&seeds),
        Path::new("--redis-ca-cert"),
        cluster.ca_cert(),
        memo_wasm(),
    ]);
    assert_memo_ran(&run);
    let stored: usize = cluster
        .masters()
        .into_iter()
        .map(|m| cluster.keys_on(m, "wc:*nth-prime*").len())
        .sum();
    assert_eq!(stored, 3);

    // The same cluster with another CA's certificate: the handshake's failure, on one line.
    let other_ca =
        std::env::temp_dir().join(format!("wasi-cache-other-ca-{}.crt", std::process::id()));
    TestCa::new("unrelated CA").write_cert(&other_ca);
    let refused = wasi_cache([
        Path::new("run"),
        Path::new("--redis-cluster"),
        Path::new(&seeds),
        Path::new("--redis-ca-cert"),
        &other_ca,
        memo_wasm(),
    ]);
    let _ = std::fs::remove_file(&other_ca);
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:#?}");
    assert!(
        refused
            .stderr
            .starts_with("error: cannot connect to the Redis Cluster at ")
            && refused.stderr.contains(
                "TLS handshake with Redis failed: certificate verify failed: the server's \
                 certificate is signed by an unknown CA"
            ),
        "{refused:#?}"
    );
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
    let run = wasi_cache([
        Path::new("run"),
        Path::new("--redis-cluster"),
        Path::new(&nobody),
        Path::new("--redis-timeout"),
        Path::new("500ms"),
        memo_wasm(),
    ]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot connect to the Redis Cluster at {nobody}"
        )),
        "{run:#?}"
    );
}
