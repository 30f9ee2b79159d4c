//! The vacancies an instance's guest holds, for hosts that reuse one instance for many requests
//! ([`Requests`]): when the instance has no request left, every vacancy still held is handed to
//! a waiting caller, though the instance lives on, since nothing of the guest will fill it.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use wasi_cache_engine::Vacancy;

/// A backend vacancy the guest holds (as a `vacancy`, or as the outgoing-value filling it),
/// which [`Requests::idle`] can take away from it.
#[derive(Debug)]
pub(crate) struct Lease(Arc<Mutex<Option<Vacancy>>>);

impl Lease {
    /// The vacancy, unless the instance's requests ended since (it was handed off then).
    pub(crate) fn take(self) -> Option<Vacancy> {
        self.0.lock().take()
    }
}

/// What [`Requests`] shares with the leases it hands out.
#[derive(Debug, Default)]
struct State {
    /// Between requests: a vacancy granted now is handed off at once.
    idle: bool,
    /// Every lease granted, dropped ones included until the next prune.
    leases: Vec<Weak<Mutex<Option<Vacancy>>>>,
    /// How many leases the last prune kept: the next prunes once twice as many are recorded.
    kept: usize,
}

/// Tells an instance's cache context whether the instance is serving requests, so that no
/// vacancy outlives the requests of a reused instance (see [`Requests::idle`]).
///
/// Hosts that run one request per instance need none of it: dropping the store hands off its
/// vacancies. A host that reuses instances (as `wasi-cache serve` and `wasmtime serve` do)
/// calls [`Requests::busy`] when an instance takes a request and [`Requests::idle`] when it has
/// none left, with no task of one still running. A fresh context is busy.
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<Mutex<State>>);

impl Requests {
    /// The instance is serving a request: vacancies granted from now on are its guest's to
    /// fill, until the next [`Requests::idle`].
    pub fn busy(&self) {
        self.0.lock().idle = false;
    }

    /// The instance has no request in flight and no task of one running: every vacancy its
    /// guest still holds (a handle kept across requests, or the result of a `get-or-set` left
    /// running) is handed to a waiting caller now, and so is one granted later, until
    /// [`Requests::busy`]. Filling one fails with an error. Returns how many it handed off.
    pub fn idle(&self) -> usize {
        let leases = {
            let mut state = self.0.lock();
            state.idle = true;
            state.kept = 0;
            std::mem::take(&mut state.leases)
        };
        // Dropped outside the lock: abandoning a vacancy wakes its waiters.
        leases
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|lease| lease.lock().take())
            .count()
    }

    /// A lease on `vacancy` for the guest; `None` when the instance is idle, the vacancy then
    /// handed off (dropped) at once.
    pub(crate) fn lease(&self, vacancy: Vacancy) -> Option<Lease> {
        let mut state = self.0.lock();
        if state.idle {
            drop(state);
            drop(vacancy);
            return None;
        }
        let lease = Arc::new(Mutex::new(Some(vacancy)));
        if state.leases.len() >= 2 * state.kept.max(32) {
            state.leases.retain(|lease| lease.strong_count() > 0);
            state.kept = state.leases.len();
        }
        state.leases.push(Arc::downgrade(&lease));
        Some(Lease(lease))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use wasi_cache_engine::{BoxFuture, Vacancy, VacancySlot};

    use super::Requests;

    /// Counts the vacancies abandoned (dropped unfilled).
    struct Counted(Arc<AtomicUsize>);

    impl VacancySlot for Counted {
        fn fill(
            self: Box<Self>,
            _value: Bytes,
            _ttl: Option<std::time::Duration>,
        ) -> BoxFuture<'static, wasi_cache_engine::Result<()>> {
            std::mem::forget(self);
            Box::pin(async { Ok(()) })
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn idle_hands_off_what_is_held_and_what_comes_later() {
        let abandoned = Arc::new(AtomicUsize::new(0));
        let vacancy = || Vacancy::new(Counted(abandoned.clone()));
        let requests = Requests::default();
        let mut held: Vec<_> = (0..100)
            .map(|_| requests.lease(vacancy()).unwrap())
            .collect();
        // Leases dropped by the guest abandon their vacancy themselves.
        held.truncate(40);
        assert_eq!(abandoned.load(Ordering::SeqCst), 60);
        let kept = requests.lease(vacancy()).unwrap();
        assert_eq!(requests.idle(), 41);
        assert_eq!(abandoned.load(Ordering::SeqCst), 101);
        assert!(
            kept.take().is_none(),
            "a lease handed off has no vacancy left"
        );
        // Granted while idle: handed off at once.
        assert!(requests.lease(vacancy()).is_none());
        assert_eq!(abandoned.load(Ordering::SeqCst), 102);
        requests.busy();
        let filled = requests.lease(vacancy()).unwrap().take();
        assert!(filled.is_some());
        assert_eq!(requests.idle(), 0);
    }

    #[test]
    fn dropped_leases_are_pruned() {
        let abandoned = Arc::new(AtomicUsize::new(0));
        let requests = Requests::default();
        for _ in 0..10_000 {
            drop(requests.lease(Vacancy::new(Counted(abandoned.clone()))));
        }
        assert!(requests.0.lock().leases.len() <= 64);
        assert_eq!(abandoned.load(Ordering::SeqCst), 10_000);
    }
}
