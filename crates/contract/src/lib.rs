//! The shared backend-contract suite of wasi-cache: every case here is an async function generic
//! over a [`Harness`] (a factory of the backend under test), so the embedded engine, Redis and any
//! later backend run the very same cases; [`contract_tests!`] turns a harness into one
//! `#[tokio::test]` per case.
//!
//! The cases only use the [`Backend`] trait and real time (no manual clock), and each works in
//! namespaces or keys of its own, so backends that share a server across tests can run them in
//! parallel. Every await on the backend is bounded by a timeout, so a bug fails instead of hanging.
//!
//! An instantiation, in a backend crate's `tests/`:
//! ```no_run
//! use std::sync::Arc;
//! use wasi_cache_contract::{Harness, HarnessConfig, contract_tests};
//! use wasi_cache_engine::{Config, MemoryCache};
//!
//! struct Memory;
//!
//! impl Harness for Memory {
//!     type Backend = MemoryCache;
//!
//!     async fn backend(&self, config: HarnessConfig) -> Arc<MemoryCache> {
//!         let config = Config { vacancy_timeout: config.vacancy_timeout, ..Config::default() };
//!         Arc::new(MemoryCache::new(config).unwrap())
//!     }
//! }
//!
//! contract_tests!(Memory);
//! # fn main() {}
//! ```

#![warn(missing_docs)]

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::task::JoinHandle;
use wasi_cache_engine::{Backend, Error, GetOrSet, Namespace, Result, Vacancy, Within};

#[doc(hidden)]
pub mod __private {
    //! Re-exports the expansion of [`crate::contract_tests!`] uses, so callers need not name them.
    pub use tokio;
}

/// How the backend under one case must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HarnessConfig {
    /// How long a vacancy may stay unfilled before the backend hands it to another caller.
    pub vacancy_timeout: Duration,
}

impl HarnessConfig {
    /// Vacancy timeout of the cases that must never wait for it: a wrong wait shows as a failure.
    pub const LONG_VACANCY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Vacancy timeout of the cases that exercise the timeout hand-off.
    pub const SHORT_VACANCY_TIMEOUT: Duration = Duration::from_millis(200);

    /// A configuration with the short vacancy timeout.
    pub fn short_vacancy_timeout() -> Self {
        Self {
            vacancy_timeout: Self::SHORT_VACANCY_TIMEOUT,
        }
    }
}

impl Default for HarnessConfig {
    fn default() -> Self {
        Self {
            vacancy_timeout: Self::LONG_VACANCY_TIMEOUT,
        }
    }
}

/// A factory of backends under test: one implementation per backend runs the whole suite.
pub trait Harness: Sync {
    /// The backend under test.
    type Backend: Backend;

    /// A fresh backend configured by `config`, ready for one case.
    fn backend(&self, config: HarnessConfig) -> impl Future<Output = Arc<Self::Backend>> + Send;

    /// How many concurrent callers the stampede case starts on one missing key.
    fn stampede_callers(&self) -> usize {
        1_000
    }
}

/// Expands to one `#[tokio::test]` per contract case, in a module `contract`, for `$harness`.
///
/// `contract_tests!(MyHarness::new());` is the whole instantiation; the harness expression is
/// evaluated once per case, in a module that sees the items of the calling module.
#[macro_export]
macro_rules! contract_tests {
    ($harness:expr) => {
        $crate::contract_tests!(@cases $harness;
            get_set_delete_roundtrip,
            overwrite_replaces_value,
            zero_ttl_is_never_visible,
            ttl_expires_and_none_persists,
            namespaces_are_isolated,
            namespace_is_identified_by_its_name,
            adversarial_namespace_key_pairs_never_collide,
            binary_keys_roundtrip,
            oversized_key_is_refused,
            oversized_value_is_refused,
            get_or_set_on_present_key_is_occupied,
            bounded_reads_answer_the_length_of_longer_values,
            get_or_set_on_missing_key_has_one_filler,
            stampede_has_exactly_one_filler,
            dropped_vacancy_hands_off_to_one_waiter,
            dropped_vacancy_without_waiters_leaves_key_absent,
            vacancy_timeout_hands_off_to_a_waiter,
            vacancy_timeout_hands_off_to_the_next_caller,
            set_resolves_pending_waiters,
            zero_ttl_fill_resolves_waiters_but_stores_nothing,
            rejected_fill_hands_off,
            cancelled_waiters_leave_the_rendezvous,
            cancelled_filler_task_hands_off,
            waiter_dropped_after_hand_off_passes_it_on,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        mod contract {
            #[allow(unused_imports)]
            use super::*;
            use $crate::__private::tokio;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    $crate::$case(&$harness).await;
                }
            )*
        }
    };
}

/// How long any single backend call or rendezvous may take before a case fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// Longest wait for spawned callers to reach a rendezvous before a case goes on regardless.
const SETTLE_MAX: Duration = Duration::from_millis(250);

/// Awaits `fut`, failing the case (naming `what`) if it takes longer than `limit`.
async fn within_for<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no answer within {limit:?} (hung rendezvous?)"),
    }
}

/// Awaits `fut` with the default patience.
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    within_for(PATIENCE, what, fut).await
}

