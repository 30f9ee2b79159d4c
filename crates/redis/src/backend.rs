//! [`RedisBackend`]: the backend contract on Redis, its plain operations and its vacancies.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::runtime::Handle;
use wasi_cache_engine::{
    Backend, BoxFuture, Copies, Error, GetOrSet, Limits, Namespace, Result, Stats, VacancySlot,
    Within,
};

use crate::cluster::{cluster_client, lazy_connection, seed_handshake_failure};
use crate::config::{RedisConfig, RedisTarget};
use crate::connection::{ClusterCommands, Commands, Conn, Link, client, resp3_client};
use crate::counters::Counters;
use crate::errors::{
    cluster_error, cluster_timeout, is_connection_error, map_redis_error, timeout_error,
};
use crate::keys::Keys;
use crate::near::Near;
use crate::near::cluster::Masters;
use crate::near::tracking::Target;
use crate::pubsub::{PubSub, Source};
use crate::rendezvous::Flights;
use crate::scripts::Scripts;

/// Values up to this size are published inline to waiters; larger ones are announced only, and
/// waiters read them back (a TTL-0 fill is always published inline: it is never stored).
const INLINE_PUBLISH_MAX: usize = 256 << 10;

/// Longest value a script reads (a read or a claim): a Lua script copies what it reads into
/// Lua's memory, garbage until Lua's collector runs, so longer values are read by
/// [`Inner::read_range`] instead, which makes the server copy nothing but the reply.
pub(crate) const SCRIPT_READ_MAX: usize = 64 << 10;

/// The longest expiry the backend asks Redis for, in ms (about 139 years): Redis refuses an
/// expiry whose deadline overflows its clock, so longer TTLs and vacancy timeouts are clamped.
const MAX_PX: u128 = 1 << 42;

/// A cache backend on a Redis server (6 or later) or a Redis Cluster (7 or later), shareable
/// across hosts.
///
/// Cheap to clone; every clone shares one multiplexed command connection and one pub/sub
/// connection (both reconnected by themselves; on a cluster, one of each per node) and the
/// local rendezvous state. Must be created inside a Tokio runtime.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// The state behind a [`RedisBackend`].
pub(crate) struct Inner {
    commands: Link,
    /// The scripts, announcing as the target's pub/sub does.
    scripts: Scripts,
    pub(crate) pubsub: PubSub,
    /// The database the URL selects (0 on a cluster): part of every channel name.
    pub(crate) db: i64,
    pub(crate) flights: Flights,
    pub(crate) counters: Arc<Counters>,
    pub(crate) config: RedisConfig,
    runtime: Handle,
    /// Commands under way, and abandoned vacancies not yet released: what `settle` waits for.
    in_flight: Arc<AtomicUsize>,
    /// The near cache, with `RedisConfig::near_cache`.
    near: Option<Arc<Near>>,
}

/// Counts one piece of work in [`Inner::in_flight`] while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer of the claim script.
pub(crate) enum Claim {
    /// The key has this value.
    Value(Bytes),
    /// The lock was taken with the caller's token.
    Claimed,
    /// Another caller holds the lock for this much longer.
    Locked(Duration),
    /// The key has a value of this many bytes, more than the caller's limit: not read.
    TooLarge(usize),
}

/// What one backend call may hold of its key at once, in copies of it besides the caller's:
/// a `get-or-set` waiter's names (value, lock and channel, and the vacancy it may build on each
/// claim: 6), its flight's map entry and membership (2), the claim's command, its queued copy
/// and the batch it is packed into (3 × 2 names), the channel's subscription (the pub/sub
/// table's entry, its pending queue, the subscription handle and the SUBSCRIBE command: 4), and
/// on the server the command's input buffer (2 names), the lock key and the channel's entries
/// (3). Counted as 24: every other call holds fewer.
const KEY_COPIES: usize = 24;

/// What a `set` or fill holds of its value at once in this process besides the caller's own:
/// the script call's command and the write it is packed into (2). The command queue's copy of
/// the command is a third, not charged to the caller: it is bounded per host by the queue's own
/// bound (`QUEUE_BYTES` waiting, and the one batch in flight), so that the default value limit
/// stays writable under the default budget. On the server, the input buffer and the script's
/// argument (and, for a value published inline, the announcement) are as many again, for as
/// long as the write is in flight: what one instance's writes make the server hold is bounded
/// by its budget too, as they are charged three times.
const VALUE_COPIES: usize = 2;

