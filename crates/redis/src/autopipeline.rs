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
//! Every command of the connection goes through this one task, small or large, and a caller's own
//! pipeline too (as a batch of its own), so commands reach Redis in the order they were called:
//! a batch is placed on the connection before the next one is formed. The queue is bounded
//! (see `command_queue`): a full queue refuses the command at once. A command whose caller is
//! gone (its future dropped, or timed out) before its batch was formed is discarded, never sent.
//! Large commands (over [`DIRECT_BYTES`] of arguments) travel as batches of their own: copying
//! them into a shared write would cost more than the write it saves.
//!
//! Order across batches holds on one connection. While the connection is not proven (before its
//! first answer, after an error) only one batch is in flight, so a batch waiting for a reconnect
//! cannot be overtaken by the next; and when the health task replaced the connection, nothing
//! is sent on the new one until every batch sent on the old one has ended (answered, failed, or
//! given up after the op timeout).

use std::sync::{Arc, Weak};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::oneshot;

use crate::command_queue::{Queue, Waiting, cmd_bytes, pipeline_bytes};
use crate::connection::Commands;
use crate::errors::is_connection_error;

/// Batches awaiting their replies at once (on a proven connection); more commands wait and form
/// the next batch.
const WINDOW: usize = 2;
/// Most commands in one batch.
const MAX_BATCH: usize = 512;
/// Argument bytes after which a batch takes no more commands.
const BATCH_BYTES: usize = 1 << 20;
/// Commands with more argument bytes than this travel as batches of their own.
pub(crate) const DIRECT_BYTES: usize = 16 << 10;

/// What a caller asked for, and where its reply goes.
pub(crate) enum Request {
    /// One command.
    Command {
        cmd: Cmd,
        bytes: usize,
        reply: oneshot::Sender<RedisResult<Value>>,
    },
    /// The caller's own pipeline: its replies from `offset`, `count` of them; sent as a batch of
    /// its own.
    Pipeline {
        pipeline: Pipeline,
        offset: usize,
        count: usize,
        bytes: usize,
        reply: oneshot::Sender<RedisResult<Vec<Value>>>,
    },
}

impl Waiting for Request {
    fn bytes(&self) -> usize {
        match self {
            Self::Command { bytes, .. } | Self::Pipeline { bytes, .. } => *bytes,
        }
    }

    fn commands(&self) -> usize {
        match self {
            Self::Command { .. } => 1,
            Self::Pipeline { pipeline, .. } => pipeline.len().max(1),
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            Self::Command { reply, .. } => reply.is_closed(),
            Self::Pipeline { reply, .. } => reply.is_closed(),
        }
    }
}

impl Request {
    /// Whether it travels as a batch of its own.
    fn alone(&self) -> bool {
        matches!(self, Self::Pipeline { .. })
    }
}

/// The queue of the pipelining task.
pub(crate) type CommandQueue = Queue<Request>;

/// Tells the queue when a caller stops waiting before its reply came (a full queue then purges).
struct Waiter<'a> {
    queue: &'a CommandQueue,
    answered: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.queue.gave_up();
        }
    }
}

/// A handle on the command connection that pipelines concurrent commands; cheap to clone.
#[derive(Clone)]
pub(crate) struct AutoPipeline {
    queue: Arc<CommandQueue>,
    /// The database the connection selects.
    db: i64,
}

impl AutoPipeline {
    /// A handle whose queue is served by the task [`serve`] runs on `queue`.
    pub(crate) fn new(queue: Arc<CommandQueue>, db: i64) -> Self {
        Self { queue, db }
    }

    /// Queues `request`, whose reply comes on `answer`, and waits for it.
    async fn queued<T>(
        &self,
        request: Request,
        answer: oneshot::Receiver<RedisResult<T>>,
    ) -> RedisResult<T> {
        self.queue.push(request).map_err(|(_, e)| e)?;
        let mut waiter = Waiter {
            queue: &self.queue,
            answered: false,
        };
        let reply = answer.await;
        waiter.answered = true;
        reply.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "the Redis command pipeline stopped"))
        })?
    }
}