/// A name no other case or test process uses, so cases can share one server.
fn unique(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{label}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A namespace of the case's own.
fn fresh_ns(label: &str) -> Namespace {
    Namespace::new(unique(label)).expect("generated namespace names are short")
}

/// `Bytes` from a string.
fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The vacancy of a `get_or_set` result, failing the case otherwise.
fn vacant(result: Result<GetOrSet>, what: &str) -> Vacancy {
    match result {
        Ok(GetOrSet::Vacant(v)) => v,
        Ok(GetOrSet::Occupied(value)) => panic!("{what}: expected Vacant, got Occupied({value:?})"),
        Err(e) => panic!("{what}: expected Vacant, got error {e}"),
    }
}

/// The value of a `get_or_set` result, failing the case otherwise.
fn occupied(result: Result<GetOrSet>, what: &str) -> Bytes {
    match result {
        Ok(GetOrSet::Occupied(value)) => value,
        Ok(GetOrSet::Vacant(_)) => panic!("{what}: expected Occupied, got Vacant"),
        Err(e) => panic!("{what}: expected Occupied, got error {e}"),
    }
}

/// What a spawned `get_or_set` caller ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// It got the vacancy and filled it with this value.
    Filled(Bytes),
    /// It got this value from the rendezvous.
    Got(Bytes),
}

/// Spawns a caller that fills the key with `value` if it gets the vacancy.
fn spawn_caller<B: Backend>(
    backend: &Arc<B>,
    ns: &Namespace,
    key: &[u8],
    value: Bytes,
) -> JoinHandle<Outcome> {
    let (backend, ns, key) = (backend.clone(), ns.clone(), key.to_vec());
    tokio::spawn(async move {
        match backend.get_or_set(&ns, &key).await {
            Ok(GetOrSet::Occupied(got)) => Outcome::Got(got),
            Ok(GetOrSet::Vacant(vacancy)) => {
                vacancy
                    .fill(value.clone(), None)
                    .await
                    .expect("filling a vacancy");
                Outcome::Filled(value)
            }
            Err(e) => panic!("get_or_set failed: {e}"),
        }
    })
}

/// Spawns a caller that returns whatever `get_or_set` gives it, vacancy included.
fn spawn_waiter<B: Backend>(backend: &Arc<B>, ns: &Namespace, key: &[u8]) -> JoinHandle<GetOrSet> {
    let (backend, ns, key) = (backend.clone(), ns.clone(), key.to_vec());
    tokio::spawn(async move {
        backend
            .get_or_set(&ns, &key)
            .await
            .expect("get_or_set failed")
    })
}

/// Joins spawned callers, failing the case if any takes longer than `limit` or panicked.
async fn join_all<T>(limit: Duration, what: &str, handles: Vec<JoinHandle<T>>) -> Vec<T> {
    within_for(limit, what, futures::future::join_all(handles))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{what}: caller task failed: {e}")))
        .collect()
}

/// Waits until `n` more callers joined a rendezvous since `before` (by the backend's own
/// `rendezvous_waits` counter), or [`SETTLE_MAX`] passed; whether they all joined.
///
/// The cases hold either way (a caller that comes late just meets a later state); waiting only
/// makes them exercise the waiting path.
async fn settle<B: Backend>(backend: &B, before: u64, n: u64) -> bool {
    let start = Instant::now();
    loop {
        if backend.stats().rendezvous_waits >= before + n {
            return true;
        }
        if start.elapsed() >= SETTLE_MAX {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls `futures` (which must all stay pending) until `until` completes.
async fn poll_pending<F, T>(futures: &mut [F], until: impl Future<Output = bool>)
where
    F: Future<Output = T> + Unpin,
    T: Debug,
{
    let keep_polling = std::future::poll_fn(|cx| {
        for (i, fut) in futures.iter_mut().enumerate() {
            if let Poll::Ready(out) = Pin::new(fut).poll(cx) {
                panic!("waiter {i} resolved before the rendezvous ended: {out:?}");
            }
        }
        Poll::<()>::Pending
    });
    tokio::select! {
        _ = until => {}
        () = keep_polling => unreachable!(),
    }
}

/// Fails the case if `handle` finishes within `window`; the caller is expected to still wait.
async fn assert_still_waiting<T: Debug>(handle: &mut JoinHandle<T>, window: Duration, what: &str) {
    if let Ok(out) = tokio::time::timeout(window, handle).await {
        panic!("{what}: expected the caller to still wait, it ended with {out:?}");
    }
}

/// `get`, `exists`, `set` and `delete` round-trip a value; deleting an absent key is fine.
pub async fn get_set_delete_roundtrip<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("roundtrip");
    assert_eq!(within("get absent", c.get(&ns, b"k")).await, Ok(None));
    assert_eq!(
        within("exists absent", c.exists(&ns, b"k")).await,
        Ok(false)
    );
    within("set", c.set(&ns, b"k", b("v1"), None))
        .await
        .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("v1"))));
    assert_eq!(within("exists", c.exists(&ns, b"k")).await, Ok(true));
    within("set empty value", c.set(&ns, b"empty", Bytes::new(), None))
        .await
        .unwrap();
    assert_eq!(
        within("get empty value", c.get(&ns, b"empty")).await,
        Ok(Some(Bytes::new())),
        "an empty value is a value, not an absence"
    );
    assert_eq!(
        within("exists empty", c.exists(&ns, b"empty")).await,
        Ok(true)
    );
    within("delete", c.delete(&ns, b"k")).await.unwrap();
    assert_eq!(within("get deleted", c.get(&ns, b"k")).await, Ok(None));
    assert_eq!(
        within("exists deleted", c.exists(&ns, b"k")).await,
        Ok(false)
    );
    within("delete absent", c.delete(&ns, b"k")).await.unwrap();
    within("delete never set", c.delete(&ns, b"never"))
        .await
        .unwrap();
    assert_eq!(
        within("other key untouched", c.get(&ns, b"empty")).await,
        Ok(Some(Bytes::new()))
    );
}

