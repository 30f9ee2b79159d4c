//! `get_or_set` on Redis: local single-flight in front of the cross-host rendezvous.
//!
//! Inside one backend, concurrent callers of one key join a [`Flight`]: one of them at a time
//! (the *driver*, who holds the flight's async mutex, FIFO) talks to Redis for all of them, the
//! others wait locally for either the value or their turn to drive. The driver runs the claim
//! script: a value resolves every local caller; a taken lock makes it the holder (it leaves with
//! a vacancy and the next local caller becomes the driver); a lock held by someone else (on this
//! host or another) makes it subscribe to the key's channel, re-claim, and then wait for a
//! message or for the lock's remaining lifetime, whichever comes first, before claiming again.
//! A message carrying a value resolves the flight with it, any other message (an abandon, a large
//! value, a pub/sub reconnect) triggers a re-claim. A fill or a plain `set` made through this
//! backend also resolves the key's local flight directly.
//!
//! A re-claim that fails for want of a connection (Redis unreachable, or no answer within the op
//! timeout) does not end the wait: the driver retries (on news from the channel, or every 250 ms)
//! until the lock it last saw would have expired, and only then fails with that error; so a
//! waiter rides out a connection being replaced. A first claim fails at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use wasi_cache_engine::{Error, GetOrSet, Result, Vacancy, Within};

use crate::backend::{Claim, Inner, RedisVacancy};
use crate::counters::Counters;
use crate::keys::Keys;
use crate::pubsub::{Event, Subscription};

/// The key's local callers: one drives, the others wait for its outcome.
pub(crate) struct Flight {
    /// Held by the caller that talks to Redis; holds the flight's channel subscription, kept
    /// while the flight lives so successive drivers do not resubscribe.
    driver: tokio::sync::Mutex<Option<Subscription>>,
    /// What every caller of the flight resolves with, once known: the value, or the driver's
    /// error (so that followers of a failing driver fail with it instead of queueing for one op
    /// timeout each).
    value: watch::Sender<Option<Result<Bytes>>>,
}

/// The flights of one backend, by value key, with their number of callers.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Vec<u8>, Members>>,
}

/// A flight and how many callers are in it.
type Members = (Arc<Flight>, usize);

/// One caller's membership of a flight; leaving the last membership removes the flight.
struct Participant<'a> {
    flights: &'a Flights,
    key: Vec<u8>,
    flight: Arc<Flight>,
}

impl Drop for Participant<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        if let Some((flight, count)) = map.get_mut(&self.key)
            && Arc::ptr_eq(flight, &self.flight)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Flights {
    /// Joins the key's flight, starting one if there is none.
    fn join(&self, key: &[u8]) -> Participant<'_> {
        let mut map = self.map.lock();
        let (flight, count) = map.entry(key.to_vec()).or_insert_with(|| {
            (
                Arc::new(Flight {
                    driver: tokio::sync::Mutex::new(None),
                    value: watch::Sender::new(None),
                }),
                0,
            )
        });
        *count += 1;
        Participant {
            flights: self,
            key: key.to_vec(),
            flight: flight.clone(),
        }
    }

    /// Resolves the key's flight, if any, with `value` (after a set or fill on this backend);
    /// callers arriving later start a new flight.
    pub(crate) fn resolve(&self, key: &[u8], value: &Bytes) {
        let flight = self.map.lock().remove(key).map(|(f, _)| f);
        if let Some(flight) = flight {
            flight.value.send_replace(Some(Ok(value.clone())));
        }
    }

    /// Resolves `flight` with `outcome`, detaching it from the map if it is still there.
    fn resolve_flight(&self, key: &[u8], flight: &Arc<Flight>, outcome: Result<Bytes>) {
        {
            let mut map = self.map.lock();
            if map.get(key).is_some_and(|(f, _)| Arc::ptr_eq(f, flight)) {
                map.remove(key);
            }
        }
        flight.value.send_replace(Some(outcome));
    }
}

/// How one driving turn ended.
enum Drive {
    /// The key has this value (stored, or published by a fill).
    Value(Bytes),
    /// The flight was resolved by someone else while waiting.
    Resolved,
    /// The driver took the lock: it holds the vacancy.
    Claimed(RedisVacancy),
    /// The key has a value of this many bytes, more than the driver's limit: not read.
    TooLarge(usize),
}

