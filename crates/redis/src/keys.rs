//! The Redis key layout: one value key, one lock key and one pub/sub channel per cache key.
//!
//! For namespace `ns` and key `k` in the database `db` of the URL, with `<enc>` =
//! [`Namespace::encode_key`] (`len(ns) ‖ ns ‖ k`, injective, binary) and `<tag>` = the 16
//! lowercase hex digits of FNV-1a-64(`<enc>`):
//! - value: `wc:{<tag>}v<enc>`
//! - lock: `wc:{<tag>}l<enc>` (a random token, with the vacancy timeout as its PX)
//! - channel: `wc:{<tag>}c<db>:<enc>` (`<db>` in decimal; PUBLISHed on by fills, plain sets
//!   while a lock exists, and abandons)
//! - probe channel: `wc:{<tag of the empty string>}c<db>:`, subscribed and published once at
//!   connect to check the ACL; no key's channel, since `<enc>` is never empty.
//!
//! **Hash tag.** Redis Cluster hashes the bytes between the first `{` and the first `}` after it.
//! `wc:` holds no brace and `<tag>` is hex, so the tag of every name is exactly `<tag>`: never
//! empty, and the same for a key's value, lock and channel whatever the namespace (any length
//! up to [`MAX_NAMESPACE_LEN`](wasi_cache_engine::MAX_NAMESPACE_LEN)) and the key bytes hold, so
//! the Lua scripts touching the three stay in one slot, and keys spread over all slots.
//!
//! **Injective.** After the fixed 20-byte head `wc:{<tag>}` comes one kind byte (`v`, `l`, `c`),
//! then `<enc>` (values, locks) or `<db>:<enc>` (channels; decimal digits end at the `:`). As
//! `<enc>` is injective, no two cache keys share a name, and a value key never equals a lock or
//! a channel.
//!
//! **Databases.** Keys live in the URL's database, so two databases never share a value or a
//! lock; channels are server-wide in Redis, which is why they carry `<db>`: a fill in db 0 never
//! reaches a waiter in db 1.

use wasi_cache_engine::Namespace;

/// What every name the backend uses starts with (the ACL patterns `~wc:*` and `&wc:*`).
pub(crate) const PREFIX: &str = "wc:";

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
    /// The names for `key` in `ns`, on database `db`.
    pub(crate) fn new(db: i64, ns: &Namespace, key: &[u8]) -> Self {
        let enc = ns.encode_key(key);
        Self {
            value: name(&enc, b"v", &enc),
            lock: name(&enc, b"l", &enc),
            channel: name(&enc, format!("c{db}:").as_bytes(), &enc),
        }
    }

    /// Only the value key, for the plain operations that need nothing else.
    pub(crate) fn value_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
        Self::encoded_value_key(&ns.encode_key(key))
    }

    /// The value key of an already encoded key (`<enc>`).
    pub(crate) fn encoded_value_key(enc: &[u8]) -> Vec<u8> {
        name(enc, b"v", enc)
    }

    /// The `<enc>` a value key was made from; `None` for any other name (a lock, a channel, a
    /// key some other client wrote under the prefix), which the near cache ignores.
    pub(crate) fn encoded_of_value_key(name: &[u8]) -> Option<&[u8]> {
        let rest = name.strip_prefix(PREFIX.as_bytes())?;
        let (tag, rest) = rest.split_at_checked(TAG_LEN)?;
        let hex = tag.strip_prefix(b"{")?.strip_suffix(b"}")?;
        let enc = rest.strip_prefix(b"v")?;
        (hex.iter().all(u8::is_ascii_hexdigit) && !enc.is_empty()).then_some(enc)
    }

    /// The channel the connect-time ACL check subscribes and publishes on, for database `db`.
    pub(crate) fn probe_channel(db: i64) -> Vec<u8> {
        name(b"", format!("c{db}:").as_bytes(), b"")
    }
}

/// Bytes of `{<tag>}`: 16 hex digits in braces.
const TAG_LEN: usize = 18;

/// `wc:{<tag of enc>}` ‖ `kind` ‖ `rest`.
fn name(enc: &[u8], kind: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX.len() + TAG_LEN + kind.len() + rest.len());
    out.extend_from_slice(PREFIX.as_bytes());
    out.push(b'{');
    out.extend_from_slice(format!("{:016x}", fnv1a64(enc)).as_bytes());
    out.push(b'}');
    out.extend_from_slice(kind);
    out.extend_from_slice(rest);
    out
}

/// FNV-1a, 64 bits: a stable hash (every host and version computes the same tag).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