/// A second `set` replaces the value, including a longer or shorter one.
pub async fn overwrite_replaces_value<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("overwrite");
    for value in ["first", "a much longer second value", "3", ""] {
        within("set", c.set(&ns, b"k", b(value), None))
            .await
            .unwrap();
        assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b(value))));
    }
    within("set after delete", async {
        c.delete(&ns, b"k").await?;
        c.set(&ns, b"k", b("again"), None).await
    })
    .await
    .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("again"))));
}

/// A TTL of zero is never visible, and a `set` with it removes an existing value.
pub async fn zero_ttl_is_never_visible<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("ttl0");
    within("set ttl 0", c.set(&ns, b"k", b("v"), Some(Duration::ZERO)))
        .await
        .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(None));
    assert_eq!(within("exists", c.exists(&ns, b"k")).await, Ok(false));
    let vacancy = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "get_or_set after a TTL-0 set",
    );
    drop(vacancy);

    within("set", c.set(&ns, b"present", b("old"), None))
        .await
        .unwrap();
    assert_eq!(
        within("get", c.get(&ns, b"present")).await,
        Ok(Some(b("old")))
    );
    within(
        "set ttl 0 over a value",
        c.set(&ns, b"present", b("new"), Some(Duration::ZERO)),
    )
    .await
    .unwrap();
    assert_eq!(
        within("get", c.get(&ns, b"present")).await,
        Ok(None),
        "a TTL-0 set must remove the existing value"
    );
    assert_eq!(within("exists", c.exists(&ns, b"present")).await, Ok(false));
}

/// A short TTL expires; `None` persists; an overwrite replaces the TTL too.
pub async fn ttl_expires_and_none_persists<H: Harness>(h: &H) {
    const TTL: Duration = Duration::from_millis(50);
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("ttl");
    let start = Instant::now();
    within("sets", async {
        c.set(&ns, b"short", b("s"), Some(TTL)).await?;
        c.set(&ns, b"forever", b("f"), None).await?;
        c.set(&ns, b"long", b("l"), Some(Duration::from_secs(3600)))
            .await?;
        // Overwrites take the new TTL: no TTL now, then a short one now.
        c.set(&ns, b"short-then-none", b("1"), Some(TTL)).await?;
        c.set(&ns, b"short-then-none", b("2"), None).await?;
        c.set(&ns, b"none-then-short", b("1"), None).await?;
        c.set(&ns, b"none-then-short", b("2"), Some(TTL)).await
    })
    .await
    .unwrap();
    // Every TTL above started before now (the last set's, just before): on a loaded machine the
    // sets alone may outlast `TTL`.
    let written = Instant::now();
    let early = within("get", c.get(&ns, b"short")).await.unwrap();
    if start.elapsed() < TTL {
        assert_eq!(
            early,
            Some(b("s")),
            "a value must be visible before its TTL"
        );
    }
    tokio::time::sleep((TTL * 2).saturating_sub(written.elapsed())).await;
    assert_eq!(within("get", c.get(&ns, b"short")).await, Ok(None));
    assert_eq!(within("exists", c.exists(&ns, b"short")).await, Ok(false));
    vacant(
        within("get_or_set", c.get_or_set(&ns, b"short")).await,
        "get_or_set on an expired key",
    )
    .fill(b("refilled"), None)
    .await
    .unwrap();
    assert_eq!(
        within("get", c.get(&ns, b"short")).await,
        Ok(Some(b("refilled")))
    );
    assert_eq!(
        within("get", c.get(&ns, b"forever")).await,
        Ok(Some(b("f")))
    );
    assert_eq!(within("get", c.get(&ns, b"long")).await, Ok(Some(b("l"))));
    assert_eq!(
        within("get", c.get(&ns, b"short-then-none")).await,
        Ok(Some(b("2"))),
        "an overwrite without TTL must drop the old TTL"
    );
    assert_eq!(
        within("get", c.get(&ns, b"none-then-short")).await,
        Ok(None),
        "an overwrite with a TTL must expire"
    );
}

