//! The WASI 0.3 host functions of `cache`, `types` and `wasi-keyvalue-error`: the shared
//! operations ([`crate::ops`]) behind `async get`s that wait for the backend call, and
//! `stream<u8>` bodies.

use wasmtime::Result;
use wasmtime::component::{Access, Accessor, Resource, StreamReader};

use super::bindings::wasi::keyvalue::{cache, types};
use super::streams::BodyConsumer;
use crate::ctx::{HasWasiCache, WasiCacheCtxView};
use crate::error::CacheError;
use crate::future::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, HostFuture,
};
use crate::guard::{guarded, guarded_async};
use crate::ops::{EntryResource, GuestResult};
use crate::value::{IncomingValue, OutgoingValue};

/// An `async get`: waits for the call behind `future` (unless a later `get` of it takes over),
/// then hands over its result with `deliver`.
async fn await_get<U, T: Send + 'static, R>(
    store: &Accessor<U, HasWasiCache>,
    future: &Resource<HostFuture<T>>,
    deliver: impl Fn(&mut WasiCacheCtxView<'_>, Result<T, CacheError>) -> GuestResult<R>,
) -> GuestResult<R> {
    let mut ticket = None;
    std::future::poll_fn(|cx| {
        store.with(|mut access| {
            let mut view = access.get();
            match view.table.get_mut(future)?.poll_take(cx, &mut ticket) {
                std::task::Poll::Ready(result) => {
                    std::task::Poll::Ready(deliver(&mut view, result))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
    })
    .await
}

impl types::HostOutgoingValue for WasiCacheCtxView<'_> {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        guarded("new-outgoing-value", || {
            WasiCacheCtxView::new_outgoing_value(self)
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

impl<U> types::HostOutgoingValueWithStore<U> for HasWasiCache {
    fn outgoing_value_write_body_async(
        mut store: Access<'_, U, Self>,
        value: Resource<OutgoingValue>,
        mut data: StreamReader<u8>,
    ) -> GuestResult<()> {
        guarded("outgoing-value-write-body-async", || {
            let view = store.get();
            let (limits, budget) = (view.ctx.limits, view.ctx.budget.clone());
            let store_token = view.ctx.store_token();
            let body = view.table.get_mut(&value)?.write_async(&limits, &budget);
            match body {
                Ok(body) => {
                    data.pipe(&mut store, BodyConsumer::new(body, store_token))?;
                    Ok(Ok(()))
                }
                Err(err) => {
                    data.close(&mut store)?;
                    store.get().guest(Err(err))
                }
            }
        })
    }
}

impl types::HostIncomingValue for WasiCacheCtxView<'_> {
    fn incoming_value_consume_sync(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> GuestResult<Vec<u8>> {
        guarded("incoming-value-consume-sync", || self.consume_sync(&value))
    }

    fn incoming_value_size(&mut self, value: Resource<IncomingValue>) -> GuestResult<u64> {
        guarded("incoming-value-size", || self.value_size(&value))
    }

    fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        guarded("incoming-value.drop", || self.delete(value))
    }
}

impl<U> types::HostIncomingValueWithStore<U> for HasWasiCache {
    fn incoming_value_consume_async(
        mut store: Access<'_, U, Self>,
        value: Resource<IncomingValue>,
    ) -> GuestResult<StreamReader<u8>> {
        guarded("incoming-value-consume-async", || {
            let reader = store.get().table.get(&value)?.reader();
            Ok(Ok(StreamReader::new(&mut store, reader)?))
        })
    }
}

impl cache::HostFutureGetResult for WasiCacheCtxView<'_> {
    fn drop(&mut self, future: Resource<FutureGetResult>) -> Result<()> {
        guarded("future-get-result.drop", || self.delete(future))
    }
}

impl<U> cache::HostFutureGetResultWithStore<U> for HasWasiCache {
    async fn get(
        store: &Accessor<U, Self>,
        future: Resource<FutureGetResult>,
    ) -> GuestResult<Option<Resource<IncomingValue>>> {
        guarded_async(
            "future-get-result.get",
            await_get(store, &future, |view: &mut WasiCacheCtxView<'_>, result| {
                view.get_result(result)
            }),
        )
        .await
    }
}

impl cache::HostFutureExistsResult for WasiCacheCtxView<'_> {
    fn drop(&mut self, future: Resource<FutureExistsResult>) -> Result<()> {
        guarded("future-exists-result.drop", || self.delete(future))
    }
}

impl<U> cache::HostFutureExistsResultWithStore<U> for HasWasiCache {
    async fn get(
        store: &Accessor<U, Self>,
        future: Resource<FutureExistsResult>,
    ) -> GuestResult<bool> {
        guarded_async(
            "future-exists-result.get",
            await_get(store, &future, |view: &mut WasiCacheCtxView<'_>, result| {
                view.guest(result)
            }),
        )
        .await
    }
}

impl cache::HostFutureResult for WasiCacheCtxView<'_> {
    fn drop(&mut self, future: Resource<FutureResult>) -> Result<()> {
        guarded("future-result.drop", || self.delete(future))
    }
}

impl<U> cache::HostFutureResultWithStore<U> for HasWasiCache {
    async fn get(store: &Accessor<U, Self>, future: Resource<FutureResult>) -> GuestResult<()> {
        guarded_async(
            "future-result.get",
            await_get(store, &future, |view: &mut WasiCacheCtxView<'_>, result| {
                view.guest(result)
            }),
        )
        .await
    }
}

impl cache::HostFutureGetOrSetResult for WasiCacheCtxView<'_> {
    fn drop(&mut self, future: Resource<FutureGetOrSetResult>) -> Result<()> {
        guarded("future-get-or-set-result.drop", || self.delete(future))
    }
}

impl<U> cache::HostFutureGetOrSetResultWithStore<U> for HasWasiCache {
    async fn get(
        store: &Accessor<U, Self>,
        future: Resource<FutureGetOrSetResult>,
    ) -> GuestResult<cache::GetOrSetEntry> {
        guarded_async(
            "future-get-or-set-result.get",
            await_get(store, &future, |view: &mut WasiCacheCtxView<'_>, result| {
                Ok(view.get_or_set_result(result)?.map(|entry| match entry {
                    EntryResource::Occupied(value) => cache::GetOrSetEntry::Occupied(value),
                    EntryResource::Vacant(vacancy) => cache::GetOrSetEntry::Vacant(vacancy),
                }))
            }),
        )
        .await
    }
}

crate::shared_impls::impl_shared_hosts!(super::bindings);
