//! The linked component ([`instantiate_pre`]): the component read and compiled (or loaded
//! precompiled) on the engine, and linked with WASI, the cache and, for `serve`, wasi:http.

use std::path::Path;

use wasmtime::Result;
use wasmtime::component::{InstancePre, Linker};
use wasmtime::error::Context;

use crate::flavour::Flavour;
use crate::options::CommonArgs;
use crate::pooling::Pool;
use crate::store::InstanceState;
use crate::{compiled, engine};

/// Reads, checks and compiles the component at `path` (through the compilation cache of
/// `args`; a `.cwasm` of `wasi-cache compile` is loaded as it is) on an engine set up for the
/// limits, and links it with WASI (0.2 and 0.3), the cache in the form it imports and, with
/// `http`, wasi:http (0.2 and 0.3): ready to instantiate once per run or per request, on
/// demand or from `pool`.
pub fn instantiate_pre(
    args: &CommonArgs,
    path: &Path,
    http: bool,
    pool: Option<&Pool>,
) -> Result<InstancePre<InstanceState>> {
    let cache = compiled::cache(args);
    let engine = engine::engine(cache.clone(), pool)?;
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