/// The same key in two namespaces holds two values; writes in one never touch the other.
pub async fn namespaces_are_isolated<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let (a, b_ns) = (fresh_ns("iso-a"), fresh_ns("iso-b"));
    within("set a", c.set(&a, b"k", b("in a"), None))
        .await
        .unwrap();
    assert_eq!(within("get b", c.get(&b_ns, b"k")).await, Ok(None));
    assert_eq!(within("exists b", c.exists(&b_ns, b"k")).await, Ok(false));
    let vacancy = vacant(
        within("get_or_set b", c.get_or_set(&b_ns, b"k")).await,
        "get_or_set in another namespace",
    );
    vacancy.fill(b("in b"), None).await.unwrap();
    assert_eq!(within("get a", c.get(&a, b"k")).await, Ok(Some(b("in a"))));
    assert_eq!(
        within("get b", c.get(&b_ns, b"k")).await,
        Ok(Some(b("in b")))
    );
    within("delete b", c.delete(&b_ns, b"k")).await.unwrap();
    assert_eq!(within("get a", c.get(&a, b"k")).await, Ok(Some(b("in a"))));
    within(
        "ttl-0 set in b",
        c.set(&b_ns, b"k", b("x"), Some(Duration::ZERO)),
    )
    .await
    .unwrap();
    assert_eq!(within("get a", c.get(&a, b"k")).await, Ok(Some(b("in a"))));
}

/// Two `Namespace` values made separately from one name are the same keyspace.
pub async fn namespace_is_identified_by_its_name<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let name = unique("same-name");
    let (first, second) = (
        Namespace::new(&name).unwrap(),
        Namespace::new(&name).unwrap(),
    );
    within("set", c.set(&first, b"k", b("v"), None))
        .await
        .unwrap();
    assert_eq!(
        within("get through another handle", c.get(&second, b"k")).await,
        Ok(Some(b("v")))
    );
    assert_eq!(
        within("get through a clone", c.get(&second.clone(), b"k")).await,
        Ok(Some(b("v")))
    );
    assert_eq!(
        occupied(
            within("get_or_set", c.get_or_set(&second, b"k")).await,
            "get_or_set through another handle"
        ),
        b("v")
    );
    within("delete through another handle", c.delete(&second, b"k"))
        .await
        .unwrap();
    assert_eq!(within("get", c.get(&first, b"k")).await, Ok(None));
    let holder = vacant(
        within("get_or_set", c.get_or_set(&first, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let waiter = spawn_waiter(&c, &Namespace::new(&name).unwrap(), b"k");
    settle(&*c, before, 1).await;
    holder.fill(b("w"), None).await.unwrap();
    assert_eq!(
        occupied(
            Ok(within("waiter through another handle", waiter)
                .await
                .expect("waiter task")),
            "waiter through another handle"
        ),
        b("w")
    );
}

/// Pairs that naive encodings (`ns:key`, `ns‖key`, a length byte in the key) confuse stay apart.
pub async fn adversarial_namespace_key_pairs_never_collide<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    // A suffix of the case's own on every key keeps the pairs' shapes and isolates runs.
    let tag = unique("");
    let pairs: Vec<(&str, Vec<u8>)> = vec![
        ("a", b"b:c".to_vec()),
        ("a:b", b"c".to_vec()),
        ("a", b"bc".to_vec()),
        ("ab", b"c".to_vec()),
        ("", b"abc".to_vec()),
        ("", b"a:b:c".to_vec()),
        ("", b"\x01ab:c".to_vec()),
        ("", b"\x01a".to_vec()),
        ("", b"\x03a:bc".to_vec()),
        ("", b"".to_vec()),
        ("a", b"".to_vec()),
        ("a", b"\x01".to_vec()),
        ("a", b"\x01a".to_vec()),
        ("\u{1}", b"a".to_vec()),
        ("\u{1}a", b"".to_vec()),
        ("\0", b"\0".to_vec()),
        ("", b"\0\0".to_vec()),
        ("a\0b", b"c".to_vec()),
        ("a", b"\0bc".to_vec()),
    ];
    let keyed: Vec<(Namespace, Vec<u8>)> = pairs
        .iter()
        .map(|(ns, key)| {
            let mut key = key.clone();
            key.extend_from_slice(tag.as_bytes());
            (Namespace::new(ns).unwrap(), key)
        })
        .collect();
    for (i, (ns, key)) in keyed.iter().enumerate() {
        within("set", c.set(ns, key, b(&format!("value {i}")), None))
            .await
            .unwrap();
    }
    for (i, (ns, key)) in keyed.iter().enumerate() {
        assert_eq!(
            within("get", c.get(ns, key)).await,
            Ok(Some(b(&format!("value {i}")))),
            "pair {i} (ns {:?}, key {:?}) read another pair's value",
            ns.as_str(),
            pairs[i].1
        );
    }
    // Deleting each pair in turn removes exactly that pair.
    for (i, (ns, key)) in keyed.iter().enumerate() {
        within("delete", c.delete(ns, key)).await.unwrap();
        for (j, (ns2, key2)) in keyed.iter().enumerate() {
            let expected = (j > i).then(|| b(&format!("value {j}")));
            assert_eq!(
                within("get", c.get(ns2, key2)).await,
                Ok(expected),
                "after deleting pair {i}, pair {j} is wrong"
            );
        }
    }
}

/// Keys and values with any bytes (zeros, 0xff, invalid UTF-8, the empty key) round-trip.
pub async fn binary_keys_roundtrip<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("binary");
    let keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0xff],
        vec![0xff, 0xfe, 0x00, 0x80],
        vec![0xc3, 0x28],
        b"\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        (0..=255u8).collect(),
        vec![b':'; 3],
    ];
    let value: Bytes = (0..=255u8).rev().collect::<Vec<u8>>().into();
    for (i, key) in keys.iter().enumerate() {
        let mut v = value.to_vec();
        v.push(i as u8);
        within("set", c.set(&ns, key, v.into(), None))
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let got = within("get", c.get(&ns, key)).await.unwrap();
        let mut v = value.to_vec();
        v.push(i as u8);
        assert_eq!(got, Some(Bytes::from(v)), "binary key {key:?}");
        assert_eq!(within("exists", c.exists(&ns, key)).await, Ok(true));
    }
    within("delete", c.delete(&ns, &[0])).await.unwrap();
    assert_eq!(within("get", c.get(&ns, &[0])).await, Ok(None));
    assert!(
        within("get", c.get(&ns, &[0, 0])).await.unwrap().is_some(),
        "deleting key [0] must not touch key [0, 0]"
    );
    assert!(
        within("get", c.get(&ns, &[])).await.unwrap().is_some(),
        "deleting key [0] must not touch the empty key"
    );
}

