//! One shard's storage: a slab of 64-byte entries found through a hash table, the two intrusive
//! FIFO queues of S3-FIFO (small and main), its ghost, and an index of entries by expiry time.
//!
//! Everything here runs under the shard's lock; only [`Slot::touch`] runs under a read lock, and
//! it writes nothing but the frequency bits of a relaxed atomic word. An entry is one cache
//! line (stored key, value, packed metadata); its queue links live in a parallel array that only
//! writers touch, so a hit reads one line of the slab.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;

use super::KeyHasher;
use super::ghost::Ghost;
use super::key::{KeyBytes, Probe};
use crate::clock::Millis;
use crate::stats::{Counter, Counters};

const NIL: u32 = u32::MAX;

/// Most slots a shard's slab holds (indices are `u32`, and [`NIL`] is not one).
const MAX_SLOTS: usize = NIL as usize;

/// Highest access frequency S3-FIFO tracks (two bits' worth).
const MAX_FREQ: u64 = 3;

/// The share of a shard's bytes given to the small (probationary) queue, in percent. Smaller
/// than the paper's 10 %: measured on Zipf traces (docs/benchmarks.md), 2 % keeps scan
/// resistance and raises the hit ratio.
const SMALL_PERCENT: u64 = 2;

/// Bytes charged per entry on top of its stored key and value: the slot (one cache line), its
/// queue links and its hash-table index. With 16-byte keys and 64-byte values this matches the
/// resident memory measured per entry (docs/benchmarks.md) to within a few bytes.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>() + std::mem::size_of::<Link>() + 8;

/// Latest expiry the metadata word can hold (2^56 ms, some two million years).
const MAX_EXPIRY: Millis = (1 << 56) - 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Free = 0,
    Small = 1,
    Main = 2,
}

/// An entry's metadata in one word: frequency (bits 0–1), queue (bits 2–3), expiry in clock
/// milliseconds (bits 8–63; 0 means never).
#[derive(Clone, Copy)]
struct Meta(u64);

impl Meta {
    fn new(expires: Millis, queue: Queue, freq: u64) -> Self {
        Self((expires.min(MAX_EXPIRY) << 8) | ((queue as u64) << 2) | freq)
    }
    fn freq(self) -> u64 {
        self.0 & 3
    }
    fn queue(self) -> Queue {
        match (self.0 >> 2) & 3 {
            1 => Queue::Small,
            2 => Queue::Main,
            _ => Queue::Free,
        }
    }
    fn expires(self) -> Millis {
        self.0 >> 8
    }
}

/// One entry, or a free slot (empty key and value); aligned so that it is exactly one cache line.
#[repr(align(64))]
pub(super) struct Slot {
    key: KeyBytes,
    value: Bytes,
    meta: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

impl Slot {
    fn meta(&self) -> Meta {
        Meta(self.meta.load(Ordering::Relaxed))
    }

    fn set_meta(&self, meta: Meta) {
        self.meta.store(meta.0, Ordering::Relaxed);
    }

    /// The stored value, shared.
    pub(super) fn value(&self) -> &Bytes {
        &self.value
    }

    /// Whether the entry's TTL has passed at `now`.
    pub(super) fn expired(&self, now: impl FnOnce() -> Millis) -> bool {
        let expires = self.meta().expires();
        expires != 0 && expires <= now()
    }

    /// Records an access. Readers race only with readers (writers hold the lock exclusively) and
    /// all of them keep the other bits, so a lost increment is the worst case; loading first
    /// keeps hot entries' cache lines clean.
    #[inline]
    pub(super) fn touch(&self) {
        let meta = self.meta.load(Ordering::Relaxed);
        if meta & 3 < MAX_FREQ {
            self.meta.store(meta + 1, Ordering::Relaxed);
        }
    }

    fn charge(&self) -> u64 {
        charge(self.key.len(), self.value.len())
    }

    fn hash(&self, hasher: &KeyHasher) -> u64 {
        let (ns, key) = self.key.parts();
        hasher.hash(ns, key)
    }
}

/// Bytes an entry counts against capacity, from the length of its stored key and value
/// (saturating: a configured limit near `usize::MAX` is an entry no shard can hold, not an
/// overflow).
pub(super) fn charge(stored_key_len: usize, value_len: usize) -> u64 {
    stored_key_len
        .saturating_add(value_len)
        .saturating_add(ENTRY_OVERHEAD) as u64
}

/// Bytes an entry with a `key_len`-byte key and `value_len`-byte value counts against capacity.
pub(super) fn entry_charge(key_len: usize, value_len: usize) -> u64 {
    charge(KeyBytes::stored_len(key_len), value_len)
}

/// An entry's neighbours in its queue (or, for a free slot, the next free slot in `next`).
#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
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
    links: Vec<Link>,
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
            links: Vec::new(),
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

    /// The slot holding `key` of namespace `ns`, if any (expired or not).
    #[inline]
    pub(super) fn find(&self, hash: u64, ns: u32, key: &[u8]) -> Option<&Slot> {
        self.find_index(hash, ns, key)
            .map(|i| &self.slab[i as usize])
    }

    #[inline]
    fn find_index(&self, hash: u64, ns: u32, key: &[u8]) -> Option<u32> {
        let probe = Probe::new(ns, key);
        self.table
            .find(hash, |&i| self.slab[i as usize].key.is(&probe))
            .copied()
    }

    /// The earliest expiry of any entry, or `Millis::MAX` when none expires.
    pub(super) fn next_expiry(&self) -> Millis {
        self.expiry.first().map_or(Millis::MAX, |&(at, _)| at)
    }

