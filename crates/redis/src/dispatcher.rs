//! The pub/sub dispatcher task: connects, then runs three loops on the connection until it is
//! lost — the reader (fans messages out to the channel table), the writer (sends the batched
//! SUBSCRIBE/UNSUBSCRIBE commands the table asks for) and the pinger (a PING every op timeout) —
//! and reconnects with a short back-off, until the backend is dropped.
//!
//! The connection counts as lost when the server closes it, when a command fails for want of a
//! connection, or when a command or a PING gets no answer within the op timeout (a silently dead
//! path: found within about twice the op timeout). Every wait is bounded by the op timeout.
//!
//! On a cluster ([`dispatch_cluster`]) the same three loops run on a cluster connection, which is
//! never lost as a whole: a command that cannot reach its node is retried after a pause, the
//! reader turns redis-rs's push messages into events (a node connection replaced: every channel
//! subscribed again; a channel dropped by its node: that one again; a (re-)subscription
//! confirmed: its waiters re-check), and the PING of every master makes redis-rs notice a
//! failover and move the subscriptions to the promoted replica even when nothing else is sent.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RetryMethod};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cluster::{Topology, by_slot, ping_masters};
use crate::counters::Counters;
use crate::errors::{cluster_error, is_connection_error, map_redis_error};
use crate::pubsub::{Event, Kind, Outcome, Shared, Target};

/// How long a cluster (un)subscribe waits before trying a node it could not reach again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

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
            end = write(&shared, &work, Sink::Server(sink.clone()), op_timeout) => end,
            end = ping(Sink::Server(sink), op_timeout) => end,
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
            let Target::Server(client) = &strong.target else {
                return None;
            };
            (client.clone(), strong.op_timeout)
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
        let Ok(channel) = msg.get_channel::<Vec<u8>>() else {
            continue;
        };
        post(&strong, &channel, msg.get_payload_bytes());
    }
    End::Lost("closed".into())
}

/// Posts a message published on `channel` to its local subscribers.
fn post(shared: &Shared, channel: &[u8], payload: &[u8]) {
    let event = match payload.split_first() {
        Some((b'v', value)) => Event::Value(Bytes::copy_from_slice(value)),
        _ => Event::Changed,
    };
    if let Some(c) = shared.table.lock().channels.get(channel) {
        c.events.send_replace(event);
    }
}

/// The dispatcher of a cluster: the cluster connection is always "up" (each node's connection is
/// repaired by redis-rs), so the loops run until the backend is dropped.
pub(crate) async fn dispatch_cluster(
    shared: Weak<Shared>,
    work: Arc<Notify>,
    pushes: UnboundedReceiver<PushInfo>,
) {
    let (conn, op_timeout) = {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let Target::Cluster(conn) = &strong.target else {
            return;
        };
        strong.table.lock().connected = true;
        strong.progressed();
        (conn.clone(), strong.op_timeout)
    };
    let end = tokio::select! {
        end = read_pushes(&shared, pushes) => end,
        end = write(&shared, &work, Sink::Cluster(conn.clone()), op_timeout) => end,
        end = ping(Sink::Cluster(conn), op_timeout) => end,
    };
    if let End::Lost(why) = end {
        tracing::warn!("redis cluster pub/sub stopped: {why}");
    }
}

/// Turns a cluster connection's push messages into events until the backend is gone.
async fn read_pushes(shared: &Weak<Shared>, mut pushes: UnboundedReceiver<PushInfo>) -> End {
    while let Some(push) = pushes.recv().await {
        let Some(strong) = shared.upgrade() else {
            return End::Gone;
        };
        let channel = match push.data.first() {
            Some(redis::Value::BulkString(name)) => Some(name.as_slice()),
            _ => None,
        };
        match (push.kind, channel) {
            (PushKind::SMessage | PushKind::Message, Some(channel)) => {
                if let Some(redis::Value::BulkString(payload)) = push.data.get(1) {
                    post(&strong, channel, payload);
                }
            }
            // A node's connection was replaced: whatever it served may have been missed, and
            // it is known only that some node went, so every channel is subscribed again.
            (PushKind::Disconnection, _) => {
                strong.table.lock().resubscribe(None);
                strong.work.notify_one();
            }
            // redis-rs re-subscribed it on a new connection or node: messages published in
            // between are unseen, so the waiters re-check.
            (PushKind::SSubscribe, Some(channel)) => {
                if let Some(c) = strong.table.lock().channels.get(channel) {
                    c.events.send_replace(Event::Changed);
                }
            }
            // A node drops a shard channel whose slot it no longer serves (moved, demoted); one
            // the table did not ask to drop is subscribed again where it lives now.
            (PushKind::SUnsubscribe, Some(channel)) => {
                let mut table = strong.table.lock();
                let ours = table.channels.get(channel).is_some_and(|c| {
                    !matches!(c.status, crate::pubsub::Status::Unsubscribing) && c.refs > 0
                });
                if ours {
                    table.resubscribe(Some(channel));
                    drop(table);
                    strong.work.notify_one();
                }
            }
            _ => {}
        }
    }
    End::Lost("the cluster connection's push channel closed".into())
}

/// Where (un)subscribe commands and PINGs go.
#[derive(Clone)]
enum Sink {
    /// One server's pub/sub connection.
    Server(PubSubSink),
    /// A cluster connection (sharded pub/sub).
    Cluster(ClusterConnection),
}

/// How a command went, as the writer acts on it.
enum Sent {
    /// The server answered.
    Answered(Outcome),
    /// The connection is lost (one server only): reconnect.
    Lost(String),
}