/// A key one byte over the limit is refused by every operation with `KeyTooLong`.
pub async fn oversized_key_is_refused<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("bigkey");
    let max = c.limits().max_key_size;
    let expected = Error::KeyTooLong { len: max + 1, max };
    let key = vec![b'k'; max + 1];
    assert_eq!(within("get", c.get(&ns, &key)).await, Err(expected.clone()));
    assert_eq!(
        within("exists", c.exists(&ns, &key)).await,
        Err(expected.clone())
    );
    assert_eq!(
        within("set", c.set(&ns, &key, b("v"), None)).await,
        Err(expected.clone())
    );
    assert_eq!(
        within("delete", c.delete(&ns, &key)).await,
        Err(expected.clone())
    );
    match within("get_or_set", c.get_or_set(&ns, &key)).await {
        Err(e) => assert_eq!(e, expected),
        Ok(other) => panic!("get_or_set with an oversized key gave {other:?}"),
    }
    // Exactly at the limit is fine.
    let key = vec![b'k'; max];
    within("set max key", c.set(&ns, &key, b("v"), None))
        .await
        .unwrap();
    assert_eq!(
        within("get max key", c.get(&ns, &key)).await,
        Ok(Some(b("v")))
    );
}

/// A value one byte over the limit is refused with `ValueTooLarge`; one at the limit is stored.
pub async fn oversized_value_is_refused<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("bigvalue");
    let max = c.limits().max_value_size;
    within("set", c.set(&ns, b"k", b("old"), None))
        .await
        .unwrap();
    let too_big = Bytes::from(vec![7u8; max + 1]);
    assert_eq!(
        within("set too big", c.set(&ns, b"k", too_big, None)).await,
        Err(Error::ValueTooLarge { len: max + 1, max })
    );
    assert_eq!(
        within("get", c.get(&ns, b"k")).await,
        Ok(Some(b("old"))),
        "a refused set must leave the old value"
    );
    let at_max = Bytes::from(vec![9u8; max]);
    within("set max value", c.set(&ns, b"k", at_max.clone(), None))
        .await
        .unwrap();
    let got = within("get max value", c.get(&ns, b"k"))
        .await
        .unwrap()
        .expect("a value at the limit must be stored");
    assert!(got == at_max, "the value at the limit came back changed");
}

