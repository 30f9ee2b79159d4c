//! The revalidating lookups of the async [`Cache`]: a stale value within its revalidate window
//! is answered at once and refreshed by a spawned task (after the caller's response, when the
//! caller returns first: wstd's `block_on` on WASI 0.2 and wit-bindgen's task on 0.3 both run
//! spawned tasks to their end before the export returns).

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::envelope::{Envelope, Zone};
use super::{
    DONE, How, Lifetimes, MARKER, Served, after_another_refresh, after_failure, fresh, now_ms,
    refresh_key, served, to_store,
};
use crate::cache::Cache;
use crate::codec;
use crate::entry::Entry;
use crate::error::{BoxError, Error, Result};
use crate::task;

impl Cache {
    /// The value of `key`, served stale while one caller refreshes it: within `lifetimes.fresh`
    /// a hit; then, within the stale-while-revalidate window, the stale value at once while
    /// exactly one caller (of every instance and host on the backend) runs `compute` in a
    /// spawned task; within the stale-if-error window, a refresh the callers wait for as with
    /// [`get_or_set`](Cache::get_or_set), answered with the stale value when it fails; on a
    /// miss, [`get_or_set`](Cache::get_or_set).
    ///
    /// The key holds the value in an envelope (`docs/polyglot.md`): read it with these methods,
    /// not [`get`](Cache::get). `compute` is `'static` because it may outlive this call.
    pub async fn get_or_revalidate<F, Fut, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        compute: F,
    ) -> Result<Vec<u8>>
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = std::result::Result<Vec<u8>, E>> + 'static,
        E: Into<BoxError> + 'static,
    {
        let served = self
            .get_or_revalidate_served(key, move || async move {
                compute().await.map(|value| (value, lifetimes))
            })
            .await?;
        Ok(served.value)
    }

    /// [`get_or_revalidate`](Cache::get_or_revalidate) of a typed value, in the SDK's serde
    /// format (inside the envelope).
    pub async fn get_or_revalidate_as<T, F, Fut, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        compute: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + 'static,
        E: Into<BoxError> + 'static,
    {
        let served = self
            .get_or_revalidate_served(key, move || async move {
                let value = compute().await.map_err(Into::into)?;
                let bytes = codec::encode(&value).map_err(BoxError::from)?;
                Ok::<_, BoxError>((bytes, lifetimes))
            })
            .await?;
        codec::decode(key, &served.value)
    }

    /// [`get_or_revalidate`](Cache::get_or_revalidate) telling how the value was obtained and
    /// its age, with lifetimes chosen by `compute` for each value it computes (e.g. from an HTTP
    /// response's `Cache-Control`); [`Lifetimes::none`] returns the value without storing it.
    pub async fn get_or_revalidate_served<F, Fut, E>(
        &self,
        key: &str,
        compute: F,
    ) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = std::result::Result<(Vec<u8>, Lifetimes), E>> + 'static,
        E: Into<BoxError> + 'static,
    {
        let Some(bytes) = self.get(key).await? else {
            return self.fill_missing(key, compute).await;
        };
        let stale = Envelope::decode(key, bytes)?;
        let now = now_ms();
        match stale.zone(now) {
            Zone::Fresh => Ok(served(stale, How::Fresh, now)),
            Zone::Revalidate => {
                task::spawn(refresh(key.to_owned(), stale.lease(), compute));
                Ok(served(stale, How::Stale, now))
            }
            Zone::IfError | Zone::Expired => self.refresh_waiting(key, stale, compute).await,
        }
    }

    /// A miss: `get-or-set` on the key itself, as [`get_or_set`](Cache::get_or_set) does.
    async fn fill_missing<F, Fut, E>(&self, key: &str, compute: F) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<(Vec<u8>, Lifetimes), E>>,
        E: Into<BoxError>,
    {
        match self.entry(key).await? {
            Entry::Occupied(value) => {
                let envelope = Envelope::decode(key, value.bytes()?)?;
                Ok(served(envelope, How::Waited, now_ms()))
            }
            Entry::Vacant(vacancy) => {
                // `vacancy` drops (handing the key to a waiter) on every early exit.
                let computed = compute().await.map_err(|e| Error::Compute(e.into()))?;
                let (envelope, ttl) = to_store(computed, now_ms());
                match ttl {
                    Some(ttl) => vacancy.fill(&envelope.encode(), Some(ttl))?,
                    None => vacancy.abandon(),
                }
                let at = envelope.stored_at;
                Ok(served(envelope, How::Computed, at))
            }
        }
    }

    /// A value past its revalidate window: callers meet on the refresh key's rendezvous, one
    /// refreshes and the others wait for it, then read the key again.
    async fn refresh_waiting<F, Fut, E>(
        &self,
        key: &str,
        stale: Envelope,
        compute: F,
    ) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<(Vec<u8>, Lifetimes), E>>,
        E: Into<BoxError>,
    {
        let claim = refresh_key(key);
        match self.entry(&claim).await? {
            Entry::Vacant(vacancy) => {
                let outcome = match fresh(key, self.get(key).await?, now_ms())? {
                    Some(envelope) => Ok(served(envelope, How::Waited, now_ms())),
                    None => match compute().await {
                        Ok(computed) => self.store(key, computed).await,
                        Err(err) => after_failure(stale, err.into(), now_ms()),
                    },
                };
                // Filled only now: the waiters read the key again, refreshed or not.
                vacancy.fill(MARKER, Some(DONE))?;
                outcome
            }
            Entry::Occupied(_) => {
                let found = match self.get(key).await? {
                    Some(bytes) => Some(Envelope::decode(key, bytes)?),
                    None => None,
                };
                match after_another_refresh(key, found, now_ms())? {
                    Some(served) => Ok(served),
                    None => self.fill_missing(key, compute).await,
                }
            }
        }
    }

    /// Stores a refreshed value (or deletes the key when its lifetimes keep nothing).
    async fn store(&self, key: &str, computed: (Vec<u8>, Lifetimes)) -> Result<Served<Vec<u8>>> {
        let (envelope, ttl) = to_store(computed, now_ms());
        match ttl {
            Some(ttl) => self.set(key, &envelope.encode(), Some(ttl)).await?,
            None => self.delete(key).await?,
        }
        let at = envelope.stored_at;
        Ok(served(envelope, How::Computed, at))
    }
}

/// The background refresh of `key`: only the holder of the refresh key's vacancy computes; it
/// marks the refresh key at once (the others meet the marker, never a wait), and deletes it
/// once done, so the next staleness (or the next caller after a failure) may refresh again.
/// Errors have nobody to go to: the stale value stays until its windows end.
async fn refresh<F, Fut, E>(key: String, lease: std::time::Duration, compute: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<(Vec<u8>, Lifetimes), E>>,
{
    let cache = Cache::new();
    let claim = refresh_key(&key);
    let Ok(Entry::Vacant(vacancy)) = cache.entry(&claim).await else {
        return;
    };
    if vacancy.fill(MARKER, Some(lease)).is_err() {
        return;
    }
    let refreshed = match cache.get(&key).await {
        Ok(bytes) => matches!(fresh(&key, bytes, now_ms()), Ok(Some(_))),
        Err(_) => false,
    };
    if !refreshed && let Ok(computed) = compute().await {
        let _ = cache.store(&key, computed).await;
    }
    let _ = cache.delete(&claim).await;
}
