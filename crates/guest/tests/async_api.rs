//! End-to-end tests of the async API, run inside a component under `wasi-cache run`:
//! `CARGO_TARGET_WASM32_WASIP2_RUNNER="wasi-cache run" cargo test --target wasm32-wasip2`, and
//! on the WASI 0.3 flavour with `--features p3`.

#![cfg_attr(feature = "p3", no_main)]

mod common;

use std::time::Duration;

use common::{block_on, sleep};
use futures::future::{Either, join_all, select};
use serde::{Deserialize, Serialize};
use wasi_cache_guest::{Cache, Entry, Error};

/// A key unique to this run and to these tests.
fn k(name: &str) -> String {
    common::unique_key("a", name)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
    label: String,
}

fn get_set_exists_delete() {
    block_on(async {
        let cache = Cache::new();
        assert_eq!(cache.get(&k("missing")).await.unwrap(), None);
        assert!(!cache.exists(&k("missing")).await.unwrap());
        cache.set(&k("k"), b"v1", None).await.unwrap();
        assert_eq!(
            cache.get(&k("k")).await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert!(cache.exists(&k("k")).await.unwrap());
        let value = cache.get_value(&k("k")).await.unwrap().unwrap();
        assert_eq!(value.key(), &k("k"));
        assert_eq!(value.size().unwrap(), 2);
        cache
            .set(&k("k"), b"v2", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            cache.get(&k("k")).await.unwrap().as_deref(),
            Some(&b"v2"[..])
        );
        cache.delete(&k("k")).await.unwrap();
        assert_eq!(cache.get(&k("k")).await.unwrap(), None);
        cache.delete(&k("never-there")).await.unwrap();
        cache.set(&k("empty"), b"", None).await.unwrap();
        assert_eq!(
            cache.get(&k("empty")).await.unwrap().as_deref(),
            Some(&b""[..])
        );
    });
}

fn ttl_expires() {
    block_on(async {
        let cache = Cache::new();
        cache
            .set(&k("ttl"), b"x", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        // A sub-millisecond TTL still stores with 1 ms, never "forever".
        cache
            .set(&k("ttl-sub"), b"x", Some(Duration::from_micros(10)))
            .await
            .unwrap();
        sleep(30).await;
        assert_eq!(cache.get(&k("ttl")).await.unwrap(), None);
        assert_eq!(cache.get(&k("ttl-sub")).await.unwrap(), None);
    });
}

fn many_concurrent_operations() {
    block_on(async {
        let cache = Cache::new();
        let keys: Vec<String> = (0..200).map(|i| k(&format!("many:{i}"))).collect();
        let sets = join_all(keys.iter().map(|k| cache.set(k, k.as_bytes(), None))).await;
        assert!(sets.iter().all(Result::is_ok));
        let (gets, exists) = futures::join!(
            join_all(keys.iter().map(|k| cache.get(k))),
            join_all(keys.iter().map(|k| cache.exists(k)))
        );
        for (k, v) in keys.iter().zip(gets) {
            assert_eq!(v.unwrap().as_deref(), Some(k.as_bytes()));
        }
        assert!(exists.into_iter().all(|e| e.unwrap()));
    });
}

fn host_errors_carry_the_trace() {
    block_on(async {
        let cache = Cache::new();
        let long = "k".repeat(70_000); // over the CLI's default 64 KiB key limit
        let err = cache.get(&long).await.unwrap_err();
        assert!(matches!(err, Error::Host { .. }), "{err:?}");
        assert!(err.trace().unwrap().contains("key is"), "{err}");
        assert!(cache.set(&long, b"v", None).await.is_err());
        assert!(cache.exists(&long).await.is_err());
        assert!(cache.delete(&long).await.is_err());
        assert!(cache.entry(&long).await.is_err());
    });
}

fn get_or_set_computes_once_then_hits() {
    block_on(async {
        let cache = Cache::new();
        let v = cache
            .get_or_set(&k("gos"), None, || async {
                Ok::<_, Error>(b"computed".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(v, b"computed");
        let v = cache
            .get_or_set(&k("gos"), None, || async {
                Err::<Vec<u8>, _>("must not run")
            })
            .await
            .unwrap();
        assert_eq!(v, b"computed");
    });
}

fn concurrent_get_or_set_share_one_computation() {
    block_on(async {
        let cache = Cache::new();
        let runs = std::cell::Cell::new(0);
        let key = k("shared");
        let callers = (0..10).map(|_| {
            cache.get_or_set(&key, None, || async {
                runs.set(runs.get() + 1);
                sleep(20).await;
                Ok::<_, Error>(b"once".to_vec())
            })
        });
        for v in join_all(callers).await {
            assert_eq!(v.unwrap(), b"once");
        }
        assert_eq!(runs.get(), 1);
    });
}

fn failing_compute_hands_off_to_a_waiter() {
    block_on(async {
        let cache = Cache::new();
        let key = k("handoff");
        let failing = cache.get_or_set(&key, None, || async {
            sleep(30).await;
            Err::<Vec<u8>, _>("boom")
        });
        let waiter = async {
            sleep(5).await;
            cache
                .get_or_set(&k("handoff"), None, || async {
                    Ok::<_, Error>(b"second".to_vec())
                })
                .await
        };
        let (first, second) = futures::join!(failing, waiter);
        let err = first.unwrap_err();
        assert_eq!(err.to_string(), "get_or_set compute failed: boom");
        assert_eq!(err.into_compute().unwrap().to_string(), "boom");
        assert_eq!(second.unwrap(), b"second");
        assert_eq!(
            cache.get(&k("handoff")).await.unwrap().as_deref(),
            Some(&b"second"[..])
        );
    });
}

fn dropped_get_or_set_future_hands_off() {
    block_on(async {
        let cache = Cache::new();
        let key = k("cancel");
        let abandoned = async {
            let slow = cache.get_or_set(&key, None, || async {
                sleep(10_000).await;
                Ok::<_, Error>(b"never".to_vec())
            });
            match select(Box::pin(slow), Box::pin(sleep(30))).await {
                Either::Left(_) => panic!("the slow compute finished"),
                Either::Right(_) => {} // the get_or_set future is dropped here
            }
        };
        let waiter = async {
            sleep(5).await;
            cache
                .get_or_set(&k("cancel"), None, || async {
                    Ok::<_, Error>(b"took over".to_vec())
                })
                .await
        };
        let ((), v) = futures::join!(abandoned, waiter);
        assert_eq!(v.unwrap(), b"took over");
    });
}

fn entry_fill_and_abandon() {
    block_on(async {
        let cache = Cache::new();
        match cache.entry(&k("entry")).await.unwrap() {
            Entry::Vacant(v) => {
                assert_eq!(v.key(), &k("entry"));
                v.abandon();
            }
            Entry::Occupied(_) => panic!("expected vacant"),
        }
        assert_eq!(cache.get(&k("entry")).await.unwrap(), None);
        match cache.entry(&k("entry")).await.unwrap() {
            Entry::Vacant(v) => v.fill_as(&7u32, None).unwrap(),
            Entry::Occupied(_) => panic!("expected vacant"),
        }
        match cache.entry(&k("entry")).await.unwrap() {
            Entry::Occupied(v) => assert_eq!(v.decode::<u32>().unwrap(), 7),
            Entry::Vacant(_) => panic!("expected occupied"),
        }
    });
}

fn typed_values_and_decode_errors() {
    block_on(async {
        let cache = Cache::new();
        let p = Point {
            x: -3,
            y: 1 << 40,
            label: "origin-ish".into(),
        };
        cache.set_as(&k("point"), &p, None).await.unwrap();
        assert_eq!(cache.get_as::<Point>(&k("point")).await.unwrap(), Some(p));
        assert_eq!(cache.get_as::<Point>(&k("no-point")).await.unwrap(), None);
        let q: Point = cache
            .get_or_set_as(&k("point2"), None, || async {
                Ok::<_, Error>(Point {
                    x: 1,
                    y: 2,
                    label: "q".into(),
                })
            })
            .await
            .unwrap();
        assert_eq!(cache.get_as::<Point>(&k("point2")).await.unwrap(), Some(q));

        cache
            .set(&k("garbage"), &[0xff, 0xff, 0xff], None)
            .await
            .unwrap();
        let err = cache.get_as::<Point>(&k("garbage")).await.unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{:?}", k("garbage"))) && msg.contains("Point"),
            "{msg}"
        );
        // A decode error on a hit of get_or_set_as too.
        let err = cache
            .get_or_set_as(&k("garbage"), None, || async { Ok::<_, Error>(0u8) })
            .await
            .unwrap_err();
        assert!(err.is_decode(), "{err:?}");
    });
}

fn streams_16_mib() {
    block_on(async {
        let cache = Cache::new();
        let body: Vec<u8> = (0..16usize << 20).map(|i| (i % 253) as u8).collect();
        let mut w = cache.set_stream(&k("big"), None).unwrap();
        for chunk in body.chunks(1 << 20) {
            w.write(chunk).await.unwrap();
        }
        w.finish().await.unwrap();
        let value = cache.get_value(&k("big")).await.unwrap().unwrap();
        assert_eq!(value.size().unwrap(), body.len() as u64);
        let back = value.into_reader().unwrap().read_to_end().await.unwrap();
        assert!(back == body);
        // One byte over the CLI's default 16 MiB value limit fails with the host's trace.
        let mut w = cache.set_stream(&k("too-big"), None).unwrap();
        let wrote = async {
            w.write(&body).await?;
            w.write(b"!").await
        }
        .await;
        let err = match wrote {
            Err(e) => e,
            Ok(()) => w.finish().await.unwrap_err(),
        };
        assert!(format!("{err}").contains("value is"), "{err}");
        assert_eq!(cache.get(&k("too-big")).await.unwrap(), None);
    });
}

fn streamed_fill_reaches_a_waiter() {
    block_on(async {
        let cache = Cache::new();
        let filler = async {
            match cache.entry(&k("stream-fill")).await.unwrap() {
                Entry::Vacant(v) => {
                    let mut w = v.fill_stream(Some(Duration::from_secs(60))).unwrap();
                    sleep(20).await;
                    w.write(b"str").await.unwrap();
                    w.write(b"eamed").await.unwrap();
                    w.finish().await.unwrap();
                }
                Entry::Occupied(_) => panic!("expected vacant"),
            }
        };
        let waiter = async {
            sleep(5).await;
            cache
                .get_or_set(&k("stream-fill"), None, || async {
                    Err::<Vec<u8>, _>("no")
                })
                .await
        };
        let ((), v) = futures::join!(filler, waiter);
        assert_eq!(v.unwrap(), b"streamed");
    });
}

sdk_tests!(
    get_set_exists_delete,
    ttl_expires,
    many_concurrent_operations,
    host_errors_carry_the_trace,
    get_or_set_computes_once_then_hits,
    concurrent_get_or_set_share_one_computation,
    failing_compute_hands_off_to_a_waiter,
    dropped_get_or_set_future_hands_off,
    entry_fill_and_abandon,
    typed_values_and_decode_errors,
    streams_16_mib,
    streamed_fill_reaches_a_waiter,
);
