//! `serve`'s options for wasmtime's pooling instance allocator ([`PoolingArgs`]): on, off or
//! probed, and how much of a slot's memory stays resident between instances.

use clap::{Args, ValueEnum};

use super::count::parse_count;
use super::size::parse_size_usize;

/// Whether instances come from wasmtime's pooling allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingMode {
    /// The pool when this machine can reserve its address space (the probe `wasmtime serve`
    /// makes), else on demand.
    Auto,
    /// Always the pool; the server does not start when it cannot be reserved.
    Yes,
    /// Map and unmap every instance's memories, tables and stacks on demand.
    No,
}

/// The pooling allocator's options (`-O pooling-allocator=…` and its tunables in wasmtime's
/// own CLI).
#[derive(Debug, Clone, Args)]
pub struct PoolingArgs {
    /// Take instances' linear memories, tables and stacks from a pool reserved at start-up,
    /// sized from --max-concurrent-requests and --max-memory (`auto`: when the machine can
    /// reserve the address space, as `wasmtime serve` decides).
    #[arg(long, value_name = "auto|yes|no", default_value = "auto")]
    pub pooling_allocator: PoolingMode,

    /// Bytes of a linear memory's slot kept resident (zeroed with memset instead of
    /// madvise) when its instance ends: cheaper reuse for small memories.
    #[arg(long, value_name = "SIZE", default_value = "2MiB", value_parser = parse_size_usize)]
    pub pooling_memory_keep_resident: usize,

    /// Bytes of a table's slot kept resident when its instance ends.
    #[arg(long, value_name = "SIZE", default_value = "512KiB", value_parser = parse_size_usize)]
    pub pooling_table_keep_resident: usize,

    /// Slots whose memory is given back to the kernel in one batch (one madvise call each,
    /// fewer cross-core TLB shootdowns with larger batches).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_count)]
    pub pooling_decommit_batch_size: usize,
}
