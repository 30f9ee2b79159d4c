//! Values and handles of `wasi:keyvalue/types` and the cache's vacancy: buckets, incoming and
//! outgoing values (with their stream bodies), and the vacancy a guest fills.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use wasi_cache_engine::{Error as EngineError, Limits, Vacancy};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::budget::{Held, MemoryBudget};
use crate::error::CacheError;

/// A `bucket` handle from `open-bucket`; the cache interface itself does not use it.
#[derive(Debug, Clone)]
pub struct Bucket {
    name: String,
}

impl Bucket {
    /// A bucket handle for `name`.
    pub(crate) fn new(name: String) -> Self {
        Self { name }
    }

    /// The name the bucket was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An `incoming-value`: a value read from the cache, shared with the backend (never copied
/// until the guest reads it).
#[derive(Debug, Clone)]
pub struct IncomingValue {
    body: Bytes,
}

impl IncomingValue {
    /// Wraps a value read from the backend.
    pub(crate) fn new(body: Bytes) -> Self {
        Self { body }
    }

    /// The value's bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// The vacancy of a key, held by the guest that received `vacant` from `get-or-set`.
///
/// Dropping it unfilled abandons it: the backend hands it to a waiting caller.
#[derive(Debug)]
pub struct PendingVacancy {
    vacancy: Option<Vacancy>,
}

impl PendingVacancy {
    /// Wraps a backend vacancy for the guest.
    pub(crate) fn new(vacancy: Vacancy) -> Self {
        Self {
            vacancy: Some(vacancy),
        }
    }

    /// The outgoing-value whose body fills this vacancy; the vacancy can be filled only once.
    pub(crate) fn fill(&mut self, ttl: Option<Duration>) -> OutgoingValue {
        match self.vacancy.take() {
            Some(vacancy) => OutgoingValue::filling(Fill { vacancy, ttl }),
            None => OutgoingValue::refused(CacheError::new(
                "vacancy-fill: this vacancy was already given its outgoing-value; call vacancy-fill once",
            )),
        }
    }
}

/// A vacancy to fill with a value's body, with the value's TTL.
#[derive(Debug)]
pub(crate) struct Fill {
    vacancy: Vacancy,
    ttl: Option<Duration>,
}

impl Fill {
    /// Stores `value` and resolves the waiters of the rendezvous.
    pub(crate) async fn commit(self, value: Bytes) -> Result<(), CacheError> {
        self.vacancy
            .fill(value, self.ttl)
            .await
            .map_err(|err| CacheError::op("vacancy-fill", err))
    }
}

/// The state of a stream body, as `set` futures waiting for it see it.
#[derive(Debug, Clone)]
pub(crate) enum StreamBody {
    /// The stream is still open.
    Open,
    /// The stream was closed (dropped by the guest) with this body.
    Closed(Bytes),
    /// The stream failed (its body exceeded the value limit).
    Failed(CacheError),
}

#[derive(Debug)]
enum Body {
    Unwritten,
    Sync(Bytes),
    Stream(watch::Receiver<StreamBody>),
}

/// An `outgoing-value`: a value on its way into the cache, written once, in one piece or as a
/// stream; from `vacancy-fill`, writing it fills the vacancy.
///
/// Its body counts against the instance's memory budget until it (and its stream) is dropped.
#[derive(Debug)]
pub struct OutgoingValue {
    body: Body,
    fill: Option<Fill>,
    refused: Option<CacheError>,
    held: Option<Arc<Held>>,
}

/// Where a `set` gets its value from: a body already written, or a stream still being written.
pub(crate) enum BodySource {
    Ready(Bytes),
    Stream(watch::Receiver<StreamBody>),
}

impl BodySource {
    /// The complete body, once the stream (if any) is closed.
    pub(crate) async fn resolve(self) -> Result<Bytes, CacheError> {
        match self {
            BodySource::Ready(bytes) => Ok(bytes),
            BodySource::Stream(mut rx) => {
                let state = rx
                    .wait_for(|body| !matches!(body, StreamBody::Open))
                    .await
                    .map(|body| body.clone());
                match state {
                    Ok(StreamBody::Closed(bytes)) => Ok(bytes),
                    Ok(StreamBody::Failed(err)) => Err(err),
                    Ok(StreamBody::Open) | Err(_) => Err(CacheError::new(
                        "set: the value's body stream was discarded before it was closed",
                    )),
                }
            }
        }
    }
}

impl Default for OutgoingValue {
    fn default() -> Self {
        Self::new()
    }
}

impl OutgoingValue {
    /// A new value with no body, as `new-outgoing-value` makes.
    pub fn new() -> Self {
        Self {
            body: Body::Unwritten,
            fill: None,
            refused: None,
            held: None,
        }
    }

    fn filling(fill: Fill) -> Self {
        Self {
            fill: Some(fill),
            ..Self::new()
        }
    }

