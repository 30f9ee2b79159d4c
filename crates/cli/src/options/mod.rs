//! The options `run` and `serve` share ([`CommonArgs`], flattened into each command's
//! options) with the checks across them ([`CommonArgs::validate`]), and the parsers of the
//! values options take: sizes ([`size`]), durations ([`duration`]), counts ([`count`]), the
//! namespace and environment variables ([`env`]); `serve`'s pooling-allocator options
//! ([`pooling`]).

pub mod count;
pub mod duration;
pub mod env;
pub mod pooling;
pub mod reuse;
pub mod size;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use wasi_cache_engine::{Copies, Namespace};
use wasi_cache_redis::RedisBackend;

use count::parse_count;
use duration::parse_positive_duration;
use env::{parse_env, parse_namespace};
use size::{format_size, parse_positive_size, parse_positive_size_usize};

/// Options `run` and `serve` share: the cache (embedded or Redis), the limits of every instance,
/// its environment and the `--stats` report.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("redis_target").args(["redis", "redis_cluster"])))]
pub struct CommonArgs {
    /// Most bytes the embedded cache keeps (keys, values and per-entry overhead); not with --redis.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "256MiB",
        value_parser = parse_positive_size,
        conflicts_with_all = ["redis", "redis_cluster"]
    )]
    pub capacity: u64,

    /// Use the Redis server at URL (redis://HOST:PORT/DB, or rediss:// for TLS) instead of the
    /// embedded cache.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// Use the Redis Cluster (Redis 7 or later) reached through these seed nodes
    /// (redis://HOST:PORT or rediss://, comma-separated; database 0) instead of the embedded
    /// cache; the other nodes are found from them.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        num_args = 1,
        conflicts_with = "redis"
    )]
    pub redis_cluster: Vec<String>,

    /// CA certificate (PEM) that signed the rediss:// server's certificate: trusted instead of
    /// the system's roots.
    #[arg(long, value_name = "FILE", requires = "redis_target")]
    pub redis_ca_cert: Option<PathBuf>,

    /// Client certificate (PEM) for a rediss:// server that requires mutual TLS; with
    /// --redis-client-key.
    #[arg(long, value_name = "FILE", requires_all = ["redis_target", "redis_client_key"])]
    pub redis_client_cert: Option<PathBuf>,

    /// Private key (PEM) of --redis-client-cert.
    #[arg(long, value_name = "FILE", requires_all = ["redis_target", "redis_client_cert"])]
    pub redis_client_key: Option<PathBuf>,

    /// Keep a near cache of SIZE bytes in this process in front of Redis (the embedded engine,
    /// kept coherent by Redis's client-side caching invalidations); off by default.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_positive_size,
        requires = "redis_target"
    )]
    pub near_cache: Option<u64>,

    /// Where compiled components are kept between runs (default:
    /// $XDG_CACHE_HOME/wasi-cache/compiled or ~/.cache/wasi-cache/compiled).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component again instead of using (and filling) the compilation cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Longest wait for one Redis command (and for connecting) before it fails.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_positive_duration,
        requires = "redis_target"
    )]
    pub redis_timeout: Duration,

    /// Namespace (tenant) the component's keys live in.
    #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_namespace)]
    pub namespace: Namespace,

    /// How long a get-or-set vacancy may stay unfilled before a waiter is handed it.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_positive_duration
    )]
    pub vacancy_timeout: Duration,

    /// Largest key the component may use.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "64KiB",
        value_parser = parse_positive_size_usize
    )]
    pub max_key_size: usize,

    /// Largest value the component may store (at most half of --memory-budget, a third with
    /// --redis, and --capacity).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "16MiB",
        value_parser = parse_positive_size_usize
    )]
    pub max_value_size: usize,

    /// Most bytes the component may make the host hold at once for the cache (values it
    /// writes or references, pending keys, buffers); beyond it, cache calls return errors.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "64MiB",
        value_parser = parse_positive_size_usize
    )]
    pub memory_budget: usize,

    /// Most cache operations the component may have in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = parse_count)]
    pub max_live_futures: usize,

    /// Most bytes of linear memory the component may have, all its memories together (a Rust
    /// component has one); growing past it fails inside the component, which usually aborts (a
    /// trap). The default leaves ordinary components ample room while bounding what one can
    /// take from the host (a 32-bit memory can reach 4GiB).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "1GiB",
        value_parser = parse_positive_size_usize
    )]
    pub max_memory: usize,

    /// Most resources (futures, values, buckets, streams, pollables, ...) the component may
    /// hold at once, a WASI 0.3 component's own streams and futures included (one each); the
    /// call that would create one more traps it. The default leaves room for every live future (--max-live-futures) with its
    /// pollable and value many times over (each entry costs host memory).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = parse_count)]
    pub max_resources: usize,

    /// Environment variable for the component: NAME=VALUE, or NAME to pass the host's value.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, Option<String>)>,

    /// Print the cache's counters (hits, misses, rendezvous, ...) to stderr at exit; with
    /// --redis, also Redis round trips, reconnects and the near cache's hits, misses and
    /// invalidations.
    #[arg(long)]
    pub stats: bool,
}

