//! The one dedicated pub/sub connection of a backend and its dispatcher task.
//!
//! Local waiters subscribe to a key's channel through [`PubSub::subscribe`]; the first local
//! subscriber of a channel sends SUBSCRIBE (and waits for the server's confirmation, so a waiter
//! that re-checks after subscribing never misses a notification), the last one to leave sends
//! UNSUBSCRIBE. The dispatcher task reads every message and fans it out to the channel's local
//! subscribers through a `watch` (latest event wins: waiters only need to know that something
//! happened, or the value that was published). When the connection drops, the dispatcher wakes
//! every subscriber (so each re-checks the key) and reconnects by itself with a short back-off,
//! resubscribing every channel that still has local subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasi_cache_engine::Result;

use crate::counters::Counters;
use crate::errors::{map_redis_error, timeout_error};

/// What last happened on a channel, as its local subscribers see it.
#[derive(Debug, Clone, Default)]
pub(crate) enum Event {
    /// Nothing yet.
    #[default]
    Nothing,
    /// A value was stored (or filled with TTL 0): waiters resolve with it.
    Value(Bytes),
    /// Something changed (abandon, large value, reconnect): waiters re-check the key.
    Changed,
}

/// One channel's local subscribers.
struct Channel {
    /// Local subscriptions alive.
    refs: usize,
    /// Whether the server confirmed the subscription on the current connection.
    subscribed: bool,
    /// Where the dispatcher posts the channel's events.
    events: watch::Sender<Event>,
}

/// State shared by the backend, its subscriptions and the dispatcher.
struct Shared {
    client: redis::Client,
    op_timeout: Duration,
    counters: Arc<Counters>,
    runtime: Handle,
    channels: Mutex<HashMap<Vec<u8>, Channel>>,
    /// The sending half of the current connection; `None` while disconnected. Held across
    /// SUBSCRIBE/UNSUBSCRIBE so that they reach the server in order.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.dispatcher.get_mut().take() {
            task.abort();
        }
    }
}

/// A backend's pub/sub connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct PubSub {
    shared: Arc<Shared>,
}

impl PubSub {
    /// Starts the dispatcher; it connects (and reconnects) in the background, so a backend can
    /// be built while Redis is down.
    pub(crate) fn start(
        client: redis::Client,
        op_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            op_timeout,
            counters,
            runtime: Handle::current(),
            channels: Mutex::new(HashMap::new()),
            sink: tokio::sync::Mutex::new(None),
            dispatcher: Mutex::new(None),
        });
        let task = tokio::spawn(dispatch(Arc::downgrade(&shared)));
        *shared.dispatcher.lock() = Some(task);
        Self { shared }
    }

    /// Subscribes to `channel`, returning once the server confirmed it (or an error when the
    /// pub/sub connection is down).
    pub(crate) async fn subscribe(&self, channel: &[u8]) -> Result<Subscription> {
        let shared = &self.shared;
        let (events, subscribed) = {
            let mut channels = shared.channels.lock();
            let entry = channels.entry(channel.to_vec()).or_insert_with(|| Channel {
                refs: 0,
                subscribed: false,
                events: watch::Sender::new(Event::Nothing),
            });
            entry.refs += 1;
            (entry.events.subscribe(), entry.subscribed)
        };
        let subscription = Subscription {
            shared: shared.clone(),
            channel: channel.to_vec(),
            events,
        };
        if subscribed {
            return Ok(subscription);
        }
        let mut sink = shared.sink.lock().await;
        if shared
            .channels
            .lock()
            .get(channel)
            .is_some_and(|c| c.subscribed)
        {
            return Ok(subscription);
        }
        let Some(conn) = sink.as_mut() else {
            return Err(wasi_cache_engine::Error::Unavailable(
                "the Redis pub/sub connection is down (reconnecting)".into(),
            ));
        };
        Counters::bump(&shared.counters.round_trips);
        match tokio::time::timeout(shared.op_timeout, conn.subscribe(channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(map_redis_error(&e)),
            Err(_) => return Err(timeout_error(shared.op_timeout)),
        }
        if let Some(c) = shared.channels.lock().get_mut(channel) {
            c.subscribed = true;
        }
        Ok(subscription)
    }
}

