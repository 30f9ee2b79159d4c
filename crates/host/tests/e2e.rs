//! End-to-end tests: the guest component of `tests/guest-e2e` (built from source for
//! `wasm32-wasip2`) run against the host over the embedded memory engine.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{Outcome, Running};
use wasi_cache_engine::{Config as CacheConfig, Limits, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{WasiCacheCtx, WasiCacheState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Which WIT the guest's bindings were generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wit {
    /// The project's own `wit/`.
    Ours,
    /// golem-rust 2.0.0-dev.8's WIT files (`tests/guest-e2e/golem-wit`).
    Golem,
}

impl Wit {
    fn index(self) -> usize {
        self as usize
    }
}

/// Builds the guest component (once per test binary and flavour) and returns its path.
fn guest_wasm(wit: Wit) -> PathBuf {
    let guest = match wit {
        Wit::Ours => guest_build::GUEST_E2E,
        Wit::Golem => guest_build::GUEST_E2E_GOLEM,
    };
    guest_build::build(guest, Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// The engine, the compiled guest and the linker, shared by every test.
struct Host {
    engine: Engine,
    component: Component,
    linker: Linker<WasiCacheState>,
}

fn host(wit: Wit) -> &'static Host {
    static HOSTS: [OnceLock<Host>; 2] = [OnceLock::new(), OnceLock::new()];
    HOSTS[wit.index()].get_or_init(|| {
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, guest_wasm(wit)).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasi_cache_host::add_to_linker(&mut linker).unwrap();
        Host {
            engine,
            component,
            linker,
        }
    })
}

/// Limits small enough to exceed cheaply: 1 KiB keys, 4 KiB values.
const TEST_LIMITS: Limits = Limits {
    max_key_size: 1024,
    max_value_size: 4096,
};

fn backend() -> Arc<MemoryCache> {
    Arc::new(MemoryCache::new(CacheConfig::with_capacity(64 << 20)).unwrap())
}

fn ctx(backend: &Arc<MemoryCache>) -> WasiCacheCtx {
    WasiCacheCtx::builder(backend.clone())
        .namespace(Namespace::new("e2e").unwrap())
        .limits(TEST_LIMITS)
        .build()
}

fn start(cache: WasiCacheCtx, args: &[&str]) -> Running {
    start_with(Wit::Ours, cache, args)
}

fn start_with(wit: Wit, cache: WasiCacheCtx, args: &[&str]) -> Running {
    start_on(move || host(wit), cache, args)
}

/// The SDK example `examples/fanout` (a guest on wasi-cache-guest), compiled once.
fn fanout_host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let wasm = guest_build::build(guest_build::FANOUT, Path::new(env!("CARGO_TARGET_TMPDIR")));
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasi_cache_host::add_to_linker(&mut linker).unwrap();
        Host {
            engine,
            component,
            linker,
        }
    })
}

