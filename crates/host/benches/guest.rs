//! The per-operation cost a guest sees through the host, side by side with the same operation
//! on the engine called natively (`MemoryCache`'s inherent methods) and with the same get through
//! wasmtime-wasi-keyvalue's in-memory `wasi:keyvalue/store`.
//!
//! The guest (`benches/guest-bench`, built for `wasm32-wasip2` by the shared guest builder) is a
//! command: `main CASE N` runs `N` iterations of one operation in a loop and prints one line. For
//! each measured run the bench instantiates a fresh instance (untimed), then times the
//! `wasi:cli/run` call as a whole and divides by `N`. Every case gets a calibration/warm-up run,
//! then the best of [`RUNS`] runs is reported. All of it runs twice: on a 2-worker multi-thread
//! tokio runtime (how the host is usually embedded, the headline numbers and `RATIO` lines) and
//! on a current-thread runtime.
//!
//! Run: `cargo bench -p wasi-cache-host --bench guest`. Prints `RATIO case=… peer=… value=…`
//! lines: `peer_cost / our_cost`, higher means the wasi-cache guest path is cheaper.

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::{Config as CacheConfig, GetOrSet, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{WasiCacheCtx, WasiCacheCtxView, WasiCacheView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_keyvalue::{WasiKeyValue, WasiKeyValueCtx, WasiKeyValueCtxBuilder};

/// Measured runs per case; the best one is reported.
const RUNS: usize = 5;
/// Wall time one measured run aims at (the calibration run picks `N` from it).
const TARGET: Duration = Duration::from_millis(80);

const KEY_64B: &str = "bench-64B";
const KEY_1MIB: &str = "bench-1MiB";
const KEY_SET: &str = "bench-set-64B";
const MIB: usize = 1 << 20;

/// The store data of one guest instance: WASI, the wasi-cache host, wasi-keyvalue.
struct State {
    table: ResourceTable,
    wasi: WasiCtx,
    cache: WasiCacheCtx,
    kv: WasiKeyValueCtx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiCacheView for State {
    fn cache(&mut self) -> WasiCacheCtxView<'_> {
        WasiCacheCtxView {
            ctx: &self.cache,
            table: &mut self.table,
        }
    }
}

struct Host {
    engine: Engine,
    component: Component,
    linker: Linker<State>,
    backend: Arc<MemoryCache>,
    ns: Namespace,
    v64: Vec<u8>,
    v1m: Vec<u8>,
}

impl Host {
    fn new() -> Host {
        let wasm = guest_build::build(
            guest_build::GUEST_BENCH,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        );
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasi_cache_host::add_to_linker(&mut linker).unwrap();
        wasmtime_wasi_keyvalue::add_to_linker(&mut linker, |s: &mut State| {
            WasiKeyValue::new(&s.kv, &mut s.table)
        })
        .unwrap();
        let backend = Arc::new(MemoryCache::new(CacheConfig::with_capacity(64 << 20)).unwrap());
        let ns = Namespace::new("bench").unwrap();
        let v64: Vec<u8> = (0..64u8).collect();
        let v1m: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
        backend
            .set(&ns, KEY_64B.as_bytes(), Bytes::from(v64.clone()), None)
            .unwrap();
        backend
            .set(&ns, KEY_1MIB.as_bytes(), Bytes::from(v1m.clone()), None)
            .unwrap();
        Host {
            engine,
            component,
            linker,
            backend,
            ns,
            v64,
            v1m,
        }
    }

    /// One guest run of `case` with `n` iterations: instantiates (untimed), times the run.
    async fn guest_run(&self, case: &str, n: u64) -> Duration {
        let stdout = MemoryOutputPipe::new(4096);
        let n_arg = n.to_string();
        let wasi = WasiCtx::builder()
            .args(&["guest", case, &n_arg])
            .stdout(stdout.clone())
            .inherit_stderr()
            .build();
        let state = State {
            table: ResourceTable::new(),
            wasi,
            cache: WasiCacheCtx::builder(self.backend.clone())
                .namespace(self.ns.clone())
                .build(),
            kv: WasiKeyValueCtxBuilder::new()
                .in_memory_data([
                    (KEY_64B.to_owned(), self.v64.clone()),
                    (KEY_1MIB.to_owned(), self.v1m.clone()),
                ])
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        let command = WasiCommand::instantiate_async(&mut store, &self.component, &self.linker)
            .await
            .unwrap();
        let start = Instant::now();
        let result = command.wasi_cli_run().call_run(&mut store).await;
        let elapsed = start.elapsed();
        result
            .unwrap()
            .unwrap_or_else(|()| panic!("guest {case} returned an error"));
        let out = String::from_utf8_lossy(&stdout.contents()).into_owned();
        assert!(
            out.starts_with(&format!("ok {case} ")),
            "guest {case} printed {out:?}"
        );
        elapsed
    }

    /// Per-operation cost of `case` through a guest: calibration/warm-up, then best of `RUNS`.
    async fn guest(&self, case: &str) -> f64 {
        best_per_op(1 << 24, |n| self.guest_run(case, n)).await
    }

    /// Per-operation cost of one native engine call: calibration/warm-up, then best of `RUNS`.
    async fn native(&self, case: &str) -> f64 {
        let run = |n: u64| -> Duration {
            let (cache, ns) = (&*self.backend, &self.ns);
            let start = Instant::now();
            match case {
                "get_hit_64B" | "get_1MiB" => {
                    let key = if case == "get_hit_64B" {
                        KEY_64B
                    } else {
                        KEY_1MIB
                    };
                    for _ in 0..n {
                        let v = cache.get(ns, black_box(key).as_bytes()).unwrap().unwrap();
                        black_box(v.len());
                    }
                }
                "set_64B" => {
                    let body = [7u8; 64];
                    for _ in 0..n {
                        let v = Bytes::copy_from_slice(black_box(&body));
                        cache.set(ns, KEY_SET.as_bytes(), v, None).unwrap();
                    }
                }
                "get_or_set_occupied" => {
                    for _ in 0..n {
                        let fut = pin!(cache.get_or_set(ns, black_box(KEY_64B).as_bytes()));
                        let Poll::Ready(Ok(GetOrSet::Occupied(v))) =
                            fut.poll(&mut Context::from_waker(Waker::noop()))
                        else {
                            panic!("expected an occupied entry at once");
                        };
                        black_box(v.len());
                    }
                }
                other => panic!("no native case {other}"),
            }
            start.elapsed()
        };
        best_per_op(1 << 28, |n| std::future::ready(run(n))).await
    }
}

/// Per-operation cost of the native get run the way the host runs every operation: on a task
/// of its own (`tokio::spawn`), awaited through its `JoinHandle`. Calibration, then best of `RUNS`.
async fn spawned_get(host: &Host) -> f64 {
    let run = |n: u64| async move {
        let start = Instant::now();
        for _ in 0..n {
            let (cache, ns) = (host.backend.clone(), host.ns.clone());
            let v = tokio::spawn(async move { cache.get(&ns, KEY_64B.as_bytes()) })
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            black_box(v.len());
        }
        start.elapsed()
    };
    best_per_op(1 << 24, run).await
}

/// Per-operation cost measured by `run(n)` (the time of `n` iterations): grows `n` (up to
/// `max_n`) until a run lasts an eighth of `TARGET`, which doubles as warm-up, scales it to
/// about `TARGET`, then keeps the best of `RUNS` runs.
async fn best_per_op<F, Fut>(max_n: u64, mut run: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut n = 64;
    loop {
        let t = run(n).await;
        if t >= TARGET / 8 || n >= max_n {
            n = scale(n, t);
            break;
        }
        n *= 8;
    }
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        best = best.min(per_op(run(n).await, n));
    }
    best
}

/// The `n` that makes a run last about `TARGET`, given that `n0` iterations took `t`.
fn scale(n0: u64, t: Duration) -> u64 {
    let per = t.as_secs_f64() / n0 as f64;
    ((TARGET.as_secs_f64() / per) as u64).clamp(16, 1 << 28)
}

/// Nanoseconds per operation.
fn per_op(t: Duration, n: u64) -> f64 {
    t.as_secs_f64() * 1e9 / n as f64
}

/// Formats nanoseconds for the table.
fn ns(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} µs", v / 1000.0)
    } else {
        format!("{v:.0} ns")
    }
}

