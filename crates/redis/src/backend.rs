//! [`RedisBackend`]: the backend contract on Redis, its plain operations and its vacancies.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Handle;
use wasi_cache_engine::{
    Backend, BoxFuture, Error, GetOrSet, Limits, Namespace, Result, Stats, VacancySlot,
};

use crate::config::RedisConfig;
use crate::counters::Counters;
use crate::errors::{is_connection_error, map_redis_error, timeout_error};
use crate::keys::Keys;
use crate::pubsub::PubSub;
use crate::rendezvous::Flights;
use crate::scripts::{ABANDON, CLAIM, STORE};

/// Values up to this size are published inline to waiters; larger ones are announced only, and
/// waiters read them back (a TTL-0 fill is always published inline: it is never stored).
const INLINE_PUBLISH_MAX: usize = 256 << 10;

/// A cache backend on a Redis server (6 or later), shareable across hosts.
///
/// Cheap to clone; every clone shares one multiplexed connection (reconnected by itself), one
/// pub/sub connection and the local rendezvous state. Must be created inside a Tokio runtime.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// The state behind a [`RedisBackend`].
pub(crate) struct Inner {
    conn: ConnectionManager,
    pub(crate) pubsub: PubSub,
    pub(crate) flights: Flights,
    pub(crate) counters: Arc<Counters>,
    pub(crate) config: RedisConfig,
    runtime: Handle,
    /// Commands under way, and abandoned vacancies not yet released: what `settle` waits for.
    in_flight: Arc<AtomicUsize>,
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
}

impl RedisBackend {
    /// Connects to `config.url` and checks the server answers (PING) within the op timeout.
    ///
    /// Fails with `Error::InvalidConfig` for a malformed URL and `Error::Unavailable` or
    /// `Error::Timeout` when the server cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let backend = Self::connect_lazy(config)?;
        backend.ping().await?;
        Ok(backend)
    }

    /// Builds the backend without contacting the server; the first operations connect (and
    /// fail with `Error::Unavailable` while the server is unreachable).
    pub fn connect_lazy(config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            Error::InvalidConfig(format!("invalid Redis URL {:?}: {e}", config.url))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| Error::InvalidConfig(format!("Redis connection settings: {e}")))?;
        let counters = Arc::new(Counters::default());
        let pubsub = PubSub::start(client, config.op_timeout, counters.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                pubsub,
                flights: Flights::default(),
                counters,
                config,
                runtime: Handle::current(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }

    /// Checks the server answers within the op timeout.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.inner.conn.clone();
        self.inner
            .op(redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    /// The configuration this backend was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }
}

impl Inner {
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
                    self.counters
                        .broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(map_redis_error(&e))
            }
            Err(_) => {
                self.counters
                    .broken
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Err(timeout_error(limit))
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

    /// Runs the claim script with `token`.
    pub(crate) async fn claim(&self, keys: &Keys, token: &str) -> Result<Claim> {
        let mut conn = self.conn.clone();
        let px = self
            .config
            .vacancy_timeout
            .as_millis()
            .clamp(1, i64::MAX as u128) as i64;
        let reply: redis::Value = self
            .op(CLAIM
                .key(&keys.value)
                .key(&keys.lock)
                .arg(token)
                .arg(px)
                .invoke_async(&mut conn))
            .await?;
        use redis::Value as V;
        match reply {
            V::Array(items) => match items.as_slice() {
                [V::Int(1), V::BulkString(value)] => Ok(Claim::Value(Bytes::from(value.clone()))),
                [V::Int(2)] => Ok(Claim::Claimed),
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
            Some(d) => d.as_millis().clamp(1, i64::MAX as u128).to_string(),
        };
        let zero = ttl.is_some_and(|d| d.is_zero());
        let inline = if zero || value.len() <= INLINE_PUBLISH_MAX {
            "1"
        } else {
            "0"
        };
        let mut conn = self.conn.clone();
        let _owned: i64 = self
            .op(STORE
                .key(&keys.value)
                .key(&keys.lock)
                .key(&keys.channel)
                .arg(token)
                .arg(&value[..])
                .arg(ttl_arg)
                .arg(inline)
                .invoke_async(&mut conn))
            .await?;
        if !zero {
            Counters::bump(&self.counters.inserts);
        }
        self.flights.resolve(&keys.value, value);
        Ok(())
    }

    /// Releases an abandoned vacancy's lock if still ours and wakes the waiters.
    async fn abandon(&self, keys: &Keys, token: &str) {
        let mut conn = self.conn.clone();
        let result: Result<i64> = self
            .op(ABANDON
                .key(&keys.lock)
                .key(&keys.channel)
                .arg(token)
                .invoke_async(&mut conn))
            .await;
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
        let mut conn = inner.conn.clone();
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

    async fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        let mut conn = inner.conn.clone();
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
        inner.store(&Keys::new(ns, key), "", &value, ttl).await
    }

    async fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<()> {
        let inner = &self.inner;
        inner.config.limits.check_key(key)?;
        let mut conn = inner.conn.clone();
        inner
            .op(redis::cmd("DEL")
                .arg(Keys::value_key(ns, key))
                .query_async::<i64>(&mut conn))
            .await?;
        Ok(())
    }

    async fn get_or_set(&self, ns: &Namespace, key: &[u8]) -> Result<GetOrSet> {
        self.inner.config.limits.check_key(key)?;
        self.inner.get_or_set(Keys::new(ns, key)).await
    }

    async fn settle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.inner.in_flight.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
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
