//! End-to-end tests of the WASI 0.3 flavour: the guest component of `tests/guest-e2e-p3` (a
//! `wasi:cli/run@0.3.0` command built from source for `wasm32-wasip2`) run against the host
//! over the embedded memory engine, and next to the 0.2 guest of `tests/guest-e2e` on one
//! engine and one backend.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{Outcome, Running};
use wasi_cache_engine::{Config as CacheConfig, Limits, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{Flavour, WasiCacheCtx, WasiCacheState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// The engine (component-model async on), and per flavour the compiled guest and its linker.
struct Host {
    engine: Engine,
    p2: (Component, Linker<WasiCacheState>),
    p3: (Component, Linker<WasiCacheState>),
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        let engine = Engine::new(&config).unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let compile =
            |guest| Component::from_file(&engine, guest_build::build(guest, dir)).unwrap();
        let linker = |flavour| {
            let mut linker = Linker::new(&engine);
            wasi_cache_host::add_wasi_and_cache_to_linker(&mut linker, flavour).unwrap();
            linker
        };
        let (p2, p3) = (linker(Flavour::P2), linker(Flavour::P3));
        Host {
            p2: (compile(guest_build::GUEST_E2E), p2),
            p3: (compile(guest_build::GUEST_E2E_P3), p3),
            engine,
        }
    })
}

/// 1 KiB keys, 16 MiB values (the default), so that the large stream bodies pass.
const TEST_LIMITS: Limits = Limits {
    max_key_size: 1024,
    max_value_size: 16 << 20,
};

fn backend() -> Arc<MemoryCache> {
    backend_with(CacheConfig::with_capacity(256 << 20))
}

fn backend_with(config: CacheConfig) -> Arc<MemoryCache> {
    Arc::new(MemoryCache::new(config).unwrap())
}

fn builder(backend: &Arc<MemoryCache>) -> wasi_cache_host::WasiCacheCtxBuilder {
    WasiCacheCtx::builder(backend.clone())
        .namespace(Namespace::new("e2e").unwrap())
        .limits(TEST_LIMITS)
}

fn ctx(backend: &Arc<MemoryCache>) -> WasiCacheCtx {
    builder(backend).build()
}

/// Starts an instance of the `flavour` guest with `args`, on its own task.
fn start_flavour(flavour: Flavour, cache: WasiCacheCtx, args: &[&str]) -> Running {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let state = WasiCacheState::new(common::wasi(args, &stdout), cache);
    let pipe = stdout.clone();
    let task = tokio::spawn(async move {
        let host = host();
        let mut store = Store::new(&host.engine, state);
        let result = match flavour {
            Flavour::P2 => {
                let (component, linker) = &host.p2;
                async {
                    let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
                        &mut store, component, linker,
                    )
                    .await?;
                    command.wasi_cli_run().call_run(&mut store).await
                }
                .await
            }
            Flavour::P3 => {
                let (component, linker) = &host.p3;
                async {
                    let command = wasmtime_wasi::p3::bindings::Command::instantiate_async(
                        &mut store, component, linker,
                    )
                    .await?;
                    store
                        .run_concurrent(async move |store| {
                            command.wasi_cli_run().call_run(store).await
                        })
                        .await?
                }
                .await
            }
        };
        drop(store);
        common::outcome(result, &pipe)
    });
    Running { task, stdout }
}

fn start(cache: WasiCacheCtx, args: &[&str]) -> Running {
    start_flavour(Flavour::P3, cache, args)
}

async fn run(cache: WasiCacheCtx, args: &[&str]) -> Outcome {
    start(cache, args).finish().await
}

/// Runs a self-checking scenario of the 0.3 guest and asserts that it passed.
async fn scenario(cache: WasiCacheCtx, args: &[&str]) -> Outcome {
    let outcome = run(cache, args).await;
    assert_eq!(
        outcome.exit,
        Ok(0),
        "scenario {args:?} failed: {outcome:#?}"
    );
    assert!(
        outcome.stdout.ends_with("done\n"),
        "scenario {args:?} did not complete: {outcome:#?}"
    );
    outcome
}

