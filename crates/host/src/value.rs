//! Values and handles of `wasi:keyvalue/types` and the cache's vacancy: buckets, incoming and
//! outgoing values (with their stream bodies), and the vacancy a guest fills.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use wasi_cache_engine::{Error as EngineError, Limits, Vacancy};

use crate::budget::{Held, MemoryBudget, RESOURCE_OVERHEAD};
use crate::error::CacheError;
use crate::leases::{Lease, Requests};
use crate::writes::WriteSlot;

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
    /// Wraps a value read from the backend for operation `op` into `held`, the bytes reserved
    /// for the read, which become its charge (grown when the backend returned a value it held
    /// already, larger than the reservation: failing when the budget has no room for it).
    pub(crate) fn reserved(op: &str, body: Bytes, held: Held) -> Result<Self, CacheError> {
        held.resize_to(op, body.len().saturating_add(RESOURCE_OVERHEAD))?;
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

/// The body stream of `incoming-value-consume-async` (a `wasi:io` input-stream in 0.2, a
/// `stream<u8>` in 0.3): the rest of the body, still charged to the instance (the guest may
/// drop the incoming-value and keep reading).
pub(crate) struct BodyReader {
    rest: Bytes,
    _held: Arc<Held>,
}

impl BodyReader {
    /// The next at most `max` bytes of the body, or `None` at its end.
    pub(crate) fn next_chunk(&mut self, max: usize) -> Option<Bytes> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.rest.split_to(max.min(self.rest.len())))
    }

    /// Whether the whole body was read.
    pub(crate) fn is_done(&self) -> bool {
        self.rest.is_empty()
    }
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
    vacancy: Option<(Lease, Held)>,
    /// Copies of the value the backend makes while it writes the fill, see `Backend::copies`.
    value_copies: usize,
}

impl PendingVacancy {
    /// Wraps a backend vacancy for the guest, charged `key_bytes` (its key, times the copies the
    /// backend keeps) out of `held`, the bytes reserved for the `get-or-set`; when the budget has
    /// no room the vacancy is abandoned (handed to a waiter) and the guest gets the error.
    /// Its fill is charged `value_copies` times the value while the backend writes it. Leased
    /// from `requests`: handed off, with an error for the guest, when the instance has no
    /// request left to fill it.
    pub(crate) fn reserved(
        vacancy: Vacancy,
        key_bytes: usize,
        value_copies: usize,
        held: Held,
        requests: &Requests,
    ) -> Result<Self, CacheError> {
        held.resize_to("get-or-set", key_bytes.saturating_add(RESOURCE_OVERHEAD))?;
        let lease = requests.lease(vacancy).ok_or_else(|| {
            CacheError::op(
                "get-or-set",
                "the instance had no request in flight when this call resolved: its vacancy was \
                 handed to another caller",
            )
        })?;
        Ok(Self {
            vacancy: Some((lease, held)),
            value_copies,
        })
    }

