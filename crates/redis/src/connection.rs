//! The backend's client settings and its command connection, kept healthy.
//!
//! Both connections (commands and pub/sub) use TCP keepalive and `TCP_USER_TIMEOUT`, so the
//! kernel gives up on a peer that stopped acknowledging. That does not catch a path that still
//! acknowledges but never answers (a proxy or a failover in between), so each connection is also
//! PINGed every op timeout: the command connection here, the pub/sub connection by its
//! dispatcher. A PING without an answer within the op timeout replaces the connection, so a
//! silently dead one is gone within about twice the op timeout (sooner when an operation timed
//! out first: that asks for a check at once).

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisFuture, RedisResult};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wasi_cache_engine::{Error, Result};

use crate::autopipeline::{self, AutoPipeline, CommandQueue};
use crate::cluster::Topology;
use crate::command_queue::{Admitted, CommandQueueStats, Gate, Queue, cmd_bytes, pipeline_bytes};
use crate::counters::Counters;
use crate::errors::is_connection_error;
use crate::tls::{RedisTls, build_client};

/// The TCP settings of every connection: keepalive and user timeout derived from `op_timeout`.
pub(crate) fn tcp_settings(op_timeout: Duration) -> TcpSettings {
    // Keepalive counts whole seconds (at least one); the kernel refuses very long periods.
    let probe_every =
        Duration::from_secs(op_timeout.as_secs_f64().ceil().clamp(1.0, 3600.0) as u64);
    let keepalive = TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every)
        .with_retries(2);
    let tcp = TcpSettings::default().set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let tcp = tcp.set_user_timeout(
        op_timeout
            .saturating_mul(2)
            .clamp(Duration::from_secs(1), Duration::from_secs(7200)),
    );
    tcp
}

/// A redis-rs client for `url`, with [`tcp_settings`], and TLS with `tls` for a `rediss://` URL
/// (both connections are made with it).
pub(crate) fn client(url: &str, op_timeout: Duration, tls: &RedisTls) -> Result<redis::Client> {
    client_speaking(url, op_timeout, tls, None, None)
}

/// [`client`] speaking RESP3, whose connections can receive push messages (the near cache's
/// invalidations); the other connections stay on RESP2, which every server speaks.
pub(crate) fn resp3_client(
    url: &str,
    op_timeout: Duration,
    tls: &RedisTls,
) -> Result<redis::Client> {
    client_speaking(
        url,
        op_timeout,
        tls,
        Some(redis::ProtocolVersion::RESP3),
        None,
    )
}

/// [`resp3_client`] for the cluster node at `host:port`, with the scheme and credentials of the
/// seed URL `seed` (the nodes of a cluster share them).
pub(crate) fn resp3_node_client(
    seed: &str,
    host: &str,
    port: u16,
    op_timeout: Duration,
    tls: &RedisTls,
) -> Result<redis::Client> {
    let resp3 = Some(redis::ProtocolVersion::RESP3);
    client_speaking(seed, op_timeout, tls, resp3, Some((host, port)))
}

/// [`client`], speaking the RESP version `protocol` instead of the URL's (RESP2 by default),
/// and connecting to `node` instead of the URL's host and port when given.
fn client_speaking(
    url: &str,
    op_timeout: Duration,
    tls: &RedisTls,
    protocol: Option<redis::ProtocolVersion>,
    node: Option<(&str, u16)>,
) -> Result<redis::Client> {
    let invalid =
        |e: redis::RedisError| Error::InvalidConfig(format!("invalid Redis URL {url:?}: {e}"));
    let mut info = url.into_connection_info().map_err(invalid)?;
    if let Some((host, port)) = node {
        let addr = match info.addr() {
            ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        info = info.set_addr(addr);
    }
    let info = match protocol {
        Some(protocol) => {
            let settings = info.redis_settings().clone().set_protocol(protocol);
            info.set_redis_settings(settings)
        }
        None => info,
    };
    build_client(info.set_tcp_settings(tcp_settings(op_timeout)), tls)
}

/// A handle on the command connection, whichever the target: every operation, script and
/// health check is written once against it.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server's connection, pipelining concurrent commands.
    Server(AutoPipeline),
    /// A cluster's connection, routing each command to the node serving its key's slot; its
    /// commands are counted by the gate while redis-rs holds them.
    Cluster(ClusterConnection, Arc<Gate>),
}

