//! Where a request runs: wasmtime-wasi-http's worker pool (`handler::ProxyHandler`, the one
//! `wasmtime serve` runs on), given the server's stores ([`Instances`]), its reuse settings and
//! limits ([`Worker`]), and when an instance ends ([`Expiration`]); and each request's handle on
//! the instance that serves it ([`RequestCtl`]).
//!
//! An instance serves up to `--max-instance-reuse-count` requests, up to
//! `--max-instance-concurrent-reuse-count` at once, and is dropped after
//! `--idle-instance-timeout` without one. It stops taking requests once one of its requests
//! ends abnormally (past `--request-timeout`, its client gone, its body stalled) and is dropped
//! as soon as no other request needs it: at once when it serves one request at a time. Every
//! request's time limit holds whatever the guest does: once the latest deadline of its
//! requests has passed, the instance is dropped. When it has no request left, the vacancies its
//! guest still holds are handed off ([`wasi_cache_host::Requests`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Sleep;
use wasi_cache_engine::Backend;
use wasi_cache_host::{MemoryMeter, Requests};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Result, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::limits;
use crate::options::CommonArgs;
use crate::options::reuse::Reuse;
use crate::shared::Shared;
use crate::store::{self, InstanceState};
use crate::wasi_ctx;

/// What the server makes instances of and how (the handler's state).
pub struct Instances {
    /// The component, linked, of either flavour.
    pub pre: ProxyPre<InstanceState>,
    /// The engine it is compiled for.
    pub engine: Engine,
    /// The cache every instance shares.
    pub backend: Arc<dyn Backend>,
    /// The cache options and per-instance limits.
    pub common: CommonArgs,
    /// The component's argv (its file's name).
    pub argv: Vec<String>,
    /// What the instances share: the outbound policy, the pool of writes in flight.
    pub shared: Shared,
    /// How many requests an instance serves, and for how long it waits for one.
    pub reuse: Reuse,
    /// `--request-timeout`, unless zero.
    pub time_limit: Option<Duration>,
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> Result<Instance<InstanceState, Expiration, Worker>> {
        let wasi = wasi_ctx::wasi_ctx(&self.common, &self.argv);
        let backend = self.backend.clone();
        let mut store = store::new_store_with(
            &self.engine,
            &self.common,
            backend,
            wasi,
            None,
            &self.shared,
        );
        // Each request has its own deadline, which [`Expiration`] enforces from outside the
        // store: the guest's code only has to yield to it.
        if self.time_limit.is_some() {
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
        }
        let deadline = limits::deadline(self.time_limit);
        let proxy = limits::within(deadline, self.pre.instantiate_async(&mut store))
            .await
            .unwrap_or_else(|| Err(limits::DeadlinePassed.into()))?;
        let flags = Arc::new(Flags::default());
        let cache = &store.data().cache.cache;
        let (requests, meter) = (cache.requests(), cache.memory_meter());
        Ok(Instance {
            store,
            proxy,
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiration {
                flags: flags.clone(),
                requests: requests.clone(),
                idle_timeout: self.reuse.idle_timeout,
                one_at_a_time: self.reuse.max_concurrent == 1,
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            },
            state: Worker {
                flags,
                requests,
                meter,
                reuse: self.reuse,
                common: self.common.clone(),
            },
        })
    }
}

/// What an instance's [`Worker`] and [`Expiration`] share, and the requests it serves see.
#[derive(Default)]
pub struct Flags {
    /// Set when one of its requests ended abnormally: it takes no more.
    doomed: AtomicBool,
    /// Responses of its requests whose bodies are still being sent.
    streaming: AtomicUsize,
    /// The latest deadline of the requests it took.
    deadline: Mutex<Option<Instant>>,
    /// Set once the worker has dropped the instance.
    ended: AtomicBool,
    /// Set when it trapped: why (one line).
    trapped: OnceLock<String>,
    /// Wakes [`Expiration`] when any of the above changes.
    waker: AtomicWaker,
}

