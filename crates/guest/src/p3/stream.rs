//! Streamed value bodies: [`ValueReader`] over an incoming value's `stream<u8>` and
//! [`ValueWriter`] over the `stream<u8>` handed to an outgoing value, with async methods and
//! blocking ones (`wit_bindgen::block_on`, only outside an async task).

use wit_bindgen::{StreamReader, StreamResult, StreamWriter};

use crate::bindings::wasi::keyvalue::cache::{FutureResult, Vacancy};
use crate::bindings::wasi::keyvalue::types::{IncomingValue, OutgoingValue};
use crate::bindings::wit_stream;
use crate::error::{Error, Result};
use crate::pending;

/// Most bytes one read returns (a chunk of [`ValueReader::read_chunk`]).
pub const CHUNK: usize = 4096;

const FINISHED: Error = Error::Protocol("value writer already finished");

/// Reads a value's body in chunks; blocking methods only outside an async task.
#[derive(Debug)]
pub struct ValueReader {
    // Field order is drop order: the stream goes before the value it was read from.
    stream: StreamReader<u8>,
    _value: IncomingValue,
}

impl ValueReader {
    /// Wraps the body stream of `value`.
    pub(crate) fn new(stream: StreamReader<u8>, value: IncomingValue) -> Self {
        ValueReader {
            stream,
            _value: value,
        }
    }

    /// The next chunk (at most [`CHUNK`] bytes), or none at the end of the body.
    pub async fn read_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let (result, chunk) = self.stream.read(Vec::with_capacity(CHUNK)).await;
            match result {
                StreamResult::Complete(_) if !chunk.is_empty() => return Ok(Some(chunk)),
                // The host closed its end: the body is complete.
                StreamResult::Dropped => return Ok(None),
                StreamResult::Complete(_) | StreamResult::Cancelled => {}
            }
        }
    }

    /// The next chunk (at most [`CHUNK`] bytes), blocking; none at the end of the body.
    pub fn blocking_read_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        wit_bindgen::block_on(self.read_chunk())
    }
}

/// Writes a value's body in chunks, then [`finish`](ValueWriter::finish)es it to store it.
///
/// The body is committed when the stream closes: a writer dropped without `finish` stores (or
/// fills the vacancy with) what was written so far, since `wasi:keyvalue` has no way to abort a
/// body. Finish it, or let a write fail.
#[derive(Debug)]
pub struct ValueWriter {
    // Field order is drop order: stream, value, vacancy; `done` is taken by `finish`.
    stream: Option<StreamWriter<u8>>,
    pub(crate) done: Option<FutureResult>,
    pub(crate) value: OutgoingValue,
    _vacancy: Option<Vacancy>,
}

impl ValueWriter {
    /// A writer over the body of `value` (a vacancy's fill when `vacancy` is given).
    pub(crate) fn new(value: OutgoingValue, vacancy: Option<Vacancy>) -> Result<Self> {
        let (stream, body) = wit_stream::new();
        // The body is handed over before any `set` of the value, which then waits for its end.
        value
            .outgoing_value_write_body_async(body)
            .map_err(Error::host)?;
        Ok(ValueWriter {
            stream: Some(stream),
            done: None,
            value,
            _vacancy: vacancy,
        })
    }

    /// Writes all of `bytes`, waiting (other tasks run meanwhile) while the host reads them.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.stream.as_mut().ok_or(FINISHED)?;
        if bytes.is_empty() {
            return Ok(());
        }
        let unwritten = stream.write_all(bytes.to_vec()).await;
        if unwritten.is_empty() {
            return Ok(());
        }
        // The host dropped its end: it refused the body (over a limit). Its `set` says why.
        self.stream = None;
        Err(match self.done.take() {
            Some(done) => match pending::wait(done).await {
                Err(refused) => refused,
                Ok(()) => Error::Stream("the host stopped reading the body".into()),
            },
            None => Error::Stream("the host stopped reading the body (over its limits?)".into()),
        })
    }

    /// Writes all of `bytes`, blocking.
    pub fn blocking_write(&mut self, bytes: &[u8]) -> Result<()> {
        wit_bindgen::block_on(self.write(bytes))
    }

    /// Closes the body, committing it, and waits until the value is stored.
    pub async fn finish(mut self) -> Result<()> {
        // Dropping the writable end is how a `stream<u8>` ends.
        let closed = self.stream.take().map(drop).ok_or(FINISHED);
        match self.done.take() {
            // The host's error on the stored value says more than the stream's.
            Some(done) => pending::wait(done).await.and(closed),
            None => closed,
        }
    }

    /// Closes the body, committing it, and blocks until the value is stored.
    pub fn blocking_finish(self) -> Result<()> {
        wit_bindgen::block_on(self.finish())
    }
}
