//! Hit ratio: single-threaded replays of Zipf and scan-polluted traces against caches holding
//! 10 % of the key universe; on a miss the key is inserted.

use wasi_cache_engine::{Config, Limits};

use crate::adapters::{MokaSync, Ours, QuickCache, SyncCache};
use crate::report::{Table, print_ratio};
use crate::sizes::Sizes;
use crate::workload::{Dataset, is_scan_position, scan_trace, zipf_trace};

/// One replayed cache: its name and whether its result gets a `RATIO` line.
struct Entrant {
    name: &'static str,
    peer: bool,
    cache: Box<dyn SyncCache>,
}

/// The caches replayed, each sized to `capacity` entries.
///
/// Besides the three caches compared, two variants show how sharding affects the ratio:
/// quick_cache with a single shard, and ours forced to 8 shards (our default configuration
/// picks a single shard at this capacity, because the default 16 MiB value limit means a
/// smaller shard could not hold a maximal entry).
fn entrants(capacity: usize) -> Vec<Entrant> {
    let ours_8 = Config {
        capacity: capacity as u64 * Ours::entry_charge(),
        shards: Some(8),
        limits: Limits {
            max_key_size: 1 << 10,
            max_value_size: 1 << 10,
        },
        ..Config::default()
    };
    vec![
        Entrant {
            name: "ours",
            peer: false,
            cache: Box::new(Ours::with_entries(capacity)),
        },
        Entrant {
            name: "ours_8shards",
            peer: false,
            cache: Box::new(Ours::with_config(ours_8)),
        },
        Entrant {
            name: "quick_cache",
            peer: true,
            cache: Box::new(QuickCache::with_entries(capacity)),
        },
        Entrant {
            name: "quick_cache_1shard",
            peer: true,
            cache: Box::new(QuickCache::with_shards(capacity, 1)),
        },
        Entrant {
            name: "moka_sync",
            peer: true,
            cache: Box::new(MokaSync::with_entries(capacity)),
        },
    ]
}

/// Hits of one replay: overall, and on the non-scan requests only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replay {
    /// Requests that hit.
    pub hits: u64,
    /// Requests in the trace.
    pub requests: u64,
    /// Hits among the Zipf (non-scan) requests.
    pub zipf_hits: u64,
    /// Zipf (non-scan) requests in the trace.
    pub zipf_requests: u64,
}

/// Replays `trace` on `cache` (get; on a miss, insert); `scan` gives the scan layout
/// (`every`, `len`) of a scan-polluted trace.
pub fn replay(
    cache: &dyn SyncCache,
    data: &Dataset,
    trace: &[u32],
    scan: Option<(usize, usize)>,
) -> Replay {
    let mut r = Replay {
        requests: trace.len() as u64,
        ..Replay::default()
    };
    for (pos, &k) in trace.iter().enumerate() {
        let k = k as usize;
        let is_scan = scan.is_some_and(|(every, len)| is_scan_position(pos, every, len));
        let hit = cache.get(&data.keys[k]).is_some();
        if hit {
            r.hits += 1;
        } else {
            cache.insert(&data.keys[k], data.values[k].clone());
        }
        if !is_scan {
            r.zipf_requests += 1;
            r.zipf_hits += hit as u64;
        }
    }
    r
}

/// One cache's result on one trace.
#[derive(Debug, Clone)]
pub struct HitRow {
    /// The trace (`RATIO` case name).
    pub case: &'static str,
    /// The cache.
    pub cache: &'static str,
    /// Whether this cache is a peer compared to ours.
    pub peer: bool,
    /// The replay's counts.
    pub replay: Replay,
}

impl HitRow {
    /// Hits / requests.
    pub fn ratio(&self) -> f64 {
        self.replay.hits as f64 / self.replay.requests.max(1) as f64
    }

    /// Hits / requests over the non-scan requests.
    pub fn zipf_ratio(&self) -> f64 {
        self.replay.zipf_hits as f64 / self.replay.zipf_requests.max(1) as f64
    }
}

/// Everything the hit-ratio section measured.
#[derive(Debug, Clone, Default)]
pub struct HitRatios {
    /// One row per trace and cache.
    pub rows: Vec<HitRow>,
}

/// The traces, by `RATIO` case name.
pub const CASES: [&str; 3] = ["hit_zipf0.9", "hit_zipf1.1", "hit_scan"];

/// The trace of `case` (one of [`CASES`]), with its scan layout (`every`, `len`) if any.
fn trace(case: &str, sizes: &Sizes) -> (Vec<u32>, Option<(usize, usize)>) {
    let n = sizes.hit_keys;
    match case {
        "hit_zipf0.9" => (zipf_trace(n, 0.9, sizes.hit_requests, 11), None),
        "hit_zipf1.1" => (zipf_trace(n, 1.1, sizes.hit_requests, 12), None),
        "hit_scan" => {
            let (trace, _) = scan_trace(
                n,
                0.9,
                sizes.scan_zipf_requests,
                sizes.scan_every,
                sizes.scan_len,
                13,
            );
            (trace, Some((sizes.scan_every, sizes.scan_len)))
        }
        _ => unreachable!("unknown hit-ratio case {case}"),
    }
}

/// Replays every trace on every cache.
pub fn run(sizes: &Sizes) -> HitRatios {
    let data = Dataset::new(sizes.hit_keys);
    let mut out = HitRatios::default();
    for case in CASES {
        eprintln!("hit ratio: generating {case}");
        let (trace, scan) = trace(case, sizes);
        for e in entrants(sizes.hit_capacity) {
            eprintln!("hit ratio: {case} {}", e.name);
            let replay = replay(&*e.cache, &data, &trace, scan);
            out.rows.push(HitRow {
                case,
                cache: e.name,
                peer: e.peer,
                replay,
            });
        }
    }
    out
}

impl HitRatios {
    /// Prints the table and the `RATIO` lines (ours / peer hit ratio).
    pub fn print(&self, sizes: &Sizes) {
        let mut table = Table::new(
            format!(
                "Hit ratio, capacity {} entries of a {}-key universe, single thread, insert on miss",
                sizes.hit_capacity, sizes.hit_keys
            ),
            &[
                "trace",
                "cache",
                "requests",
                "hit ratio",
                "non-scan hit ratio",
            ],
        );
        for r in &self.rows {
            table.row(vec![
                r.case.into(),
                r.cache.into(),
                r.replay.requests.to_string(),
                format!("{:.4}", r.ratio()),
                format!("{:.4}", r.zipf_ratio()),
            ]);
        }
        table.print();
        for ours in self.rows.iter().filter(|r| r.cache == "ours") {
            for peer in self.rows.iter().filter(|r| r.case == ours.case && r.peer) {
                print_ratio(ours.case, peer.cache, ours.ratio() / peer.ratio(), &[]);
            }
        }
    }
}
