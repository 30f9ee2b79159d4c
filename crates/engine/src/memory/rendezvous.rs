//! The get-or-set rendezvous of the memory engine: pending keys, their waiters, hand-off of
//! abandoned vacancies, and takeover when a vacancy times out.
//!
//! All state changes happen under the shard's write lock, so a waiter that is cancelled, a
//! vacancy that is dropped and a value that arrives can never race each other. A waiter's own
//! lock only guards its state against the waiting task reading it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Core, ShardState};
use crate::backend::{BoxFuture, GetOrSet, Vacancy, VacancySlot};
use crate::error::Result;
use crate::namespace::Namespace;
use crate::stats::Counter;

/// How far off a deadline that never comes is: thirty years, tokio's own "far future" (adding
/// it to the clock cannot overflow, and tokio's timers clamp it).
const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// A key that one caller holds the vacancy of, with the callers waiting for its value.
pub(super) struct Pending {
    hash: u64,
    key: Box<[u8]>,
    /// Which vacancy currently holds the key; a stale vacancy's drop does nothing.
    token: u64,
    /// When the holder loses the vacancy to a waiter.
    deadline: Instant,
    waiters: VecDeque<Arc<Waiter>>,
    /// Waiters in `waiters` that left; compacted away once they are the majority.
    departed: usize,
}

/// The pending keys of one shard.
pub(super) type PendingTable = HashTable<Pending>;

/// One caller waiting for a pending key.
pub(super) struct Waiter {
    state: Mutex<WaitState>,
    notify: Notify,
}

enum WaitState {
    Waiting,
    Value(Bytes),
    /// Handed the vacancy with this token, not yet taken by the waiting task.
    Vacant(u64),
    /// Took its result, or left the rendezvous.
    Gone,
}

impl Waiter {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(WaitState::Waiting),
            notify: Notify::new(),
        })
    }

    /// Moves a waiting waiter to `state` and wakes it; false if it is no longer waiting.
    fn resolve(&self, state: WaitState) -> bool {
        let mut s = self.state.lock();
        if !matches!(*s, WaitState::Waiting) {
            return false;
        }
        *s = state;
        drop(s);
        self.notify.notify_one();
        true
    }
}

/// What `get_or_set` found under the shard lock on a miss.
pub(super) enum Claim {
    /// This caller holds the vacancy.
    Vacant(u64),
    /// Another caller holds it; wait until the deadline.
    Wait(Arc<Waiter>, Instant),
}

fn find_mut<'a>(
    table: &'a mut PendingTable,
    hash: u64,
    ns: &Namespace,
    key: &[u8],
) -> Option<&'a mut Pending> {
    table.find_mut(hash, |p| ns.matches(&p.key, key))
}

