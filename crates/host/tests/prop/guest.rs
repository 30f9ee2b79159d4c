//! Running a script through the guest: the engine and the e2e guest component, compiled once;
//! one fresh instance over a fresh [`MemoryCache`] a run, and what the run printed and left in
//! the backend.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasi_cache_engine::{Config as CacheConfig, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{WasiCacheCtx, WasiCacheState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtx};

use crate::model::Body;
use crate::ops::{Key, Script};
use crate::{HANG, TEST_LIMITS};

/// The engine and the guest component, compiled once, ready to instantiate.
struct Host {
    engine: Engine,
    pre: CommandPre<WasiCacheState>,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let wasm = guest_build::build(
            guest_build::GUEST_E2E,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        );
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasi_cache_host::add_to_linker(&mut linker).unwrap();
        let pre = CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Host { engine, pre }
    })
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Run {
    /// `Ok(code)` when the guest returned or exited, `Err(message)` when it trapped or hung.
    pub(crate) exit: Result<i32, String>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// The backend's value of each storable key after the run.
    pub(crate) store: BTreeMap<Key, Body>,
}

pub(crate) async fn run(script: &Script) -> Run {
    let host = host();
    let (stdout, stderr) = (
        MemoryOutputPipe::new(1 << 20),
        MemoryOutputPipe::new(1 << 20),
    );
    let wasi = WasiCtx::builder()
        .args(&["guest", "script"])
        .stdin(MemoryInputPipe::new(script.text()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let backend = Arc::new(
        MemoryCache::new(CacheConfig {
            limits: TEST_LIMITS,
            // Never reached: no vacancy changes hands by the clock.
            vacancy_timeout: Duration::from_secs(3600),
            ..CacheConfig::with_capacity(64 << 20)
        })
        .unwrap(),
    );
    let ns = Namespace::new("prop").unwrap();
    let cache = WasiCacheCtx::builder(backend.clone())
        .namespace(ns.clone())
        .limits(TEST_LIMITS)
        .memory_budget(64 << 20)
        .build();
    let mut store = Store::new(&host.engine, WasiCacheState::new(wasi, cache));
    let call = async {
        let command = host.pre.instantiate_async(&mut store).await?;
        command.wasi_cli_run().call_run(&mut store).await
    };
    let exit = match tokio::time::timeout(HANG, call).await {
        Err(_) => Err(format!("the guest hung (still running after {HANG:?})")),
        Ok(Ok(Ok(()))) => Ok(0),
        Ok(Ok(Err(()))) => Ok(1),
        Ok(Err(err)) => match err.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            // The message and its causes, without the host's backtrace.
            None => Err(format!("{err:?}")
                .split("\nStack backtrace:")
                .next()
                .unwrap_or_default()
                .to_owned()),
        },
    };
    drop(store);
    let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    let store = [Key::A, Key::B, Key::Empty]
        .into_iter()
        .filter_map(|key| {
            let name = match key {
                Key::A => "a",
                Key::B => "b",
                _ => "",
            };
            let value = backend.get(&ns, name.as_bytes()).unwrap()?;
            Some((key, Body::from(&value[..])))
        })
        .collect();
    Run {
        exit,
        stdout: text(&stdout),
        stderr: text(&stderr),
        store,
    }
}
