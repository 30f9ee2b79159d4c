//! The bound on writes in flight across every instance that shares it ([`WritePool`]).
//!
//! A `set` or `delete` is not cancelled when its future is dropped, nor when its instance ends:
//! the write completes. Charged to its instance's memory budget and live-future cap while the
//! instance lives, it outlives them both, and a server that starts a new instance in the freed
//! request slot could otherwise pile up writes without bound while the backend is slow. So each
//! write takes a slot of the pool at its call (refused at once, with an error, when the pool
//! is full) and holds it until it completes; its key and value count against the pool's bytes.
//! The pool also counts the writes that outlived their instance (its orphans), for metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::error::CacheError;

/// Writes (`set`, `delete`) in flight across every instance sharing the pool: at most
/// [`WritePool::max_writes`] of them, holding at most [`WritePool::max_bytes`] of keys and
/// values together.
#[derive(Debug)]
pub struct WritePool {
    max_writes: usize,
    max_bytes: usize,
    writes: AtomicUsize,
    bytes: AtomicUsize,
    orphans: AtomicUsize,
    refused: AtomicU64,
}

impl WritePool {
    /// A pool of at most `max_writes` writes holding at most `max_bytes` bytes at once.
    pub fn new(max_writes: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_writes,
            max_bytes,
            writes: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            orphans: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The most writes in flight at once.
    pub fn max_writes(&self) -> usize {
        self.max_writes
    }

    /// The most bytes (keys and values) the writes in flight hold at once.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Writes in flight now.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Acquire)
    }

    /// Bytes the writes in flight hold now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Writes in flight now whose instance has ended.
    pub fn orphans(&self) -> usize {
        self.orphans.load(Ordering::Acquire)
    }

    /// Writes refused so far because the pool was full (of writes or of bytes).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// Adds `n` to `counter` unless that takes it past `max`.
    fn take(counter: &AtomicUsize, n: usize, max: usize) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(n).filter(|after| *after <= max)
            })
            .is_ok()
    }
}

/// The writes of one instance in flight, and whether the instance has ended (its context was
/// dropped): from then on they are the pool's orphans.
#[derive(Debug, Default)]
pub(crate) struct InstanceWrites {
    state: Mutex<(usize, bool)>,
}

impl InstanceWrites {
    /// Marks the instance ended: its writes still in flight become orphans.
    pub(crate) fn end(&self, pool: &WritePool) {
        let mut state = self.state.lock();
        if !state.1 {
            state.1 = true;
            pool.orphans.fetch_add(state.0, Ordering::AcqRel);
        }
    }
}

/// One write's slot in a [`WritePool`] (nothing without a pool), held until the write
/// completes; it gives back its slot and bytes when dropped.
#[derive(Debug, Default)]
pub(crate) struct WriteSlot(Option<Slot>);

#[derive(Debug)]
struct Slot {
    pool: Arc<WritePool>,
    instance: Arc<InstanceWrites>,
    bytes: usize,
}

impl WriteSlot {
    /// A slot of `pool` for a write `op` of an instance (whose writes are `instance`) holding
    /// `bytes` (its key) so far, or the error the guest gets when the pool is full.
    pub(crate) fn reserve(
        pool: &Arc<WritePool>,
        instance: &Arc<InstanceWrites>,
        op: &str,
        bytes: usize,
    ) -> Result<Self, CacheError> {
        if !WritePool::take(&pool.writes, 1, pool.max_writes) {
            pool.refused.fetch_add(1, Ordering::AcqRel);
            return Err(CacheError::op(
                op,
                format!(
                    "the host already has {} writes in flight across all its instances (those \
                     that outlived their instance included), the most it allows; the backend is \
                     slow: try again later",
                    pool.max_writes
                ),
            ));
        }
        instance.state.lock().0 += 1;
        let mut slot = WriteSlot(Some(Slot {
            pool: Arc::clone(pool),
            instance: Arc::clone(instance),
            bytes: 0,
        }));
        slot.grow(op, bytes)?;
        Ok(slot)
    }

    /// Counts `n` more bytes (a `set`'s value) against the pool, or the error the guest gets
    /// when that takes the pool past its bytes.
    pub(crate) fn grow(&mut self, op: &str, n: usize) -> Result<(), CacheError> {
        let Some(slot) = self.0.as_mut() else {
            return Ok(());
        };
        let pool = &slot.pool;
        if !WritePool::take(&pool.bytes, n, pool.max_bytes) {
            pool.refused.fetch_add(1, Ordering::AcqRel);
            return Err(CacheError::op(
                op,
                format!(
                    "the host's writes in flight across all its instances would hold more than \
                     {} bytes, the most it allows ({} held now, {n} more asked); the backend is \
                     slow: try again later",
                    pool.max_bytes,
                    pool.bytes()
                ),
            ));
        }
        slot.bytes += n;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let pool = &self.pool;
        pool.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        let mut state = self.instance.state.lock();
        state.0 -= 1;
        if state.1 {
            pool.orphans.fetch_sub(1, Ordering::AcqRel);
        }
        drop(state);
        pool.writes.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_bytes_are_bounded_and_given_back() {
        let pool = WritePool::new(2, 100);
        let instance = Arc::new(InstanceWrites::default());
        let mut a = WriteSlot::reserve(&pool, &instance, "set", 10).unwrap();
        let b = WriteSlot::reserve(&pool, &instance, "delete", 10).unwrap();
        let err = WriteSlot::reserve(&pool, &instance, "set", 1).unwrap_err();
        assert!(
            err.trace()
                .starts_with("set: the host already has 2 writes"),
            "{err}"
        );
        let err = a.grow("set", 81).unwrap_err();
        assert!(err.trace().contains("more than 100 bytes"), "{err}");
        a.grow("set", 80).unwrap();
        assert_eq!((pool.writes(), pool.bytes(), pool.refused()), (2, 100, 2));
        drop((a, b));
        assert_eq!((pool.writes(), pool.bytes()), (0, 0));
        // A key alone past the bytes: refused, and its slot given back at once.
        assert!(WriteSlot::reserve(&pool, &instance, "set", 101).is_err());
        assert_eq!(pool.writes(), 0);
    }

    #[test]
    fn writes_outliving_their_instance_are_orphans_until_done() {
        let pool = WritePool::new(10, 1000);
        let instance = Arc::new(InstanceWrites::default());
        let a = WriteSlot::reserve(&pool, &instance, "set", 1).unwrap();
        let b = WriteSlot::reserve(&pool, &instance, "set", 1).unwrap();
        drop(a);
        assert_eq!(pool.orphans(), 0);
        instance.end(&pool);
        instance.end(&pool);
        assert_eq!(pool.orphans(), 1);
        drop(b);
        assert_eq!((pool.orphans(), pool.writes()), (0, 0));
    }
}
