//! The blocking API: the same operations as [`crate::Cache`], each waiting with
//! `pollable.block()`, for components without an async runtime.

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

/// A blocking handle on the `wasi:keyvalue/cache` the component imports; cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cache;

impl Cache {
    /// The cache of this component.
    pub const fn new() -> Self {
        Cache
    }

    /// The value of `key`, or none when it holds no live value.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.get_value(key)? {
            Some(value) => value.bytes().map(Some),
            None => Ok(None),
        }
    }

    /// The value of `key` unread (to stream or decode it), or none when absent.
    pub fn get_value(&self, key: &str) -> Result<Option<Value>> {
        Ok(pending::block(cache::get(key))?.map(|v| Value::new(key, v)))
    }

    /// The value of `key` decoded from the SDK's serde format, or none when absent.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_value(key)? {
            Some(value) => value.decode().map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` holds a live value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        pending::block(cache::exists(key))
    }

    /// Stores `value` under `key`, for `ttl` when given (rounded to milliseconds).
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let value = outgoing(value)?;
        pending::block(cache::set(key, &value, ttl_ms(ttl)))
    }

    /// Stores `value` encoded in the SDK's serde format under `key`, for `ttl` when given.
    pub fn set_as<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.set(key, &codec::encode(value)?, ttl)
    }

    /// Starts storing a value under `key` whose body is written as a stream; the value is stored
    /// when the writer is [finished](ValueWriter::blocking_finish).
    pub fn set_stream(&self, key: &str, ttl: Option<Duration>) -> Result<ValueWriter> {
        let mut writer = ValueWriter::new(OutgoingValue::new_outgoing_value(), None)?;
        writer.store_as(key, ttl_ms(ttl));
        Ok(writer)
    }

    /// Removes any value of `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        pending::block(cache::delete(key))
    }

    /// The value of `key`, or the duty to fill it (see [`crate::Cache::entry`]).
    pub fn entry(&self, key: &str) -> Result<Entry> {
        Ok(match pending::block(cache::get_or_set(key))? {
            GetOrSetEntry::Occupied(v) => Entry::Occupied(Value::new(key, v)),
            GetOrSetEntry::Vacant(v) => Entry::Vacant(VacantEntry::new(key, v)),
        })
    }

    /// The value of `key`; on a miss this caller runs `compute` and fills the key with its
    /// result. When `compute` fails or panics the vacancy goes to a waiter and the error returns
    /// as [`Error::Compute`].
    pub fn get_or_set<F, E>(&self, key: &str, ttl: Option<Duration>, compute: F) -> Result<Vec<u8>>
    where
        F: FnOnce() -> std::result::Result<Vec<u8>, E>,
        E: Into<BoxError>,
    {
        match self.entry(key)? {
            Entry::Occupied(value) => value.bytes(),
            Entry::Vacant(vacancy) => {
                let bytes = compute().map_err(|e| Error::Compute(e.into()))?;
                vacancy.fill(&bytes, ttl)?;
                Ok(bytes)
            }
        }
    }

    /// [`get_or_set`](Cache::get_or_set) of a typed value, in the SDK's serde format.
    pub fn get_or_set_as<T, F, E>(&self, key: &str, ttl: Option<Duration>, compute: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<T, E>,
        E: Into<BoxError>,
    {
        match self.entry(key)? {
            Entry::Occupied(value) => value.decode(),
            Entry::Vacant(vacancy) => {
                let value = compute().map_err(|e| Error::Compute(e.into()))?;
                vacancy.fill(&codec::encode(&value)?, ttl)?;
                Ok(value)
            }
        }
    }
}
