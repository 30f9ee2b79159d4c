//! The near cache's rules without a server: fetches spoiled by invalidations, flushes and lost
//! connections, own writes, TTLs from PTTL.

use super::*;

/// A near cache of 1 MiB, in use under epoch 1.
fn near() -> Arc<Near> {
    let near = Near::new(1 << 20, Limits::default(), Arc::new(Counters::default())).unwrap();
    near.up(1);
    near
}

/// The namespace the tests' keys live in.
fn ns() -> Namespace {
    Namespace::new("tests").unwrap()
}

/// `key`'s encoded form in [`ns`], as the near cache keeps it.
fn enc(key: &[u8]) -> Vec<u8> {
    ns().encode_key(key)
}

fn v(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_fetch_with_no_change_in_between_is_kept() {
    let near = near();
    near.begin(&enc(b"k"))
        .unwrap()
        .finish(&v("a"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"k"), Some(v("a")));
    assert!(
        near.fetches.lock().keys.is_empty(),
        "finished fetches unregister"
    );
}

#[test]
fn an_invalidation_while_the_reply_is_in_flight_spoils_it() {
    let near = near();
    let fetch = near.begin(&enc(b"k")).unwrap();
    let other = near.begin(&enc(b"other")).unwrap();
    near.invalidate(&enc(b"k"));
    fetch.finish(&v("stale"), -1, Duration::ZERO);
    other.finish(&v("fine"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"k"), None);
    assert_eq!(near.lookup(&ns(), b"other"), Some(v("fine")));
    // A fetch registered after the invalidation is not affected by it.
    near.begin(&enc(b"k"))
        .unwrap()
        .finish(&v("new"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"k"), Some(v("new")));
    assert_eq!(near.counters.invalidations.load(Ordering::Relaxed), 1);
    let mut stats = Stats::default();
    near.add_stats(&mut stats);
    assert_eq!((stats.near_hits, stats.near_misses), (2, 1));
    assert_eq!(stats.hits, 2, "near hits are hits");
}

#[test]
fn concurrent_fetches_of_one_key_are_all_spoiled() {
    let near = near();
    let first = near.begin(&enc(b"k")).unwrap();
    let second = near.begin(&enc(b"k")).unwrap();
    near.forget(&enc(b"k"));
    drop(first);
    second.finish(&v("stale"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"k"), None);
}

#[test]
fn a_flush_spoils_every_fetch_and_empties_the_store() {
    let near = near();
    near.begin(&enc(b"a"))
        .unwrap()
        .finish(&v("1"), -1, Duration::ZERO);
    let fetch = near.begin(&enc(b"b")).unwrap();
    near.invalidate_all();
    fetch.finish(&v("2"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"a"), None);
    assert_eq!(near.lookup(&ns(), b"b"), None);
}

#[test]
fn a_lost_connection_empties_the_store_and_nothing_is_used_until_the_next_one() {
    let near = near();
    near.begin(&enc(b"a"))
        .unwrap()
        .finish(&v("1"), -1, Duration::ZERO);
    let before = near.begin(&enc(b"b")).unwrap();
    near.down(1);
    assert_eq!(near.lookup(&ns(), b"a"), None);
    assert!(
        near.begin(&enc(b"c")).is_none(),
        "no fetch registers while down"
    );
    // A stale report of an older connection changes nothing.
    near.up(2);
    near.down(1);
    before.finish(&v("2"), -1, Duration::ZERO);
    assert_eq!(
        near.lookup(&ns(), b"b"),
        None,
        "a fetch of the old epoch is dropped"
    );
    assert_eq!(near.lookup(&ns(), b"a"), None, "the new epoch starts empty");
    near.begin(&enc(b"a"))
        .unwrap()
        .finish(&v("3"), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"a"), Some(v("3")));
    assert_eq!(near.store.stats().entries, 1);
}

#[test]
fn entries_honour_the_redis_ttl_from_when_the_command_was_sent() {
    assert_eq!(near_ttl(-1, LONG), Some(None));
    assert_eq!(near_ttl(-2, Duration::ZERO), None);
    assert_eq!(near_ttl(0, Duration::ZERO), None);
    assert_eq!(near_ttl(5, Duration::from_millis(5)), None);
    assert_eq!(
        near_ttl(1_000, Duration::from_millis(10)),
        Some(Some(Duration::from_millis(990)))
    );
    let near = near();
    near.begin(&enc(b"gone")).unwrap().finish(&v("x"), 3, LONG);
    assert_eq!(near.lookup(&ns(), b"gone"), None);
}

#[test]
fn values_too_large_for_the_store_and_keys_beyond_its_limits_are_skipped() {
    let near = near();
    near.begin(&enc(b"big"))
        .unwrap()
        .finish(&Bytes::from(vec![0; 2 << 20]), -1, Duration::ZERO);
    assert_eq!(near.lookup(&ns(), b"big"), None);
    let long = vec![b'k'; 1 << 20];
    near.forget(&long);
    assert_eq!(near.lookup(&ns(), &long), None);
}
