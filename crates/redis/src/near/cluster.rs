//! The masters of a Redis Cluster, for the near cache's tracking connections: which nodes they
//! are (asked with `CLUSTER SLOTS` through the backend's cluster connection), a RESP3 client for
//! each, and noticing when they change.
//!
//! The list is asked again for every round of tracking connections (so after any loss) and every
//! op timeout while a round is served: a failover (a replica promoted, at a new address) or a
//! master taking slots for the first time ends the round, the near cache is emptied, and the
//! next round tracks the new masters. Until the periodic check notices a master that is new to
//! the cluster, or a manual failover (the old master stays up as a replica), writes to the
//! slots it now serves are not announced: the cases where the bound is the op timeout instead
//! of the invalidation's latency (a master that dies is noticed at once: its connection is
//! lost).

use std::time::Duration;

use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use wasi_cache_engine::Error;

use crate::connection::resp3_node_client;
use crate::errors::{cluster_error, timeout_error};
use crate::tls::RedisTls;

/// A master's address: host (or IP) and port.
pub(crate) type Node = (String, u16);

/// How to find and reach the masters of one cluster.
pub(crate) struct Masters {
    /// The backend's cluster connection (shared: it adds no connection).
    conn: ClusterConnection,
    /// A seed URL: the scheme and credentials every node's connection uses.
    seed: String,
    tls: RedisTls,
    op_timeout: Duration,
}

impl Masters {
    /// The masters of the cluster `conn` is connected to, reached like `seed`.
    pub(crate) fn new(
        conn: ClusterConnection,
        seed: String,
        tls: RedisTls,
        op_timeout: Duration,
    ) -> Self {
        Self {
            conn,
            seed,
            tls,
            op_timeout,
        }
    }

    /// The masters serving slots now (sorted, each once), as one of them sees it; within
    /// `limit`.
    pub(crate) async fn list(&mut self, limit: Duration) -> Result<Vec<Node>, Error> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let asked = self.conn.route_command(slots, routing);
        let reply = match tokio::time::timeout(limit, asked).await {
            Ok(reply) => reply.map_err(|e| cluster_error(&e))?,
            Err(_) => return Err(timeout_error(limit)),
        };
        masters_of(&reply)
    }

    /// A RESP3 client for `node`.
    pub(crate) fn client(&self, node: &Node) -> Result<redis::Client, Error> {
        resp3_node_client(&self.seed, &node.0, node.1, self.op_timeout, &self.tls)
    }

    /// Returns once the masters are no longer `masters` (asked every op timeout); why.
    pub(crate) async fn changed(&mut self, masters: &[Node], op_timeout: Duration) -> String {
        loop {
            tokio::time::sleep(op_timeout).await;
            // A failed check proves nothing: a lost master ends the round through its own
            // tracking connection.
            if let Ok(now) = self.list(op_timeout).await
                && now != masters
            {
                return format!("the cluster's masters changed from {masters:?} to {now:?}");
            }
        }
    }
}

/// The masters in a `CLUSTER SLOTS` reply: each range's first node.
pub(crate) fn masters_of(reply: &Value) -> Result<Vec<Node>, Error> {
    let odd = || {
        Error::Unavailable(format!(
            "Redis Cluster: unexpected CLUSTER SLOTS reply {reply:?}"
        ))
    };
    let Value::Array(ranges) = reply else {
        return Err(odd());
    };
    let mut masters = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(odd());
        };
        let Some(Value::Array(master)) = range.get(2) else {
            return Err(odd());
        };
        let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
            return Err(odd());
        };
        let host = match host {
            Value::BulkString(host) => String::from_utf8_lossy(host).into_owned(),
            Value::SimpleString(host) => host.clone(),
            _ => return Err(odd()),
        };
        // An unknown address ("" or "?") cannot be tracked; leaving it out would leave its
        // slots' writes unannounced, so the round fails (and is retried) instead.
        if host.is_empty() || host == "?" {
            return Err(Error::Unavailable(format!(
                "Redis Cluster: a master's address is unknown (CLUSTER SLOTS gave {host:?}); the \
                 near cache needs every master's (set `cluster-announce-ip`)"
            )));
        }
        let port = u16::try_from(*port).map_err(|_| odd())?;
        masters.push((host, port));
    }
    // No master would mean no tracking at all, not a near cache with nothing to track.
    if masters.is_empty() {
        return Err(Error::Unavailable(
            "Redis Cluster: no node serves any slot yet (CLUSTER SLOTS is empty)".into(),
        ));
    }
    masters.sort();
    masters.dedup();
    Ok(masters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        let node = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            node(host, port),
            node("replica", 1),
        ])
    }

    #[test]
    fn the_masters_are_each_ranges_first_node_once_sorted() {
        let reply = Value::Array(vec![
            range(0, 99, "b", 2),
            range(100, 199, "a", 1),
            range(200, 299, "b", 2),
        ]);
        let masters = masters_of(&reply).unwrap();
        assert_eq!(masters, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }

    #[test]
    fn an_unknown_address_no_master_or_an_odd_reply_fails() {
        let unknown = Value::Array(vec![range(0, 99, "", 2)]);
        let e = masters_of(&unknown).unwrap_err();
        assert!(e.to_string().contains("cluster-announce-ip"), "{e}");
        assert!(masters_of(&Value::Int(1)).is_err());
        assert!(masters_of(&Value::Array(vec![])).is_err(), "no master");
        assert!(masters_of(&Value::Array(vec![Value::Array(vec![])])).is_err());
    }
}
