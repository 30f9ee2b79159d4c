//! The sizes of every section, full or quick (smoke) mode, chosen from the command line or
//! the environment.

/// Environment variable that selects quick mode when set to anything but `0` or empty.
pub const QUICK_ENV: &str = "BENCH_QUICK";

/// Command-line flag that selects quick mode.
pub const QUICK_FLAG: &str = "--quick";

/// How big each section's workload is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Whether these are the quick (smoke-run) sizes.
    pub quick: bool,
    /// Keys in the throughput universe; every cache is pre-filled with all of them.
    pub throughput_keys: usize,
    /// Operations per thread in one timed throughput run.
    pub ops_per_thread: usize,
    /// Timed runs per throughput case (after one warm-up run).
    pub runs: usize,
    /// Keys in the hit-ratio universe.
    pub hit_keys: usize,
    /// Cache capacity of the hit-ratio section, in entries.
    pub hit_capacity: usize,
    /// Requests in each pure Zipf hit-ratio trace.
    pub hit_requests: usize,
    /// Zipf requests in the scan-polluted trace (scans come on top).
    pub scan_zipf_requests: usize,
    /// Zipf requests between two scans in the scan-polluted trace.
    pub scan_every: usize,
    /// Keys in one scan.
    pub scan_len: usize,
    /// Entries inserted in the bytes-per-entry section.
    pub memory_entries: usize,
    /// Concurrent callers of one stampede.
    pub stampede_callers: usize,
    /// Timed stampede rounds per cache (after one warm-up round).
    pub stampede_rounds: usize,
}

impl Sizes {
    /// The sizes of a real run.
    pub const FULL: Sizes = Sizes {
        quick: false,
        throughput_keys: 1_000_000,
        ops_per_thread: 10_000_000,
        runs: 3,
        hit_keys: 1_000_000,
        hit_capacity: 100_000,
        hit_requests: 10_000_000,
        scan_zipf_requests: 5_000_000,
        scan_every: 100_000,
        scan_len: 50_000,
        memory_entries: 1_000_000,
        stampede_callers: 1_000,
        stampede_rounds: 5,
    };

    /// Sizes for a smoke run of a few seconds.
    pub const QUICK: Sizes = Sizes {
        quick: true,
        throughput_keys: 100_000,
        ops_per_thread: 500_000,
        runs: 3,
        hit_keys: 100_000,
        hit_capacity: 10_000,
        hit_requests: 500_000,
        scan_zipf_requests: 300_000,
        scan_every: 10_000,
        scan_len: 5_000,
        memory_entries: 100_000,
        stampede_callers: 1_000,
        stampede_rounds: 2,
    };

    /// Quick sizes if [`QUICK_FLAG`] is among `args` or [`QUICK_ENV`] is set, else full ones.
    pub fn from_args_and_env(args: &[String]) -> Sizes {
        let env = std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if env || args.iter().any(|a| a == QUICK_FLAG) {
            Self::QUICK
        } else {
            Self::FULL
        }
    }
}