/// The cases: name, the wasi-keyvalue peer's guest case (for gets), whether it has a native twin.
const CASES: [(&str, Option<&str>); 4] = [
    ("get_hit_64B", Some("kv_get_64B")),
    ("set_64B", None),
    ("get_or_set_occupied", Some("kv_get_64B")),
    ("get_1MiB", Some("kv_get_1MiB")),
];

struct Row {
    case: &'static str,
    ours: f64,
    native: f64,
    kv: Option<f64>,
}

async fn suite(host: &Host) -> (Vec<Row>, f64) {
    let mut rows = Vec::new();
    let mut kv_cache: Vec<(&str, f64)> = Vec::new();
    for (case, peer) in CASES {
        let ours = host.guest(case).await;
        let native = host.native(case).await;
        let kv = match peer {
            None => None,
            Some(peer) => match kv_cache.iter().find(|(p, _)| *p == peer) {
                Some(&(_, v)) => Some(v),
                None => {
                    let v = host.guest(peer).await;
                    kv_cache.push((peer, v));
                    Some(v)
                }
            },
        };
        rows.push(Row {
            case,
            ours,
            native,
            kv,
        });
    }
    (rows, spawned_get(host).await)
}

fn print_table(title: &str, (rows, spawned): &(Vec<Row>, f64)) {
    println!("\n{title}");
    println!(
        "{:<22} {:>14} {:>14} {:>20} {:>16}",
        "case", "guest (ours)", "native engine", "guest wasi-keyvalue", "guest/native"
    );
    for r in rows {
        println!(
            "{:<22} {:>14} {:>14} {:>20} {:>15.1}x",
            r.case,
            ns(r.ours),
            ns(r.native),
            r.kv.map(ns).unwrap_or_else(|| "-".into()),
            r.ours / r.native,
        );
    }
    println!(
        "native get_hit_64B on a spawned task, awaited (the host's per-operation task): {}",
        ns(*spawned)
    );
}