/// `get_within` and `get_or_set_within` return a value that fits the limit, or the length of one
/// that does not (a backend may also return a value it holds in memory already, whole), and
/// tell an empty value from an absent one, for short and long limits alike.
pub async fn bounded_reads_answer_the_length_of_longer_values<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("bounded");
    let long = Bytes::from(vec![5u8; 100 << 10]);
    within("set long", c.set(&ns, b"long", long.clone(), None))
        .await
        .unwrap();
    within("set empty", c.set(&ns, b"empty", Bytes::new(), None))
        .await
        .unwrap();
    within("set short", c.set(&ns, b"short", b("v"), None))
        .await
        .unwrap();
    let whole_or_length = |read: Within<Option<Bytes>>, want: &Bytes, what: &str| match read {
        Within::Fits(Some(got)) => assert!(got == *want, "{what}: a different value"),
        Within::Fits(None) => panic!("{what}: absent"),
        Within::TooLarge(len) => assert_eq!(len, want.len(), "{what}: the value's length"),
    };
    for limit in [0, 10, 70 << 10] {
        let read = within("get_within long", c.get_within(&ns, b"long", limit)).await;
        whole_or_length(read.unwrap(), &long, &format!("long within {limit}"));
    }
    let read = within("get_within short", c.get_within(&ns, b"short", 0)).await;
    whole_or_length(read.unwrap(), &b("v"), "short within 0");
    for limit in [1, 64 << 10, 100 << 10, 1 << 20] {
        let read = within("get_within long", c.get_within(&ns, b"long", limit)).await;
        if limit >= long.len() {
            assert!(
                matches!(read, Ok(Within::Fits(Some(ref got))) if *got == long),
                "long within {limit}: {:?}",
                read.map(|r| matches!(r, Within::TooLarge(_)))
            );
        }
        for (key, want) in [(&b"empty"[..], Some(Bytes::new())), (b"absent", None)] {
            let read = within("get_within", c.get_within(&ns, key, limit)).await;
            match read.unwrap() {
                Within::Fits(got) => assert_eq!(got, want, "{key:?} within {limit}"),
                Within::TooLarge(len) => panic!("{key:?} within {limit}: too large, {len}"),
            }
        }
    }
    match within("get_or_set_within", c.get_or_set_within(&ns, b"long", 10)).await {
        Ok(Within::Fits(GetOrSet::Occupied(got))) => assert!(got == long, "a different value"),
        Ok(Within::TooLarge(len)) => assert_eq!(len, long.len()),
        other => panic!("get_or_set_within a long value: {:?}", other.map(|_| ())),
    }
    for limit in [long.len(), 1 << 20] {
        let got = within(
            "get_or_set_within",
            c.get_or_set_within(&ns, b"long", limit),
        )
        .await;
        match got {
            Ok(Within::Fits(GetOrSet::Occupied(got))) => assert!(got == long, "a different value"),
            other => panic!("get_or_set_within {limit}: {:?}", other.map(|_| ())),
        }
    }
    let got = within("get_or_set_within", c.get_or_set_within(&ns, b"absent", 0)).await;
    let Ok(Within::Fits(got)) = got else {
        panic!("get_or_set_within an absent key: {:?}", got.map(|_| ()))
    };
    let vacancy = vacant(Ok(got), "get_or_set_within an absent key");
    within("fill", vacancy.fill(b("filled"), None))
        .await
        .unwrap();
    let got = within("get_or_set_within", c.get_or_set_within(&ns, b"absent", 1)).await;
    match got {
        Ok(Within::Fits(GetOrSet::Occupied(got))) => assert_eq!(got, b("filled")),
        Ok(Within::TooLarge(len)) => assert_eq!(len, 6),
        other => panic!("get_or_set_within a filled key: {:?}", other.map(|_| ())),
    }
}

/// `get_or_set` on a present key resolves `Occupied` with the value, and never blocks.
pub async fn get_or_set_on_present_key_is_occupied<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("gos-present");
    within("set", c.set(&ns, b"k", b("v"), None)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            occupied(
                within("get_or_set", c.get_or_set(&ns, b"k")).await,
                "present key"
            ),
            b("v")
        );
    }
}

/// On a missing key exactly one caller is `Vacant`; after its fill, waiters get the value.
pub async fn get_or_set_on_missing_key_has_one_filler<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("gos-missing");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller on a missing key",
    );
    let before = c.stats().rendezvous_waits;
    let waiters: Vec<_> = (0..4).map(|_| spawn_waiter(&c, &ns, b"k")).collect();
    settle(&*c, before, 4).await;
    assert_eq!(c.stats().fills, 0);
    within("fill", holder.fill(b("filled"), None))
        .await
        .unwrap();
    // A fill counts once, as a fill and as an insert; the waiters' values count nothing more.
    let stats = c.stats();
    assert_eq!((stats.fills, stats.inserts), (1, 1));
    for r in join_all(PATIENCE, "waiters", waiters).await {
        assert_eq!(occupied(Ok(r), "waiter after the fill"), b("filled"));
    }
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("filled"))));
    assert_eq!(
        occupied(
            within("get_or_set", c.get_or_set(&ns, b"k")).await,
            "later caller"
        ),
        b("filled")
    );
}

/// `stampede_callers()` concurrent callers on one missing key: one fills, all others get it.
pub async fn stampede_has_exactly_one_filler<H: Harness>(h: &H) {
    let n = h.stampede_callers();
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("stampede");
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let before = c.stats().rendezvous_waits;
    let handles: Vec<JoinHandle<Outcome>> = (0..n)
        .map(|i| {
            let (c, ns, barrier) = (c.clone(), ns.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                match c.get_or_set(&ns, b"hot").await.expect("get_or_set") {
                    GetOrSet::Occupied(v) => Outcome::Got(v),
                    GetOrSet::Vacant(vacancy) => {
                        // Let the others pile up on the rendezvous before filling.
                        settle(&*c, before, n as u64 - 1).await;
                        let value = b(&format!("filled by {i}"));
                        vacancy.fill(value.clone(), None).await.expect("fill");
                        Outcome::Filled(value)
                    }
                }
            })
        })
        .collect();
    let outcomes = join_all(PATIENCE * 4, "stampede", handles).await;
    let filled: Vec<&Bytes> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Filled(v) => Some(v),
            Outcome::Got(_) => None,
        })
        .collect();
    assert_eq!(filled.len(), 1, "exactly one of {n} callers must fill");
    let value = filled[0].clone();
    let wrong = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Got(v) if *v != value))
        .count();
    assert_eq!(wrong, 0, "every other caller must get the filled value");
    assert_eq!(within("get", c.get(&ns, b"hot")).await, Ok(Some(value)));
}

