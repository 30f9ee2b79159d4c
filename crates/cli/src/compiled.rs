//! Compiled components: the compilation cache (kept on disk between runs by wasmtime's own
//! cache, keyed by the component's bytes, the wasmtime version and every compiler setting, so a
//! stale artifact is never reused; written through a temporary file and a rename, so processes
//! that start at once on an empty cache do not corrupt it), what it did for this process (for the
//! `--stats` line), and precompiled components (`.cwasm` files of `wasi-cache compile`: wasmtime's
//! serialized component followed by a SHA-256 of it, so a damaged file is refused, never run),
//! and the check that a file is a component at all ([`check_header`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::error::Context;
use wasmtime::{Cache, CacheConfig, Engine, Precompiled, Result, bail};

use crate::options::CommonArgs;

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
                crate::exit::one_line(&format!("{err:#}"))
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

/// The end of a `.cwasm` of `wasi-cache compile`: after the SHA-256 of what precedes it.
const TRAILER_MAGIC: &[u8; 8] = b"wcache\x01\x00";
/// The length of a SHA-256.
const SUM_LEN: usize = 32;

/// The component in the file `path` (`bytes`), ready to instantiate on `engine`: a `.cwasm` of
/// `wasi-cache compile` is checked and loaded, a component is compiled (through `cache`).
pub fn load(
    engine: &Engine,
    cache: Option<&Cache>,
    path: &Path,
    bytes: &[u8],
) -> Result<Component> {
    let shown = path.display();
    if let Some(body) = bytes.strip_suffix(TRAILER_MAGIC.as_slice()) {
        let (body, sum) = body.split_at(body.len().saturating_sub(SUM_LEN));
        if body.is_empty() || Sha256::digest(body).as_slice() != sum {
            bail!(
                "{shown} is a damaged precompiled component (its checksum does not match); run `wasi-cache compile` again"
            );
        }
        // SAFETY: the bytes are what `wasi-cache compile` wrote (the checksum matches), and
        // wasmtime refuses an artifact of another version or of other settings.
        let component = unsafe { Component::deserialize(engine, body) }.with_context(|| {
            format!("{shown} was precompiled by another version of wasi-cache or for another machine; run `wasi-cache compile` again")
        })?;
        let _ = OUTCOME.set("precompiled");
        return Ok(component);
    }
    if Engine::detect_precompiled(bytes).is_some() {
        bail!(
            "{shown} is a precompiled module or component not made by `wasi-cache compile`; give the .wasm file, or precompile it with `wasi-cache compile`"
        );
    }
    check_header(path, bytes)?;
    compile(engine, cache, bytes).with_context(|| format!("{shown} is not a valid component"))
}

/// `bytes`, a component, precompiled on `engine` for `wasi-cache run` and `serve`: wasmtime's
/// serialized component and the trailer [`load`] checks.
pub fn precompile(engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = engine.precompile_component(bytes)?;
    debug_assert_eq!(
        Engine::detect_precompiled(&out),
        Some(Precompiled::Component)
    );
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out.extend_from_slice(TRAILER_MAGIC);
    Ok(out)
}

/// Compiles `bytes` on `engine`, through the engine's cache when it has one, and records
/// whether the cache had it.
fn compile(engine: &Engine, cache: Option<&Cache>, bytes: &[u8]) -> Result<Component> {
    let before = cache.map(|cache| (cache.cache_hits(), cache.cache_misses()));
    let component = Component::new(engine, bytes)?;
    let outcome = match (cache, before) {
        (Some(cache), Some((hits, _))) if cache.cache_hits() > hits => "hit",
        (Some(cache), Some((_, misses))) if cache.cache_misses() > misses => "miss",
        // Compiled, but not stored: another process stored the same artifact first, or the disk
        // refused it (full, read-only).
        (Some(_), _) => "unstored",
        (None, _) => "off",
    };
    let _ = OUTCOME.set(outcome);
    Ok(component)
}

/// `compile_cache=hit|miss|unstored|off|precompiled` for the `--stats` line, once a component
/// was loaded.
pub fn report() -> Option<String> {
    OUTCOME
        .get()
        .map(|outcome| format!("compile_cache={outcome}"))
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