fn print_ratios(rows: &[Row], suffix: &str) {
    for r in rows {
        if let Some(kv) = r.kv {
            println!(
                "RATIO case={}{suffix} peer=wasi-keyvalue value={:.3}",
                r.case,
                kv / r.ours
            );
        }
        println!(
            "RATIO case={}{suffix} peer=native value={:.4}",
            r.case,
            r.native / r.ours
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let started = Instant::now();
    let host = Host::new();
    println!(
        "guest-visible cost per operation (best of {RUNS} runs of ~{} ms each, after a warm-up)",
        TARGET.as_millis()
    );

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows = multi.block_on(suite(&host));
    drop(multi);
    print_table("tokio multi-thread runtime, 2 workers (headline)", &rows);

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows_ct = current.block_on(suite(&host));
    drop(current);
    print_table("tokio current-thread runtime", &rows_ct);

    println!();
    print_ratios(&rows.0, "");
    print_ratios(&rows_ct.0, "@current_thread");
    println!(
        "\n(peer=wasi-keyvalue: kv_cost/our_cost, >= 1.0 means our get is no dearer; \
         peer=native: native_cost/guest_cost, the share of the guest-visible cost the engine \
         itself accounts for; get_or_set_occupied is compared with wasi-keyvalue's plain get.) \
         total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
