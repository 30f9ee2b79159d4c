//! The contract suite run on the embedded `MemoryCache`, and the engine's own tests: a
//! model-based property test of operation sequences, TTLs on a manual clock, the byte bound under
//! concurrent writers, limits and configuration errors, counters, and vacancy timeouts on Tokio's
//! paused clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wasi_cache_contract::{Harness, HarnessConfig, contract_tests};
use wasi_cache_engine::{
    Clock, Config, Error, GetOrSet, Limits, MAX_NAMESPACE_LEN, MemoryCache, Namespace, Result,
    Vacancy,
};

/// Builds a default-configured `MemoryCache` per contract case.
struct Memory;

impl Harness for Memory {
    type Backend = MemoryCache;

    async fn backend(&self, config: HarnessConfig) -> Arc<MemoryCache> {
        Arc::new(
            MemoryCache::new(Config {
                vacancy_timeout: config.vacancy_timeout,
                ..Config::default()
            })
            .expect("the default configuration is valid"),
        )
    }

    fn stampede_callers(&self) -> usize {
        10_000
    }
}

contract_tests!(Memory);

// ---------------------------------------------------------------------------------------------
// Helpers

fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("short namespace name")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn vacant(result: Result<GetOrSet>) -> Vacancy {
    match result {
        Ok(GetOrSet::Vacant(v)) => v,
        other => panic!("expected Vacant, got {other:?}"),
    }
}

fn occupied(result: Result<GetOrSet>) -> Bytes {
    match result {
        Ok(GetOrSet::Occupied(v)) => v,
        other => panic!("expected Occupied, got {other:?}"),
    }
}

/// Bytes an entry counts against capacity, by the engine's own figure.
fn charge(key_len: usize, value_len: usize) -> u64 {
    MemoryCache::entry_charge(key_len, value_len)
}

/// Small limits, so that small capacities may still have several shards.
fn small_limits() -> Limits {
    Limits {
        max_key_size: 64,
        max_value_size: 256,
    }
}

/// A cache on a manual clock, with the given capacity and shard count.
fn manual_cache(capacity: u64, shards: Option<usize>) -> (MemoryCache, Clock) {
    let clock = Clock::manual();
    let cache = MemoryCache::new(Config {
        capacity,
        limits: small_limits(),
        shards,
        clock: clock.clone(),
        ..Config::default()
    })
    .expect("valid configuration");
    (cache, clock)
}

/// Spawns a `get_or_set` caller that returns what it got, vacancy included.
fn spawn_waiter(cache: &Arc<MemoryCache>, ns: &Namespace, key: &[u8]) -> JoinHandle<GetOrSet> {
    let (cache, ns, key) = (cache.clone(), ns.clone(), key.to_vec());
    tokio::spawn(async move { cache.get_or_set(&ns, &key).await.expect("get_or_set") })
}

/// Yields to the runtime until `cond` holds (without moving a paused clock).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: never happened");
}

// ---------------------------------------------------------------------------------------------
// Model-based property tests

const NAMESPACES: [&str; 5] = ["", "a", "a:b", "ab", "\u{1}"];
const KEYS: [&[u8]; 6] = [b"", b"b:c", b"c", b"bc", b"\x01", b"\x00\xff"];
const MAX_VALUE_LEN: usize = 64;

#[derive(Debug, Clone)]
enum Op {
    Set {
        ns: usize,
        key: usize,
        len: usize,
        ttl: Option<Duration>,
    },
    Get {
        ns: usize,
        key: usize,
    },
    Exists {
        ns: usize,
        key: usize,
    },
    Delete {
        ns: usize,
        key: usize,
    },
    /// `get_or_set`; a vacancy is filled with `(len, ttl)` or, for `None`, dropped.
    GetOrSet {
        ns: usize,
        key: usize,
        fill: Option<(usize, Option<Duration>)>,
    },
    /// Moves the manual clock by whole milliseconds.
    Advance(u64),
    RunPendingTasks,
}

fn ttl_strategy() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Duration::ZERO)),
        3 => (1u64..40).prop_map(|ms| Some(Duration::from_millis(ms))),
        1 => (1u64..3_000).prop_map(|us| Some(Duration::from_micros(us))),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let ns = || 0..NAMESPACES.len();
    let key = || 0..KEYS.len();
    prop_oneof![
        5 => (ns(), key(), 0..=MAX_VALUE_LEN, ttl_strategy())
            .prop_map(|(ns, key, len, ttl)| Op::Set { ns, key, len, ttl }),
        4 => (ns(), key()).prop_map(|(ns, key)| Op::Get { ns, key }),
        1 => (ns(), key()).prop_map(|(ns, key)| Op::Exists { ns, key }),
        1 => (ns(), key()).prop_map(|(ns, key)| Op::Delete { ns, key }),
        2 => (ns(), key(), proptest::option::of((0..=MAX_VALUE_LEN, ttl_strategy())))
            .prop_map(|(ns, key, fill)| Op::GetOrSet { ns, key, fill }),
        2 => (0u64..25).prop_map(Op::Advance),
        1 => Just(Op::RunPendingTasks),
    ]
}

/// What the model knows of one key.
#[derive(Debug, Clone)]
struct ModelEntry {
    value: Bytes,
    /// Exact expiry on the model's clock; `None` for never.
    expires: Option<Duration>,
}

/// The reference: a map with exact expiry times.
#[derive(Default)]
struct Model {
    now: Duration,
    entries: HashMap<(usize, usize), ModelEntry>,
    seq: u64,
}

/// Whether a key is live, expired (may linger in the engine) or absent from the model.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Live,
    Expired,
    Absent,
}

impl Model {
    fn live(&self, k: (usize, usize)) -> Option<&Bytes> {
        self.entries
            .get(&k)
            .filter(|e| e.expires.is_none_or(|at| self.now < at))
            .map(|e| &e.value)
    }