/// A local subscription to one channel; dropping the last one of a channel unsubscribes.
pub(crate) struct Subscription {
    shared: Arc<Shared>,
    channel: Vec<u8>,
    events: watch::Receiver<Event>,
}

impl Subscription {
    /// A receiver of the channel's events; mark it seen before re-checking the key.
    pub(crate) fn events(&self) -> watch::Receiver<Event> {
        self.events.clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let last = {
            let mut channels = self.shared.channels.lock();
            match channels.get_mut(&self.channel) {
                Some(c) => {
                    c.refs -= 1;
                    c.refs == 0
                }
                None => false,
            }
        };
        if !last {
            return;
        }
        let shared = self.shared.clone();
        let channel = std::mem::take(&mut self.channel);
        self.shared.runtime.spawn(async move {
            let mut sink = shared.sink.lock().await;
            let was_subscribed = {
                let mut channels = shared.channels.lock();
                match channels.get(&channel) {
                    Some(c) if c.refs == 0 => {
                        channels.remove(&channel).is_some_and(|c| c.subscribed)
                    }
                    _ => return,
                }
            };
            if let (true, Some(conn)) = (was_subscribed, sink.as_mut()) {
                Counters::bump(&shared.counters.round_trips);
                // A failure leaves a stray subscription on a connection about to be replaced.
                let _ = tokio::time::timeout(shared.op_timeout, conn.unsubscribe(&channel)).await;
            }
        });
    }
}

/// The dispatcher: connect, fan messages out, and on a dropped connection wake everyone and
/// reconnect, until the backend is dropped.
async fn dispatch(shared: Weak<Shared>) {
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(stream) = connect(&shared, !first).await else {
            return;
        };
        first = false;
        backoff = Duration::from_millis(50).max(backoff / 4);
        run(&shared, stream).await;
        // Disconnected: subscriptions are gone with the connection.
        let Some(strong) = shared.upgrade() else {
            return;
        };
        *strong.sink.lock().await = None;
        for c in strong.channels.lock().values_mut() {
            c.subscribed = false;
            c.events.send_replace(Event::Changed);
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Connects and resubscribes the channels that have local subscribers, retrying with back-off;
/// `None` once the backend is gone.
async fn connect(shared: &Weak<Shared>, reconnect: bool) -> Option<PubSubStream> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let strong = shared.upgrade()?;
        let attempt = async {
            let (mut sink, stream) = strong.client.get_async_pubsub().await?.split();
            let mut guard = strong.sink.lock().await;
            let channels: Vec<Vec<u8>> = strong
                .channels
                .lock()
                .iter()
                .filter(|(_, c)| c.refs > 0)
                .map(|(k, _)| k.clone())
                .collect();
            for channel in &channels {
                sink.subscribe(channel).await?;
            }
            *guard = Some(sink);
            let mut all = strong.channels.lock();
            for channel in &channels {
                if let Some(c) = all.get_mut(channel) {
                    c.subscribed = true;
                }
            }
            // Whatever was published while disconnected is lost: everyone re-checks.
            for c in all.values() {
                c.events.send_replace(Event::Changed);
            }
            redis::RedisResult::Ok(stream)
        };
        match tokio::time::timeout(strong.op_timeout, attempt).await {
            Ok(Ok(stream)) => {
                if reconnect {
                    Counters::bump(&strong.counters.reconnects);
                }
                return Some(stream);
            }
            Ok(Err(e)) => tracing::debug!("redis pub/sub connect failed: {e}"),
            Err(_) => tracing::debug!("redis pub/sub connect timed out"),
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Fans the connection's messages out until it drops or the backend is gone.
async fn run(shared: &Weak<Shared>, mut stream: PubSubStream) {
    while let Some(msg) = stream.next().await {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let payload = msg.get_payload_bytes();
        let event = match payload.split_first() {
            Some((b'v', value)) => Event::Value(Bytes::copy_from_slice(value)),
            _ => Event::Changed,
        };
        let Ok(channel) = msg.get_channel::<Vec<u8>>() else {
            continue;
        };
        if let Some(c) = strong.channels.lock().get(&channel) {
            c.events.send_replace(event);
        }
    }
}
