//! End-to-end tests of the blocking API, run inside a component under `wasi-cache run`:
//! `CARGO_TARGET_WASM32_WASIP2_RUNNER="wasi-cache run" cargo test --target wasm32-wasip2`, and
//! on the WASI 0.3 flavour with `--features p3`.

#![cfg_attr(feature = "p3", no_main)]

mod common;

use std::time::Duration;

use wasi_cache_guest::blocking::Cache;
use wasi_cache_guest::{Entry, Error};

/// A key unique to this run and to these tests.
fn k(name: &str) -> String {
    common::unique_key("b", name)
}

fn get_set_exists_delete() {
    let cache = Cache::new();
    assert_eq!(cache.get(&k("missing")).unwrap(), None);
    assert!(!cache.exists(&k("missing")).unwrap());
    cache
        .set(&k("k"), b"v1", Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(cache.get(&k("k")).unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(cache.exists(&k("k")).unwrap());
    assert_eq!(
        cache.get_value(&k("k")).unwrap().unwrap().size().unwrap(),
        2
    );
    cache.delete(&k("k")).unwrap();
    assert_eq!(cache.get(&k("k")).unwrap(), None);
}

fn get_or_set_and_compute_errors() {
    let cache = Cache::new();
    let err = cache
        .get_or_set(&k("gos"), None, || Err::<Vec<u8>, _>("nope"))
        .unwrap_err();
    assert!(matches!(err, Error::Compute(_)), "{err:?}");
    // The failed compute abandoned the vacancy: the next caller gets it.
    let v = cache
        .get_or_set(&k("gos"), None, || Ok::<_, Error>(b"yes".to_vec()))
        .unwrap();
    assert_eq!(v, b"yes");
    let v = cache
        .get_or_set(&k("gos"), None, || Err::<Vec<u8>, _>("not run"))
        .unwrap();
    assert_eq!(v, b"yes");
    assert!(matches!(
        cache.entry(&k("gos")).unwrap(),
        Entry::Occupied(_)
    ));
}

fn typed_values_and_decode_errors() {
    let cache = Cache::new();
    cache.set_as(&k("list"), &vec![1u16, 2, 3], None).unwrap();
    assert_eq!(
        cache.get_as::<Vec<u16>>(&k("list")).unwrap(),
        Some(vec![1, 2, 3])
    );
    let s: String = cache
        .get_or_set_as(&k("s"), None, || Ok::<_, Error>("hi".to_string()))
        .unwrap();
    assert_eq!(s, "hi");
    cache.set(&k("bad"), &[0xff], None).unwrap();
    let err = cache.get_as::<String>(&k("bad")).unwrap_err();
    assert!(err.is_decode(), "{err:?}");
}

fn streams() {
    let cache = Cache::new();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let mut w = cache.set_stream(&k("big"), None).unwrap();
    w.blocking_write(&body).unwrap();
    w.blocking_finish().unwrap();
    let mut r = cache
        .get_value(&k("big"))
        .unwrap()
        .unwrap()
        .into_reader()
        .unwrap();
    let first = r.blocking_read_chunk().unwrap().unwrap();
    assert!(!first.is_empty() && first.len() <= wasi_cache_guest::CHUNK);
    let mut back = first;
    back.extend(r.blocking_read_to_end().unwrap());
    assert_eq!(back, body);
}

sdk_tests!(
    get_set_exists_delete,
    get_or_set_and_compute_errors,
    typed_values_and_decode_errors,
    streams,
);