    /// The outgoing-value whose body fills this vacancy, its write holding `slot` of the
    /// shared write pool until done; the vacancy can be filled only once.
    pub(crate) fn fill(&mut self, ttl: Option<Duration>, slot: WriteSlot) -> OutgoingValue {
        match self.vacancy.take() {
            Some((vacancy, held)) => OutgoingValue::filling(Fill {
                vacancy,
                ttl,
                value_copies: self.value_copies,
                held,
                slot,
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
    vacancy: Lease,
    ttl: Option<Duration>,
    /// Copies of the value the backend makes while it writes it.
    value_copies: usize,
    /// The vacancy's charge, carried over from the [`PendingVacancy`]; it grows by the copies
    /// of the value while the fill is under way.
    held: Held,
    /// Its slot in the write pool shared by every instance: a fill is a write, and like a
    /// `set` it completes after its instance ended.
    slot: WriteSlot,
}

impl Fill {
    /// Stores `value` and resolves the waiters of the rendezvous; without room in the budget
    /// for the backend's copies of the value, or in the write pool for the value, the vacancy
    /// is abandoned (handed to a waiter).
    pub(crate) async fn commit(self, value: Bytes) -> Result<(), CacheError> {
        let Self {
            vacancy,
            ttl,
            value_copies,
            held,
            mut slot,
        } = self;
        let vacancy = vacancy.take().ok_or_else(|| {
            CacheError::op(
                "vacancy-fill",
                "the requests of this instance ended before the vacancy was filled: it was \
                 handed to another caller",
            )
        })?;
        held.grow("vacancy-fill", value.len().saturating_mul(value_copies))?;
        slot.grow("vacancy-fill", value.len())?;
        vacancy
            .fill(value, ttl)
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

    pub(crate) fn refused(err: CacheError) -> Self {
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
    ) -> Result<BodyBuffer, CacheError> {
        self.check_writable()?;
        let (tx, rx) = watch::channel(StreamBody::Open);
        self.body = Body::Stream(rx);
        let held = Arc::new(Held::new(budget));
        self.held = Some(Arc::clone(&held));
        Ok(BodyBuffer {
            buf: Vec::new(),
            max: limits.max_value_size,
            held,
            tx: Some(tx),
            fill: self.fill.take(),
            failed: None,
        })
    }

    /// The body for a `set`, with the charge of the guest's copy of it (which the `set` keeps,
    /// so that the copy stays charged while the write holds it, even once the guest dropped the
    /// value), or an error when none was written.
    pub(crate) fn source(&self) -> Result<(BodySource, Option<Arc<Held>>), CacheError> {
        Ok((self.body_source()?, self.held.clone()))
    }

    fn body_source(&self) -> Result<BodySource, CacheError> {
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

/// The body of `outgoing-value-write-body-async` as it is streamed in (through a `wasi:io`
/// output-stream in 0.2, a `stream<u8>` in 0.3): collected up to the value limit and the
/// instance's memory budget (charged for its buffer's real capacity); once the guest closes
/// the stream, the body is complete (and fills the vacancy, if any).
///
/// Discarded without being closed (the guest trapped or its store was dropped), it abandons the
/// vacancy and the body.
pub(crate) struct BodyBuffer {
    buf: Vec<u8>,
    max: usize,
    held: Arc<Held>,
    tx: Option<watch::Sender<StreamBody>>,
    fill: Option<Fill>,
    failed: Option<CacheError>,
}

impl BodyBuffer {
    const OP: &str = "outgoing-value-write-body-async";

    /// Whether more bytes are accepted: not closed, and no write failed.
    pub(crate) fn is_open(&self) -> bool {
        self.tx.is_some() && self.failed.is_none()
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

    /// Appends `bytes`; past the value limit or the budget the body fails (and its buffer is
    /// given back): the `set` waiting for it gets the error, a vacancy it fills is abandoned.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        if let Err(err) = self.reserve(bytes.len()) {
            self.failed = Some(err.clone());
            self.buf = Vec::new();
            self.held.release();
            return Err(err);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Closes the body (the guest closed its stream); the returned future, once run, fills the
    /// vacancy (if any) and hands the body to the `set`s waiting for it. `None` when already
    /// closed.
    pub(crate) fn close(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let tx = self.tx.take()?;
        let fill = self.fill.take();
        let body = match self.failed.take() {
            Some(err) => Err(err),
            None => {
                // The body is kept (and stored) at its length, not its buffer's capacity.
                let mut buf = std::mem::take(&mut self.buf);
                buf.shrink_to_fit();
                self.held.shrink_to(buf.capacity());
                Ok(Bytes::from(buf))
            }
        };
        Some(async move {
            match body {
                Ok(body) => {
                    if let Some(fill) = fill {
                        // Nobody can receive an error here; the waiters see the value or the
                        // hand-off.
                        let _ = fill.commit(body.clone()).await;
                    }
                    tx.send_replace(StreamBody::Closed(body));
                }
                Err(err) => {
                    tx.send_replace(StreamBody::Failed(err));
                    drop(fill); // abandons the vacancy
                }
            }
        })
    }

    /// Bytes collected so far and the buffer's capacity.
    #[cfg(test)]
    pub(crate) fn len_and_capacity(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }
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
        let mut body = value.write_async(&Limits::default(), &budget).unwrap();
        for _ in 0..5 {
            body.append(&[7; 30_000]).unwrap();
            let (len, capacity) = body.len_and_capacity();
            assert_eq!(budget.used(), capacity, "len {len}");
            assert!(capacity >= len && capacity <= 2 * len, "{len} {capacity}");
        }
        futures::executor::block_on(body.close().unwrap());
        assert!(body.close().is_none(), "a body closes once");
        assert_eq!(budget.used(), 150_000);
        let (BodySource::Stream(rx), _) = value.source().unwrap() else {
            panic!("a stream body")
        };
        let resolved = futures::executor::block_on(BodySource::Stream(rx).resolve()).unwrap();
        assert_eq!(resolved.len(), 150_000);
        drop((value, body));
        assert_eq!(budget.used(), 0);
    }

    /// A body past the value limit fails, gives its buffer back and reaches its `set` as the
    /// error.
    #[test]
    fn an_oversized_stream_body_fails_its_set() {
        let budget = MemoryBudget::new(1 << 20);
        let limits = Limits {
            max_value_size: 1000,
            ..Limits::default()
        };
        let mut value = OutgoingValue::new();
        let mut body = value.write_async(&limits, &budget).unwrap();
        body.append(&[1; 600]).unwrap();
        let err = body.append(&[1; 600]).unwrap_err();
        assert!(err.trace().contains("1200"), "{err}");
        assert!(!body.is_open());
        assert_eq!(budget.used(), 0);
        futures::executor::block_on(body.close().unwrap());
        let (source, _) = value.source().unwrap();
        let failed = futures::executor::block_on(source.resolve()).unwrap_err();
        assert_eq!(failed, err);
    }

    /// A vacancy's fill is a write of the shared pool: a value the pool has no room for is
    /// refused and the vacancy handed on (the next caller gets it), and the slot is given back.
    #[test]
    fn a_fill_the_write_pool_cannot_hold_abandons_its_vacancy() {
        use crate::writes::{InstanceWrites, WritePool};
        use wasi_cache_engine::{Config, GetOrSet, MemoryCache, Namespace};

        futures::executor::block_on(async {
            let cache = MemoryCache::new(Config::with_capacity(1 << 20)).unwrap();
            let ns = Namespace::default();
            let GetOrSet::Vacant(vacancy) = cache.get_or_set(&ns, b"k").await.unwrap() else {
                panic!("a new key is vacant")
            };
            let budget = MemoryBudget::new(1 << 20);
            let pool = WritePool::new(4, 100);
            let instance = Arc::new(InstanceWrites::default());
            let slot = WriteSlot::reserve(&pool, &instance, "vacancy-fill", 0).unwrap();
            assert_eq!(pool.writes(), 1);
            let held = budget.charge("get-or-set", 0).unwrap();
            let mut pending =
                PendingVacancy::reserved(vacancy, 1, 1, held, &Requests::default()).unwrap();
            let Some(fill) = pending.fill(None, slot).fill.take() else {
                panic!("the outgoing-value fills the vacancy")
            };
            let err = fill.commit(Bytes::from(vec![0; 101])).await.unwrap_err();
            assert!(err.trace().contains("100 bytes"), "{err}");
            assert_eq!((pool.writes(), pool.bytes(), pool.refused()), (0, 0, 1));
            // Abandoned, not filled: the next caller is the one to fill the key.
            let next = cache.get_or_set(&ns, b"k").await.unwrap();
            assert!(matches!(next, GetOrSet::Vacant(_)), "{next:?}");
        });
    }
}
