//! The key layout's promises: one non-empty hash tag (one cluster slot) per cache key for every
//! namespace length and any key bytes, and no two names alike.

use std::collections::HashSet;

use wasi_cache_engine::{MAX_NAMESPACE_LEN, Namespace};

use super::*;

/// Redis Cluster's hash tag: the bytes between the first `{` and the first `}` after it, or the
/// whole key when there is no such pair or nothing between them.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// CRC16-XMODEM (polynomial 0x1021, initial 0), as Redis Cluster computes it.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of `key`, and the hash tag it was computed from.
fn slot(key: &[u8]) -> (u16, &[u8]) {
    let tag = hash_tag(key);
    (crc16(tag) % 16384, tag)
}

/// A namespace of `len` bytes made of braces and letters (its length byte is `}` at 125).
fn namespace(len: usize) -> Namespace {
    let name: String = (0..len).map(|i| ['}', '{', 'a'][i % 3]).collect();
    Namespace::new(name).unwrap()
}

const KEYS: [&[u8]; 7] = [b"", b"}", b"{", b"{}", b"}{", b"k}{x", b"\x7d\x7b\x00"];

#[test]
fn crc16_matches_the_redis_cluster_spec() {
    // The test vector of the Redis Cluster specification, and two slots it lists.
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
    assert_eq!(slot(b"foo{}{bar}").1, b"foo{}{bar}");
    assert_eq!(slot(b"foo{{bar}}zap").1, b"{bar");
}

#[test]
fn every_namespace_length_keeps_a_keys_names_in_one_slot() {
    for len in 0..=MAX_NAMESPACE_LEN {
        let ns = namespace(len);
        for key in KEYS {
            for db in [0, 1, 15] {
                let keys = Keys::new(db, &ns, key);
                let (value_slot, tag) = slot(&keys.value);
                assert!(!tag.is_empty(), "ns len {len}, key {key:?}: empty tag");
                assert!(tag.len() < keys.value.len(), "ns len {len}: no tag");
                assert_eq!(slot(&keys.lock), (value_slot, tag), "lock, ns len {len}");
                assert_eq!(
                    slot(&keys.channel),
                    (value_slot, tag),
                    "channel, ns len {len}"
                );
                assert_eq!(Keys::value_key(&ns, key), keys.value);
            }
        }
    }
}

#[test]
fn names_are_injective_across_namespaces_keys_kinds_and_databases() {
    let mut seen = HashSet::new();
    let mut pairs = 0;
    for len in 0..=MAX_NAMESPACE_LEN {
        let ns = namespace(len);
        for key in KEYS {
            let keys = Keys::new(0, &ns, key);
            let other_db = Keys::new(1, &ns, key);
            assert_eq!(
                keys.value, other_db.value,
                "keys live in the URL's database"
            );
            assert_eq!(keys.lock, other_db.lock);
            for name in [keys.value, keys.lock, keys.channel, other_db.channel] {
                assert!(name.starts_with(PREFIX.as_bytes()));
                assert!(seen.insert(name.clone()), "{name:?} named twice");
            }
            pairs += 1;
        }
    }
    // Pairs that a naive `ns:key` or an unescaped tag would confuse.
    let tricky: [(&str, &[u8]); 6] = [
        ("a", b"b:c"),
        ("a:b", b"c"),
        ("a}", b"b"),
        ("a", b"}b"),
        ("x", b"y}:lock"),
        ("wc:{", b"}"),
    ];
    for (ns, key) in tricky {
        let keys = Keys::new(0, &Namespace::new(ns).unwrap(), key);
        for name in [keys.value, keys.lock, keys.channel] {
            assert!(seen.insert(name.clone()), "{name:?} named twice");
        }
    }
    for db in [0, 1] {
        let probe = Keys::probe_channel(db);
        assert!(probe.starts_with(PREFIX.as_bytes()));
        assert!(
            seen.insert(probe),
            "the probe channel is some key's channel"
        );
    }
    assert_eq!(seen.len(), pairs * 4 + tricky.len() * 3 + 2);
}

#[test]
fn layout() {
    let ns = Namespace::new("a}b").unwrap();
    let keys = Keys::new(3, &ns, b"k}{");
    let tag = format!("{:016x}", fnv1a64(b"\x03a}bk}{"));
    assert_eq!(
        keys.value,
        format!("wc:{{{tag}}}v\x03a}}bk}}{{").into_bytes()
    );
    assert_eq!(
        keys.lock,
        format!("wc:{{{tag}}}l\x03a}}bk}}{{").into_bytes()
    );
    assert_eq!(
        keys.channel,
        format!("wc:{{{tag}}}c3:\x03a}}bk}}{{").into_bytes()
    );
    assert_eq!(
        Keys::probe_channel(7),
        format!("wc:{{{:016x}}}c7:", fnv1a64(b"")).into_bytes()
    );
    // FNV-1a's published test vectors: the tag never changes between hosts or versions.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn value_keys_give_back_their_encoded_key_and_nothing_else_does() {
    let ns = Namespace::new("a}b").unwrap();
    let keys = Keys::new(3, &ns, b"k}{");
    let enc = ns.encode_key(b"k}{");
    assert_eq!(Keys::encoded_of_value_key(&keys.value), Some(&enc[..]));
    assert_eq!(Keys::encoded_value_key(&enc), keys.value);
    for other in [
        keys.lock,
        keys.channel,
        Keys::probe_channel(0),
        b"wc:".to_vec(),
        b"wc:{0123456789abcdef}v".to_vec(),
        b"wc:{0123456789abcdeg}v\x01ak".to_vec(),
        b"xx:{0123456789abcdef}v\x01ak".to_vec(),
        Vec::new(),
    ] {
        assert_eq!(Keys::encoded_of_value_key(&other), None, "{other:?}");
    }
}
