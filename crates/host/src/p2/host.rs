//! The WASI 0.2 host functions of `cache`, `types` and `wasi-keyvalue-error`: the shared
//! operations ([`crate::ops`]) behind `…-get` functions that poll and `wasi:io` pollables and
//! streams.

use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable};

use super::bindings::wasi::keyvalue::{cache, types};
use crate::ctx::WasiCacheCtxView;
use crate::error::CacheError;
use crate::future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
use crate::guard::{guarded, guarded_async};
use crate::ops::{EntryResource, GuestResult};
use crate::value::{IncomingValue, OutgoingValue};

impl WasiCacheCtxView<'_> {
    /// A `…-get`: `None` while the call is pending, then its result once.
    fn poll_get<T: Send + 'static, R>(
        &mut self,
        future: &Resource<HostFuture<T>>,
        deliver: impl FnOnce(&mut Self, Result<T, CacheError>) -> GuestResult<R>,
    ) -> Result<Option<Result<R, Resource<CacheError>>>> {
        match self.table.get_mut(future)?.take() {
            Some(result) => deliver(self, result).map(Some),
            None => Ok(None),
        }
    }

    fn listen<T: Send + 'static>(
        &mut self,
        future: Resource<HostFuture<T>>,
    ) -> Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.table, future)
    }
}

impl types::HostOutgoingValue for WasiCacheCtxView<'_> {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        guarded("new-outgoing-value", || {
            WasiCacheCtxView::new_outgoing_value(self)
        })
    }

    fn outgoing_value_write_body_async(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> GuestResult<Resource<DynOutputStream>> {
        guarded("outgoing-value-write-body-async", || {
            let (limits, budget) = (self.ctx.limits, &self.ctx.budget);
            let body = self.table.get_mut(&value)?.write_async(&limits, budget);
            match body {
                Ok(body) => {
                    let stream: DynOutputStream = Box::new(super::streams::BodyWriter::new(body));
                    Ok(Ok(self.table.push(stream)?))
                }
                Err(err) => self.guest(Err(err)),
            }
        })
    }

    async fn outgoing_value_write_body_sync(
        &mut self,
        value: Resource<OutgoingValue>,
        body: Vec<u8>,
    ) -> GuestResult<()> {
        guarded_async(
            "outgoing-value-write-body-sync",
            self.write_body_sync(&value, body),
        )
        .await
    }

    fn drop(&mut self, value: Resource<OutgoingValue>) -> Result<()> {
        guarded("outgoing-value.drop", || self.delete(value))
    }
}

impl types::HostIncomingValue for WasiCacheCtxView<'_> {
    fn incoming_value_consume_sync(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Vec<u8>> {
        guarded("incoming-value-consume-sync", || self.consume_sync(&value))
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
        guarded("incoming-value-size", || self.value_size(&value))
    }

    fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        guarded("incoming-value.drop", || self.delete(value))
    }
}

impl cache::HostFutureGetResult for WasiCacheCtxView<'_> {
    fn future_get_result_get(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Option<Result<Option<Resource<IncomingValue>>, Resource<CacheError>>>> {
        guarded("future-get-result-get", || {
            self.poll_get(&future, Self::get_result)
        })
    }

    fn listen_to_future_get_result(
        &mut self,
        future: Resource<FutureGetResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-get-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureGetResult>) -> Result<()> {
        guarded("future-get-result.drop", || self.delete(future))
    }
}

impl cache::HostFutureExistsResult for WasiCacheCtxView<'_> {
    fn future_exists_result_get(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Option<Result<bool, Resource<CacheError>>>> {
        guarded("future-exists-result-get", || {
            self.poll_get(&future, Self::guest)
        })
    }

    fn listen_to_future_exists_result(
        &mut self,
        future: Resource<FutureExistsResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-exists-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureExistsResult>) -> Result<()> {
        guarded("future-exists-result.drop", || self.delete(future))
    }
}

impl cache::HostFutureResult for WasiCacheCtxView<'_> {
    fn future_result_get(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Option<Result<(), Resource<CacheError>>>> {
        guarded("future-result-get", || self.poll_get(&future, Self::guest))
    }

    fn listen_to_future_result(
        &mut self,
        future: Resource<FutureResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureResult>) -> Result<()> {
        guarded("future-result.drop", || self.delete(future))
    }
}

impl cache::HostFutureGetOrSetResult for WasiCacheCtxView<'_> {
    fn future_get_or_set_result_get(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Option<Result<cache::GetOrSetEntry, Resource<CacheError>>>> {
        guarded("future-get-or-set-result-get", || {
            self.poll_get(&future, |view, result| {
                Ok(view.get_or_set_result(result)?.map(|entry| match entry {
                    EntryResource::Occupied(value) => cache::GetOrSetEntry::Occupied(value),
                    EntryResource::Vacant(vacancy) => cache::GetOrSetEntry::Vacant(vacancy),
                }))
            })
        })
    }

    fn listen_to_future_get_or_set_result(
        &mut self,
        future: Resource<FutureGetOrSetResult>,
    ) -> Result<Resource<DynPollable>> {
        guarded("listen-to-future-get-or-set-result", || self.listen(future))
    }

    fn drop(&mut self, future: Resource<FutureGetOrSetResult>) -> Result<()> {
        guarded("future-get-or-set-result.drop", || self.delete(future))
    }
}

crate::shared_impls::impl_shared_hosts!(super::bindings);
