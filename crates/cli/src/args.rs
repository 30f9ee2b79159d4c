//! The command line of `wasi-cache` (clap derive): the parsers of sizes, durations, counts,
//! namespaces and environment variables it accepts, the checks across options
//! ([`RunArgs::validate`]), and the formatting of sizes and durations in messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use wasi_cache_engine::{Config, Namespace};

const EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm
  wasi-cache serve --addr 127.0.0.1:8080 --env UPSTREAM=http://127.0.0.1:9000 proxy.wasm

Sizes take KiB, MiB, GiB, TiB (powers of 1024), KB, MB, GB, TB (powers of 1000) or plain
bytes; durations take ns, us, ms, s, m or h (e.g. 300ms, 30s, 2m).";

const SERVE_EXAMPLES: &str = "\
Examples:
  wasi-cache serve proxy.wasm
  wasi-cache serve --addr 0.0.0.0:8080 --env UPSTREAM=http://127.0.0.1:9000 proxy.wasm
  wasi-cache serve --redis redis://127.0.0.1:6379/0 --namespace site-a --request-timeout 5s proxy.wasm

Each request runs in a fresh instance of the component, within the per-instance limits
(--max-memory, --max-resources, --memory-budget, ...) and --request-timeout; every instance
shares one cache, so concurrent get-or-set calls from different requests wait for one fill.
Responses the server makes itself: 503 above --max-concurrent-requests, 504 past
--request-timeout, 500 when the component traps. SIGINT or SIGTERM stops accepting, lets
requests in flight finish (up to --shutdown-timeout) and exits 0.

Exit status: 0 after a shutdown; 2 when the server cannot start (bad option, address in use,
unreadable file, not a wasi:http/proxy component, Redis unreachable or its TLS handshake
refused).";

const RUN_EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm
  wasi-cache run --redis rediss://cache.internal:6380/0 --redis-ca-cert ca.pem app.wasm
  wasi-cache run --redis-cluster redis://10.0.0.1:7000,redis://10.0.0.2:7000 app.wasm
  wasi-cache run --max-memory 256MiB --max-resources 10000 --timeout 30s app.wasm

With --redis, the cache lives in Redis (6 or later) and is shared by every process on the
same server: their get-or-set calls on one key (same --namespace) wait for one fill. Redis
does its own eviction (--capacity does not apply); a crashed holder's vacancy passes to a
waiter after --vacancy-timeout. --redis-cluster does the same on a Redis Cluster (7 or later):
each key lives on one shard, and a shard that is down fails only the operations on its keys.

An untrusted component is held within --max-memory (its linear memory), --max-resources
(handles it holds at once), --memory-budget (host memory it makes the cache hold),
--max-live-futures and, when given, --timeout (wall clock from instantiation on). Growing
memory past its cap fails inside the component (a Rust component aborts: a trap); one
resource too many traps the component; the timeout ends the run.

Everything after COMPONENT is passed to the component (its argv[0] is the file's name).
The component inherits stdin, stdout and stderr; it sees no files, and no environment
variables but those given with --env. Sizes take KiB, MiB, GiB, TiB, KB, MB, GB, TB or plain
bytes (at most 256TiB); durations take ns, us, ms, s, m or h (at most 365 days).

Exit status: the component's own exit code (returning normally is 0, returning an error
is 1); 1 when it traps (a limit it ran into included); 2 when it cannot be run (bad option,
unreadable file, not a component, an import this host does not provide, Redis unreachable or
its TLS handshake refused) or when it exceeds --timeout.";

/// `wasi-cache`: WebAssembly components with a cache.
#[derive(Debug, Parser)]
#[command(name = "wasi-cache", version, after_help = EXAMPLES)]
#[command(
    about = "Runs WebAssembly components with wasi:keyvalue/cache served by an embedded cache or Redis"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a wasi:cli/command component with WASI 0.2 and wasi:keyvalue/cache.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Serve a wasi:http/proxy component over HTTP/1.1, one instance per request, all sharing
    /// one cache.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Compile a component ahead of time into a .cwasm file that `run` and `serve` load without
    /// compiling (for this version of wasi-cache on this kind of machine only).
    Compile(CompileArgs),
}

