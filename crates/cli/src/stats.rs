//! The `--stats` report: the backend's counters as one line on stderr.

use wasi_cache_engine::Stats;

/// One line with every counter, e.g. `wasi-cache stats: hits=31 misses=1 …`; a `remote`
/// backend (Redis) adds its round trips and reconnects.
pub fn render(stats: &Stats, remote: bool) -> String {
    let line = format!(
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
    );
    if remote {
        format!(
            "{line} round_trips={} reconnects={}",
            stats.round_trips, stats.reconnects
        )
    } else {
        line
    }
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
        let line = render(&stats, false);
        assert!(!line.contains('\n'));
        assert!(!line.contains("round_trips"), "{line}");
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

    #[test]
    fn remote_backends_add_round_trips_and_reconnects() {
        let mut stats = Stats::default();
        stats.round_trips = 12;
        stats.reconnects = 1;
        let line = render(&stats, true);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("wasi-cache stats: hits=0 "), "{line}");
        assert!(line.ends_with(" round_trips=12 reconnects=1"), "{line}");
    }
}
