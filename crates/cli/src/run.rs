//! `wasi-cache run`: builds the cache (the embedded engine, or Redis with `--redis`), the
//! wasmtime engine and linker, instantiates the component as a `wasi:cli/command` and runs it,
//! mapping its outcome to an exit code.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasi_cache_engine::{Backend, Config as CacheConfig, Limits, MemoryCache};
use wasi_cache_host::{WasiCacheCtx, WasiCacheState};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context;
use wasmtime::{Engine, Error, Result, Store, bail};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx};

use crate::args::{RunArgs, format_duration};
use crate::{limits, panic, stats};

/// Exit code of errors before the component runs (bad options, bad file, missing imports), and
/// of a run that exceeded `--timeout`.
const EXIT_USAGE: u8 = 2;
/// Exit code of a component that trapped, or returned an error from `run`.
const EXIT_FAILURE: u8 = 1;

/// How a run ended.
enum Outcome {
    /// The component could not be run; nothing of it executed.
    Setup(Error),
    /// The component ran and ended with this exit code.
    Exited(i32),
    /// The component trapped, for this reason (one line).
    Trapped(String),
    /// The component was still running when its time limit, this long, passed.
    TimedOut(Duration),
}

/// Runs `wasi-cache run` and returns the process's exit code.
pub fn main(args: &RunArgs) -> ExitCode {
    if let Err(message) = args.validate() {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return setup_error(&Error::new(err).context("cannot start tokio")),
    };
    let backend = match backend(args, &runtime) {
        Ok(backend) => backend,
        Err(err) => return setup_error(&err),
    };
    let outcome = runtime.block_on(run(args, backend.clone()));
    // Lets the backend calls the component left behind finish before the runtime stops: the
    // release of a vacancy it held when it exited, trapped or timed out (so a waiter elsewhere
    // need not wait for the vacancy timeout) and writes whose futures it dropped.
    runtime.block_on(backend.settle(args.redis_timeout));
    // Backend calls of futures the component left behind must not outlive the report.
    drop(runtime);
    if args.stats && !matches!(outcome, Outcome::Setup(_)) {
        eprintln!("{}", stats::render(&backend.stats(), args.redis.is_some()));
    }
    let component = args.component().display();
    match outcome {
        Outcome::Setup(err) => setup_error(&err),
        Outcome::Exited(code) => exit_code(code),
        Outcome::Trapped(reason) => {
            eprintln!("error: {component} trapped: {reason}");
            ExitCode::from(EXIT_FAILURE)
        }
        Outcome::TimedOut(limit) => {
            eprintln!(
                "error: {component} exceeded the --timeout of {}",
                format_duration(limit)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The component's exit code as the process's (wasi exit codes are 0..=255).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILURE))
}

fn setup_error(err: &Error) -> ExitCode {
    eprintln!("error: {}", one_line(&format!("{err:#}")));
    ExitCode::from(EXIT_USAGE)
}

/// Joins the lines of an error message so that it prints as one line.
pub fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cache the component's keys live in, configured from the options: Redis with `--redis`
/// (connected and answering within `--redis-timeout`), else the embedded engine.
fn backend(args: &RunArgs, runtime: &tokio::runtime::Runtime) -> Result<Arc<dyn Backend>> {
    if let Some(url) = &args.redis {
        let config = RedisConfig {
            url: url.clone(),
            op_timeout: args.redis_timeout,
            vacancy_timeout: args.vacancy_timeout,
            limits: cache_limits(args),
        };
        // The backend's connections and pub/sub task live on the runtime that runs the component.
        return match runtime.block_on(RedisBackend::connect(config)) {
            Ok(redis) => Ok(Arc::new(redis)),
            // The CLI gives up at startup (so the library's "keeps reconnecting" hint does not
            // apply), and never prints a password.
            Err(err) => bail!(
                "cannot connect to Redis at {}: {}",
                redact(url),
                err.to_string()
                    .replace(" the backend keeps reconnecting", "")
                    .replace(url.as_str(), &redact(url))
            ),
        };
    }
    let config = CacheConfig {
        capacity: args.capacity,
        limits: cache_limits(args),
        vacancy_timeout: args.vacancy_timeout,
        ..CacheConfig::default()
    };
    let cache = MemoryCache::new(config).context("cannot create the cache")?;
    Ok(Arc::new(cache))
}

/// `url` without its password (`redis://user:secret@host` → `redis://user:***@host`), for
/// error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at]
                .split_once(':')
                .map_or(&rest[..at], |(user, _)| user);
            let hidden = if user.len() == at { "" } else { ":***" };
            format!("{scheme}://{user}{hidden}@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// The key and value size limits of the options.
fn cache_limits(args: &RunArgs) -> Limits {
    Limits {
        max_key_size: args.max_key_size,
        max_value_size: args.max_value_size,
    }
}

/// Where a run failed.
enum Failure {
    /// Instantiating the component (its memories, tables, start functions).
    Instantiate(Error),
    /// Its `wasi:cli/run#run`.
    Run(Error),
}

async fn run(args: &RunArgs, backend: Arc<dyn Backend>) -> Outcome {
    let (engine, pre) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(err) => return Outcome::Setup(err),
    };
    // The clock starts once the component is compiled and linked. A limit is at most 365 days,
    // which `Instant` can always add.
    let limit = args.time_limit();
    let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
    let _ticker = deadline.map(|_| limits::EpochTicker::start(&engine));
    let mut store = new_store(&engine, args, backend, wasi_ctx(args), deadline);
    let call = panic::catch(async {
        let command = pre
            .instantiate_async(&mut store)
            .await
            .map_err(Failure::Instantiate)?;
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .map_err(Failure::Run)
    });
    // The epoch callback stops a component that computes; this stops one blocked in a host
    // call (on a pollable, say), which runs no code that could check the epoch.
    let finished = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call).await.ok(),
        None => Some(call.await),
    };
    let limit = limit.unwrap_or_default();
    match finished {
        None => Outcome::TimedOut(limit),
        Some(Err(panic)) => Outcome::Trapped(format!("host panicked: {panic}")),
        Some(Ok(Ok(Ok(())))) => Outcome::Exited(0),
        Some(Ok(Ok(Err(())))) => Outcome::Exited(i32::from(EXIT_FAILURE)),
        Some(Ok(Err(Failure::Run(err) | Failure::Instantiate(err))))
            if limits::is_deadline(&err) =>
        {
            Outcome::TimedOut(limit)
        }
        Some(Ok(Err(Failure::Instantiate(err)))) => Outcome::Setup(Error::msg(format!(
            "cannot instantiate {}: {}",
            args.component().display(),
            limits::explain(&err, store.data(), args)
        ))),
        Some(Ok(Err(Failure::Run(err)))) => match err.downcast_ref::<I32Exit>() {
            Some(exit) => Outcome::Exited(exit.0),
            None => Outcome::Trapped(limits::explain(&err, store.data(), args)),
        },
    }
}

