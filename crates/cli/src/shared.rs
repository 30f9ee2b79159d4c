//! What every instance of a server shares beyond the cache ([`Shared`]): the outbound policy
//! of its outgoing requests (`--allow-outbound`) and the pool of writes in flight, those that
//! outlive their instance included (`--max-pending-writes`, `--max-pending-write-bytes`);
//! their options ([`SharedArgs`]) and their metrics ([`Shared::register_metrics`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use wasi_cache_host::WritePool;

use crate::options::count::parse_count;
use crate::options::size::parse_positive_size_usize;
use crate::outbound::{Outbound, Pattern, parse_pattern};
use crate::outgoing::Hooks;

/// `serve`'s options on what its instances share.
#[derive(Debug, Clone, Args)]
pub struct SharedArgs {
    /// Where the component's outgoing HTTP requests may go: a host name (`*.NAME` for the
    /// names below it) or an IP address, with `:PORT` or any port; an IP range (`10.0.0.0/8`);
    /// `public` (every address but loopback, private, link-local — cloud metadata —,
    /// unspecified, multicast and reserved ones, and the admin endpoint); `*` (anywhere);
    /// `none`. Checked on the address a request connects to, after name resolution. Repeat it
    /// for several; the list replaces the default, `public`. A refused request fails with the
    /// wasi:http error `destination-IP-prohibited` (or `HTTP-request-denied`).
    #[arg(long = "allow-outbound", value_name = "PATTERN", value_parser = parse_pattern)]
    pub allow_outbound: Vec<Pattern>,

    /// Most cache writes (`set`, `delete`) in flight at once across all instances, those that
    /// outlived their instance (which keep running until done) included; a write beyond it
    /// fails at its call with an error.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = parse_count)]
    pub max_pending_writes: usize,

    /// Most bytes (keys and values) the writes in flight hold at once across all instances; a
    /// `set` whose value would go beyond it fails with an error.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "256MiB",
        value_parser = parse_positive_size_usize
    )]
    pub max_pending_write_bytes: usize,
}

impl SharedArgs {
    /// What the instances of a server with these options share; `admin` is the admin
    /// endpoint's bound address, which the default policy refuses.
    pub fn shared(&self, admin: Option<SocketAddr>) -> Shared {
        let outbound = Outbound::new(&self.allow_outbound, admin.into_iter().collect());
        Shared {
            hooks: Hooks {
                outbound: Arc::new(outbound),
            },
            write_pool: Some(WritePool::new(
                self.max_pending_writes,
                self.max_pending_write_bytes,
            )),
        }
    }
}

/// What a server's instances share (a `run`'s one instance: the defaults, and no write pool).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// How their outgoing requests are sent (the outbound policy).
    pub hooks: Hooks,
    /// The pool of their writes in flight.
    pub write_pool: Option<Arc<WritePool>>,
}

impl Shared {
    /// Registers the outbound denials and the write pool's figures on `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "wasi_cache_outbound_denied",
            "Outgoing HTTP requests of the component refused by --allow-outbound",
            self.hooks.outbound.denied().clone(),
        );
        if let Some(pool) = &self.write_pool {
            registry.register_collector(Box::new(PoolCollector(pool.clone())));
        }
    }
}

/// Reads the write pool's figures at each scrape.
struct PoolCollector(Arc<WritePool>);

impl fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolCollector").finish_non_exhaustive()
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let pool = &self.0;
        let gauges = [
            (
                "wasi_cache_pending_writes",
                "Cache writes in flight across all instances (--max-pending-writes)",
                pool.writes(),
            ),
            (
                "wasi_cache_pending_write_bytes",
                "Bytes of keys and values the writes in flight hold (--max-pending-write-bytes)",
                pool.bytes(),
            ),
            (
                "wasi_cache_orphan_writes",
                "Cache writes in flight whose instance has ended",
                pool.orphans(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let refused = ConstCounter::new(pool.refused());
        let metric = encoder.encode_descriptor(
            "wasi_cache_pending_writes_refused",
            "Cache writes refused because the pool of writes in flight was full",
            None,
            refused.metric_type(),
        )?;
        refused.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use clap::Parser;

    use crate::commands::{Cli, Command};

    fn serve(options: &[&str]) -> Result<super::SharedArgs, clap::Error> {
        let argv = [&["wasi-cache", "serve"][..], options, &["p.wasm"]].concat();
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => Ok(args.shared),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn options_and_their_defaults() {
        let args = serve(&[]).unwrap();
        assert!(args.allow_outbound.is_empty());
        assert_eq!(args.max_pending_writes, 10_000);
        assert_eq!(args.max_pending_write_bytes, 256 << 20);
        let admin: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let shared = args.shared(Some(admin));
        // The default policy: public addresses, not loopback, not the admin endpoint.
        let outbound = &shared.hooks.outbound;
        assert!(outbound.allows("example.com", "8.8.8.8:80".parse().unwrap()));
        assert!(!outbound.allows("x", admin));
        let pool = shared.write_pool.unwrap();
        assert_eq!((pool.max_writes(), pool.max_bytes()), (10_000, 256 << 20));

        let args = serve(&[
            "--allow-outbound",
            "127.0.0.1:9000",
            "--allow-outbound",
            "*.internal",
            "--max-pending-writes",
            "8",
            "--max-pending-write-bytes",
            "1MiB",
        ])
        .unwrap();
        let shown: Vec<_> = args.allow_outbound.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1:9000", "*.internal"]);
        assert_eq!(
            (args.max_pending_writes, args.max_pending_write_bytes),
            (8, 1 << 20)
        );
        for bad in [
            &["--allow-outbound", "10.0.0.0/40"][..],
            &["--allow-outbound", "http://x"],
            &["--max-pending-writes", "0"],
            &["--max-pending-write-bytes", "0"],
        ] {
            let err = serve(bad).unwrap_err().to_string();
            assert!(err.contains("invalid value"), "{bad:?}: {err}");
        }
    }
}
