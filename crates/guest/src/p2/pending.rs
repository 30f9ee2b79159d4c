//! Waiting on the host's future resources: asynchronously on wstd's reactor, or blocking.

use wasip2::io::poll::Pollable;
use wstd::runtime::AsyncPollable;

use crate::bindings::wasi::keyvalue::cache::{
    FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, GetOrSetEntry,
};
use crate::bindings::wasi::keyvalue::types::IncomingValue;
use crate::bindings::wasi::keyvalue::wasi_keyvalue_error::Error as HostError;
use crate::error::{Error, Result};

/// A future resource of `wasi:keyvalue/cache`: a pollable, then a result taken once.
pub(crate) trait HostFuture {
    /// What the operation resolves to.
    type Output;
    /// A pollable ready once the result is (a child of the future: drop it first).
    fn subscribe(&self) -> Pollable;
    /// The result, or none while pending.
    fn take(&self) -> Option<Result<Self::Output, HostError>>;
}

/// Implements [`HostFuture`] for future resources by their generated `listen-to-…` and `…-get`.
macro_rules! host_future {
    ($($resource:ty => $output:ty, $listen:ident, $get:ident;)*) => {$(
        impl HostFuture for $resource {
            type Output = $output;
            fn subscribe(&self) -> Pollable {
                self.$listen()
            }
            fn take(&self) -> Option<Result<Self::Output, HostError>> {
                self.$get()
            }
        }
    )*};
}

host_future! {
    FutureGetResult => Option<IncomingValue>, listen_to_future_get_result, future_get_result_get;
    FutureExistsResult => bool, listen_to_future_exists_result, future_exists_result_get;
    FutureResult => (), listen_to_future_result, future_result_get;
    FutureGetOrSetResult => GetOrSetEntry, listen_to_future_get_or_set_result,
        future_get_or_set_result_get;
}

const NOT_READY: &str = "future not ready after its pollable was";

/// Awaits `future` on wstd's reactor (other tasks run meanwhile) and takes its result.
pub(crate) async fn wait<F: HostFuture>(future: F) -> Result<F::Output> {
    if let Some(result) = future.take() {
        return result.map_err(Error::host);
    }
    let pollable = AsyncPollable::new(future.subscribe());
    pollable.wait_for().await;
    drop(pollable); // the pollable is a child of the future: it goes first
    future
        .take()
        .ok_or(Error::Protocol(NOT_READY))?
        .map_err(Error::host)
}

/// Blocks the instance until `future` is ready and takes its result.
pub(crate) fn block<F: HostFuture>(future: F) -> Result<F::Output> {
    if let Some(result) = future.take() {
        return result.map_err(Error::host);
    }
    future.subscribe().block();
    future
        .take()
        .ok_or(Error::Protocol(NOT_READY))?
        .map_err(Error::host)
}
