//! The source of the near cache's invalidations: one dedicated RESP3 connection with
//! `CLIENT TRACKING ON BCAST PREFIX wc:` (on a cluster, one per master), reconnected with a
//! short back-off until the backend is dropped.
//!
//! **Why broadcasting.** In the default tracking mode the server remembers which keys a
//! connection read and invalidates only those, so every read the near cache may keep would have
//! to go through the tracking connection, and the server would keep a table of every key every
//! host read (its `tracking-table-max-keys` then invalidates keys early). With `BCAST` the
//! server remembers only the prefix and announces every write under `wc:` on this one
//! connection: reads keep using the ordinary, health-checked command connection, the claim
//! script's reads need no special treatment, and the server keeps no per-key state. The price
//! is that every host with a near cache hears of every write under `wc:` (locks and other
//! namespaces included): cheap for the read-heavy loads a near cache is for.
//!
//! **Epochs.** Each connection gets a new epoch; the near cache uses it only once
//! `CLIENT TRACKING` answered on it, and stops using it (emptying itself) as soon as redis-rs
//! reports the connection closed (its `Disconnection` push), a PING gets no answer within the
//! op timeout, or it fails. Invalidations are applied in the connection's push sender,
//! synchronously, in the order the server sent them.
//!
//! **Cluster.** A key's invalidations come from the master serving its slot, so on a cluster
//! each round (epoch) opens one such connection per master (see [`super::cluster`]), all of them
//! sharing the epoch: the near cache is used only once every one is confirmed, and any one lost
//! (or a change of the masters) ends the round for all, emptying the near cache. A server is the
//! round of one connection; the connection's code is the same either way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::Notify;
use wasi_cache_engine::Error;

use super::Near;
use super::cluster::{Masters, Node};
use crate::counters::Counters;
use crate::errors::{is_connection_error, map_redis_error, timeout_error};
use crate::keys::{Keys, PREFIX};

/// Longest back-off between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where the tracking connections go.
pub(crate) enum Target {
    /// One server: a round is one connection.
    Server(redis::Client),
    /// A cluster: a round is one connection per master.
    Cluster(Masters),
}

/// The connections of one epoch, all confirmed.
struct Round {
    /// Never empty: a server's one, or one per master (a cluster has at least one).
    conns: Vec<MultiplexedConnection>,
    /// The masters they go to (on a cluster), to notice a change.
    masters: Vec<Node>,
}

impl Target {
    /// Opens the connections of `epoch` and turns tracking on on each.
    async fn connect(
        &mut self,
        op_timeout: Duration,
        epoch: u64,
        near: &Weak<Near>,
        lost: &Arc<Notify>,
    ) -> Result<Round, Error> {
        let (clients, masters) = match self {
            Self::Server(client) => (vec![client.clone()], Vec::new()),
            Self::Cluster(cluster) => {
                let masters = cluster.list(op_timeout).await?;
                let clients = masters
                    .iter()
                    .map(|node| cluster.client(node))
                    .collect::<Result<Vec<_>, Error>>()?;
                (clients, masters)
            }
        };
        let conns = clients
            .iter()
            .map(|client| connect(client, op_timeout, epoch, near, lost));
        let conns = futures::future::try_join_all(conns)
            .await
            .map_err(|e| refusal(&e))?;
        Ok(Round { conns, masters })
    }

    /// Serves `round` until one of its connections is lost or (on a cluster) the masters
    /// change; why it ended.
    async fn serve(&mut self, round: Round, lost: &Notify, op_timeout: Duration) -> String {
        let conns = round
            .conns
            .into_iter()
            .map(|conn| Box::pin(serve(conn, lost, op_timeout)));
        // `select_all` needs at least one: a round is never empty (see `Round::conns`).
        let first_lost = futures::future::select_all(conns);
        match self {
            Self::Server(_) => first_lost.await.0,
            Self::Cluster(cluster) => tokio::select! {
                (why, _, _) = first_lost => why,
                why = cluster.changed(&round.masters, op_timeout) => why,
            },
        }
    }
}

