//! The future resources of `wasi:keyvalue/cache`: a backend call running on tokio, then its result.

use std::any::Any;
use std::future::Future;
use std::mem;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

use crate::budget::Held;
use crate::error::{CacheError, panic_message};
use crate::value::{Entry, IncomingValue};

/// The result of a `get`, once resolved.
pub type FutureGetResult = HostFuture<Option<IncomingValue>>;
/// The result of an `exists`, once resolved.
pub type FutureExistsResult = HostFuture<bool>;
/// The result of a `set` or `delete`, once resolved.
pub type FutureResult = HostFuture<()>;
/// The result of a `get-or-set`, once resolved.
pub type FutureGetOrSetResult = HostFuture<Entry>;

/// One slot of an instance's live-future budget, with its call's key charged to the instance's
/// memory budget, released when the last holder drops it.
///
/// The future resource holds one reference and the running backend task another, so a
/// fire-and-forget `set` keeps counting until its write is done.
#[derive(Debug)]
pub(crate) struct LiveToken {
    live: Arc<AtomicUsize>,
    /// The call's key, charged to the instance's budget.
    _held: Option<Held>,
}

impl LiveToken {
    /// Takes a slot from `live` unless `max` are taken already; the token holds `held`.
    pub(crate) fn acquire(
        live: &Arc<AtomicUsize>,
        max: usize,
        held: Option<Held>,
    ) -> Option<Arc<Self>> {
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
                        _held: held,
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

/// A backend call as a boxed future, its panics already turned into errors.
type Call<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send>>;

/// A running call, shared by the future resource and the task that drives it.
///
/// Both sides may poll the call (under the lock, with the task's waker, so the task is still
/// woken by the backend): the task, whenever the backend wakes it; the guest, whenever it asks
/// for the result (`…-get`) or whether it is there (`pollable.ready`). A guest that busy-polls
/// thus sees a finished call at once, even when the task cannot run: tokio's cooperative budget
/// of the guest's own task is never refilled while it spins (so the guest's polls are
/// unconstrained), and a task woken on the guest's worker waits in that worker's LIFO slot, which
/// no other worker may steal, until the guest yields.
struct Shared<T> {
    /// The backend call, until it finishes (or is dropped with the resource).
    call: Option<Call<T>>,
    /// Its result, once finished, until the resource takes it.
    result: Option<Result<T, CacheError>>,
    /// The driving task's waker, once it first polled.
    task: Option<Waker>,
    /// Who waits in `pollable.ready` / `block`.
    reader: Option<Waker>,
    /// The call's share of the live-future slot (and its key's charge): held until the call is
    /// done, whoever finishes it, so a dropped write keeps counting while it runs.
    token: Option<Arc<LiveToken>>,
}

impl<T> Shared<T> {
    /// Polls the call once with `waker` (outside tokio's cooperative budget) unless it is done;
    /// when this poll finishes it, returns the wakers to wake (the reader's and the task's).
    fn drive(&mut self, waker: &Waker) -> [Option<Waker>; 2] {
        let Some(call) = self.call.as_mut() else {
            return [None, None];
        };
        let polled =
            tokio::task::unconstrained(call.as_mut()).poll_unpin(&mut Context::from_waker(waker));
        let Poll::Ready(result) = polled else {
            return [None, None];
        };
        self.call = None;
        self.token = None;
        self.result = Some(result);
        [self.reader.take(), self.task.take()]
    }

    /// [`Shared::drive`] on the guest's side, with the task's waker.
    fn drive_for_guest(&mut self) -> [Option<Waker>; 2] {
        let waker = self.task.clone().unwrap_or_else(|| Waker::noop().clone());
        self.drive(&waker)
    }
}

fn wake(wakers: [Option<Waker>; 2]) {
    wakers.into_iter().flatten().for_each(Waker::wake);
}

enum State<T> {
    /// The backend call is running, driven by its own task.
    Running {
        shared: Arc<Mutex<Shared<T>>>,
        task: AbortHandle,
    },
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
    /// The ticket of the latest WASI 0.3 `get`: only it waits for the result. A `get` that
    /// comes while another waits takes over (the earlier one, perhaps cancelled by the guest,
    /// gets an error): one waker per future, whatever the guest does.
    reader_ticket: u64,
}

/// The error a backend call that panicked resolves to (there should be none).
fn panicked(op: &str, payload: &(dyn Any + Send)) -> CacheError {
    CacheError::op(
        op,
        format!("the backend call panicked: {}", panic_message(payload)),
    )
}

impl<T: Send + 'static> HostFuture<T> {
    /// A future already resolved to `result`, with no backend call behind it.
    pub(crate) fn resolved(op: &'static str, result: Result<T, CacheError>) -> Self {
        Self {
            op,
            state: State::Ready(result),
            abort_on_drop: false,
            _live: None,
            reader_ticket: 0,
        }
    }

    /// Starts `call` now, on the ambient tokio runtime; `token` is held until the call is done
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
        let call: Call<T> = Box::pin(async move {
            AssertUnwindSafe(call)
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(panicked(op, &*payload)))
        });
        let mut shared = Shared {
            call: Some(call),
            result: None,
            task: None,
            reader: None,
            token: Some(Arc::clone(&token)),
        };
        let state = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
            // Most calls need no waiting (every memory-engine operation but a get-or-set that
            // joins a rendezvous): finish those here, so the guest finds the result ready on its
            // first `…-get` instead of blocking on a task that another thread must wake it for.
            shared.drive(Waker::noop());
            if let Some(result) = shared.result.take() {
                return State::Ready(result);
            }
            // A call that is not ready goes on in its own task, from where it stopped.
            let shared = Arc::new(Mutex::new(shared));
            let task_shared = Arc::clone(&shared);
            let task = tokio::task::spawn(async move {
                std::future::poll_fn(|cx| {
                    let mut shared = task_shared.lock();
                    if shared.call.is_none() {
                        // Finished by the guest's polls, or dropped with the resource.
                        return Poll::Ready(());
                    }
                    if !shared
                        .task
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        shared.task = Some(cx.waker().clone());
                    }
                    let [reader, _own] = shared.drive(cx.waker());
                    let done = shared.call.is_none();
                    drop(shared);
                    if let Some(reader) = reader {
                        reader.wake();
                    }
                    if done { Poll::Ready(()) } else { Poll::Pending }
                })
                .await;
            });
            State::Running {
                shared,
                task: task.abort_handle(),
            }
        });
        Self {
            op,
            state,
            abort_on_drop,
            _live: Some(token),
            reader_ticket: 0,
        }
    }

    /// Moves a finished call's result into the resource without waiting, polling the call once
    /// if it is still running.
    fn poll_now(&mut self) {
        let finished = match &self.state {
            State::Running { shared, .. } => {
                let mut shared = shared.lock();
                let wakers = shared.drive_for_guest();
                let result = shared.result.take();
                drop(shared);
                wake(wakers);
                result
            }
            _ => None,
        };
        if let Some(result) = finished {
            self.state = State::Ready(result);
        }
    }

    /// `None` while pending; then the result once; then an error saying it was already taken.
    pub(crate) fn take(&mut self) -> Option<Result<T, CacheError>> {
        self.poll_now();
        match mem::replace(&mut self.state, State::Taken) {
            running @ State::Running { .. } => {
                self.state = running;
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
        !matches!(self.state, State::Running { .. })
    }

    /// Ready once the result is (a `wasi:io` pollable's `ready`, a WASI 0.3 `get`'s wait):
    /// polls the call itself, outside tokio's cooperative budget, and otherwise registers
    /// `cx` to be woken when the call's task finishes it.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let State::Running { shared, .. } = &self.state else {
            return Poll::Ready(());
        };
        let mut shared = shared.lock();
        let wakers = shared.drive_for_guest();
        let ready = shared.result.is_some();
        if !ready {
            shared.reader = Some(cx.waker().clone());
        }
        drop(shared);
        wake(wakers);
        if ready {
            self.poll_now();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// A WASI 0.3 `get`, `ticket` being its own (`None` on its first poll): the result once
    /// ready; then an error saying it was already taken; an error once a later `get` took over.
    pub(crate) fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        ticket: &mut Option<u64>,
    ) -> Poll<Result<T, CacheError>> {
        match *ticket {
            None => {
                self.reader_ticket += 1;
                *ticket = Some(self.reader_ticket);
                // The get it takes over from returns (with an error) rather than wait forever.
                if let State::Running { shared, .. } = &self.state {
                    let earlier = shared.lock().reader.take();
                    earlier.into_iter().for_each(Waker::wake);
                }
            }
            Some(mine) if mine != self.reader_ticket => {
                return Poll::Ready(Err(CacheError::new(format!(
                    "{}: another get of this future took over while this one waited; a \
                     future's result is read by one get",
                    self.op
                ))));
            }
            Some(_) => {}
        }
        match self.poll_ready(cx) {
            Poll::Ready(()) => Poll::Ready(
                self.take()
                    .unwrap_or_else(|| Err(CacheError::new(format!("{}: no result", self.op)))),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Send + 'static> Drop for HostFuture<T> {
    fn drop(&mut self) {
        if self.abort_on_drop
            && let State::Running { shared, task } = &self.state
        {
            // Dropping the backend future leaves the rendezvous; the backend hands off.
            task.abort();
            let (call, token) = {
                let mut shared = shared.lock();
                (shared.call.take(), shared.token.take())
            };
            wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| drop((call, token)));
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime_wasi::p2::Pollable;

    use super::*;

    fn live() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    fn runtime(workers: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Waits until every live slot of `live` is released.
    async fn all_released(live: &AtomicUsize) {
        let start = std::time::Instant::now();
        while live.load(Ordering::Acquire) != 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(5));
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn result_is_taken_once_then_reported_taken() {
        let live = live();
        let token = LiveToken::acquire(&live, 4, None).unwrap();
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
        let a = LiveToken::acquire(&live, 2, None).unwrap();
        let b = LiveToken::acquire(&live, 2, None).unwrap();
        assert!(LiveToken::acquire(&live, 2, None).is_none());
        drop(a);
        assert!(LiveToken::acquire(&live, 2, None).is_some());
        drop(b);
        assert_eq!(live.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn detached_write_outlives_its_resource() {
        let live = live();
        let token = LiveToken::acquire(&live, 4, None).unwrap();
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
        all_released(&live).await;
    }

    /// Starts 300 calls that wait for one signal, gives it, then reads each result by spinning
    /// on `take` without ever yielding, as a guest that busy-polls `…-get` does.
    async fn busy_poll_300() {
        let live = live();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut futures: Vec<_> = (0..300)
            .map(|i| {
                let mut rx = rx.clone();
                let token = LiveToken::acquire(&live, 1000, None).unwrap();
                HostFuture::spawn("get-or-set", token, true, async move {
                    let _ = rx.wait_for(|go| *go).await;
                    Ok(i)
                })
            })
            .collect();
        tx.send_replace(true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for (i, future) in futures.iter_mut().enumerate() {
            let result = loop {
                if let Some(result) = future.take() {
                    break result;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "result {i} never became visible to a busy-polling guest"
                );
                std::thread::yield_now();
            };
            assert_eq!(result, Ok(i));
        }
    }

    /// A guest that never yields never gets tokio's cooperative budget back (128 polls a
    /// tick), and the tasks it wakes wait in its worker's LIFO slot: every result must show up
    /// all the same, whether the guest runs on `block_on` (as `wasi-cache run` does) or on a
    /// worker (as a server's instances do).
    #[test]
    fn busy_polling_sees_every_result_without_yielding() {
        let runtime = runtime(2);
        runtime.block_on(busy_poll_300());
        runtime.block_on(runtime.spawn(busy_poll_300())).unwrap();
    }

    /// A write whose resource was dropped still finishes on its task, even after the guest's
    /// own polls drove it with the task's waker.
    #[test]
    fn dropped_write_finishes_after_guest_polls() {
        let runtime = runtime(1);
        runtime.block_on(async {
            let live = live();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let mut future = HostFuture::spawn(
                "set",
                LiveToken::acquire(&live, 4, None).unwrap(),
                false,
                async move {
                    rx.await.unwrap();
                    done_tx.send(()).unwrap();
                    Ok(())
                },
            );
            tokio::task::yield_now().await;
            assert!(future.take().is_none());
            drop(future);
            tx.send(()).unwrap();
            done_rx.await.unwrap();
            all_released(&live).await;
        });
    }

    #[test]
    fn a_panicking_call_resolves_to_an_error() {
        let runtime = runtime(1);
        runtime.block_on(async {
            let live = live();
            let inline = HostFuture::<u32>::spawn(
                "get",
                LiveToken::acquire(&live, 4, None).unwrap(),
                true,
                async { panic!("inline boom") },
            );
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let mut later = HostFuture::<u32>::spawn(
                "exists",
                LiveToken::acquire(&live, 4, None).unwrap(),
                true,
                async move {
                    let _ = rx.await;
                    panic!("later boom")
                },
            );
            let mut inline = inline;
            let err = inline.take().unwrap().unwrap_err();
            assert_eq!(err.trace(), "get: the backend call panicked: inline boom");
            tx.send(()).unwrap();
            later.ready().await;
            let err = later.take().unwrap().unwrap_err();
            assert_eq!(err.trace(), "exists: the backend call panicked: later boom");
        });
    }
}
