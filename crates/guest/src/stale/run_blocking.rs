//! The revalidating lookups of the [blocking](crate::blocking) `Cache`: the same protocol as the
//! async ones, but the refresh of a value within its revalidate window runs inline, so the one
//! caller elected to refresh pays the compute (and answers the new value); the others answer
//! the stale value at once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::envelope::{Envelope, Zone};
use super::{
    DONE, How, Lifetimes, MARKER, Served, after_another_refresh, after_failure, fresh, now_ms,
    refresh_key, served, to_store,
};
use crate::blocking::Cache;
use crate::codec;
use crate::entry::Entry;
use crate::error::{BoxError, Error, Result};

impl Cache {
    /// The value of `key`, served stale while one caller refreshes it (see
    /// [`crate::Cache::get_or_revalidate`]); the refresh within the revalidate window runs in
    /// the one caller elected to refresh, which waits for it.
    pub fn get_or_revalidate<F, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        compute: F,
    ) -> Result<Vec<u8>>
    where
        F: FnOnce() -> std::result::Result<Vec<u8>, E>,
        E: Into<BoxError>,
    {
        let served =
            self.get_or_revalidate_served(key, move || compute().map(|value| (value, lifetimes)))?;
        Ok(served.value)
    }

    /// [`get_or_revalidate`](Cache::get_or_revalidate) of a typed value, in the SDK's serde
    /// format (inside the envelope).
    pub fn get_or_revalidate_as<T, F, E>(
        &self,
        key: &str,
        lifetimes: Lifetimes,
        compute: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<T, E>,
        E: Into<BoxError>,
    {
        let served = self.get_or_revalidate_served(key, move || {
            let value = compute().map_err(Into::into)?;
            let bytes = codec::encode(&value).map_err(BoxError::from)?;
            Ok::<_, BoxError>((bytes, lifetimes))
        })?;
        codec::decode(key, &served.value)
    }

    /// [`get_or_revalidate`](Cache::get_or_revalidate) telling how the value was obtained and
    /// its age, with lifetimes chosen by `compute` (see
    /// [`crate::Cache::get_or_revalidate_served`]).
    pub fn get_or_revalidate_served<F, E>(&self, key: &str, compute: F) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> std::result::Result<(Vec<u8>, Lifetimes), E>,
        E: Into<BoxError>,
    {
        let Some(bytes) = self.get(key)? else {
            return self.fill_missing(key, compute);
        };
        let stale = Envelope::decode(key, bytes)?;
        let now = now_ms();
        match stale.zone(now) {
            Zone::Fresh => Ok(served(stale, How::Fresh, now)),
            Zone::Revalidate => self.refresh_inline(key, stale, compute),
            Zone::IfError | Zone::Expired => self.refresh_waiting(key, stale, compute),
        }
    }

    /// A miss: `get-or-set` on the key itself.
    fn fill_missing<F, E>(&self, key: &str, compute: F) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> std::result::Result<(Vec<u8>, Lifetimes), E>,
        E: Into<BoxError>,
    {
        match self.entry(key)? {
            Entry::Occupied(value) => {
                let envelope = Envelope::decode(key, value.bytes()?)?;
                Ok(served(envelope, How::Waited, now_ms()))
            }
            Entry::Vacant(vacancy) => {
                let computed = compute().map_err(|e| Error::Compute(e.into()))?;
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

    /// A value within its revalidate window: the caller that takes the refresh key's vacancy
    /// marks it at once, refreshes and deletes it; every other answers the stale value.
    fn refresh_inline<F, E>(
        &self,
        key: &str,
        stale: Envelope,
        compute: F,
    ) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> std::result::Result<(Vec<u8>, Lifetimes), E>,
        E: Into<BoxError>,
    {
        let claim = refresh_key(key);
        let Entry::Vacant(vacancy) = self.entry(&claim)? else {
            return Ok(served(stale, How::Stale, now_ms()));
        };
        vacancy.fill(MARKER, Some(stale.lease()))?;
        let outcome = match fresh(key, self.get(key)?, now_ms())? {
            Some(envelope) => Ok(served(envelope, How::Waited, now_ms())),
            None => match compute() {
                Ok(computed) => self.store(key, computed),
                Err(err) => after_failure(stale, err.into(), now_ms()),
            },
        };
        self.delete(&claim)?;
        outcome
    }

    /// A value past its revalidate window: callers meet on the refresh key's rendezvous, one
    /// refreshes and the others wait for it, then read the key again.
    fn refresh_waiting<F, E>(
        &self,
        key: &str,
        stale: Envelope,
        compute: F,
    ) -> Result<Served<Vec<u8>>>
    where
        F: FnOnce() -> std::result::Result<(Vec<u8>, Lifetimes), E>,
        E: Into<BoxError>,
    {
        let claim = refresh_key(key);
        match self.entry(&claim)? {
            Entry::Vacant(vacancy) => {
                let outcome = match fresh(key, self.get(key)?, now_ms())? {
                    Some(envelope) => Ok(served(envelope, How::Waited, now_ms())),
                    None => match compute() {
                        Ok(computed) => self.store(key, computed),
                        Err(err) => after_failure(stale, err.into(), now_ms()),
                    },
                };
                vacancy.fill(MARKER, Some(DONE))?;
                outcome
            }
            Entry::Occupied(_) => {
                let found = match self.get(key)? {
                    Some(bytes) => Some(Envelope::decode(key, bytes)?),
                    None => None,
                };
                match after_another_refresh(key, found, now_ms())? {
                    Some(served) => Ok(served),
                    None => self.fill_missing(key, compute),
                }
            }
        }
    }

    /// Stores a refreshed value (or deletes the key when its lifetimes keep nothing).
    fn store(&self, key: &str, computed: (Vec<u8>, Lifetimes)) -> Result<Served<Vec<u8>>> {
        let (envelope, ttl) = to_store(computed, now_ms());
        match ttl {
            Some(ttl) => self.set(key, &envelope.encode(), Some(ttl))?,
            None => self.delete(key)?,
        }
        let at = envelope.stored_at;
        Ok(served(envelope, How::Computed, at))
    }
}
