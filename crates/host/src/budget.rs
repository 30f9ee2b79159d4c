//! The per-instance memory budget: bytes of outgoing-value bodies an instance may hold at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::CacheError;

/// The byte budget of one instance, shared by every body it holds.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
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
                        "this instance holds {used} bytes of outgoing-value bodies; {n} more would \
                         exceed its memory budget of {} bytes; drop outgoing-values or write \
                         smaller bodies",
                        self.limit
                    ),
                ));
            }
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => used = seen,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes one body holds against its instance's budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<MemoryBudget>,
    bytes: AtomicUsize,
}

impl Held {
    /// Nothing held yet, against `budget`.
    pub(crate) fn new(budget: &Arc<MemoryBudget>) -> Arc<Self> {
        Arc::new(Self {
            budget: Arc::clone(budget),
            bytes: AtomicUsize::new(0),
        })
    }

    /// Holds `n` more bytes, or fails (for operation `op`) when the budget has no room.
    pub(crate) fn grow(&self, op: &str, n: usize) -> Result<(), CacheError> {
        self.budget.take(op, n)?;
        self.bytes.fetch_add(n, Ordering::AcqRel);
        Ok(())
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
    fn bodies_share_the_budget_and_give_it_back() {
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
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow("op", 10).unwrap();
        b.release();
        assert_eq!(budget.used(), 0);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.limit(), 100);
    }
}
