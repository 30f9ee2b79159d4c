//! What [`ValueReader`] and [`ValueWriter`] do the same way on both flavours: reading the rest of
//! a body through the flavour's own `read_chunk`, and starting the `set` of a streamed value.

use crate::bindings::wasi::keyvalue::cache;
use crate::error::Result;
use crate::stream::{ValueReader, ValueWriter};

impl ValueReader {
    /// The rest of the body, in one piece.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The rest of the body in one piece, blocking.
    pub fn blocking_read_to_end(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.blocking_read_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl ValueWriter {
    /// Starts the `set` of this value under `key`; it resolves once the body is finished.
    pub(crate) fn store_as(&mut self, key: &str, ttl_ms: Option<u32>) {
        self.done = Some(cache::set(key, &self.value, ttl_ms));
    }
}
