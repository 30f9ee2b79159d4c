//! The `wasi:io` faces of the shared bodies and futures: the input-stream of an incoming
//! value's body, the output-stream that collects an outgoing value's body (with wasi:io's
//! `check-write` permits), and the pollable of a future resource.

use bytes::Bytes;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use crate::future::HostFuture;
use crate::value::{BodyBuffer, BodyReader};

#[wasmtime_wasi::async_trait]
impl InputStream for BodyReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.next_chunk(size).ok_or(StreamError::Closed)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BodyReader {
    async fn ready(&mut self) {}
}

/// The `output-stream` of `outgoing-value-write-body-async`: a [`BodyBuffer`] written within
/// the permits of `check-write`; when the guest drops it, the body is complete.
pub(crate) struct BodyWriter {
    body: BodyBuffer,
    /// Bytes the guest may still write since its last `check-write`.
    permit: usize,
}

impl BodyWriter {
    /// Most bytes accepted after one `check-write` (what it grants).
    const PERMIT: usize = 64 << 10;
    const OP: &str = "outgoing-value-write-body-async";

    /// A stream that collects `body`.
    pub(crate) fn new(body: BodyBuffer) -> Self {
        Self { body, permit: 0 }
    }

    fn check_open(&self) -> StreamResult<()> {
        if self.body.is_open() {
            Ok(())
        } else {
            Err(StreamError::Closed)
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BodyWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.check_open()?;
        if bytes.len() > self.permit {
            // wasi:io: writing more than `check-write` permitted traps.
            return Err(StreamError::trap(&format!(
                "{}: write of {} bytes exceeds the {} bytes check-write permitted",
                Self::OP,
                bytes.len(),
                self.permit
            )));
        }
        self.permit -= bytes.len();
        self.body
            .append(&bytes)
            .map_err(|err| StreamError::LastOperationFailed(wasmtime::format_err!("{err}")))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check_open()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.check_open()?;
        self.permit = Self::PERMIT;
        Ok(Self::PERMIT)
    }

    async fn cancel(&mut self) {
        // The guest dropped the stream: the body is complete.
        if let Some(close) = self.body.close() {
            close.await;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BodyWriter {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl<T: Send + 'static> Pollable for HostFuture<T> {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use wasi_cache_engine::Limits;

    use super::*;
    use crate::budget::MemoryBudget;
    use crate::value::OutgoingValue;

    /// wasi:io: a write beyond what `check-write` permitted traps; within it, it succeeds.
    #[test]
    fn writes_beyond_the_permit_trap() {
        let budget = MemoryBudget::new(1 << 20);
        let mut value = OutgoingValue::new();
        let body = value.write_async(&Limits::default(), &budget).unwrap();
        let mut writer = BodyWriter::new(body);
        assert!(matches!(
            writer.write(Bytes::from_static(b"x")),
            Err(StreamError::Trap(_))
        ));
        let permit = writer.check_write().unwrap();
        writer.write(Bytes::from(vec![1; permit - 1])).unwrap();
        writer.write(Bytes::from_static(b"y")).unwrap();
        assert!(matches!(
            writer.write(Bytes::from_static(b"z")),
            Err(StreamError::Trap(_))
        ));
    }
}