    fn state(&self, k: (usize, usize)) -> State {
        match (self.entries.contains_key(&k), self.live(k).is_some()) {
            (_, true) => State::Live,
            (true, false) => State::Expired,
            (false, false) => State::Absent,
        }
    }

    /// A value no other write produced, `len` bytes long (shorter ones are prefixes).
    fn next_value(&mut self, len: usize) -> Bytes {
        self.seq += 1;
        let mut v = format!("#{}#", self.seq).into_bytes();
        v.resize(len, b'.');
        v.into()
    }

    fn set(&mut self, k: (usize, usize), value: Bytes, ttl: Option<Duration>) {
        match ttl {
            Some(ttl) if ttl.is_zero() => {
                self.entries.remove(&k);
            }
            _ => {
                let expires = ttl.map(|ttl| self.now + ttl);
                self.entries.insert(k, ModelEntry { value, expires });
            }
        }
    }

    fn live_entries(&self) -> impl Iterator<Item = ((usize, usize), &Bytes)> {
        self.entries
            .keys()
            .filter_map(|&k| self.live(k).map(|v| (k, v)))
    }
}

/// Runs `ops` against the engine and the model. With `exact`, the capacity is large enough that
/// nothing is evicted and results must match the model; otherwise only the weak guarantee holds:
/// any value returned is the live model value of that very key.
fn check_against_model(
    ops: &[Op],
    capacity: u64,
    exact: bool,
) -> std::result::Result<(), TestCaseError> {
    let (cache, clock) = manual_cache(capacity, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let namespaces: Vec<Namespace> = NAMESPACES.iter().map(|n| ns(n)).collect();
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Set {
                ns: n,
                key: k,
                len,
                ttl,
            } => {
                let value = model.next_value(len);
                cache
                    .set(&namespaces[n], KEYS[k], value.clone(), ttl)
                    .map_err(|e| TestCaseError::fail(format!("step {step}: set failed: {e}")))?;
                model.set((n, k), value, ttl);
            }
            Op::Get { ns: n, key: k } => {
                let got = cache.get(&namespaces[n], KEYS[k]).expect("get");
                let want = model.live((n, k)).cloned();
                if exact {
                    prop_assert_eq!(got, want, "step {}: get", step);
                } else if let Some(got) = got {
                    prop_assert_eq!(Some(got), want, "step {}: get returned a wrong value", step);
                }
            }
            Op::Exists { ns: n, key: k } => {
                let got = cache.exists(&namespaces[n], KEYS[k]).expect("exists");
                let live = model.live((n, k)).is_some();
                if exact {
                    prop_assert_eq!(got, live, "step {}: exists", step);
                } else if got {
                    prop_assert!(live, "step {}: exists on a key that is not live", step);
                }
            }
            Op::Delete { ns: n, key: k } => {
                let removed = cache.delete(&namespaces[n], KEYS[k]).expect("delete");
                match model.state((n, k)) {
                    State::Absent => prop_assert!(!removed, "step {}: deleted an absent key", step),
                    State::Live if exact => {
                        prop_assert!(removed, "step {}: delete missed a live key", step)
                    }
                    State::Live | State::Expired => {}
                }
                model.entries.remove(&(n, k));
            }
            Op::GetOrSet {
                ns: n,
                key: k,
                fill,
            } => {
                let result = rt
                    .block_on(async {
                        tokio::time::timeout(
                            Duration::from_secs(2),
                            cache.get_or_set(&namespaces[n], KEYS[k]),
                        )
                        .await
                    })
                    .map_err(|_| {
                        TestCaseError::fail(format!("step {step}: get_or_set hung (no waiters)"))
                    })?
                    .expect("get_or_set");
                let want = model.live((n, k)).cloned();
                match result {
                    GetOrSet::Occupied(got) => {
                        prop_assert_eq!(Some(got), want, "step {}: get_or_set", step)
                    }
                    GetOrSet::Vacant(vacancy) => {
                        if exact {
                            prop_assert_eq!(None, want, "step {}: Vacant on a live key", step);
                        }
                        if let Some((len, ttl)) = fill {
                            let value = model.next_value(len);
                            rt.block_on(vacancy.fill(value.clone(), ttl)).expect("fill");
                            model.set((n, k), value, ttl);
                        }
                    }
                }
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(ms));
                model.now += Duration::from_millis(ms);
            }
            Op::RunPendingTasks => {
                cache.run_pending_tasks();
                let stats = cache.stats();
                let live = model.live_entries().count() as u64;
                if exact {
                    prop_assert_eq!(stats.entries, live, "step {}: entries after sweep", step);
                    let bytes: u64 = model
                        .live_entries()
                        .map(|((_, k), v)| charge(KEYS[k].len(), v.len()))
                        .sum();
                    prop_assert_eq!(stats.bytes, bytes, "step {}: bytes after sweep", step);
                } else {
                    prop_assert!(stats.entries <= live, "step {}: entries after sweep", step);
                }
            }
        }
        let stats = cache.stats();
        prop_assert!(
            stats.bytes <= cache.capacity(),
            "step {}: {} bytes resident, capacity {}",
            step,
            stats.bytes,
            cache.capacity()
        );
        if exact {
            prop_assert!(stats.entries >= model.live_entries().count() as u64);
        }
    }
    if exact {
        prop_assert_eq!(cache.stats().evictions, 0, "the exact run must not evict");
    }
    Ok(())
}

/// The largest charge an entry of the property tests can have.
fn max_test_charge() -> u64 {
    let longest_key = KEYS.iter().map(|k| k.len()).max().unwrap_or(0);
    charge(longest_key, MAX_VALUE_LEN)
}