    /// Stores `value` for `key` of namespace `ns`, replacing any previous value, evicting as
    /// needed. `expires` is 0 for never. The caller has checked that the entry fits in an empty
    /// shard.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        ns: u32,
        key: &[u8],
        value: Bytes,
        expires: Millis,
        counters: &Counters,
    ) {
        let expires = expires.min(MAX_EXPIRY);
        if let Some(idx) = self.find_index(hash, ns, key) {
            self.replace(idx, value, expires, counters);
            return;
        }
        let charge = entry_charge(key.len(), value.len());
        debug_assert!(charge <= self.capacity);
        if self.free == NIL && self.slab.len() >= MAX_SLOTS && self.evict_one(NIL) {
            // Slot indices are 32-bit: a shard of hundreds of gigabytes full of tiny entries
            // makes room by evicting rather than growing the slab past them.
            counters.bump(Counter::Evictions);
        }
        self.make_room(charge, NIL, counters);
        let queue = if self.ghost.contains(hash) {
            Queue::Main
        } else {
            Queue::Small
        };
        let slot = Slot {
            key: KeyBytes::new(ns, key),
            value,
            meta: AtomicU64::new(Meta::new(expires, Queue::Free, 0).0),
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.links[idx as usize].next;
            self.slab[idx as usize] = slot;
            idx
        } else {
            assert!(self.slab.len() < MAX_SLOTS, "shard slab exhausted");
            self.slab.push(slot);
            self.links.push(Link {
                prev: NIL,
                next: NIL,
            });
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
        let old_charge = slot.charge();
        let new_charge = old_charge - slot.value.len() as u64 + value.len() as u64;
        if new_charge > old_charge {
            self.make_room(new_charge - old_charge, idx, counters);
        }
        // Eviction may have rotated the entry (new frequency, same queue): read its meta now.
        let meta = self.slab[idx as usize].meta();
        let list = self.list(meta.queue());
        list.bytes = list.bytes - old_charge + new_charge;
        let old_expires = meta.expires();
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
        slot.set_meta(Meta::new(expires, meta.queue(), meta.freq()));
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

    /// Removes `key` of namespace `ns`; whether it was present.
    pub(super) fn remove(&mut self, hash: u64, ns: u32, key: &[u8]) -> bool {
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
        while passes > 0 {
            passes -= 1;
            let small_target = self.capacity * SMALL_PERCENT / 100;
            let from_small =
                self.small.len > 0 && (self.small.bytes > small_target || self.main.len == 0);
            let idx = match (from_small, self.main.len) {
                (true, _) => self.small.head,
                (false, 0) => return false,
                (false, _) => self.main.head,
            };
            let meta = self.slab[idx as usize].meta();
            if idx == protect || meta.freq() > 0 {
                // Accessed since it was queued: promoted from probation with a fresh count, or
                // given another round in main, one step less frequent.
                let freq = if from_small {
                    0
                } else {
                    meta.freq().saturating_sub(1)
                };
                self.unlink(idx);
                self.slab[idx as usize].set_meta(Meta::new(meta.expires(), Queue::Free, freq));
                self.push_back(Queue::Main, idx);
                continue;
            }
            // Unlike the paper, main's victims are remembered too, not only the small queue's: one
            // that comes back soon re-enters main directly instead of competing in the small
            // probation queue (measured: higher hit ratio on every trace in docs/benchmarks.md).
            let hash = self.slab[idx as usize].hash(&self.hasher);
            self.remember(hash);
            self.remove_index(hash, idx);
            return true;
        }
        false
    }

    /// Puts an evicted entry's hash in the ghost, which holds as many hashes as there are entries.
    fn remember(&mut self, hash: u64) {
        let capacity = self.len();
        self.ghost.push(hash, capacity);
    }

    fn remove_index(&mut self, hash: u64, idx: u32) {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.unlink(idx);
        let slot = &mut self.slab[idx as usize];
        let expires = slot.meta().expires();
        if expires != 0 {
            self.expiry.remove(&(expires, idx));
        }
        slot.key = KeyBytes::EMPTY;
        slot.value = Bytes::new();
        slot.set_meta(Meta::new(0, Queue::Free, 0));
        self.links[idx as usize].next = self.free;
        self.free = idx;
    }

    fn list(&mut self, queue: Queue) -> &mut List {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
            Queue::Free => unreachable!("free slots are in no queue"),
        }
    }

    /// Appends a slot that is in no queue to `queue`.
    fn push_back(&mut self, queue: Queue, idx: u32) {
        let slot = &self.slab[idx as usize];
        let charge = slot.charge();
        let meta = slot.meta();
        slot.set_meta(Meta::new(meta.expires(), queue, meta.freq()));
        let list = self.list(queue);
        let tail = list.tail;
        list.tail = idx;
        if tail == NIL {
            list.head = idx;
        }
        list.len += 1;
        list.bytes += charge;
        if tail != NIL {
            self.links[tail as usize].next = idx;
        }
        self.links[idx as usize] = Link {
            prev: tail,
            next: NIL,
        };
    }

    /// Takes a slot out of its queue (the slot's meta still names the queue until re-pushed).
    fn unlink(&mut self, idx: u32) {
        let slot = &self.slab[idx as usize];
        let (queue, charge) = (slot.meta().queue(), slot.charge());
        let Link { prev, next } = self.links[idx as usize];
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
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
        self.links[idx as usize] = Link {
            prev: NIL,
            next: NIL,
        };
    }
}