/// The outcome of a read without a limit (`usize::MAX`: no value is refused).
fn unbounded<T>(read: Within<T>) -> Result<T> {
    match read {
        Within::Fits(outcome) => Ok(outcome),
        Within::TooLarge(len) => Err(Error::Backend(format!(
            "Redis refused a {len}-byte value as over an unlimited read"
        ))),
    }
}

/// The parsed reply of the [`READ`](crate::scripts) script.
fn read_reply(reply: redis::Value) -> Result<Within<Option<(Bytes, i64)>>> {
    use redis::Value as V;
    let unexpected = |other: &dyn std::fmt::Debug| {
        Error::Backend(format!("unexpected read script reply {other:?}"))
    };
    let V::Array(items) = reply else {
        return Err(unexpected(&reply));
    };
    let mut items = items.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(V::Int(0)), None, None) => Ok(Within::Fits(None)),
        (Some(V::Int(1)), Some(V::BulkString(value)), pttl) => {
            let pttl = match pttl {
                Some(V::Int(pttl)) => pttl,
                _ => -1,
            };
            Ok(Within::Fits(Some((Bytes::from(value), pttl))))
        }
        (Some(V::Int(2)), Some(V::Int(len)), None) => Ok(Within::TooLarge(len.max(0) as usize)),
        other => Err(unexpected(&other)),
    }
}

impl RedisBackend {
    /// What a call in flight holds of its key and value besides the caller's own (what
    /// [`Backend::copies`] answers), for embedders that check their limits before connecting.
    pub const COPIES: Copies = Copies {
        key: KEY_COPIES,
        value: VALUE_COPIES,
    };

    /// Connects to `config.url`, checks the server answers (PING), that the user may PUBLISH
    /// and SUBSCRIBE the backend's channels, and that the pub/sub connection is up, each within
    /// the op timeout.
    ///
    /// Fails with `Error::InvalidConfig` for a malformed URL or an ACL user without the channel
    /// rights (the message names what to grant), and `Error::Unavailable` or `Error::Timeout`
    /// when the server cannot be reached.
    /// On a cluster, PING goes to every master, and the channel check uses sharded pub/sub; when
    /// the masters cannot be reached, a failed TLS handshake with a seed is named as for one
    /// server.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let backend = Self::connect_lazy(config)?;
        if let Err(e) = backend.ping().await {
            let config = &backend.inner.config;
            if let (Error::Unavailable(_), RedisTarget::Cluster(seeds)) = (&e, &config.target) {
                let handshake = seed_handshake_failure(seeds, config.op_timeout, &config.tls).await;
                return Err(handshake.unwrap_or(e));
            }
            return Err(e);
        }
        crate::acl::check_channel_rights(&backend.inner).await?;
        backend.inner.pubsub.connected().await?;
        if let Some(near) = &backend.inner.near {
            near.tracking(backend.inner.config.op_timeout).await?;
        }
        Ok(backend)
    }

    /// Builds the backend without contacting the server; the first operations connect (and
    /// fail with `Error::Unavailable` while the server is unreachable).
    pub fn connect_lazy(config: RedisConfig) -> Result<Self> {
        let counters = Arc::new(Counters::default());
        let (op_timeout, tls) = (config.op_timeout, &config.tls);
        let (commands, near, source, db, publish) = match &config.target {
            RedisTarget::Server(url) => {
                let client = client(url, op_timeout, tls)?;
                let db = client.get_connection_info().redis_settings().db();
                let commands = Commands::start(client.clone(), op_timeout, counters.clone())?;
                let near = match config.near_cache {
                    Some(capacity) => Some(Near::start(
                        capacity,
                        config.limits,
                        Target::Server(resp3_client(url, op_timeout, tls)?),
                        op_timeout,
                        counters.clone(),
                    )?),
                    None => None,
                };
                (
                    Link::Server(commands),
                    near,
                    Source::Server(Box::new(client)),
                    db,
                    "PUBLISH",
                )
            }
            RedisTarget::Cluster(seeds) => {
                let commands = cluster_client(seeds, op_timeout, tls, None)?;
                let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
                let subscriber = cluster_client(seeds, op_timeout, tls, Some(pushes))?;
                let source = Source::Cluster(lazy_connection(&subscriber, op_timeout), received);
                let conn = lazy_connection(&commands, op_timeout);
                let near = match config.near_cache {
                    Some(capacity) => {
                        // Seeds were checked by `cluster_client`: there is one.
                        let masters =
                            Masters::new(conn.clone(), seeds[0].clone(), tls.clone(), op_timeout);
                        Some(Near::start(
                            capacity,
                            config.limits,
                            Target::Cluster(masters),
                            op_timeout,
                            counters.clone(),
                        )?)
                    }
                    None => None,
                };
                let commands = ClusterCommands::start(conn, op_timeout);
                (Link::Cluster(commands), near, source, 0, "SPUBLISH")
            }
        };
        let pubsub = PubSub::start(source, op_timeout, counters.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                scripts: Scripts::new(publish),
                pubsub,
                db,
                flights: Flights::default(),
                counters,
                config,
                runtime: Handle::current(),
                in_flight: Arc::new(AtomicUsize::new(0)),
                near,
            }),
        })
    }

    /// The configuration this backend was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The command queue as it stands: what waits to be sent (on a cluster, what redis-rs
    /// holds), at most [`QUEUE_COMMANDS`](crate::QUEUE_COMMANDS) commands and
    /// [`QUEUE_BYTES`](crate::QUEUE_BYTES) bytes, and what was sent, discarded and refused.
    pub fn command_queue(&self) -> crate::CommandQueueStats {
        self.inner.commands.queue_stats()
    }
}