proptest! {
    #[test]
    fn operations_match_the_model_without_eviction(
        ops in proptest::collection::vec(op_strategy(), 1..120),
    ) {
        check_against_model(&ops, 1 << 20, true)?;
    }

    #[test]
    fn operations_under_eviction_never_return_wrong_values(
        ops in proptest::collection::vec(op_strategy(), 1..160),
        entries in 1u64..=16,
    ) {
        check_against_model(&ops, entries * max_test_charge(), false)?;
    }
}

// ---------------------------------------------------------------------------------------------
// TTL on a manual clock

#[tokio::test]
async fn ttl_entry_is_live_before_expiry_and_gone_at_expiry() {
    let (cache, clock) = manual_cache(1 << 20, None);
    let n = ns("ttl");
    cache
        .set(&n, b"k", b("v"), Some(Duration::from_millis(100)))
        .unwrap();
    cache.set(&n, b"forever", b("f"), None).unwrap();
    clock.advance(Duration::from_millis(99));
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("v")));
    assert!(cache.exists(&n, b"k").unwrap());
    assert_eq!(occupied(cache.get_or_set(&n, b"k").await), b("v"));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&n, b"k").unwrap(), None, "gone at its expiry");
    assert!(!cache.exists(&n, b"k").unwrap());
    drop(vacant(cache.get_or_set(&n, b"k").await));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(cache.get(&n, b"k").unwrap(), None);
    assert_eq!(cache.get(&n, b"forever").unwrap(), Some(b("f")));
}

#[test]
fn sub_millisecond_ttls_never_expire_early() {
    let (cache, clock) = manual_cache(1 << 20, None);
    let n = ns("ttl-us");
    cache
        .set(&n, b"1.5ms", b("a"), Some(Duration::from_micros(1_500)))
        .unwrap();
    cache
        .set(&n, b"1us", b("b"), Some(Duration::from_micros(1)))
        .unwrap();
    assert_eq!(cache.get(&n, b"1.5ms").unwrap(), Some(b("a")));
    assert_eq!(cache.get(&n, b"1us").unwrap(), Some(b("b")));
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        cache.get(&n, b"1.5ms").unwrap(),
        Some(b("a")),
        "1 ms < 1.5 ms"
    );
    assert_eq!(cache.get(&n, b"1us").unwrap(), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&n, b"1.5ms").unwrap(), None);
}

#[test]
fn overwrite_replaces_the_ttl() {
    let (cache, clock) = manual_cache(1 << 20, None);
    let n = ns("ttl-overwrite");
    let short = Some(Duration::from_millis(10));
    cache.set(&n, b"to-none", b("1"), short).unwrap();
    cache.set(&n, b"to-none", b("2"), None).unwrap();
    cache.set(&n, b"to-short", b("1"), None).unwrap();
    cache.set(&n, b"to-short", b("2"), short).unwrap();
    cache.set(&n, b"to-longer", b("1"), short).expect("set");
    cache
        .set(&n, b"to-longer", b("2"), Some(Duration::from_millis(50)))
        .unwrap();
    clock.advance(Duration::from_millis(20));
    assert_eq!(cache.get(&n, b"to-none").unwrap(), Some(b("2")));
    assert_eq!(cache.get(&n, b"to-short").unwrap(), None);
    assert_eq!(cache.get(&n, b"to-longer").unwrap(), Some(b("2")));
    cache.run_pending_tasks();
    assert_eq!(cache.stats().entries, 2);
    assert_eq!(cache.stats().expirations, 1);
}

#[test]
fn expired_entries_are_reclaimed_by_run_pending_tasks_without_reads() {
    let (cache, clock) = manual_cache(16 << 20, None);
    let n = ns("reclaim");
    for i in 0..1_000u32 {
        cache
            .set(
                &n,
                &i.to_be_bytes(),
                b("x"),
                Some(Duration::from_millis(10)),
            )
            .unwrap();
    }
    for i in 0..50u32 {
        cache
            .set(&n, format!("keep{i}").as_bytes(), b("y"), None)
            .unwrap();
    }
    assert_eq!(cache.stats().entries, 1_050);
    clock.advance(Duration::from_millis(10));
    cache.run_pending_tasks();
    let stats = cache.stats();
    assert_eq!(stats.entries, 50, "all expired entries reclaimed");
    assert_eq!(stats.expirations, 1_000);
    let live_bytes: u64 = (0..50).map(|i| charge(format!("keep{i}").len(), 1)).sum();
    assert_eq!(
        stats.bytes, live_bytes,
        "only the live entries' bytes remain"
    );
    assert_eq!(stats.hits + stats.misses, 0, "nothing was read");
}

#[test]
fn expired_entries_are_reclaimed_in_batches_by_unrelated_writes() {
    let (cache, clock) = manual_cache(16 << 20, Some(1));
    let n = ns("reclaim-writes");
    for i in 0..1_000u32 {
        cache
            .set(
                &n,
                &i.to_be_bytes(),
                b("x"),
                Some(Duration::from_millis(10)),
            )
            .unwrap();
    }
    clock.advance(Duration::from_millis(11));
    cache.set(&n, b"unrelated-0", b("y"), None).unwrap();
    let first = cache.stats().expirations;
    assert!(
        first > 0 && first < 1_000,
        "one write reclaims a bounded batch, not nothing and not everything ({first})"
    );
    for i in 1..200 {
        cache
            .set(&n, format!("unrelated-{i}").as_bytes(), b("y"), None)
            .unwrap();
    }
    let stats = cache.stats();
    assert_eq!(
        stats.expirations, 1_000,
        "writes keep reclaiming until done"
    );
    assert_eq!(stats.entries, 200);
    assert_eq!(stats.hits + stats.misses, 0, "nothing was read");
}

