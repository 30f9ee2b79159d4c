//! The SDK's one error type: the host's trace, stream failures, codec errors and compute errors.

use std::fmt;

use crate::bindings::wasi::keyvalue::wasi_keyvalue_error::Error as HostError;

/// A boxed error from a `get_or_set` compute closure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a cache operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The host refused or failed the operation; `trace` is the host's description.
    Host {
        /// What the host said (`wasi:keyvalue/wasi-keyvalue-error.error.trace`).
        trace: String,
    },
    /// A value body stream failed or closed early (the host's description of the failure).
    Stream(String),
    /// The stored bytes of `key` do not decode as the requested type.
    Decode {
        /// The key whose value was read (empty when decoding a detached value).
        key: String,
        /// The Rust type the bytes were decoded as.
        type_name: &'static str,
        /// The codec's description of the failure.
        message: String,
    },
    /// A value could not be encoded.
    Encode {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// The codec's description of the failure.
        message: String,
    },
    /// The compute closure of a `get_or_set` failed; the vacancy was handed to a waiter.
    Compute(BoxError),
    /// The host broke the protocol (e.g. a future not ready after its pollable was).
    Protocol(&'static str),
}

/// A `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an error resource from the host, reading its trace.
    pub(crate) fn host(err: HostError) -> Self {
        Error::Host { trace: err.trace() }
    }

    /// The host's trace, when the host reported this error.
    pub fn trace(&self) -> Option<&str> {
        match self {
            Error::Host { trace } => Some(trace),
            Error::Stream(trace) => Some(trace),
            _ => None,
        }
    }

    /// Whether this is a decode error (stored bytes not of the requested type).
    pub fn is_decode(&self) -> bool {
        matches!(self, Error::Decode { .. })
    }

    /// The compute closure's error, when this is one.
    pub fn into_compute(self) -> Option<BoxError> {
        match self {
            Error::Compute(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Host { trace } => write!(f, "cache host error: {trace}"),
            Error::Stream(trace) => write!(f, "value stream error: {trace}"),
            Error::Decode {
                key,
                type_name,
                message,
            } if key.is_empty() => {
                write!(f, "cached value does not decode as {type_name}: {message}")
            }
            Error::Decode {
                key,
                type_name,
                message,
            } => {
                write!(
                    f,
                    "cached value of {key:?} does not decode as {type_name}: {message}"
                )
            }
            Error::Encode { type_name, message } => {
                write!(f, "cannot encode {type_name}: {message}")
            }
            Error::Compute(e) => write!(f, "get_or_set compute failed: {e}"),
            Error::Protocol(what) => write!(f, "cache protocol error: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Compute(e) => Some(&**e),
            _ => None,
        }
    }
}
