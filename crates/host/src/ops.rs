//! The cache's operations on a [`WasiCacheCtxView`], shared by the WASI 0.2 and 0.3 flavours:
//! starting backend calls under the key limit, the live-future cap and the memory budget, and
//! turning results into resources. Each flavour's host functions only adapt these to its
//! signatures (a `…-get` that polls in 0.2, an `async get` in 0.3).

use std::future::Future;
use std::time::Duration;

use wasi_cache_engine::GetOrSet;
use wasmtime::Result;
use wasmtime::component::Resource;

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
            .and_then(|()| self.ctx.acquire(op, key.len()));
        let future = match token {
            Ok(token) => HostFuture::spawn(op, token, abort_on_drop, call(key)),
            Err(err) => HostFuture::resolved(op, Err(err)),
        };
        Ok(self.table.push(future)?)
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
        self.start("get", k, true, |k| async move {
            match backend.get(&ns, k.as_bytes()).await {
                Ok(Some(body)) => IncomingValue::new("get", body, &budget).map(Some),
                Ok(None) => Ok(None),
                Err(err) => Err(CacheError::op("get", err)),
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
        let source = match self.table.get(v)?.source() {
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
        // Writes are not cancelled when the guest drops the future: fire-and-forget works.
        self.start("set", k, false, |k| async move {
            let value = source.resolve().await?;
            // The value is charged while the write is under way: a backend may copy it (Redis
            // does), and the guest may drop its outgoing-value meanwhile.
            let _in_flight = budget.charge("set", value.len())?;
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
        // Dropping the future drops the backend call: the caller leaves the rendezvous.
        self.start("get-or-set", k, true, |k| async move {
            match backend.get_or_set(&ns, k.as_bytes()).await {
                Ok(GetOrSet::Occupied(body)) => {
                    IncomingValue::new("get-or-set", body, &budget).map(Entry::Occupied)
                }
                // Without room for it, the vacancy is abandoned here: a waiter takes it.
                Ok(GetOrSet::Vacant(vacancy)) => {
                    PendingVacancy::new(vacancy, k.len(), &budget).map(Entry::Vacant)
                }
                Err(err) => Err(CacheError::op("get-or-set", err)),
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
        let value = self.table.get_mut(vacancy)?.fill(ttl(ttl_ms));
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