impl Sink {
    /// Sends `kind` for `batch` (one command per slot on a cluster), each command bounded by
    /// `op_timeout`; the answers come back with the channels they cover.
    async fn send(
        self,
        kind: Kind,
        batch: Vec<Vec<u8>>,
        op_timeout: Duration,
    ) -> Vec<(Vec<Vec<u8>>, Sent)> {
        match self {
            Self::Server(mut sink) => {
                let command = async {
                    match kind {
                        Kind::Subscribe => sink.subscribe(&batch).await,
                        Kind::Unsubscribe => sink.unsubscribe(&batch).await,
                    }
                };
                let sent = match tokio::time::timeout(op_timeout, command).await {
                    Ok(Ok(())) => Sent::Answered(Outcome::Done),
                    Ok(Err(e)) if is_connection_error(&e) => Sent::Lost(e.to_string()),
                    Ok(Err(e)) => {
                        tracing::debug!("redis refused {kind:?} of {} channels: {e}", batch.len());
                        Sent::Answered(Outcome::Refused(map_redis_error(&e)))
                    }
                    Err(_) => Sent::Lost(format!("no answer to {kind:?} within {op_timeout:?}")),
                };
                vec![(batch, sent)]
            }
            Self::Cluster(conn) => {
                let commands = by_slot(batch).into_iter().map(|group| {
                    let mut conn = conn.clone();
                    async move {
                        let command = async {
                            match kind {
                                Kind::Subscribe => conn.ssubscribe(&group).await,
                                Kind::Unsubscribe => conn.sunsubscribe(&group).await,
                            }
                        };
                        let outcome = match tokio::time::timeout(op_timeout, command).await {
                            Ok(Ok(())) => Outcome::Done,
                            Ok(Err(e)) if matches!(e.retry_method(), RetryMethod::NoRetry) => {
                                tracing::debug!("redis cluster refused {kind:?}: {e}");
                                Outcome::Refused(cluster_error(&e))
                            }
                            Ok(Err(e)) => Outcome::Retry(cluster_error(&e)),
                            Err(_) => Outcome::Retry(crate::errors::cluster_timeout(op_timeout)),
                        };
                        (group, Sent::Answered(outcome))
                    }
                });
                futures::future::join_all(commands).await
            }
        }
    }

    /// PINGs the connection: the server, or every master of the cluster.
    async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Self::Server(sink) => sink.ping::<redis::Value>().await.map(drop),
            Self::Cluster(conn) => ping_masters(conn).await,
        }
    }
}

/// Sends the (un)subscriptions the table asks for, batched, up to [`WINDOW`] commands in flight,
/// each bounded by the op timeout; channels whose node could not be reached are sent again
/// after [`RETRY_PAUSE`].
async fn write(shared: &Weak<Shared>, work: &Notify, sink: Sink, op_timeout: Duration) -> End {
    let mut in_flight = FuturesUnordered::new();
    let mut pauses = FuturesUnordered::new();
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
            let sink = sink.clone();
            in_flight.push(async move { (kind, sink.send(kind, batch, op_timeout).await) });
        }
        tokio::select! {
            () = work.notified() => {}
            Some(batch) = pauses.next(), if !pauses.is_empty() => {
                let batch: Vec<Vec<u8>> = batch;
                let Some(strong) = shared.upgrade() else {
                    return End::Gone;
                };
                strong.table.lock().retry(&batch);
            }
            Some((kind, answers)) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(strong) = shared.upgrade() else {
                    return End::Gone;
                };
                for (batch, sent) in answers {
                    let outcome = match sent {
                        Sent::Answered(outcome) => outcome,
                        Sent::Lost(why) => return End::Lost(why),
                    };
                    strong.table.lock().settle(kind, &batch, &outcome);
                    if let Outcome::Retry(e) = &outcome {
                        tracing::debug!("redis cluster {kind:?} of {} channels: {e}", batch.len());
                        pauses.push(async move {
                            tokio::time::sleep(RETRY_PAUSE).await;
                            batch
                        });
                    }
                }
                strong.progressed();
            }
        }
    }
}

/// PINGs every op timeout. One server's connection is lost when a PING fails for want of a
/// connection or gets no answer within the op timeout; a cluster's PING of every master keeps
/// redis-rs's view of the cluster fresh, and one a master did not answer makes the connection
/// follow the cluster's masters if they changed (a frozen master's replica promoted: the
/// subscriptions on its slots move to the new master).
async fn ping(mut sink: Sink, op_timeout: Duration) -> End {
    let cluster = matches!(sink, Sink::Cluster(_));
    let mut topology = Topology::default();
    if let Sink::Cluster(conn) = &mut sink {
        // The masters the connection starts with.
        topology.follow(conn, op_timeout).await;
    }
    loop {
        tokio::time::sleep(op_timeout).await;
        let unanswered = match tokio::time::timeout(op_timeout, sink.ping()).await {
            Ok(Ok(())) => false,
            Ok(Err(e)) if is_connection_error(&e) && !cluster => return End::Lost(e.to_string()),
            Ok(Err(e)) => {
                tracing::debug!("redis pub/sub PING refused: {e}");
                is_connection_error(&e)
            }
            Err(_) if cluster => {
                tracing::debug!("redis cluster PING unanswered");
                true
            }
            Err(_) => return End::Lost(format!("no answer to PING within {op_timeout:?}")),
        };
        if let (true, Sink::Cluster(conn)) = (unanswered, &mut sink) {
            topology.follow(conn, op_timeout).await;
        }
    }
}