/// Options of `wasi-cache compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Where to write the precompiled component (default: COMPONENT with the extension .cwasm).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// The component to compile (a .wasm file built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,
}

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

    /// Largest value the component may store (at most half of --memory-budget, and --capacity).
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
    /// hold at once; the host call that would create one more traps it. The default leaves
    /// room for every live future (--max-live-futures) with its pollable and value many times
    /// over, at a tenth of wasmtime's own cap (each entry costs host memory).
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

/// Options of `wasi-cache run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cache, the per-instance limits, the environment and `--stats`.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Longest the component may run, wall clock from its instantiation on (compiling does not
    /// count), whether it computes or waits; then the run ends with exit code 2. No limit unless
    /// given (0 means none too).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// The component to run (a .wasm file built for wasm32-wasip2), then its arguments.
    ///
    /// Everything from COMPONENT on belongs to the component, options included.
    #[arg(
        value_name = "COMPONENT",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub component_and_args: Vec<String>,
}

/// Options of `wasi-cache serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The cache, the per-instance limits, the environment and `--stats`.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on (HOST:PORT; port 0 picks a free one, printed at start-up).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Most requests handled at once; a request beyond it is answered 503 at once.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = parse_count)]
    pub max_concurrent_requests: usize,

    /// Longest one request's instance may run, wall clock from its instantiation on, whether
    /// it computes or waits; past it the request is answered 504 (or its body cut short) and the
    /// instance dropped (0 means no limit).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On SIGINT or SIGTERM, how long requests in flight may take to finish before the server
    /// exits anyway.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest a client may take to send a request's headers (an idle keep-alive connection
    /// counts as sending the next request's); past it the connection is closed (0 means no
    /// limit).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Address of the admin endpoint (HOST:PORT): `GET /metrics` (Prometheus) and
    /// `GET /healthz`. Off by default; keep it off the public network.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_addr: Option<SocketAddr>,

    /// The wasi:http/proxy component to serve (a .wasm file built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,
}

impl ServeArgs {
    /// The per-request time limit: `--request-timeout`, unless zero.
    pub fn time_limit(&self) -> Option<Duration> {
        Some(self.request_timeout).filter(|limit| !limit.is_zero())
    }

    /// The limit on reading a request's headers: `--header-read-timeout`, unless zero.
    pub fn header_read_timeout(&self) -> Option<Duration> {
        Some(self.header_read_timeout).filter(|limit| !limit.is_zero())
    }
}

impl RunArgs {
    /// The component's path.
    pub fn component(&self) -> &Path {
        Path::new(&self.component_and_args[0])
    }

    /// The arguments passed to the component after its argv[0].
    pub fn args(&self) -> &[String] {
        &self.component_and_args[1..]
    }

