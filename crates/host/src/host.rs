//! The host functions of `cache`, `types` and `wasi-keyvalue-error`, on [`WasiCacheCtxView`].

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use wasi_cache_engine::GetOrSet;
use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, pipe::MemoryInputPipe};

use crate::bindings::wasi::keyvalue::{cache, types, wasi_keyvalue_error};
use crate::ctx::WasiCacheCtxView;
use crate::error::CacheError;
use crate::future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
use crate::value::{Bucket, IncomingValue, OutgoingValue, PendingVacancy};

/// What a fallible host function returns: an error resource for the guest, or a trap for the
/// host's own failures (a stale handle, a full resource table).
type GuestResult<T> = Result<Result<T, Resource<CacheError>>>;

fn ttl(ms: Option<u32>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
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
    /// the key is too long or the instance has too many live futures.
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
        let future = if let Err(err) = self.ctx.limits.check_key(key.as_bytes()) {
            HostFuture::resolved(op, Err(CacheError::op(op, err)))
        } else if let Some(token) = self.ctx.acquire() {
            HostFuture::spawn(op, token, abort_on_drop, call(key))
        } else {
            HostFuture::resolved(
                op,
                Err(CacheError::op(
                    op,
                    format!(
                        "this instance already has {} live futures, the limit; read or drop some first",
                        self.ctx.max_live_futures
                    ),
                )),
            )
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

    fn incoming(&mut self, body: Bytes) -> Result<Resource<IncomingValue>> {
        Ok(self.table.push(IncomingValue::new(body))?)
    }
}

impl wasi_keyvalue_error::Host for WasiCacheCtxView<'_> {}

impl wasi_keyvalue_error::HostError for WasiCacheCtxView<'_> {
    fn trace(&mut self, err: Resource<CacheError>) -> Result<String> {
        Ok(self.table.get(&err)?.trace().to_owned())
    }

    fn drop(&mut self, err: Resource<CacheError>) -> Result<()> {
        self.table.delete(err)?;
        Ok(())
    }
}

impl types::Host for WasiCacheCtxView<'_> {}

impl types::HostBucket for WasiCacheCtxView<'_> {
    fn open_bucket(&mut self, name: String) -> GuestResult<Resource<Bucket>> {
        Ok(Ok(self.table.push(Bucket::new(name))?))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl types::HostOutgoingValue for WasiCacheCtxView<'_> {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue::new())?)
    }

    fn outgoing_value_write_body_async(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> GuestResult<Resource<DynOutputStream>> {
        let (limits, budget) = (self.ctx.limits, &self.ctx.budget);
        match self.table.get_mut(&value)?.write_async(&limits, budget) {
            Ok(writer) => {
                let stream: DynOutputStream = Box::new(writer);
                Ok(Ok(self.table.push(stream)?))
            }
            Err(err) => Ok(Err(self.error(err)?)),
        }
    }

    async fn outgoing_value_write_body_sync(
        &mut self,
        value: Resource<OutgoingValue>,
        body: Vec<u8>,
    ) -> GuestResult<()> {
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
    }

    fn drop(&mut self, value: Resource<OutgoingValue>) -> Result<()> {
        // An unwritten fill value drops its vacancy here: abandoned, handed to a waiter.
        self.table.delete(value)?;
        Ok(())
    }
}

impl types::HostIncomingValue for WasiCacheCtxView<'_> {
    fn incoming_value_consume_sync(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Vec<u8>> {
        Ok(Ok(self.table.get(&value)?.body().to_vec()))
    }

    fn incoming_value_consume_async(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Resource<DynInputStream>> {
        let body = self.table.get(&value)?.body().clone();
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(body));
        Ok(Ok(self.table.push(stream)?))
    }

    fn incoming_value_size(&mut self, value: Resource<IncomingValue>) -> GuestResult<u64> {
        Ok(Ok(self.table.get(&value)?.body().len() as u64))
    }

    fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        self.table.delete(value)?;
        Ok(())
    }
}

