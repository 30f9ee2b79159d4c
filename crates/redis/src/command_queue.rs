//! The bound on what a backend's command connection holds for callers: commands waiting to be
//! sent, counted in commands and argument bytes, refused with a clear error beyond it.
//!
//! Without a bound, callers that give up (a dropped future, a timeout) while Redis is slow or
//! frozen leave their commands behind faster than they drain: the queue is where a flood of
//! cheap calls becomes gigabytes of memory. So a full queue refuses the command at once (an
//! `Error::Unavailable` to that caller), and commands whose caller is gone are discarded before
//! they are sent, or first of all when the queue is full. One server's queue is the automatic
//! pipeline's ([`Queue`]); a cluster's commands are counted from the caller's first poll until
//! redis-rs is done with them ([`Gate`]), which is what its own queues hold.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError};
use tokio::sync::Notify;

/// Most commands waiting to be sent on one backend's command connection: room for thousands of
/// guests' concurrent calls (each instance may have 4,096 in flight), while the bytes they hold
/// stay bounded by [`QUEUE_BYTES`].
pub const QUEUE_COMMANDS: usize = 16_384;
/// Most argument bytes waiting to be sent on one backend's command connection: twice the
/// default value limit, so a value at the limit still finds room behind others. One command
/// larger than this is taken only into an empty queue.
pub const QUEUE_BYTES: usize = 32 << 20;

/// The first words of the error a full queue gives.
const FULL: &str = "the Redis command queue of this host is full";

/// The error of a command refused by a full queue holding `commands` commands of `bytes` bytes.
fn full_error(commands: usize, bytes: usize) -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        FULL,
        format!(
            "{commands} commands ({bytes} bytes) wait to be sent, the most is {QUEUE_COMMANDS} \
             commands or {QUEUE_BYTES} bytes: Redis is slow or unreachable; try again later"
        ),
    ))
}

/// What a full queue's error says, when `e` is one.
pub(crate) fn queue_full(e: &RedisError) -> Option<String> {
    let text = e.to_string();
    (e.kind() == ErrorKind::Client && text.starts_with(FULL)).then_some(text)
}

/// The argument bytes of `cmd`.
pub(crate) fn cmd_bytes(cmd: &Cmd) -> usize {
    cmd.args_iter()
        .map(|arg| match arg {
            Arg::Simple(a) => a.len(),
            _ => 0,
        })
        .sum()
}

/// The argument bytes of every command of `pipeline`.
pub(crate) fn pipeline_bytes(pipeline: &Pipeline) -> usize {
    pipeline.cmd_iter().map(cmd_bytes).sum()
}

/// A backend's command queue as it stands: what waits now, and what happened to commands so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandQueueStats {
    /// Commands waiting now (on a cluster: handed to redis-rs and not answered yet).
    pub commands: usize,
    /// Their argument bytes.
    pub bytes: usize,
    /// The most commands that ever waited at once.
    pub peak_commands: usize,
    /// The most argument bytes that ever waited at once.
    pub peak_bytes: usize,
    /// Commands sent to Redis.
    pub sent: u64,
    /// Commands discarded unsent because their caller was gone.
    pub discarded: u64,
    /// Commands refused because the queue was full.
    pub refused: u64,
}

/// One waiting item: something that knows its size and whether its caller still waits.
pub(crate) trait Waiting {
    /// Argument bytes it holds.
    fn bytes(&self) -> usize;
    /// Commands it holds.
    fn commands(&self) -> usize;
    /// Whether nobody waits for its reply any more.
    fn abandoned(&self) -> bool;
}

/// A bounded FIFO of waiting items of one server's command connection, and the task's doorbell.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Rung when an item arrives.
    pub(crate) ready: Notify,
    /// Callers that gave up while queued since the last purge: a full queue purges only then.
    gave_up: AtomicUsize,
    sent: AtomicU64,
    discarded: AtomicU64,
    refused: AtomicU64,
}

/// The items and their totals.
struct State<T> {
    items: VecDeque<T>,
    commands: usize,
    bytes: usize,
    peak_commands: usize,
    peak_bytes: usize,
}

