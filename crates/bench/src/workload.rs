//! Workload and trace generation: the keys and values every cache sees, and the Zipf and
//! scan-polluted request traces, all computed before any timing starts.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Length of every benchmark key, in bytes.
pub const KEY_LEN: usize = 16;

/// Length of every benchmark value, in bytes.
pub const VALUE_LEN: usize = 64;

/// Bit of an operation word that marks an insert (the low bits are the key index).
pub const INSERT_BIT: u32 = 1 << 31;

/// Mask of the key index in an operation word.
pub const INDEX_MASK: u32 = INSERT_BIT - 1;

/// One step of SplitMix64: a well-mixed 64-bit value from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th benchmark key: 16 pseudo-random bytes, distinct for distinct `i` in practice.
pub fn key_of(i: u64) -> [u8; KEY_LEN] {
    let a = splitmix64(i.wrapping_mul(2));
    let b = splitmix64(i.wrapping_mul(2).wrapping_add(1));
    let mut k = [0; KEY_LEN];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

/// A fresh 64-byte value for key `i` (its own allocation).
pub fn value_of(i: u64) -> Bytes {
    let mut v = Vec::with_capacity(VALUE_LEN);
    for j in 0..VALUE_LEN / 8 {
        v.extend_from_slice(&splitmix64(i ^ ((j as u64) << 56)).to_le_bytes());
    }
    Bytes::from(v)
}

/// The keys and values of a key universe, precomputed.
pub struct Dataset {
    /// Key `i` of the universe.
    pub keys: Vec<[u8; KEY_LEN]>,
    /// Value of key `i`.
    pub values: Vec<Bytes>,
}

impl Dataset {
    /// A universe of `n` keys, each with its own 64-byte value.
    pub fn new(n: usize) -> Self {
        Self {
            keys: (0..n as u64).map(key_of).collect(),
            values: (0..n as u64).map(value_of).collect(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the universe is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key index once, in a seeded random order (the order caches are pre-filled in).
    pub fn shuffled_indices(&self, seed: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.shuffle(&mut SmallRng::seed_from_u64(seed));
        order
    }
}

/// Draws key indices from Zipf(`s`) over a universe of `n` keys.
///
/// Ranks go through a seeded random permutation, so the hottest keys are scattered over the
/// key space (and over the caches' insertion order) rather than being keys 0, 1, 2, ...
pub struct ZipfKeys {
    zipf: Zipf<f64>,
    rank_to_key: Vec<u32>,
    rng: SmallRng,
}

impl ZipfKeys {
    /// A Zipf(`s`) source over `n` keys; `perm_seed` fixes which key has which rank.
    pub fn new(n: usize, s: f64, perm_seed: u64, seed: u64) -> Self {
        let mut rank_to_key: Vec<u32> = (0..n as u32).collect();
        rank_to_key.shuffle(&mut SmallRng::seed_from_u64(perm_seed));
        Self {
            zipf: Zipf::new(n as f64, s).expect("valid Zipf parameters"),
            rank_to_key,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The key index of the next request.
    pub fn next_key(&mut self) -> u32 {
        let rank = self.zipf.sample(&mut self.rng) as usize;
        self.rank_to_key[rank.clamp(1, self.rank_to_key.len()) - 1]
    }

    /// The key index of rank `rank` (1 is the hottest).
    pub fn key_of_rank(&self, rank: usize) -> u32 {
        self.rank_to_key[rank - 1]
    }
}

/// A throughput trace: `len` operation words over Zipf(`s`), a fraction `insert_share` of
/// them marked with [`INSERT_BIT`] (a get-only run ignores the mark).
pub fn op_trace(n: usize, s: f64, len: usize, insert_share: f64, seed: u64) -> Vec<u32> {
    let mut keys = ZipfKeys::new(n, s, 0xC0FFEE, seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED);
    (0..len)
        .map(|_| {
            let k = keys.next_key();
            if rng.random_bool(insert_share) {
                k | INSERT_BIT
            } else {
                k
            }
        })
        .collect()
}

/// A read trace of `len` key indices drawn from Zipf(`s`) over `n` keys.
pub fn zipf_trace(n: usize, s: f64, len: usize, seed: u64) -> Vec<u32> {
    let mut keys = ZipfKeys::new(n, s, 0xC0FFEE, seed);
    (0..len).map(|_| keys.next_key()).collect()
}

/// A scan-polluted trace: Zipf(`s`) over `n` keys, and after every `every` Zipf requests one
/// sequential pass over `scan_len` cold keys.
///
/// Scanned keys are those of Zipf rank above `n / 5` (outside the hot set), taken in rank
/// order and wrapping around, so every scan touches keys no recent scan touched. Returns the
/// trace and how many of its requests are Zipf (not scan) requests.
pub fn scan_trace(
    n: usize,
    s: f64,
    zipf_requests: usize,
    every: usize,
    scan_len: usize,
    seed: u64,
) -> (Vec<u32>, usize) {
    let mut keys = ZipfKeys::new(n, s, 0xC0FFEE, seed);
    let cold_start = n / 5 + 1;
    let cold_len = n - cold_start + 1;
    let mut next_cold = 0;
    let mut trace = Vec::with_capacity(zipf_requests + zipf_requests / every * scan_len);
    for i in 0..zipf_requests {
        if i > 0 && i % every == 0 {
            for _ in 0..scan_len {
                trace.push(keys.key_of_rank(cold_start + next_cold));
                next_cold = (next_cold + 1) % cold_len;
            }
        }
        trace.push(keys.next_key());
    }
    (trace, zipf_requests)
}

/// Whether trace position `pos` of a [`scan_trace`] built with `every` and `scan_len` is a
/// scan request.
pub fn is_scan_position(pos: usize, every: usize, scan_len: usize) -> bool {
    // Layout: `every` Zipf requests, then repeatedly `scan_len` scans and `every` Zipf ones.
    pos >= every && (pos - every) % (scan_len + every) < scan_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_values_sized() {
        let d = Dataset::new(10_000);
        let mut keys = d.keys.clone();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 10_000);
        assert!(d.values.iter().all(|v| v.len() == VALUE_LEN));
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let t = zipf_trace(1000, 1.0, 100_000, 1);
        assert!(t.iter().all(|&k| k < 1000));
        let hottest = ZipfKeys::new(1000, 1.0, 0xC0FFEE, 1).key_of_rank(1);
        let share = t.iter().filter(|&&k| k == hottest).count() as f64 / t.len() as f64;
        assert!(share > 0.08 && share < 0.2, "rank-1 share {share}");
    }

    #[test]
    fn scan_positions_match_layout() {
        let (t, zipf) = scan_trace(1000, 0.9, 50, 10, 4, 3);
        assert_eq!(zipf, 50);
        assert_eq!(t.len(), 50 + 4 * 4);
        let scans = (0..t.len()).filter(|&p| is_scan_position(p, 10, 4)).count();
        assert_eq!(scans, 16);
        assert!(!is_scan_position(9, 10, 4));
        assert!(is_scan_position(10, 10, 4));
        assert!(!is_scan_position(14, 10, 4));
    }
}