#[test]
fn deletes_also_reclaim_expired_entries() {
    let (cache, clock) = manual_cache(16 << 20, Some(1));
    let n = ns("reclaim-deletes");
    for i in 0..100u32 {
        cache
            .set(&n, &i.to_be_bytes(), b("x"), Some(Duration::from_millis(1)))
            .unwrap();
    }
    clock.advance(Duration::from_millis(1));
    for _ in 0..100 {
        cache.delete(&n, b"absent").unwrap();
    }
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.stats().expirations, 100);
}

#[test]
fn one_namespace_handle_serves_several_caches() {
    let (first, _) = manual_cache(1 << 20, None);
    let (second, _) = manual_cache(1 << 20, None);
    let shared = ns("shared");
    let other = ns("other");
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        first
            .set(&shared, &key, b(&format!("first {i}")), None)
            .unwrap();
        second.set(&other, &key, b("other"), None).unwrap();
        second
            .set(&shared, &key, b(&format!("second {i}")), None)
            .unwrap();
    }
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        assert_eq!(
            first.get(&shared, &key).unwrap(),
            Some(b(&format!("first {i}")))
        );
        assert_eq!(
            second.get(&shared, &key).unwrap(),
            Some(b(&format!("second {i}")))
        );
        assert_eq!(first.get(&other, &key).unwrap(), None);
        assert_eq!(
            second.get(&ns("shared"), &key).unwrap(),
            Some(b(&format!("second {i}")))
        );
    }
    // From several threads at once, alternating caches on the same handle.
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (first, second, shared) = (&first, &second, &shared);
            s.spawn(move || {
                for i in 0..500u32 {
                    let key = (t * 1_000 + i).to_be_bytes();
                    first.set(shared, &key, b("1"), None).unwrap();
                    second.set(shared, &key, b("2"), None).unwrap();
                    assert_eq!(first.get(shared, &key).unwrap(), Some(b("1")));
                    assert_eq!(second.get(shared, &key).unwrap(), Some(b("2")));
                }
            });
        }
    });
}

#[test]
fn thousands_of_namespaces_stay_apart() {
    let (cache, _clock) = manual_cache(16 << 20, None);
    let names: Vec<String> = (0..3_000).map(|i| format!("tenant-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        cache.set(&ns(name), b"k", b(&i.to_string()), None).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            cache.get(&ns(name), b"k").unwrap(),
            Some(b(&i.to_string())),
            "{name}"
        );
    }
    assert_eq!(cache.stats().entries, 3_000);
}

// ---------------------------------------------------------------------------------------------
// Byte bound and accounting

#[test]
fn resident_bytes_are_the_sum_of_entry_charges() {
    let (cache, _clock) = manual_cache(1 << 20, None);
    let n = ns("acct");
    let cost = |key: &[u8], len: usize| charge(key.len(), len);
    assert_eq!(cache.stats().bytes, 0);
    cache.set(&n, b"a", Bytes::from(vec![0; 10]), None).unwrap();
    cache
        .set(&n, b"bb", Bytes::from(vec![0; 100]), None)
        .unwrap();
    assert_eq!(cache.stats().bytes, cost(b"a", 10) + cost(b"bb", 100));
    assert_eq!(cache.stats().entries, 2);
    cache
        .set(&n, b"a", Bytes::from(vec![0; 200]), None)
        .unwrap();
    assert_eq!(
        cache.stats().bytes,
        cost(b"a", 200) + cost(b"bb", 100),
        "an overwrite is charged once, at its new size"
    );
    cache.delete(&n, b"bb").unwrap();
    assert_eq!(cache.stats().bytes, cost(b"a", 200));
    cache.set(&n, b"a", b("x"), Some(Duration::ZERO)).unwrap();
    assert_eq!(cache.stats().bytes, 0);
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn growing_overwrite_in_a_full_shard_keeps_the_accounting() {
    // A full single shard holding `a` then `b`; growing `a` must make room by evicting `b`,
    // and the overwritten `a` must be charged once, at its new size.
    let n = ns("grow");
    let small = charge(1, 10);
    let capacity = 2 * small + 50;
    let (cache, _clock) = manual_cache(capacity, Some(1));
    cache.set(&n, b"a", Bytes::from(vec![1; 10]), None).unwrap();
    cache.set(&n, b"b", Bytes::from(vec![2; 10]), None).unwrap();
    cache
        .set(&n, b"a", Bytes::from(vec![3; 110]), None)
        .unwrap();
    assert_eq!(
        cache.get(&n, b"a").unwrap(),
        Some(Bytes::from(vec![3; 110]))
    );
    let stats = cache.stats();
    assert!(stats.bytes <= cache.capacity());
    let resident: u64 = [(b"a", 110), (b"b", 10)]
        .iter()
        .filter(|(k, _)| cache.get(&n, *k).unwrap().is_some())
        .map(|(k, len)| charge(k.len(), *len))
        .sum();
    assert_eq!(
        stats.bytes, resident,
        "resident bytes are the resident entries' charges"
    );
}

#[test]
fn hits_share_the_stored_bytes() {
    let (cache, _clock) = manual_cache(1 << 20, None);
    let n = ns("share");
    let value = Bytes::from(vec![42u8; 200]);
    cache.set(&n, b"k", value.clone(), None).unwrap();
    let first = cache.get(&n, b"k").unwrap().unwrap();
    let second = cache.get(&n, b"k").unwrap().unwrap();
    assert_eq!(
        first.as_ptr(),
        value.as_ptr(),
        "a hit must not copy the value"
    );
    assert_eq!(
        second.as_ptr(),
        value.as_ptr(),
        "a hit must not copy the value"
    );
}

#[test]
fn byte_bound_holds_under_concurrent_writers() {
    const THREADS: u64 = 4;
    const HOT: usize = 16;
    const HOT_LEN: usize = 512;
    let cache = MemoryCache::new(Config {
        capacity: 1 << 20,
        limits: Limits {
            max_key_size: 256,
            max_value_size: 64 << 10,
        },
        shards: Some(4),
        ..Config::default()
    })
    .unwrap();
    let capacity = cache.capacity();
    let (scan, hot) = (ns("scan"), ns("hot"));
    let hot_value = |i: usize| Bytes::from(vec![i as u8; HOT_LEN]);
    for i in 0..HOT {
        cache.set(&hot, &[i as u8], hot_value(i), None).unwrap();
    }
    let stop = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    let start = std::sync::Barrier::new(THREADS as usize);
    let (hot_hits, hot_reads) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let bytes = cache.stats().bytes;
                assert!(
                    bytes <= capacity,
                    "{bytes} bytes resident, capacity {capacity}"
                );
                checks.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (cache, scan, hot, start) = (&cache, &scan, &hot, &start);
                s.spawn(move || {
                    start.wait();
                    let (mut written, mut i, mut hits, mut reads) = (0u64, 0u64, 0u64, 0u64);
                    while written < 10 * capacity / THREADS {
                        // Varied sizes: mostly up to 2 KiB, every sixteenth up to 16 KiB.
                        let spread = if i % 16 == 0 { 16 << 10 } else { 2 << 10 };
                        let len = 1 + ((i * 7_919 + t * 104_729) % spread) as usize;
                        let key = format!("{t}/{i}");
                        cache
                            .set(scan, key.as_bytes(), Bytes::from(vec![t as u8; len]), None)
                            .unwrap();
                        written += len as u64;
                        if i % 8 == 0 {
                            // A cache-aside reader of the hot keys: read, refill on a miss.
                            for h in 0..HOT {
                                reads += 1;
                                match cache.get(hot, &[h as u8]).unwrap() {
                                    Some(v) => {
                                        assert_eq!(
                                            v,
                                            hot_value(h),
                                            "hot key {h} has a wrong value"
                                        );
                                        hits += 1;
                                    }
                                    None => cache.set(hot, &[h as u8], hot_value(h), None).unwrap(),
                                }
                            }
                        }
                        if i % 32 == 0 {
                            let bytes = cache.stats().bytes;
                            assert!(
                                bytes <= capacity,
                                "{bytes} bytes resident, capacity {capacity}"
                            );
                        }
                        i += 1;
                    }
                    (hits, reads)
                })
            })
            .collect();
        let totals = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .fold((0, 0), |(h, r), (h2, r2)| (h + h2, r + r2));
        stop.store(true, Ordering::Relaxed);
        checker.join().expect("checker");
        totals
    });
    let stats = cache.stats();
    assert!(stats.bytes <= capacity);
    assert!(checks.load(Ordering::Relaxed) > 0, "the checker ran");
    assert!(stats.evictions > 0, "10x the capacity was written");
    assert!(
        stats.bytes > capacity / 2,
        "a full cache uses its capacity ({} of {capacity} bytes)",
        stats.bytes
    );
    let survivors = (0..HOT)
        .filter(|&h| cache.get(&hot, &[h as u8]).unwrap().is_some())
        .count();
    let ratio = hot_hits as f64 / hot_reads as f64;
    assert!(
        ratio > 0.5 && survivors >= HOT / 2,
        "frequently read keys should mostly survive a scan: hit ratio {ratio:.2}, \
         {survivors}/{HOT} resident at the end"
    );
}

