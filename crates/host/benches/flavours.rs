//! The per-operation cost of a 64-byte get in a WASI 0.3 guest against the same in a WASI 0.2
//! guest, in one run on one engine and one backend: the end-to-end test guests of both flavours
//! (`tests/guest-e2e`, `tests/guest-e2e-p3`) run `get-loop KEY N`, `N` gets of a 64-byte hit,
//! each read whole. A run's wall time (instantiation untimed) for `N` gets, less that for none,
//! divided by `N`, best of [`RUNS`], on a 2-worker multi-thread tokio runtime.
//!
//! Run: `cargo bench -p wasi-cache-host --bench flavours`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Config as CacheConfig, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{Flavour, WasiCacheCtx, WasiCacheState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Measured runs per case; the best one is reported.
const RUNS: usize = 7;
/// Gets per measured run.
const GETS: usize = 20_000;
const KEY: &str = "bench-64B";

/// One flavour's compiled guest and its linker.
struct Guest {
    name: &'static str,
    component: Component,
    linker: Linker<WasiCacheState>,
    p3: bool,
}

/// The wall time of one `get-loop KEY n` run of `guest`, its instantiation not counted.
async fn time_run(
    engine: &Engine,
    guest: &Guest,
    backend: &Arc<MemoryCache>,
    n: usize,
) -> Duration {
    let stdout = MemoryOutputPipe::new(1 << 10);
    let n = n.to_string();
    let wasi = WasiCtx::builder()
        .args(&["guest", "get-loop", KEY, &n])
        .stdout(stdout.clone())
        .build();
    let cache = WasiCacheCtx::builder(backend.clone())
        .namespace(Namespace::new("bench").unwrap())
        .build();
    let mut store = Store::new(engine, WasiCacheState::new(wasi, cache));
    let elapsed = if guest.p3 {
        let command = wasmtime_wasi::p3::bindings::Command::instantiate_async(
            &mut store,
            &guest.component,
            &guest.linker,
        )
        .await
        .unwrap();
        let start = Instant::now();
        store
            .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        start.elapsed()
    } else {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
            &mut store,
            &guest.component,
            &guest.linker,
        )
        .await
        .unwrap();
        let start = Instant::now();
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .unwrap()
            .unwrap();
        start.elapsed()
    };
    let printed = String::from_utf8_lossy(&stdout.contents()).into_owned();
    assert!(printed.ends_with("done\n"), "{}: {printed}", guest.name);
    elapsed
}

/// Nanoseconds per get of `guest`: the best run of [`GETS`] less the best empty run.
async fn per_get(engine: &Engine, guest: &Guest, backend: &Arc<MemoryCache>) -> f64 {
    time_run(engine, guest, backend, GETS).await; // warm-up
    let best = |n| async move {
        let mut best = Duration::MAX;
        for _ in 0..RUNS {
            best = best.min(time_run(engine, guest, backend, n).await);
        }
        best
    };
    let full = best(GETS).await;
    let empty = best(0).await;
    full.saturating_sub(empty).as_nanos() as f64 / GETS as f64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let compile = |guest| Component::from_file(&engine, guest_build::build(guest, dir)).unwrap();
    let linker = |flavour| {
        let mut linker = Linker::new(&engine);
        wasi_cache_host::add_wasi_and_cache_to_linker(&mut linker, flavour).unwrap();
        linker
    };
    let (p2, p3) = (linker(Flavour::P2), linker(Flavour::P3));
    let guests = [
        Guest {
            name: "wasi-0.2",
            component: compile(guest_build::GUEST_E2E),
            linker: p2,
            p3: false,
        },
        Guest {
            name: "wasi-0.3",
            component: compile(guest_build::GUEST_E2E_P3),
            linker: p3,
            p3: true,
        },
    ];
    let backend = Arc::new(MemoryCache::new(CacheConfig::with_capacity(64 << 20)).unwrap());
    let ns = Namespace::new("bench").unwrap();
    backend
        .set(&ns, KEY.as_bytes(), Bytes::from(vec![7u8; 64]), None)
        .unwrap();
    let costs: Vec<f64> = guests
        .iter()
        .map(|guest| {
            let cost = runtime.block_on(per_get(&engine, guest, &backend));
            println!("{:<9} get_64B {cost:>8.0} ns/op", guest.name);
            cost
        })
        .collect();
    println!("RATIO case=get_64B p3/p2={:.2}", costs[1] / costs[0]);
}