impl cache::Host for WasiCacheCtxView<'_> {
    fn get(&mut self, k: String) -> Result<Resource<FutureGetResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        self.start("get", k, true, |k| async move {
            backend
                .get(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("get", err))
        })
    }

    fn exists(&mut self, k: String) -> Result<Resource<FutureExistsResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        self.start("exists", k, true, |k| async move {
            backend
                .exists(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("exists", err))
        })
    }

    fn set(
        &mut self,
        k: String,
        v: Resource<OutgoingValue>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<FutureResult>> {
        let source = match self.table.get(&v)?.source() {
            Ok(source) => source,
            Err(err) => return Ok(self.table.push(FutureResult::resolved("set", Err(err)))?),
        };
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        // Writes are not cancelled when the guest drops the future: fire-and-forget works.
        self.start("set", k, false, |k| async move {
            let value = source.resolve().await?;
            backend
                .set(&ns, k.as_bytes(), value, ttl(ttl_ms))
                .await
                .map_err(|err| CacheError::op("set", err))
        })
    }

    fn get_or_set(&mut self, k: String) -> Result<Resource<FutureGetOrSetResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        // Dropping the future drops the backend call: the caller leaves the rendezvous.
        self.start("get-or-set", k, true, |k| async move {
            backend
                .get_or_set(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("get-or-set", err))
        })
    }

    fn delete(&mut self, k: String) -> Result<Resource<FutureResult>> {
        let (backend, ns) = (self.ctx.backend.clone(), self.ctx.namespace.clone());
        self.start("delete", k, false, |k| async move {
            backend
                .delete(&ns, k.as_bytes())
                .await
                .map_err(|err| CacheError::op("delete", err))
        })
    }
}

impl cache::HostFutureGetResult for WasiCacheCtxView<'_> {
    fn future_get_result_get(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Option<Result<Option<Resource<IncomingValue>>, Resource<CacheError>>>> {
        let Some(result) = self.take(&future)? else {
            return Ok(None);
        };
        let result = match result {
            Ok(Some(body)) => Ok(Some(self.incoming(body)?)),
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        self.guest(result).map(Some)
    }

    fn listen_to_future_get_result(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Resource<DynPollable>> {
        self.listen(future)
    }

    fn drop(&mut self, future: Resource<FutureGetResult>) -> Result<()> {
        self.table.delete(future)?;
        Ok(())
    }
}

impl cache::HostFutureExistsResult for WasiCacheCtxView<'_> {
    fn future_exists_result_get(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Option<Result<bool, Resource<CacheError>>>> {
        match self.take(&future)? {
            Some(result) => self.guest(result).map(Some),
            None => Ok(None),
        }
    }

    fn listen_to_future_exists_result(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Resource<DynPollable>> {
        self.listen(future)
    }

    fn drop(&mut self, future: Resource<FutureExistsResult>) -> Result<()> {
        self.table.delete(future)?;
        Ok(())
    }
}

impl cache::HostFutureResult for WasiCacheCtxView<'_> {
    fn future_result_get(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Option<Result<(), Resource<CacheError>>>> {
        match self.take(&future)? {
            Some(result) => self.guest(result).map(Some),
            None => Ok(None),
        }
    }

    fn listen_to_future_result(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Resource<DynPollable>> {
        self.listen(future)
    }

    fn drop(&mut self, future: Resource<FutureResult>) -> Result<()> {
        self.table.delete(future)?;
        Ok(())
    }
}

impl cache::HostFutureGetOrSetResult for WasiCacheCtxView<'_> {
    fn future_get_or_set_result_get(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Option<Result<cache::GetOrSetEntry, Resource<CacheError>>>> {
        let Some(result) = self.take(&future)? else {
            return Ok(None);
        };
        let result = match result {
            Ok(GetOrSet::Occupied(body)) => {
                Ok(cache::GetOrSetEntry::Occupied(self.incoming(body)?))
            }
            Ok(GetOrSet::Vacant(vacancy)) => Ok(cache::GetOrSetEntry::Vacant(
                self.table.push(PendingVacancy::new(vacancy))?,
            )),
            Err(err) => Err(err),
        };
        self.guest(result).map(Some)
    }

    fn listen_to_future_get_or_set_result(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Resource<DynPollable>> {
        self.listen(future)
    }

    fn drop(&mut self, future: Resource<FutureGetOrSetResult>) -> Result<()> {
        self.table.delete(future)?;
        Ok(())
    }
}

impl cache::HostVacancy for WasiCacheCtxView<'_> {
    fn vacancy_fill(
        &mut self,
        vacancy: Resource<PendingVacancy>,
        ttl_ms: Option<u32>,
    ) -> Result<Resource<OutgoingValue>> {
        let value = self.table.get_mut(&vacancy)?.fill(ttl(ttl_ms));
        Ok(self.table.push(value)?)
    }

    fn drop(&mut self, vacancy: Resource<PendingVacancy>) -> Result<()> {
        // An unfilled vacancy is abandoned here: the backend hands it to a waiter.
        self.table.delete(vacancy)?;
        Ok(())
    }
}
