//! End-to-end tests of the revalidating lookups (`get_or_revalidate*`, async and blocking), run
//! inside a component under `wasi-cache run` like the other SDK tests; the `two_hosts_*` parts
//! run only from the CLI's tests, in two processes sharing one Redis.

#![cfg_attr(feature = "p3", no_main)]

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{block_on, sleep};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use wasi_cache_guest::stale::envelope::{Envelope, HEADER, MAGIC, VERSION};
use wasi_cache_guest::stale::{MARKER, refresh_key};
use wasi_cache_guest::{Cache, Error, How, Lifetimes, Served};

/// A key unique to this run and to these tests.
fn k(name: &str) -> String {
    common::unique_key("r", name)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Fresh for 300 ms, then served stale for a minute while refreshed.
const SWR: Lifetimes =
    Lifetimes::new(Duration::from_millis(300)).stale_while_revalidate(Duration::from_secs(60));

/// Stores `value` under `key` through a revalidating lookup (a miss: this caller computes).
async fn seed(key: &str, value: &'static [u8], lifetimes: Lifetimes) {
    let served = Cache::new()
        .get_or_revalidate_served(key, move || async move {
            Ok::<_, Error>((value.to_vec(), lifetimes))
        })
        .await
        .unwrap();
    assert_eq!(served.how, How::Computed);
    assert_eq!(served.value, value);
}

/// The future of a test's compute.
type Refresh =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Vec<u8>, Lifetimes), Error>>>>;

/// A compute that counts its runs in `runs`, takes `pause_ms` and gives `value` (or fails with
/// "origin down" when `value` is none), setting `done` at its end.
fn counted(
    runs: &Rc<Cell<u32>>,
    done: &Rc<Cell<bool>>,
    pause_ms: u64,
    value: Option<&'static [u8]>,
    lifetimes: Lifetimes,
) -> impl FnOnce() -> Refresh + 'static {
    let (runs, done) = (runs.clone(), done.clone());
    move || {
        Box::pin(async move {
            runs.set(runs.get() + 1);
            sleep(pause_ms).await;
            done.set(true);
            match value {
                Some(value) => Ok((value.to_vec(), lifetimes)),
                None => Err(Error::Compute("origin down".into())),
            }
        })
    }
}

/// Looks `key` up until it answers fresh (a refresh elsewhere ended), for at most 20 s.
async fn until_fresh(key: &str) -> Served<Vec<u8>> {
    for _ in 0..400 {
        let served = Cache::new()
            .get_or_revalidate_served(key, || async {
                Err::<(Vec<u8>, Lifetimes), _>("a refresh is under way: must not run")
            })
            .await
            .unwrap();
        if served.how == How::Fresh {
            return served;
        }
        sleep(50).await;
    }
    panic!("{key:?} never became fresh again");
}

fn envelope_bytes_are_as_documented() {
    block_on(async {
        let cache = Cache::new();
        let key = k("format");
        let lifetimes = Lifetimes::new(ms(1000))
            .stale_while_revalidate(ms(2000))
            .stale_if_error(ms(5000))
            .refresh_lease(ms(700));
        seed(&key, b"value", lifetimes).await;
        let raw = cache.get(&key).await.unwrap().unwrap();
        assert_eq!(raw.len(), HEADER + 5);
        assert_eq!((&raw[..4], raw[4]), (&MAGIC[..], VERSION));
        assert_eq!(&raw[..5], &[0x89, b'S', b'W', b'R', 1]);
        let u64_at = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().unwrap());
        let stored = u64_at(5);
        assert_eq!(u64_at(13), stored + 1000);
        assert_eq!(u64_at(21), stored + 3000);
        assert_eq!(u64_at(29), stored + 6000);
        assert_eq!(&raw[37..41], &700u32.to_be_bytes());
        assert_eq!(&raw[41..], b"value");
        let envelope = Envelope::decode(&key, raw.clone()).unwrap();
        assert_eq!(envelope.encode(), raw);

        // Bytes that are not an envelope, or of another version, are a decode error.
        cache.set(&k("plain"), b"plain", None).await.unwrap();
        let err = cache
            .get_or_revalidate(&k("plain"), SWR, || async { Ok::<_, Error>(vec![]) })
            .await
            .unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        let mut other = raw;
        other[4] = 2;
        cache.set(&k("v2"), &other, None).await.unwrap();
        let err = cache
            .get_or_revalidate(&k("v2"), SWR, || async { Ok::<_, Error>(vec![]) })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("envelope version 2"), "{err}");
    });
}