impl<T: Waiting> Queue<T> {
    /// An empty queue.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                commands: 0,
                bytes: 0,
                peak_commands: 0,
                peak_bytes: 0,
            }),
            ready: Notify::new(),
            gave_up: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Queues `item`, or refuses it (handing it back with the error) when the queue is full even
    /// without the items whose caller is gone.
    pub(crate) fn push(&self, item: T) -> Result<(), (T, RedisError)> {
        let mut state = self.state.lock();
        if !state.fits(&item) && self.gave_up.swap(0, Ordering::Relaxed) > 0 {
            let before = state.items.len();
            state.items.retain(|i| !i.abandoned());
            state.commands = state.items.iter().map(Waiting::commands).sum();
            state.bytes = state.items.iter().map(Waiting::bytes).sum();
            let purged = (before - state.items.len()) as u64;
            self.discarded.fetch_add(purged, Ordering::Relaxed);
        }
        if !state.fits(&item) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let error = full_error(state.commands, state.bytes);
            return Err((item, error));
        }
        state.commands += item.commands();
        state.bytes += item.bytes();
        state.peak_commands = state.peak_commands.max(state.commands);
        state.peak_bytes = state.peak_bytes.max(state.bytes);
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Counts a caller that gave up on a queued item (so a full queue looks for it).
    pub(crate) fn gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the next batch in order: the items whose caller still waits, up to `max_commands`
    /// commands and `max_bytes` bytes (the last item may cross the byte mark, and the first is
    /// always taken), stopping before an item `alone` says must travel by itself unless it is
    /// the first (which then travels alone). Abandoned items met on the way are discarded.
    pub(crate) fn take(
        &self,
        max_commands: usize,
        max_bytes: usize,
        alone: impl Fn(&T) -> bool,
    ) -> Vec<T> {
        let mut state = self.state.lock();
        let mut batch: Vec<T> = Vec::new();
        let (mut commands, mut bytes, mut discarded) = (0, 0, 0);
        while let Some(front) = state.items.front() {
            let abandoned = front.abandoned();
            if !abandoned && !batch.is_empty() && (alone(front) || alone(&batch[0])) {
                break;
            }
            let item = state.items.pop_front().expect("a front item");
            state.commands -= item.commands();
            state.bytes -= item.bytes();
            if abandoned {
                discarded += 1;
                continue;
            }
            commands += item.commands();
            bytes += item.bytes();
            batch.push(item);
            if commands >= max_commands || bytes >= max_bytes {
                break;
            }
        }
        drop(state);
        self.discarded.fetch_add(discarded, Ordering::Relaxed);
        self.sent.fetch_add(commands as u64, Ordering::Relaxed);
        batch
    }

    /// The queue as it stands.
    pub(crate) fn stats(&self) -> CommandQueueStats {
        let state = self.state.lock();
        CommandQueueStats {
            commands: state.commands,
            bytes: state.bytes,
            peak_commands: state.peak_commands,
            peak_bytes: state.peak_bytes,
            sent: self.sent.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

impl<T: Waiting> State<T> {
    /// Whether `item` may join: within both bounds, or alone in an empty queue.
    fn fits(&self, item: &T) -> bool {
        self.items.is_empty()
            || (self.commands + item.commands() <= QUEUE_COMMANDS
                && self.bytes + item.bytes() <= QUEUE_BYTES)
    }
}

/// The bound on a cluster's commands: counted from the caller's first poll until redis-rs
/// answered or gave up (its queues hold a command that long, whether or not its caller waits).
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<(usize, usize, usize, usize)>,
    sent: AtomicU64,
    refused: AtomicU64,
}

/// A command counted by a [`Gate`] while it lives.
pub(crate) struct Admitted {
    gate: Arc<Gate>,
    bytes: usize,
}

impl Gate {
    /// Counts a command of `bytes` bytes, or refuses it when the gate is full (a command larger
    /// than [`QUEUE_BYTES`] is let through only when nothing else is under way).
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Result<Admitted, RedisError> {
        let mut state = self.state.lock();
        let (commands, held, peak_commands, peak_bytes) = *state;
        if commands > 0 && (commands + 1 > QUEUE_COMMANDS || held + bytes > QUEUE_BYTES) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(full_error(commands, held));
        }
        *state = (
            commands + 1,
            held + bytes,
            peak_commands.max(commands + 1),
            peak_bytes.max(held + bytes),
        );
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            gate: self.clone(),
            bytes,
        })
    }

    /// The gate as it stands.
    pub(crate) fn stats(&self) -> CommandQueueStats {
        let (commands, bytes, peak_commands, peak_bytes) = *self.state.lock();
        CommandQueueStats {
            commands,
            bytes,
            peak_commands,
            peak_bytes,
            sent: self.sent.load(Ordering::Relaxed),
            discarded: 0,
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        state.0 -= 1;
        state.1 -= self.bytes;
    }
}