/// Dropping a vacancy unfilled hands it to exactly one waiter, whose fill reaches the rest.
pub async fn dropped_vacancy_hands_off_to_one_waiter<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("handoff");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let callers: Vec<_> = (0..5)
        .map(|i| spawn_caller(&c, &ns, b"k", b(&format!("from caller {i}"))))
        .collect();
    settle(&*c, before, 5).await;
    drop(holder);
    let outcomes = join_all(PATIENCE, "callers after the drop", callers).await;
    let filled: Vec<Bytes> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Filled(v) => Some(v.clone()),
            Outcome::Got(_) => None,
        })
        .collect();
    assert_eq!(
        filled.len(),
        1,
        "exactly one waiter must get the vacancy: {outcomes:?}"
    );
    for o in &outcomes {
        if let Outcome::Got(v) = o {
            assert_eq!(v, &filled[0], "the others must get the new filler's value");
        }
    }
    assert_eq!(
        within("get", c.get(&ns, b"k")).await,
        Ok(Some(filled[0].clone()))
    );
}

/// Dropping a vacancy nobody waits on leaves the key absent; the next caller is `Vacant` at once.
pub async fn dropped_vacancy_without_waiters_leaves_key_absent<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("drop-alone");
    for round in 0..3 {
        let vacancy = vacant(
            within("get_or_set", c.get_or_set(&ns, b"k")).await,
            &format!("caller {round} after an abandoned vacancy"),
        );
        drop(vacancy);
        assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(None));
        assert_eq!(within("exists", c.exists(&ns, b"k")).await, Ok(false));
    }
    vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "caller after abandoned vacancies",
    )
    .fill(b("v"), None)
    .await
    .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("v"))));
}

/// A vacancy unfilled past the timeout goes to exactly one waiter; the old holder's late fill is
/// still stored (as an ordinary set, so it resolves the remaining waiter), then the new fill wins.
pub async fn vacancy_timeout_hands_off_to_a_waiter<H: Harness>(h: &H) {
    let config = HarnessConfig::short_vacancy_timeout();
    let c = h.backend(config).await;
    let ns = fresh_ns("timeout-waiter");
    let start = Instant::now();
    let old = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let mut waiters = vec![spawn_waiter(&c, &ns, b"k"), spawn_waiter(&c, &ns, b"k")];
    settle(&*c, before, 2).await;
    let (first, index, _) = within(
        "a waiter after the vacancy timeout",
        futures::future::select_all(waiters.iter_mut()),
    )
    .await;
    let elapsed = start.elapsed();
    let new = vacant(Ok(first.expect("waiter task")), "waiter after the timeout");
    assert!(
        elapsed + Duration::from_millis(5) >= config.vacancy_timeout,
        "handed off after {elapsed:?}, before the vacancy timeout of {:?}",
        config.vacancy_timeout
    );
    let mut other = waiters.swap_remove(1 - index);
    drop(waiters);
    assert_still_waiting(&mut other, Duration::from_millis(10), "the second waiter").await;
    // The old holder fills late: stored as an ordinary set, which resolves the other waiter.
    within("late fill", old.fill(b("late"), None))
        .await
        .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("late"))));
    let other = within("other waiter", other).await.expect("waiter task");
    assert_eq!(
        occupied(Ok(other), "other waiter after the late fill"),
        b("late")
    );
    within("new holder's fill", new.fill(b("new"), None))
        .await
        .unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("new"))));
}

/// With nobody waiting, the first caller after the vacancy timeout gets the vacancy at once; the
/// old holder's late fill is still stored, as an ordinary set.
pub async fn vacancy_timeout_hands_off_to_the_next_caller<H: Harness>(h: &H) {
    let config = HarnessConfig::short_vacancy_timeout();
    let c = h.backend(config).await;
    let ns = fresh_ns("timeout-next");
    let old = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    tokio::time::sleep(config.vacancy_timeout + Duration::from_millis(20)).await;
    let new = vacant(
        within_for(
            config.vacancy_timeout,
            "caller after the timeout",
            c.get_or_set(&ns, b"k"),
        )
        .await,
        "caller after the vacancy timeout",
    );
    within("new fill", new.fill(b("new"), None)).await.unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("new"))));
    within("late fill", old.fill(b("late"), None))
        .await
        .unwrap();
    assert_eq!(
        within("get", c.get(&ns, b"k")).await,
        Ok(Some(b("late"))),
        "a late fill is stored as an ordinary set"
    );
}

/// A plain `set` during a rendezvous resolves every waiter with its value; the holder's later
/// drop changes nothing.
pub async fn set_resolves_pending_waiters<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("set-resolves");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let waiters: Vec<_> = (0..4).map(|_| spawn_waiter(&c, &ns, b"k")).collect();
    settle(&*c, before, 4).await;
    within("set", c.set(&ns, b"k", b("from set"), None))
        .await
        .unwrap();
    for r in join_all(PATIENCE, "waiters after a set", waiters).await {
        assert_eq!(occupied(Ok(r), "waiter after a set"), b("from set"));
    }
    drop(holder);
    assert_eq!(
        within("get", c.get(&ns, b"k")).await,
        Ok(Some(b("from set")))
    );
    assert_eq!(
        occupied(
            within("get_or_set", c.get_or_set(&ns, b"k")).await,
            "caller after the stale drop"
        ),
        b("from set")
    );
}