impl CommonArgs {
    /// Whether the cache lives in Redis (`--redis` or `--redis-cluster`).
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some() || !self.redis_cluster.is_empty()
    }

    /// Checks the options against each other (each one's range is checked as it is parsed);
    /// the error is one sentence naming the options and what to change.
    pub fn validate(&self) -> Result<(), String> {
        let (value, budget) = (self.max_value_size, self.memory_budget);
        // A set is charged its value once for the guest's outgoing-value and once per copy the
        // backend holds while it writes (wasi-cache-host charges what `Backend::copies` says).
        let copies = if self.uses_redis() {
            RedisBackend::COPIES
        } else {
            Copies::default()
        };
        let held = copies.value.saturating_add(1);
        if value.saturating_mul(held) > budget {
            return Err(format!(
                "--max-value-size ({}) is above 1/{held} of --memory-budget ({}): a set holds its \
                 value {held} times while it writes it (the outgoing-value's body and the \
                 backend's copies of the write in flight), so one that large could never be set; \
                 lower --max-value-size or raise --memory-budget",
                format_size(value as u64),
                format_size(budget as u64)
            ));
        }
        if !self.uses_redis() {
            for (option, size) in [
                ("--max-key-size", self.max_key_size),
                ("--max-value-size", self.max_value_size),
            ] {
                if size as u64 > self.capacity {
                    return Err(format!(
                        "{option} ({}) is above --capacity ({}): an entry that large could \
                         never be cached; lower {option} or raise --capacity",
                        format_size(size as u64),
                        format_size(self.capacity)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `value`, unless it is zero.
fn positive<T: PartialEq + Default>(value: T) -> Result<T, String> {
    if value == T::default() {
        Err("must be above zero".to_owned())
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use wasi_cache_engine::{Config, Limits};

    use crate::commands::{Cli, Command, one_line, run_args};
    use clap::Parser;

    #[test]
    fn defaults_match_the_engine() {
        let cli = Cli::try_parse_from(["wasi-cache", "run", "x.wasm"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.common.capacity, Config::DEFAULT_CAPACITY);
        assert_eq!(args.common.vacancy_timeout, Config::DEFAULT_VACANCY_TIMEOUT);
        assert_eq!(args.common.max_key_size, Limits::DEFAULT_MAX_KEY_SIZE);
        assert_eq!(args.common.max_value_size, Limits::DEFAULT_MAX_VALUE_SIZE);
        assert_eq!(args.common.namespace.as_str(), "default");
        assert_eq!(args.common.redis, None);
        assert_eq!(
            args.common.redis_timeout,
            wasi_cache_redis::RedisConfig::DEFAULT_OP_TIMEOUT
        );
        assert_eq!(
            args.common.memory_budget,
            wasi_cache_host::WasiCacheCtx::DEFAULT_MEMORY_BUDGET
        );
        assert_eq!(
            args.common.max_live_futures,
            wasi_cache_host::WasiCacheCtx::DEFAULT_MAX_LIVE_FUTURES
        );
        assert_eq!(args.common.max_memory, 1 << 30);
        assert_eq!(args.common.max_resources, 100_000);
        assert_eq!(args.timeout, None);
        assert_eq!(args.time_limit(), None);
        assert_eq!(args.common.validate(), Ok(()));
    }

    #[test]
    fn options_are_checked_against_each_other() {
        let err = run_args(&["--max-value-size", "100MiB"])
            .common
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("--max-value-size (100MiB) is above 1/2 of --memory-budget (64MiB)"),
            "{err}"
        );
        // On Redis a set holds its value three times: 16 MiB fits the default 64 MiB budget,
        // 32 MiB (half of it) does not.
        let redis = ["--redis", "redis://127.0.0.1:1/0"];
        let fits = run_args(&[&redis[..], &["--max-value-size", "16MiB"]].concat());
        assert_eq!(fits.common.validate(), Ok(()));
        let err = run_args(&[&redis[..], &["--max-value-size", "32MiB"]].concat())
            .common
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("--max-value-size (32MiB) is above 1/3 of --memory-budget (64MiB)"),
            "{err}"
        );
        let err = run_args(&["--capacity", "1MiB"])
            .common
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("--max-value-size (16MiB) is above --capacity (1MiB)"),
            "{err}"
        );
        let err = run_args(&["--capacity", "1000", "--max-value-size", "1000"])
            .common
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("--max-key-size (64KiB) is above --capacity (1000 bytes)"),
            "{err}"
        );
        // Equal is fine; --capacity does not apply to Redis.
        let fits = ["--capacity", "16MiB", "--memory-budget", "32MiB"];
        assert_eq!(run_args(&fits).common.validate(), Ok(()));
        let redis = [
            "--redis",
            "redis://h",
            "--max-value-size",
            "32MiB",
            "--memory-budget",
            "96MiB",
        ];
        assert_eq!(run_args(&redis).common.validate(), Ok(()));
    }

    #[test]
    fn redis_options() {
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "run",
            "--redis",
            "redis://127.0.0.1:7000/2",
            "--redis-timeout",
            "500ms",
            "x.wasm",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(
            args.common.redis.as_deref(),
            Some("redis://127.0.0.1:7000/2")
        );
        assert_eq!(args.common.redis_timeout, Duration::from_millis(500));
        // --capacity belongs to the embedded cache; --redis-timeout needs --redis.
        let both = [
            "wasi-cache",
            "run",
            "--redis",
            "redis://h",
            "--capacity",
            "1MiB",
            "x.wasm",
        ];
        let line = one_line(&Cli::try_parse_from(both).unwrap_err().render().to_string());
        assert!(line.contains("cannot be used with"), "{line}");
        assert!(
            line.contains("--capacity") && line.contains("--redis"),
            "{line}"
        );
        let alone = ["wasi-cache", "run", "--redis-timeout", "1s", "x.wasm"];
        let line = one_line(&Cli::try_parse_from(alone).unwrap_err().render().to_string());
        assert!(line.contains("--redis <URL>"), "{line}");
    }

    #[test]
    fn redis_cluster_options() {
        let args = run_args(&[
            "--redis-cluster",
            "redis://a:7000,redis://b:7001",
            "--redis-cluster",
            "redis://c:7002",
            "--redis-ca-cert",
            "ca.pem",
        ]);
        assert_eq!(
            args.common.redis_cluster,
            ["redis://a:7000", "redis://b:7001", "redis://c:7002"]
        );
        assert!(args.common.uses_redis());
        assert_eq!(args.common.validate(), Ok(()));
        for clash in [
            ["--redis", "redis://h", "--redis-cluster", "redis://a:7000"],
            ["--redis-cluster", "redis://a:7000", "--capacity", "1MiB"],
        ] {
            let argv = [&["wasi-cache", "run"][..], &clash, &["x.wasm"]].concat();
            let line = one_line(&Cli::try_parse_from(argv).unwrap_err().render().to_string());
            assert!(line.contains("cannot be used with"), "{line}");
        }
    }

    #[test]
    fn redis_tls_options() {
        let args = run_args(&[
            "--redis",
            "rediss://h:6380/0",
            "--redis-ca-cert",
            "ca.pem",
            "--redis-client-cert",
            "c.pem",
            "--redis-client-key",
            "k.pem",
        ]);
        assert_eq!(
            args.common.redis_ca_cert.as_deref(),
            Some(Path::new("ca.pem"))
        );
        assert_eq!(
            args.common.redis_client_cert.as_deref(),
            Some(Path::new("c.pem"))
        );
        assert_eq!(
            args.common.redis_client_key.as_deref(),
            Some(Path::new("k.pem"))
        );
        // Each needs --redis; the client certificate and key need each other.
        for (options, missing) in [
            (&["--redis-ca-cert", "ca.pem"][..], "--redis <URL>"),
            (
                &["--redis", "rediss://h", "--redis-client-cert", "c.pem"],
                "--redis-client-key <FILE>",
            ),
            (
                &["--redis", "rediss://h", "--redis-client-key", "k.pem"],
                "--redis-client-cert <FILE>",
            ),
        ] {
            let argv = ["wasi-cache", "run"]
                .iter()
                .chain(options)
                .chain(&["x.wasm"]);
            let line = one_line(&Cli::try_parse_from(argv).unwrap_err().render().to_string());
            assert!(line.contains(missing), "{missing}: {line}");
        }
    }
}
