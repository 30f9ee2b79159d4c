//! Automatic pipelining of the command connection: commands issued concurrently travel to Redis
//! in shared writes.
//!
//! redis-rs's multiplexed connection writes each command as soon as it is queued, so 50 callers
//! make about one write (and, over TLS, one TLS record) per command; redis-server reads one TLS
//! record per event, so the requests stop sharing reads and TLS throughput falls to a third of
//! plain TCP's. Here a task owns the sending side: while [`WINDOW`] batches await their replies,
//! new commands wait in a queue, and the next batch takes everything queued (up to [`MAX_BATCH`]
//! commands) as one pipeline, sent in one write. A lone caller is sent at once, as before; under
//! load, batches grow with the load. Replies keep each command's own outcome (the pipeline
//! ignores errors, so one command's `NOSCRIPT` or `WRONGTYPE` is its own), and a failed batch
//! fails each of its commands with the batch's error.
//!
//! Large commands (over [`DIRECT_BYTES`] of arguments, e.g. big values) skip the queue: copying
//! them into a batch would cost more than the write it saves.

use std::sync::Weak;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Arg, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Commands;

/// Batches awaiting their replies at once; more commands wait and form the next batch.
const WINDOW: usize = 2;
/// Most commands in one batch.
const MAX_BATCH: usize = 512;
/// Commands with more argument bytes than this are sent on their own, bypassing the queue.
const DIRECT_BYTES: usize = 16 << 10;

/// One queued command and where its reply goes.
pub(crate) struct Request {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// A handle on the command connection that pipelines concurrent commands; cheap to clone.
#[derive(Clone)]
pub(crate) struct AutoPipeline {
    queue: mpsc::UnboundedSender<Request>,
    /// The connection itself, for commands that skip the queue.
    direct: ConnectionManager,
}

impl AutoPipeline {
    /// A handle whose queue is served by the task [`serve`] runs on `queue`'s other end.
    pub(crate) fn new(queue: mpsc::UnboundedSender<Request>, direct: ConnectionManager) -> Self {
        Self { queue, direct }
    }

    /// Queues `cmd` for the next batch and waits for its reply.
    async fn queued(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (reply, answer) = oneshot::channel();
        let gone = || {
            redis::RedisError::from((redis::ErrorKind::Io, "the Redis command pipeline stopped"))
        };
        self.queue
            .send(Request {
                cmd: cmd.clone(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Whether `cmd` is small enough to be worth batching.
fn batchable(cmd: &Cmd) -> bool {
    let mut bytes = 0;
    for arg in cmd.args_iter() {
        if let Arg::Simple(a) = arg {
            bytes += a.len();
            if bytes > DIRECT_BYTES {
                return false;
            }
        }
    }
    true
}

impl ConnectionLike for AutoPipeline {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if batchable(cmd) {
            Box::pin(self.queued(cmd))
        } else {
            self.direct.req_packed_command(cmd)
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        // The caller's own pipeline is already one write.
        self.direct.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.direct.get_db()
    }
}

/// The batching task: takes what the queue holds while fewer than [`WINDOW`] batches are in
/// flight, sends it as one pipeline on the current connection (the health task may have replaced
/// it), and hands each command its reply; ends once the backend is gone.
pub(crate) async fn serve(mut queue: mpsc::UnboundedReceiver<Request>, commands: Weak<Commands>) {
    let mut in_flight: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    loop {
        tokio::select! {
            first = queue.recv(), if in_flight.len() < WINDOW => {
                let Some(first) = first else { break };
                let Some(conn) = commands.upgrade().map(|c| c.manager()) else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                in_flight.push(Box::pin(send(conn, batch)));
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    // Let the batches already sent deliver their replies.
    while in_flight.next().await.is_some() {}
}

/// Sends `batch` on `conn` (one command as itself, several as one pipeline) and delivers the
/// replies.
async fn send(mut conn: ConnectionManager, batch: Vec<Request>) {
    if let [_] = batch.as_slice() {
        let Request { cmd, reply } = batch.into_iter().next().expect("one request");
        let _ = reply.send(conn.req_packed_command(&cmd).await);
        return;
    }
    let mut pipeline = Pipeline::with_capacity(batch.len());
    pipeline.ignore_errors();
    let mut replies = Vec::with_capacity(batch.len());
    for Request { cmd, reply } in batch {
        pipeline.add_command(cmd);
        replies.push(reply);
    }
    match conn.req_packed_commands(&pipeline, 0, replies.len()).await {
        Ok(values) if values.len() == replies.len() => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let e = redis::RedisError::from((
                redis::ErrorKind::Client,
                "pipeline reply count mismatch",
                format!("{} replies to {} commands", values.len(), replies.len()),
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[path = "autopipeline_tests.rs"]
mod tests;
