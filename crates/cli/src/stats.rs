//! The `--stats` report: the backend's counters as one line on stderr.

use wasi_cache_engine::Stats;

/// One line with every counter, e.g. `wasi-cache stats: hits=31 misses=1 …`.
pub fn render(stats: &Stats) -> String {
    format!(
        "wasi-cache stats: hits={} misses={} inserts={} evictions={} expirations={} \
         rendezvous={} handoffs={} timeouts={} entries={} bytes={}",
        stats.hits,
        stats.misses,
        stats.inserts,
        stats.evictions,
        stats.expirations,
        stats.rendezvous_waits,
        stats.handoffs,
        stats.timeouts,
        stats.entries,
        stats.bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_every_counter() {
        let mut stats = Stats::default();
        stats.hits = 31;
        stats.misses = 1;
        stats.rendezvous_waits = 31;
        let line = render(&stats);
        assert!(!line.contains('\n'));
        for field in [
            "hits=31",
            "misses=1",
            "inserts=0",
            "evictions=0",
            "expirations=0",
            "rendezvous=31",
            "handoffs=0",
            "timeouts=0",
        ] {
            assert!(line.contains(field), "{line} lacks {field}");
        }
    }
}
