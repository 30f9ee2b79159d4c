//! Example guest: memoising an expensive computation with `wasi:keyvalue/cache`.
//!
//! `memo [CALLERS]` starts CALLERS (default 32) concurrent `get-or-set` calls for each of a few
//! keys, polls all of them together, and computes a key's value only when handed its vacancy;
//! the other callers wait in the rendezvous and receive that value. Then plain `get`s hit, and a
//! `get` of a key nobody computed misses. Run it with `wasi-cache run --stats memo.wasm`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasi-cache:wit/cache",
    generate_all,
});

use std::time::{Duration, Instant};

use wasi::io::poll::{Pollable, poll};
use wasi::keyvalue::cache::{self, FutureGetOrSetResult, GetOrSetEntry};
use wasi::keyvalue::types::IncomingValue;

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

fn main() {
    let callers: usize = match std::env::args().nth(1) {
        None => 32,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: memo [CALLERS]  (CALLERS is a number, got {arg:?})");
            std::process::exit(2)
        }),
    };
    let keys: Vec<String> = NTH_PRIMES
        .iter()
        .map(|n| format!("nth-prime:{n}"))
        .collect();
    println!(
        "{} keys x {callers} concurrent get-or-set callers, all pending at once",
        keys.len()
    );

    // Every caller's get-or-set is issued before any is read: they all meet in the rendezvous.
    let mut pending: Vec<(usize, FutureGetOrSetResult)> = (0..callers)
        .flat_map(|_| (0..keys.len()).map(|k| (k, cache::get_or_set(&keys[k]))))
        .collect();
    let mut tallies: Vec<Tally> = keys.iter().map(|_| Tally::default()).collect();

    while !pending.is_empty() {
        let pollables: Vec<Pollable> = pending
            .iter()
            .map(|(_, f)| f.listen_to_future_get_or_set_result())
            .collect();
        let ready = poll(&pollables.iter().collect::<Vec<_>>());
        drop(pollables); // a pollable must go before its future
        let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for i in ready {
            let (k, future) = pending.swap_remove(i);
            let entry = future
                .future_get_or_set_result_get()
                .expect("ready after poll")
                .unwrap_or_else(|err| fail(&format!("get-or-set {}: {}", keys[k], err.trace())));
            let tally = &mut tallies[k];
            match entry {
                GetOrSetEntry::Vacant(vacancy) => {
                    // This caller holds the vacancy: compute once, fill, and the waiters wake.
                    let start = Instant::now();
                    let value = nth_prime(NTH_PRIMES[k]);
                    tally.compute_time += start.elapsed();
                    tally.computations += 1;
                    tally.value = Some(value);
                    vacancy
                        .vacancy_fill(None)
                        .outgoing_value_write_body_sync(value.to_string().as_bytes())
                        .unwrap_or_else(|err| fail(&format!("fill {}: {}", keys[k], err.trace())));
                }
                GetOrSetEntry::Occupied(value) => {
                    let value = decode(&keys[k], &value);
                    if tally.value.is_some_and(|v| v != value) {
                        fail(&format!("{} resolved to two values", keys[k]));
                    }
                    tally.value = Some(value);
                    tally.waited += 1;
                }
            }
        }
    }

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
        match get(key) {
            Some(value) => println!("get {key}: hit ({value})"),
            None => fail(&format!("get {key}: miss right after the fill")),
        }
    }
    // Nobody computed this one: a miss.
    let missing = "nth-prime:1";
    match get(missing) {
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

/// A plain `get`, waiting for its result.
fn get(key: &str) -> Option<u64> {
    let future = cache::get(key);
    future.listen_to_future_get_result().block();
    let value = future
        .future_get_result_get()
        .expect("ready after block")
        .unwrap_or_else(|err| fail(&format!("get {key}: {}", err.trace())));
    value.map(|v| decode(key, &v))
}

fn decode(key: &str, value: &IncomingValue) -> u64 {
    let bytes = value
        .incoming_value_consume_sync()
        .unwrap_or_else(|err| fail(&format!("read {key}: {}", err.trace())));
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("{key} holds {bytes:?}, not a number")))
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
