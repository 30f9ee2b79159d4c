//! The stored form of a value with stale windows (version 1), byte by byte (all integers
//! big-endian; `docs/polyglot.md` shows it for other languages):
//!
//! | bytes  | what |
//! |--------|------|
//! | 0..4   | magic `0x89 'S' 'W' 'R'` (a first byte no UTF-8 text starts with) |
//! | 4      | version, 1 |
//! | 5..13  | stored at, unix ms (u64) |
//! | 13..21 | fresh until, unix ms (u64) |
//! | 21..29 | stale-while-revalidate until, unix ms (u64) |
//! | 29..37 | stale-if-error until, unix ms (u64) |
//! | 37..41 | refresh lease, ms (u32) |
//! | 41..   | the value |

use std::time::Duration;

use super::Lifetimes;
use crate::error::{Error, Result};

/// The envelope's first four bytes.
pub const MAGIC: [u8; 4] = [0x89, b'S', b'W', b'R'];
/// The version this SDK writes and reads.
pub const VERSION: u8 = 1;
/// The header's length: the value starts there.
pub const HEADER: usize = 41;

/// Where a value stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// Fresh: a hit.
    Fresh,
    /// Stale, within the revalidate window: answered at once, refreshed elsewhere.
    Revalidate,
    /// Stale past the revalidate window, within the error window: refreshed, and answered
    /// only when the refresh fails.
    IfError,
    /// Past every window (the key outlived its envelope, e.g. by clock skew between hosts).
    Expired,
}

/// A decoded envelope: the instants (unix ms) and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// When the value was stored.
    pub stored_at: u64,
    /// When its freshness ends.
    pub fresh_until: u64,
    /// When its stale-while-revalidate window ends.
    pub revalidate_until: u64,
    /// When its stale-if-error window ends.
    pub error_until: u64,
    /// How long a refresh of it may take before another may start, in ms.
    pub lease_ms: u32,
    /// The value.
    pub value: Vec<u8>,
}

impl Envelope {
    /// The envelope of `value` stored at `now` (unix ms) with `lifetimes`.
    pub fn new(now: u64, lifetimes: &Lifetimes, value: Vec<u8>) -> Self {
        let at = |d: Duration| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let fresh_until = at(lifetimes.fresh);
        let after = |d: Duration| {
            fresh_until.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Envelope {
            stored_at: now,
            fresh_until,
            revalidate_until: after(lifetimes.stale_while_revalidate),
            error_until: after(lifetimes.stale_if_error),
            lease_ms: u32::try_from(lifetimes.refresh_lease.as_millis()).unwrap_or(u32::MAX),
            value,
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        for instant in [
            self.stored_at,
            self.fresh_until,
            self.revalidate_until,
            self.error_until,
        ] {
            out.extend_from_slice(&instant.to_be_bytes());
        }
        out.extend_from_slice(&self.lease_ms.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes the stored bytes of `key` (named in errors).
    pub fn decode(key: &str, mut bytes: Vec<u8>) -> Result<Self> {
        let fail = |message: String| Error::Decode {
            key: key.to_owned(),
            type_name: "wasi-cache stale envelope",
            message,
        };
        if bytes.len() < HEADER || bytes[..4] != MAGIC {
            return Err(fail(format!(
                "not an envelope of a revalidating lookup ({} bytes without its magic)",
                bytes.len()
            )));
        }
        if bytes[4] != VERSION {
            return Err(fail(format!(
                "envelope version {} (this SDK reads {VERSION})",
                bytes[4]
            )));
        }
        let instant = |i: usize| {
            let start = 5 + 8 * i;
            u64::from_be_bytes(bytes[start..start + 8].try_into().expect("8 bytes"))
        };
        let (stored_at, fresh_until, revalidate_until, error_until) =
            (instant(0), instant(1), instant(2), instant(3));
        let lease_ms = u32::from_be_bytes(bytes[37..41].try_into().expect("4 bytes"));
        bytes.drain(..HEADER);
        Ok(Envelope {
            stored_at,
            fresh_until,
            revalidate_until,
            error_until,
            lease_ms,
            value: bytes,
        })
    }

    /// Where the value stands at `now`.
    pub(crate) fn zone(&self, now: u64) -> Zone {
        if now < self.fresh_until {
            Zone::Fresh
        } else if now < self.revalidate_until {
            Zone::Revalidate
        } else if now < self.error_until {
            Zone::IfError
        } else {
            Zone::Expired
        }
    }

    /// How long ago it was stored, at `now`.
    pub(crate) fn age(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.stored_at))
    }

    /// How long a refresh of it may take.
    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.into())
    }

    /// How long the key must be kept from `now` on (to the later window's end).
    pub(crate) fn ttl(&self, now: u64) -> Duration {
        let end = self.revalidate_until.max(self.error_until);
        Duration::from_millis(end.saturating_sub(now))
    }
}
