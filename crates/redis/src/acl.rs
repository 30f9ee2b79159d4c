//! The connect-time check that the ACL user may use the backend's channels.
//!
//! A Redis 7 user created without channel rights (`resetchannels`, the default for new users)
//! can store values but not PUBLISH the fill that wakes the waiters, so every fill would fail
//! with `NOPERM` after the value was stored. [`check_channel_rights`] PUBLISHes on the backend's
//! probe channel and SUBSCRIBEs to it (on a short-lived pub/sub connection, unsubscribed before
//! it returns), and turns a refusal into one error naming what to grant. A server without ACL
//! (Redis 6's default user) allows both. On a cluster the probe uses sharded pub/sub (SPUBLISH,
//! SSUBSCRIBE, SUNSUBSCRIBE) on the node serving the probe channel's slot; ACL users are per
//! node in a cluster, so the other nodes are trusted to be configured alike.
//!
//! [`ACL_RULES`] and [`CLUSTER_ACL_RULES`] are everything the backend needs, checked against
//! real servers by the tests.

use wasi_cache_engine::{Error, Result};

use crate::backend::Inner;
use crate::errors::{cluster_error, map_redis_error, timeout_error};
use crate::keys::{Keys, PREFIX};

/// The ACL rules that let a Redis user do everything the backend does (append them to `ACL
/// SETUSER <user> on >password resetkeys resetchannels -@all`): its keys and channels, and the
/// commands it sends or its scripts call (`+select` only matters for a database other than 0,
/// `+client|tracking` only with the near cache).
pub const ACL_RULES: &str = "~wc:* &wc:* +ping +get +set +exists +del +pttl +strlen +getrange \
                             +multi +exec +evalsha +script|load +publish +subscribe +unsubscribe \
                             +select +client|tracking";

/// The ACL rules a Redis Cluster user needs on every node: the channels are sharded there,
/// redis-rs and the near cache ask the nodes for the slot map (`CLUSTER SLOTS`), and
/// `+client|tracking` only matters with the near cache.
pub const CLUSTER_ACL_RULES: &str = "~wc:* &wc:* +ping +get +set +exists +del +pttl +strlen \
                                     +getrange +multi +exec +evalsha +script|load +spublish \
                                     +ssubscribe +sunsubscribe +cluster|slots +client|tracking";

/// Checks that the user may publish and subscribe the backend's channels (each step within the
/// op timeout).
pub(crate) async fn check_channel_rights(inner: &Inner) -> Result<()> {
    let probe = Keys::probe_channel(inner.db);
    let limit = inner.config.op_timeout;
    let sharded = inner.on_cluster();
    let (publish, subscribe) = if sharded {
        ("SPUBLISH", "SSUBSCRIBE")
    } else {
        ("PUBLISH", "SUBSCRIBE")
    };
    let mut conn = inner.conn();
    let mut command = redis::cmd(publish);
    command.arg(&probe).arg("probe");
    let published = tokio::time::timeout(limit, command.query_async::<i64>(&mut conn)).await;
    refusal(publish, sharded, published, limit)?;
    let subscribed = tokio::time::timeout(limit, inner.pubsub.probe(&probe)).await;
    refusal(subscribe, sharded, subscribed, limit)
}

/// The outcome of a probe `command` as the backend's error: a `NOPERM` becomes
/// `Error::InvalidConfig` naming the rights to grant.
fn refusal<T>(
    command: &str,
    sharded: bool,
    outcome: std::result::Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    limit: std::time::Duration,
) -> Result<()> {
    let rights = if sharded {
        "+spublish +ssubscribe +sunsubscribe"
    } else {
        "+publish +subscribe +unsubscribe"
    };
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.code() == Some("NOPERM") => Err(Error::InvalidConfig(format!(
            "the Redis user may not {command} the cache's channels ({}); grant it the channels \
             `&{PREFIX}*` and the commands `{rights}`, e.g. \
             `ACL SETUSER <user> &{PREFIX}* {rights}`",
            e.detail().unwrap_or("NOPERM").trim()
        ))),
        Ok(Err(e)) if sharded => Err(cluster_error(&e)),
        Ok(Err(e)) => Err(map_redis_error(&e)),
        Err(_) => Err(timeout_error(limit)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_crate_docs_show_the_rules() {
        assert!(include_str!("lib.rs").contains(super::ACL_RULES));
        assert!(include_str!("lib.rs").contains(super::CLUSTER_ACL_RULES));
    }
}
