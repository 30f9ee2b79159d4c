//! The `error` resource of `wasi:keyvalue/wasi-keyvalue-error`.

use std::fmt;

/// A cache error as the guest sees it: an `error` resource whose `trace` is this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError {
    trace: String,
}

impl CacheError {
    /// An error with the given trace.
    pub fn new(trace: impl Into<String>) -> Self {
        Self {
            trace: trace.into(),
        }
    }

    /// An error of operation `op` (e.g. `set`) caused by `cause`.
    pub(crate) fn op(op: &str, cause: impl fmt::Display) -> Self {
        Self::new(format!("{op}: {cause}"))
    }

    /// The message the guest reads with `trace`.
    pub fn trace(&self) -> &str {
        &self.trace
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.trace)
    }
}

impl std::error::Error for CacheError {}

/// The message of a panic's payload, for the error or trap it is turned into.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
