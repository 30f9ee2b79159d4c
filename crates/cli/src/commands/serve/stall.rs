//! How a stalled or vanished client loses its request slot, the same for both WASI flavours: a
//! request body that delivers nothing for `--body-read-timeout` while it is waited for
//! ([`TimedBody`]), a connection whose writes make no progress for `--response-write-timeout`
//! ([`TimedIo`]), and a request abandoned (its instance told to end it) when its response is
//! dropped before its end, which is what hyper does when the client goes away
//! ([`InstanceGuard`], [`GuardedBody`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Sleep, sleep};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::instances::{RequestCtl, Streaming};
use super::metrics::{Limit, Metrics};

/// A deadline armed when a wait begins and disarmed by progress.
#[derive(Default)]
struct Stall {
    /// The wait's end, while something is waited for.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set once the deadline passed (it is counted once).
    expired: bool,
}

impl Stall {
    /// Whether a wait that has lasted since the first of these calls without [`Stall::progress`]
    /// has passed `limit`; registers `cx` to be woken when it does.
    fn expired(&mut self, limit: Option<Duration>, cx: &mut Context<'_>) -> bool {
        let Some(limit) = limit else {
            return false;
        };
        if self.expired {
            return true;
        }
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(sleep(limit)));
        self.expired = deadline.as_mut().poll(cx).is_ready();
        self.expired
    }

    /// Something moved: the next wait starts afresh.
    fn progress(&mut self) {
        self.deadline = None;
    }
}

/// A request's body as the component reads it: one that delivers no frame for the body-read
/// timeout while it is waited for fails with `connection-read-timeout`, and tells the request's
/// instance to stop ([`TimedBody::stalled`]). Time the component spends not reading is not
/// the client's.
pub struct TimedBody {
    inner: Incoming,
    limit: Option<Duration>,
    stall: Stall,
    stalled: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl TimedBody {
    /// `inner`, failing after `limit` without a frame (none: never).
    pub fn new(inner: Incoming, limit: Option<Duration>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            limit,
            stall: Stall::default(),
            stalled: watch::Sender::new(false),
            metrics,
        }
    }

    /// Set when the body stalls past its limit: before the component can see the error, so a
    /// response it makes after that is known to come from a stalled request.
    pub fn stalled(&self) -> watch::Receiver<bool> {
        self.stalled.subscribe()
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.stall.expired {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall.progress();
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending if this.stall.expired(this.limit, cx) => {
                this.metrics.limited(Limit::BodyReadTimeout);
                this.stalled.send_replace(true);
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.stall.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket whose writes fail with `TimedOut` once they have made no progress for
/// the response-write timeout (the client stopped reading): hyper then closes the connection
/// and drops the response, which stops its instance. Reads pass through (hyper's header-read
/// timeout and [`TimedBody`] bound those); a write only waits while there is a response to send.
pub struct TimedIo<T> {
    inner: T,
    limit: Option<Duration>,
    stall: Stall,
    metrics: Arc<Metrics>,
}

impl<T> TimedIo<T> {
    /// `inner`, its writes failing after `limit` without progress (none: never).
    pub fn new(inner: T, limit: Option<Duration>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            limit,
            stall: Stall::default(),
            metrics,
        }
    }

    /// What a write, flush or shutdown that returned `poll` means with the limit applied; only
    /// a write that ended counts as progress (a socket's flush is ready at once, even full).
    fn timed<R>(
        &mut self,
        poll: Poll<io::Result<R>>,
        wrote: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            if wrote {
                self.stall.progress();
            }
            return poll;
        }
        let already = self.stall.expired;
        if !self.stall.expired(self.limit, cx) {
            return Poll::Pending;
        }
        if !already {
            self.metrics.limited(Limit::ResponseWriteTimeout);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took nothing of the response for --response-write-timeout",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.timed(poll, true, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.timed(poll, true, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.timed(poll, false, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.timed(poll, false, cx)
    }
}

/// Abandons a request ([`RequestCtl::abandon`]: the instance serving it ends it) when dropped
/// armed: the request's future, or its response's body before the end, dropped by hyper because
/// the connection ended. Holds the request's slots (its permit, its client's count) until then.
pub struct InstanceGuard {
    request: Option<Arc<RequestCtl>>,
    _slots: Box<dyn Send + Sync>,
    metrics: Arc<Metrics>,
}

impl InstanceGuard {
    /// Guards `request`, holding `slots` for as long as the guard lives.
    pub fn new(
        request: Arc<RequestCtl>,
        slots: impl Send + Sync + 'static,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            request: Some(request),
            _slots: Box::new(slots),
            metrics,
        }
    }

    /// Lets the request run on to its own end (or its time limit), and frees its slots.
    pub fn release(mut self) {
        self.request = None;
    }

    /// `response` with this guard in its body, until the body's end; released now when the
    /// response has no body to send (`HEAD`, 204, 304), since hyper drops it unread.
    pub fn attach(
        self,
        response: hyper::Response<HyperOutgoingBody>,
        head_only: bool,
    ) -> hyper::Response<HyperOutgoingBody> {
        let status = response.status();
        if head_only || status == hyper::StatusCode::NO_CONTENT || status.as_u16() == 304 {
            self.release();
            return response;
        }
        let streaming = self.request.as_ref().map(|request| request.streaming());
        response.map(|inner| {
            GuardedBody {
                inner,
                guard: Some(self),
                _streaming: streaming,
            }
            .boxed_unsync()
        })
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if let Some(request) = self.request.take()
            && request.abandon()
        {
            self.metrics.abandoned();
        }
    }
}

/// A response's body that stops its instance when dropped before its end ([`InstanceGuard`]).
struct GuardedBody {
    inner: HyperOutgoingBody,
    guard: Option<InstanceGuard>,
    /// Keeps the instance, doomed, alive until the body is sent or dropped.
    _streaming: Option<Streaming>,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() {
            // Sent whole: what the instance does next is its own business.
            if let Some(guard) = this.guard.take() {
                guard.release();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream()
            && let Some(guard) = self.guard.take()
        {
            guard.release();
        }
    }
}
