//! The Redis key layout: one value key, one lock key and one pub/sub channel per cache key.
//!
//! For namespace `ns` and key `k`, with `<enc>` = [`Namespace::encode_key`] (`len(ns) ‖ ns ‖ k`,
//! injective, binary):
//! - value: `wc:{<enc>}`
//! - lock: `wc:{<enc>}:lock` (a random token, with the vacancy timeout as its PX)
//! - channel: `wc:{<enc>}:ch` (PUBLISHed on by fills, plain sets while a lock exists, and
//!   abandons)
//!
//! The three names differ only after the closing `}` of the value key, so no two cache keys share
//! any of them, and no value key equals another key's lock or channel (a value key always ends
//! with the `}` that closes its tag; a lock and a channel never end with `}`). Redis Cluster hashes
//! the bytes between the first `{` and the first `}` after it: if `<enc>` itself contains `}`, the
//! hash tag is a prefix of `<enc>`, but it is the same prefix for all three names, so a key's
//! value, lock and channel always map to one slot and the Lua scripts touching them stay legal.

use wasi_cache_engine::Namespace;

/// The Redis names of one cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Where the value is stored.
    pub(crate) value: Vec<u8>,
    /// Where the vacancy's lock token is stored.
    pub(crate) lock: Vec<u8>,
    /// Where fills, sets and abandons are announced.
    pub(crate) channel: Vec<u8>,
}

impl Keys {
    /// The names for `key` in `ns`.
    pub(crate) fn new(ns: &Namespace, key: &[u8]) -> Self {
        let mut value = Vec::with_capacity(5 + ns.encoded_len(key));
        value.extend_from_slice(b"wc:{");
        ns.encode_key_into(key, &mut value);
        value.push(b'}');
        let mut lock = Vec::with_capacity(value.len() + 5);
        lock.extend_from_slice(&value);
        lock.extend_from_slice(b":lock");
        let mut channel = Vec::with_capacity(value.len() + 3);
        channel.extend_from_slice(&value);
        channel.extend_from_slice(b":ch");
        Self {
            value,
            lock,
            channel,
        }
    }

    /// Only the value key, for the plain operations that need nothing else.
    pub(crate) fn value_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
        let mut value = Vec::with_capacity(5 + ns.encoded_len(key));
        value.extend_from_slice(b"wc:{");
        ns.encode_key_into(key, &mut value);
        value.push(b'}');
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster hash tag: the bytes between the first `{` and the first `}` after it.
    fn hash_tag(key: &[u8]) -> &[u8] {
        let open = key.iter().position(|&b| b == b'{').unwrap();
        let close = key[open + 1..].iter().position(|&b| b == b'}').unwrap();
        &key[open + 1..open + 1 + close]
    }

    #[test]
    fn layout_and_shared_hash_tag() {
        let ns = Namespace::new("a}b").unwrap();
        let keys = Keys::new(&ns, b"k}{");
        assert_eq!(keys.value, b"wc:{\x03a}bk}{}");
        assert_eq!(keys.lock, b"wc:{\x03a}bk}{}:lock");
        assert_eq!(keys.channel, b"wc:{\x03a}bk}{}:ch");
        assert_eq!(Keys::value_key(&ns, b"k}{"), keys.value);
        assert_eq!(hash_tag(&keys.value), b"\x03a");
        assert_eq!(hash_tag(&keys.lock), hash_tag(&keys.value));
        assert_eq!(hash_tag(&keys.channel), hash_tag(&keys.value));
    }

    #[test]
    fn value_keys_never_equal_other_names() {
        // A key whose bytes spell out another key's lock suffix still gets a distinct value key.
        let ns = Namespace::new("n").unwrap();
        let plain = Keys::new(&ns, b"k");
        let tricky = Keys::new(&ns, b"k}:lock");
        assert_ne!(tricky.value, plain.lock);
        assert_ne!(tricky.value, plain.channel);
        assert!(tricky.value.ends_with(b"}"));
    }
}
