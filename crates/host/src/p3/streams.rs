//! The `stream<u8>` faces of the shared bodies: the producer that sends an incoming value's
//! body to the guest, and the consumer that collects an outgoing value's body from it.

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use wasmtime::StoreContextMut;
use wasmtime::component::{
    Destination, Source, StreamConsumer, StreamProducer, StreamResult, VecBuffer,
};

use crate::value::{BodyBuffer, BodyReader};

/// Most bytes one read of a body hands a host-side reader (a guest reader gets what it asked).
const HOST_READ_CHUNK: usize = 64 << 10;

impl<D> StreamProducer<D> for BodyReader {
    type Item = u8;
    type Buffer = VecBuffer<u8>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        dst: Destination<'a, Self::Item, Self::Buffer>,
        _finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // The whole body is at hand: a read never waits, and a zero-length read (a readiness
        // check) is answered at once.
        if self.is_done() {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let mut dst = dst.as_direct(store, HOST_READ_CHUNK);
        let room = dst.remaining();
        let len = room.len();
        let chunk = self.next_chunk(len).unwrap_or_default();
        room[..chunk.len()].copy_from_slice(&chunk);
        dst.mark_written(chunk.len());
        Poll::Ready(Ok(if self.is_done() {
            StreamResult::Dropped
        } else {
            StreamResult::Completed
        }))
    }
}

/// The consumer of `outgoing-value-write-body-async`'s `stream<u8>`: a [`BodyBuffer`] that the
/// guest fills; when it drops its writable end, the body is complete.
pub(crate) struct BodyConsumer {
    body: BodyBuffer,
    /// Upgrades while the store (its cache context) exists: see [`Drop`] below.
    store: Weak<()>,
}

impl BodyConsumer {
    /// Consumes the guest's stream into `body`, for the store whose context gave `store`.
    pub(crate) fn new(body: BodyBuffer, store: Weak<()>) -> Self {
        Self { body, store }
    }
}

impl<D> StreamConsumer<D> for BodyConsumer {
    type Item = u8;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        store: StoreContextMut<D>,
        src: Source<Self::Item>,
        _finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if !self.body.is_open() {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        let mut src = src.as_direct(store);
        let bytes = src.remaining();
        let len = bytes.len();
        // Past the value limit or the budget the body fails: the guest's writes see the stream
        // dropped, its `set` the error.
        if self.body.append(bytes).is_err() {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        src.mark_read(len);
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

impl Drop for BodyConsumer {
    fn drop(&mut self) {
        // wasmtime 48 drops a consumer both when the guest drops its writable end and when the
        // store is torn down (a trap, an instance killed mid-body). The store's data, and so the
        // context holding `store`, goes first in the second case: then the body is abandoned,
        // as a WASI 0.2 body stream torn down with its store is (its `set` fails, its vacancy
        // goes to a waiter), never stored cut short.
        if self.store.upgrade().is_none() {
            return;
        }
        // The guest dropped its writable end: the body is complete. The fill (if any) runs on
        // the ambient runtime, like every backend call.
        if let Some(close) = self.body.close() {
            wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
                tokio::spawn(close);
            });
        }
    }
}
