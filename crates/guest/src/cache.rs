//! The async API: [`Cache`], whose operations are futures awaited on wstd's reactor, so many
//! can run at once (e.g. with `futures::join!` or `futures::future::join_all`).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wasi::keyvalue::cache::{self, GetOrSetEntry};
use crate::bindings::wasi::keyvalue::types::OutgoingValue;
use crate::codec;
use crate::entry::{Entry, VacantEntry};
use crate::error::{BoxError, Error, Result};
use crate::pending;
use crate::stream::ValueWriter;
use crate::value::{Value, outgoing, ttl_ms};

/// A handle on the `wasi:keyvalue/cache` the component imports; cheap to copy.
///
/// Every method must be awaited inside a wstd runtime (`#[wstd::main]` or
/// `wstd::runtime::block_on`); the [`blocking`](crate::blocking) module needs none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cache;

impl Cache {
    /// The cache of this component.
    pub const fn new() -> Self {
        Cache
    }

    /// The value of `key`, or none when it holds no live value.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.get_value(key).await? {
            Some(value) => value.bytes().map(Some),
            None => Ok(None),
        }
    }

    /// The value of `key` unread (to stream or decode it), or none when absent.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>> {
        let found = pending::wait(cache::get(key)).await?;
        Ok(found.map(|v| Value::new(key, v)))
    }

    /// The value of `key` decoded from the SDK's serde format, or none when absent.
    pub async fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_value(key).await? {
            Some(value) => value.decode().map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` holds a live value.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        pending::wait(cache::exists(key)).await
    }

    /// Stores `value` under `key`, for `ttl` when given (rounded to milliseconds).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let value = outgoing(value)?;
        self.set_outgoing(key, &value, ttl).await
    }

    /// Stores `value` encoded in the SDK's serde format under `key`, for `ttl` when given.
    pub async fn set_as<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.set(key, &codec::encode(value)?, ttl).await
    }

    /// Starts storing a value under `key` whose body is written as a stream; the value is stored
    /// when the writer is [finished](ValueWriter::finish).
    pub fn set_stream(&self, key: &str, ttl: Option<Duration>) -> Result<ValueWriter> {
        let mut writer = ValueWriter::new(OutgoingValue::new_outgoing_value(), None)?;
        writer.store_as(key, ttl_ms(ttl));
        Ok(writer)
    }

    async fn set_outgoing(
        &self,
        key: &str,
        value: &OutgoingValue,
        ttl: Option<Duration>,
    ) -> Result<()> {
        pending::wait(cache::set(key, value, ttl_ms(ttl))).await
    }

    /// Removes any value of `key`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        pending::wait(cache::delete(key)).await
    }

    /// The value of `key`, or the duty to fill it: concurrent callers on a missing key meet, one
    /// gets [`Entry::Vacant`] and the others wait for its fill (or its hand-off).
    pub async fn entry(&self, key: &str) -> Result<Entry> {
        Ok(match pending::wait(cache::get_or_set(key)).await? {
            GetOrSetEntry::Occupied(v) => Entry::Occupied(Value::new(key, v)),
            GetOrSetEntry::Vacant(v) => Entry::Vacant(VacantEntry::new(key, v)),
        })
    }

    /// The value of `key`; on a miss, this caller runs `compute` and fills the key with its value
    /// (for `ttl` when given) while concurrent callers wait for it.
    ///
    /// When `compute` fails (or its future is dropped, or it panics) the vacancy is dropped, so
    /// a waiting caller takes over, and the error comes back as [`Error::Compute`].
    pub async fn get_or_set<F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<Vec<u8>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<u8>, E>>,
        E: Into<BoxError>,
    {
        match self.entry(key).await? {
            Entry::Occupied(value) => value.bytes(),
            Entry::Vacant(vacancy) => {
                // `vacancy` drops (abandoning the fill) on every early exit below.
                let bytes = compute().await.map_err(|e| Error::Compute(e.into()))?;
                vacancy.fill(&bytes, ttl)?;
                Ok(bytes)
            }
        }
    }

    /// [`get_or_set`](Cache::get_or_set) of a typed value, in the SDK's serde format.
    pub async fn get_or_set_as<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        match self.entry(key).await? {
            Entry::Occupied(value) => value.decode(),
            Entry::Vacant(vacancy) => {
                let value = compute().await.map_err(|e| Error::Compute(e.into()))?;
                vacancy.fill(&codec::encode(&value)?, ttl)?;
                Ok(value)
            }
        }
    }
}
