//! wasmtime's pooling instance allocator for `serve` ([`Pool`]): its size, derived from the
//! server's limits, and the probe that decides whether this machine can reserve it.
//!
//! `serve` makes an instance per request (or per few, when it reuses them); on demand, each
//! one maps and unmaps its linear memory, tables and fiber stack, and the munmaps (with the TLB
//! shootdowns they cause on every core) were most of the server's CPU. The pool reserves slots
//! for them once, at start-up, and reuses them. `serve` sizes it for a quarter more instances
//! than `--max-concurrent-requests` ([`instances_for`]), of any reasonable component: a request
//! that finds it full is answered 503.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Result};

use crate::options::pooling::{PoolingArgs, PoolingMode};

/// Core instances one component instance may have: a component built by wit-bindgen has one or
/// two, one built by componentize-py or ComponentizeJS a handful.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Linear memories per component instance.
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per component instance.
const TABLES_PER_COMPONENT: u32 = 4;
/// Fiber stacks per component instance: a WASI 0.3 instance runs its concurrent tasks on
/// fibers of their own.
const STACKS_PER_COMPONENT: u32 = 4;
/// Elements of the largest table a module may define: interpreters compiled to wasm
/// (componentize-py, StarlingMonkey) have tables of tens of thousands of functions.
const TABLE_ELEMENTS: usize = 100_000;

/// The instances the pool of a server handling `requests` at once has room for: a quarter more,
/// and 16, for the instances that outlive their requests (kept for reuse, or ending after a
/// timeout or a client gone). Not twice as many: at 4,096 requests the stacks' guard pages alone
/// would pass Linux's default limit of 65,530 mappings, and the pool could not be reserved.
pub fn instances_for(requests: usize) -> usize {
    requests.saturating_add(requests / 4).saturating_add(16)
}

/// The pooling allocator `serve` asks for: whether to use it and its configuration.
#[derive(Clone)]
pub struct Pool {
    mode: PoolingMode,
    config: PoolingAllocationConfig,
}

impl Pool {
    /// The pool for `instances` concurrent instances whose linear memories may each grow to
    /// `max_memory` bytes, tuned by `args`; `None` with `--pooling-allocator no`.
    pub fn new(args: &PoolingArgs, instances: usize, max_memory: usize) -> Option<Self> {
        if args.pooling_allocator == PoolingMode::No {
            return None;
        }
        let instances = u32::try_from(instances).unwrap_or(u32::MAX);
        let times = |per: u32| instances.saturating_mul(per);
        let mut config = PoolingAllocationConfig::new();
        config
            .total_component_instances(instances)
            .total_core_instances(times(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(times(MEMORIES_PER_COMPONENT))
            .total_tables(times(TABLES_PER_COMPONENT))
            .total_stacks(times(STACKS_PER_COMPONENT))
            .max_memories_per_module(MEMORIES_PER_COMPONENT)
            .table_elements(TABLE_ELEMENTS)
            // The store's limiter enforces --max-memory with its own error; the slot only has
            // to be at least that large.
            .max_memory_size(max_memory)
            .linear_memory_keep_resident(args.pooling_memory_keep_resident)
            .table_keep_resident(args.pooling_table_keep_resident)
            .decommit_batch_size(args.pooling_decommit_batch_size);
        Some(Self {
            mode: args.pooling_allocator,
            config,
        })
    }

    /// An engine on `config` with this pool: with `auto`, only when [`can_reserve`] says the
    /// address space is there, and on demand (with a warning) when reserving the pool fails
    /// anyway; with `yes`, that failure is the error.
    pub fn engine(&self, config: Config) -> Result<Engine> {
        if self.mode == PoolingMode::Auto && !can_reserve() {
            tracing::info!("the pooling allocator is off: this machine cannot reserve its space");
            return Engine::new(&config);
        }
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(self.config.clone()));
        match Engine::new(&pooled) {
            Ok(engine) => Ok(engine),
            Err(err) if self.mode == PoolingMode::Auto => {
                tracing::warn!(
                    "instances are allocated on demand: cannot reserve the pool: {err:#}"
                );
                Engine::new(&config)
            }
            Err(err) => Err(err.context(
                "cannot reserve the pooling allocator's memory (--pooling-allocator yes); \
                 lower --max-concurrent-requests or --max-memory, or use --pooling-allocator no",
            )),
        }
    }
}

/// Whether this process can reserve a large stretch of address space: the check `wasmtime
/// serve` makes before it uses the pool by default (a 4 TiB memory64 reservation), since
/// address space is limited under some sandboxes, emulators and `ulimit -v`.
pub fn can_reserve() -> bool {
    const BITS: u32 = 42;
    let mut config = Config::new();
    config.wasm_memory64(true);
    config.memory_reservation(1 << BITS);
    let Ok(engine) = Engine::new(&config) else {
        return false;
    };
    let mut store = wasmtime::Store::new(&engine, ());
    // The maximum is in 64 KiB wasm pages.
    let ty = wasmtime::MemoryType::new64(0, Some(1 << (BITS - 16)));
    wasmtime::Memory::new(&mut store, ty).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: PoolingMode) -> PoolingArgs {
        PoolingArgs {
            pooling_allocator: mode,
            pooling_memory_keep_resident: 2 << 20,
            pooling_table_keep_resident: 512 << 10,
            pooling_decommit_batch_size: 1,
        }
    }

    #[test]
    fn no_means_no_pool() {
        assert!(Pool::new(&args(PoolingMode::No), 1000, 1 << 30).is_none());
    }

    #[test]
    fn a_pool_that_cannot_be_reserved_falls_back_only_when_automatic() {
        // 200,000 memory slots of 4 GiB: more than a 47-bit address space holds.
        let huge = 100_000;
        let auto = Pool::new(&args(PoolingMode::Auto), huge, 1 << 30).unwrap();
        assert!(
            auto.engine(Config::new()).is_ok(),
            "auto falls back to on demand"
        );
        let yes = Pool::new(&args(PoolingMode::Yes), huge, 1 << 30).unwrap();
        let Err(err) = yes.engine(Config::new()) else {
            panic!("yes insists on the pool");
        };
        assert!(
            format!("{err:#}").contains("--pooling-allocator"),
            "{err:#}"
        );
    }

    /// The pool of a server of 4,096 requests at once (the serve bench's) is reserved: its
    /// stacks' guard pages stay within Linux's default limit of mappings, which a pool twice
    /// that size passed.
    #[test]
    fn the_pool_of_4096_requests_is_reserved() {
        let instances = instances_for(4096);
        assert_eq!(instances, 4096 + 1024 + 16);
        let pool = Pool::new(&args(PoolingMode::Yes), instances, 1 << 30).unwrap();
        if let Err(err) = pool.engine(Config::new()) {
            panic!("cannot reserve the pool of {instances} instances: {err:#}");
        }
    }

    #[test]
    fn a_sized_pool_instantiates() {
        let pool = Pool::new(&args(PoolingMode::Yes), 4, 64 << 20).unwrap();
        let engine = pool
            .engine(Config::new())
            .expect("a small pool is reserved");
        let wasm = wat::parse_str("(module (memory 1))").unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiates from the pool");
    }
}
