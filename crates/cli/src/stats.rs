//! The backend's counters, named once: for the `--stats` line on stderr ([`render`]) and for
//! the metrics `serve` exports ([`fields`]).

use wasi_cache_engine::Stats;

/// Whether a figure only grows (since start-up) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count since start-up.
    Counter,
    /// A level now.
    Gauge,
}

/// One of the backend's figures.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its key in the `--stats` line.
    pub key: &'static str,
    /// Its Prometheus metric name (a counter's `_total` suffix is added by the encoder).
    pub metric: &'static str,
    /// What it counts, for the metric's HELP.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its value in the snapshot.
    pub value: u64,
}

/// Every figure of `stats`; a `remote` backend (Redis) adds its round trips, reconnects and
/// near-cache counters (with a near cache, `entries` and `bytes` are the near cache's).
pub fn fields(stats: &Stats, remote: bool) -> Vec<Field> {
    use Kind::{Counter, Gauge};
    let field = |key, metric, help, kind, value| Field {
        key,
        metric,
        help,
        kind,
        value,
    };
    #[rustfmt::skip]
    let mut fields = vec![
        field("hits", "wasi_cache_hits", "Lookups (get, exists, get-or-set) that found a live value", Counter, stats.hits),
        field("misses", "wasi_cache_misses", "Lookups that found nothing", Counter, stats.misses),
        field("inserts", "wasi_cache_inserts", "Values stored, by set or by a vacancy fill", Counter, stats.inserts),
        field("fills", "wasi_cache_fills", "Vacancies filled by their holder", Counter, stats.fills),
        field("evictions", "wasi_cache_evictions", "Entries removed to stay within capacity", Counter, stats.evictions),
        field("expirations", "wasi_cache_expirations", "Entries removed because their TTL passed", Counter, stats.expirations),
        field("rendezvous", "wasi_cache_rendezvous_waits", "get-or-set callers that waited for another caller's fill", Counter, stats.rendezvous_waits),
        field("handoffs", "wasi_cache_handoffs", "Vacancies handed to a waiter after being dropped unfilled", Counter, stats.handoffs),
        field("timeouts", "wasi_cache_vacancy_timeouts", "Vacancies taken from their holder when the vacancy timeout passed", Counter, stats.timeouts),
        field("entries", "wasi_cache_entries", "Entries resident in the embedded engine (the near cache, with --redis)", Gauge, stats.entries),
        field("bytes", "wasi_cache_bytes", "Bytes resident in the embedded engine (the near cache, with --redis; keys, values, overhead)", Gauge, stats.bytes),
    ];
    if remote {
        #[rustfmt::skip]
        fields.push(field("round_trips", "wasi_cache_redis_round_trips", "Commands sent to Redis", Counter, stats.round_trips));
        #[rustfmt::skip]
        fields.push(field("reconnects", "wasi_cache_redis_reconnects", "Connections to Redis restored after a failure", Counter, stats.reconnects));
        #[rustfmt::skip]
        fields.push(field("near_hits", "wasi_cache_near_hits", "Lookups answered by the near cache, without a round trip", Counter, stats.near_hits));
        #[rustfmt::skip]
        fields.push(field("near_misses", "wasi_cache_near_misses", "Lookups the near cache sent on to Redis", Counter, stats.near_misses));
        #[rustfmt::skip]
        fields.push(field("invalidations", "wasi_cache_near_invalidations", "Keys (and flushes) Redis told the near cache to drop", Counter, stats.invalidations));
    }
    fields
}

/// One line with every counter, e.g. `wasi-cache stats: hits=31 misses=1 …`; a `remote`
/// backend (Redis) adds its round trips, reconnects and near-cache counters.
pub fn render(stats: &Stats, remote: bool) -> String {
    let pairs: Vec<String> = fields(stats, remote)
        .iter()
        .map(|field| format!("{}={}", field.key, field.value))
        .collect();
    format!("wasi-cache stats: {}", pairs.join(" "))
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
        stats.fills = 1;
        let line = render(&stats, false);
        assert!(!line.contains('\n'));
        assert!(!line.contains("round_trips"), "{line}");
        for field in [
            "hits=31",
            "misses=1",
            "inserts=0",
            "fills=1",
            "evictions=0",
            "expirations=0",
            "rendezvous=31",
            "handoffs=0",
            "timeouts=0",
            "entries=0",
            "bytes=0",
        ] {
            assert!(line.contains(field), "{line} lacks {field}");
        }
    }

    #[test]
    fn remote_backends_add_round_trips_reconnects_and_the_near_cache() {
        let mut stats = Stats::default();
        stats.round_trips = 12;
        stats.reconnects = 1;
        stats.near_hits = 7;
        stats.near_misses = 2;
        stats.invalidations = 3;
        let line = render(&stats, true);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("wasi-cache stats: hits=0 "), "{line}");
        assert!(
            line.ends_with(
                " round_trips=12 reconnects=1 near_hits=7 near_misses=2 invalidations=3"
            ),
            "{line}"
        );
    }

    #[test]
    fn metric_names_are_distinct_and_prefixed() {
        let fields = fields(&Stats::default(), true);
        let mut names: Vec<_> = fields.iter().map(|field| field.metric).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len());
        assert!(names.iter().all(|name| name.starts_with("wasi_cache_")));
    }
}