/// A store for one instance of a component run with `args`: `wasi`, the cache on `backend` with
/// the options' namespace, size limits, live-future cap and memory budget, and the limits on
/// memory, resources and (up to `deadline`) time of [`limits::apply`]. The one place such a
/// store is made: a command that runs many instances makes one per instance here.
pub fn new_store(
    engine: &Engine,
    args: &RunArgs,
    backend: Arc<dyn Backend>,
    wasi: WasiCtx,
    deadline: Option<Instant>,
) -> Store<WasiCacheState> {
    let cache = WasiCacheCtx::builder(backend)
        .namespace(args.namespace.clone())
        .limits(cache_limits(args))
        .max_live_futures(args.max_live_futures)
        .memory_budget(args.memory_budget)
        .build();
    limits::apply(engine, WasiCacheState::new(wasi, cache), args, deadline)
}

/// Loads and checks the component, and links WASI and the cache, on an engine set up for the
/// options' limits.
fn prepare(args: &RunArgs) -> Result<(Engine, CommandPre<WasiCacheState>)> {
    let path = args.component();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check_header(path, &bytes)?;
    let engine = limits::engine(args)?;
    let component = Component::new(&engine, &bytes)
        .with_context(|| format!("{} is not a valid component", path.display()))?;

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasi_cache_host::add_to_linker(&mut linker)?;
    let pre = linker.instantiate_pre(&component).with_context(|| {
        format!(
            "cannot link {} with WASI 0.2 and wasi:keyvalue/cache",
            path.display()
        )
    })?;
    let pre = CommandPre::new(pre).with_context(|| {
        format!(
            "{} is not a wasi:cli/command component (it must export wasi:cli/run)",
            path.display()
        )
    })?;
    Ok((engine, pre))
}

/// WASI for the component: inherited stdio, the given arguments and environment, no files.
fn wasi_ctx(args: &RunArgs) -> WasiCtx {
    let argv0 = args
        .component()
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.component().display().to_string());
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().arg(argv0).args(args.args());
    for (name, value) in &args.env {
        match value {
            Some(value) => {
                wasi.env(name, value);
            }
            None => {
                if let Ok(value) = std::env::var(name) {
                    wasi.env(name, value);
                }
            }
        }
    }
    wasi.build()
}

/// Tells a component from a core module or a file that is not WebAssembly at all.
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        bail!(
            "{} is not a WebAssembly component (no `\\0asm` header); build one for wasm32-wasip2",
            path.display()
        );
    }
    if bytes[4..8] == CORE_VERSION {
        bail!(
            "{} is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact("rediss://me:p@w@h/0"), "rediss://me:***@h/0");
        assert_eq!(redact("redis://me@h"), "redis://me@h");
        assert_eq!(redact("redis://h/a@b"), "redis://h/a@b");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
