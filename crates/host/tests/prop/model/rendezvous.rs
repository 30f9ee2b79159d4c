//! The engine's rendezvous as the model plays it: a `set` ends a key's rendezvous and every
//! waiter gets the value; an abandoned vacancy goes to the next waiter still waiting.

use super::{Body, Entry, FutState, Handle, Res, World};
use crate::ops::{Fut, Key, Ttl};

impl World {
    /// Resolves the waiting get-or-set future `w` (live or departing); false if it no longer
    /// waits.
    fn resolve(&mut self, w: usize, entry: Entry) -> bool {
        if let Some(Handle::Fut {
            fut: Fut::Gos,
            state: FutState::Task {
                res: res @ None, ..
            },
            ..
        }) = self.slots.get_mut(&w)
        {
            *res = Some(Ok(Res::Gos(entry)));
            return true;
        }
        if let Some(departing) = self.departing.get_mut(&w)
            && departing.handed.is_none()
        {
            match entry {
                Entry::Vacant(token) => departing.handed = Some(token),
                Entry::Value(_) => {
                    self.departing.remove(&w);
                }
            }
            return true;
        }
        false
    }

    /// The engine's `set`: ends the key's rendezvous (every waiter gets the value), then stores
    /// the value, or removes the key for TTL 0.
    pub(super) fn apply_set(&mut self, key: Key, value: Body, ttl: Ttl) {
        if let Some(rendezvous) = self.rendezvous.remove(&key) {
            for w in rendezvous.waiters {
                assert!(self.resolve(w, Entry::Value(value.clone())), "waiter {w}");
            }
        }
        if ttl == Ttl::Zero {
            self.store.remove(&key);
        } else {
            self.store.insert(key, value);
        }
    }

    /// The engine's abandon: the vacancy `token` of `key`, if still current, goes to the first
    /// waiter; with none the rendezvous ends.
    pub(super) fn abandon(&mut self, key: Key, token: u64) {
        let Some(rendezvous) = self.rendezvous.get(&key) else {
            return;
        };
        if rendezvous.token != token {
            return;
        }
        let mut waiters = rendezvous.waiters.clone();
        while !waiters.is_empty() {
            let w = waiters.remove(0);
            let next = self.token();
            let rendezvous = self.rendezvous.get_mut(&key).unwrap();
            rendezvous.token = next;
            rendezvous.waiters = waiters.clone();
            if self.resolve(w, Entry::Vacant(next)) {
                return;
            }
        }
        self.rendezvous.remove(&key);
    }
}
