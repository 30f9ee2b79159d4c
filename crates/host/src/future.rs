//! The future resources of `wasi:keyvalue/cache`: a backend call running on tokio, then its result.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::task::{JoinError, JoinHandle};
use wasi_cache_engine::GetOrSet;
use wasmtime_wasi::p2::Pollable;

use crate::error::CacheError;

/// The result of a `get`, once resolved.
pub type FutureGetResult = HostFuture<Option<Bytes>>;
/// The result of an `exists`, once resolved.
pub type FutureExistsResult = HostFuture<bool>;
/// The result of a `set` or `delete`, once resolved.
pub type FutureResult = HostFuture<()>;
/// The result of a `get-or-set`, once resolved.
pub type FutureGetOrSetResult = HostFuture<GetOrSet>;

/// One slot of an instance's live-future budget, released when the last holder drops it.
///
/// The future resource holds one reference and the running backend task another, so a
/// fire-and-forget `set` keeps counting until its write is done.
#[derive(Debug)]
pub(crate) struct LiveToken {
    live: Arc<AtomicUsize>,
}

impl LiveToken {
    /// Takes a slot from `live` unless `max` are taken already.
    pub(crate) fn acquire(live: &Arc<AtomicUsize>, max: usize) -> Option<Arc<Self>> {
        let mut current = live.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match live.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Arc::new(Self {
                        live: Arc::clone(live),
                    }));
                }
                Err(seen) => current = seen,
            }
        }
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

enum State<T> {
    /// The backend call is running.
    Pending(JoinHandle<Result<T, CacheError>>),
    /// The call is done and its result not yet taken.
    Ready(Result<T, CacheError>),
    /// The result was handed to the guest.
    Taken,
}

/// A future resource: the backend call of one cache operation and, once done, its result.
pub struct HostFuture<T: Send + 'static> {
    op: &'static str,
    state: State<T>,
    /// Whether dropping the resource while pending cancels the call (not for writes).
    abort_on_drop: bool,
    _live: Option<Arc<LiveToken>>,
}

impl<T: Send + 'static> HostFuture<T> {
    /// A future already resolved to `result`, with no backend call behind it.
    pub(crate) fn resolved(op: &'static str, result: Result<T, CacheError>) -> Self {
        Self {
            op,
            state: State::Ready(result),
            abort_on_drop: false,
            _live: None,
        }
    }

    /// Starts `call` on the ambient tokio runtime now; `token` is held until the call is done
    /// and the resource dropped.
    pub(crate) fn spawn<F>(
        op: &'static str,
        token: Arc<LiveToken>,
        abort_on_drop: bool,
        call: F,
    ) -> Self
    where
        F: Future<Output = Result<T, CacheError>> + Send + 'static,
    {
        let mut call = Box::pin(call);
        let task_token = Arc::clone(&token);
        let state = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
            // Most calls need no waiting (every memory-engine operation but a get-or-set that
            // joins a rendezvous): finish those here, so the guest finds the result ready on its
            // first `…-get` instead of blocking on a task that another thread must wake it for.
            // A call that is not ready goes on in its own task, polled from where it stopped.
            match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => State::Ready(result),
                Poll::Pending => State::Pending(tokio::task::spawn(async move {
                    let result = call.await;
                    drop(task_token);
                    result
                })),
            }
        });
        Self {
            op,
            state,
            abort_on_drop,
            _live: Some(token),
        }
    }

    fn joined(&self, joined: Result<Result<T, CacheError>, JoinError>) -> Result<T, CacheError> {
        joined.unwrap_or_else(|err| {
            let why = if err.is_panic() {
                "the backend call panicked"
            } else {
                "the backend call was cancelled"
            };
            Err(CacheError::op(self.op, why))
        })
    }

    /// Moves a finished call's result into the resource without waiting.
    fn poll_now(&mut self) {
        if let State::Pending(handle) = &mut self.state
            && handle.is_finished()
            && let Poll::Ready(joined) =
                Pin::new(handle).poll(&mut Context::from_waker(Waker::noop()))
        {
            self.state = State::Ready(self.joined(joined));
        }
    }

    /// `None` while pending; then the result once; then an error saying it was already taken.
    pub(crate) fn take(&mut self) -> Option<Result<T, CacheError>> {
        self.poll_now();
        match mem::replace(&mut self.state, State::Taken) {
            State::Pending(handle) => {
                self.state = State::Pending(handle);
                None
            }
            State::Ready(result) => Some(result),
            State::Taken => Some(Err(CacheError::new(format!(
                "{}: result already taken; a future's result can be read only once",
                self.op
            )))),
        }
    }

    /// Whether the result is ready (or already taken).
    pub fn is_ready(&mut self) -> bool {
        self.poll_now();
        !matches!(self.state, State::Pending(_))
    }
}

#[wasmtime_wasi::async_trait]
impl<T: Send + 'static> Pollable for HostFuture<T> {
    async fn ready(&mut self) {
        if let State::Pending(handle) = &mut self.state {
            let joined = handle.await;
            self.state = State::Ready(self.joined(joined));
        }
    }
}

impl<T: Send + 'static> Drop for HostFuture<T> {
    fn drop(&mut self) {
        if self.abort_on_drop
            && let State::Pending(handle) = &self.state
        {
            // Dropping the backend future leaves the rendezvous; the backend hands off.
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    #[tokio::test]
    async fn result_is_taken_once_then_reported_taken() {
        let live = live();
        let token = LiveToken::acquire(&live, 4).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut future =
            HostFuture::spawn("get", token, true, async move { Ok(rx.await.unwrap()) });
        assert!(future.take().is_none());
        tx.send(7).unwrap();
        future.ready().await;
        assert_eq!(future.take(), Some(Ok(7)));
        let again = future.take().unwrap().unwrap_err();
        assert!(again.trace().contains("result already taken"), "{again}");
        drop(future);
        tokio::task::yield_now().await;
        assert_eq!(live.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn live_tokens_are_capped_and_released() {
        let live = live();
        let a = LiveToken::acquire(&live, 2).unwrap();
        let b = LiveToken::acquire(&live, 2).unwrap();
        assert!(LiveToken::acquire(&live, 2).is_none());
        drop(a);
        assert!(LiveToken::acquire(&live, 2).is_some());
        drop(b);
        assert_eq!(live.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn detached_write_outlives_its_resource() {
        let live = live();
        let token = LiveToken::acquire(&live, 4).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let future = HostFuture::spawn("set", token, false, async move {
            rx.await.unwrap();
            done_tx.send(()).unwrap();
            Ok(())
        });
        drop(future);
        assert_eq!(
            live.load(Ordering::Acquire),
            1,
            "the running write still counts"
        );
        tx.send(()).unwrap();
        done_rx.await.unwrap();
        tokio::task::yield_now().await;
        let start = std::time::Instant::now();
        while live.load(Ordering::Acquire) != 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(5));
            tokio::task::yield_now().await;
        }
    }
}
