//! Values read from the cache ([`Value`]) and the construction of outgoing values.

use serde::de::DeserializeOwned;

use crate::bindings::wasi::keyvalue::types::{IncomingValue, OutgoingValue};
use crate::codec;
use crate::error::{Error, Result};
use crate::stream::ValueReader;

/// A value found in the cache, not read yet: read it whole, decode it, or stream it.
#[derive(Debug)]
pub struct Value {
    key: String,
    inner: IncomingValue,
}

impl Value {
    /// Wraps the host's incoming value read from `key`.
    pub(crate) fn new(key: &str, inner: IncomingValue) -> Self {
        Value {
            key: key.to_owned(),
            inner,
        }
    }

    /// The key this value was read from.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The size of the body, in bytes.
    pub fn size(&self) -> Result<u64> {
        self.inner.incoming_value_size().map_err(Error::host)
    }

    /// The whole body, in one piece.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        self.inner
            .incoming_value_consume_sync()
            .map_err(Error::host)
    }

    /// The body decoded from the SDK's serde format (see [`crate::codec`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        codec::decode(&self.key, &self.bytes()?)
    }

    /// The body as a stream, for values too large to hold at once.
    pub fn into_reader(self) -> Result<ValueReader> {
        let stream = self
            .inner
            .incoming_value_consume_async()
            .map_err(Error::host)?;
        Ok(ValueReader::new(stream, self.inner))
    }
}

/// An outgoing value holding `bytes` as its body.
pub(crate) fn outgoing(bytes: &[u8]) -> Result<OutgoingValue> {
    let value = OutgoingValue::new_outgoing_value();
    value
        .outgoing_value_write_body_sync(bytes)
        .map_err(Error::host)?;
    Ok(value)
}

/// Milliseconds of a TTL for the host: at least 1 for a non-zero duration, at most `u32::MAX`.
pub(crate) fn ttl_ms(ttl: Option<std::time::Duration>) -> Option<u32> {
    ttl.map(|d| {
        let ms = u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        if ms == 0 && !d.is_zero() { 1 } else { ms }
    })
}