/// A lock lifetime too long for the clock to add: as good as forever.
const FOREVER: Duration = Duration::from_secs(1 << 32);

/// The longest sleep between claims while the pub/sub connection is down.
const RETRY_WITHOUT_PUBSUB: Duration = Duration::from_millis(250);

impl Inner {
    /// `get_or_set`, with local single-flight in front of the Redis rendezvous; while this
    /// caller drives, a stored value is read only if it is at most `limit` bytes (a larger one
    /// makes this caller leave with its length, and the next one drive). A value another caller
    /// read or a fill published is shared whatever its size: it is in memory already.
    pub(crate) async fn get_or_set(
        self: &Arc<Self>,
        keys: Keys,
        limit: usize,
    ) -> Result<Within<GetOrSet>> {
        let participant = self.flights.join(&keys.value);
        let flight = participant.flight.clone();
        let mut resolved = flight.value.subscribe();
        let mut waited = false;
        let result = loop {
            let known = resolved.borrow_and_update().clone();
            if let Some(outcome) = known {
                break outcome.map(|value| Within::Fits(GetOrSet::Occupied(value)));
            }
            let mut driver = match flight.driver.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    self.note_wait(&mut waited);
                    tokio::select! {
                        biased;
                        _ = resolved.changed() => continue,
                        guard = flight.driver.lock() => guard,
                    }
                }
            };
            if resolved.borrow().is_some() {
                continue;
            }
            match self
                .drive(&keys, limit, &mut driver, &mut resolved, &mut waited)
                .await
            {
                Ok(Drive::Value(value)) => {
                    self.flights
                        .resolve_flight(&keys.value, &flight, Ok(value.clone()));
                    break Ok(Within::Fits(GetOrSet::Occupied(value)));
                }
                Ok(Drive::Resolved) => continue,
                Ok(Drive::Claimed(slot)) => {
                    break Ok(Within::Fits(GetOrSet::Vacant(Vacancy::new(slot))));
                }
                // The flight goes on without this caller: the next one drives with its limit.
                Ok(Drive::TooLarge(len)) => break Ok(Within::TooLarge(len)),
                Err(e) => {
                    self.flights
                        .resolve_flight(&keys.value, &flight, Err(e.clone()));
                    break Err(e);
                }
            }
        };
        drop(participant);
        match &result {
            Ok(Within::Fits(GetOrSet::Occupied(_))) if !waited => {
                Counters::bump(&self.counters.hits);
            }
            Ok(Within::Fits(_)) => Counters::bump(&self.counters.misses),
            Ok(Within::TooLarge(_)) | Err(_) => {}
        }
        result
    }

    /// Counts the caller as a rendezvous wait, once.
    fn note_wait(&self, waited: &mut bool) {
        if !*waited {
            *waited = true;
            Counters::bump(&self.counters.rendezvous_waits);
        }
    }

    /// Counts a waiting caller as a rendezvous wait, if not counted yet.
    fn count_wait(&self, uncounted: &mut bool) {
        if std::mem::take(uncounted) {
            Counters::bump(&self.counters.rendezvous_waits);
        }
    }

    /// One driving turn: claim until the key has a value, the lock is ours, or the flight is
    /// resolved by someone else.
    async fn drive(
        self: &Arc<Self>,
        keys: &Keys,
        limit: usize,
        subscription: &mut Option<Subscription>,
        resolved: &mut watch::Receiver<Option<Result<Bytes>>>,
        waited: &mut bool,
    ) -> Result<Drive> {
        let mut timed_out = false;
        // Whether this caller waits but is not counted in `rendezvous_waits` yet.
        let mut uncounted = false;
        // Until when the lock seen last may live: a waiter rides out connection failures until
        // then (its holder cannot keep the key longer), a first claim fails at once.
        let mut lock_lives_until: Option<Instant> = None;
        loop {
            // Mark the channel's events seen *before* claiming: anything published after the
            // claim's answer is then noticed.
            let mut events = subscription.as_ref().map(Subscription::events);
            if let Some(events) = events.as_mut() {
                events.borrow_and_update();
            }
            // The vacancy exists before the claim is sent: if this future is dropped while the
            // claim is in flight, its drop releases a lock the claim may have taken.
            let mut slot = RedisVacancy::new(self.clone(), keys.clone(), new_token());
            let pttl = match self.claim(keys, slot.token(), limit).await {
                Ok(Claim::Value(value)) => {
                    slot.disarm();
                    return Ok(Drive::Value(value));
                }
                Ok(Claim::TooLarge(len)) if len > limit => {
                    slot.disarm();
                    return Ok(Drive::TooLarge(len));
                }
                // Within the limit but too long for the script to read: read without it (the
                // key may have changed since: claim again when it is gone).
                Ok(Claim::TooLarge(_)) => {
                    slot.disarm();
                    match self.read_range(&keys.value, limit).await? {
                        Within::Fits(Some((value, _))) => return Ok(Drive::Value(value)),
                        Within::Fits(None) => continue,
                        Within::TooLarge(len) => return Ok(Drive::TooLarge(len)),
                    }
                }
                Ok(Claim::Claimed) => {
                    if timed_out {
                        Counters::bump(&self.counters.timeouts);
                    }
                    return Ok(Drive::Claimed(slot));
                }
                Ok(Claim::Locked(pttl)) => {
                    slot.disarm();
                    let now = Instant::now();
                    lock_lives_until = Some(now.checked_add(pttl).unwrap_or(now + FOREVER));
                    pttl
                }
                Err(e) => {
                    // `slot` is dropped armed: it releases the lock if the claim took it.
                    let left = lock_lives_until
                        .map(|until| until.saturating_duration_since(Instant::now()))
                        .filter(|left| !left.is_zero() && is_outage(&e));
                    let Some(left) = left else {
                        return Err(e);
                    };
                    tracing::debug!("redis rendezvous: claim failed, retrying: {e}");
                    if pause(resolved, events.as_mut(), left.min(RETRY_WITHOUT_PUBSUB)).await {
                        return Ok(Drive::Resolved);
                    }
                    continue;
                }
            };
            // The caller met a lock: it waits (not a hit), but is counted as a rendezvous wait
            // only once it is sure to receive the fill (below).
            if !*waited {
                *waited = true;
                uncounted = true;
            }
            let wait = pttl.min(self.config.vacancy_timeout) + Duration::from_millis(1);
            let Some(mut events) = events else {
                match self.pubsub.subscribe(&keys.channel).await {
                    // Subscribed: re-claim at once, now that no message can be missed.
                    Ok(s) => *subscription = Some(s),
                    Err(e) => {
                        self.count_wait(&mut uncounted);
                        // Pub/sub is down: fall back to re-claiming on a timer (never tightly).
                        tracing::debug!("redis rendezvous without pub/sub: {e}");
                        if pause(resolved, None, wait.min(RETRY_WITHOUT_PUBSUB)).await {
                            return Ok(Drive::Resolved);
                        }
                        timed_out = wait <= RETRY_WITHOUT_PUBSUB;
                    }
                }
                continue;
            };
            // Counted as a wait only now, subscribed and behind a lock seen after subscribing:
            // from here the holder's fill reaches this caller even when nothing is stored (a
            // TTL-0 fill), which is what the count promises.
            self.count_wait(&mut uncounted);
            tokio::select! {
                biased;
                _ = resolved.changed() => return Ok(Drive::Resolved),
                changed = events.changed() => {
                    if changed.is_err() {
                        // The channel is gone (cannot happen while subscribed): wait it out.
                        tokio::time::sleep(wait).await;
                        timed_out = true;
                        continue;
                    }
                    let event = events.borrow().clone();
                    if let Event::Value(value) = event {
                        return Ok(Drive::Value(value));
                    }
                    timed_out = false;
                }
                () = tokio::time::sleep(wait) => timed_out = true,
            }
        }
    }
}

/// Whether `e` means Redis could not be reached or did not answer (worth retrying).
fn is_outage(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_) | Error::Timeout(_))
}

/// Waits `limit`, or less if the channel has news; `true` if the flight was resolved meanwhile.
async fn pause(
    resolved: &mut watch::Receiver<Option<Result<Bytes>>>,
    events: Option<&mut watch::Receiver<Event>>,
    limit: Duration,
) -> bool {
    let news = async {
        match events {
            Some(events) => {
                let _ = events.changed().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = resolved.changed() => true,
        () = news => false,
        () = tokio::time::sleep(limit) => false,
    }
}

/// A fresh random lock token (128 bits, hex).
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