/// Starts an instance of the component of `host()` (compiled on first use, on the task).
fn start_on(
    host: impl FnOnce() -> &'static Host + Send + 'static,
    cache: WasiCacheCtx,
    args: &[&str],
) -> Running {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let state = WasiCacheState::new(common::wasi(args, &stdout), cache);
    let pipe = stdout.clone();
    let task = tokio::spawn(async move {
        let host = host();
        let mut store = Store::new(&host.engine, state);
        let result = async {
            let command =
                WasiCommand::instantiate_async(&mut store, &host.component, &host.linker).await?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        .await;
        drop(store);
        common::outcome(result, &pipe)
    });
    Running { task, stdout }
}

async fn run(cache: WasiCacheCtx, args: &[&str]) -> Outcome {
    start(cache, args).finish().await
}

/// Runs a self-checking scenario and asserts that it passed.
async fn scenario(name: &str, cache: WasiCacheCtx, extra: &[&str]) {
    scenario_with(Wit::Ours, name, cache, extra).await
}

async fn scenario_with(wit: Wit, name: &str, cache: WasiCacheCtx, extra: &[&str]) {
    let mut args = vec![name];
    args.extend_from_slice(extra);
    let outcome = start_with(wit, cache, &args).finish().await;
    assert_eq!(outcome.exit, Ok(0), "scenario {name} failed: {outcome:#?}");
    assert!(
        outcome.stdout.contains(&format!("ok {name}\n")) && outcome.stdout.ends_with("done\n"),
        "scenario {name} did not complete: {outcome:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_operations() {
    scenario("basic", ctx(&backend()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_yields_error_resources() {
    scenario("errors", ctx(&backend()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bodies() {
    scenario("streams", ctx(&backend()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_set_fill_abandon_and_hand_off() {
    scenario("get-or-set", ctx(&backend()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_many_futures() {
    scenario("futures", ctx(&backend()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_future_cap() {
    let backend = backend();
    let cache = WasiCacheCtx::builder(backend.clone())
        .limits(TEST_LIMITS)
        .max_live_futures(16)
        .build();
    scenario("live-cap", cache, &["16"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_bounds_outgoing_bodies() {
    let cache = WasiCacheCtx::builder(backend())
        .limits(TEST_LIMITS)
        .memory_budget(16_000)
        .build();
    assert_eq!(cache.memory_budget(), 16_000);
    let meter = cache.memory_meter();
    scenario("budget", cache, &[]).await;
    assert!(meter.peak() <= 16_000, "peak {}", meter.peak());
    assert_eq!(meter.used(), 0);
}

/// The budget is 64 MiB unless set, and nothing is held before a guest writes.
#[test]
fn default_memory_budget() {
    let cache = ctx(&backend());
    assert_eq!(cache.memory_budget(), WasiCacheCtx::DEFAULT_MEMORY_BUDGET);
    assert_eq!(cache.held_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_separate() {
    let backend = backend();
    let ns = |name| {
        WasiCacheCtx::builder(backend.clone())
            .namespace(Namespace::new(name).unwrap())
            .build()
    };
    let filled = run(ns("a"), &["wait-and-fill", "k", "in-a"]).await;
    assert!(filled.stdout.contains("vacant"), "{filled:#?}");
    let read = run(ns("b"), &["read", "k"]).await;
    assert!(read.stdout.contains("absent"), "{read:#?}");
    let read = run(ns("a"), &["read", "k"]).await;
    assert!(read.stdout.contains("value in-a"), "{read:#?}");
    let stored = backend.get(&Namespace::new("a").unwrap(), b"k").unwrap();
    assert_eq!(stored.as_deref(), Some(&b"in-a"[..]));
}

/// A guest that traps while holding a vacancy abandons it: a waiter in another instance gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_holder_hands_vacancy_to_other_instance() {
    let backend = backend();
    let holder = start(ctx(&backend), &["hold-and-trap", "t"]);
    holder.wait_for("holding").await;
    let waiter = start(ctx(&backend), &["wait-and-fill", "t", "from-waiter"]);
    let holder = holder.finish().await;
    assert!(holder.exit.is_err(), "holder should trap: {holder:#?}");
    assert!(holder.stdout.contains("trapping"), "{holder:#?}");
    let waiter = waiter.finish().await;
    assert_eq!(waiter.exit, Ok(0), "{waiter:#?}");
    assert!(waiter.stdout.starts_with("vacant\n"), "{waiter:#?}");
    let stored = backend.get(&Namespace::new("e2e").unwrap(), b"t").unwrap();
    assert_eq!(stored.as_deref(), Some(&b"from-waiter"[..]));
}

/// A guest that traps halfway through a fill's stream body stores nothing; a waiter gets the
/// vacancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_mid_stream_fill_abandons_the_partial_body() {
    let backend = backend();
    let holder = start(ctx(&backend), &["stream-and-trap", "p"]);
    holder.wait_for("holding").await;
    let waiter = start(ctx(&backend), &["wait-and-fill", "p", "whole"]);
    let holder = holder.finish().await;
    assert!(holder.exit.is_err(), "holder should trap: {holder:#?}");
    let waiter = waiter.finish().await;
    assert!(waiter.stdout.starts_with("vacant\n"), "{waiter:#?}");
    let stored = backend.get(&Namespace::new("e2e").unwrap(), b"p").unwrap();
    assert_eq!(stored.as_deref(), Some(&b"whole"[..]));
}

/// A guest that exits (its store dropped) while holding a vacancy abandons it as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exiting_holder_hands_vacancy_to_other_instance() {
    let backend = backend();
    let holder = start(ctx(&backend), &["hold-and-exit", "x"]);
    holder.wait_for("holding").await;
    let waiter = start(ctx(&backend), &["wait-and-fill", "x", "after-exit"]);
    let holder = holder.finish().await;
    assert_eq!(holder.exit, Ok(0), "{holder:#?}");
    let waiter = waiter.finish().await;
    assert!(waiter.stdout.starts_with("vacant\n"), "{waiter:#?}");
    let stored = backend.get(&Namespace::new("e2e").unwrap(), b"x").unwrap();
    assert_eq!(stored.as_deref(), Some(&b"after-exit"[..]));
}

/// An SDK guest (`examples/fanout`) whose compute fails hands its vacancy to an instance
/// waiting on the same key at once: with a 30 s vacancy timeout, only the hand-off is quick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_guest_failed_compute_hands_vacancy_to_other_instance() {
    let backend = Arc::new(
        MemoryCache::new(CacheConfig {
            vacancy_timeout: Duration::from_secs(30),
            ..CacheConfig::with_capacity(1 << 20)
        })
        .unwrap(),
    );
    let failing = start_on(fanout_host, ctx(&backend), &["fail-after", "500", "f"]);
    failing
        .wait_for("fail-after: holding the vacancy of \"f\" for 500 ms")
        .await;
    let started = Instant::now();
    let taking_over = start_on(fanout_host, ctx(&backend), &["take-over", "f"]);
    let failing = failing.finish().await;
    assert_eq!(failing.exit, Ok(0), "{failing:#?}");
    assert!(
        failing
            .stdout
            .ends_with("fail-after: compute failed on purpose; the vacancy goes to a waiter\n"),
        "{failing:#?}"
    );
    let taking_over = taking_over.finish().await;
    assert_eq!(taking_over.exit, Ok(0), "{taking_over:#?}");
    assert!(
        taking_over
            .stdout
            .starts_with("take-over: handed the vacancy of \"f\" after ")
            && taking_over
                .stdout
                .ends_with("take-over: \"f\" = \"filled by the take-over instance\"\n"),
        "{taking_over:#?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The take-over instance waited in the rendezvous and was handed the vacancy.
    let stats = backend.stats();
    assert_eq!((stats.handoffs, stats.timeouts), (1, 0), "{stats:?}");
    let stored = backend.get(&Namespace::new("e2e").unwrap(), b"f").unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(&b"filled by the take-over instance"[..])
    );
}

/// 10,000 get-or-set futures on one key from four instances: one vacancy, 9,999 filled values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_futures_rendezvous_on_one_vacancy() {
    let backend = backend();
    let instances: Vec<_> = (0..4)
        .map(|i| {
            let value = format!("filled-by-{i}");
            start(ctx(&backend), &["many", "hot", "2500", &value])
        })
        .collect();
    let (mut vacant, mut occupied) = (0, 0);
    let mut values = std::collections::BTreeSet::new();
    for running in instances {
        let outcome = running.finish().await;
        assert_eq!(outcome.exit, Ok(0), "{outcome:#?}");
        let line = outcome.stdout.lines().next().unwrap().to_owned();
        let mut parts = line.splitn(3, ' ');
        vacant += parts.next().unwrap()["vacant=".len()..]
            .parse::<usize>()
            .unwrap();
        occupied += parts.next().unwrap()["occupied=".len()..]
            .parse::<usize>()
            .unwrap();
        values.insert(parts.next().unwrap().to_owned());
    }
    assert_eq!((vacant, occupied), (1, 9_999));
    let stored = backend
        .get(&Namespace::new("e2e").unwrap(), b"hot")
        .unwrap()
        .unwrap();
    let stored = String::from_utf8(stored.to_vec()).unwrap();
    // Every instance saw only the filler's value (the filler itself may have seen none).
    for v in values {
        assert!(
            v == format!("values={{{stored:?}}}") || v == "values={}",
            "unexpected values {v}"
        );
    }
}

/// A guest whose bindings come from golem-rust 2.0.0-dev.8's own WIT files links and runs
/// every scenario unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_built_on_golem_wit_runs_unchanged() {
    for name in ["basic", "errors", "streams", "get-or-set", "futures"] {
        scenario_with(Wit::Golem, name, ctx(&backend()), &[]).await;
    }
}

/// A guest that reads its waiters' results by spinning on `…-get` or on `pollable.ready`,
/// never blocking or yielding, still sees all 200 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_guest_sees_every_result() {
    for scenario in ["busy-poll", "busy-ready"] {
        let outcome = run(ctx(&backend()), &[scenario, "200"]).await;
        assert_eq!(outcome.exit, Ok(0), "{scenario}: {outcome:#?}");
        assert!(
            outcome.stdout.starts_with("busy-polled 200 waiters"),
            "{scenario}: {outcome:#?}"
        );
    }
}

/// Runs a hoarding guest with the default limits and memory budget, and checks that the host
/// refused it with the budget's error before it held more than the budget, by the host's own
/// accounting; returns how many items the guest kept.
async fn hoard(args: &[&str], item_bytes: usize) -> usize {
    let cache = WasiCacheCtx::builder(backend())
        .namespace(Namespace::new("hoard").unwrap())
        .build();
    let meter = cache.memory_meter();
    let outcome = run(cache, args).await;
    assert_eq!(outcome.exit, Ok(0), "{outcome:#?}");
    let line = outcome.stdout.lines().next().unwrap_or_default();
    let budget = WasiCacheCtx::DEFAULT_MEMORY_BUDGET;
    assert!(
        line.contains(", refused: ")
            && line.contains(&format!("exceed its memory budget of {budget} bytes")),
        "the guest was never refused: {outcome:#?}"
    );
    let kept: usize = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap();
    assert!(meter.peak() <= budget, "peak {} > {budget}", meter.peak());
    assert!(
        kept <= budget / item_bytes,
        "kept {kept} of {item_bytes} bytes"
    );
    assert!(
        meter.peak() > budget - 2 * item_bytes - 4096,
        "the guest stopped well before the budget: peak {}",
        meter.peak()
    );
    assert_eq!(meter.used(), 0, "everything is given back with the store");
    kept
}

/// The memory probes of the hardening issue, each of which made `wasi-cache run` grow past
/// 1.5 GB before the budget covered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarding_guests_stay_within_the_memory_budget() {
    // 1,500 incoming-values of 1 MiB, each overwritten in the cache after it was read.
    let values = hoard(&["hoard-values", "1500", "1048576"], 1 << 20).await;
    // 20,000 vacancies on distinct 60,000-byte keys.
    let vacancies = hoard(&["hoard-vacancies", "20000", "60000"], 60_000).await;
    // 1,500 buckets with 1 MiB names.
    let buckets = hoard(&["hoard-buckets", "1500", "1048576"], 1 << 20).await;
    // 4,000 get-or-set waiters on one 60,000-byte key: their keys are charged too.
    let waiters = hoard(&["hoard-waiters", "4000", "60000"], 60_000).await;
    assert!(
        values > 10 && vacancies > 500 && buckets > 10 && waiters > 500,
        "{values} {vacancies} {buckets} {waiters}"
    );
}

/// Writing more than `check-write` permitted traps the guest, as wasi:io specifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_beyond_check_write_traps() {
    let outcome = run(ctx(&backend()), &["overwrite-permit"]).await;
    let trap = outcome.exit.as_ref().expect_err("the guest must trap");
    assert!(
        trap.contains("write of 65537 bytes exceeds the 65536 bytes check-write permitted"),
        "{outcome:#?}"
    );
    assert_eq!(outcome.stdout, "permit 65536\n", "{outcome:#?}");
}
