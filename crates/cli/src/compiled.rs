//! The compilation cache: compiled components kept on disk between runs by wasmtime's own cache
//! (keyed by the component's bytes, the wasmtime version and every compiler setting, so a stale
//! artifact is never reused; written through a temporary file and a rename, so processes that
//! start at once on an empty cache do not corrupt it), and what it did for this process, for the
//! `--stats` line.

use std::path::PathBuf;
use std::sync::OnceLock;

use wasmtime::component::Component;
use wasmtime::{Cache, CacheConfig, Engine, Result};

use crate::args::CommonArgs;

/// What the cache did for the component this process compiled (one per process).
static OUTCOME: OnceLock<&'static str> = OnceLock::new();

/// The cache of `--cache-dir` (or of the default directory), or none with `--no-cache` or when
/// the directory cannot be used (a warning says why; the component is then compiled anyway).
pub fn cache(args: &CommonArgs) -> Option<Cache> {
    if args.no_cache {
        return None;
    }
    let mut config = CacheConfig::new();
    if let Some(dir) = args.cache_dir.clone().or_else(default_dir) {
        // wasmtime wants an absolute directory.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        config.with_directory(dir);
    }
    match Cache::new(config) {
        Ok(cache) => Some(cache),
        Err(err) => {
            eprintln!(
                "warning: compiling without the compilation cache: {}",
                crate::common::one_line(&format!("{err:#}"))
            );
            None
        }
    }
}

/// `$XDG_CACHE_HOME/wasi-cache/compiled`, else `$HOME/.cache/wasi-cache/compiled`.
fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("wasi-cache").join("compiled"))
}

/// Compiles `bytes` on `engine`, through the engine's cache when it has one, and records
/// whether the cache had it.
pub fn compile(engine: &Engine, cache: Option<&Cache>, bytes: &[u8]) -> Result<Component> {
    let before = cache.map(|cache| (cache.cache_hits(), cache.cache_misses()));
    let component = Component::new(engine, bytes)?;
    let outcome = match (cache, before) {
        (Some(cache), Some((hits, _))) if cache.cache_hits() > hits => "hit",
        (Some(cache), Some((_, misses))) if cache.cache_misses() > misses => "miss",
        // Compiled, but the artifact could not be written (a full or read-only disk).
        (Some(_), _) => "unstored",
        (None, _) => "off",
    };
    let _ = OUTCOME.set(outcome);
    Ok(component)
}

/// `compile_cache=hit|miss|unstored|off` for the `--stats` line, once a component was compiled.
pub fn report() -> Option<String> {
    OUTCOME
        .get()
        .map(|outcome| format!("compile_cache={outcome}"))
}
