//! One shard's storage: a slab of entries found through a hash table, the two intrusive FIFO
//! queues of S3-FIFO (small and main), its ghost, and an index of entries by expiry time.
//!
//! Everything here runs under the shard's lock; only [`Slot::touch`] runs under a read lock, and
//! it writes nothing but a relaxed atomic frequency counter.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;

use super::KeyHasher;
use super::ghost::Ghost;
use super::key::KeyBytes;
use crate::clock::Millis;
use crate::namespace::Namespace;
use crate::stats::{Counter, Counters};

const NIL: u32 = u32::MAX;

/// Highest access frequency S3-FIFO tracks (two bits' worth).
const MAX_FREQ: u8 = 3;

/// Bytes charged per entry on top of its namespace, key and value: the slot, its table index
/// and the allocator headers of out-of-line key and value buffers.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>() + 8 + 16;

/// The share of a shard's bytes given to the small (probationary) queue, in percent. Smaller
/// than the paper's 10 %: measured on Zipf traces (docs/benchmarks.md), 2 % keeps scan
/// resistance and raises the hit ratio.
const SMALL_PERCENT: u64 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Free,
    Small,
    Main,
}

/// One entry, or a free slot (no namespace, empty key and value) chained through `next`.
pub(super) struct Slot {
    ns: Option<Namespace>,
    key: KeyBytes,
    value: Bytes,
    /// Expiry in clock milliseconds; 0 means never.
    expires: Millis,
    prev: u32,
    next: u32,
    freq: AtomicU8,
    queue: Queue,
}

impl Slot {
    /// Whether this slot holds `key` of `ns`.
    #[inline]
    fn is(&self, ns: &Namespace, key: &[u8]) -> bool {
        self.key.as_slice() == key && self.ns.as_ref() == Some(ns)
    }

    /// The stored value, shared.
    pub(super) fn value(&self) -> &Bytes {
        &self.value
    }

    /// Whether the entry's TTL has passed at `now`.
    pub(super) fn expired(&self, now: impl FnOnce() -> Millis) -> bool {
        self.expires != 0 && self.expires <= now()
    }

    /// Records an access; a load before the store keeps hot entries' cache lines clean.
    #[inline]
    pub(super) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    fn charge(&self) -> u64 {
        let ns_len = self.ns.as_ref().map_or(0, |ns| ns.as_str().len());
        charge(1 + ns_len + self.key.as_slice().len(), self.value.len())
    }

    fn hash(&self, hasher: &KeyHasher) -> u64 {
        hasher.hash(
            self.ns.as_ref().expect("occupied slot"),
            self.key.as_slice(),
        )
    }
}

/// Bytes an entry with this stored-key and value length counts against capacity.
pub(super) fn charge(stored_key_len: usize, value_len: usize) -> u64 {
    (stored_key_len + value_len + ENTRY_OVERHEAD) as u64
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
    bytes: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
        }
    }
}

/// A shard's entries with their eviction and expiry bookkeeping.
pub(super) struct Store {
    hasher: KeyHasher,
    table: HashTable<u32>,
    slab: Vec<Slot>,
    free: u32,
    small: List,
    main: List,
    ghost: Ghost,
    expiry: BTreeSet<(Millis, u32)>,
    capacity: u64,
}

impl Store {
    pub(super) fn new(hasher: KeyHasher, capacity: u64) -> Self {
        Self {
            hasher,
            table: HashTable::new(),
            slab: Vec::new(),
            free: NIL,
            small: List::default(),
            main: List::default(),
            ghost: Ghost::default(),
            expiry: BTreeSet::new(),
            capacity,
        }
    }

    /// Bytes resident now.
    pub(super) fn bytes(&self) -> u64 {
        self.small.bytes + self.main.bytes
    }

    /// Entries resident now.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot holding `(ns, key)`, if any (expired or not).
    #[inline]
    pub(super) fn find(&self, hash: u64, ns: &Namespace, key: &[u8]) -> Option<&Slot> {
        self.find_index(hash, ns, key)
            .map(|i| &self.slab[i as usize])
    }

    #[inline]
    fn find_index(&self, hash: u64, ns: &Namespace, key: &[u8]) -> Option<u32> {
        self.table
            .find(hash, |&i| self.slab[i as usize].is(ns, key))
            .copied()
    }

    /// The earliest expiry of any entry, or `Millis::MAX` when none expires.
    pub(super) fn next_expiry(&self) -> Millis {
        self.expiry.first().map_or(Millis::MAX, |&(at, _)| at)
    }

