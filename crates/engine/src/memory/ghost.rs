//! The S3-FIFO ghost queue: hashes of entries recently evicted (from either queue).
//!
//! A key that comes back while its hash is still here skips the small queue and goes straight to
//! the main one; this is what makes the policy scan-resistant yet quick to adopt recurring keys.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// A bounded FIFO of hashes with O(1) membership (multiset, since hashes can repeat).
#[derive(Default)]
pub(super) struct Ghost {
    order: VecDeque<u64>,
    counts: HashTable<(u64, u32)>,
}

impl Ghost {
    /// Whether `hash` was evicted recently.
    pub(super) fn contains(&self, hash: u64) -> bool {
        self.counts.find(hash, |&(h, _)| h == hash).is_some()
    }

    /// Remembers `hash`, forgetting the oldest ones beyond `capacity`.
    pub(super) fn push(&mut self, hash: u64, capacity: usize) {
        match self.counts.find_mut(hash, |&(h, _)| h == hash) {
            Some((_, n)) => *n += 1,
            None => {
                self.counts.insert_unique(hash, (hash, 1), |&(h, _)| h);
            }
        }
        self.order.push_back(hash);
        while self.order.len() > capacity.max(1) {
            let old = self.order.pop_front().expect("non-empty");
            if let Ok(entry) = self.counts.find_entry(old, |&(h, _)| h == old) {
                if entry.get().1 > 1 {
                    entry.into_mut().1 -= 1;
                } else {
                    entry.remove();
                }
            }
        }
    }
}