#[test]
fn concurrent_mixed_operations_never_cross_keys() {
    const THREADS: usize = 4;
    const OPS: usize = 4_000;
    let namespaces = [ns("a"), ns("a:b"), ns("")];
    let keys: [&[u8]; 4] = [b"b:c", b"c", b"\x01a", b""];
    let cache = MemoryCache::new(Config {
        // Two shards of a few entries each: most writes evict.
        capacity: 1_600,
        limits: small_limits(),
        shards: Some(2),
        ..Config::default()
    })
    .unwrap();
    let capacity = cache.capacity();
    // A value names its namespace and key, so a value read through another pair shows.
    let prefix = |n: usize, k: usize| format!("{n}|{k}|");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, namespaces, keys) = (&cache, &namespaces, &keys);
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let mut x = t as u64 * 0x9e37_79b9 + 1;
                for i in 0..OPS {
                    // xorshift: a cheap, reproducible sequence per thread.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (n, k) = ((x % 3) as usize, ((x >> 8) % 4) as usize);
                    let (ns, key) = (&namespaces[n], keys[k]);
                    let value = || {
                        let mut v = format!("{}{t}-{i}", prefix(n, k)).into_bytes();
                        v.resize(v.len() + ((x >> 16) % 200) as usize, b'.');
                        Bytes::from(v)
                    };
                    let check = |got: &Bytes| {
                        assert!(
                            got.starts_with(prefix(n, k).as_bytes()),
                            "ns {n} key {k} read {got:?}"
                        )
                    };
                    match (x >> 24) % 8 {
                        0..=2 => {
                            let ttl = (x >> 32)
                                .is_multiple_of(4)
                                .then(|| Duration::from_millis(1));
                            cache.set(ns, key, value(), ttl).unwrap();
                        }
                        3..=4 => {
                            if let Some(got) = cache.get(ns, key).unwrap() {
                                check(&got);
                            }
                        }
                        5 => {
                            cache.delete(ns, key).unwrap();
                        }
                        _ => {
                            let result = rt.block_on(async {
                                tokio::time::timeout(
                                    Duration::from_secs(5),
                                    cache.get_or_set(ns, key),
                                )
                                .await
                            });
                            match result.expect("get_or_set hung").unwrap() {
                                GetOrSet::Occupied(got) => check(&got),
                                GetOrSet::Vacant(v) => rt.block_on(v.fill(value(), None)).unwrap(),
                            }
                        }
                    }
                    if i % 64 == 0 {
                        assert!(cache.stats().bytes <= capacity);
                    }
                }
            });
        }
    });
    let stats = cache.stats();
    assert!(stats.bytes <= capacity);
    assert!(stats.inserts > 0 && stats.hits > 0 && stats.evictions > 0);
}