    /// Stores `value` for `(ns, key)`, replacing any previous value, evicting as needed.
    ///
    /// The caller has checked that the entry fits in an empty shard.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        expires: Millis,
        counters: &Counters,
    ) {
        let charge = charge(ns.encoded_len(key), value.len());
        debug_assert!(charge <= self.capacity);
        if let Some(idx) = self.find_index(hash, ns, key) {
            self.replace(idx, value, expires, counters);
            return;
        }
        self.make_room(charge, NIL, counters);
        let queue = if self.ghost.contains(hash) {
            Queue::Main
        } else {
            Queue::Small
        };
        let slot = Slot {
            ns: Some(ns.clone()),
            key: KeyBytes::new(key),
            value,
            expires,
            prev: NIL,
            next: NIL,
            freq: AtomicU8::new(0),
            queue: Queue::Free,
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.slab[idx as usize].next;
            self.slab[idx as usize] = slot;
            idx
        } else {
            assert!(self.slab.len() < NIL as usize, "shard slab exhausted");
            self.slab.push(slot);
            (self.slab.len() - 1) as u32
        };
        let Self {
            table,
            slab,
            hasher,
            ..
        } = self;
        table.insert_unique(hash, idx, |&i| slab[i as usize].hash(hasher));
        if expires != 0 {
            self.expiry.insert((expires, idx));
        }
        self.push_back(queue, idx);
    }

    /// Overwrites an entry in place: it keeps its key, queue position and frequency.
    fn replace(&mut self, idx: u32, value: Bytes, expires: Millis, counters: &Counters) {
        let slot = &self.slab[idx as usize];
        let (old_charge, old_expires, queue) = (slot.charge(), slot.expires, slot.queue);
        let new_charge = old_charge - slot.value.len() as u64 + value.len() as u64;
        if new_charge > old_charge {
            self.make_room(new_charge - old_charge, idx, counters);
        }
        let list = self.list(queue);
        list.bytes = list.bytes - old_charge + new_charge;
        if old_expires != expires {
            if old_expires != 0 {
                self.expiry.remove(&(old_expires, idx));
            }
            if expires != 0 {
                self.expiry.insert((expires, idx));
            }
        }
        let slot = &mut self.slab[idx as usize];
        slot.value = value;
        slot.expires = expires;
    }

    /// Evicts until `needed` more bytes fit, never evicting the entry at `protect`.
    fn make_room(&mut self, needed: u64, protect: u32, counters: &Counters) {
        while self.bytes() + needed > self.capacity {
            if !self.evict_one(protect) {
                break;
            }
            counters.bump(Counter::Evictions);
        }
    }

    /// Removes `(ns, key)`; whether it was present.
    pub(super) fn remove(&mut self, hash: u64, ns: &Namespace, key: &[u8]) -> bool {
        match self.find_index(hash, ns, key) {
            Some(idx) => {
                self.remove_index(hash, idx);
                true
            }
            None => false,
        }
    }

    /// Reclaims up to `budget` entries whose TTL has passed at `now`; how many it reclaimed.
    pub(super) fn sweep_expired(&mut self, now: Millis, budget: usize) -> u64 {
        let mut reclaimed = 0;
        while reclaimed < budget as u64 {
            match self.expiry.first() {
                Some(&(at, idx)) if at <= now => {
                    let hash = self.slab[idx as usize].hash(&self.hasher);
                    self.remove_index(hash, idx);
                    reclaimed += 1;
                }
                _ => break,
            }
        }
        reclaimed
    }

    /// Evicts one entry by S3-FIFO, passing over `protect`; false when nothing else is left.
    fn evict_one(&mut self, protect: u32) -> bool {
        // Each entry is passed over at most a few times (its frequency drops each pass), so
        // this bound is never reached unless `protect` is all that is left.
        let mut passes = 4 * self.len() + 4;
        loop {
            if passes == 0 {
                return false;
            }
            passes -= 1;
            let small_target = self.capacity * SMALL_PERCENT / 100;
            if self.small.len > 0 && (self.small.bytes > small_target || self.main.len == 0) {
                let idx = self.small.head;
                let slot = &self.slab[idx as usize];
                if idx == protect || slot.freq.load(Ordering::Relaxed) > 0 {
                    // Seen again while on probation: promote to main.
                    slot.freq.store(0, Ordering::Relaxed);
                    self.unlink(idx);
                    self.push_back(Queue::Main, idx);
                    continue;
                }
                let hash = slot.hash(&self.hasher);
                let ghost_capacity = self.len();
                self.ghost.push(hash, ghost_capacity);
                self.remove_index(hash, idx);
                return true;
            }
            if self.main.len == 0 {
                return false;
            }
            let idx = self.main.head;
            let slot = &self.slab[idx as usize];
            let f = slot.freq.load(Ordering::Relaxed);
            if idx == protect || f > 0 {
                slot.freq.store(f.saturating_sub(1), Ordering::Relaxed);
                self.unlink(idx);
                self.push_back(Queue::Main, idx);
                continue;
            }
            let hash = slot.hash(&self.hasher);
            self.remove_index(hash, idx);
            return true;
        }
    }

    fn remove_index(&mut self, hash: u64, idx: u32) {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.unlink(idx);
        let slot = &mut self.slab[idx as usize];
        if slot.expires != 0 {
            self.expiry.remove(&(slot.expires, idx));
        }
        slot.ns = None;
        slot.key = KeyBytes::EMPTY;
        slot.value = Bytes::new();
        slot.expires = 0;
        slot.next = self.free;
        self.free = idx;
    }

    fn list(&mut self, queue: Queue) -> &mut List {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
            Queue::Free => unreachable!("free slots are in no queue"),
        }
    }

    fn push_back(&mut self, queue: Queue, idx: u32) {
        let charge = self.slab[idx as usize].charge();
        let list = self.list(queue);
        let tail = list.tail;
        list.tail = idx;
        if tail == NIL {
            list.head = idx;
        }
        list.len += 1;
        list.bytes += charge;
        if tail != NIL {
            self.slab[tail as usize].next = idx;
        }
        let slot = &mut self.slab[idx as usize];
        slot.prev = tail;
        slot.next = NIL;
        slot.queue = queue;
    }

    fn unlink(&mut self, idx: u32) {
        let slot = &self.slab[idx as usize];
        let (prev, next, queue, charge) = (slot.prev, slot.next, slot.queue, slot.charge());
        let list = self.list(queue);
        if prev == NIL {
            list.head = next;
        }
        if next == NIL {
            list.tail = prev;
        }
        list.len -= 1;
        list.bytes -= charge;
        if prev != NIL {
            self.slab[prev as usize].next = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        }
        let slot = &mut self.slab[idx as usize];
        slot.prev = NIL;
        slot.next = NIL;
        slot.queue = Queue::Free;
    }
}