/// A fill with TTL zero still resolves the waiters with its value, but stores nothing.
pub async fn zero_ttl_fill_resolves_waiters_but_stores_nothing<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("fill-ttl0");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let waiters: Vec<_> = (0..3).map(|_| spawn_waiter(&c, &ns, b"k")).collect();
    let joined = settle(&*c, before, 3).await;
    within("fill ttl 0", holder.fill(b("once"), Some(Duration::ZERO)))
        .await
        .unwrap();
    for r in join_all(PATIENCE, "waiters", waiters).await {
        match r {
            GetOrSet::Occupied(v) => assert_eq!(v, b("once")),
            // Only a caller that reached the backend after the fill may find nothing stored.
            GetOrSet::Vacant(v) => {
                assert!(!joined, "a waiter of a TTL-0 fill must still get its value");
                drop(v);
            }
        }
    }
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(None));
    drop(vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "caller after a TTL-0 fill",
    ));
}

/// A fill refused for size returns the error and hands the vacancy to a waiter; nobody hangs.
pub async fn rejected_fill_hands_off<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("fill-rejected");
    let max = c.limits().max_value_size;
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let waiter = spawn_waiter(&c, &ns, b"k");
    settle(&*c, before, 1).await;
    assert_eq!(
        within(
            "oversized fill",
            holder.fill(Bytes::from(vec![0u8; max + 1]), None)
        )
        .await,
        Err(Error::ValueTooLarge { len: max + 1, max })
    );
    let next = vacant(
        Ok(within("waiter after a refused fill", waiter)
            .await
            .expect("waiter task")),
        "waiter after a refused fill",
    );
    assert_eq!(c.stats().fills, 0, "a refused fill is not a fill");
    next.fill(b("ok"), None).await.unwrap();
    assert_eq!(c.stats().fills, 1);
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("ok"))));
}

/// Waiting `get_or_set` futures that are dropped leave the rendezvous: a later hand-off goes to
/// a waiter that is still there.
pub async fn cancelled_waiters_leave_the_rendezvous<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("cancel-waiter");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    // Eight waiters join in order; the first seven are cancelled, the last stays.
    let before = c.stats().rendezvous_waits;
    let mut waiters: Vec<_> = (0..8).map(|_| c.get_or_set(&ns, b"k")).collect();
    poll_pending(&mut waiters, settle(&*c, before, 8)).await;
    let last = waiters.pop().expect("eight waiters");
    drop(waiters);
    drop(holder);
    let next = vacant(
        within("remaining waiter after the drop", last).await,
        "the one waiter left after seven cancelled",
    );
    next.fill(b("v"), None).await.unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("v"))));
}

/// A spawned task holding the vacancy that is aborted hands the vacancy to a waiter.
pub async fn cancelled_filler_task_hands_off<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("cancel-filler");
    let (got_vacancy, vacancy_taken) = tokio::sync::oneshot::channel();
    let filler = {
        let (c, ns) = (c.clone(), ns.clone());
        tokio::spawn(async move {
            let vacancy = vacant(c.get_or_set(&ns, b"k").await, "filler task");
            got_vacancy.send(()).expect("test waits for the filler");
            // A slow computation, cancelled before it fills.
            std::future::pending::<()>().await;
            vacancy.fill(b("never"), None).await
        })
    };
    within("filler gets the vacancy", vacancy_taken)
        .await
        .expect("filler task");
    let before = c.stats().rendezvous_waits;
    let waiter = spawn_waiter(&c, &ns, b"k");
    settle(&*c, before, 1).await;
    filler.abort();
    assert!(
        within("aborted filler", filler)
            .await
            .unwrap_err()
            .is_cancelled()
    );
    let next = vacant(
        Ok(within("waiter after the filler was aborted", waiter)
            .await
            .expect("waiter task")),
        "waiter after the filler was aborted",
    );
    next.fill(b("v"), None).await.unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("v"))));
}

/// Waiters dropped right after the vacancy was handed to them (never polled again) pass it on.
pub async fn waiter_dropped_after_hand_off_passes_it_on<H: Harness>(h: &H) {
    let c = h.backend(HarnessConfig::default()).await;
    let ns = fresh_ns("drop-handed");
    let holder = vacant(
        within("get_or_set", c.get_or_set(&ns, b"k")).await,
        "first caller",
    );
    let before = c.stats().rendezvous_waits;
    let mut waiters: Vec<_> = (0..3).map(|_| c.get_or_set(&ns, b"k")).collect();
    poll_pending(&mut waiters, settle(&*c, before, 3)).await;
    // The hand-off picks one of the first two waiters (FIFO backends pick the first); both are
    // dropped before they are polled again, so the vacancy must reach the third.
    drop(holder);
    let last = waiters.pop().expect("three waiters");
    drop(waiters);
    let next = vacant(
        within("last waiter", last).await,
        "the waiter left after the handed ones were dropped",
    );
    next.fill(b("v"), None).await.unwrap();
    assert_eq!(within("get", c.get(&ns, b"k")).await, Ok(Some(b("v"))));
    assert_eq!(
        occupied(
            within("get_or_set", c.get_or_set(&ns, b"k")).await,
            "later caller"
        ),
        b("v")
    );
}