fn stored(backend: &MemoryCache, key: &str) -> Option<Vec<u8>> {
    let ns = Namespace::new("e2e").unwrap();
    backend
        .get(&ns, key.as_bytes())
        .unwrap()
        .map(|v| v.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_operations() {
    let out = scenario(ctx(&backend()), &["basic"]).await;
    assert!(
        out.stdout
            .contains("no body: set: the outgoing-value has no body"),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry() {
    scenario(ctx(&backend()), &["ttl"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bodies_of_16_mib() {
    // One shard: both 16 MiB values fit in it without evicting each other.
    let backend = backend_with(CacheConfig {
        shards: Some(1),
        ..CacheConfig::with_capacity(256 << 20)
    });
    let cache = builder(&backend).memory_budget(128 << 20).build();
    let meter = cache.memory_meter();
    let out = scenario(cache, &["streams", &(16 << 20).to_string()]).await;
    assert!(
        out.stdout.contains(&format!("streamed {}", 16 << 20)),
        "{out:#?}"
    );
    assert_eq!(stored(&backend, "big").map(|v| v.len()), Some(16 << 20));
    assert_eq!(
        meter.used(),
        0,
        "everything given back once the store is gone"
    );
}

/// Concurrent async tasks of one instance rendezvous: exactly one vacancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_between_tasks_of_one_instance() {
    let backend = backend();
    let out = scenario(ctx(&backend), &["rendezvous", "r", "50", "filled"]).await;
    assert!(out.stdout.contains("vacant 1 occupied 49"), "{out:#?}");
    assert_eq!(stored(&backend, "r").as_deref(), Some(&b"filled"[..]));
}

/// Instances rendezvous: the holder fills, the waiter in another instance gets its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_between_instances() {
    let backend = backend();
    let holder = start(ctx(&backend), &["rendezvous", "ri", "1", "from-holder"]);
    let waiters: Vec<_> = (0..4)
        .map(|_| start(ctx(&backend), &["wait-and-fill", "ri", "from-waiter"]))
        .collect();
    // The holder may come second: then it reads the first waiter's value.
    let holder = holder.finish().await;
    assert_eq!(holder.exit, Ok(0), "{holder:#?}");
    let mut vacant = 0;
    for waiter in waiters {
        let out = waiter.finish().await;
        assert_eq!(out.exit, Ok(0), "{out:#?}");
        vacant += usize::from(out.stdout.starts_with("vacant"));
    }
    // One vacancy in all: the holder's, or (when a waiter came first) that waiter's.
    let value = stored(&backend, "ri").unwrap();
    assert!(
        (vacant == 0 && value == b"from-holder") || (vacant == 1 && value == b"from-waiter"),
        "{vacant} {value:?}"
    );
}

/// The holder of a vacancy drops it, traps, or exits holding it: each time a waiter in
/// another instance is handed the vacancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_on_drop_trap_and_exit() {
    for mode in ["drop", "trap", "exit"] {
        let backend = backend();
        let key = format!("h-{mode}");
        let holder = start(ctx(&backend), &["hold", &key, mode]);
        holder.wait_for("holding").await;
        let waiter = start(ctx(&backend), &["wait-and-fill", &key, "from-waiter"]);
        let holder = holder.finish().await;
        if mode == "trap" {
            assert!(holder.exit.is_err(), "holder should trap: {holder:#?}");
        } else {
            assert_eq!(holder.exit, Ok(0), "{holder:#?}");
        }
        let waiter = waiter.finish().await;
        assert!(waiter.stdout.starts_with("vacant\n"), "{mode}: {waiter:#?}");
        assert_eq!(stored(&backend, &key).as_deref(), Some(&b"from-waiter"[..]));
    }
}

/// A guest that traps halfway through a streamed fill: its partial body is abandoned, as in
/// 0.2 (never stored cut short), and the waiter in another instance gets the vacancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_mid_stream_fill_reaches_the_waiter() {
    let backend = backend();
    let holder = start(ctx(&backend), &["hold", "ms", "stream-trap"]);
    holder.wait_for("holding").await;
    let waiter = start(ctx(&backend), &["wait-and-fill", "ms", "from-waiter"]);
    let holder = holder.finish().await;
    assert!(holder.exit.is_err(), "holder should trap: {holder:#?}");
    let waiter = waiter.finish().await;
    assert_eq!(waiter.exit, Ok(0), "{waiter:#?}");
    assert!(waiter.stdout.starts_with("vacant\n"), "{waiter:#?}");
    assert_eq!(stored(&backend, "ms").as_deref(), Some(&b"from-waiter"[..]));
}

/// A vacancy held past the backend's vacancy timeout is handed to a waiter, which fills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_on_vacancy_timeout() {
    let backend = backend_with(CacheConfig {
        vacancy_timeout: Duration::from_millis(200),
        ..CacheConfig::with_capacity(64 << 20)
    });
    let holder = start(ctx(&backend), &["hold", "slow", "sleep"]);
    holder.wait_for("holding").await;
    let waiter = run(ctx(&backend), &["wait-and-fill", "slow", "from-waiter"]).await;
    assert!(waiter.stdout.starts_with("vacant\n"), "{waiter:#?}");
    // The first holder's late fill is an ordinary write then, as in 0.2.
    let holder = holder.finish().await;
    assert_eq!(holder.exit, Ok(0), "{holder:#?}");
    assert!(holder.stdout.contains("late fill accepted"), "{holder:#?}");
}

/// Every size limit is an error the guest reads, never a trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_yield_errors() {
    let backend = backend();
    let limits = Limits {
        max_key_size: 64,
        max_value_size: 1000,
    };
    let cache = builder(&backend).limits(limits).build();
    let out = scenario(cache, &["limits", "64", "1000"]).await;
    for line in [
        "long key: get: key is 65 bytes",
        "long key get-or-set: get-or-set: key is 65 bytes",
        "big value: outgoing-value-write-body-sync:",
        "big stream set: outgoing-value-write-body-async: value is",
    ] {
        assert!(out.stdout.contains(line), "{line:?} missing: {out:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_future_cap() {
    let cache = builder(&backend()).max_live_futures(16).build();
    let out = scenario(cache, &["live-cap", "16"]).await;
    assert!(
        out.stdout
            .contains("over the cap: get: this instance already has 16 live futures"),
        "{out:#?}"
    );
}

/// Two gets of one pending future at once: the later takes over, the earlier gets an error
/// at once; no hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_one_future() {
    let out = scenario(ctx(&backend()), &["double-get"]).await;
    assert!(
        out.stdout.contains("another get of this future took over"),
        "{out:#?}"
    );
}

/// A cancelled get leaves the future usable: the next get waits and gets the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_get_leaves_the_future_usable() {
    let backend = backend();
    let holder = start(ctx(&backend), &["hold", "c", "sleep"]);
    holder.wait_for("holding").await;
    let out = run(ctx(&backend), &["cancel-get", "c"]).await;
    assert_eq!(out.exit, Ok(0), "{out:#?}");
    // The holder fills late (within the vacancy timeout): the waiter gets its value.
    assert!(
        out.stdout.contains("cancelled\noccupied late\n"),
        "{out:#?}"
    );
    assert!(holder.finish().await.stdout.contains("late fill accepted"));
}

/// Hoarded values and vacancies, and a flood of calls dropped unread, stay within the budget
/// and the live-future cap; everything is given back at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_stay_within_the_budget() {
    for args in [
        &["hoard-values", "1000", "4096"][..],
        &["hoard-vacancies", "100000"],
        &["flood", "20000"],
    ] {
        let cache = builder(&backend())
            .memory_budget(256 << 10)
            .max_live_futures(512)
            .build();
        let meter = cache.memory_meter();
        let out = scenario(cache, args).await;
        assert!(meter.peak() <= 256 << 10, "{args:?}: peak {}", meter.peak());
        if args[0] != "flood" {
            assert!(out.stdout.contains("refused after"), "{args:?}: {out:#?}");
        }
        assert_eq!(meter.used(), 0, "{args:?}: all given back");
    }
}