// ---------------------------------------------------------------------------------------------
// Limits and configuration

#[test]
fn default_max_entry_fits_the_default_capacity() {
    let cache = MemoryCache::new(Config::default()).unwrap();
    assert!(cache.capacity() <= Config::DEFAULT_CAPACITY);
    assert_eq!(cache.limits(), Limits::default());
    let n = ns(&"n".repeat(MAX_NAMESPACE_LEN));
    let key = vec![b'k'; Limits::DEFAULT_MAX_KEY_SIZE];
    let value = Bytes::from(vec![1u8; Limits::DEFAULT_MAX_VALUE_SIZE]);
    cache.set(&n, &key, value.clone(), None).unwrap();
    let got = cache
        .get(&n, &key)
        .unwrap()
        .expect("a maximal entry is stored");
    assert!(got == value);
}

#[tokio::test]
async fn entry_that_can_never_fit_is_entry_too_large() {
    let capacity = 1 << 20;
    let cache = MemoryCache::new(Config::with_capacity(capacity)).unwrap();
    assert_eq!(cache.shard_count(), 1);
    assert_eq!(cache.capacity(), capacity);
    let n = ns("big");
    let len = 2 << 20;
    assert_eq!(
        cache.set(&n, b"k", Bytes::from(vec![0; len]), None),
        Err(Error::EntryTooLarge {
            size: charge(1, len),
            capacity,
        })
    );
    // An entry charged exactly the capacity fits; one byte more does not.
    let exact = (capacity - charge(1, 0)) as usize;
    cache
        .set(&n, b"k", Bytes::from(vec![0; exact]), None)
        .unwrap();
    assert_eq!(cache.stats().bytes, capacity);
    assert!(matches!(
        cache.set(&n, b"j", Bytes::from(vec![0; exact + 1]), None),
        Err(Error::EntryTooLarge { .. })
    ));
    assert_eq!(cache.get(&n, b"k").unwrap().map(|v| v.len()), Some(exact));
    // A fill that can never fit fails the same way and leaves the key absent.
    let vacancy = vacant(cache.get_or_set(&n, b"f").await);
    assert!(matches!(
        vacancy.fill(Bytes::from(vec![0; len]), None).await,
        Err(Error::EntryTooLarge { .. })
    ));
    assert_eq!(cache.get(&n, b"f").unwrap(), None);
    drop(vacant(cache.get_or_set(&n, b"f").await));
}

#[test]
fn too_many_shards_for_the_limits_is_invalid_config() {
    let with_shards = |shards| {
        MemoryCache::new(Config {
            shards: Some(shards),
            ..Config::default()
        })
    };
    // 256 MiB holds 15 maximal entries of ~16 MiB: 16 shards could not hold one each.
    for shards in [16, 32, 1 << 20] {
        assert!(
            matches!(with_shards(shards), Err(Error::InvalidConfig(_))),
            "{shards} shards"
        );
    }
    assert!(matches!(with_shards(0), Err(Error::InvalidConfig(_))));
    assert_eq!(with_shards(8).unwrap().shard_count(), 8);
    assert_eq!(
        with_shards(12).unwrap().shard_count(),
        8,
        "rounded down to a power of two"
    );
    assert_eq!(with_shards(1).unwrap().shard_count(), 1);
}

