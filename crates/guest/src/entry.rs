//! The result of `get-or-set`: [`Entry::Occupied`] with the value, or [`Entry::Vacant`] with the
//! duty to fill it ([`VacantEntry`], which abandons the vacancy to a waiter when dropped).

use std::time::Duration;

use serde::Serialize;

use crate::bindings::wasi::keyvalue::cache::Vacancy;
use crate::codec;
use crate::error::{Error, Result};
use crate::stream::ValueWriter;
use crate::value::{Value, ttl_ms};

/// What [`Cache::entry`](crate::Cache::entry) found for a key.
#[derive(Debug)]
pub enum Entry {
    /// The key holds a value (possibly just filled by another caller).
    Occupied(Value),
    /// The key is missing and this caller fills it; others wait meanwhile.
    Vacant(VacantEntry),
}

/// The duty to fill a missing key. Fill it, or drop it to hand it to a waiting caller.
#[derive(Debug)]
pub struct VacantEntry {
    key: String,
    vacancy: Vacancy,
}

impl VacantEntry {
    /// Wraps the host's vacancy for `key`.
    pub(crate) fn new(key: &str, vacancy: Vacancy) -> Self {
        VacantEntry {
            key: key.to_owned(),
            vacancy,
        }
    }

    /// The key to fill.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Fills the key with `value`, for `ttl` when given; waiting callers receive it.
    pub fn fill(self, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let out = self.vacancy.vacancy_fill(ttl_ms(ttl));
        let filled = out
            .outgoing_value_write_body_sync(value)
            .map_err(Error::host);
        drop(out); // before the vacancy, its parent
        filled
    }

    /// Fills the key with `value` encoded in the SDK's serde format.
    pub fn fill_as<T: Serialize + ?Sized>(self, value: &T, ttl: Option<Duration>) -> Result<()> {
        let bytes = codec::encode(value)?;
        self.fill(&bytes, ttl)
    }

    /// Fills the key with a body written as a stream: the fill happens when the writer is
    /// finished (or dropped).
    pub fn fill_stream(self, ttl: Option<Duration>) -> Result<ValueWriter> {
        let out = self.vacancy.vacancy_fill(ttl_ms(ttl));
        ValueWriter::new(out, Some(self.vacancy))
    }

    /// Gives up the fill: a waiting caller receives the vacancy (same as dropping it).
    pub fn abandon(self) {}
}
