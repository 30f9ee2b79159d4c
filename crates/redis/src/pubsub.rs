//! The one dedicated pub/sub connection of a backend: its channel table and the subscribe API.
//!
//! Local waiters subscribe to a key's channel through [`PubSub::subscribe`]. Callers never talk
//! to the connection themselves: they record their interest in the channel table and wait (at
//! most one op timeout) until the server confirmed the channel on the current connection. The
//! dispatcher (see the `dispatcher` module) sends what the table asks for, pending channels
//! batched into SUBSCRIBE/UNSUBSCRIBE commands of up to [`BATCH`] channels, several commands in
//! flight at once, so concurrent subscribers share round trips instead of queueing behind one
//! another's. A channel is never in two commands at once, so SUBSCRIBE and UNSUBSCRIBE of one
//! channel reach the server in the order the table decided them.
//!
//! Events fan out to a channel's local subscribers through a `watch` (latest event wins: waiters
//! only need to know that something happened, or the value that was published). When the
//! connection drops, every subscriber is told `Changed` (so each re-checks its key) and every
//! channel still wanted is subscribed again on the next connection, in batches, and told
//! `Changed` once more when confirmed.
//!
//! On a Redis Cluster the same table drives sharded pub/sub (`SSUBSCRIBE`/`SUNSUBSCRIBE`, one
//! command per slot of a batch) on a cluster connection whose nodes come and go on their own: a
//! batch refused for want of its node is retried after a pause while it is wanted (its current
//! subscribers are told the error and fall back to timers), and a node that drops a subscription
//! by itself (its slot moved, it was demoted) or whose connection is replaced makes the channels
//! subscribed again and their waiters re-check.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::PushInfo;
use redis::cluster_async::ClusterConnection;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use wasi_cache_engine::{Error, Result};

use crate::counters::Counters;
use crate::dispatcher::{dispatch, dispatch_cluster};
use crate::errors::timeout_error;

/// Most channels in one SUBSCRIBE or UNSUBSCRIBE command.
pub(crate) const BATCH: usize = 1_000;

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

/// Where a channel stands on the current connection.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    /// Not subscribed, and no command about it in flight.
    Idle,
    /// A SUBSCRIBE naming it is in flight.
    Subscribing,
    /// The server confirmed the subscription.
    Subscribed,
    /// An UNSUBSCRIBE naming it is in flight.
    Unsubscribing,
    /// The server refused to subscribe it (e.g. `NOPERM`); retried when someone subscribes anew.
    Refused(Error),
    /// The node serving it could not be reached (a cluster shard down or moving); subscribed
    /// again after a pause while it is wanted, or when someone subscribes anew.
    Retrying(Error),
}

/// How the server answered one (un)subscribe command.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Confirmed.
    Done,
    /// Refused for good (e.g. `NOPERM`).
    Refused(Error),
    /// Its node could not be reached: try again later.
    Retry(Error),
}

/// One channel's local subscribers.
pub(crate) struct Channel {
    /// Local subscriptions alive.
    pub(crate) refs: usize,
    pub(crate) status: Status,
    /// Whether it is in [`Table::pending`] or [`Table::sorted`].
    queued: bool,
    /// Where the dispatcher posts the channel's events.
    pub(crate) events: watch::Sender<Event>,
}

/// The channels and what the dispatcher must do about them.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) channels: HashMap<Vec<u8>, Channel>,
    /// Channels whose subscription may need a command, as they came (sorted when taken).
    pending: VecDeque<Vec<u8>>,
    /// Channels that needed a SUBSCRIBE, and an UNSUBSCRIBE, when last looked at (checked
    /// again when taken): taking one kind never walks past the other's, so draining N channels
    /// takes linear work under the lock.
    sorted: [VecDeque<Vec<u8>>; 2],
    /// Whether a pub/sub connection is up.
    pub(crate) connected: bool,
}

/// Which command a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SUBSCRIBE.
    Subscribe,
    /// UNSUBSCRIBE.
    Unsubscribe,
}

impl Kind {
    /// Its place in [`Table::sorted`].
    fn index(self) -> usize {
        match self {
            Self::Subscribe => 0,
            Self::Unsubscribe => 1,
        }
    }
}

impl Table {
    /// Puts `channel` in the dispatcher's queue (once).
    fn queue(&mut self, channel: &[u8]) {
        if let Some(c) = self.channels.get_mut(channel)
            && !c.queued
        {
            c.queued = true;
            self.pending.push_back(channel.to_vec());
        }
    }

    /// Queues every channel (a new connection subscribes all that are wanted).
    pub(crate) fn queue_all(&mut self) {
        let names: Vec<Vec<u8>> = self.channels.keys().cloned().collect();
        for name in names {
            self.queue(&name);
        }
    }