fn stale_while_exactly_one_refreshes() {
    block_on(async {
        let cache = Cache::new();
        let key = k("swr");
        seed(&key, b"v1", SWR).await;
        let hit = cache
            .get_or_revalidate_served(&key, || async {
                Err::<(Vec<u8>, Lifetimes), _>("fresh: must not run")
            })
            .await
            .unwrap();
        assert_eq!((hit.value.as_slice(), hit.how), (&b"v1"[..], How::Fresh));
        sleep(400).await;

        let (runs, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let callers = (0..200).map(|_| {
            cache.get_or_revalidate_served(&key, counted(&runs, &done, 1000, Some(b"v2"), SWR))
        });
        let served = join_all(callers).await;
        // Every caller answered before the refresh ended: none waited for it.
        assert!(!done.get(), "a caller waited for the refresh");
        for served in served {
            let served = served.unwrap();
            assert_eq!(
                (served.value.as_slice(), served.how),
                (&b"v1"[..], How::Stale)
            );
            assert!(served.age >= ms(300), "{served:?}");
        }
        let fresh = until_fresh(&key).await;
        assert_eq!(fresh.value, b"v2");
        assert_eq!(runs.get(), 1, "the refresh ran more than once");
        let after = join_all((0..200).map(|_| {
            cache.get_or_revalidate(&key, SWR, || async {
                Err::<Vec<u8>, _>("fresh: must not run")
            })
        }))
        .await;
        assert!(after.into_iter().all(|v| v.unwrap() == b"v2"));
    });
}

fn a_failed_refresh_lets_the_next_caller_try_again() {
    block_on(async {
        let cache = Cache::new();
        let key = k("swr-fail");
        seed(&key, b"v1", SWR).await;
        sleep(400).await;
        let (runs, failed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let wave = join_all((0..50).map(|_| {
            cache.get_or_revalidate_served(&key, counted(&runs, &failed, 300, None, SWR))
        }))
        .await;
        assert!(wave.into_iter().all(|s| s.unwrap().how == How::Stale));
        while !failed.get() {
            sleep(20).await;
        }
        sleep(100).await; // the refresh key's release after the failure
        assert_eq!(runs.get(), 1, "more than one caller refreshed");

        let done = Rc::new(Cell::new(false));
        let wave = join_all((0..50).map(|_| {
            cache.get_or_revalidate_served(&key, counted(&runs, &done, 100, Some(b"v2"), SWR))
        }))
        .await;
        for served in wave {
            assert_eq!(served.unwrap().value, b"v1");
        }
        assert_eq!(until_fresh(&key).await.value, b"v2");
        assert_eq!(
            runs.get(),
            2,
            "one retry after the failure, not one per caller"
        );
    });
}

fn stale_if_error_serves_the_stale_value_then_fails() {
    block_on(async {
        let cache = Cache::new();
        let key = k("sie");
        let sie = Lifetimes::new(ms(300)).stale_if_error(ms(3000));
        seed(&key, b"v1", sie).await;
        sleep(400).await;
        // Past freshness, no revalidate window: the callers wait for one refresh, which fails,
        // and all answer the stale value.
        let (runs, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let served =
            join_all((0..20).map(|_| {
                cache.get_or_revalidate_served(&key, counted(&runs, &done, 200, None, sie))
            }))
            .await;
        assert!(done.get());
        for served in served {
            let served = served.unwrap();
            assert_eq!(
                (served.value.as_slice(), served.how),
                (&b"v1"[..], How::Stale)
            );
        }
        assert_eq!(
            runs.get(),
            1,
            "the waiters retried a failure they waited for"
        );
        // The next caller after the failure's marker (250 ms) tries again; a success is the
        // new value.
        sleep(300).await;
        let again = cache
            .get_or_revalidate_served(&key, counted(&runs, &done, 0, Some(b"v2"), sie))
            .await
            .unwrap();
        assert_eq!(
            (again.value.as_slice(), again.how),
            (&b"v2"[..], How::Computed)
        );
        assert_eq!(runs.get(), 2);

        // Past every window the key is gone: a failing compute is the caller's error.
        let short = k("sie-short");
        let lifetimes = Lifetimes::new(ms(100)).stale_if_error(ms(200));
        seed(&short, b"v1", lifetimes).await;
        sleep(500).await;
        let err = cache
            .get_or_revalidate(&short, lifetimes, || async { Err::<Vec<u8>, _>("down") })
            .await
            .unwrap_err();
        assert_eq!(err.into_compute().unwrap().to_string(), "down");
        let recomputed = cache
            .get_or_revalidate(&short, lifetimes, || async {
                Ok::<_, Error>(b"v3".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(recomputed, b"v3");
    });
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Quote {
    symbol: String,
    cents: u64,
}

fn typed_values_revalidate() {
    block_on(async {
        let cache = Cache::new();
        let key = k("typed");
        let quote = |cents| Quote {
            symbol: "WASI".into(),
            cents,
        };
        let first: Quote = cache
            .get_or_revalidate_as(&key, SWR, move || async move { Ok::<_, Error>(quote(1)) })
            .await
            .unwrap();
        assert_eq!(first, quote(1));
        sleep(400).await;
        let stale: Quote = cache
            .get_or_revalidate_as(&key, SWR, move || async move { Ok::<_, Error>(quote(2)) })
            .await
            .unwrap();
        assert_eq!(stale, quote(1));
        let fresh = until_fresh(&key).await;
        assert_eq!(
            wasi_cache_guest::codec::decode::<Quote>(&key, &fresh.value).unwrap(),
            quote(2)
        );
    });
}

/// A refresher that died holding the refresh key (its marker written by hand, as a crashed
/// instance leaves it): nobody refreshes until its lease ends, then the next caller does.
fn a_dead_refreshers_claim_ends_with_its_lease() {
    block_on(async {
        let cache = Cache::new();
        let key = k("dead");
        seed(&key, b"v1", SWR).await;
        cache
            .set(&refresh_key(&key), MARKER, Some(ms(800)))
            .await
            .unwrap();
        sleep(400).await;
        let (runs, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        for _ in 0..5 {
            let served = cache
                .get_or_revalidate_served(&key, counted(&runs, &done, 0, Some(b"v2"), SWR))
                .await
                .unwrap();
            assert_eq!(served.how, How::Stale);
            sleep(20).await;
        }
        assert_eq!(
            runs.get(),
            0,
            "refreshed while another refresher held the claim"
        );
        sleep(600).await;
        let served = cache
            .get_or_revalidate_served(&key, counted(&runs, &done, 0, Some(b"v2"), SWR))
            .await
            .unwrap();
        assert_eq!(served.value, b"v1");
        assert_eq!(until_fresh(&key).await.value, b"v2");
        assert_eq!(runs.get(), 1);
    });
}

fn blocking_refresh_runs_in_the_elected_caller() {
    let cache = wasi_cache_guest::blocking::Cache::new();
    let key = k("blocking");
    let lifetimes = SWR.stale_if_error(Duration::from_secs(60));
    let first = cache
        .get_or_revalidate(&key, lifetimes, || Ok::<_, Error>(b"v1".to_vec()))
        .unwrap();
    assert_eq!(first, b"v1");
    std::thread::sleep(ms(400));
    // Within the revalidate window the elected caller refreshes inline and answers the new
    // value; the next caller hits it.
    let refreshed = cache
        .get_or_revalidate_served(&key, || Ok::<_, Error>((b"v2".to_vec(), lifetimes)))
        .unwrap();
    assert_eq!(
        (refreshed.value.as_slice(), refreshed.how),
        (&b"v2"[..], How::Computed)
    );
    let hit = cache
        .get_or_revalidate_served(&key, || Err::<(Vec<u8>, Lifetimes), _>("must not run"))
        .unwrap();
    assert_eq!((hit.value.as_slice(), hit.how), (&b"v2"[..], How::Fresh));
    std::thread::sleep(ms(400));
    // Another caller's refresh under way: the stale value, no compute.
    cache
        .set(&refresh_key(&key), MARKER, Some(Duration::from_secs(60)))
        .unwrap();
    let stale = cache
        .get_or_revalidate_served(&key, || Err::<(Vec<u8>, Lifetimes), _>("must not run"))
        .unwrap();
    assert_eq!(
        (stale.value.as_slice(), stale.how),
        (&b"v2"[..], How::Stale)
    );
    cache.delete(&refresh_key(&key)).unwrap();
    // A failing refresh answers the stale value.
    let failed = cache
        .get_or_revalidate_served(&key, || Err::<(Vec<u8>, Lifetimes), _>("down"))
        .unwrap();
    assert_eq!(
        (failed.value.as_slice(), failed.how),
        (&b"v2"[..], How::Stale)
    );
    // Typed values too.
    let typed: u32 = cache
        .get_or_revalidate_as(&k("blocking-typed"), lifetimes, || Ok::<_, Error>(7u32))
        .unwrap();
    assert_eq!(typed, 7);
}

/// A parameter of a two-host scenario, from the environment.
fn param(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Part one of the two-host scenario: stores `v1` under `SWR_KEY`, fresh for a second.
fn two_hosts_seed() {
    block_on(async {
        let lifetimes =
            Lifetimes::new(Duration::from_secs(1)).stale_while_revalidate(Duration::from_secs(120));
        seed(&param("SWR_KEY"), b"v1", lifetimes).await;
    });
}

/// Part two, run by two processes at once once `SWR_KEY` is stale: each says it is ready and
/// waits for the other, then 100 concurrent callers all answer the stale value while one
/// caller of either process refreshes it (each prints how many computes it ran); then every
/// caller answers the new value.
fn two_hosts_burst() {
    block_on(async {
        let cache = Cache::new();
        let key = param("SWR_KEY");
        let host = param("SWR_HOST");
        let other = param("SWR_OTHER");
        cache
            .set(
                &format!("{key}:ready:{host}"),
                b"",
                Some(Duration::from_secs(120)),
            )
            .await
            .unwrap();
        let mut waited = 0;
        while !cache.exists(&format!("{key}:ready:{other}")).await.unwrap() {
            assert!(waited < 60_000, "the other host never got ready");
            sleep(10).await;
            waited += 10;
        }
        let lifetimes =
            Lifetimes::new(Duration::from_secs(60)).stale_while_revalidate(Duration::from_secs(60));
        let (runs, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let served = join_all((0..100).map(|_| {
            cache
                .get_or_revalidate_served(&key, counted(&runs, &done, 3000, Some(b"v2"), lifetimes))
        }))
        .await;
        let stale = served
            .into_iter()
            .filter(|s| matches!(s, Ok(s) if s.value == b"v1" && s.how == How::Stale))
            .count();
        println!("stale: {stale}");
        assert_eq!(until_fresh(&key).await.value, b"v2");
        println!("computes: {}", runs.get());
        let after = join_all((0..100).map(|_| {
            cache.get_or_revalidate(&key, lifetimes, || async {
                Err::<Vec<u8>, _>("fresh: must not run")
            })
        }))
        .await;
        let fresh = after
            .into_iter()
            .filter(|v| matches!(v, Ok(v) if v == b"v2"))
            .count();
        println!("fresh: {fresh}");
    });
}

sdk_tests!(
    envelope_bytes_are_as_documented,
    stale_while_exactly_one_refreshes,
    a_failed_refresh_lets_the_next_caller_try_again,
    stale_if_error_serves_the_stale_value_then_fails,
    typed_values_revalidate,
    a_dead_refreshers_claim_ends_with_its_lease,
    blocking_refresh_runs_in_the_elected_caller,
    two_hosts_seed,
    two_hosts_burst,
);
