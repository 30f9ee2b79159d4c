//! Waiting on the host's future resources: each has one `get: async func()`, awaited on
//! wit-bindgen's async support, or blocking the instance in `wit_bindgen::block_on`.

use std::future::Future;

use crate::bindings::wasi::keyvalue::cache::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, GetOrSetEntry,
};
use crate::bindings::wasi::keyvalue::types::IncomingValue;
use crate::bindings::wasi::keyvalue::wasi_keyvalue_error::Error as HostError;
use crate::error::{Error, Result};

/// A future resource of `wasi:keyvalue/cache`: its result, taken by its async `get`.
pub(crate) trait HostFuture {
    /// What the operation resolves to.
    type Output;
    /// The resource's `get`: resolves once the host has the result.
    fn result(&self) -> impl Future<Output = Result<Self::Output, HostError>> + '_;
}

/// Implements [`HostFuture`] for future resources by their generated `get`.
macro_rules! host_future {
    ($($resource:ty => $output:ty),* $(,)?) => {$(
        impl HostFuture for $resource {
            type Output = $output;
            fn result(&self) -> impl Future<Output = Result<Self::Output, HostError>> + '_ {
                self.get()
            }
        }
    )*};
}

host_future! {
    FutureGetResult => Option<IncomingValue>,
    FutureExistsResult => bool,
    FutureResult => (),
    FutureGetOrSetResult => GetOrSetEntry,
}

/// Awaits `future`'s result (other tasks of the instance run meanwhile).
pub(crate) async fn wait<F: HostFuture>(future: F) -> Result<F::Output> {
    future.result().await.map_err(Error::host)
}

/// Blocks the instance until `future`'s result is there.
///
/// Only outside an async task: `wit_bindgen::block_on` waits on a waitable set of its own.
pub(crate) fn block<F: HostFuture>(future: F) -> Result<F::Output> {
    wit_bindgen::block_on(wait(future))
}