impl Flags {
    /// One of its requests ended abnormally.
    fn doom(&self) {
        self.doomed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// A request's handle on the instance that serves it: created before it is queued, given its
/// instance when one takes it ([`WorkerState::on_request_start`]).
pub struct RequestCtl {
    /// When the request must be answered by.
    deadline: Option<Instant>,
    /// Set when the request is abandoned (its client gone, its body stalled, its time up).
    gone: AtomicBool,
    /// Wakes the request's expiration inside its instance when it is abandoned.
    notify: Notify,
    /// The instance serving it, once one took it.
    worker: OnceLock<Arc<Flags>>,
}

impl RequestCtl {
    /// A request to be answered by `deadline`.
    pub fn new(deadline: Option<Instant>) -> Arc<Self> {
        Arc::new(Self {
            deadline,
            gone: AtomicBool::new(false),
            notify: Notify::new(),
            worker: OnceLock::new(),
        })
    }

    /// Nobody waits for the request's answer any more: its instance ends it, and takes no other
    /// request. Returns whether an instance was still serving it.
    pub fn abandon(&self) -> bool {
        if self.gone.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.notify.notify_one();
        match self.worker.get() {
            Some(flags) if !flags.ended.load(Ordering::SeqCst) => {
                flags.doom();
                true
            }
            _ => false,
        }
    }

    /// Whether the request's deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Why the instance that served the request trapped, if it did.
    pub fn trapped(&self) -> Option<&str> {
        self.worker.get()?.trapped.get().map(String::as_str)
    }

    /// Counts the request's response as being sent until the returned guard is dropped: its
    /// instance, doomed, lives until then.
    pub fn streaming(self: &Arc<Self>) -> Streaming {
        if let Some(flags) = self.worker.get() {
            flags.streaming.fetch_add(1, Ordering::SeqCst);
        }
        Streaming(self.clone())
    }

    /// The instance `flags` took the request.
    fn attach(&self, flags: &Arc<Flags>) {
        let _ = self.worker.set(flags.clone());
        if let Some(deadline) = self.deadline {
            let mut latest = flags.deadline.lock();
            *latest = Some(latest.map_or(deadline, |latest| latest.max(deadline)));
        }
        // Abandoned while it waited for an instance: this one takes no other.
        if self.gone.load(Ordering::SeqCst) {
            flags.doom();
        }
    }

    /// Resolves when the request expires inside its instance: its deadline passed, or it was
    /// abandoned.
    async fn expired(&self) {
        let abandoned = async {
            let notified = self.notify.notified();
            if !self.gone.load(Ordering::SeqCst) {
                notified.await;
            }
        };
        match self.deadline {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.into()) => {}
                    () = abandoned => {}
                }
            }
            None => abandoned.await,
        }
    }
}

/// A response being sent, counted by its instance ([`RequestCtl::streaming`]).
pub struct Streaming(Arc<RequestCtl>);

impl Drop for Streaming {
    fn drop(&mut self) {
        if let Some(flags) = self.0.worker.get() {
            flags.streaming.fetch_sub(1, Ordering::SeqCst);
            flags.waker.wake();
        }
    }
}

/// One instance's worker: how many requests it takes, and what it tells the cache.
pub struct Worker {
    flags: Arc<Flags>,
    requests: Requests,
    meter: MemoryMeter,
    reuse: Reuse,
    common: CommonArgs,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = Arc<RequestCtl>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        // A guest that keeps more than half its memory budget between requests would leave the
        // next ones little: its instance is retired rather than reused.
        let hoarding = self.meter.used() > self.meter.limit() / 2;
        if total >= self.reuse.max_count || self.flags.doomed.load(Ordering::SeqCst) || hoarding {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        request: Arc<RequestCtl>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        self.requests.busy();
        request.attach(&self.flags);
        let flags = self.flags.clone();
        Box::pin(async move {
            request.expired().await;
            // Past its deadline or abandoned: the handler stops giving this instance requests.
            flags.doom();
        })
    }

    fn drop(&self, store: Store<InstanceState>, result: Result<()>) {
        self.flags.ended.store(true, Ordering::SeqCst);
        if let Err(err) = result {
            let why = limits::explain(&err, &store.data().cache, &self.common);
            tracing::debug!("an instance ended: {why}");
            let _ = self.flags.trapped.set(why);
        }
        // Dropped here, before the waker: its vacancies pass to waiters.
        drop(store);
        self.flags.waker.wake();
    }
}

/// When an instance ends: idle past `--idle-instance-timeout`; doomed with nothing left to
/// serve; or past the latest deadline of its requests, whatever its guest is doing (polled from
/// outside the store, so a guest computing without end cannot hold it).
pub struct Expiration {
    flags: Arc<Flags>,
    requests: Requests,
    idle_timeout: Duration,
    /// Whether it serves one request at a time.
    one_at_a_time: bool,
    sleep: Pin<Box<Sleep>>,
}

impl Expiration {
    /// Ready at `deadline`; wakes `cx` then.
    fn until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        this.flags.waker.register(cx.waker());
        let doomed = this.flags.doomed.load(Ordering::SeqCst);
        if status == WorkerStatus::Idle {
            // Every time: a request may have come and gone between two polls.
            let handed = this.requests.idle();
            if handed > 0 {
                tracing::debug!("{handed} vacancies held between requests handed off");
            }
            if doomed {
                return Poll::Ready(());
            }
            return this.until(start + this.idle_timeout, cx);
        }
        let streaming = this.flags.streaming.load(Ordering::SeqCst);
        // Serving one request at a time, a doomed instance serves nobody (its status may lag:
        // a guest that computes holds the store); serving several, it waits until the others
        // have their responses, sent whole.
        let alone = this.one_at_a_time || status == WorkerStatus::PostReturn;
        if doomed && streaming == 0 && alone {
            return Poll::Ready(());
        }
        let deadline = *this.flags.deadline.lock();
        match deadline {
            Some(deadline) => this.until(deadline, cx),
            None => Poll::Pending,
        }
    }
}
