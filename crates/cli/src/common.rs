//! What `run` and `serve` share: the store data of an instance ([`InstanceState`]: WASI,
//! wasi:http and the cache over one resource table), the backend built from the options, the
//! one builder of per-instance stores ([`new_store`]), the loading and linking of a component,
//! the component's WASI context, the `--stats` report and the reporting of start-up errors.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use wasi_cache_engine::{Backend, Config as CacheConfig, Limits, MemoryCache};
use wasi_cache_host::{WasiCacheCtx, WasiCacheCtxView, WasiCacheState, WasiCacheView};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTarget, RedisTls};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::error::Context;
use wasmtime::{Engine, Error, Result, Store, bail};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::args::CommonArgs;
use crate::flavour::Flavour;
use crate::outgoing::Hooks;
use crate::{compiled, limits, stats};

/// Exit code of errors before the component runs (bad options, bad file, missing imports,
/// Redis unreachable, an address in use).
pub const EXIT_USAGE: u8 = 2;

/// Store data of one instance: WASI and the cache ([`WasiCacheState`], also the store's
/// resource limiter) and wasi:http, all over the resource table of `cache`.
pub struct InstanceState {
    /// WASI, the cache, the resource table and the limits on memories and tables.
    pub cache: WasiCacheState,
    /// The wasi:http context (used only by components linked with wasi:http: `serve`).
    pub http: WasiHttpCtx,
    /// How its outgoing requests are sent.
    pub hooks: Hooks,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.cache.ctx()
    }
}

