//! Example guest on the wasi-cache-guest SDK: `fanout [N]` (default 64)
//!
//! 1. stores N keys and reads them back with N `get`s and N `exists` all pending at once;
//! 2. runs a `get_or_set` whose compute fails while two other callers wait on the same key: the
//!    vacancy is handed to a waiter, which computes the value the last caller then receives;
//! 3. stores a typed value, reads it back, and shows the decode error of a wrongly typed read;
//! 4. streams a 16 MiB value in and out (and reads it with the blocking API too).
//!
//! Run it with `wasi-cache run --stats fanout.wasm` (see `examples/run-fanout.sh`).
//!
//! Two more modes show a hand-off between instances sharing one cache (e.g. two
//! `wasi-cache run --redis URL` processes): `fanout fail-after MS KEY` takes KEY's vacancy and
//! fails its compute after MS milliseconds; `fanout take-over KEY`, started meanwhile, waits in
//! the rendezvous, is handed the vacancy and fills it.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use wasi_cache_guest::{Cache, Error, blocking};

/// A typed value stored with `set_as`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
    tags: Vec<String>,
}

#[wstd::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fail-after") if args.len() == 4 => {
            let ms = args[2].parse().unwrap_or(500);
            return fail_after(Cache::new(), ms, &args[3]).await;
        }
        Some("take-over") if args.len() == 3 => return take_over(Cache::new(), &args[2]).await,
        _ => {}
    }
    let n: usize = match args.get(1) {
        None => 64,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: fanout [N]  (N is a number, got {arg:?})");
            std::process::exit(2)
        }),
    };
    let cache = Cache::new();
    fan_out(cache, n).await?;
    hand_off(cache).await?;
    typed(cache).await?;
    streamed(cache).await?;
    println!("done");
    Ok(())
}

/// N sets, then N gets and N exists, every batch pending on the host at once.
async fn fan_out(cache: Cache, n: usize) -> Result<(), Error> {
    let start = Instant::now();
    let keys: Vec<String> = (0..n).map(|i| format!("fanout:{i}")).collect();
    let sets = keys
        .iter()
        .enumerate()
        .map(|(i, k)| async move { cache.set(k, format!("value {i}").as_bytes(), None).await });
    join_all(sets)
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;

    let gets = join_all(keys.iter().map(|k| cache.get(k)));
    let exists =
        join_all((0..n * 2).map(|i| async move { cache.exists(&format!("fanout:{i}")).await }));
    let (values, exists) = futures::join!(gets, exists);
    let mut hits = 0;
    for (i, value) in values.into_iter().enumerate() {
        let value = value?.ok_or(Error::Protocol("a key just set is missing"))?;
        assert_eq!(value, format!("value {i}").as_bytes());
        hits += 1;
    }
    let present = exists.into_iter().filter(|e| matches!(e, Ok(true))).count();
    println!(
        "fan-out: {n} concurrent sets, then {hits}/{n} hits among {n} concurrent gets and {present}/{} \
         present among {} concurrent exists, in {:?}",
        n * 2,
        n * 2,
        start.elapsed()
    );
    assert_eq!(present, n);
    Ok(())
}

/// Three callers on one missing key: the first's compute fails, the second takes over.
async fn hand_off(cache: Cache) -> Result<(), Error> {
    let key = "hand-off";
    cache.delete(key).await?;
    let failing = cache.get_or_set(key, None, || async {
        wstd::task::sleep(Duration::from_millis(50).into()).await;
        Err::<Vec<u8>, _>("backend unavailable")
    });
    let second = async {
        wstd::task::sleep(Duration::from_millis(10).into()).await;
        cache
            .get_or_set(key, Some(Duration::from_secs(60)), || async {
                println!("hand-off: caller 2 was handed the vacancy and computes");
                Ok::<_, Error>(b"computed by caller 2".to_vec())
            })
            .await
    };
    let third = async {
        wstd::task::sleep(Duration::from_millis(20).into()).await;
        cache
            .get_or_set(key, None, || async {
                Ok::<_, Error>(b"computed by caller 3".to_vec())
            })
            .await
    };
    let (first, second, third) = futures::join!(failing, second, third);
    match first {
        Err(Error::Compute(e)) => println!("hand-off: caller 1's compute failed: {e}"),
        other => panic!("caller 1 should have failed, got {other:?}"),
    }
    let second = second?;
    let third = third?;
    println!(
        "hand-off: caller 2 got {:?}",
        String::from_utf8_lossy(&second)
    );
    println!(
        "hand-off: caller 3 got {:?}",
        String::from_utf8_lossy(&third)
    );
    assert_eq!(second, b"computed by caller 2");
    assert_eq!(third, second);
    Ok(())
}

