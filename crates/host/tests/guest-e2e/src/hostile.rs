//! Scenarios of a hostile guest: it busy-polls instead of blocking, hoards resources until the
//! host refuses, and breaks the stream contract. Each prints what it got to stdout.

use std::time::{Duration, Instant};

use crate::wasi::keyvalue::cache::{self, GetOrSetEntry};
use crate::wasi::keyvalue::types::{Bucket, OutgoingValue};
use crate::wasi::keyvalue::wasi_keyvalue_error::Error;
use crate::{expect_vacant, say, set, wait_get, wait_gos, wait_unit};

/// How long a busy-polling loop may spin on one result before it gives up (a hang guard: the
/// test fails rather than waiting forever).
const SPIN_LIMIT: Duration = Duration::from_secs(60);

/// Holds a vacancy, starts `n` get-or-set calls that wait for it, fills it, then reads every
/// waiter's result by spinning on `…-get` (or, with `via_ready`, on `pollable.ready`) without
/// ever blocking or calling `poll`, as wasi:io allows.
pub fn busy_poll(n: usize, via_ready: bool) {
    let key = if via_ready { "busy-ready" } else { "busy-poll" };
    wait_unit(&cache::delete(key)).unwrap();
    let vacancy = expect_vacant(&cache::get_or_set(key));
    let waiters: Vec<_> = (0..n).map(|_| cache::get_or_set(key)).collect();
    let value = vacancy.vacancy_fill(None);
    value.outgoing_value_write_body_sync(b"filled").unwrap();
    drop(value);
    let mut spins = 0u64;
    for (i, waiter) in waiters.iter().enumerate() {
        let start = Instant::now();
        let entry = if via_ready {
            let pollable = waiter.listen_to_future_get_or_set_result();
            while !pollable.ready() {
                spins += 1;
                assert!(start.elapsed() < SPIN_LIMIT, "waiter {i} never ready");
            }
            drop(pollable);
            waiter
                .future_get_or_set_result_get()
                .expect("ready, so its result is there")
        } else {
            loop {
                if let Some(entry) = waiter.future_get_or_set_result_get() {
                    break entry;
                }
                spins += 1;
                assert!(start.elapsed() < SPIN_LIMIT, "waiter {i} never resolved");
            }
        };
        match entry.unwrap() {
            GetOrSetEntry::Occupied(v) => {
                assert_eq!(v.incoming_value_consume_sync().unwrap(), b"filled");
            }
            GetOrSetEntry::Vacant(_) => panic!("waiter {i} got a vacancy, not the fill"),
        }
    }
    say(&format!("busy-polled {n} waiters ({spins} spins)"));
    say(&format!("ok {key}"));
}

/// Keeps whatever `step(i)` gives for i in 0..n until the host refuses one, then reports how
/// many it kept and why it stopped; everything kept is dropped only at the end.
fn hoard<T>(what: &str, n: usize, mut step: impl FnMut(usize) -> Result<T, Error>) {
    let mut kept = Vec::new();
    for i in 0..n {
        match step(i) {
            Ok(item) => kept.push(item),
            Err(err) => {
                say(&format!("{what}: kept {i}, refused: {}", err.trace()));
                return;
            }
        }
    }
    say(&format!("{what}: kept all {n}"));
}

/// `i` padded with zeros to `len` bytes (a distinct name of that length per `i`).
fn padded(i: usize, len: usize) -> String {
    let digits = i.to_string();
    "0".repeat(len.saturating_sub(digits.len())) + &digits
}

/// Keeps `incoming-value`s of `size` bytes, overwriting the key between gets so that each one
/// is a value the cache no longer holds.
pub fn hoard_values(n: usize, size: usize) {
    hoard("values", n, |i| {
        let body = vec![i as u8; size];
        let value = OutgoingValue::new_outgoing_value();
        value.outgoing_value_write_body_sync(&body)?;
        wait_unit(&cache::set("hoard", &value, None))?;
        drop(value);
        Ok(wait_get(&cache::get("hoard"))?.expect("just set"))
    });
}

/// Keeps the vacancies of distinct keys of `key_len` bytes.
pub fn hoard_vacancies(n: usize, key_len: usize) {
    hoard("vacancies", n, |i| {
        let key = padded(i, key_len);
        match wait_gos(&cache::get_or_set(&key))? {
            GetOrSetEntry::Vacant(vacancy) => Ok(vacancy),
            GetOrSetEntry::Occupied(_) => panic!("key {i} was occupied"),
        }
    });
}

/// Holds the vacancy of one key of `key_len` bytes and keeps starting get-or-set calls that
/// wait on it.
pub fn hoard_waiters(n: usize, key_len: usize) {
    let key = "w".repeat(key_len);
    let _vacancy = expect_vacant(&cache::get_or_set(&key));
    hoard("waiters", n, |_| {
        let waiter = cache::get_or_set(&key);
        match waiter.future_get_or_set_result_get() {
            None => Ok(waiter),
            Some(Err(err)) => Err(err),
            Some(Ok(_)) => panic!("a waiter resolved while the vacancy is held"),
        }
    });
}

/// Keeps buckets opened with names of `name_len` bytes.
pub fn hoard_buckets(n: usize, name_len: usize) {
    hoard("buckets", n, |i| Bucket::open_bucket(&padded(i, name_len)));
}

/// Writes one byte more than `check-write` permitted: wasi:io says that traps.
pub fn overwrite_permit() {
    let value = OutgoingValue::new_outgoing_value();
    let stream = value.outgoing_value_write_body_async().unwrap();
    let permit = stream.check_write().unwrap();
    say(&format!("permit {permit}"));
    let _ = stream.write(&vec![0; permit as usize + 1]);
    say("the host accepted the oversized write");
}

/// Sets `key` to `size` bytes, says `ready` and waits for a line on stdin; then starts `n` gets
/// of it at once and keeps every value unread, says how many it got and the first refusal, and
/// waits for another line before it ends (still holding them).
pub fn flood_gets(key: &str, size: usize, n: usize) {
    set(key, &vec![7; size], None);
    say("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let futures: Vec<_> = (0..n).map(|_| cache::get(key)).collect();
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for future in &futures {
        match wait_get(future) {
            Ok(value) => kept.push(value.expect("just set")),
            Err(err) => refused.push(err.trace()),
        }
    }
    let first = refused.first().map_or("", String::as_str);
    say(&format!(
        "flood: {} values, {} refused: {first}",
        kept.len(),
        refused.len()
    ));
    std::io::stdin().read_line(&mut line).unwrap();
}
