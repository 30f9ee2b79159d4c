//! Example WASI 0.3 guest depending on both golem-rust 3.0.2 (default features off) and the
//! wasi-cache-guest SDK with its `p3` feature: a command (it exports `wasi:cli/run@0.3.0`
//! through golem-rust's `wasip3`). Eight concurrent tasks of this instance memoise one key with
//! the SDK's `get_or_set`: one computes, the others receive its value (Golem's own host would
//! answer each with a vacancy and compute eight times). Then golem-rust's own bindings of
//! `wasi:keyvalue/cache` read the value back: both import the same interface.

use std::cell::Cell;
use std::time::Duration;

use futures::future::join_all;
use golem_rust::bindings::wasi::keyvalue::cache as golem_cache;
use wasi_cache_guest::{Cache, Error};

struct Example;

impl golem_rust::wasip3::exports::cli::run::Guest for Example {
    async fn run() -> Result<(), ()> {
        run().await.map_err(|e| eprintln!("golem3-compat: {e}"))
    }
}

async fn run() -> Result<(), Error> {
    let cache = Cache::new();
    let key = "golem3-compat";
    let computed = Cell::new(0);
    let tasks = (0..8).map(|_| {
        cache.get_or_set(key, Some(Duration::from_secs(60)), || async {
            computed.set(computed.get() + 1);
            // Let the other tasks arrive and wait on this computation.
            golem_rust::wasip3::clocks::monotonic_clock::wait_for(20_000_000).await;
            Ok::<_, Error>(b"computed once".to_vec())
        })
    });
    let values = join_all(tasks).await;
    let received = values
        .into_iter()
        .filter(|v| v.as_deref().ok() == Some(&b"computed once"[..]))
        .count();
    let future = golem_cache::get(key);
    let through_golem = match future.get().await {
        Ok(Some(value)) => value.incoming_value_consume_sync().ok(),
        _ => None,
    };
    println!(
        "golem3-compat: {} of 8 tasks computed, {received} have the value, golem-rust's bindings read {:?}",
        computed.get(),
        through_golem.map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    Ok(())
}

golem_rust::wasip3::cli::command::export!(Example with_types_in golem_rust::wasip3);
