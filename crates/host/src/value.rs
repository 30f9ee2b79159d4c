//! Values and handles of `wasi:keyvalue/types` and the cache's vacancy: buckets, incoming and
//! outgoing values (with their stream bodies), and the vacancy a guest fills.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use wasi_cache_engine::{Error as EngineError, Limits, Vacancy};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use crate::budget::{Held, MemoryBudget};
use crate::error::CacheError;

/// A `bucket` handle from `open-bucket`; the cache interface itself does not use it.
#[derive(Debug)]
pub struct Bucket {
    name: String,
    _held: Held,
}

impl Bucket {
    /// A bucket handle for `name`, its name charged to the instance's budget.
    pub(crate) fn new(name: String, budget: &Arc<MemoryBudget>) -> Result<Self, CacheError> {
        let held = budget.charge_resource("open-bucket", name.len())?;
        Ok(Self { name, _held: held })
    }

    /// The name the bucket was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An `incoming-value`: a value read from the cache, shared with the backend (never copied
/// until the guest reads it).
///
/// Its body counts against the instance's memory budget until it and every stream read from it
/// are dropped: once the cache evicts or overwrites the entry, only the guest keeps it alive.
#[derive(Debug)]
pub struct IncomingValue {
    body: Bytes,
    held: Arc<Held>,
}

impl IncomingValue {
    /// Wraps a value read from the backend for operation `op`, charged to `budget`.
    pub(crate) fn new(
        op: &str,
        body: Bytes,
        budget: &Arc<MemoryBudget>,
    ) -> Result<Self, CacheError> {
        let held = budget.charge_resource(op, body.len())?;
        Ok(Self {
            body,
            held: Arc::new(held),
        })
    }

    /// The value's bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// An `input-stream` of the body, sharing the value's charge.
    pub(crate) fn reader(&self) -> BodyReader {
        BodyReader {
            rest: self.body.clone(),
            _held: Arc::clone(&self.held),
        }
    }
}

/// The `input-stream` of `incoming-value-consume-async`: the rest of the body, still charged to
/// the instance (the guest may drop the incoming-value and keep reading).
pub(crate) struct BodyReader {
    rest: Bytes,
    _held: Arc<Held>,
}

#[wasmtime_wasi::async_trait]
impl InputStream for BodyReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.rest.is_empty() {
            return Err(StreamError::Closed);
        }
        Ok(self.rest.split_to(size.min(self.rest.len())))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BodyReader {
    async fn ready(&mut self) {}
}

/// What a `get-or-set` resolves to, its value or vacancy already charged to the instance.
#[derive(Debug)]
pub enum Entry {
    /// The key's value.
    Occupied(IncomingValue),
    /// The caller is to fill the key.
    Vacant(PendingVacancy),
}

/// The vacancy of a key, held by the guest that received `vacant` from `get-or-set`.
///
/// Dropping it unfilled abandons it: the backend hands it to a waiting caller. It and its key
/// count against the instance's memory budget until it is filled or abandoned.
#[derive(Debug)]
pub struct PendingVacancy {
    vacancy: Option<(Vacancy, Held)>,
}

impl PendingVacancy {
    /// Wraps a backend vacancy of a `key_len`-byte key for the guest, charged to `budget`; when
    /// the budget has no room the vacancy is abandoned (handed to a waiter) and the guest gets
    /// the error.
    pub(crate) fn new(
        vacancy: Vacancy,
        key_len: usize,
        budget: &Arc<MemoryBudget>,
    ) -> Result<Self, CacheError> {
        let held = budget.charge_resource("get-or-set", key_len)?;
        Ok(Self {
            vacancy: Some((vacancy, held)),
        })
    }

