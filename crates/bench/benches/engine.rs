//! The benchmark binary: throughput, hit ratio, bytes per entry and stampede of our engine
//! against moka and quick_cache, printed as tables and `RATIO` lines.
//!
//! `cargo bench -p wasi-cache-bench` runs everything at full size; add `-- --quick` (or set
//! `BENCH_QUICK=1`) for a smoke run, and name sections (`throughput`, `hit`, `memory`,
//! `stampede`) after `--` to run only those; `--caches=ours,quick_cache` limits the throughput
//! and memory sections to some caches.

use wasi_cache_bench::adapters::{Kind, Ours};
use wasi_cache_bench::memory::CHILD_FLAG;
use wasi_cache_bench::sizes::Sizes;
use wasi_cache_bench::{hit_ratio, memory, stampede, throughput};

const SECTIONS: [&str; 4] = ["throughput", "hit", "memory", "stampede"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == CHILD_FLAG) {
        let kind = args
            .get(pos + 1)
            .and_then(|k| Kind::parse(k))
            .expect("memory child: cache name");
        let n = args
            .get(pos + 2)
            .and_then(|n| n.parse().ok())
            .expect("memory child: entry count");
        memory::run_child(kind, n);
        return;
    }
    let sizes = Sizes::from_args_and_env(&args);
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| SECTIONS.contains(a))
        .collect();
    let wants = |s: &str| chosen.is_empty() || chosen.contains(&s);
    let kinds: Vec<Kind> = match args.iter().find_map(|a| a.strip_prefix("--caches=")) {
        Some(list) => list
            .split(',')
            .map(|k| Kind::parse(k).unwrap_or_else(|| panic!("unknown cache {k}")))
            .collect(),
        None => Kind::ALL.to_vec(),
    };
    println!(
        "# wasi-cache engine benchmark ({} mode, {} cores available)",
        if sizes.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "# keys 16 B, values 64 B (bytes::Bytes); our entry charge {} B; peers hash with foldhash::fast::RandomState",
        Ours::entry_charge()
    );
    if wants("throughput") {
        throughput::run(&sizes, &kinds).print(&sizes);
    }
    if wants("hit") {
        hit_ratio::run(&sizes).print(&sizes);
    }
    if wants("memory") {
        memory::print(&sizes, &memory::run(&sizes, &kinds));
    }
    if wants("stampede") {
        stampede::print(&sizes, &stampede::run(&sizes));
    }
}