/// A 0.2 and a 0.3 component on one engine and one backend: each reads what the other
/// wrote, and get-or-sets from both on one missing key give exactly one vacancy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_and_p3_components_share_the_cache() {
    let backend = backend();
    let p2 = start_flavour(
        Flavour::P2,
        ctx(&backend),
        &["wait-and-fill", "x2", "from-p2"],
    );
    assert_eq!(p2.finish().await.exit, Ok(0));
    let read = run(ctx(&backend), &["read", "x2"]).await;
    assert!(read.stdout.contains("value from-p2"), "{read:#?}");
    let p3 = run(ctx(&backend), &["wait-and-fill", "x3", "from-p3"]).await;
    assert!(p3.stdout.starts_with("vacant"), "{p3:#?}");
    let read = start_flavour(Flavour::P2, ctx(&backend), &["read", "x3"])
        .finish()
        .await;
    assert!(read.stdout.contains("value from-p3"), "{read:#?}");

    // One missing key, a holder of each flavour in turn and a waiter of the other.
    for (holder, waiter) in [(Flavour::P2, Flavour::P3), (Flavour::P3, Flavour::P2)] {
        let key = format!("both-{holder:?}");
        let holding = match holder {
            Flavour::P2 => start_flavour(holder, ctx(&backend), &["hold-and-fill", &key, "first"]),
            Flavour::P3 => start_flavour(holder, ctx(&backend), &["hold", &key, "drop"]),
        };
        holding.wait_for("holding").await;
        let waiting = start_flavour(waiter, ctx(&backend), &["wait-and-fill", &key, "second"]);
        let waited = waiting.finish().await;
        let held = holding.finish().await;
        assert_eq!(held.exit, Ok(0), "{held:#?}");
        let value = stored(&backend, &key).unwrap();
        match holder {
            // The 0.2 holder fills: the 0.3 waiter reads its value.
            Flavour::P2 => {
                assert!(waited.stdout.contains("occupied first"), "{waited:#?}");
                assert_eq!(value, b"first");
            }
            // The 0.3 holder drops: the 0.2 waiter is handed the vacancy.
            Flavour::P3 => {
                assert!(waited.stdout.starts_with("vacant"), "{waited:#?}");
                assert_eq!(value, b"second");
            }
        }
    }
}
