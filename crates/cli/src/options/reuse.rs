//! `serve`'s options for reusing an instance for more than one request ([`ReuseArgs`]), with
//! `wasmtime serve`'s names and defaults, and what they come to for each flavour ([`Reuse`]).

use std::time::Duration;

use clap::Args;

use super::count::parse_count;
use super::duration::parse_duration;

/// Requests one WASI 0.2 instance serves by default: one, each request in a fresh instance.
pub const P2_REUSE_COUNT: usize = 1;
/// Requests one WASI 0.3 instance serves by default, as `wasmtime serve`.
pub const P3_REUSE_COUNT: usize = 128;
/// Requests one WASI 0.3 instance serves at once by default, as `wasmtime serve`.
pub const P3_CONCURRENT_REUSE_COUNT: usize = 16;

/// How instances are reused: `wasmtime serve`'s options.
#[derive(Debug, Clone, Args)]
pub struct ReuseArgs {
    /// Most requests one instance serves before it is dropped [default: 1 for a WASI 0.2
    /// component, 128 for a WASI 0.3 one].
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_instance_reuse_count: Option<usize>,

    /// Most requests one instance serves at once [default: 16 for a WASI 0.3 component; a WASI
    /// 0.2 instance always serves one at a time].
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_instance_concurrent_reuse_count: Option<usize>,

    /// How long an instance with no request is kept for the next one before it is dropped.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub idle_instance_timeout: Duration,
}

/// What [`ReuseArgs`] come to for a component of one flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Most requests an instance serves in its life.
    pub max_count: usize,
    /// Most requests an instance serves at once.
    pub max_concurrent: usize,
    /// How long an idle instance is kept.
    pub idle_timeout: Duration,
}

impl ReuseArgs {
    /// The reuse of a WASI 0.3 component's instances (`p3`), or of a WASI 0.2 one's, which
    /// cannot be called again before a call returns.
    pub fn reuse(&self, p3: bool) -> Reuse {
        let (count, concurrent) = if p3 {
            (P3_REUSE_COUNT, P3_CONCURRENT_REUSE_COUNT)
        } else {
            (P2_REUSE_COUNT, 1)
        };
        let max_count = self.max_instance_reuse_count.unwrap_or(count);
        let max_concurrent = match p3 {
            true => self
                .max_instance_concurrent_reuse_count
                .unwrap_or(concurrent),
            false => 1,
        };
        Reuse {
            max_count,
            max_concurrent: max_concurrent.min(max_count),
            idle_timeout: self.idle_instance_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Reuse, ReuseArgs};

    #[test]
    fn defaults_follow_the_flavour() {
        let args = ReuseArgs {
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: Duration::from_secs(1),
        };
        let second = Duration::from_secs(1);
        let reuse = |max_count, max_concurrent| Reuse {
            max_count,
            max_concurrent,
            idle_timeout: second,
        };
        assert_eq!(args.reuse(false), reuse(1, 1));
        assert_eq!(args.reuse(true), reuse(128, 16));
        let args = ReuseArgs {
            max_instance_reuse_count: Some(8),
            max_instance_concurrent_reuse_count: Some(32),
            ..args
        };
        assert_eq!(args.reuse(false), reuse(8, 1));
        assert_eq!(args.reuse(true), reuse(8, 8));
    }
}
