//! The wasmtime engine every command compiles and runs components on ([`engine`]).

use wasmtime::{Cache, Config, Engine, Result};

use crate::pooling::Pool;

/// The wasmtime engine for components, compiling through `cache` when given (the compilation
/// cache). Code is compiled with epoch interruption whether or not instances have a time limit
/// (one with a limit needs an [`EpochTicker`](crate::limits::EpochTicker) too), so that one compiled artifact serves `run`
/// and `serve` with any `--timeout` and `wasi-cache compile` needs no option for it; a check
/// per loop and call is all it costs without a limit. Component-model async is on, for WASI
/// 0.3 components (it changes nothing for 0.2 ones). Instances come from `pool` when given
/// (`serve`), else on demand; the allocator does not change the compiled code, so a `.cwasm`
/// of `wasi-cache compile` loads on either.
pub fn engine(cache: Option<Cache>, pool: Option<&Pool>) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model_async(true);
    config.cache(cache);
    match pool {
        Some(pool) => pool.engine(config),
        None => Engine::new(&config),
    }
}