    /// The outgoing-value whose body fills this vacancy; the vacancy can be filled only once.
    pub(crate) fn fill(&mut self, ttl: Option<Duration>) -> OutgoingValue {
        match self.vacancy.take() {
            Some((vacancy, held)) => OutgoingValue::filling(Fill {
                vacancy,
                ttl,
                _held: held,
            }),
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
    /// The vacancy's charge, carried over from the [`PendingVacancy`].
    _held: Held,
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
/// It and its body count against the instance's memory budget until it (and its stream) is
/// dropped.
#[derive(Debug)]
pub struct OutgoingValue {
    body: Body,
    fill: Option<Fill>,
    refused: Option<CacheError>,
    held: Option<Arc<Held>>,
    /// The resource's own overhead; `None` for values built outside an instance.
    _resource: Option<Held>,
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
            _resource: None,
        }
    }

    /// A new value for a guest, its overhead charged to `budget`; when the budget has no room
    /// the value refuses its body with that error (`new-outgoing-value` cannot fail).
    pub(crate) fn charged(budget: &Arc<MemoryBudget>) -> Self {
        match budget.charge_resource("new-outgoing-value", 0) {
            Ok(held) => Self {
                _resource: Some(held),
                ..Self::new()
            },
            Err(err) => Self::refused(err),
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
        let held = budget.charge(OP, value.len())?;
        self.held = Some(Arc::new(held));
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
        let held = Arc::new(Held::new(budget));
        self.held = Some(Arc::clone(&held));
        Ok(BodyWriter {
            buf: Vec::new(),
            max: limits.max_value_size,
            permit: 0,
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
/// limit and the instance's memory budget (charged for its buffer's real capacity); when the
/// guest drops it, the body is complete (and fills the vacancy, if any).
///
/// Discarded without the guest dropping it (the guest trapped or its store was dropped), it
/// abandons the vacancy and the body.
pub(crate) struct BodyWriter {
    buf: Vec<u8>,
    max: usize,
    /// Bytes the guest may still write since its last `check-write`.
    permit: usize,
    held: Arc<Held>,
    tx: Option<watch::Sender<StreamBody>>,
    fill: Option<Fill>,
    failed: Option<CacheError>,
}

impl BodyWriter {
    /// Most bytes accepted after one `check-write` (what it grants).
    const PERMIT: usize = 64 << 10;
    const OP: &str = "outgoing-value-write-body-async";

    fn check_open(&self) -> StreamResult<()> {
        if self.tx.is_none() || self.failed.is_some() {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    /// Makes room for `more` bytes, charging the buffer's growth before it happens: at least
    /// doubling (so a body costs O(log n) reallocations) but never past the value limit.
    fn reserve(&mut self, more: usize) -> Result<(), CacheError> {
        let len = self.buf.len().saturating_add(more);
        if len > self.max {
            return Err(CacheError::op(
                Self::OP,
                EngineError::ValueTooLarge { len, max: self.max },
            ));
        }
        let capacity = self.buf.capacity();
        if len <= capacity {
            return Ok(());
        }
        let target = len.max(capacity.saturating_mul(2).min(self.max));
        self.held.grow(Self::OP, target - capacity)?;
        self.buf.reserve_exact(target - self.buf.len());
        Ok(())
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
        if let Err(err) = self.reserve(bytes.len()) {
            self.failed = Some(err.clone());
            self.buf = Vec::new();
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
        self.permit = Self::PERMIT;
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
        // The body is kept (and stored) at its length, not its buffer's capacity.
        let mut buf = std::mem::take(&mut self.buf);
        buf.shrink_to_fit();
        self.held.shrink_to(buf.capacity());
        let body = Bytes::from(buf);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream body is charged for its buffer's real capacity while it grows, and for its
    /// length once complete.
    #[test]
    fn stream_bodies_are_charged_at_their_capacity() {
        let budget = MemoryBudget::new(1 << 20);
        let mut value = OutgoingValue::new();
        let mut writer = value.write_async(&Limits::default(), &budget).unwrap();
        for _ in 0..5 {
            let permit = writer.check_write().unwrap();
            writer
                .write(Bytes::from(vec![7; permit.min(30_000)]))
                .unwrap();
            let (len, capacity) = (writer.buf.len(), writer.buf.capacity());
            assert_eq!(budget.used(), capacity, "len {len}");
            assert!(capacity >= len && capacity <= 2 * len, "{len} {capacity}");
        }
        futures::executor::block_on(writer.cancel());
        assert_eq!(budget.used(), 150_000);
        let BodySource::Stream(rx) = value.source().unwrap() else {
            panic!("a stream body")
        };
        let body = futures::executor::block_on(BodySource::Stream(rx).resolve()).unwrap();
        assert_eq!(body.len(), 150_000);
        drop((value, writer));
        assert_eq!(budget.used(), 0);
    }

    /// wasi:io: a write beyond what `check-write` permitted traps; within it, it succeeds.
    #[test]
    fn writes_beyond_the_permit_trap() {
        let budget = MemoryBudget::new(1 << 20);
        let mut value = OutgoingValue::new();
        let mut writer = value.write_async(&Limits::default(), &budget).unwrap();
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