impl Core {
    fn new_token(&self) -> u64 {
        self.next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes a new holder of `pending`'s vacancy: a fresh token (so the old holder's drop does
    /// nothing) and a fresh deadline. Returns the token.
    fn reassign(&self, pending: &mut Pending, now: Instant) -> u64 {
        pending.token = self.new_token();
        pending.deadline = self.vacancy_deadline(now);
        pending.token
    }

    /// When a vacancy taken at `now` times out: the vacancy timeout later, or — for a timeout
    /// the clock cannot add — in [`NEVER`], which for a cache is never.
    fn vacancy_deadline(&self, now: Instant) -> Instant {
        now.checked_add(self.vacancy_timeout)
            .unwrap_or_else(|| now + NEVER)
    }

    /// Joins or opens the rendezvous for a missing key; runs under the shard's write lock.
    pub(super) fn claim(
        &self,
        state: &mut ShardState,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
    ) -> Claim {
        let now = Instant::now();
        match find_mut(&mut state.pending, hash, ns, key) {
            Some(p) if now >= p.deadline => {
                // Nobody took over from the holder in time: the late-comer does.
                self.counters.bump(Counter::Timeouts);
                Claim::Vacant(self.reassign(p, now))
            }
            Some(p) => {
                self.counters.bump(Counter::RendezvousWaits);
                let waiter = Waiter::new();
                p.waiters.push_back(waiter.clone());
                Claim::Wait(waiter, p.deadline)
            }
            None => {
                let token = self.new_token();
                state.pending.insert_unique(
                    hash,
                    Pending {
                        hash,
                        key: ns.encode_key(key).into_boxed_slice(),
                        token,
                        deadline: self.vacancy_deadline(now),
                        waiters: VecDeque::new(),
                        departed: 0,
                    },
                    |p| p.hash,
                );
                Claim::Vacant(token)
            }
        }
    }

    /// Ends the rendezvous on `(ns, key)` (a value was stored): every waiter gets `value`.
    pub(super) fn resolve_waiters(
        &self,
        state: &mut ShardState,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
        value: &Bytes,
    ) {
        if state.pending.is_empty() {
            return;
        }
        if let Ok(entry) = state.pending.find_entry(hash, |p| ns.matches(&p.key, key)) {
            let (pending, _) = entry.remove();
            for waiter in pending.waiters {
                waiter.resolve(WaitState::Value(value.clone()));
            }
        }
    }

    /// Hands the vacancy `token` of `(ns, key)` to the first waiter still waiting, or ends the
    /// rendezvous when there is none (the key stays absent).
    pub(super) fn abandon(&self, hash: u64, ns: &Namespace, key: &[u8], token: u64) {
        let mut state = self.shard(hash).state.write();
        let Ok(mut entry) = state.pending.find_entry(hash, |p| ns.matches(&p.key, key)) else {
            return;
        };
        let pending = entry.get_mut();
        if pending.token != token {
            return;
        }
        while let Some(waiter) = pending.waiters.pop_front() {
            // Under the shard lock: if this waiter left already, the next one gets a fresh token.
            let next = self.reassign(pending, Instant::now());
            if waiter.resolve(WaitState::Vacant(next)) {
                self.counters.bump(Counter::Handoffs);
                return;
            }
            pending.departed = pending.departed.saturating_sub(1);
        }
        entry.remove();
    }

    /// Takes a waiter out of the rendezvous (its task was dropped); a vacancy it had been
    /// handed but not yet taken goes on to the next waiter.
    fn leave(&self, hash: u64, ns: &Namespace, key: &[u8], waiter: &Waiter) {
        let handed = {
            let mut state = self.shard(hash).state.write();
            let previous = std::mem::replace(&mut *waiter.state.lock(), WaitState::Gone);
            match previous {
                WaitState::Waiting => {
                    if let Some(p) = find_mut(&mut state.pending, hash, ns, key) {
                        p.departed += 1;
                        if p.departed * 2 > p.waiters.len() {
                            p.waiters
                                .retain(|w| matches!(*w.state.lock(), WaitState::Waiting));
                            p.departed = 0;
                        }
                    }
                    None
                }
                WaitState::Vacant(token) => Some(token),
                WaitState::Value(_) | WaitState::Gone => None,
            }
        };
        if let Some(token) = handed {
            self.abandon(hash, ns, key, token);
        }
    }

    /// What a waiter has been given, if anything; takes it.
    fn take(
        self: &Arc<Self>,
        waiter: &Waiter,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
    ) -> Option<GetOrSet> {
        let mut s = waiter.state.lock();
        match std::mem::replace(&mut *s, WaitState::Gone) {
            WaitState::Value(v) => Some(GetOrSet::Occupied(v)),
            WaitState::Vacant(token) => Some(GetOrSet::Vacant(self.vacancy(hash, ns, key, token))),
            other => {
                *s = other;
                None
            }
        }
    }

    /// Makes the [`Vacancy`] for `token`.
    pub(super) fn vacancy(
        self: &Arc<Self>,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
        token: u64,
    ) -> Vacancy {
        Vacancy::new(MemoryVacancy {
            core: self.clone(),
            hash,
            ns: ns.clone(),
            key: key.into(),
            token,
            armed: true,
        })
    }

    /// Waits for a pending key's value or for its vacancy; cancel-safe (dropping the future
    /// leaves the rendezvous and passes on a vacancy it was handed).
    pub(super) async fn wait(
        self: &Arc<Self>,
        hash: u64,
        ns: &Namespace,
        key: &[u8],
        waiter: Arc<Waiter>,
        mut deadline: Instant,
    ) -> GetOrSet {
        let guard = LeaveOnDrop {
            core: self,
            hash,
            ns,
            key,
            waiter: &waiter,
        };
        loop {
            let notified = waiter.notify.notified();
            if let Some(result) = self.take(&waiter, hash, ns, key) {
                std::mem::forget(guard);
                return result;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_ok() {
                continue;
            }
            // The holder's time is up, unless it was extended by a hand-off meanwhile.
            let mut state = self.shard(hash).state.write();
            if let Some(result) = self.take(&waiter, hash, ns, key) {
                drop(state);
                std::mem::forget(guard);
                return result;
            }
            let now = Instant::now();
            match find_mut(&mut state.pending, hash, ns, key) {
                Some(p) if now >= p.deadline => {
                    *waiter.state.lock() = WaitState::Gone;
                    p.departed += 1;
                    self.counters.bump(Counter::Timeouts);
                    let token = self.reassign(p, now);
                    drop(state);
                    std::mem::forget(guard);
                    return GetOrSet::Vacant(self.vacancy(hash, ns, key, token));
                }
                Some(p) => deadline = p.deadline,
                // Resolved between our wake-up and the lock: the next `take` finds it.
                None => {}
            }
        }
    }
}

/// Leaves the rendezvous when a waiting future is dropped before it finished.
struct LeaveOnDrop<'a> {
    core: &'a Arc<Core>,
    hash: u64,
    ns: &'a Namespace,
    key: &'a [u8],
    waiter: &'a Waiter,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.core.leave(self.hash, self.ns, self.key, self.waiter);
    }
}

/// The memory engine's side of a [`Vacancy`].
struct MemoryVacancy {
    core: Arc<Core>,
    hash: u64,
    ns: Namespace,
    key: Box<[u8]>,
    token: u64,
    armed: bool,
}

impl VacancySlot for MemoryVacancy {
    fn fill(
        mut self: Box<Self>,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'static, Result<()>> {
        // A failed set (value too large) leaves the vacancy armed, so dropping it hands off.
        let result = self.core.set(&self.ns, &self.key, value, ttl);
        if result.is_ok() {
            self.armed = false;
            self.core.counters.bump(Counter::Fills);
        }
        Box::pin(std::future::ready(result))
    }
}

impl Drop for MemoryVacancy {
    fn drop(&mut self) {
        if self.armed {
            self.core
                .abandon(self.hash, &self.ns, &self.key, self.token);
        }
    }
}