    /// The run's time limit: `--timeout`, unless absent or zero.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout.filter(|limit| !limit.is_zero())
    }
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
        if value.saturating_mul(2) > budget {
            return Err(format!(
                "--max-value-size ({}) is above half of --memory-budget ({}): a set holds its \
                 value twice while it writes it (the outgoing-value's body and the write in \
                 flight), so one that large could never be set; lower --max-value-size or raise \
                 --memory-budget",
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

/// Prints a clap error as one `error: …` line and returns exit code 2; help and version go to
/// stdout with exit code 0.
pub fn report_clap_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!("{}", one_line(&err.render().to_string()));
    ExitCode::from(2)
}

/// Folds clap's multi-line error text into one line, dropping the usage and hint paragraphs.
fn one_line(text: &str) -> String {
    let body = text
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    if body.starts_with("error:") {
        body
    } else {
        format!("error: {body}")
    }
}

/// Largest size any option takes: 256 TiB, the engine's largest capacity (and more than a
/// 64-bit machine can address), so that no byte count can overflow.
pub const MAX_SIZE: u64 = Config::MAX_CAPACITY;

/// Longest duration any option takes: 365 days (a deadline that far off is as good as none,
/// and no clock arithmetic can overflow).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Largest count any option takes: 2^32 - 1 (resource handles are 32-bit).
pub const MAX_COUNT: usize = u32::MAX as usize;

/// Parses a size: `4096`, `64KiB`, `256MiB`, `1GiB`, `1TiB` (powers of 1024), `64KB`, `1MB`,
/// `1GB`, `1TB` (powers of 1000), at most [`MAX_SIZE`]; units are case-insensitive and may follow
/// a space.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size (expected e.g. 4096, 64KiB, 256MiB, 1GB)"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{digits}` is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    let too_large = || format!("`{text}` is too large (at most {})", format_size(MAX_SIZE));
    match number.checked_mul(multiplier) {
        Some(size) if size <= MAX_SIZE => Ok(size),
        _ => Err(too_large()),
    }
}

/// [`parse_size`] for sizes held in a `usize`.
pub fn parse_size_usize(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    usize::try_from(size).map_err(|_| format!("`{text}` is too large for this machine"))
}

/// [`parse_size`] of a size that must not be zero.
pub fn parse_positive_size(text: &str) -> Result<u64, String> {
    positive(parse_size(text)?)
}

/// [`parse_size_usize`] of a size that must not be zero.
pub fn parse_positive_size_usize(text: &str) -> Result<usize, String> {
    positive(parse_size_usize(text)?)
}

/// Parses a count from 1 to [`MAX_COUNT`].
pub fn parse_count(text: &str) -> Result<usize, String> {
    let count: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a count (expected a whole number, e.g. 1000)"))?;
    if count > MAX_COUNT {
        return Err(format!("`{text}` is too large (at most {MAX_COUNT})"));
    }
    positive(count)
}

/// `value`, unless it is zero.
fn positive<T: PartialEq + Default>(value: T) -> Result<T, String> {
    if value == T::default() {
        Err("must be above zero".to_owned())
    } else {
        Ok(value)
    }
}

/// Parses a duration: a whole number followed by `ns`, `us`, `ms`, `s`, `m` or `h` (or a bare
/// `0`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let hint = "expected e.g. 300ms, 30s or 2m";
    if digits.is_empty() {
        return Err(format!("`{text}` is not a duration ({hint})"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{digits}` is too large"))?;
    let too_large = || {
        format!(
            "`{text}` is too large (at most {}, 365 days)",
            format_duration(MAX_DURATION)
        )
    };
    let duration = match unit.trim() {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(too_large)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(too_large)?),
        "" if n == 0 => Duration::ZERO,
        "" => return Err(format!("`{text}` has no unit ({hint})")),
        other => return Err(format!("unknown duration unit `{other}` ({hint})")),
    };
    if duration > MAX_DURATION {
        return Err(too_large());
    }
    Ok(duration)
}

/// [`parse_duration`] of a duration that must not be zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    positive(parse_duration(text)?)
}

/// A size as the options write it: `16MiB`, `1GiB`, `64KiB` when a whole number of such
/// units, else `10000 bytes`.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// A duration as the options write it, in its largest whole unit: `2s`, `500ms`, `3m`, `1h`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    for (unit, size) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos >= size && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

/// Parses a namespace name (at most the engine's namespace length limit).
pub fn parse_namespace(text: &str) -> Result<Namespace, String> {
    Namespace::new(text).map_err(|err| err.to_string())
}

/// Parses `NAME=VALUE` (a value) or `NAME` (the host's value, passed through).
pub fn parse_env(text: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!(
            "`{text}` has no variable name (expected NAME=VALUE or NAME)"
        ));
    }
    Ok((name.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use wasi_cache_engine::{Config, Limits};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("12B"), Ok(12));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5GiB").unwrap_err().contains("unit"));
        assert!(
            parse_size("10PiB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("3TB"), Ok(3_000_000_000_000));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
        // Up to 256 TiB, not a byte more.
        assert_eq!(parse_size("256TiB"), Ok(MAX_SIZE));
        for text in ["257TiB", "281474976710657", "18446744073709551615"] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("too large (at most 256TiB)"), "{err}");
        }
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_positive_size("0"), Err("must be above zero".into()));
        assert_eq!(
            parse_positive_size_usize("0KiB"),
            Err("must be above zero".into())
        );
        assert_eq!(parse_positive_size_usize("1"), Ok(1));
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("4294967295"), Ok(MAX_COUNT));
        assert_eq!(parse_count("0"), Err("must be above zero".into()));
        assert!(parse_count("4294967296").unwrap_err().contains("too large"));
        assert!(
            parse_count("18446744073709551616")
                .unwrap_err()
                .contains("not a count")
        );
        assert!(parse_count("-1").unwrap_err().contains("not a count"));
        assert!(parse_count("1k").unwrap_err().contains("not a count"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(16 << 20), "16MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(MAX_SIZE), "256TiB");
        assert_eq!(format_size((16 << 20) + (64 << 10)), "16448KiB");
        assert_eq!(format_size(10_000), "10000 bytes");
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(MAX_DURATION), "8760h");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_duration(Duration::ZERO), "0ns");
        for text in ["5s", "300ms", "2m", "1h", "7us"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("soon").is_err());
        assert!(
            parse_duration("3d")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_positive_duration("0ms"),
            Err("must be above zero".into())
        );
        // Up to 365 days, not a nanosecond more.
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for text in [
            "8761h",
            "31536001s",
            "18446744073709551615s",
            "18446744073709551615ns",
            "307445734561825861m",
            "18446744073709551615h",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("too large (at most 8760h"), "{text}: {err}");
        }
    }

    #[test]
    fn env_vars() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), Some("b=c".into()))));
        assert_eq!(parse_env("HOME"), Ok(("HOME".into(), None)));
        assert!(parse_env("=x").is_err());
    }

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

    /// The `run` options parsed from `options` (then `x.wasm`).
    fn run_args(options: &[&str]) -> RunArgs {
        let argv = ["wasi-cache", "run"]
            .iter()
            .chain(options)
            .chain(&["x.wasm"]);
        let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run")
        };
        args
    }

    #[test]
    fn timeout_zero_means_none() {
        assert_eq!(run_args(&["--timeout", "0"]).time_limit(), None);
        assert_eq!(run_args(&["--timeout", "0s"]).time_limit(), None);
        assert_eq!(
            run_args(&["--timeout", "5s"]).time_limit(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn options_are_checked_against_each_other() {
        let err = run_args(&["--max-value-size", "100MiB"])
            .common
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("--max-value-size (100MiB) is above half of --memory-budget (64MiB)"),
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
        let redis = ["--redis", "redis://h", "--max-value-size", "32MiB"];
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

    #[test]
    fn serve_options() {
        let cli =
            Cli::try_parse_from(["wasi-cache", "serve", "--capacity", "16MiB", "p.wasm"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.max_concurrent_requests, 1_000);
        assert_eq!(args.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(args.time_limit(), Some(Duration::from_secs(60)));
        assert_eq!(args.common.capacity, 16 << 20);
        assert_eq!(args.component, Path::new("p.wasm"));
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "serve",
            "--request-timeout",
            "0",
            "--addr",
            "0.0.0.0:0",
            "p.wasm",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.time_limit(), None);
        let bad = ["wasi-cache", "serve", "--addr", "localhost", "p.wasm"];
        let line = one_line(&Cli::try_parse_from(bad).unwrap_err().render().to_string());
        assert!(
            line.starts_with("error: invalid value 'localhost'"),
            "{line}"
        );
        let bad = [
            "wasi-cache",
            "serve",
            "--max-concurrent-requests",
            "0",
            "p.wasm",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    #[test]
    fn component_args_are_passed_through() {
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "run",
            "--stats",
            "x.wasm",
            "--stats",
            "-v",
            "a",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.common.stats);
        assert_eq!(args.component(), Path::new("x.wasm"));
        assert_eq!(args.args(), ["--stats", "-v", "a"]);
    }

    #[test]
    fn clap_errors_fold_into_one_line() {
        let err =
            Cli::try_parse_from(["wasi-cache", "run", "--capacity", "lots", "x.wasm"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(line.starts_with("error: invalid value 'lots'"), "{line}");
        assert!(!line.contains('\n'));
        let err = Cli::try_parse_from(["wasi-cache", "run"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            line.starts_with("error: ") && line.contains("<COMPONENT>"),
            "{line}"
        );
        Cli::command().debug_assert();
    }
}