/// `set_as`/`get_as` round trip, `get_or_set_as` hit, and a decode error.
async fn typed(cache: Cache) -> Result<(), Error> {
    let profile = Profile {
        name: "Ada".into(),
        visits: 3,
        tags: vec!["admin".into()],
    };
    cache.set_as("profile:ada", &profile, None).await?;
    let back: Option<Profile> = cache.get_as("profile:ada").await?;
    assert_eq!(back.as_ref(), Some(&profile));
    let hit: Profile = cache
        .get_or_set_as("profile:ada", None, || async {
            Err::<Profile, _>("not called on a hit")
        })
        .await?;
    println!(
        "typed: {hit:?} round-tripped ({} encoding)",
        wasi_cache_guest::codec::FORMAT
    );

    cache.set("not-a-profile", &[0xff; 3], None).await?;
    match cache.get_as::<Profile>("not-a-profile").await {
        Err(e @ Error::Decode { .. }) => println!("typed: decode error as expected: {e}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    Ok(())
}

/// A 16 MiB value streamed in and out, asynchronously and blocking.
async fn streamed(cache: Cache) -> Result<(), Error> {
    const SIZE: usize = 16 << 20;
    let start = Instant::now();
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut writer = cache.set_stream("big", None)?;
    for chunk in body.chunks(1 << 20) {
        writer.write(chunk).await?;
    }
    writer.finish().await?;
    let value = cache
        .get_value("big")
        .await?
        .ok_or(Error::Protocol("big is missing"))?;
    let size = value.size()?;
    let back = value.into_reader()?.read_to_end().await?;
    assert_eq!(back.len(), SIZE);
    assert!(back == body, "streamed value differs");
    let blocking = blocking::Cache::new();
    let again = blocking
        .get_value("big")?
        .ok_or(Error::Protocol("big is missing"))?
        .into_reader()?
        .blocking_read_to_end()?;
    assert!(again == body, "blocking read differs");
    println!(
        "streamed: {size} bytes written and read back twice in {:?}",
        start.elapsed()
    );
    Ok(())
}

/// Takes the vacancy of `key` (or finds its value) and fails the compute after `ms` ms.
async fn fail_after(cache: Cache, ms: u64, key: &str) -> Result<(), Error> {
    let result = cache
        .get_or_set(key, None, || async {
            println!("fail-after: holding the vacancy of {key:?} for {ms} ms");
            wstd::task::sleep(Duration::from_millis(ms).into()).await;
            Err::<Vec<u8>, _>("compute failed on purpose")
        })
        .await;
    match result {
        Err(Error::Compute(e)) => {
            // The vacancy is released already; `wasi-cache run --redis` lets the release reach
            // Redis before the process exits, so exiting at once is fine.
            println!("fail-after: {e}; the vacancy goes to a waiter");
        }
        Ok(v) => println!("fail-after: found {:?}", String::from_utf8_lossy(&v)),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Waits on `key`'s rendezvous and fills it when handed the vacancy.
async fn take_over(cache: Cache, key: &str) -> Result<(), Error> {
    let start = Instant::now();
    let value = cache
        .get_or_set(key, Some(Duration::from_secs(60)), || async {
            println!(
                "take-over: handed the vacancy of {key:?} after {:?}",
                start.elapsed()
            );
            Ok::<_, Error>(b"filled by the take-over instance".to_vec())
        })
        .await?;
    println!("take-over: {key:?} = {:?}", String::from_utf8_lossy(&value));
    Ok(())
}