/// The tracking task: connect, confirm tracking, serve the connections until one is lost, and
/// again, until the near cache is dropped.
pub(crate) async fn track(mut target: Target, op_timeout: Duration, near: Weak<Near>) {
    let mut backoff = Duration::from_millis(50);
    // Whether a confirmed round was lost: confirming the next one is a reconnect.
    let mut lost_one = false;
    for epoch in 1u64.. {
        let lost = Arc::new(Notify::new());
        let outcome =
            tokio::time::timeout(op_timeout, target.connect(op_timeout, epoch, &near, &lost)).await;
        let Some(strong) = near.upgrade() else {
            return;
        };
        match outcome {
            Ok(Ok(round)) => {
                if lost_one {
                    Counters::bump(&strong.counters.reconnects);
                }
                strong.up(epoch);
                drop(strong);
                lost_one = true;
                backoff = Duration::from_millis(50);
                let why = target.serve(round, &lost, op_timeout).await;
                tracing::debug!("redis tracking connection lost: {why}");
                match near.upgrade() {
                    Some(strong) => strong.down(epoch),
                    None => return,
                }
            }
            Ok(Err(e)) => {
                tracing::debug!("redis tracking connection refused: {e}");
                strong.failed(e);
            }
            Err(_) => strong.failed(timeout_error(op_timeout)),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens the connection of `epoch`, its pushes applied to `near`, and turns tracking on.
async fn connect(
    client: &redis::Client,
    op_timeout: Duration,
    epoch: u64,
    near: &Weak<Near>,
    lost: &Arc<Notify>,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(op_timeout))
        .set_response_timeout(Some(op_timeout))
        .set_push_sender(pushes(near.clone(), epoch, lost.clone()));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(PREFIX)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(conn)
}

/// The push sender of the connection of `epoch`: applies invalidations, and on the connection's
/// end stops the near cache at once (before the task notices) and wakes the task.
fn pushes(
    near: Weak<Near>,
    epoch: u64,
    lost: Arc<Notify>,
) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static {
    move |push: PushInfo| {
        let Some(near) = near.upgrade() else {
            return Ok(());
        };
        match push.kind {
            PushKind::Invalidate => invalidate(&near, &push.data),
            PushKind::Disconnection => {
                near.down(epoch);
                lost.notify_one();
            }
            _ => {}
        }
        Ok(())
    }
}

/// Applies one `invalidate` push: a list of keys, or a null after FLUSHDB or FLUSHALL.
fn invalidate(near: &Near, data: &[Value]) {
    match data.first() {
        Some(Value::Array(names)) => {
            for name in names {
                if let Value::BulkString(name) = name
                    && let Some(enc) = Keys::encoded_of_value_key(name)
                {
                    near.invalidate(enc);
                }
            }
        }
        Some(Value::Nil) => near.invalidate_all(),
        // Nothing else is sent; dropping everything is the safe reading of the unknown.
        _ => near.invalidate_all(),
    }
}

/// PINGs the connection every half op timeout until it is lost; why it was.
async fn serve(mut conn: MultiplexedConnection, lost: &Notify, op_timeout: Duration) -> String {
    let every = (op_timeout / 2).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = lost.notified() => return "closed".into(),
            () = tokio::time::sleep(every) => {}
        }
        let ping = redis::cmd("PING");
        match tokio::time::timeout(op_timeout, ping.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_connection_error(&e) => return e.to_string(),
            Ok(Err(e)) => return format!("PING refused: {e}"),
            Err(_) => return format!("no answer to PING within {op_timeout:?}"),
        }
    }
}

/// The error a refused tracking connection reports: a missing right or an old server is the
/// user's to fix (`InvalidConfig`, saying what to grant), a connection failure is transient.
fn refusal(e: &redis::RedisError) -> Error {
    if is_connection_error(e) {
        return map_redis_error(e);
    }
    let what = e.detail().unwrap_or("refused").trim();
    Error::InvalidConfig(format!(
        "the near cache needs RESP3 client-side caching (Redis 6 or later, and a user allowed \
         `+client|tracking`), which Redis refused: {} {what}",
        e.code().unwrap_or("error")
    ))
}