#[test]
fn zero_capacity_is_invalid_config() {
    assert!(matches!(
        MemoryCache::new(Config::with_capacity(0)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn capacity_is_split_evenly_over_a_power_of_two_of_shards() {
    for (capacity, shards) in [
        (1u64, None),
        (1_000, None),
        (1 << 20, Some(3)),
        (1 << 20, Some(64)),
        ((1 << 20) + 7, Some(8)),
        (Config::DEFAULT_CAPACITY, None),
    ] {
        let cache = MemoryCache::new(Config {
            capacity,
            limits: small_limits(),
            shards,
            ..Config::default()
        })
        .unwrap();
        let count = cache.shard_count() as u64;
        assert!(count.is_power_of_two(), "{count} shards");
        assert!(cache.capacity() <= capacity);
        assert_eq!(cache.capacity() % count, 0);
        assert!(
            capacity - cache.capacity() < count,
            "at most rounding is lost"
        );
    }
}

#[test]
fn configured_limits_are_enforced_and_reported() {
    let limits = Limits {
        max_key_size: 8,
        max_value_size: 16,
    };
    let cache = MemoryCache::new(Config {
        limits,
        ..Config::with_capacity(1 << 20)
    })
    .unwrap();
    let n = ns("limits");
    assert_eq!(cache.limits(), limits);
    assert_eq!(
        cache.set(&n, b"123456789", b("v"), None),
        Err(Error::KeyTooLong { len: 9, max: 8 })
    );
    assert_eq!(
        cache.get(&n, b"123456789"),
        Err(Error::KeyTooLong { len: 9, max: 8 })
    );
    assert_eq!(
        cache.delete(&n, b"123456789"),
        Err(Error::KeyTooLong { len: 9, max: 8 })
    );
    assert_eq!(
        cache.set(&n, b"k", Bytes::from(vec![0; 17]), None),
        Err(Error::ValueTooLarge { len: 17, max: 16 })
    );
    cache
        .set(&n, b"12345678", Bytes::from(vec![0; 16]), None)
        .unwrap();
    // The namespace does not count against the key limit.
    let long_ns = ns(&"n".repeat(MAX_NAMESPACE_LEN));
    cache.set(&long_ns, b"12345678", b("v"), None).unwrap();
    assert_eq!(cache.get(&long_ns, b"12345678").unwrap(), Some(b("v")));
}

// ---------------------------------------------------------------------------------------------
// Counters

#[tokio::test]
async fn lookup_and_insert_counters() {
    let (cache, _clock) = manual_cache(1 << 20, None);
    let n = ns("counters");
    let s = || cache.stats();
    assert_eq!(cache.get(&n, b"k").unwrap(), None);
    assert_eq!((s().hits, s().misses, s().inserts), (0, 1, 0));
    cache.set(&n, b"k", b("v"), None).unwrap();
    assert_eq!(s().inserts, 1);
    cache.get(&n, b"k").unwrap();
    assert_eq!((s().hits, s().misses), (1, 1));
    assert!(cache.exists(&n, b"k").unwrap());
    assert!(!cache.exists(&n, b"absent").unwrap());
    assert_eq!((s().hits, s().misses), (2, 2));
    occupied(cache.get_or_set(&n, b"k").await);
    assert_eq!((s().hits, s().misses), (3, 2));
    let vacancy = vacant(cache.get_or_set(&n, b"new").await);
    assert_eq!((s().hits, s().misses), (3, 3));
    vacancy.fill(b("filled"), None).await.unwrap();
    assert_eq!(s().inserts, 2, "a fill is an insert");
    cache
        .set(&n, b"k", b("gone"), Some(Duration::ZERO))
        .unwrap();
    assert_eq!(s().inserts, 2, "a TTL-0 set stores nothing");
    drop(vacant(cache.get_or_set(&n, b"other").await));
    let stats = s();
    assert_eq!(
        (stats.rendezvous_waits, stats.handoffs, stats.timeouts),
        (0, 0, 0),
        "no rendezvous happened"
    );
    assert_eq!((stats.evictions, stats.expirations), (0, 0));
    assert_eq!(
        (stats.round_trips, stats.reconnects),
        (0, 0),
        "embedded engine"
    );
}

#[test]
fn eviction_counter_counts_displaced_entries() {
    let n = ns("evict");
    let each = charge(4, 100);
    let (cache, _clock) = manual_cache(10 * each + each / 2, Some(1));
    for i in 0..30u32 {
        cache
            .set(&n, &i.to_be_bytes(), Bytes::from(vec![0; 100]), None)
            .unwrap();
        assert!(cache.stats().bytes <= cache.capacity());
    }
    let stats = cache.stats();
    assert_eq!(stats.inserts, 30);
    assert_eq!(stats.entries, 10, "ten entries of this size fit");
    assert_eq!(
        stats.evictions, 20,
        "each insert past the tenth displaced one entry"
    );
    assert_eq!(stats.bytes, 10 * each);
    // Overwriting a resident entry at the same size displaces nothing.
    let resident = (0..30u32)
        .find(|i| cache.get(&n, &i.to_be_bytes()).unwrap().is_some())
        .expect("a resident entry");
    cache
        .set(&n, &resident.to_be_bytes(), Bytes::from(vec![1; 100]), None)
        .unwrap();
    assert_eq!(cache.stats().evictions, 20);
    assert_eq!(cache.stats().entries, 10);
}

#[tokio::test(start_paused = true)]
async fn rendezvous_counters() {
    let cache = Arc::new(MemoryCache::new(Config::with_capacity(1 << 20)).unwrap());
    let n = ns("rv-counters");
    let holder = vacant(cache.get_or_set(&n, b"k").await);
    let waiters: Vec<_> = (0..3).map(|_| spawn_waiter(&cache, &n, b"k")).collect();
    until("three waiters", || cache.stats().rendezvous_waits == 3).await;
    assert_eq!(
        cache.stats().misses,
        4,
        "the holder's and the waiters' lookups missed"
    );
    drop(holder);
    assert_eq!(cache.stats().handoffs, 1);
    let mut results = Vec::new();
    let mut filled = false;
    for w in waiters {
        match w.await.unwrap() {
            GetOrSet::Vacant(v) if !filled => {
                filled = true;
                v.fill(b("v"), None).await.unwrap();
            }
            GetOrSet::Vacant(_) => panic!("a second waiter got the vacancy"),
            GetOrSet::Occupied(v) => results.push(v),
        }
    }
    assert!(filled);
    assert_eq!(results, vec![b("v"), b("v")]);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.rendezvous_waits,
            stats.handoffs,
            stats.timeouts,
            stats.inserts
        ),
        (3, 1, 0, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Vacancy timeouts on the paused clock

const VACANCY_TIMEOUT: Duration = Duration::from_secs(1);

fn timeout_cache() -> Arc<MemoryCache> {
    Arc::new(
        MemoryCache::new(Config {
            vacancy_timeout: VACANCY_TIMEOUT,
            ..Config::with_capacity(1 << 20)
        })
        .unwrap(),
    )
}

/// Fails if `handle` finishes within `window` (of paused time).
async fn still_waiting<T: std::fmt::Debug>(handle: &mut JoinHandle<T>, window: Duration) {
    if let Ok(out) = tokio::time::timeout(window, handle).await {
        panic!("expected the caller to still wait, it ended with {out:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn vacancy_timeout_hands_off_to_one_waiter_at_the_deadline() {
    let cache = timeout_cache();
    let n = ns("vt-waiter");
    let start = Instant::now();
    let old = vacant(cache.get_or_set(&n, b"k").await);
    let mut waiters = vec![
        spawn_waiter(&cache, &n, b"k"),
        spawn_waiter(&cache, &n, b"k"),
    ];
    until("two waiters", || cache.stats().rendezvous_waits == 2).await;
    let (first, index, _) = futures::future::select_all(waiters.iter_mut()).await;
    let new = vacant(Ok(first.unwrap()));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= VACANCY_TIMEOUT && elapsed < VACANCY_TIMEOUT + Duration::from_millis(5),
        "handed off after {elapsed:?}"
    );
    assert_eq!((cache.stats().timeouts, cache.stats().handoffs), (1, 0));
    let mut other = waiters.swap_remove(1 - index);
    // The new holder has a full timeout of its own; the other waiter keeps waiting.
    still_waiting(&mut other, VACANCY_TIMEOUT / 2).await;
    // The old holder's drop is stale: it hands nothing to anyone.
    drop(old);
    still_waiting(&mut other, Duration::from_millis(100)).await;
    assert_eq!(cache.stats().handoffs, 0);
    new.fill(b("new"), None).await.unwrap();
    assert_eq!(occupied(Ok(other.await.unwrap())), b("new"));
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("new")));
    assert_eq!(cache.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn late_fill_after_a_timeout_is_an_ordinary_set() {
    let cache = timeout_cache();
    let n = ns("vt-late");
    let old = vacant(cache.get_or_set(&n, b"k").await);
    let mut waiter = spawn_waiter(&cache, &n, b"k");
    until("a waiter", || cache.stats().rendezvous_waits == 1).await;
    let new = vacant(Ok((&mut waiter).await.unwrap()));
    let mut second = spawn_waiter(&cache, &n, b"k");
    until("a second waiter", || cache.stats().rendezvous_waits == 2).await;
    old.fill(b("late"), None).await.unwrap();
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("late")));
    assert_eq!(occupied(Ok((&mut second).await.unwrap())), b("late"));
    new.fill(b("new"), None).await.unwrap();
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("new")));
    assert_eq!(cache.stats().inserts, 2);
}

#[tokio::test(start_paused = true)]
async fn late_comer_takes_over_an_expired_vacancy_at_once() {
    let cache = timeout_cache();
    let n = ns("vt-late-comer");
    let start = Instant::now();
    let old = vacant(cache.get_or_set(&n, b"k").await);
    tokio::time::sleep(VACANCY_TIMEOUT).await;
    let new = vacant(cache.get_or_set(&n, b"k").await);
    assert_eq!(
        start.elapsed(),
        VACANCY_TIMEOUT,
        "no wait for the late-comer"
    );
    assert_eq!(cache.stats().timeouts, 1);
    assert_eq!(cache.stats().rendezvous_waits, 0);
    drop(old);
    // The new holder is not disturbed by the stale drop: a caller now waits for it.
    let mut waiter = spawn_waiter(&cache, &n, b"k");
    still_waiting(&mut waiter, VACANCY_TIMEOUT / 2).await;
    new.fill(b("v"), None).await.unwrap();
    assert_eq!(occupied(Ok(waiter.await.unwrap())), b("v"));
}

#[tokio::test(start_paused = true)]
async fn vacancy_timeouts_repeat_while_holders_stall() {
    let cache = timeout_cache();
    let n = ns("vt-repeat");
    let start = Instant::now();
    let _first = vacant(cache.get_or_set(&n, b"k").await);
    let second = vacant(Ok(spawn_waiter(&cache, &n, b"k").await.unwrap()));
    assert_eq!(start.elapsed(), VACANCY_TIMEOUT);
    tokio::time::sleep(VACANCY_TIMEOUT / 2).await;
    let third = vacant(Ok(spawn_waiter(&cache, &n, b"k").await.unwrap()));
    assert_eq!(
        start.elapsed(),
        VACANCY_TIMEOUT * 2,
        "the second holder's timeout ran from its takeover"
    );
    assert_eq!(cache.stats().timeouts, 2);
    third.fill(b("third"), None).await.unwrap();
    drop(second);
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("third")));
    assert_eq!(cache.stats().handoffs, 0, "stale drops hand nothing off");
}

