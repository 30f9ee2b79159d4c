//! The cache's operations on a [`WasiCacheCtxView`], shared by the WASI 0.2 and 0.3 flavours:
//! starting backend calls under the key limit, the live-future cap and the memory budget, and
//! turning results into resources. Each flavour's host functions only adapt these to its
//! signatures (a `…-get` that polls in 0.2, an `async get` in 0.3).
//!
//! A read never makes the backend (or its server) materialise a value the instance has not
//! reserved room for: a `get` reserves bytes from the budget first ([`first_read`]), the backend
//! refuses a longer value with its length, and the `get` then reserves that length (or fails
//! as over budget) and reads again. The reservation becomes the value's charge.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::{Error as EngineError, GetOrSet, Within};
use wasmtime::Result;
use wasmtime::component::Resource;

use crate::budget::{Held, MemoryBudget};
use crate::ctx::WasiCacheCtxView;
use crate::error::CacheError;
use crate::future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
use crate::value::{Bucket, Entry, IncomingValue, OutgoingValue, PendingVacancy};

/// What a fallible host function returns: an error resource for the guest, or a trap for the
/// host's own failures (a stale handle, a full resource table).
pub(crate) type GuestResult<T> = Result<Result<T, Resource<CacheError>>>;

/// A resolved `get-or-set`, its value or vacancy already in the resource table.
pub(crate) enum EntryResource {
    /// The key's value.
    Occupied(Resource<IncomingValue>),
    /// The caller is to fill the key.
    Vacant(Resource<PendingVacancy>),
}

fn ttl(ms: Option<u32>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
}

/// Reads of one `get` at most: the value may grow between the read that reports its length and
/// the one that fetches it, but not forever.
const READ_ATTEMPTS: usize = 3;

/// The least a first read reserves (when the budget has room): most values fit in one read.
const FIRST_READ_MIN: usize = 1 << 10;

/// The most a first read reserves: larger values take a second read, at their length.
const FIRST_READ_MAX: usize = 64 << 10;

/// Bytes a read reserves before its first round trip: a share of the budget small enough that
/// the live-future cap's worth of reads reserve at most half of it (so concurrent small reads
/// do not starve each other), within [`FIRST_READ_MIN`] and [`FIRST_READ_MAX`].
pub(crate) fn first_read(budget: usize, max_live_futures: usize) -> usize {
    (budget / max_live_futures.max(1) / 2).clamp(FIRST_READ_MIN, FIRST_READ_MAX)
}

/// Reads with `read(limit)`, whose backend refuses a value over `limit` with its length: first
/// within what `budget` can reserve up to `first`, then within the refused value's length,
/// reserved (an over-budget error when it cannot be, as for a guest holding too much). Returns
/// the outcome with its reservation, which the caller turns into the value's charge.
async fn read_within<T, F, Fut>(
    op: &'static str,
    budget: &Arc<MemoryBudget>,
    first: usize,
    max_value: usize,
    mut read: F,
) -> Result<(T, Held), CacheError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = wasi_cache_engine::Result<Within<T>>>,
{
    let held = budget.reserve_up_to(first);
    for _ in 0..READ_ATTEMPTS {
        match read(held.bytes())
            .await
            .map_err(|e| CacheError::op(op, e))?
        {
            Within::Fits(outcome) => return Ok((outcome, held)),
            Within::TooLarge(len) if len > max_value => {
                // Stored by another client past this host's value limit: not read at all.
                return Err(CacheError::op(
                    op,
                    EngineError::ValueTooLarge {
                        len,
                        max: max_value,
                    },
                ));
            }
            Within::TooLarge(len) => held.resize_to(op, len.max(held.bytes() + 1))?,
        }
    }
    Err(CacheError::op(
        op,
        format!(
            "the value grew past the bytes reserved for it {READ_ATTEMPTS} times while it was read; retry"
        ),
    ))
}

