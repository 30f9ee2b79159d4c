//! Host functions run guarded: a panic in one (there should be none) traps the guest that
//! called it instead of unwinding through the embedder. Both flavours' functions use it.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use wasmtime::Result;

use crate::error::panic_message;

/// Runs the host function `func`, turning a panic into a trap of this guest.
pub(crate) fn guarded<R>(func: &str, body: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(trap(func, &*payload)))
}

/// [`guarded`] for an async host function.
pub(crate) async fn guarded_async<R>(
    func: &str,
    body: impl Future<Output = Result<R>>,
) -> Result<R> {
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
