//! A property of the near cache, against a private `redis-server`: however sets, deletes, TTL-0
//! sets and reads from two hosts (both with a near cache) interleave, some of them concurrent,
//! no read returns a value older than the last write acknowledged before it started, allowing
//! the invalidation bound (a write by the other host acknowledged less than the bound before the
//! read may not be seen yet). A host's own writes are seen by its next read, bound or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis::{RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisServer;

/// The invalidation bound the issue sets.
const BOUND: Duration = Duration::from_millis(100);
/// Keys the operations share (few, so that they collide).
const KEYS: usize = 3;

/// One step of a case.
#[derive(Debug, Clone)]
enum Op {
    /// `host` sets `key` to a fresh value.
    Set { host: usize, key: usize },
    /// `host` deletes `key`.
    Delete { host: usize, key: usize },
    /// `host` sets `key` with TTL 0 (never visible: a delete).
    SetZeroTtl { host: usize, key: usize },
    /// `host` reads `key`.
    Read { host: usize, key: usize },
    /// `reader` reads `key` while `writer` sets it to a fresh value.
    ReadDuringSet {
        reader: usize,
        writer: usize,
        key: usize,
    },
    /// Nothing for this many milliseconds (beyond the bound, every read must be fresh).
    Pause(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let host = 0..2usize;
    let key = 0..KEYS;
    prop_oneof![
        4 => (host.clone(), key.clone()).prop_map(|(host, key)| Op::Set { host, key }),
        1 => (host.clone(), key.clone()).prop_map(|(host, key)| Op::Delete { host, key }),
        1 => (host.clone(), key.clone()).prop_map(|(host, key)| Op::SetZeroTtl { host, key }),
        6 => (host.clone(), key.clone()).prop_map(|(host, key)| Op::Read { host, key }),
        2 => (host.clone(), host, key).prop_map(|(reader, writer, key)| Op::ReadDuringSet {
            reader,
            writer,
            key
        }),
        1 => prop_oneof![Just(0u64), Just(2), Just(BOUND.as_millis() as u64 + 20)].prop_map(Op::Pause),
    ]
}

/// One acknowledged write of a key.
#[derive(Debug, Clone)]
struct Write {
    /// When its acknowledgement arrived.
    acked: Instant,
    /// Which host wrote it (`None`: the state before the case).
    host: Option<usize>,
    value: Option<Bytes>,
}

/// What was acknowledged for every key, in order.
struct Model {
    writes: Vec<Vec<Write>>,
}

impl Model {
    fn new(start: Instant) -> Self {
        let initial = Write {
            acked: start,
            host: None,
            value: None,
        };
        Self {
            writes: vec![vec![initial]; KEYS],
        }
    }

    fn acked(&mut self, key: usize, host: usize, value: Option<Bytes>) {
        self.writes[key].push(Write {
            acked: Instant::now(),
            host: Some(host),
            value,
        });
    }

    /// Checks that `got`, read by `host` in a read that started at `started`, is allowed: the
    /// value of the last write acknowledged before `started - BOUND`, of a later one, and of
    /// none older than `host`'s own last write acknowledged before `started`.
    fn check(
        &self,
        key: usize,
        host: usize,
        started: Instant,
        got: &Option<Bytes>,
    ) -> Result<(), TestCaseError> {
        let writes = &self.writes[key];
        let before = |t: Instant| writes.iter().rposition(|w| w.acked < t).unwrap_or(0);
        let settled = started.checked_sub(BOUND).map_or(0, before);
        let own = writes
            .iter()
            .rposition(|w| w.host == Some(host) && w.acked < started)
            .unwrap_or(0);
        let oldest = settled.max(own);
        // Writes acknowledged after the read started may be seen too (concurrent ones).
        if writes[oldest..].iter().any(|w| &w.value == got) {
            return Ok(());
        }
        Err(TestCaseError::fail(format!(
            "host {host} read key {key} as {got:?}, older than allowed: writes {:?}, read \
             started {:?} after the first",
            &writes[..],
            started.duration_since(writes[0].acked)
        )))
    }
}

/// Runs one case's operations on `hosts` in `ns`, checking every read against the model.
async fn run_case(
    hosts: &[Arc<RedisBackend>],
    ns: &Namespace,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut model = Model::new(Instant::now());
    let key_name = |key: usize| format!("k{key}");
    for (n, op) in ops.iter().enumerate() {
        let fresh = || Bytes::from(format!("value {n}"));
        match *op {
            Op::Set { host, key } => {
                let value = fresh();
                hosts[host]
                    .set(ns, key_name(key).as_bytes(), value.clone(), None)
                    .await
                    .unwrap();
                model.acked(key, host, Some(value));
            }
            Op::Delete { host, key } => {
                hosts[host]
                    .delete(ns, key_name(key).as_bytes())
                    .await
                    .unwrap();
                model.acked(key, host, None);
            }
            Op::SetZeroTtl { host, key } => {
                hosts[host]
                    .set(ns, key_name(key).as_bytes(), fresh(), Some(Duration::ZERO))
                    .await
                    .unwrap();
                model.acked(key, host, None);
            }
            Op::Read { host, key } => {
                let started = Instant::now();
                let got = hosts[host].get(ns, key_name(key).as_bytes()).await.unwrap();
                model.check(key, host, started, &got)?;
            }
            Op::ReadDuringSet {
                reader,
                writer,
                key,
            } => {
                let value = fresh();
                let name = key_name(key);
                let started = Instant::now();
                let (got, set) = tokio::join!(
                    hosts[reader].get(ns, name.as_bytes()),
                    hosts[writer].set(ns, name.as_bytes(), value.clone(), None)
                );
                set.unwrap();
                // The read may see the concurrent write: check it before recording the write.
                let mut with_write = Model {
                    writes: model.writes.clone(),
                };
                with_write.acked(key, writer, Some(value.clone()));
                with_write.check(key, reader, started, &got.unwrap())?;
                model.acked(key, writer, Some(value));
            }
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
    Ok(())
}

#[test]
fn reads_never_return_values_older_than_the_bound_allows() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hosts: Vec<Arc<RedisBackend>> = runtime.block_on(async {
        let mut hosts = Vec::new();
        for _ in 0..2 {
            let config = RedisConfig {
                near_cache: Some(1 << 20),
                ..RedisConfig::with_url(server.url())
            };
            hosts.push(Arc::new(RedisBackend::connect(config).await.unwrap()));
        }
        hosts
    });
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let case = AtomicU32::new(0);
    runner
        .run(&prop::collection::vec(op(), 1..60), |ops| {
            // A namespace per case: cases never see each other's keys.
            let case = case.fetch_add(1, Ordering::Relaxed);
            let ns = Namespace::new(format!("case-{case}")).unwrap();
            runtime.block_on(run_case(&hosts, &ns, &ops))
        })
        .unwrap();
    let stats: Vec<_> = hosts.iter().map(|h| h.stats()).collect();
    assert!(
        stats.iter().all(|s| s.near_hits > 0 && s.invalidations > 0),
        "both near caches were used and invalidated: {stats:?}"
    );
}
