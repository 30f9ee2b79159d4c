//! Example guest depending on both golem-rust 2.0.0-dev.8 (default-features = false) and the
//! wasi-cache-guest SDK: it memoises a value with the SDK, awaits a pollable made through
//! golem-rust's `wasi:io` types (the `wasip2` crate's) on wstd's reactor, and prints what it saw.

use std::time::Duration;

use wasi_cache_guest::{Cache, Error};

#[wstd::main]
async fn main() -> Result<(), Error> {
    let cache = Cache::new();
    // golem-rust's `wasi:io/poll` pollable is `wasip2::io::poll::Pollable`, the SDK's too.
    let _: fn(&golem_rust::wasip2::io::poll::Pollable) -> bool = |p| p.ready();
    let first = cache
        .get_or_set("golem-compat", Some(Duration::from_secs(60)), || async {
            Ok::<_, Error>(b"computed once".to_vec())
        })
        .await?;
    let second = cache
        .get_or_set("golem-compat", None, || async {
            Err::<Vec<u8>, _>("not called on a hit")
        })
        .await?;
    assert_eq!(first, second);
    println!(
        "golem-compat: {:?} (golem-rust and the SDK in one component)",
        String::from_utf8_lossy(&second)
    );
    Ok(())
}