impl WasiCacheView for InstanceState {
    fn cache(&mut self) -> WasiCacheCtxView<'_> {
        self.cache.cache()
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.cache.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What both commands do first: checks the options against each other and starts a
/// multi-threaded tokio runtime with every driver (the backend's tasks, timers, sockets); on
/// failure, the exit code after the one `error:` line is printed.
pub fn start(args: &CommonArgs) -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(message) = args.validate() {
        eprintln!("error: {message}");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
        .map_err(|err| setup_error(&err))
}

/// Prints `err` as one `error: …` line and returns [`EXIT_USAGE`].
pub fn setup_error(err: &Error) -> ExitCode {
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

/// Prints the backend's counters, and what the compilation cache did, to stderr when `--stats`
/// was given.
pub fn report_stats(args: &CommonArgs, backend: &dyn Backend) {
    if args.stats {
        let line = stats::render(&backend.stats(), args.uses_redis());
        match compiled::report() {
            Some(compile) => eprintln!("{line} {compile}"),
            None => eprintln!("{line}"),
        }
    }
}

/// The cache every instance's keys live in, configured from the options: Redis with `--redis`
/// or `--redis-cluster` (connected and answering within `--redis-timeout`), else the embedded
/// engine.
pub fn backend(args: &CommonArgs, runtime: &tokio::runtime::Runtime) -> Result<Arc<dyn Backend>> {
    let target = match &args.redis {
        Some(url) => Some((RedisTarget::Server(url.clone()), vec![url.as_str()])),
        None if !args.redis_cluster.is_empty() => Some((
            RedisTarget::Cluster(args.redis_cluster.clone()),
            args.redis_cluster.iter().map(String::as_str).collect(),
        )),
        None => None,
    };
    if let Some((target, urls)) = target {
        let what = match target {
            RedisTarget::Cluster(_) => "the Redis Cluster",
            RedisTarget::Server(_) => "Redis",
        };
        let config = RedisConfig {
            target,
            tls: redis_tls(args)?,
            op_timeout: args.redis_timeout,
            vacancy_timeout: args.vacancy_timeout,
            limits: cache_limits(args),
            near_cache: args.near_cache,
        };
        // The backend's connections and pub/sub task live on the runtime that runs the component.
        return match runtime.block_on(RedisBackend::connect(config)) {
            Ok(redis) => Ok(Arc::new(redis)),
            // The CLI gives up at startup (so the library's "keeps reconnecting" hint does not
            // apply), and never prints a password.
            Err(err) => {
                let mut message = err
                    .to_string()
                    .replace(" the backend keeps reconnecting", "");
                for url in &urls {
                    message = message.replace(url, &redact(url));
                }
                let shown: Vec<String> = urls.iter().map(|url| redact(url)).collect();
                bail!("cannot connect to {what} at {}: {message}", shown.join(","))
            }
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

/// The certificates of `--redis-ca-cert`, `--redis-client-cert` and `--redis-client-key`, read
/// and checked (the error names the file and what is wrong with it).
fn redis_tls(args: &CommonArgs) -> Result<RedisTls> {
    let client = args
        .redis_client_cert
        .as_deref()
        .zip(args.redis_client_key.as_deref());
    match RedisTls::from_files(args.redis_ca_cert.as_deref(), client) {
        Ok(tls) => Ok(tls),
        Err(wasi_cache_engine::Error::InvalidConfig(message)) => bail!("{message}"),
        Err(err) => bail!("{err}"),
    }
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
fn cache_limits(args: &CommonArgs) -> Limits {
    Limits {
        max_key_size: args.max_key_size,
        max_value_size: args.max_value_size,
    }
}

/// A store for one instance of a component run with `args`: `wasi`, wasi:http, the cache on
/// `backend` with the options' namespace, size limits, live-future cap and memory budget, and
/// the limits on memory, resources and (up to `deadline`) time of [`limits::apply`]. The one
/// place such a store is made: `run` makes one, `serve` one per request.
pub fn new_store(
    engine: &Engine,
    args: &CommonArgs,
    backend: Arc<dyn Backend>,
    wasi: WasiCtx,
    deadline: Option<Instant>,
) -> Store<InstanceState> {
    let cache = WasiCacheCtx::builder(backend)
        .namespace(args.namespace.clone())
        .limits(cache_limits(args))
        .max_live_futures(args.max_live_futures)
        .memory_budget(args.memory_budget)
        .build();
    let state = InstanceState {
        cache: WasiCacheState::new(wasi, cache),
        http: WasiHttpCtx::new(),
        hooks: Hooks,
    };
    limits::apply(engine, state, args, deadline)
}

/// Reads, checks and compiles the component at `path` (through the compilation cache of
/// `args`; a `.cwasm` of `wasi-cache compile` is loaded as it is) on an engine set up for the
/// limits, and links it with WASI (0.2 and 0.3), the cache in the form it imports and, with
/// `http`, wasi:http (0.2 and 0.3): ready to instantiate once per run or per request.
pub fn instantiate_pre(
    args: &CommonArgs,
    path: &Path,
    http: bool,
) -> Result<InstancePre<InstanceState>> {
    let cache = compiled::cache(args);
    let engine = limits::engine(cache.clone())?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let component = compiled::load(&engine, cache.as_ref(), path, &bytes)?;
    let mut linker = Linker::new(&engine);
    // The cache's two forms share their names: the one the component imports is linked.
    let cache_flavour = Flavour::of_cache_import(&component, &engine);
    wasi_cache_host::add_wasi_and_cache_to_linker(&mut linker, cache_flavour)?;
    if http {
        // Both too: `serve` accepts a WASI 0.2 wasi:http/proxy and a WASI 0.3 wasi:http/service.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    }
    let interfaces = match (http, cache_flavour) {
        (true, Flavour::P2) => "WASI, wasi:http and wasi:keyvalue/cache (WASI 0.2)",
        (true, Flavour::P3) => "WASI, wasi:http and wasi:keyvalue/cache (WASI 0.3)",
        (false, Flavour::P2) => "WASI and wasi:keyvalue/cache (WASI 0.2)",
        (false, Flavour::P3) => "WASI and wasi:keyvalue/cache (WASI 0.3)",
    };
    linker
        .instantiate_pre(&component)
        .with_context(|| format!("cannot link {} with {interfaces}", path.display()))
}

/// WASI for a component: inherited stdio, `argv`, the environment of `--env`, no files.
pub fn wasi_ctx(args: &CommonArgs, argv: &[String]) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().args(argv);
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

/// The name a component sees as its argv[0]: its file's name.
pub fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Tells a component from a core module or a file that is not WebAssembly at all.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
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
