//! Stampede: many concurrent get-or-set callers on one missing key whose fill takes 10 ms;
//! counts how many fills ran and how long until every caller had the value.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasi_cache_engine::GetOrSet;

use crate::adapters::{Kind, MokaFuture, Ours, PeerKey, QuickCache};
use crate::report::{Table, median, print_ratio};
use crate::sizes::Sizes;
use crate::workload::{key_of, value_of};

/// How long one fill takes (a Tokio sleep before the value is stored).
pub const FILL_DELAY: Duration = Duration::from_millis(10);

/// Worker threads of the multi-thread runtime the callers run on.
pub const WORKERS: usize = 2;

/// The caches compared, each through its own single-flight API.
pub const KINDS: [Kind; 3] = [Kind::Ours, Kind::MokaFuture, Kind::QuickCache];

/// One cache's stampede results.
#[derive(Debug, Clone)]
pub struct Stampede {
    /// The cache.
    pub kind: Kind,
    /// Time until all callers resolved, per timed round, in seconds.
    pub latencies: Vec<f64>,
    /// Fills run, per timed round.
    pub fills: Vec<usize>,
}

impl Stampede {
    /// Median time until all callers resolved, in seconds.
    pub fn median_latency(&self) -> f64 {
        median(&self.latencies)
    }

    /// Mean fills per round.
    pub fn mean_fills(&self) -> f64 {
        self.fills.iter().sum::<usize>() as f64 / self.fills.len().max(1) as f64
    }
}

/// A get-or-set of one key: resolves to the key's value, filling it (and counting the fill in
/// the counter) when this caller is the one chosen to.
type Caller =
    Box<dyn Fn(Arc<AtomicUsize>) -> std::pin::Pin<Box<dyn Future<Output = Bytes> + Send>>>;

/// The get-or-set caller of `kind` for `key`, whose fill stores `value`.
fn caller(kind: Kind, key: [u8; 16], value: Bytes) -> Caller {
    async fn fill(fills: &AtomicUsize, value: &Bytes) -> Bytes {
        fills.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(FILL_DELAY).await;
        value.clone()
    }
    match kind {
        Kind::Ours => {
            let cache = Ours::with_entries(1_000);
            let ns = Ours::namespace();
            let engine = cache.engine().clone();
            Box::new(move |fills| {
                let (engine, ns, value) = (engine.clone(), ns.clone(), value.clone());
                Box::pin(async move {
                    match engine.get_or_set(&ns, &key).await.expect("get_or_set") {
                        GetOrSet::Occupied(v) => v,
                        GetOrSet::Vacant(vacancy) => {
                            let v = fill(&fills, &value).await;
                            vacancy.fill(v.clone(), None).await.expect("fill");
                            v
                        }
                    }
                })
            })
        }
        Kind::MokaFuture => {
            let cache = Arc::new(MokaFuture::with_entries(1_000));
            Box::new(move |fills| {
                let (cache, value) = (cache.clone(), value.clone());
                Box::pin(async move {
                    cache
                        .inner()
                        .get_with(key[..].into(), async { fill(&fills, &value).await })
                        .await
                })
            })
        }
        Kind::QuickCache => {
            let cache = Arc::new(QuickCache::with_entries(1_000));
            Box::new(move |fills| {
                let (cache, value) = (cache.clone(), value.clone());
                Box::pin(async move {
                    // Its async guard API wants `Q: ToOwned<Owned = Key>`, so the lookup key
                    // is an owned `Box<[u8]>` here (`[u8]` would own a `Vec<u8>`).
                    let key: PeerKey = key[..].into();
                    match cache.inner().get_value_or_guard_async(&key).await {
                        Ok(v) => v,
                        Err(guard) => {
                            let v = fill(&fills, &value).await;
                            let _ = guard.insert(v.clone());
                            v
                        }
                    }
                })
            })
        }
        Kind::MokaSync => unreachable!("moka_sync has no async single-flight"),
    }
}

/// One stampede: `callers` tasks at once on a missing key; returns (seconds, fills).
fn round(
    rt: &tokio::runtime::Runtime,
    call: &Caller,
    callers: usize,
    value: &Bytes,
) -> (f64, usize) {
    let fills = Arc::new(AtomicUsize::new(0));
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| tokio::spawn(call(fills.clone())))
            .collect();
        for task in tasks {
            let got = task.await.expect("caller task");
            assert_eq!(&got, value, "a caller resolved a wrong value");
        }
        start.elapsed()
    });
    (elapsed.as_secs_f64(), fills.load(Ordering::Relaxed))
}

/// Runs one warm-up and `sizes.stampede_rounds` timed stampedes per cache, each on a new key.
pub fn run(sizes: &Sizes) -> Vec<Stampede> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("tokio runtime");
    KINDS
        .iter()
        .map(|&kind| {
            eprintln!("stampede: {}", kind.name());
            let mut out = Stampede {
                kind,
                latencies: Vec::new(),
                fills: Vec::new(),
            };
            for r in 0..=sizes.stampede_rounds {
                let id = u64::MAX / 2 + r as u64;
                let value = value_of(id);
                let call = caller(kind, key_of(id), value.clone());
                let (secs, fills) = round(&rt, &call, sizes.stampede_callers, &value);
                if r > 0 {
                    out.latencies.push(secs);
                    out.fills.push(fills);
                }
            }
            out
        })
        .collect()
}

/// Prints the table and the `RATIO` lines (peer / ours latency; fills alongside).
pub fn print(sizes: &Sizes, results: &[Stampede]) {
    let mut table = Table::new(
        format!(
            "Stampede: {} concurrent get-or-set on one missing key, {} ms fill, {WORKERS} workers, median of {} rounds",
            sizes.stampede_callers,
            FILL_DELAY.as_millis(),
            sizes.stampede_rounds
        ),
        &["cache", "API", "all resolved ms", "fills/round"],
    );
    for s in results {
        let api = match s.kind {
            Kind::Ours => "get_or_set",
            Kind::MokaFuture => "get_with",
            Kind::QuickCache => "get_value_or_guard_async",
            Kind::MokaSync => "-",
        };
        table.row(vec![
            s.kind.name().into(),
            api.into(),
            format!("{:.2}", s.median_latency() * 1e3),
            format!("{:.2}", s.mean_fills()),
        ]);
    }
    table.print();
    let Some(ours) = results.iter().find(|s| s.kind == Kind::Ours) else {
        return;
    };
    for s in results.iter().filter(|s| s.kind != Kind::Ours) {
        let fills = [
            ("fills_ours", format!("{:.2}", ours.mean_fills())),
            ("fills_peer", format!("{:.2}", s.mean_fills())),
        ];
        print_ratio(
            "stampede_latency",
            s.kind.name(),
            s.median_latency() / ours.median_latency(),
            &fills,
        );
        print_ratio(
            "stampede_fills",
            s.kind.name(),
            s.mean_fills() / ours.mean_fills().max(f64::MIN_POSITIVE),
            &fills,
        );
    }
}