impl ConnectionLike for AutoPipeline {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let request = Request::Command {
                bytes: cmd_bytes(cmd),
                cmd: cmd.clone(),
                reply,
            };
            self.queued(request, answer).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let request = Request::Pipeline {
                bytes: pipeline_bytes(pipeline),
                pipeline: pipeline.clone(),
                offset,
                count,
                reply,
            };
            self.queued(request, answer).await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// The pipelining task: takes what the queue holds while fewer batches than the window allows
/// are in flight, sends it as one pipeline on the current connection (the health task may have
/// replaced it), and hands each command its reply; ends once the backend is gone.
pub(crate) async fn serve(queue: Arc<CommandQueue>, commands: Weak<Commands>) {
    let mut in_flight: FuturesUnordered<BoxFuture<'static, bool>> = FuturesUnordered::new();
    // The connection the batches in flight went on, and whether it answered the last one.
    let mut generation = None;
    let mut proven = false;
    // The backend is still being built when this task starts (`commands` does not upgrade yet);
    // its first command comes once it is.
    queue.ready.notified().await;
    loop {
        let window = if proven { WINDOW } else { 1 };
        if in_flight.len() < window {
            let Some((current, conn)) = commands.upgrade().map(|c| c.current()) else {
                break;
            };
            // On a replaced connection, nothing is sent until the old one's batches are over.
            if generation == Some(current) || in_flight.is_empty() {
                let batch = queue.take(MAX_BATCH, BATCH_BYTES, |r| {
                    r.alone() || r.bytes() > DIRECT_BYTES
                });
                if !batch.is_empty() {
                    if generation != Some(current) {
                        generation = Some(current);
                        proven = false;
                    }
                    let mut sending = Box::pin(send(conn, batch));
                    // Polled once now: the batch takes its place on the connection before the
                    // next batch is formed.
                    match futures::poll!(sending.as_mut()) {
                        std::task::Poll::Ready(answered) => proven = answered,
                        std::task::Poll::Pending => in_flight.push(sending),
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            biased;
            Some(answered) = in_flight.next(), if !in_flight.is_empty() => proven = answered,
            () = queue.ready.notified() => {}
        }
    }
    // Let the batches already sent deliver their replies.
    while in_flight.next().await.is_some() {}
}

/// Whether `outcome` came from the server (a reply, or an error it answered with), which proves
/// the connection.
fn answered<T>(outcome: &RedisResult<T>) -> bool {
    outcome
        .as_ref()
        .err()
        .is_none_or(|e| !is_connection_error(e))
}

/// Sends `batch` on `conn` (one command or caller pipeline as itself, several commands as one
/// pipeline), delivers the replies, and says whether the server answered.
async fn send(mut conn: ConnectionManager, batch: Vec<Request>) -> bool {
    if let [_] = batch.as_slice() {
        match batch.into_iter().next().expect("one request") {
            Request::Command { cmd, reply, .. } => {
                let outcome = conn.req_packed_command(&cmd).await;
                let proven = answered(&outcome);
                let _ = reply.send(outcome);
                return proven;
            }
            Request::Pipeline {
                pipeline,
                offset,
                count,
                reply,
                ..
            } => {
                let outcome = conn.req_packed_commands(&pipeline, offset, count).await;
                let proven = answered(&outcome);
                let _ = reply.send(outcome);
                return proven;
            }
        }
    }
    let mut pipeline = Pipeline::with_capacity(batch.len());
    pipeline.ignore_errors();
    let mut replies = Vec::with_capacity(batch.len());
    for request in batch {
        // A caller pipeline always travels alone (see `Request::alone`).
        if let Request::Command { cmd, reply, .. } = request {
            pipeline.add_command(cmd);
            replies.push(reply);
        }
    }
    let outcome = conn.req_packed_commands(&pipeline, 0, replies.len()).await;
    let proven = answered(&outcome);
    match outcome {
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
    proven
}

#[cfg(test)]
#[path = "autopipeline_tests.rs"]
mod tests;
