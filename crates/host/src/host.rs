//! The host functions of `cache`, `types` and `wasi-keyvalue-error`, on [`WasiCacheCtxView`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use wasi_cache_engine::GetOrSet;
use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable};

use crate::bindings::wasi::keyvalue::{cache, types, wasi_keyvalue_error};
use crate::ctx::WasiCacheCtxView;
use crate::error::{CacheError, panic_message};
use crate::future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
use crate::value::{Bucket, Entry, IncomingValue, OutgoingValue, PendingVacancy};

/// What a fallible host function returns: an error resource for the guest, or a trap for the
/// host's own failures (a stale handle, a full resource table).
type GuestResult<T> = Result<Result<T, Resource<CacheError>>>;

fn ttl(ms: Option<u32>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
}

/// Runs the host function `func`, turning a panic (there should be none) into a trap of this
/// guest rather than an unwind through the embedder.
fn guarded<R>(func: &str, body: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(trap(func, &*payload)))
}

/// [`guarded`] for the one async host function.
async fn guarded_async<R>(func: &str, body: impl Future<Output = Result<R>>) -> Result<R> {
    AssertUnwindSafe(body)
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(trap(func, &*payload)))
}

fn trap(func: &str, payload: &(dyn std::any::Any + Send)) -> wasmtime::Error {
    wasmtime::format_err!(
        "wasi-cache host panicked in {func}: {}",
        panic_message(payload)
    )
}

impl WasiCacheCtxView<'_> {
    fn error(&mut self, err: CacheError) -> Result<Resource<CacheError>> {
        Ok(self.table.push(err)?)
    }

    fn guest<T>(&mut self, result: Result<T, CacheError>) -> GuestResult<T> {
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

    fn take<T: Send + 'static>(
        &mut self,
        future: &Resource<HostFuture<T>>,
    ) -> Result<Option<Result<T, CacheError>>> {
        Ok(self.table.get_mut(future)?.take())
    }

    fn listen<T: Send + 'static>(
        &mut self,
        future: Resource<HostFuture<T>>,
    ) -> Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.table, future)
    }
}

impl wasi_keyvalue_error::Host for WasiCacheCtxView<'_> {}

impl wasi_keyvalue_error::HostError for WasiCacheCtxView<'_> {
    fn trace(&mut self, err: Resource<CacheError>) -> Result<String> {
        guarded("error.trace", || {
            Ok(self.table.get(&err)?.trace().to_owned())
        })
    }

    fn drop(&mut self, err: Resource<CacheError>) -> Result<()> {
        guarded("error.drop", || {
            self.table.delete(err)?;
            Ok(())
        })
    }
}

impl types::Host for WasiCacheCtxView<'_> {}

impl types::HostBucket for WasiCacheCtxView<'_> {
    fn open_bucket(&mut self, name: String) -> GuestResult<Resource<Bucket>> {
        guarded("open-bucket", || {
            match Bucket::new(name, &self.ctx.budget) {
                Ok(bucket) => Ok(Ok(self.table.push(bucket)?)),
                Err(err) => Ok(Err(self.error(err)?)),
            }
        })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> Result<()> {
        guarded("bucket.drop", || {
            self.table.delete(bucket)?;
            Ok(())
        })
    }
}

impl types::HostOutgoingValue for WasiCacheCtxView<'_> {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        guarded("new-outgoing-value", || {
            Ok(self.table.push(OutgoingValue::charged(&self.ctx.budget))?)
        })
    }

    fn outgoing_value_write_body_async(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> GuestResult<Resource<DynOutputStream>> {
        guarded("outgoing-value-write-body-async", || {
            let (limits, budget) = (self.ctx.limits, &self.ctx.budget);
            match self.table.get_mut(&value)?.write_async(&limits, budget) {
                Ok(writer) => {
                    let stream: DynOutputStream = Box::new(writer);
                    Ok(Ok(self.table.push(stream)?))
                }
                Err(err) => Ok(Err(self.error(err)?)),
            }
        })
    }

    async fn outgoing_value_write_body_sync(
        &mut self,
        value: Resource<OutgoingValue>,
        body: Vec<u8>,
    ) -> GuestResult<()> {
        guarded_async("outgoing-value-write-body-sync", async {
            let (limits, budget) = (self.ctx.limits, &self.ctx.budget);
            let written = self
                .table
                .get_mut(&value)?
                .write_sync(body.into(), &limits, budget);
            let result = match written {
                Ok(Some((fill, body))) => fill.commit(body).await,
                Ok(None) => Ok(()),
                Err(err) => Err(err),
            };
            self.guest(result)
        })
        .await
    }

    fn drop(&mut self, value: Resource<OutgoingValue>) -> Result<()> {
        guarded("outgoing-value.drop", || {
            // An unwritten fill value drops its vacancy here: abandoned, handed to a waiter.
            self.table.delete(value)?;
            Ok(())
        })
    }
}

impl types::HostIncomingValue for WasiCacheCtxView<'_> {
    fn incoming_value_consume_sync(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Vec<u8>> {
        guarded("incoming-value-consume-sync", || {
            Ok(Ok(self.table.get(&value)?.body().to_vec()))
        })
    }

    fn incoming_value_consume_async(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Resource<DynInputStream>> {
        guarded("incoming-value-consume-async", || {
            let stream: DynInputStream = Box::new(self.table.get(&value)?.reader());
            Ok(Ok(self.table.push(stream)?))
        })
    }

    fn incoming_value_size(&mut self, value: Resource<IncomingValue>) -> GuestResult<u64> {
        guarded("incoming-value-size", || {
            Ok(Ok(self.table.get(&value)?.body().len() as u64))
        })
    }

    fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        guarded("incoming-value.drop", || {
            self.table.delete(value)?;
            Ok(())
        })
    }
}

