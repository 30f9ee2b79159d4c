//! Streamed value bodies: [`ValueReader`] over an incoming value's input stream and
//! [`ValueWriter`] over an outgoing value's output stream, with async and blocking methods.

use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wstd::runtime::AsyncPollable;

use crate::bindings::wasi::keyvalue::cache::{FutureResult, Vacancy};
use crate::bindings::wasi::keyvalue::types::{IncomingValue, OutgoingValue};
use crate::error::{Error, Result};
use crate::pending;

impl Error {
    /// Wraps a `wasi:io` stream error.
    fn stream(err: StreamError) -> Self {
        match err {
            StreamError::Closed => Error::Stream("stream closed".into()),
            StreamError::LastOperationFailed(e) => Error::Stream(e.to_debug_string()),
        }
    }
}

/// Most bytes moved by one stream call (`blocking-write-and-flush` accepts at most 4096).
pub const CHUNK: usize = 4096;

/// Reads a value's body in chunks; async methods need a wstd runtime, blocking ones do not.
#[derive(Debug)]
pub struct ValueReader {
    // Field order is drop order: the pollable is a child of the stream, the stream of the value.
    pollable: Option<AsyncPollable>,
    stream: InputStream,
    _value: IncomingValue,
}

impl ValueReader {
    /// Wraps the body stream of `value`.
    pub(crate) fn new(stream: InputStream, value: IncomingValue) -> Self {
        ValueReader {
            pollable: None,
            stream,
            _value: value,
        }
    }

    /// The next chunk (at most [`CHUNK`] bytes), or none at the end of the body.
    pub async fn read_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.stream.read(CHUNK as u64) {
                Ok(chunk) if chunk.is_empty() => {
                    let stream = &self.stream;
                    let pollable = self
                        .pollable
                        .get_or_insert_with(|| AsyncPollable::new(stream.subscribe()));
                    pollable.wait_for().await;
                }
                Ok(chunk) => return Ok(Some(chunk)),
                Err(StreamError::Closed) => return Ok(None),
                Err(e) => return Err(Error::stream(e)),
            }
        }
    }

    /// The next chunk (at most [`CHUNK`] bytes), blocking; none at the end of the body.
    pub fn blocking_read_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match self.stream.blocking_read(CHUNK as u64) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => Ok(None),
            Err(e) => Err(Error::stream(e)),
        }
    }
}

/// Writes a value's body in chunks, then [`finish`](ValueWriter::finish)es it to store it.
///
/// The body is committed when the stream closes: a writer dropped without `finish` stores (or
/// fills the vacancy with) what was written so far, since `wasi:keyvalue` has no way to abort a
/// body. Finish it, or let a write fail.
#[derive(Debug)]
pub struct ValueWriter {
    // Field order is drop order: pollable, stream, value, vacancy; `done` is taken by `finish`.
    pollable: Option<AsyncPollable>,
    stream: Option<OutputStream>,
    pub(crate) done: Option<FutureResult>,
    pub(crate) value: OutgoingValue,
    _vacancy: Option<Vacancy>,
}

impl ValueWriter {
    /// A writer over the body of `value` (a vacancy's fill when `vacancy` is given).
    pub(crate) fn new(value: OutgoingValue, vacancy: Option<Vacancy>) -> Result<Self> {
        let stream = value
            .outgoing_value_write_body_async()
            .map_err(Error::host)?;
        Ok(ValueWriter {
            pollable: None,
            stream: Some(stream),
            done: None,
            value,
            _vacancy: vacancy,
        })
    }

    fn stream(&self) -> Result<&OutputStream> {
        self.stream
            .as_ref()
            .ok_or(Error::Protocol("value writer already finished"))
    }

    /// Writes all of `bytes`, waiting on wstd's reactor whenever the stream is full.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let stream = self
                .stream
                .as_ref()
                .ok_or(Error::Protocol("value writer already finished"))?;
            let permit = stream.check_write().map_err(Error::stream)?;
            if permit == 0 {
                let pollable = self
                    .pollable
                    .get_or_insert_with(|| AsyncPollable::new(stream.subscribe()));
                pollable.wait_for().await;
                continue;
            }
            let n = bytes
                .len()
                .min(CHUNK)
                .min(usize::try_from(permit).unwrap_or(usize::MAX));
            stream.write(&bytes[..n]).map_err(Error::stream)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Writes all of `bytes`, blocking.
    pub fn blocking_write(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.stream()?;
        for chunk in bytes.chunks(CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(Error::stream)?;
        }
        Ok(())
    }

    /// Closes the body, committing it, and waits until the value is stored.
    pub async fn finish(mut self) -> Result<()> {
        let flushed = self.flush_and_close();
        match self.done.take() {
            // The host's error on the stored value says more than the stream's.
            Some(done) => pending::wait(done).await.and(flushed),
            None => flushed,
        }
    }

    /// Closes the body, committing it, and blocks until the value is stored.
    pub fn blocking_finish(mut self) -> Result<()> {
        let flushed = self.flush_and_close();
        match self.done.take() {
            Some(done) => pending::block(done).and(flushed),
            None => flushed,
        }
    }

    /// Flushes the stream and drops it (with its pollable first), which commits the body.
    fn flush_and_close(&mut self) -> Result<()> {
        let flushed = match &self.stream {
            Some(stream) => stream.flush().map_err(Error::stream),
            None => Err(Error::Protocol("value writer already finished")),
        };
        self.pollable = None;
        self.stream = None;
        flushed
    }
}