#[tokio::test(start_paused = true)]
async fn hand_off_restarts_the_vacancy_timeout() {
    let cache = timeout_cache();
    let n = ns("vt-restart");
    let start = Instant::now();
    let holder = vacant(cache.get_or_set(&n, b"k").await);
    let first = spawn_waiter(&cache, &n, b"k");
    let mut second = spawn_waiter(&cache, &n, b"k");
    until("two waiters", || cache.stats().rendezvous_waits == 2).await;
    tokio::time::sleep(VACANCY_TIMEOUT * 9 / 10).await;
    drop(holder);
    let _new = vacant(Ok(first.await.unwrap()));
    assert_eq!(cache.stats().handoffs, 1);
    // The original deadline passes without a takeover: the hand-off restarted the clock.
    still_waiting(&mut second, VACANCY_TIMEOUT * 8 / 10).await;
    assert_eq!(cache.stats().timeouts, 0);
    let taken = vacant(Ok(second.await.unwrap()));
    assert_eq!(
        start.elapsed(),
        VACANCY_TIMEOUT * 9 / 10 + VACANCY_TIMEOUT,
        "taken over one full timeout after the hand-off"
    );
    assert_eq!(cache.stats().timeouts, 1);
    drop(taken);
}

#[tokio::test(start_paused = true)]
async fn waiter_taking_over_on_timeout_then_dropped_hands_off() {
    let cache = timeout_cache();
    let n = ns("vt-drop");
    let _stalled = vacant(cache.get_or_set(&n, b"k").await);
    let first = spawn_waiter(&cache, &n, b"k");
    let second = spawn_waiter(&cache, &n, b"k");
    until("two waiters", || cache.stats().rendezvous_waits == 2).await;
    let (taken, _, rest) = futures::future::select_all([first, second]).await;
    drop(vacant(Ok(taken.unwrap())));
    assert_eq!(
        cache.stats().handoffs,
        1,
        "the new holder's drop is a real hand-off"
    );
    let last = rest.into_iter().next().unwrap();
    let start = Instant::now();
    let v = vacant(Ok(last.await.unwrap()));
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "handed off at once, not on a timeout"
    );
    v.fill(b("v"), None).await.unwrap();
    assert_eq!(cache.get(&n, b"k").unwrap(), Some(b("v")));
}
