//! Per-engine namespace ids: entries store a 4-byte id instead of the namespace's name, which
//! keeps short keys inline in the entry.
//!
//! Ids are handed out on first use and never reused, so a stale id cached in a [`Namespace`]
//! handle can only be wrong for another engine, which the engine tag in the cache rules out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::RwLock;

use crate::namespace::Namespace;

/// Tags engines, so a namespace handle used with two engines never confuses their ids.
static NEXT_ENGINE: AtomicU32 = AtomicU32::new(1);

/// The namespaces one engine has seen, with their ids.
pub(super) struct Namespaces {
    engine: u32,
    ids: RwLock<HashMap<Namespace, u32>>,
}

impl Namespaces {
    pub(super) fn new() -> Self {
        Self {
            engine: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
            ids: RwLock::new(HashMap::new()),
        }
    }

    /// The id of `ns` in this engine; usually read from the handle without locking.
    #[inline]
    pub(super) fn id(&self, ns: &Namespace) -> u32 {
        let tagged = ns.cached_engine_id();
        if (tagged >> 32) as u32 == self.engine {
            return tagged as u32;
        }
        self.assign(ns)
    }

    #[cold]
    fn assign(&self, ns: &Namespace) -> u32 {
        let known = self.ids.read().get(ns).copied();
        let id = known.unwrap_or_else(|| {
            let mut ids = self.ids.write();
            let next = u32::try_from(ids.len()).expect("fewer than 2^32 namespaces");
            *ids.entry(ns.clone()).or_insert(next)
        });
        ns.cache_engine_id((u64::from(self.engine) << 32) | u64::from(id));
        id
    }
}