    /// The connection dropped: nothing is subscribed any more; subscribers re-check their key.
    pub(crate) fn disconnected(&mut self) {
        self.connected = false;
        self.pending.clear();
        self.sorted.iter_mut().for_each(VecDeque::clear);
        self.channels.retain(|_, c| c.refs > 0);
        for c in self.channels.values_mut() {
            c.status = Status::Idle;
            c.queued = false;
            c.events.send_replace(Event::Changed);
        }
    }

    /// Takes up to [`BATCH`] channels that need `kind`, marking them in flight; drops channels
    /// nobody wants any more. Each channel queued since the last call is looked at once to sort
    /// it by kind, and each taken one once more (it may have changed since).
    pub(crate) fn take(&mut self, kind: Kind) -> Vec<Vec<u8>> {
        while let Some(name) = self.pending.pop_front() {
            if let Some(needs) = self.needs(&name) {
                self.sorted[needs.index()].push_back(name);
            }
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH
            && let Some(name) = self.sorted[kind.index()].pop_front()
        {
            match self.needs(&name) {
                Some(k) if k == kind => {
                    let c = self
                        .channels
                        .get_mut(&name)
                        .expect("a channel that needs a command");
                    c.queued = false;
                    c.status = match kind {
                        Kind::Subscribe => Status::Subscribing,
                        Kind::Unsubscribe => Status::Unsubscribing,
                    };
                    batch.push(name);
                }
                Some(other) => self.sorted[other.index()].push_back(name),
                None => {}
            }
        }
        batch
    }

    /// The command the queued channel `name` needs now; with none, it leaves the queue (and
    /// the table, when nobody wants it and nothing is in flight for it).
    fn needs(&mut self, name: &[u8]) -> Option<Kind> {
        let c = self.channels.get_mut(name)?;
        let wanted = c.refs > 0;
        let needs = match (&c.status, wanted) {
            (Status::Idle | Status::Retrying(_), true) => Some(Kind::Subscribe),
            (Status::Subscribed, false) => Some(Kind::Unsubscribe),
            (Status::Idle | Status::Refused(_) | Status::Retrying(_), false) => {
                self.channels.remove(name);
                return None;
            }
            _ => None,
        };
        if needs.is_none() {
            c.queued = false;
        }
        needs
    }

    /// The server answered a batch. A retry is not queued: [`Table::retry`] does, later.
    pub(crate) fn settle(&mut self, kind: Kind, batch: &[Vec<u8>], outcome: &Outcome) {
        for name in batch {
            let Some(c) = self.channels.get_mut(name) else {
                continue;
            };
            c.status = match (outcome, kind) {
                (Outcome::Done, Kind::Subscribe) => {
                    // Whatever was published before the subscription is unseen: re-check.
                    c.events.send_replace(Event::Changed);
                    Status::Subscribed
                }
                (Outcome::Refused(e), Kind::Subscribe) => Status::Refused(e.clone()),
                (Outcome::Retry(e), Kind::Subscribe) => Status::Retrying(e.clone()),
                // The node is gone, and its subscriptions with it.
                (_, Kind::Unsubscribe) => Status::Idle,
            };
            if !matches!(c.status, Status::Retrying(_)) {
                self.queue(name);
            }
        }
    }

    /// Queues again the channels of a batch that waited out its pause (those still retrying).
    pub(crate) fn retry(&mut self, batch: &[Vec<u8>]) {
        for name in batch {
            if self
                .channels
                .get(name)
                .is_some_and(|c| matches!(c.status, Status::Retrying(_)))
            {
                self.queue(name);
            }
        }
    }

    /// A cluster node's connection was replaced, or a node dropped subscriptions: the channels
    /// (`None`: all) still wanted are subscribed again, and their subscribers re-check their key.
    pub(crate) fn resubscribe(&mut self, only: Option<&[u8]>) {
        let names: Vec<Vec<u8>> = match only {
            Some(name) => vec![name.to_vec()],
            None => self.channels.keys().cloned().collect(),
        };
        for name in names {
            let Some(c) = self.channels.get_mut(&name) else {
                continue;
            };
            // An unsubscribe in flight settles by itself; anything else wanted is sent again.
            if matches!(c.status, Status::Subscribed) {
                c.status = Status::Idle;
            }
            c.events.send_replace(Event::Changed);
            self.queue(&name);
        }
    }
}

/// What the pub/sub connection is made on.
pub(crate) enum Source {
    /// One server: a dedicated pub/sub connection from this client (RESP2 or RESP3).
    Server(Box<redis::Client>),
    /// A cluster: a cluster connection whose push messages (sharded pub/sub) arrive here.
    Cluster(ClusterConnection, UnboundedReceiver<PushInfo>),
}

/// The connection subscriptions go through, as the probe needs it.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server's client.
    Server(Box<redis::Client>),
    /// The cluster connection.
    Cluster(ClusterConnection),
}

