//! # wasi-cache-redis
//!
//! The Redis backend of wasi-cache: [`RedisBackend`] implements the engine's
//! [`Backend`](wasi_cache_engine::Backend) contract on a Redis server (6 or later) with
//! redis-rs, so several hosts can share one cache, and rendezvous on one key across hosts.
//!
//! ## Data
//! Values are stored binary-safe under `wc:{<enc>}`, where `<enc>` is
//! [`Namespace::encode_key`](wasi_cache_engine::Namespace::encode_key) (`len(ns) ‖ ns ‖ key`),
//! so no two (namespace, key) pairs collide; see the `keys` module for the lock and channel
//! names and why all three share one cluster slot. TTLs are set with `PX` (milliseconds, a
//! non-zero TTL below 1 ms is rounded up); `Some(0)` deletes the key (never visible), `None`
//! stores without expiry. Expiry and eviction are Redis's own, so the `evictions`,
//! `expirations`, `entries` and `bytes` counters stay 0.
//!
//! ## Rendezvous
//! `get_or_set` runs a claim script that atomically returns the value or takes a lock
//! (`SET NX PX <vacancy timeout>`) with a random token; the lock's holder gets the vacancy. A fill
//! stores the value, releases the lock if its token still matches (a stale holder's fill is
//! stored as an ordinary set), and publishes on the key's channel; a plain `set` publishes too
//! when a lock exists; dropping a vacancy releases the lock (token permitting) and publishes, so
//! the waiters race their claim and exactly one wins. Waiters subscribe before they re-claim and
//! then wait for a message or the lock's remaining lifetime (a crashed holder's lock expires
//! after the vacancy timeout). In one backend, callers of one key share one claim (local
//! single-flight), and one pub/sub connection serves all waiters.
//!
//! ## Faults
//! Every Redis command is bounded by [`RedisConfig::op_timeout`] (2 s by default); an
//! unreachable server gives `Error::Unavailable` or `Error::Timeout`, never a hang, and the
//! backend reconnects by itself. Nothing is reported stored unless Redis confirmed it.

#![warn(missing_docs)]

mod backend;
mod config;
mod counters;
mod errors;
mod keys;
mod pubsub;
mod rendezvous;
mod scripts;

pub use backend::RedisBackend;
pub use config::RedisConfig;
