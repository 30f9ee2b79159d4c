//! Redis Cluster: the redis-rs cluster client built from the seed nodes, and what only a cluster
//! needs (PINGing every master, grouping channels by slot).
//!
//! redis-rs's async cluster connection keeps one multiplexed connection per node, routes each
//! command by its first key's slot, follows `MOVED`/`ASK`, refreshes its slot map on `MOVED`,
//! `READONLY` and lost nodes, repairs a dropped node connection in the background, and, with a
//! push sender, re-subscribes sharded channels on the node that serves them after a reconnect or
//! a topology change. The backend builds on that; what redis-rs leaves open (a node dropping
//! subscriptions by itself, messages published while a node was being replaced, scripts missing
//! on a promoted replica) is handled by the pub/sub dispatcher and the scripts.
//!
//! One more gap: redis-rs rebuilds its slot map only on a redirect or a lost connection, and a
//! node whose process is frozen (its kernel still accepting and acknowledging) loses neither:
//! its connection stays, and commands for its slots keep timing out on it after the cluster
//! promoted its replica. So when a connection's commands time out, [`Topology::follow`] asks the
//! cluster which masters serve slots and, when they changed, sends a harmless command to every
//! master: those that do not serve its key's slot answer `MOVED`, on which redis-rs rebuilds
//! its slot map from a node that answers, and drops the frozen node.

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo, Slot,
};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, RedisResult};
use tokio::sync::mpsc::UnboundedSender;
use wasi_cache_engine::{Error, Result};

use crate::connection::tcp_settings;
use crate::near::cluster::{Node, masters_of};
use crate::tls::{RedisTls, secure};

/// A cluster client on `seeds`: TLS with `tls` for `rediss://` seeds, each node connection with
/// the backend's TCP settings and bounded by `op_timeout`, RESP3, and the push messages (sharded
/// pub/sub) sent to `pushes` when given.
pub(crate) fn cluster_client(
    seeds: &[String],
    op_timeout: Duration,
    tls: &RedisTls,
    pushes: Option<UnboundedSender<PushInfo>>,
) -> Result<ClusterClient> {
    if seeds.is_empty() {
        return Err(Error::InvalidConfig(
            "a Redis Cluster needs at least one seed node URL".into(),
        ));
    }
    let mut infos = Vec::with_capacity(seeds.len());
    let mut tls_seeds = 0;
    for url in seeds {
        let info = url.as_str().into_connection_info().map_err(|e| {
            Error::InvalidConfig(format!("invalid Redis Cluster node URL {url:?}: {e}"))
        })?;
        if info.redis_settings().db() != 0 {
            return Err(Error::InvalidConfig(format!(
                "Redis Cluster node URL {url:?} selects database {}: a cluster has database 0 \
                 only",
                info.redis_settings().db()
            )));
        }
        tls_seeds += usize::from(secure(info.addr(), tls)?);
        infos.push(info);
    }
    if tls_seeds != 0 && tls_seeds != infos.len() {
        return Err(Error::InvalidConfig(
            "the Redis Cluster seed nodes mix redis:// and rediss:// URLs; use one scheme".into(),
        ));
    }
    let mut builder = ClusterClientBuilder::new(infos)
        .tcp_settings(tcp_settings(op_timeout))
        .connection_timeout(op_timeout)
        .response_timeout(op_timeout)
        .use_protocol(ProtocolVersion::RESP3)
        // Retries (redirects, a node being repaired) stay within the backend's op timeout.
        .min_retry_wait(10)
        .max_retry_wait(op_timeout.as_millis().clamp(10, 500) as u64);
    if tls_seeds != 0 {
        builder = builder.certs(tls.certificates());
    }
    if let Some(pushes) = pushes {
        builder = builder.push_sender(pushes);
    }
    builder
        .build()
        .map_err(|e| Error::InvalidConfig(format!("Redis Cluster settings: {e}")))
}

/// A lazily connecting cluster connection (it connects to the seeds in the background). The
/// timeouts are given again: a connection's config replaces the client's response timeout.
pub(crate) fn lazy_connection(client: &ClusterClient, op_timeout: Duration) -> ClusterConnection {
    let config = ClusterConfig::new()
        .set_connection_timeout(op_timeout)
        .set_response_timeout(op_timeout);
    client.get_pending_async_connection_with_config(config)
}

