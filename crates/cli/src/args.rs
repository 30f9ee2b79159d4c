//! The command line of `wasi-cache` (clap derive), and the parsers of sizes, durations,
//! namespaces and environment variables it accepts.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use wasi_cache_engine::Namespace;

const EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm

Sizes take KiB, MiB, GiB (powers of 1024), KB, MB, GB (powers of 1000) or plain bytes;
durations take ns, us, ms, s, m or h (e.g. 300ms, 30s, 2m).";

const RUN_EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm

With --redis, the cache lives in Redis (6 or later) and is shared by every process on the
same server: their get-or-set calls on one key (same --namespace) wait for one fill. Redis
does its own eviction (--capacity does not apply); a crashed holder's vacancy passes to a
waiter after --vacancy-timeout.

Everything after COMPONENT is passed to the component (its argv[0] is the file's name).
The component inherits stdin, stdout and stderr; it sees no files, and no environment
variables but those given with --env. Sizes take KiB, MiB, GiB, KB, MB, GB or plain bytes;
durations take ns, us, ms, s, m or h.

Exit status: the component's own exit code (returning normally is 0, returning an error
is 1); 1 when it traps; 2 when it cannot be run (bad option, unreadable file, not a
component, an import this host does not provide, Redis unreachable).";

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
}

/// Options of `wasi-cache run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Most bytes the embedded cache keeps (keys, values and per-entry overhead); not with --redis.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "256MiB",
        value_parser = parse_size,
        conflicts_with = "redis"
    )]
    pub capacity: u64,

    /// Use the Redis server at URL (redis://HOST:PORT/DB) instead of the embedded cache.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// Longest wait for one Redis command (and for connecting) before it fails.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_duration,
        requires = "redis"
    )]
    pub redis_timeout: Duration,

    /// Namespace (tenant) the component's keys live in.
    #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_namespace)]
    pub namespace: Namespace,

    /// How long a get-or-set vacancy may stay unfilled before a waiter is handed it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub vacancy_timeout: Duration,

    /// Largest key the component may use.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_size_usize)]
    pub max_key_size: usize,

    /// Largest value the component may store.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size_usize)]
    pub max_value_size: usize,

    /// Most bytes of outgoing values the component may hold at once (written but not dropped).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size_usize)]
    pub memory_budget: usize,

    /// Most cache operations the component may have in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_live_futures: usize,

    /// Environment variable for the component: NAME=VALUE, or NAME to pass the host's value.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, Option<String>)>,

    /// Print the cache's counters (hits, misses, rendezvous, ...) to stderr at exit; with
    /// --redis, also Redis round trips and reconnects.
    #[arg(long)]
    pub stats: bool,

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

impl RunArgs {
    /// The component's path.
    pub fn component(&self) -> &Path {
        Path::new(&self.component_and_args[0])
    }

    /// The arguments passed to the component after its argv[0].
    pub fn args(&self) -> &[String] {
        &self.component_and_args[1..]
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

/// Parses a size: `4096`, `64KiB`, `256MiB`, `1GiB` (powers of 1024), `64KB`, `1MB`, `1GB`
/// (powers of 1000); units are case-insensitive and may follow a space.
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
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// [`parse_size`] for sizes held in a `usize`.
pub fn parse_size_usize(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    usize::try_from(size).map_err(|_| format!("`{text}` is too large for this machine"))
}

/// Parses a duration: a whole number followed by `ns`, `us`, `ms`, `s`, `m` or `h`.
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
    let too_large = || format!("`{text}` is too large");
    Ok(match unit.trim() {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(too_large)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(too_large)?),
        "" => return Err(format!("`{text}` has no unit ({hint})")),
        other => return Err(format!("unknown duration unit `{other}` ({hint})")),
    })
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
            parse_size("10TiB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("99999999999999999999").is_err());
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
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
        let Command::Run(args) = cli.command;
        assert_eq!(args.capacity, Config::DEFAULT_CAPACITY);
        assert_eq!(args.vacancy_timeout, Config::DEFAULT_VACANCY_TIMEOUT);
        assert_eq!(args.max_key_size, Limits::DEFAULT_MAX_KEY_SIZE);
        assert_eq!(args.max_value_size, Limits::DEFAULT_MAX_VALUE_SIZE);
        assert_eq!(args.namespace.as_str(), "default");
        assert_eq!(args.redis, None);
        assert_eq!(
            args.redis_timeout,
            wasi_cache_redis::RedisConfig::DEFAULT_OP_TIMEOUT
        );
        assert_eq!(
            args.memory_budget,
            wasi_cache_host::WasiCacheCtx::DEFAULT_MEMORY_BUDGET
        );
        assert_eq!(
            args.max_live_futures,
            wasi_cache_host::WasiCacheCtx::DEFAULT_MAX_LIVE_FUTURES
        );
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
        let Command::Run(args) = cli.command;
        assert_eq!(args.redis.as_deref(), Some("redis://127.0.0.1:7000/2"));
        assert_eq!(args.redis_timeout, Duration::from_millis(500));
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
        let Command::Run(args) = cli.command;
        assert!(args.stats);
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
