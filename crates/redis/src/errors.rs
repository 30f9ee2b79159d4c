//! Mapping redis-rs errors onto the engine's [`Error`], phrased so a user can act on them.

use std::time::Duration;

use wasi_cache_engine::Error;

/// The engine error for a failed Redis command: `Unavailable` when the server cannot be
/// reached (a failed TLS handshake says what failed) or the host's command queue is full,
/// `Timeout` when it did not answer,
/// `Backend` for anything the server refused.
pub(crate) fn map_redis_error(e: &redis::RedisError) -> Error {
    if let Some(full) = crate::command_queue::queue_full(e) {
        Error::Unavailable(full)
    } else if let Some(failure) = crate::tls::handshake_failure(e) {
        Error::Unavailable(failure)
    } else if e.is_timeout() {
        Error::Unavailable(format!("Redis did not answer in time: {e}"))
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        Error::Unavailable(format!(
            "cannot reach Redis ({e}); is the server running? the backend keeps reconnecting"
        ))
    } else {
        Error::Backend(format!("Redis error: {e}"))
    }
}

/// Whether `e` means the connection is broken (so the next success is a reconnect).
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// The engine error for an operation that outlived the configured timeout.
pub(crate) fn timeout_error(limit: Duration) -> Error {
    Error::Timeout(limit)
}

/// The engine error for a failed command on a Redis Cluster: as [`map_redis_error`], and a shard
/// that is down or moving (no connection to its node, `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`,
/// or `NOSCRIPT` still after loading the script: the load and the call reached different nodes
/// while it failed over) is `Unavailable` too, saying that only that shard's keys are affected.
pub(crate) fn cluster_error(e: &redis::RedisError) -> Error {
    use redis::{ErrorKind, ServerErrorKind as S};
    let shard_down = matches!(
        e.kind(),
        ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(S::ClusterDown | S::TryAgain | S::MasterDown | S::NoScript)
    );
    let ours =
        crate::tls::handshake_failure(e).is_some() || crate::command_queue::queue_full(e).is_some();
    match map_redis_error(e) {
        Error::Unavailable(_) if !ours => shard_down_error(e),
        _ if shard_down => shard_down_error(e),
        other => other,
    }
}

/// A Redis Cluster shard that cannot be reached, as the engine error.
fn shard_down_error(e: &redis::RedisError) -> Error {
    Error::Unavailable(format!(
        "the Redis Cluster node serving this key's slot is unreachable ({e}); only keys of its \
         shard are affected, and the backend picks up a promoted replica by itself"
    ))
}

/// The engine error for an operation on a Redis Cluster that outlived the configured timeout.
pub(crate) fn cluster_timeout(limit: Duration) -> Error {
    Error::Unavailable(format!(
        "no answer within {limit:?} from the Redis Cluster node serving this key's slot (its \
         shard is down or failing over; only keys of that shard are affected)"
    ))
}