/// PINGs every master the connection knows; fails unless all answer. A node that is gone makes
/// redis-rs rebuild its view of the cluster from the seeds, so this also picks up a failover.
pub(crate) async fn ping_masters(conn: &mut ClusterConnection) -> RedisResult<()> {
    let routing = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllMasters,
        Some(ResponsePolicy::AllSucceeded),
    ));
    conn.route_command(redis::cmd("PING"), routing)
        .await
        .map(drop)
}

/// Why the seeds' TLS handshakes fail, if they do: redis-rs's cluster connection retries a
/// failed handshake until the op timeout and then only reports that it timed out, so a backend
/// that could not reach the cluster at start-up connects to each seed on its own (as one server,
/// concurrently, each within `op_timeout`) to name the handshake's failure, as it does for one
/// server (an untrusted CA, a refused client certificate, a port without TLS).
pub(crate) async fn seed_handshake_failure(
    seeds: &[String],
    op_timeout: Duration,
    tls: &RedisTls,
) -> Option<Error> {
    let probes = seeds.iter().map(|url| async move {
        let client = crate::connection::client(url, op_timeout, tls).ok()?;
        let connect = client.get_multiplexed_async_connection();
        match tokio::time::timeout(op_timeout, connect).await {
            Ok(Err(e)) => crate::tls::handshake_failure(&e),
            Ok(Ok(_)) | Err(_) => None,
        }
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .next()
        .map(Error::Unavailable)
}

/// A key no entry uses, for [`Topology::follow`]'s `EXISTS` (inside the backend's `wc:` key
/// space, which the ACL grants).
const PROBE_KEY: &str = "wc:topology-probe";

/// What a cluster connection last made redis-rs follow: the masters serving slots.
#[derive(Default)]
pub(crate) struct Topology {
    /// The masters when redis-rs was last made to rebuild its slot map, or first seen.
    followed: Option<Vec<Node>>,
}

impl Topology {
    /// Makes `conn` rebuild its slot map if the masters changed since it was last made to:
    /// after a failover that no redirect or lost connection showed it. The first masters seen
    /// are taken as the connection's own (it was just built from them): a rebuild costs every
    /// command a pause while redis-rs asks the nodes, up to the op timeout if it asks the frozen
    /// one first, so none is made without a change. Each step is bounded by `op_timeout`; a
    /// failed step leaves it for the next call.
    pub(crate) async fn follow(&mut self, conn: &mut ClusterConnection, op_timeout: Duration) {
        // Asked of every node at once, the first answer taken: a frozen node must not decide.
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllNodes,
            Some(ResponsePolicy::OneSucceeded),
        ));
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply = match tokio::time::timeout(op_timeout, conn.route_command(slots, routing)).await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return tracing::debug!("redis cluster topology unknown: {e}"),
            Err(_) => return tracing::debug!("redis cluster topology unknown: no answer"),
        };
        let Ok(masters) = masters_of(&reply) else {
            return;
        };
        let Some(followed) = &self.followed else {
            self.followed = Some(masters);
            return;
        };
        if *followed == masters {
            return;
        }
        tracing::debug!("redis cluster masters now {masters:?}: rebuilding the slot map");
        let probes = masters.iter().map(|(host, port)| {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(PROBE_KEY);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            });
            let mut conn = conn.clone();
            async move {
                let probe = conn.route_command(exists, routing);
                matches!(tokio::time::timeout(op_timeout, probe).await, Ok(Ok(_)))
            }
        });
        // Unless some node answered (and so some `MOVED` reached redis-rs), the next call
        // tries again.
        if futures::future::join_all(probes).await.contains(&true) {
            self.followed = Some(masters);
        }
    }
}

/// `names` grouped by slot: a sharded (un)subscribe names channels of one slot only.
pub(crate) fn by_slot(names: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut groups: HashMap<Slot, Vec<Vec<u8>>> = HashMap::new();
    for name in names {
        groups.entry(Slot::for_key(&name)).or_default().push(name);
    }
    groups.into_values().collect()
}