impl Inner {
    /// A handle on the command connection.
    pub(crate) fn conn(&self) -> Conn {
        self.commands.get()
    }

    /// Whether the backend is on a Redis Cluster.
    pub(crate) fn on_cluster(&self) -> bool {
        matches!(self.commands, Link::Cluster(_))
    }

    /// The names of `key` in `ns` (on this backend's database).
    pub(crate) fn keys(&self, ns: &Namespace, key: &[u8]) -> Keys {
        Keys::new(self.db, ns, key)
    }

    /// Marks the command connection broken (the next success is a reconnect) and asks for a
    /// health check now.
    fn connection_failed(&self) {
        self.counters
            .broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.commands.suspect();
    }

    /// Runs one Redis command (one round trip), bounded by the op timeout.
    async fn op<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let _in_flight = InFlight::enter(&self.in_flight);
        Counters::bump(&self.counters.round_trips);
        let limit = self.config.op_timeout;
        let outcome = tokio::time::timeout(limit, fut).await;
        let result = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    self.connection_failed();
                }
                Err(if self.on_cluster() {
                    cluster_error(&e)
                } else {
                    map_redis_error(&e)
                })
            }
            Err(_) => {
                self.connection_failed();
                Err(if self.on_cluster() {
                    cluster_timeout(limit)
                } else {
                    timeout_error(limit)
                })
            }
        };
        if result.is_ok()
            && self
                .counters
                .broken
                .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            Counters::bump(&self.counters.reconnects);
        }
        result
    }

    /// Runs the claim script with `token`, reading a present value only if it is at most
    /// `limit` bytes (and [`SCRIPT_READ_MAX`]: a longer one is answered with its length, for
    /// [`read_range`](Self::read_range)).
    pub(crate) async fn claim(&self, keys: &Keys, token: &str, limit: usize) -> Result<Claim> {
        let mut conn = self.conn();
        let px = self.config.vacancy_timeout.as_millis().clamp(1, MAX_PX) as i64;
        let script = &self.scripts.claim;
        let mut call = script.call(&[&keys.value, &keys.lock]);
        call.arg(token).arg(px).arg(limit.min(SCRIPT_READ_MAX));
        let reply: redis::Value = self.op(script.run(&mut conn, &keys.value, &call)).await?;
        use redis::Value as V;
        match reply {
            // Taken apart by value: the reply's bytes become the value without a copy.
            V::Array(items) if matches!(items.as_slice(), [V::Int(1), V::BulkString(_)]) => {
                match items.into_iter().nth(1) {
                    Some(V::BulkString(value)) => Ok(Claim::Value(Bytes::from(value))),
                    other => Err(Error::Backend(format!(
                        "unexpected claim script reply {other:?}"
                    ))),
                }
            }
            V::Array(items) => match items.as_slice() {
                [V::Int(2)] => Ok(Claim::Claimed),
                [V::Int(4), V::Int(len)] => Ok(Claim::TooLarge((*len).max(0) as usize)),
                [V::Int(3), V::Int(pttl)] => Ok(Claim::Locked(if *pttl > 0 {
                    Duration::from_millis(*pttl as u64)
                } else if *pttl == -1 {
                    // A lock without expiry was not set by us: wait a vacancy timeout.
                    self.config.vacancy_timeout
                } else {
                    // Gone right now: re-claim soon.
                    Duration::from_millis(1)
                })),
                other => Err(Error::Backend(format!(
                    "unexpected claim script reply {other:?}"
                ))),
            },
            other => Err(Error::Backend(format!(
                "unexpected claim script reply {other:?}"
            ))),
        }
    }

    /// Stores `value` (a plain set with an empty token, or a fill), wakes the key's waiters on
    /// every host and resolves its local flight. Only returns `Ok` once Redis confirmed.
    async fn store(
        &self,
        keys: &Keys,
        token: &str,
        value: &Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let ttl_arg = match ttl {
            None => String::new(),
            Some(d) if d.is_zero() => "0".to_owned(),
            // Round up: a non-zero TTL below 1 ms must not become "never visible".
            Some(d) => d.as_millis().clamp(1, MAX_PX).to_string(),
        };
        let zero = ttl.is_some_and(|d| d.is_zero());
        let inline = if zero || value.len() <= INLINE_PUBLISH_MAX {
            "1"
        } else {
            "0"
        };
        let mut conn = self.conn();
        let script = &self.scripts.store;
        let mut call = script.call(&[&keys.value, &keys.lock, &keys.channel]);
        call.arg(token).arg(&value[..]).arg(ttl_arg).arg(inline);
        let stored: Result<i64> = self.op(script.run(&mut conn, &keys.value, &call)).await;
        // Even a failed write may have reached Redis.
        self.forget_near(&keys.value);
        stored?;
        if !zero {
            Counters::bump(&self.counters.inserts);
        }
        self.flights.resolve(&keys.value, value);
        Ok(())
    }

    /// Drops the near entry of the value key `value_key` (this host wrote it).
    fn forget_near(&self, value_key: &[u8]) {
        if let Some(near) = &self.near
            && let Some(enc) = Keys::encoded_of_value_key(value_key)
        {
            near.forget(enc);
        }
    }

    /// The near cache's entry for `key` in `ns` (counted as a hit by the near cache); `None`
    /// without a near cache, or when it has none.
    fn near_hit(&self, ns: &Namespace, key: &[u8]) -> Option<Bytes> {
        self.near.as_ref()?.lookup(ns, key)
    }

    /// A `get` of at most `limit` bytes through the near cache: its entry (whatever its size:
    /// it is in memory already), or the value and TTL from Redis (one round trip), kept if no
    /// invalidation of the key came in the meantime.
    async fn get_through(
        &self,
        near: &Near,
        ns: &Namespace,
        key: &[u8],
        limit: usize,
    ) -> Result<Within<Option<Bytes>>> {
        if let Some(found) = near.lookup(ns, key) {
            return Ok(Within::Fits(Some(found)));
        }
        let enc = ns.encode_key(key);
        let fetch = near.begin(&enc);
        let value_key = Keys::encoded_value_key(&enc);
        let sent = Instant::now();
        let found = match self.read(&value_key, limit, true).await? {
            Within::Fits(found) => found,
            Within::TooLarge(len) => return Ok(Within::TooLarge(len)),
        };
        let value = found.map(|(value, pttl)| {
            if let Some(fetch) = fetch {
                fetch.finish(&value, pttl, sent.elapsed());
            }
            value
        });
        Ok(Within::Fits(value))
    }

    /// Reads the value at `value_key` if it is at most `limit` bytes (with its PTTL if `pttl`),
    /// counting the hit or miss; a longer value is not read (nor counted).
    async fn read(
        &self,
        value_key: &[u8],
        limit: usize,
        pttl: bool,
    ) -> Result<Within<Option<(Bytes, i64)>>> {
        // The transaction only where it is needed and safe: a bounded read of a long value on
        // one server. redis-rs does not follow a cluster's MOVED inside a transaction (after a
        // failover every such read would fail until the slot map changed again), and an
        // unbounded read (callers other than a guest's) has no reservation to protect.
        let ranged = limit > SCRIPT_READ_MAX && limit != usize::MAX && !self.on_cluster();
        let read = if ranged {
            self.read_range(value_key, limit).await?
        } else {
            self.read_script(value_key, limit, pttl).await?
        };
        if let Within::Fits(found) = &read {
            Counters::bump(if found.is_some() {
                &self.counters.hits
            } else {
                &self.counters.misses
            });
        }
        Ok(read)
    }

    /// A value of at most `limit` bytes (and its PTTL) read as one transaction of STRLEN, a
    /// GETRANGE of its first `limit` bytes and PTTL: the server copies at most `limit` bytes
    /// into the reply (and none into Lua), and a value longer than `limit` is answered with its
    /// length, its first bytes dropped here. Not batched: its reply is large anyway.
    pub(crate) async fn read_range(
        &self,
        value_key: &[u8],
        limit: usize,
    ) -> Result<Within<Option<(Bytes, i64)>>> {
        let mut conn = self.conn();
        let last = limit.saturating_sub(1).min(i64::MAX as usize) as i64;
        let (len, value, pttl): (i64, Vec<u8>, i64) = self
            .op(redis::pipe()
                .atomic()
                .cmd("STRLEN")
                .arg(value_key)
                .cmd("GETRANGE")
                .arg(value_key)
                .arg(0)
                .arg(last)
                .cmd("PTTL")
                .arg(value_key)
                .query_async(&mut conn))
            .await?;
        let len = len.max(0) as usize;
        Ok(if pttl == -2 {
            Within::Fits(None)
        } else if len > limit || value.len() != len {
            Within::TooLarge(len)
        } else {
            Within::Fits(Some((Bytes::from(value), pttl)))
        })
    }

    /// [`read`](Self::read) by the [`READ`](crate::scripts) script: one command, batched with
    /// others; the script copies the value (at most `limit` bytes) into Lua's memory.
    async fn read_script(
        &self,
        value_key: &[u8],
        limit: usize,
        pttl: bool,
    ) -> Result<Within<Option<(Bytes, i64)>>> {
        let mut conn = self.conn();
        let script = &self.scripts.read;
        let mut call = script.call(&[value_key]);
        call.arg(limit).arg(if pttl { "1" } else { "0" });
        let reply: redis::Value = self.op(script.run(&mut conn, value_key, &call)).await?;
        read_reply(reply)
    }

    /// Releases an abandoned vacancy's lock if still ours and wakes the waiters.
    async fn abandon(&self, keys: &Keys, token: &str) {
        let mut conn = self.conn();
        let script = &self.scripts.abandon;
        let mut call = script.call(&[&keys.lock, &keys.channel]);
        call.arg(token);
        let result: Result<i64> = self.op(script.run(&mut conn, &keys.lock, &call)).await;
        match result {
            Ok(told) if told > 1 => Counters::bump(&self.counters.handoffs),
            Ok(_) => {}
            // The lock expires on its own after the vacancy timeout.
            Err(e) => tracing::debug!("abandoning a Redis vacancy failed: {e}"),
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        if let Some(near) = &inner.near {
            return unbounded(inner.get_through(near, ns, key, usize::MAX).await?);
        }
        let mut conn = inner.conn();
        let value: Option<Vec<u8>> = inner
            .op(redis::cmd("GET")
                .arg(Keys::value_key(ns, key))
                .query_async(&mut conn))
            .await?;
        Counters::bump(if value.is_some() {
            &inner.counters.hits
        } else {
            &inner.counters.misses
        });
        Ok(value.map(Bytes::from))
    }

    async fn get_within(
        &self,
        ns: &Namespace,
        key: &[u8],
        limit: usize,
    ) -> Result<Within<Option<Bytes>>> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        if let Some(near) = &inner.near {
            return inner.get_through(near, ns, key, limit).await;
        }
        let read = inner.read(&Keys::value_key(ns, key), limit, false).await?;
        Ok(match read {
            Within::Fits(found) => Within::Fits(found.map(|(value, _)| value)),
            Within::TooLarge(len) => Within::TooLarge(len),
        })
    }

    async fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        if inner.near_hit(ns, key).is_some() {
            return Ok(true);
        }
        let mut conn = inner.conn();
        let n: i64 = inner
            .op(redis::cmd("EXISTS")
                .arg(Keys::value_key(ns, key))
                .query_async(&mut conn))
            .await?;
        Counters::bump(if n > 0 {
            &inner.counters.hits
        } else {
            &inner.counters.misses
        });
        Ok(n > 0)
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        inner.config.limits.check_value(value.len())?;
        inner.store(&inner.keys(ns, key), "", &value, ttl).await
    }

    async fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<()> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        let mut conn = inner.conn();
        let value_key = Keys::value_key(ns, key);
        let deleted = inner
            .op(redis::cmd("DEL")
                .arg(&value_key)
                .query_async::<i64>(&mut conn))
            .await;
        inner.forget_near(&value_key);
        deleted.map(drop)
    }

    async fn get_or_set(&self, ns: &Namespace, key: &[u8]) -> Result<GetOrSet> {
        self.inner.config.limits.check_key(key)?;
        if let Some(found) = self.inner.near_hit(ns, key) {
            return Ok(GetOrSet::Occupied(found));
        }
        let got = self
            .inner
            .get_or_set(self.inner.keys(ns, key), usize::MAX)
            .await?;
        unbounded(got)
    }

    async fn get_or_set_within(
        &self,
        ns: &Namespace,
        key: &[u8],
        limit: usize,
    ) -> Result<Within<GetOrSet>> {
        self.inner.config.limits.check_key(key)?;
        if let Some(found) = self.inner.near_hit(ns, key) {
            return Ok(Within::Fits(GetOrSet::Occupied(found)));
        }
        self.inner.get_or_set(self.inner.keys(ns, key), limit).await
    }

    fn copies(&self) -> Copies {
        Self::COPIES
    }

    async fn settle(&self, limit: Duration) {
        let drained = async {
            while self.inner.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = tokio::time::timeout(limit, drained).await;
    }

    /// Checks the server, or every master of the cluster, answers within the op timeout.
    async fn ping(&self) -> Result<()> {
        let mut conn = self.inner.conn();
        self.inner.op(conn.ping()).await
    }

    fn stats(&self) -> Stats {
        let mut stats = self.inner.counters.snapshot();
        if let Some(near) = &self.inner.near {
            near.add_stats(&mut stats);
        }
        stats
    }

    fn limits(&self) -> Limits {
        self.inner.config.limits
    }
}

