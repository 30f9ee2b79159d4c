//! Mapping redis-rs errors onto the engine's [`Error`], phrased so a user can act on them.

use std::time::Duration;

use wasi_cache_engine::Error;

/// The engine error for a failed Redis command: `Unavailable` when the server cannot be
/// reached (a failed TLS handshake says what failed), `Timeout` when it did not answer,
/// `Backend` for anything the server refused.
pub(crate) fn map_redis_error(e: &redis::RedisError) -> Error {
    if let Some(failure) = crate::tls::handshake_failure(e) {
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