    fn refused(err: CacheError) -> Self {
        Self {
            refused: Some(err),
            ..Self::new()
        }
    }

    /// Whether writing this value's body fills a vacancy.
    pub fn fills_vacancy(&self) -> bool {
        self.fill.is_some()
    }

    fn check_writable(&self) -> Result<(), CacheError> {
        if let Some(err) = &self.refused {
            return Err(err.clone());
        }
        match self.body {
            Body::Unwritten => Ok(()),
            _ => Err(CacheError::new(
                "outgoing-value: the body was already written; a value's body is written once",
            )),
        }
    }

    /// Sets the whole body, held against `budget`; returns the vacancy fill to commit with it,
    /// if any.
    pub(crate) fn write_sync(
        &mut self,
        value: Bytes,
        limits: &Limits,
        budget: &Arc<MemoryBudget>,
    ) -> Result<Option<(Fill, Bytes)>, CacheError> {
        const OP: &str = "outgoing-value-write-body-sync";
        self.check_writable()?;
        limits
            .check_value(value.len())
            .map_err(|err| CacheError::op(OP, err))?;
        let held = Held::new(budget);
        held.grow(OP, value.len())?;
        self.held = Some(held);
        self.body = Body::Sync(value.clone());
        Ok(self.fill.take().map(|fill| (fill, value)))
    }

    /// Starts a stream body, held against `budget` as it grows; the returned writer owns the
    /// vacancy fill, if any.
    pub(crate) fn write_async(
        &mut self,
        limits: &Limits,
        budget: &Arc<MemoryBudget>,
    ) -> Result<BodyWriter, CacheError> {
        self.check_writable()?;
        let (tx, rx) = watch::channel(StreamBody::Open);
        self.body = Body::Stream(rx);
        let held = Held::new(budget);
        self.held = Some(Arc::clone(&held));
        Ok(BodyWriter {
            buf: BytesMut::new(),
            max: limits.max_value_size,
            held,
            tx: Some(tx),
            fill: self.fill.take(),
            failed: None,
        })
    }

    /// The body for a `set`, or an error when none was written.
    pub(crate) fn source(&self) -> Result<BodySource, CacheError> {
        if let Some(err) = &self.refused {
            return Err(err.clone());
        }
        match &self.body {
            Body::Unwritten => Err(CacheError::new(
                "set: the outgoing-value has no body; write it with outgoing-value-write-body-sync \
                 or outgoing-value-write-body-async first",
            )),
            Body::Sync(bytes) => Ok(BodySource::Ready(bytes.clone())),
            Body::Stream(rx) => Ok(BodySource::Stream(rx.clone())),
        }
    }
}

/// The `output-stream` of `outgoing-value-write-body-async`: collects the body up to the value
/// limit and the instance's memory budget; when the guest drops it, the body is complete (and
/// fills the vacancy, if any).
///
/// Discarded without the guest dropping it (the guest trapped or its store was dropped), it
/// abandons the vacancy and the body.
pub(crate) struct BodyWriter {
    buf: BytesMut,
    max: usize,
    held: Arc<Held>,
    tx: Option<watch::Sender<StreamBody>>,
    fill: Option<Fill>,
    failed: Option<CacheError>,
}

impl BodyWriter {
    /// Most bytes accepted by one `write` (what `check-write` grants).
    const PERMIT: usize = 64 << 10;

    fn check_open(&self) -> StreamResult<()> {
        if self.tx.is_none() || self.failed.is_some() {
            return Err(StreamError::Closed);
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BodyWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        const OP: &str = "outgoing-value-write-body-async";
        self.check_open()?;
        let len = self.buf.len().saturating_add(bytes.len());
        let grown = if len > self.max {
            Err(CacheError::op(
                OP,
                EngineError::ValueTooLarge { len, max: self.max },
            ))
        } else {
            self.held.grow(OP, bytes.len())
        };
        if let Err(err) = grown {
            self.failed = Some(err.clone());
            self.buf = BytesMut::new();
            self.held.release();
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{err}"
            )));
        }
        self.buf.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check_open()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.check_open()?;
        Ok(Self::PERMIT)
    }

    async fn cancel(&mut self) {
        // The guest dropped the stream: the body is complete.
        let Some(tx) = self.tx.take() else { return };
        let fill = self.fill.take();
        if let Some(err) = self.failed.take() {
            tx.send_replace(StreamBody::Failed(err));
            drop(fill); // abandons the vacancy
            return;
        }
        let body = self.buf.split().freeze();
        if let Some(fill) = fill {
            // Nobody can receive an error here; the waiters see the value or the hand-off.
            let _ = fill.commit(body.clone()).await;
        }
        tx.send_replace(StreamBody::Closed(body));
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BodyWriter {
    async fn ready(&mut self) {}
}