/// A vacancy held through a Redis lock token; dropping it unfilled abandons it.
pub(crate) struct RedisVacancy {
    inner: Arc<Inner>,
    keys: Keys,
    token: String,
    /// Whether the lock may still be ours (not filled yet).
    live: bool,
}

impl RedisVacancy {
    /// The vacancy of the caller that took the lock with `token`.
    pub(crate) fn new(inner: Arc<Inner>, keys: Keys, token: String) -> Self {
        Self {
            inner,
            keys,
            token,
            live: true,
        }
    }

    /// The lock token this vacancy holds (or may hold, while its claim is in flight).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Forgets the lock: the claim did not take it, so dropping must not release anything.
    pub(crate) fn disarm(&mut self) {
        self.live = false;
    }
}

impl VacancySlot for RedisVacancy {
    fn fill(
        mut self: Box<Self>,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            // A refused or failed fill drops `self`, which abandons (hands off) the vacancy.
            self.inner.config.limits.check_value(value.len())?;
            let inner = self.inner.clone();
            inner.store(&self.keys, &self.token, &value, ttl).await?;
            self.live = false;
            Counters::bump(&inner.counters.fills);
            Ok(())
        })
    }
}

impl Drop for RedisVacancy {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let inner = self.inner.clone();
        let keys = self.keys.clone();
        let token = std::mem::take(&mut self.token);
        // Counted from now, not from the task's first poll, so `settle` cannot miss it.
        let in_flight = InFlight::enter(&self.inner.in_flight);
        self.inner.runtime.spawn(async move {
            inner.abandon(&keys, &token).await;
            drop(in_flight);
        });
    }
}
