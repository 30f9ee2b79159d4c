//! Namespaces (tenants) and the injective key encoding that keeps them apart.
//!
//! Every backend stores `(namespace, key)` under [`Namespace::encode_key`]: the namespace is
//! prefixed with its length, so no two different pairs can ever produce the same stored key
//! (ns `a` + key `b:c` and ns `a:b` + key `c` encode differently by construction).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The longest namespace name, in bytes; its length must fit the one-byte prefix.
pub const MAX_NAMESPACE_LEN: usize = u8::MAX as usize;

/// A separate keyspace: keys of one namespace can never be read or written through another.
///
/// Cheap to clone (one thin `Arc`). The memory engine gives each namespace it sees a 4-byte id
/// that it keeps for its lifetime (so entries need not store the name); namespaces are meant to
/// be few and chosen by the embedder (one per tenant or application), never taken from requests.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

struct Inner {
    name: Box<str>,
    /// The memory engine's id for this namespace, tagged with the engine it belongs to, so a
    /// lookup need not consult the engine's table of namespaces (see `memory::namespaces`).
    engine_id: AtomicU64,
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.name == other.inner.name
    }
}

impl Eq for Namespace {}

impl std::hash::Hash for Namespace {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name.hash(state);
    }
}

impl Namespace {
    /// Makes a namespace; any UTF-8 name of at most [`MAX_NAMESPACE_LEN`] bytes, including empty.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        if name.len() > MAX_NAMESPACE_LEN {
            return Err(Error::InvalidNamespace(format!(
                "name is {} bytes, above the limit of {MAX_NAMESPACE_LEN} bytes",
                name.len()
            )));
        }
        Ok(Self::from_valid(name))
    }

    fn from_valid(name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                engine_id: AtomicU64::new(0),
            }),
        }
    }

    /// The namespace's name.
    pub fn as_str(&self) -> &str {
        &self.inner.name
    }

    /// The engine-tagged id last cached by [`Namespace::cache_engine_id`] (0 when none).
    #[inline]
    pub(crate) fn cached_engine_id(&self) -> u64 {
        self.inner.engine_id.load(Ordering::Relaxed)
    }

    /// Remembers an engine-tagged id for this namespace.
    pub(crate) fn cache_engine_id(&self, tagged: u64) {
        self.inner.engine_id.store(tagged, Ordering::Relaxed);
    }

    /// Length of the stored key for `key` in this namespace.
    pub fn encoded_len(&self, key: &[u8]) -> usize {
        1 + self.as_str().len() + key.len()
    }

    /// Appends the stored form of `key` (`len(ns) ‖ ns ‖ key`) to `out`.
    pub fn encode_key_into(&self, key: &[u8], out: &mut Vec<u8>) {
        out.reserve(self.encoded_len(key));
        out.push(self.as_str().len() as u8);
        out.extend_from_slice(self.as_str().as_bytes());
        out.extend_from_slice(key);
    }

    /// The stored form of `key` in this namespace (`len(ns) ‖ ns ‖ key`), injective in both.
    pub fn encode_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_key_into(key, &mut out);
        out
    }

    /// Whether `stored` is exactly the stored form of `key` in this namespace, without allocating.
    pub fn matches(&self, stored: &[u8], key: &[u8]) -> bool {
        let ns = self.as_str().as_bytes();
        stored.len() == 1 + ns.len() + key.len()
            && stored[0] as usize == ns.len()
            && &stored[1..1 + ns.len()] == ns
            && &stored[1 + ns.len()..] == key
    }

    /// Splits a stored key back into its namespace name and key.
    pub fn decode_key(stored: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&len, rest) = stored.split_first()?;
        (rest.len() >= len as usize).then(|| rest.split_at(len as usize))
    }
}

impl Default for Namespace {
    /// The namespace named `default`, as the CLI uses when none is given.
    fn default() -> Self {
        Self::from_valid("default")
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Namespace").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_separates_adversarial_prefixes() {
        let a = Namespace::new("a").unwrap();
        let ab = Namespace::new("a:b").unwrap();
        assert_ne!(a.encode_key(b"b:c"), ab.encode_key(b"c"));
        assert!(!a.matches(&ab.encode_key(b"c"), b"b:c"));
        assert!(ab.matches(&ab.encode_key(b"c"), b"c"));
        assert_eq!(
            Namespace::decode_key(&ab.encode_key(b"c")),
            Some((&b"a:b"[..], &b"c"[..]))
        );
    }

    #[test]
    fn overlong_namespace_is_refused() {
        assert!(Namespace::new("x".repeat(MAX_NAMESPACE_LEN)).is_ok());
        let err = Namespace::new("x".repeat(MAX_NAMESPACE_LEN + 1)).unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace(_)));
    }
}