impl WasiCacheCtxView<'_> {
    fn error(&mut self, err: CacheError) -> Result<Resource<CacheError>> {
        Ok(self.table.push(err)?)
    }

    /// `result` as the guest gets it: its error pushed as an error resource.
    pub(crate) fn guest<T>(&mut self, result: Result<T, CacheError>) -> GuestResult<T> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(err) => Ok(Err(self.error(err)?)),
        }
    }

    /// Starts a backend call for operation `op` on `key`, or a future resolved to an error when
    /// the key is too long, the instance has too many live futures or its memory budget has no
    /// room for the key.
    fn start<T, F, Fut>(
        &mut self,
        op: &'static str,
        key: String,
        abort_on_drop: bool,
        call: F,
    ) -> Result<Resource<HostFuture<T>>>
    where
        T: Send + 'static,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, CacheError>> + Send + 'static,
    {
        let token = self
            .ctx
            .limits
            .check_key(key.as_bytes())
            .map_err(|err| CacheError::op(op, err))
            .and_then(|()| self.ctx.acquire(op, self.key_bytes(key.len())));
        let future = match token {
            Ok(token) => HostFuture::spawn(op, token, abort_on_drop, call(key)),
            Err(err) => HostFuture::resolved(op, Err(err)),
        };
        Ok(self.table.push(future)?)
    }

    /// What a call's `len`-byte key is charged: the guest's copy and the backend's.
    fn key_bytes(&self, len: usize) -> usize {
        len.saturating_mul(self.ctx.backend.copies().key.saturating_add(1))
    }

    /// Bytes a read reserves before its first round trip, see [`first_read`].
    fn first_read(&self) -> usize {
        first_read(self.ctx.budget.limit(), self.ctx.max_live_futures)
    }

    /// Deletes a resource the guest dropped (an unfilled vacancy or fill value is abandoned
    /// then, a pending `get-or-set` leaves the rendezvous: the backend hands off).
    pub(crate) fn delete<R: 'static>(&mut self, resource: Resource<R>) -> Result<()> {
        self.table.delete(resource)?;
        Ok(())
    }

    /// `error.trace`.
    pub(crate) fn trace(&mut self, err: &Resource<CacheError>) -> Result<String> {
        Ok(self.table.get(err)?.trace().to_owned())
    }

    /// `bucket.open-bucket`.
    pub(crate) fn open_bucket(&mut self, name: String) -> GuestResult<Resource<Bucket>> {
        match Bucket::new(name, &self.ctx.budget) {
            Ok(bucket) => Ok(Ok(self.table.push(bucket)?)),
            Err(err) => Ok(Err(self.error(err)?)),
        }
    }

    /// `outgoing-value.new-outgoing-value`.
    pub(crate) fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue::charged(&self.ctx.budget))?)
    }

    /// `outgoing-value-write-body-sync`: sets the body, and when the value fills a vacancy,
    /// waits for the backend's fill.
    pub(crate) async fn write_body_sync(
        &mut self,
        value: &Resource<OutgoingValue>,
        body: Vec<u8>,
    ) -> GuestResult<()> {
        let (limits, budget) = (self.ctx.limits, &self.ctx.budget);
        let written = self
            .table
            .get_mut(value)?
            .write_sync(body.into(), &limits, budget);
        let result = match written {
            Ok(Some((fill, body))) => fill.commit(body).await,
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        self.guest(result)
    }

    /// `incoming-value-consume-sync`.
    pub(crate) fn consume_sync(&mut self, value: &Resource<IncomingValue>) -> GuestResult<Vec<u8>> {
        Ok(Ok(self.table.get(value)?.body().to_vec()))
    }

    /// `incoming-value-size`.
    pub(crate) fn value_size(&mut self, value: &Resource<IncomingValue>) -> GuestResult<u64> {
        Ok(Ok(self.table.get(value)?.body().len() as u64))
    }

    /// `cache.get`.
    pub(crate) fn get(&mut self, k: String) -> Result<Resource<FutureGetResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        let budget = self.ctx.budget.clone();
        let (first, max) = (self.first_read(), self.ctx.limits.max_value_size);
        self.start("get", k, true, move |k| async move {
            let (backend, ns, key) = (&backend, &ns, k.as_bytes());
            let read = move |limit| backend.get_within(ns, key, limit);
            match read_within("get", &budget, first, max, read).await? {
                (Some(body), held) => IncomingValue::reserved("get", body, held).map(Some),
                (None, _) => Ok(None),
            }
        })
    }

    /// `cache.exists`.
    pub(crate) fn exists(&mut self, k: String) -> Result<Resource<FutureExistsResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        self.start("exists", k, true, |k| async move {
            backend
                .exists(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("exists", err))
        })
    }

    /// `cache.set`.
    pub(crate) fn set(
        &mut self,
        k: String,
        v: &Resource<OutgoingValue>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<FutureResult>> {
        let (source, guest_copy) = match self.table.get(v)?.source() {
            Ok(source) => source,
            Err(err) => return Ok(self.table.push(FutureResult::resolved("set", Err(err)))?),
        };
        // A slot of the write pool shared with other instances, held until the write is done
        // (after this instance ended too): taken at the call, refused at once when it is full.
        let mut slot = match self.ctx.reserve_write("set", k.len()) {
            Ok(slot) => slot,
            Err(err) => return Ok(self.table.push(FutureResult::resolved("set", Err(err)))?),
        };
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        let budget = self.ctx.budget.clone();
        let copies = backend.copies().value;
        // Writes are not cancelled when the guest drops the future: fire-and-forget works.
        self.start("set", k, false, |k| async move {
            let value = source.resolve().await?;
            // The value is charged while the write is under way: the guest's copy (kept by the
            // write, even once the guest dropped its outgoing-value) and every copy the backend
            // may make (Redis does, see `Backend::copies`).
            let _guest_copy = guest_copy;
            let _in_flight = budget.charge("set", value.len().saturating_mul(copies))?;
            slot.grow("set", value.len())?;
            backend
                .set(&ns, k.as_bytes(), value, ttl(ttl_ms))
                .await
                .map_err(|err| CacheError::op("set", err))
        })
    }

    /// `cache.get-or-set`.
    pub(crate) fn get_or_set(&mut self, k: String) -> Result<Resource<FutureGetOrSetResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        let budget = self.ctx.budget.clone();
        let (first, max) = (self.first_read(), self.ctx.limits.max_value_size);
        let key_bytes = self.key_bytes(k.len());
        let copies = self.ctx.backend.copies().value;
        let requests = self.ctx.requests.clone();
        // Dropping the future drops the backend call: the caller leaves the rendezvous.
        self.start("get-or-set", k, true, move |k| async move {
            const OP: &str = "get-or-set";
            let (backend, ns, key) = (&backend, &ns, k.as_bytes());
            let read = move |limit| backend.get_or_set_within(ns, key, limit);
            match read_within(OP, &budget, first, max, read).await? {
                (GetOrSet::Occupied(body), held) => {
                    IncomingValue::reserved(OP, body, held).map(Entry::Occupied)
                }
                // Without room for it, the vacancy is abandoned here: a waiter takes it.
                (GetOrSet::Vacant(vacancy), held) => {
                    PendingVacancy::reserved(vacancy, key_bytes, copies, held, &requests)
                        .map(Entry::Vacant)
                }
            }
        })
    }

    /// `cache.delete`.
    pub(crate) fn delete_key(&mut self, k: String) -> Result<Resource<FutureResult>> {
        // As a `set`'s: a slot of the shared write pool, held until the delete is done.
        let slot = match self.ctx.reserve_write("delete", k.len()) {
            Ok(slot) => slot,
            Err(err) => {
                return Ok(self
                    .table
                    .push(FutureResult::resolved("delete", Err(err)))?);
            }
        };
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        self.start("delete", k, false, |k| async move {
            let _slot = slot;
            backend
                .delete(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("delete", err))
        })
    }

    /// `vacancy.vacancy-fill`.
    pub(crate) fn vacancy_fill(
        &mut self,
        vacancy: &Resource<PendingVacancy>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<OutgoingValue>> {
        // A fill is a write: it takes a slot of the shared write pool, as a `set` does. With
        // the pool full the guest's outgoing-value refuses its body, and the vacancy stays the
        // guest's to fill again later or to drop (handing it to a waiter).
        let value = match self.ctx.reserve_write("vacancy-fill", 0) {
            Ok(slot) => self.table.get_mut(vacancy)?.fill(ttl(ttl_ms), slot),
            Err(err) => OutgoingValue::refused(err),
        };
        Ok(self.table.push(value)?)
    }

    /// A `get`'s result as the guest gets it, its value pushed as a resource.
    pub(crate) fn get_result(
        &mut self,
        result: Result<Option<IncomingValue>, CacheError>,
    ) -> GuestResult<Option<Resource<IncomingValue>>> {
        let result = match result {
            Ok(Some(value)) => Ok(Some(self.table.push(value)?)),
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        self.guest(result)
    }

    /// A `get-or-set`'s result as the guest gets it, its value or vacancy pushed as a resource.
    pub(crate) fn get_or_set_result(
        &mut self,
        result: Result<Entry, CacheError>,
    ) -> GuestResult<EntryResource> {
        let result = match result {
            Ok(Entry::Occupied(value)) => Ok(EntryResource::Occupied(self.table.push(value)?)),
            Ok(Entry::Vacant(vacancy)) => Ok(EntryResource::Vacant(self.table.push(vacancy)?)),
            Err(err) => Err(err),
        };
        self.guest(result)
    }
}
