//! The pub/sub dispatcher task: connects, then runs three loops on the connection until it is
//! lost — the reader (fans messages out to the channel table), the writer (sends the batched
//! SUBSCRIBE/UNSUBSCRIBE commands the table asks for) and the pinger (a PING every op timeout) —
//! and reconnects with a short back-off, until the backend is dropped.
//!
//! The connection counts as lost when the server closes it, when a command fails for want of a
//! connection, or when a command or a PING gets no answer within the op timeout (a silently dead
//! path: found within about twice the op timeout). Every wait is bounded by the op timeout.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Notify;

use crate::counters::Counters;
use crate::errors::{is_connection_error, map_redis_error};
use crate::pubsub::{Event, Kind, Shared};

/// Most SUBSCRIBE/UNSUBSCRIBE commands in flight at once (each of up to `BATCH` channels).
const WINDOW: usize = 4;

/// Why a connection's loops stopped.
enum End {
    /// The backend was dropped: stop for good.
    Gone,
    /// The connection is lost (the reason is logged): reconnect.
    Lost(String),
}

/// The dispatcher: connect, serve the connection, and on losing it wake everyone and reconnect,
/// until the backend is dropped.
pub(crate) async fn dispatch(shared: Weak<Shared>, work: Arc<Notify>) {
    let mut first = true;
    loop {
        let Some((sink, stream, op_timeout)) = connect(&shared).await else {
            return;
        };
        {
            let Some(strong) = shared.upgrade() else {
                return;
            };
            if !first {
                Counters::bump(&strong.counters.reconnects);
            }
            let mut table = strong.table.lock();
            table.connected = true;
            table.queue_all();
            drop(table);
            strong.progressed();
            work.notify_one();
        }
        first = false;
        let end = tokio::select! {
            end = read(&shared, stream) => end,
            end = write(&shared, &work, sink.clone(), op_timeout) => end,
            end = ping(sink, op_timeout) => end,
        };
        let Some(strong) = shared.upgrade() else {
            return;
        };
        match end {
            End::Gone => return,
            End::Lost(why) => tracing::debug!("redis pub/sub connection lost: {why}"),
        }
        strong.table.lock().disconnected();
        strong.progressed();
        drop(strong);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects, retrying with back-off; `None` once the backend is gone.
async fn connect(shared: &Weak<Shared>) -> Option<(PubSubSink, PubSubStream, Duration)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let (client, op_timeout) = {
            let strong = shared.upgrade()?;
            (strong.client.clone(), strong.op_timeout)
        };
        match tokio::time::timeout(op_timeout, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => {
                let (sink, stream) = pubsub.split();
                return Some((sink, stream, op_timeout));
            }
            Ok(Err(e)) => tracing::debug!("redis pub/sub connect failed: {e}"),
            Err(_) => tracing::debug!("redis pub/sub connect timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Fans the connection's messages out until it closes or the backend is gone.
async fn read(shared: &Weak<Shared>, mut stream: PubSubStream) -> End {
    while let Some(msg) = stream.next().await {
        let Some(strong) = shared.upgrade() else {
            return End::Gone;
        };
        let payload = msg.get_payload_bytes();
        let event = match payload.split_first() {
            Some((b'v', value)) => Event::Value(Bytes::copy_from_slice(value)),
            _ => Event::Changed,
        };
        let Ok(channel) = msg.get_channel::<Vec<u8>>() else {
            continue;
        };
        if let Some(c) = strong.table.lock().channels.get(&channel) {
            c.events.send_replace(event);
        }
    }
    End::Lost("closed".into())
}

/// Sends the (un)subscriptions the table asks for, batched, up to [`WINDOW`] commands in flight,
/// each bounded by the op timeout.
async fn write(
    shared: &Weak<Shared>,
    work: &Notify,
    sink: PubSubSink,
    op_timeout: Duration,
) -> End {
    let mut in_flight = FuturesUnordered::new();
    let mut next = Kind::Subscribe;
    loop {
        // Launch what the table has, alternating kinds so neither starves the other.
        let mut idle_kinds = 0;
        while in_flight.len() < WINDOW && idle_kinds < 2 {
            let Some(strong) = shared.upgrade() else {
                return End::Gone;
            };
            let kind = next;
            next = match kind {
                Kind::Subscribe => Kind::Unsubscribe,
                Kind::Unsubscribe => Kind::Subscribe,
            };
            let batch = strong.table.lock().take(kind);
            if batch.is_empty() {
                idle_kinds += 1;
                continue;
            }
            idle_kinds = 0;
            Counters::bump(&strong.counters.round_trips);
            let mut sink = sink.clone();
            in_flight.push(async move {
                let command = async {
                    match kind {
                        Kind::Subscribe => sink.subscribe(&batch).await,
                        Kind::Unsubscribe => sink.unsubscribe(&batch).await,
                    }
                };
                let outcome = tokio::time::timeout(op_timeout, command).await;
                (kind, batch, outcome)
            });
        }
        tokio::select! {
            () = work.notified() => {}
            Some((kind, batch, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                let outcome = match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) if is_connection_error(&e) => return End::Lost(e.to_string()),
                    Ok(Err(e)) => {
                        tracing::debug!("redis refused {kind:?} of {} channels: {e}", batch.len());
                        Err(map_redis_error(&e))
                    }
                    Err(_) => return End::Lost(format!("no answer to {kind:?} within {op_timeout:?}")),
                };
                let Some(strong) = shared.upgrade() else {
                    return End::Gone;
                };
                strong.table.lock().settle(kind, &batch, outcome);
                strong.progressed();
            }
        }
    }
}

/// PINGs every op timeout; the connection is lost when a PING gets no answer within it.
async fn ping(mut sink: PubSubSink, op_timeout: Duration) -> End {
    loop {
        tokio::time::sleep(op_timeout).await;
        match tokio::time::timeout(op_timeout, sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_connection_error(&e) => return End::Lost(e.to_string()),
            Ok(Err(e)) => tracing::debug!("redis pub/sub PING refused: {e}"),
            Err(_) => return End::Lost(format!("no answer to PING within {op_timeout:?}")),
        }
    }
}
