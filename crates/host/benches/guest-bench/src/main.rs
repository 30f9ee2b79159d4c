//! Guest component of the wasi-cache-host `guest` bench: `main CASE N` runs `N` iterations of one
//! operation in a loop and prints one short line (`ok CASE <checksum>`), nothing per iteration.
//! The host times the whole `wasi:cli/run` call and divides by `N`.
//!
//! Cases through `wasi:keyvalue/cache@0.1.0` (the wasi-cache host): `get_hit_64B`, `set_64B`,
//! `get_or_set_occupied`, `get_1MiB`; through wasmtime-wasi-keyvalue's
//! `wasi:keyvalue/store@0.2.0-draft`: `kv_get_64B`, `kv_get_1MiB` (the host seeds the keys).

/// The project's `wasi:keyvalue/cache@0.1.0` world (with `wasi:io`).
mod cache_bindings {
    wit_bindgen::generate!({
        path: "../../../../wit/p2",
        world: "wasi-cache:wit/cache",
        generate_all,
    });
}

/// wasmtime-wasi-keyvalue's `wasi:keyvalue/store@0.2.0-draft`.
mod kv_bindings {
    wit_bindgen::generate!({
        path: "wit-kv",
        world: "wasi-cache:bench-kv/kv",
        generate_all,
    });
}

use std::hint::black_box;
use std::io::Write;

use cache_bindings::wasi::keyvalue::cache::{self, GetOrSetEntry};
use cache_bindings::wasi::keyvalue::types::{IncomingValue, OutgoingValue};
use kv_bindings::wasi::keyvalue::store;

/// The keys the host seeds (natively for the cache, in `in_memory_data` for wasi-keyvalue).
const KEY_64B: &str = "bench-64B";
const KEY_1MIB: &str = "bench-1MiB";
const KEY_SET: &str = "bench-set-64B";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("");
    let n: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1);
    let sum: u64 = match case {
        "get_hit_64B" => (0..n).map(|_| get(KEY_64B)).sum(),
        "get_1MiB" => (0..n).map(|_| get(KEY_1MIB)).sum(),
        "set_64B" => {
            let body = [7u8; 64];
            (0..n).map(|_| set(KEY_SET, &body)).sum()
        }
        "get_or_set_occupied" => (0..n).map(|_| get_or_set(KEY_64B)).sum(),
        "kv_get_64B" | "kv_get_1MiB" => {
            let key = if case == "kv_get_64B" {
                KEY_64B
            } else {
                KEY_1MIB
            };
            // Opening clones the host's whole map: once, outside the loop.
            let bucket = store::open("").expect("open the in-memory store");
            (0..n)
                .map(|_| {
                    let v = bucket.get(black_box(key)).unwrap().expect("seeded key");
                    black_box(v).len() as u64
                })
                .sum()
        }
        other => panic!("unknown case {other:?}"),
    };
    let mut out = std::io::stdout();
    writeln!(out, "ok {case} {sum}").unwrap();
    out.flush().unwrap();
}

/// Consumes a hit's body: its length, so the copy cannot be optimised away.
fn consume(v: IncomingValue) -> u64 {
    black_box(v.incoming_value_consume_sync().unwrap()).len() as u64
}

/// get + (get directly if already done, else listen + block + get) + consume-sync.
fn get(key: &str) -> u64 {
    let f = cache::get(black_box(key));
    let result = match f.future_get_result_get() {
        Some(result) => result,
        None => {
            f.listen_to_future_get_result().block();
            f.future_get_result_get().expect("ready after block")
        }
    };
    consume(result.unwrap().expect("seeded key"))
}

/// new-outgoing-value + write-body-sync + set + wait.
fn set(key: &str, body: &[u8]) -> u64 {
    let v = OutgoingValue::new_outgoing_value();
    v.outgoing_value_write_body_sync(black_box(body)).unwrap();
    let f = cache::set(key, &v, None);
    let result = match f.future_result_get() {
        Some(result) => result,
        None => {
            f.listen_to_future_result().block();
            f.future_result_get().expect("ready after block")
        }
    };
    result.unwrap();
    1
}

/// get-or-set on a present key + consume-sync of the occupied value.
fn get_or_set(key: &str) -> u64 {
    let f = cache::get_or_set(black_box(key));
    let result = match f.future_get_or_set_result_get() {
        Some(result) => result,
        None => {
            f.listen_to_future_get_or_set_result().block();
            f.future_get_or_set_result_get().expect("ready after block")
        }
    };
    match result.unwrap() {
        GetOrSetEntry::Occupied(v) => consume(v),
        GetOrSetEntry::Vacant(_) => panic!("expected occupied: the host seeds {key}"),
    }
}
