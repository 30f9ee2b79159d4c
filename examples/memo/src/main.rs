//! Example guest: memoising an expensive computation with `wasi:keyvalue/cache` get-or-set,
//! written on the wasi-cache-guest SDK.
//!
//! `memo [CALLERS]` starts CALLERS (default 32) concurrent `get_or_set` calls for each of a few
//! keys, all pending together on wstd's reactor; a key's value is computed only by the caller
//! handed its vacancy, and the other callers wait in the rendezvous and receive that value. Then
//! plain `get`s hit, and a `get` of a key nobody computed misses. Run it with
//! `wasi-cache run --stats memo.wasm`.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::future::join_all;
use wasi_cache_guest::{Cache, Error};

/// The values to memoise: the n-th prime for these n.
const NTH_PRIMES: [u64; 3] = [10_000, 40_000, 80_000];

/// What happened to one key.
#[derive(Default)]
struct Tally {
    computations: usize,
    waited: usize,
    compute_time: Duration,
    value: Option<u64>,
}

#[wstd::main]
async fn main() {
    let callers: usize = match std::env::args().nth(1) {
        None => 32,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: memo [CALLERS]  (CALLERS is a number, got {arg:?})");
            std::process::exit(2)
        }),
    };
    let cache = Cache::new();
    let keys: Vec<String> = NTH_PRIMES
        .iter()
        .map(|n| format!("nth-prime:{n}"))
        .collect();
    println!(
        "{} keys x {callers} concurrent get-or-set callers, all pending at once",
        keys.len()
    );

    // Every caller's get_or_set is issued in the first pass over the futures, before any
    // compute runs (a compute yields once first): they all meet in the rendezvous.
    let tallies: Vec<RefCell<Tally>> = keys.iter().map(|_| RefCell::default()).collect();
    let calls = (0..callers).flat_map(|_| 0..keys.len()).map(|k| {
        let (key, tally) = (&keys[k], &tallies[k]);
        async move {
            let computed = std::cell::Cell::new(false);
            let bytes = cache
                .get_or_set(key, None, || async {
                    yield_once().await;
                    computed.set(true);
                    let start = Instant::now();
                    let value = nth_prime(NTH_PRIMES[k]);
                    let mut tally = tally.borrow_mut();
                    tally.compute_time += start.elapsed();
                    tally.computations += 1;
                    Ok::<_, Error>(value.to_string().into_bytes())
                })
                .await
                .unwrap_or_else(|err| fail(&format!("get-or-set {key}: {err}")));
            let value = decode(key, &bytes);
            let mut tally = tally.borrow_mut();
            if tally.value.is_some_and(|v| v != value) {
                fail(&format!("{key} resolved to two values"));
            }
            tally.value = Some(value);
            if !computed.get() {
                tally.waited += 1;
            }
        }
    });
    join_all(calls).await;
    let tallies: Vec<Tally> = tallies.into_iter().map(RefCell::into_inner).collect();

    for (key, tally) in keys.iter().zip(&tallies) {
        println!(
            "{key} = {}: {callers} callers, {} computation{} ({:.1} ms), {} waited",
            tally.value.unwrap_or_default(),
            tally.computations,
            if tally.computations == 1 { "" } else { "s" },
            tally.compute_time.as_secs_f64() * 1e3,
            tally.waited,
        );
    }

    // The values are cached now: plain gets hit, without computing anything.
    for key in &keys {
        match get(cache, key).await {
            Some(value) => println!("get {key}: hit ({value})"),
            None => fail(&format!("get {key}: miss right after the fill")),
        }
    }
    // Nobody computed this one: a miss.
    let missing = "nth-prime:1";
    match get(cache, missing).await {
        None => println!("get {missing}: miss"),
        Some(value) => fail(&format!("get {missing}: unexpected hit ({value})")),
    }

    let computations: usize = tallies.iter().map(|t| t.computations).sum();
    let waited: usize = tallies.iter().map(|t| t.waited).sum();
    println!(
        "total: {} get-or-set calls, {computations} computations, {waited} served by the rendezvous",
        callers * keys.len()
    );
    if tallies.iter().any(|t| t.computations != 1) && callers > 0 {
        fail("a key was computed more than once (or never)");
    }
}

/// A plain `get` of a number.
async fn get(cache: Cache, key: &str) -> Option<u64> {
    let value = cache
        .get(key)
        .await
        .unwrap_or_else(|err| fail(&format!("get {key}: {err}")));
    value.map(|bytes| decode(key, &bytes))
}

fn decode(key: &str, bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("{key} holds {bytes:?}, not a number")))
}

/// Lets every other ready future run once (here: issue its get_or_set) before going on.
async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// The n-th prime (1-based), by trial division: deliberately the slow way.
fn nth_prime(n: u64) -> u64 {
    let mut count = 0;
    let mut candidate = 1;
    while count < n {
        candidate += 1;
        if (2..)
            .take_while(|d| d * d <= candidate)
            .all(|d| candidate % d != 0)
        {
            count += 1;
        }
    }
    candidate
}

fn fail(message: &str) -> ! {
    eprintln!("memo: {message}");
    std::process::exit(1)
}
