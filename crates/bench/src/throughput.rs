//! Throughput: operations per second of pre-filled caches under Zipf(1.0) traffic, get-only
//! and 90/10 get/insert, on 1 and 2 threads.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::adapters::{Contender, Kind};
use crate::report::{Table, median, print_ratio, si};
use crate::sizes::Sizes;
use crate::workload::{Dataset, INSERT_BIT, op_trace};

/// Zipf exponent of the throughput traces.
pub const ZIPF_S: f64 = 1.0;

/// Share of inserts in the mixed traces.
pub const INSERT_SHARE: f64 = 0.10;

/// Capacity headroom over the universe, so hashing imbalance between shards evicts nothing.
pub const HEADROOM: f64 = 1.2;

/// One throughput case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Name used in tables and `RATIO` lines.
    pub name: &'static str,
    /// Threads running the trace concurrently (each its own trace).
    pub threads: usize,
    /// Whether 10 % of the operations are inserts.
    pub mixed: bool,
}

/// The cases, in the order they run.
pub const CASES: [Case; 4] = [
    Case {
        name: "get_1t",
        threads: 1,
        mixed: false,
    },
    Case {
        name: "get_2t",
        threads: 2,
        mixed: false,
    },
    Case {
        name: "mixed90_1t",
        threads: 1,
        mixed: true,
    },
    Case {
        name: "mixed90_2t",
        threads: 2,
        mixed: true,
    },
];

/// The outcome of one case on one cache.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The cache.
    pub kind: Kind,
    /// The case's name.
    pub case: &'static str,
    /// Median operations per second over the timed runs.
    pub median: f64,
    /// Best operations per second over the timed runs.
    pub best: f64,
    /// Share of gets that hit (checks that the pre-fill held).
    pub hit_rate: f64,
}

/// Everything the throughput section measured.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    /// One measurement per cache and case.
    pub measurements: Vec<Measurement>,
    /// Per cache: resident entries after the pre-fill, and a note (e.g. shard count).
    pub fills: Vec<(Kind, u64, String)>,
}

/// Runs one timed pass of `case` on `cache`: returns ops per second and get hits.
fn timed_run(cache: &Contender, data: &Dataset, traces: &[Vec<u32>], case: Case) -> (f64, u64) {
    let barrier = Barrier::new(case.threads);
    let results: Vec<(Duration, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = traces[..case.threads]
            .iter()
            .map(|trace| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let hits = cache.run_ops(data, trace, case.mixed);
                    (start.elapsed(), hits)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let wall = results.iter().map(|r| r.0).max().unwrap_or_default();
    let ops: usize = traces[..case.threads].iter().map(Vec::len).sum();
    let hits = results.iter().map(|r| r.1).sum();
    (ops as f64 / wall.as_secs_f64(), hits)
}

/// Gets in the first `threads` traces (all operations unless `mixed`).
fn gets(traces: &[Vec<u32>], case: Case) -> u64 {
    traces[..case.threads]
        .iter()
        .map(|t| {
            if case.mixed {
                t.iter().filter(|&&op| op & INSERT_BIT == 0).count() as u64
            } else {
                t.len() as u64
            }
        })
        .sum()
}

/// Runs every case on every cache of `kinds` (all built and pre-filled first).
pub fn run(sizes: &Sizes, kinds: &[Kind]) -> Throughput {
    let n = sizes.throughput_keys;
    eprintln!(
        "throughput: generating {n} keys and 2 x {} ops",
        sizes.ops_per_thread
    );
    let data = Dataset::new(n);
    let order = data.shuffled_indices(7);
    let traces: Vec<Vec<u32>> = (0..2)
        .map(|t| op_trace(n, ZIPF_S, sizes.ops_per_thread, INSERT_SHARE, 100 + t))
        .collect();
    let capacity = (n as f64 * HEADROOM) as usize;
    let mut out = Throughput::default();
    let caches: Vec<Contender> = kinds
        .iter()
        .map(|&kind| {
            eprintln!("throughput: pre-filling {}", kind.name());
            let cache = Contender::new(kind, capacity);
            cache.insert_all(
                order
                    .iter()
                    .map(|&i| (data.keys[i as usize], data.values[i as usize].clone())),
            );
            let note = match &cache {
                Contender::Ours(c) => format!("{} shards", c.engine().shard_count()),
                Contender::QuickCache(c) => format!("{} shards", c.inner().num_shards()),
                _ => String::new(),
            };
            out.fills.push((kind, cache.entries(), note));
            cache
        })
        .collect();
    for case in CASES {
        eprintln!("throughput: {}", case.name);
        for cache in &caches {
            timed_run(cache, &data, &traces, case); // warm-up
        }
        // Runs are interleaved (each round runs every cache once, starting with a different
        // one), so load from elsewhere on the machine spreads over all caches alike.
        let mut rates = vec![Vec::with_capacity(sizes.runs); caches.len()];
        let mut hits = vec![0; caches.len()];
        for run in 0..sizes.runs {
            for j in 0..caches.len() {
                let c = (run + j) % caches.len();
                let (rate, h) = timed_run(&caches[c], &data, &traces, case);
                rates[c].push(rate);
                hits[c] += h;
            }
        }
        let gets = gets(&traces, case) * sizes.runs as u64;
        for (c, cache) in caches.iter().enumerate() {
            out.measurements.push(Measurement {
                kind: cache.kind(),
                case: case.name,
                median: median(&rates[c]),
                best: rates[c].iter().copied().fold(0.0, f64::max),
                hit_rate: hits[c] as f64 / gets.max(1) as f64,
            });
        }
    }
    out
}

impl Throughput {
    /// The measurement of `kind` on `case`, if run.
    pub fn get(&self, kind: Kind, case: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.kind == kind && m.case == case)
    }

    /// Prints the table and the `RATIO` lines (ours / peer best ops per second: the best run is
    /// the one least disturbed by other load on the machine).
    pub fn print(&self, sizes: &Sizes) {
        let mut fills = Table::new(
            format!(
                "Throughput pre-fill ({} keys, capacity {} x {HEADROOM} entries)",
                sizes.throughput_keys, sizes.throughput_keys
            ),
            &["cache", "resident entries", "note"],
        );
        for (kind, entries, note) in &self.fills {
            fills.row(vec![kind.name().into(), entries.to_string(), note.clone()]);
        }
        fills.print();
        let mut table = Table::new(
            format!(
                "Throughput, Zipf({ZIPF_S}) over {} keys, {} ops/thread, {} timed runs after a warm-up",
                sizes.throughput_keys, sizes.ops_per_thread, sizes.runs
            ),
            &["cache", "case", "ops/s median", "ops/s best", "get hit %"],
        );
        let mut rows: Vec<&Measurement> = self.measurements.iter().collect();
        rows.sort_by_key(|m| Kind::ALL.iter().position(|&k| k == m.kind));
        for m in rows {
            table.row(vec![
                m.kind.name().into(),
                m.case.into(),
                si(m.median),
                si(m.best),
                format!("{:.2}", m.hit_rate * 100.0),
            ]);
        }
        table.print();
        for case in CASES {
            let Some(ours) = self.get(Kind::Ours, case.name) else {
                continue;
            };
            for m in self
                .measurements
                .iter()
                .filter(|m| m.case == case.name && m.kind != Kind::Ours)
            {
                print_ratio(case.name, m.kind.name(), ours.best / m.best, &[]);
            }
        }
    }
}
