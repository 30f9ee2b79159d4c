//! What an instance runs within: the wasmtime settings that enforce `--max-memory`,
//! `--max-resources` and `--timeout` on a store ([`apply`]), the epoch ticker the timeout needs
//! (the engine's settings are in [`crate::engine`]), and the words that tell a user which limit a failed run ran into
//! ([`explain`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasi_cache_host::WasiCacheState;
use wasmtime::component::ResourceTableError;
use wasmtime::{Engine, Error, Result, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

use crate::exit::one_line;
use crate::options::CommonArgs;
use crate::options::size::format_size;
use crate::store::InstanceState;

/// How often the engine's epoch advances when instances have a time limit: how late the timeout
/// may fire, and how often a computing component yields to the host's other tasks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most core instances per component (a Rust component has three; one composed of several
/// components, a few per part).
const MAX_INSTANCES: usize = 1_000;
/// Most linear memories per component (a Rust component has one); all of them together stay
/// within `--max-memory`.
const MAX_MEMORIES: usize = 100;
/// Most tables per component (a Rust component has two).
const MAX_TABLES: usize = 100;
/// Most elements per table, 8 bytes of host memory each (a Rust component's tables have a few
/// hundred; large language runtimes some tens of thousands): at most 80 MB for 100 tables.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Component-model handles a guest may hold per `--max-resources`: a WASI 0.3 stream or future
/// has two ends, two handles, and counts as one resource; a host resource the guest holds is
/// one handle, so a WASI 0.2 guest meets the resource table's cap first, as it always did.
const HANDLES_PER_RESOURCE: usize = 2;
/// Entries of wasmtime's own table of component-model async state (tasks, waitable sets, and
/// each stream or future: its state and its two ends, three entries) allowed per
/// `--max-resources`.
const CONCURRENT_ENTRIES_PER_RESOURCE: usize = 4;
/// wasmtime's error when a guest's handle tables (resources, WASI 0.3 streams and futures)
/// hold the most handles the store allows.
const HANDLE_LIMIT_ERROR: &str = "store handle limit exceeded";

/// Caps on a component's memories, tables and instances: each memory within `--max-memory`
/// (all of them together too: [`apply`]); a failed growth is reported to the component, not
/// turned into a trap by the host, so its own handling (usually an abort message) shows.
fn store_limits(args: &CommonArgs) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(args.max_memory)
        .table_elements(MAX_TABLE_ELEMENTS)
        .instances(MAX_INSTANCES)
        .memories(MAX_MEMORIES)
        .tables(MAX_TABLES)
        .trap_on_grow_failure(false)
        .build()
}

/// Puts `state` in a store of `engine` with every limit of `args`: memories, tables and
/// instances (the store's limiter), resource-table entries, the guest's component-model handles
/// (its own resources, WASI 0.3 streams and futures: wasmtime keeps those in tables of its own,
/// 100,000 by default) and wasmtime's table of async state, and — with a `deadline` — an epoch
/// callback that yields to the host every tick and ends the component's code with
/// [`DeadlinePassed`] once the deadline is past. (A component blocked in a host call runs no
/// code: the caller bounds the whole run with the same deadline too.)
pub fn apply(
    engine: &Engine,
    mut state: InstanceState,
    args: &CommonArgs,
    deadline: Option<Instant>,
) -> Store<InstanceState> {
    state.cache = state
        .cache
        .with_limits(store_limits(args))
        .with_memory_total(args.max_memory);
    state.cache.table.set_max_capacity(args.max_resources);
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.cache);
    // A WASI 0.3 guest creates streams and futures without a host call: the same cap as the
    // resources it gets from host calls.
    store.set_max_component_handles(args.max_resources.saturating_mul(HANDLES_PER_RESOURCE));
    if let Some(table) = store.concurrent_resource_table() {
        table.set_max_capacity(
            args.max_resources
                .saturating_mul(CONCURRENT_ENTRIES_PER_RESOURCE),
        );
    }
    // Without a deadline, nothing advances the epoch: a deadline this far is never reached.
    store.set_epoch_deadline(u64::MAX / 2);
    if let Some(deadline) = deadline {
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Error::new(DeadlinePassed))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
    }
    store
}

/// Advances an engine's epoch every [`EPOCH_TICK`], on a thread of its own, until dropped.
///
/// Not a tokio task: a component that computes without yielding occupies its worker thread
/// until the epoch advances, and a ticker queued behind it on that worker would never run.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`'s epoch (one ticker serves every store of the engine); fails
    /// only when the system refuses a thread.
    pub fn start(engine: &Engine) -> Result<Self> {
        let engine = engine.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|err| Error::new(err).context("cannot start the epoch ticker thread"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The deadline of a run or request starting now with time limit `limit` (at most 365 days,
/// which `Instant` can always add).
pub fn deadline(limit: Option<Duration>) -> Option<Instant> {
    limit.and_then(|limit| Instant::now().checked_add(limit))
}

/// Runs `future` to its end, or until `deadline` (`None` when it passed first). This is what
/// stops a component blocked in a host call, which runs no code that could check the epoch.
pub async fn within<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), future).await.ok(),
        None => Some(future.await),
    }
}

/// The error a component's code is stopped with once its run's deadline has passed.
#[derive(Debug)]
pub struct DeadlinePassed;

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the instance's time limit has passed")
    }
}

impl std::error::Error for DeadlinePassed {}

/// Whether `err` is a run stopped by its deadline.
pub fn is_deadline(err: &Error) -> bool {
    err.downcast_ref::<DeadlinePassed>().is_some()
}

/// One line saying why a component failed: `err`'s root cause, then which limit of `args` it
/// ran into, when one was (a memory or table growth refused, a full resource table).
pub fn explain(err: &Error, state: &WasiCacheState, args: &CommonArgs) -> String {
    let mut line = one_line(&err.root_cause().to_string());
    let table_full = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        ) || cause.to_string().contains(HANDLE_LIMIT_ERROR)
    });
    if table_full {
        line.push_str(&format!(
            " (the component holds the most resources --max-resources allows, {})",
            args.max_resources
        ));
    }
    if let Some(desired) = state.refused_memory_growth() {
        line.push_str(&format!(
            " (its memory was refused growth to {}: --max-memory is {})",
            format_size(desired as u64),
            format_size(args.max_memory as u64)
        ));
    }
    if let Some(desired) = state.refused_table_growth() {
        line.push_str(&format!(
            " (a table was refused growth to {desired} elements: at most {MAX_TABLE_ELEMENTS} \
             are allowed)"
        ));
    }
    line
}