impl Conn {
    /// Loads the script `code` where `key` lives: the server, or the node serving its slot
    /// (redis-rs's own fallback loads it on every node, which fails while any node is down).
    pub(crate) async fn load_script(&mut self, code: &str, key: &[u8]) -> RedisResult<()> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(code);
        let _sha: redis::Value = match self {
            Self::Server(conn) => load.query_async(conn).await?,
            Self::Cluster(conn, _) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(load, routing).await?
            }
        };
        Ok(())
    }

    /// PINGs the server, or every master of the cluster (each must answer).
    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Server(conn) => ping.query_async(conn).await,
            Self::Cluster(conn, _) => crate::cluster::ping_masters(conn).await,
        }
    }
}

/// Runs `request` (a cluster command holding `admitted`) in a task of its own, so that it stays
/// counted for as long as redis-rs holds it, even after its caller gave up.
async fn counted<T: Send + 'static>(
    admitted: Admitted,
    request: impl std::future::Future<Output = RedisResult<T>> + Send + 'static,
) -> RedisResult<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let outcome = request.await;
        drop(admitted);
        let _ = reply.send(outcome);
    });
    answer.await.map_err(|_| {
        redis::RedisError::from((redis::ErrorKind::Io, "the Redis Cluster connection stopped"))
    })?
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Self::Server(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn, gate) => {
                let admitted = gate.admit(cmd_bytes(cmd));
                let (mut conn, cmd) = (conn.clone(), cmd.clone());
                Box::pin(async move {
                    let request = async move { conn.req_packed_command(&cmd).await };
                    counted(admitted?, request).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn, gate) => {
                let admitted = gate.admit(pipeline_bytes(pipeline));
                let (mut conn, pipeline) = (conn.clone(), pipeline.clone());
                Box::pin(async move {
                    let request =
                        async move { conn.req_packed_commands(&pipeline, offset, count).await };
                    counted(admitted?, request).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(conn) => conn.get_db(),
            Self::Cluster(conn, _) => conn.get_db(),
        }
    }
}

/// The command connection of either target, health-checked.
pub(crate) enum Link {
    /// One server's, replaced when it stops answering.
    Server(Arc<Commands>),
    /// A cluster's: redis-rs repairs each node's broken connection and follows redirects
    /// itself; operations that time out make it follow a failover it did not see (a frozen
    /// master's, see [`ClusterCommands`]).
    Cluster(Arc<ClusterCommands>),
}

impl Link {
    /// A handle on the current connection.
    pub(crate) fn get(&self) -> Conn {
        match self {
            Self::Server(commands) => Conn::Server(commands.get()),
            Self::Cluster(commands) => Conn::Cluster(commands.conn.clone(), commands.gate.clone()),
        }
    }

    /// The command queue as it stands (on a cluster, the commands redis-rs holds).
    pub(crate) fn queue_stats(&self) -> CommandQueueStats {
        match self {
            Self::Server(commands) => commands.queue.stats(),
            Self::Cluster(commands) => commands.gate.stats(),
        }
    }

    /// Reports that an operation failed for want of a working connection: check it now.
    pub(crate) fn suspect(&self) {
        match self {
            Self::Server(commands) => commands.suspect(),
            Self::Cluster(commands) => commands.check.notify_one(),
        }
    }
}

/// A cluster's command connection, and the task that makes it follow a failover when its
/// operations time out: a frozen master keeps its connection (its kernel still answers TCP),
/// so redis-rs would keep sending its slots' commands there after the cluster promoted its
/// replica.
pub(crate) struct ClusterCommands {
    conn: ClusterConnection,
    /// The bound on the commands redis-rs holds for this backend.
    gate: Arc<Gate>,
    /// Asks the task to look at the cluster's masters now.
    check: Arc<Notify>,
    task: JoinHandle<()>,
}

impl ClusterCommands {
    /// Wraps `conn` and starts its task.
    pub(crate) fn start(conn: ClusterConnection, op_timeout: Duration) -> Arc<Self> {
        let check = Arc::new(Notify::new());
        let task = tokio::spawn(follow_failovers(conn.clone(), check.clone(), op_timeout));
        Arc::new(Self {
            conn,
            gate: Arc::default(),
            check,
            task,
        })
    }
}

impl Drop for ClusterCommands {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each time an operation failed for want of an answer, has `conn` follow the cluster's masters
/// if they changed; at most once per op timeout, however many operations fail meanwhile.
async fn follow_failovers(mut conn: ClusterConnection, check: Arc<Notify>, op_timeout: Duration) {
    let mut topology = Topology::default();
    // The masters the connection starts with.
    topology.follow(&mut conn, op_timeout).await;
    loop {
        check.notified().await;
        topology.follow(&mut conn, op_timeout).await;
        tokio::time::sleep(op_timeout).await;
    }
}

/// The command connection: a redis-rs [`ConnectionManager`] (multiplexed, reconnecting by itself
/// when the connection drops), replaced by the health task when it stops answering.
pub(crate) struct Commands {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The connection, and how many times it was replaced (the pipelining task sends nothing on
    /// a new one while batches sent on the old one are under way).
    current: Mutex<(u64, ConnectionManager)>,
    /// The bounded queue of the automatic pipelining task (see `autopipeline`).
    queue: Arc<CommandQueue>,
    pipelining: JoinHandle<()>,
    /// Asks the health task for a check now.
    check: Arc<Notify>,
    health: JoinHandle<()>,
}

impl Commands {
    /// Builds the (lazily connecting) connection and starts its health task.
    pub(crate) fn start(
        client: redis::Client,
        op_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Arc<Self>> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let manager = new_manager(&client, &config)?;
        let check = Arc::new(Notify::new());
        let queue = Queue::new();
        Ok(Arc::new_cyclic(|weak: &Weak<Self>| Self {
            health: tokio::spawn(watch(weak.clone(), check.clone(), op_timeout, counters)),
            pipelining: tokio::spawn(autopipeline::serve(queue.clone(), weak.clone())),
            client,
            config,
            current: Mutex::new((0, manager)),
            queue,
            check,
        }))
    }

    /// A handle on the current connection that pipelines concurrent commands.
    pub(crate) fn get(&self) -> AutoPipeline {
        let db = self.client.get_connection_info().redis_settings().db();
        AutoPipeline::new(self.queue.clone(), db)
    }

    /// The current connection itself.
    pub(crate) fn manager(&self) -> ConnectionManager {
        self.current.lock().1.clone()
    }

    /// The current connection and its generation (one more at each replacement).
    pub(crate) fn current(&self) -> (u64, ConnectionManager) {
        self.current.lock().clone()
    }

    /// Reports that an operation failed for want of a working connection: check it now.
    pub(crate) fn suspect(&self) {
        self.check.notify_one();
    }

    /// Drops the current connection for a fresh one (which connects on first use).
    fn replace(&self) {
        match new_manager(&self.client, &self.config) {
            Ok(fresh) => {
                let mut current = self.current.lock();
                *current = (current.0 + 1, fresh);
            }
            Err(e) => tracing::debug!("cannot replace the Redis connection: {e}"),
        }
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        self.health.abort();
        self.pipelining.abort();
    }
}

/// A lazily connecting manager.
fn new_manager(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
) -> Result<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| Error::InvalidConfig(format!("Redis connection settings: {e}")))
}

/// The health task: PINGs every `op_timeout` (or when asked), replaces a connection whose PING
/// failed or went unanswered, and counts the first success after a failure as a reconnect.
async fn watch(
    commands: Weak<Commands>,
    check: Arc<Notify>,
    op_timeout: Duration,
    counters: Arc<Counters>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        tokio::select! {
            () = tokio::time::sleep(op_timeout) => {}
            () = check.notified() => {}
        }
        let Some(mut conn) = commands.upgrade().map(|c| c.manager()) else {
            return;
        };
        let ping = redis::cmd("PING");
        let healthy =
            match tokio::time::timeout(op_timeout, ping.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => !is_connection_error(&e),
                Err(_) => false,
            };
        if healthy {
            if counters.broken.swap(false, Relaxed) {
                Counters::bump(&counters.reconnects);
            }
            continue;
        }
        counters.broken.store(true, Relaxed);
        match commands.upgrade() {
            Some(commands) => commands.replace(),
            None => return,
        }
    }
}
