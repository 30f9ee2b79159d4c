//! The wasmtime engine every command compiles and runs components on ([`engine`]).

use wasmtime::{Cache, Config, Engine, Result};

/// The wasmtime engine for components, compiling through `cache` when given (the compilation
/// cache). Code is compiled with epoch interruption whether or not instances have a time limit
/// (one with a limit needs an [`EpochTicker`](crate::limits::EpochTicker) too), so that one compiled artifact serves `run`
/// and `serve` with any `--timeout` and `wasi-cache compile` needs no option for it; a check
/// per loop and call is all it costs without a limit. Component-model async is on, for WASI
/// 0.3 components (it changes nothing for 0.2 ones).
pub fn engine(cache: Option<Cache>) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model_async(true);
    config.cache(cache);
    Engine::new(&config)
}
