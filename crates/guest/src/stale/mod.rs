//! Stale-while-revalidate and stale-if-error (RFC 5861's windows, for any value): the
//! [`Lifetimes`] of a value, what a lookup [`Served`], and the pieces both APIs share — the
//! stored [envelope], the refresh key whose rendezvous elects the one refresher, and the clock.
//!
//! The protocol, in terms of the interface alone (so any host, any language, any number of
//! instances and hosts on one backend agree; `docs/guest-sdk.md` has the guarantees and
//! `docs/polyglot.md` the bytes):
//! - the key holds an [envelope]: the value with the unix-ms instants its freshness, its
//!   revalidate window and its error window end, stored with a TTL reaching the later window's
//!   end;
//! - a stale lookup within the revalidate window answers the stale value at once; a refresh
//!   runs elsewhere (a spawned task, or inline in the blocking API) and starts with a
//!   `get-or-set` of [`refresh_key`]: the vacancy's holder fills it with [`MARKER`] for the
//!   refresh lease at once (so the others meet a value, never a wait), reads the key again (a
//!   refresh that just ended needs no other), computes, `set`s the key and deletes the refresh
//!   key (so the next staleness, or the next caller after a failed refresh, may try again);
//! - past the revalidate window, within the error window, callers meet on the refresh key's
//!   rendezvous the way `get-or-set` callers do: one refreshes, the others wait for it; its
//!   holder fills the refresh key only once its compute ended (well or not, for 250 ms),
//!   and the waiters then read the key again: new value, or stale when the refresh failed.

pub mod envelope;
mod run_async;
mod run_blocking;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{BoxError, Error, Result};
use envelope::{Envelope, Zone};

/// The suffix of a key's refresh key (see [`refresh_key`]).
pub const REFRESH_SUFFIX: &str = "\u{1f}refresh";

/// What a refresher fills the refresh key with.
pub const MARKER: &[u8] = b"refreshing";

/// How long the refresh key marks a refresh that just ended, past the revalidate window: long
/// enough for the waiters (on any host) to be handed the marker, not to claim the refresh key
/// anew and refresh again; after it the next caller may try again.
const DONE: Duration = Duration::from_millis(250);

/// The key whose `get-or-set` rendezvous elects the one refresher of `key`: `key` followed by
/// [`REFRESH_SUFFIX`] (a unit separator and `refresh`).
pub fn refresh_key(key: &str) -> String {
    format!("{key}{REFRESH_SUFFIX}")
}

/// How long a value stays fresh and how long it may be served stale afterwards.
///
/// `Lifetimes::new(fresh)` gives a value without stale windows (a plain TTL); add them with
/// [`stale_while_revalidate`](Lifetimes::stale_while_revalidate) and
/// [`stale_if_error`](Lifetimes::stale_if_error). Both windows start when freshness ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// How long after it is stored the value is fresh: a hit.
    pub fresh: Duration,
    /// How long after freshness the stale value is still answered at once while one caller
    /// refreshes it.
    pub stale_while_revalidate: Duration,
    /// How long after freshness the stale value is answered when its refresh fails.
    pub stale_if_error: Duration,
    /// How long one refresh may take before another caller may start one (its claim on the
    /// refresh key expires then; 30 s unless set). Make it longer than the compute can take.
    pub refresh_lease: Duration,
}

impl Lifetimes {
    /// The default [`refresh_lease`](Lifetimes::refresh_lease).
    pub const DEFAULT_REFRESH_LEASE: Duration = Duration::from_secs(30);

    /// Fresh for `fresh`, with no stale windows.
    pub const fn new(fresh: Duration) -> Self {
        Lifetimes {
            fresh,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            refresh_lease: Self::DEFAULT_REFRESH_LEASE,
        }
    }

    /// Nothing to store: a value computed with these lifetimes is returned, not cached.
    pub const fn none() -> Self {
        Self::new(Duration::ZERO)
    }

    /// With a stale-while-revalidate window of `window`.
    pub const fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = window;
        self
    }

    /// With a stale-if-error window of `window`.
    pub const fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// With a refresh lease of `lease`.
    pub const fn refresh_lease(mut self, lease: Duration) -> Self {
        self.refresh_lease = lease;
        self
    }

    /// How long the key is kept: freshness and the longer stale window.
    pub fn ttl(&self) -> Duration {
        self.fresh
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }
}

/// How a lookup got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A fresh value from the cache.
    Fresh,
    /// A stale value from the cache: within the revalidate window (a refresh is under way
    /// elsewhere or was just started), or within the error window after a failed refresh.
    Stale,
    /// This caller computed it.
    Computed,
    /// Another caller computed or refreshed it while this one waited or looked.
    Waited,
}

/// A value with how it was obtained and its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub how: How,
    /// How long ago it was computed (zero when this caller computed it).
    pub age: Duration,
}

impl<T> Served<T> {
    /// The same lookup with its value mapped by `f`.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Served<U>, E> {
        Ok(Served {
            value: f(self.value)?,
            how: self.how,
            age: self.age,
        })
    }
}

/// The wall clock in unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `envelope`'s value served as `how`, aged at `now`.
fn served(envelope: Envelope, how: How, now: u64) -> Served<Vec<u8>> {
    Served {
        how,
        age: envelope.age(now),
        value: envelope.value,
    }
}

/// What a caller answers after another caller's refresh (it waited for it, or met its
/// marker), from the key as read again: `None` when the key is gone (a miss).
fn after_another_refresh(
    key: &str,
    found: Option<Envelope>,
    now: u64,
) -> Result<Option<Served<Vec<u8>>>> {
    let Some(envelope) = found else {
        return Ok(None);
    };
    match envelope.zone(now) {
        Zone::Fresh => Ok(Some(served(envelope, How::Waited, now))),
        Zone::Revalidate | Zone::IfError => Ok(Some(served(envelope, How::Stale, now))),
        Zone::Expired => Err(Error::Compute(
            format!("the refresh of {key:?} failed and its stale-if-error window is over").into(),
        )),
    }
}

/// What a refresher answers when its compute failed with `err`: the stale value while a window
/// allows it, else the error.
fn after_failure(stale: Envelope, err: BoxError, now: u64) -> Result<Served<Vec<u8>>> {
    match stale.zone(now) {
        Zone::Fresh | Zone::Revalidate | Zone::IfError => Ok(served(stale, How::Stale, now)),
        Zone::Expired => Err(Error::Compute(err)),
    }
}

/// The envelope of `key` as read (`bytes`), when it is fresh at `now`.
fn fresh(key: &str, bytes: Option<Vec<u8>>, now: u64) -> Result<Option<Envelope>> {
    match bytes {
        Some(bytes) => {
            let envelope = Envelope::decode(key, bytes)?;
            Ok((envelope.zone(now) == Zone::Fresh).then_some(envelope))
        }
        None => Ok(None),
    }
}

/// The envelope of a computed value: `None` when its lifetimes keep nothing.
fn to_store((value, lifetimes): (Vec<u8>, Lifetimes), now: u64) -> (Envelope, Option<Duration>) {
    let envelope = Envelope::new(now, &lifetimes, value);
    let ttl = envelope.ttl(now);
    (envelope, (!ttl.is_zero()).then_some(ttl))
}