/// State shared by the backend, its subscriptions and the dispatcher.
pub(crate) struct Shared {
    pub(crate) target: Target,
    pub(crate) op_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) table: Mutex<Table>,
    /// Wakes the dispatcher's writer: the table has work.
    pub(crate) work: Arc<Notify>,
    /// Bumped whenever the table's statuses change: subscribers waiting for their channel look.
    pub(crate) progress: watch::Sender<u64>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Tells waiting subscribers that statuses changed.
    pub(crate) fn progressed(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }
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

/// The error of a subscribe while the pub/sub connection is down.
fn down() -> Error {
    Error::Unavailable("the Redis pub/sub connection is down (reconnecting)".into())
}

impl PubSub {
    /// Starts the dispatcher; it connects (and reconnects) in the background, so a backend can
    /// be built while Redis is down.
    pub(crate) fn start(source: Source, op_timeout: Duration, counters: Arc<Counters>) -> Self {
        let (target, pushes) = match source {
            Source::Server(client) => (Target::Server(client), None),
            Source::Cluster(conn, pushes) => (Target::Cluster(conn), Some(pushes)),
        };
        let shared = Arc::new(Shared {
            target,
            op_timeout,
            counters,
            table: Mutex::new(Table::default()),
            work: Arc::new(Notify::new()),
            progress: watch::Sender::new(0),
            dispatcher: Mutex::new(None),
        });
        let (weak, work) = (Arc::downgrade(&shared), shared.work.clone());
        let task = match pushes {
            None => tokio::spawn(dispatch(weak, work)),
            Some(pushes) => tokio::spawn(dispatch_cluster(weak, work, pushes)),
        };
        *shared.dispatcher.lock() = Some(task);
        Self { shared }
    }

    /// Subscribes to `channel` and unsubscribes again, outside the channel table (the ACL
    /// check): on a short-lived connection of its own, or with sharded pub/sub on a cluster.
    pub(crate) async fn probe(&self, channel: &[u8]) -> redis::RedisResult<()> {
        match &self.shared.target {
            Target::Server(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                pubsub.unsubscribe(channel).await
            }
            Target::Cluster(conn) => {
                let mut conn = conn.clone();
                conn.ssubscribe(channel).await?;
                conn.sunsubscribe(channel).await
            }
        }
    }

    /// Waits (at most one op timeout) until the pub/sub connection is up.
    pub(crate) async fn connected(&self) -> Result<()> {
        self.wait(|table| table.connected.then_some(Ok(()))).await
    }

    /// Subscribes to `channel`, returning once the server confirmed it; fails at once while the
    /// connection is down, and after one op timeout without a confirmation.
    pub(crate) async fn subscribe(&self, channel: &[u8]) -> Result<Subscription> {
        let shared = &self.shared;
        let events = {
            let mut table = shared.table.lock();
            let c = table
                .channels
                .entry(channel.to_vec())
                .or_insert_with(|| Channel {
                    refs: 0,
                    status: Status::Idle,
                    queued: false,
                    events: watch::Sender::new(Event::Nothing),
                });
            c.refs += 1;
            if matches!(c.status, Status::Refused(_) | Status::Retrying(_)) {
                c.status = Status::Idle;
            }
            let idle = matches!(c.status, Status::Idle);
            let events = c.events.subscribe();
            if idle {
                table.queue(channel);
            }
            events
        };
        let subscription = Subscription {
            shared: shared.clone(),
            channel: channel.to_vec(),
            events,
        };
        shared.work.notify_one();
        self.wait(|table| {
            if !table.connected {
                return Some(Err(down()));
            }
            match &table.channels.get(channel)?.status {
                Status::Subscribed => Some(Ok(())),
                Status::Refused(e) | Status::Retrying(e) => Some(Err(e.clone())),
                _ => None,
            }
        })
        .await?;
        Ok(subscription)
    }

    /// Waits (at most one op timeout) until `check` has an answer; it is asked now and after
    /// each change of the table.
    async fn wait(&self, check: impl Fn(&Table) -> Option<Result<()>>) -> Result<()> {
        let shared = &self.shared;
        let mut progress = shared.progress.subscribe();
        let answer = async {
            loop {
                if let Some(answer) = check(&shared.table.lock()) {
                    return answer;
                }
                if progress.changed().await.is_err() {
                    return Err(down());
                }
            }
        };
        tokio::time::timeout(shared.op_timeout, answer)
            .await
            .unwrap_or_else(|_| Err(timeout_error(shared.op_timeout)))
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
        let mut table = self.shared.table.lock();
        let Some(c) = table.channels.get_mut(&self.channel) else {
            return;
        };
        c.refs -= 1;
        if c.refs == 0 {
            table.queue(&self.channel);
            drop(table);
            self.shared.work.notify_one();
        }
    }
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;
