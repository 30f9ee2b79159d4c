//! The per-instance memory budget: every byte a guest can make the host hold on its behalf
//! (values it references, keys of calls in flight, vacancies, buckets, stream buffers) is
//! charged here, and given back when the resource holding it goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::CacheError;

/// What one resource costs the host beyond its payload: its table slot, its struct and its
/// allocations' headers. Charged for every resource of this crate, so that a guest cannot hold
/// unbounded memory through many small resources either.
pub(crate) const RESOURCE_OVERHEAD: usize = 128;

/// The byte budget of one instance, shared by everything it holds.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// The most bytes ever held at once.
    peak: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// The budget, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `n` bytes, or fails (for operation `op`) when that would exceed the budget.
    fn take(&self, op: &str, n: usize) -> Result<(), CacheError> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let after = used.saturating_add(n);
            if after > self.limit {
                return Err(CacheError::op(
                    op,
                    format!(
                        "this instance holds {used} bytes of cache resources (values, keys of calls \
                         in flight, vacancies, buckets, streams); {n} more would exceed its memory \
                         budget of {} bytes; drop some of them first",
                        self.limit
                    ),
                ));
            }
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.peak.fetch_max(after, Ordering::AcqRel);
                    return Ok(());
                }
                Err(seen) => used = seen,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// A charge of `n` bytes, or an error (for operation `op`) when the budget has no room.
    pub(crate) fn charge(self: &Arc<Self>, op: &str, n: usize) -> Result<Held, CacheError> {
        let held = Held::new(self);
        held.grow(op, n)?;
        Ok(held)
    }

    /// A charge of at most `n` bytes: as many as the budget has room for now (maybe none).
    pub(crate) fn reserve_up_to(self: &Arc<Self>, n: usize) -> Held {
        let mut used = self.used.load(Ordering::Acquire);
        let take = loop {
            let take = n.min(self.limit.saturating_sub(used));
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break take,
                Err(seen) => used = seen,
            }
        };
        self.peak.fetch_max(used + take, Ordering::AcqRel);
        Held {
            budget: Arc::clone(self),
            bytes: AtomicUsize::new(take),
        }
    }

    /// The charge of one resource of this crate whose payload is `payload` bytes.
    pub(crate) fn charge_resource(
        self: &Arc<Self>,
        op: &str,
        payload: usize,
    ) -> Result<Held, CacheError> {
        self.charge(op, payload.saturating_add(RESOURCE_OVERHEAD))
    }
}

/// A read-only view of one instance's memory budget, for embedders' metrics and tests.
#[derive(Debug, Clone)]
pub struct MemoryMeter(pub(crate) Arc<MemoryBudget>);

impl MemoryMeter {
    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes the instance makes the host hold now.
    pub fn used(&self) -> usize {
        self.0.used()
    }

    /// The most bytes the instance made the host hold at any one time.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Acquire)
    }
}

/// Bytes charged against an instance's budget, that can grow; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<MemoryBudget>,
    bytes: AtomicUsize,
}

impl Held {
    /// Nothing held yet, against `budget`.
    pub(crate) fn new(budget: &Arc<MemoryBudget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Holds `n` more bytes, or fails (for operation `op`) when the budget has no room.
    pub(crate) fn grow(&self, op: &str, n: usize) -> Result<(), CacheError> {
        self.budget.take(op, n)?;
        self.bytes.fetch_add(n, Ordering::AcqRel);
        Ok(())
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Holds exactly `n` bytes: grows (or fails, for operation `op`, when the budget has no
    /// room) or gives back the difference.
    pub(crate) fn resize_to(&self, op: &str, n: usize) -> Result<(), CacheError> {
        let bytes = self.bytes();
        if n > bytes {
            self.grow(op, n - bytes)
        } else {
            self.shrink_to(n);
            Ok(())
        }
    }

    /// Gives back what is held beyond `n` bytes.
    pub(crate) fn shrink_to(&self, n: usize) {
        let mut bytes = self.bytes.load(Ordering::Acquire);
        while bytes > n {
            match self
                .bytes
                .compare_exchange_weak(bytes, n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.budget.give_back(bytes - n);
                    return;
                }
                Err(seen) => bytes = seen,
            }
        }
    }

    /// Gives back everything held so far.
    pub(crate) fn release(&self) {
        let n = self.bytes.swap(0, Ordering::AcqRel);
        self.budget.give_back(n);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_share_the_budget_and_give_it_back() {
        let budget = MemoryBudget::new(100);
        let a = Held::new(&budget);
        let b = Held::new(&budget);
        a.grow("op", 60).unwrap();
        let err = b.grow("op", 41).unwrap_err();
        assert!(
            err.trace().starts_with("op: this instance holds 60 bytes"),
            "{err}"
        );
        assert!(err.trace().contains("memory budget of 100 bytes"), "{err}");
        b.grow("op", 40).unwrap();
        assert_eq!(budget.used(), 100);
        assert_eq!(b.bytes(), 40);
        let meter = MemoryMeter(Arc::clone(&budget));
        assert_eq!((meter.used(), meter.peak(), meter.limit()), (100, 100, 100));
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow("op", 10).unwrap();
        b.shrink_to(20);
        assert_eq!((b.bytes(), budget.used()), (20, 20));
        b.shrink_to(30);
        assert_eq!(b.bytes(), 20, "shrinking never grows");
        b.release();
        assert_eq!(budget.used(), 0);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.limit(), 100);
    }

    #[test]
    fn reservations_take_what_is_free() {
        let budget = MemoryBudget::new(100);
        let a = budget.reserve_up_to(60);
        let b = budget.reserve_up_to(60);
        let c = budget.reserve_up_to(60);
        assert_eq!((a.bytes(), b.bytes(), c.bytes()), (60, 40, 0));
        assert!(c.resize_to("get", 1).is_err(), "the budget is full");
        b.resize_to("get", 10).unwrap();
        c.resize_to("get", 30).unwrap();
        assert_eq!((budget.used(), c.bytes()), (100, 30));
        drop((a, b, c));
        assert_eq!(budget.used(), 0);
        assert_eq!(MemoryMeter(budget).peak(), 100);
    }

    #[test]
    fn resources_pay_their_overhead() {
        let budget = MemoryBudget::new(RESOURCE_OVERHEAD + 10);
        let held = budget.charge_resource("open-bucket", 10).unwrap();
        assert_eq!(budget.used(), RESOURCE_OVERHEAD + 10);
        assert!(budget.charge_resource("open-bucket", 0).is_err());
        drop(held);
        assert_eq!(budget.used(), 0);
        // A payload whose size overflows is refused, not wrapped.
        assert!(budget.charge_resource("get", usize::MAX).is_err());
        assert_eq!(budget.used(), 0);
    }
}