impl cache::Host for WasiCacheCtxView<'_> {
    fn get(&mut self, k: String) -> Result<Resource<FutureGetResult>> {
        guarded("get", || {
            let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
            let budget = self.ctx.budget.clone();
            self.start("get", k, true, |k| async move {
                match backend.get(&ns, k.as_bytes()).await {
                    Ok(Some(body)) => IncomingValue::new("get", body, &budget).map(Some),
                    Ok(None) => Ok(None),
                    Err(err) => Err(CacheError::op("get", err)),
                }
            })
        })
    }

    fn exists(&mut self, k: String) -> Result<Resource<FutureExistsResult>> {
        guarded("exists", || {
            let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
            self.start("exists", k, true, |k| async move {
                backend
                    .exists(&ns, k.as_bytes())
                    .await
                    .map_err(|err| CacheError::op("exists", err))
            })
        })
    }

    fn set(
        &mut self,
        k: String,
        v: Resource<OutgoingValue>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<FutureResult>> {
        guarded("set", || {
            let source = match self.table.get(&v)?.source() {
                Ok(source) => source,
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
                backend
                    .set(&ns, k.as_bytes(), value, ttl(ttl_ms))
                    .await
                    .map_err(|err| CacheError::op("set", err))
            })
        })
    }

    fn get_or_set(&mut self, k: String) -> Result<Resource<FutureGetOrSetResult>> {
        guarded("get-or-set", || {
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
        })
    }

    fn delete(&mut self, k: String) -> Result<Resource<FutureResult>> {
        guarded("delete", || {
            let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
            self.start("delete", k, false, |k| async move {
                backend
                    .delete(&ns, k.as_bytes())
                    .await
                    .map_err(|err| CacheError::op("delete", err))
            })
        })
    }
}

impl cache::HostFutureGetResult for WasiCacheCtxView<'_> {
    fn future_get_result_get(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Option<Result<Option<Resource<IncomingValue>>, Resource<CacheError>>>> {
        guarded("future-get-result-get", || {
            let Some(result) = self.take(&future)? else {
                return Ok(None);
            };
            let result = match result {
                Ok(Some(value)) => Ok(Some(self.table.push(value)?)),
                Ok(None) => Ok(None),
                Err(err) => Err(err),
            };
            self.guest(result).map(Some)
        })
    }

    fn listen_to_future_get_result(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-get-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureGetResult>) -> Result<()> {
        guarded("future-get-result.drop", || {
            self.table.delete(future)?;
            Ok(())
        })
    }
}

impl cache::HostFutureExistsResult for WasiCacheCtxView<'_> {
    fn future_exists_result_get(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Option<Result<bool, Resource<CacheError>>>> {
        guarded("future-exists-result-get", || match self.take(&future)? {
            Some(result) => self.guest(result).map(Some),
            None => Ok(None),
        })
    }

    fn listen_to_future_exists_result(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-exists-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureExistsResult>) -> Result<()> {
        guarded("future-exists-result.drop", || {
            self.table.delete(future)?;
            Ok(())
        })
    }
}

impl cache::HostFutureResult for WasiCacheCtxView<'_> {
    fn future_result_get(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Option<Result<(), Resource<CacheError>>>> {
        guarded("future-result-get", || match self.take(&future)? {
            Some(result) => self.guest(result).map(Some),
            None => Ok(None),
        })
    }

    fn listen_to_future_result(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureResult>) -> Result<()> {
        guarded("future-result.drop", || {
            self.table.delete(future)?;
            Ok(())
        })
    }
}

impl cache::HostFutureGetOrSetResult for WasiCacheCtxView<'_> {
    fn future_get_or_set_result_get(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Option<Result<cache::GetOrSetEntry, Resource<CacheError>>>> {
        guarded("future-get-or-set-result-get", || {
            let Some(result) = self.take(&future)? else {
                return Ok(None);
            };
            let result = match result {
                Ok(Entry::Occupied(value)) => {
                    Ok(cache::GetOrSetEntry::Occupied(self.table.push(value)?))
                }
                Ok(Entry::Vacant(vacancy)) => {
                    Ok(cache::GetOrSetEntry::Vacant(self.table.push(vacancy)?))
                }
                Err(err) => Err(err),
            };
            self.guest(result).map(Some)
        })
    }

    fn listen_to_future_get_or_set_result(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-get-or-set-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureGetOrSetResult>) -> Result<()> {
        guarded("future-get-or-set-result.drop", || {
            self.table.delete(future)?;
            Ok(())
        })
    }
}

impl cache::HostVacancy for WasiCacheCtxView<'_> {
    fn vacancy_fill(
        &mut self,
        vacancy: Resource<PendingVacancy>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<OutgoingValue>> {
        guarded("vacancy-fill", || {
            let value = self.table.get_mut(&vacancy)?.fill(ttl(ttl_ms));
            Ok(self.table.push(value)?)
        })
    }

    fn drop(&mut self, vacancy: Resource<PendingVacancy>) -> Result<()> {
        guarded("vacancy.drop", || {
            // An unfilled vacancy is abandoned here: the backend hands it to a waiter.
            self.table.delete(vacancy)?;
            Ok(())
        })
    }
}
