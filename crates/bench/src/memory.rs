//! Bytes per entry: each cache is filled in a fresh child process (the bench binary re-run
//! with [`CHILD_FLAG`]), and the growth of its resident set is divided by the entries held.

use std::process::Command;

use crate::adapters::{Contender, Kind};
use crate::report::{Table, print_ratio};
use crate::sizes::Sizes;
use crate::throughput::HEADROOM;
use crate::workload::{key_of, value_of};

/// Argument that makes the bench binary act as a memory child: `CHILD_FLAG <cache> <entries>`.
pub const CHILD_FLAG: &str = "--memory-child";

/// Page size assumed when converting `/proc/self/statm` pages to bytes.
pub const PAGE_SIZE: u64 = 4096;

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident field");
    pages * PAGE_SIZE
}

/// What a memory child measured.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// The cache.
    pub kind: Kind,
    /// Growth of the resident set over filling the cache, in bytes.
    pub rss_delta: u64,
    /// Entries the cache held at the end.
    pub entries: u64,
    /// Bytes the cache accounts for its entries (ours only; 0 for peers).
    pub accounted: u64,
}

impl Footprint {
    /// Resident bytes per held entry.
    pub fn bytes_per_entry(&self) -> f64 {
        self.rss_delta as f64 / self.entries.max(1) as f64
    }

    /// The line a child prints for its parent.
    fn to_line(self) -> String {
        format!(
            "MEMORY cache={} rss_delta={} entries={} accounted={}",
            self.kind.name(),
            self.rss_delta,
            self.entries,
            self.accounted
        )
    }

    /// Parses a child's output line.
    fn from_line(line: &str) -> Option<Footprint> {
        let mut fields = line.strip_prefix("MEMORY ")?.split(' ');
        let mut next = |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix('=');
        let kind = Kind::parse(next("cache")?)?;
        Some(Footprint {
            kind,
            rss_delta: next("rss_delta")?.parse().ok()?,
            entries: next("entries")?.parse().ok()?,
            accounted: next("accounted")?.parse().ok()?,
        })
    }
}

/// The child side: fills a fresh cache of `kind` with `n` entries and prints its footprint.
///
/// The baseline is taken before the cache is built, and every key and value is created during
/// the fill, so the delta covers the cache's structures, keys and values.
pub fn run_child(kind: Kind, n: usize) {
    let before = rss_bytes();
    let cache = Contender::new(kind, (n as f64 * HEADROOM) as usize);
    cache.insert_all((0..n as u64).map(|i| (key_of(i), value_of(i))));
    let entries = cache.entries();
    let after = rss_bytes();
    let accounted = match &cache {
        Contender::Ours(c) => c.engine().stats().bytes,
        _ => 0,
    };
    let f = Footprint {
        kind,
        rss_delta: after.saturating_sub(before),
        entries,
        accounted,
    };
    println!("{}", f.to_line());
    drop(cache);
}

/// The parent side: measures every cache of `kinds` in its own child process.
pub fn run(sizes: &Sizes, kinds: &[Kind]) -> Vec<Footprint> {
    let exe = std::env::current_exe().expect("path of the bench binary");
    kinds
        .iter()
        .map(|&kind| {
            eprintln!("memory: {}", kind.name());
            let out = Command::new(&exe)
                .arg(CHILD_FLAG)
                .arg(kind.name())
                .arg(sizes.memory_entries.to_string())
                .output()
                .expect("run memory child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "memory child for {} failed: {}",
                kind.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
                .lines()
                .find_map(Footprint::from_line)
                .unwrap_or_else(|| panic!("no MEMORY line from child: {stdout}"))
        })
        .collect()
}

/// Prints the table and the `RATIO` lines (peer / ours bytes per entry).
pub fn print(sizes: &Sizes, footprints: &[Footprint]) {
    let mut table = Table::new(
        format!(
            "Bytes per entry, {} x (16-byte key + 64-byte value), RSS delta in a fresh process",
            sizes.memory_entries
        ),
        &[
            "cache",
            "entries held",
            "RSS delta MiB",
            "bytes/entry",
            "accounted bytes/entry",
        ],
    );
    for f in footprints {
        table.row(vec![
            f.kind.name().into(),
            f.entries.to_string(),
            format!("{:.1}", f.rss_delta as f64 / (1 << 20) as f64),
            format!("{:.1}", f.bytes_per_entry()),
            if f.accounted > 0 {
                format!("{:.1}", f.accounted as f64 / f.entries.max(1) as f64)
            } else {
                "-".into()
            },
        ]);
    }
    table.print();
    let Some(ours) = footprints.iter().find(|f| f.kind == Kind::Ours) else {
        return;
    };
    for f in footprints.iter().filter(|f| f.kind != Kind::Ours) {
        print_ratio(
            "bytes_per_entry",
            f.kind.name(),
            f.bytes_per_entry() / ours.bytes_per_entry(),
            &[],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprint_lines_round_trip() {
        let f = Footprint {
            kind: Kind::MokaSync,
            rss_delta: 123,
            entries: 4,
            accounted: 0,
        };
        let g = Footprint::from_line(&f.to_line()).unwrap();
        assert_eq!((g.kind, g.rss_delta, g.entries), (Kind::MokaSync, 123, 4));
    }

    #[test]
    fn rss_is_positive() {
        assert!(rss_bytes() > 0);
    }
}
