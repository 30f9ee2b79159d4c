//! # wasi-cache-redis
//!
//! The Redis backend of wasi-cache: [`RedisBackend`] implements the engine's
//! [`Backend`](wasi_cache_engine::Backend) contract on a Redis server (6 or later) or a Redis
//! Cluster (7 or later; [`RedisTarget`]) with redis-rs, so several hosts can share one cache,
//! and rendezvous on one key across hosts.
//!
//! ## What the backend writes
//! Every key and channel starts with `wc:`. For a (namespace, key) pair, with `<enc>` =
//! [`Namespace::encode_key`](wasi_cache_engine::Namespace::encode_key) (`len(ns) ‖ ns ‖ key`,
//! binary), `<tag>` = 16 hex digits of a stable hash (FNV-1a-64) of `<enc>`, and `<db>` the
//! database number of the URL in decimal (0 on a cluster):
//!
//! | name | kind | holds |
//! | --- | --- | --- |
//! | `wc:{<tag>}v<enc>` | string key | the value |
//! | `wc:{<tag>}l<enc>` | string key | a vacancy's lock: a random token, expiring after the vacancy timeout |
//! | `wc:{<tag>}c<db>:<enc>` | channel | fills, sets while a lock exists, abandons (`v<value>`, `c`, `a`) |
//! | `wc:{<tag of "">}c<db>:` | channel | one `probe` PUBLISH and a SUBSCRIBE/UNSUBSCRIBE at connect (the ACL check; SPUBLISH and SSUBSCRIBE/SUNSUBSCRIBE on a cluster) |
//!
//! No two (namespace, key) pairs share a name, and a value key never equals another pair's lock
//! or channel. The hash tag `{<tag>}` is never empty and is the same for a key's value, lock and
//! channel, whatever the namespace (any length) and the key hold: the three stay in one cluster
//! slot (the scripts touching them stay legal), and keys spread over all slots. The backend
//! writes nothing else (no index, no bookkeeping keys). Values are binary-safe; TTLs are set with
//! `PX` (milliseconds, a non-zero TTL below 1 ms is rounded up); `Some(0)` deletes the key (never
//! visible), `None` stores without expiry. Expiry and eviction are Redis's own, so the
//! `evictions`, `expirations`, `entries` and `bytes` counters stay 0 (with a near cache, they are
//! the near cache's). (This layout replaced
//! `wc:{<enc>}`, `…:lock`, `…:ch`: do not mix hosts of both layouts on one database.)
//!
//! ## Isolation
//! Two backends share values exactly when they use the same server, database and namespace.
//! Keys live in the URL's database, so other databases never see them; channels are server-wide
//! in Redis, so their names carry the database number: a fill in database 0 never wakes a waiter
//! in database 1. Namespaces are part of every name (injectively), so they never mix either.
//! Isolation from *other* clients of the server (which could read or overwrite `wc:*`) is the
//! ACL's job: see below.
//!
//! ## Redis ACL
//! [`RedisBackend::connect`] checks that the user may PUBLISH and SUBSCRIBE its channels and
//! otherwise fails with one `Error::InvalidConfig` naming the rights to grant (a Redis 7 user
//! created without channel rights, `resetchannels` being the default, would otherwise see every
//! fill fail with `NOPERM` after storing its value). The whole of what the backend needs is
//! [`ACL_RULES`]:
//!
//! ```text
//! ACL SETUSER cache on >password resetkeys resetchannels -@all ~wc:* &wc:* +ping +get +set +exists +del +pttl +strlen +getrange +multi +exec +evalsha +script|load +publish +subscribe +unsubscribe +select +client|tracking
//! ```
//!
//! (`+select` only for a database other than 0; the scripts call `GET`, `SET`, `DEL`, `PTTL`
//! and `PUBLISH`; redis-rs's `CLIENT SETINFO` at connect may be refused harmlessly.) Redis 6's
//! default user, without ACL, has all of it. On a cluster, every node needs
//! [`CLUSTER_ACL_RULES`] (the channels are sharded, and redis-rs reads the slot map); the
//! connect-time check runs on the node serving the probe channel:
//!
//! ```text
//! ACL SETUSER cache on >password resetkeys resetchannels -@all ~wc:* &wc:* +ping +get +set +exists +del +pttl +strlen +getrange +multi +exec +evalsha +script|load +spublish +ssubscribe +sunsubscribe +cluster|slots +client|tracking
//! ```
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
//! single-flight), and one pub/sub connection serves all waiters: subscriptions are batched
//! (up to 1,000 channels per SUBSCRIBE, several in flight), so concurrent waiters share round
//! trips and no subscriber waits behind another's.
//!
//! ## Connections
//! A backend holds two connections: a multiplexed one for commands and one for pub/sub (and,
//! with a near cache, its tracking connection). Commands issued concurrently on one server are
//! pipelined automatically: while two batches await their replies, further commands queue and
//! leave together as the next batch, in one write (over TLS, one record instead of one per
//! command, which is what lets redis-server read them together); a lone command leaves at once,
//! and commands of more than 16 KiB travel as batches of their own, in their turn. The queue is
//! bounded ([`QUEUE_COMMANDS`] commands, [`QUEUE_BYTES`] bytes of arguments): a full queue fails
//! the command at once with `Error::Unavailable`, and a command whose caller is gone (dropped,
//! timed out) before it left is discarded unsent ([`RedisBackend::command_queue`] counts them).
//! On a cluster the same bound counts the commands redis-rs holds. Both
//! use TCP keepalive (idle time and interval of one op timeout, at least 1 s, 2 probes) and a
//! `TCP_USER_TIMEOUT` of twice the op timeout (at least 1 s), and both are PINGed every op
//! timeout: a connection whose command or PING gets no answer within the op timeout is replaced,
//! so one that died silently (a failover or a NAT drop, without a reset) is gone within about
//! twice the op timeout. After a new pub/sub connection, every channel still waited on is
//! subscribed again in batches (each within the op timeout), and its waiters re-check their key.
//! A waiter whose re-check fails for want of a connection keeps trying until the lock it saw
//! last would have expired, so it rides out a replaced connection.
//!
//! ## Redis Cluster
//! With [`RedisTarget::Cluster`] the backend finds the cluster from its seed nodes and runs on
//! redis-rs's async cluster client, which routes every command to the node serving its first
//! key's slot, follows `MOVED`/`ASK` and refreshes its slot map. Everything the backend writes
//! for one cache key shares one hash tag, so it lives in one slot: the scripts (EVALSHA with
//! their keys) run on the node that owns it, and are loaded there when it answers `NOSCRIPT` (a
//! restarted node, a promoted replica). Wake-ups use sharded pub/sub (`SPUBLISH` in the
//! scripts, `SSUBSCRIBE` for waiters; Redis 7 or later), whose channel carries the same tag, so
//! a fill reaches the waiters through the key's own shard. The waiters' subscriptions follow the
//! cluster: redis-rs subscribes them again on a node's new connection and on the node serving
//! their slot after a topology change; the dispatcher adds what it leaves open: channels whose
//! node could not be reached are subscribed again every 100 ms while wanted, channels a node
//! drops by itself (a slot moved, a master demoted) are subscribed again where they live now,
//! every waiter re-checks its key when a node connection is replaced or a subscription is
//! confirmed again (messages published in between are not seen), and a PING of every master
//! each op timeout makes redis-rs notice a failover even when nothing else is sent.
//!
//! A shard that goes down fails only the operations on its slots, each within the op timeout,
//! with an `Error::Unavailable` naming the cluster problem; the other shards keep working. When
//! a replica is promoted, the next operations find it (redis-rs rebuilds its slot map from the
//! nodes' answers), and a waiter that was subscribed on the lost node gets its answer from the
//! new one (or the vacancy, if the lock did not reach the replica before the master died).
//! A master whose process is frozen (its kernel still answering TCP) breaks no connection, so
//! redis-rs alone would keep sending its slots' commands there: operations that time out (and
//! the pub/sub connection's unanswered PINGs) make the backend ask the cluster which masters
//! serve slots, and after a change make redis-rs rebuild its slot map (see `cluster.rs`).
//! [`Backend::ping`](wasi_cache_engine::Backend::ping) PINGs every master. A cluster has only
//! database 0; a seed URL naming another is refused.
//!
//! ## Near cache
//! With [`RedisConfig::near_cache`], the embedded engine ([`wasi_cache_engine::MemoryCache`],
//! bounded by that many bytes) sits in front of Redis: `get`, `exists` and `get_or_set` answer
//! from it when it holds the key, and a `get` that goes to Redis reads the value and its PTTL in
//! one round trip (a pipeline) and keeps it for no longer than Redis will. Coherence comes from
//! RESP3 client-side caching on a third, dedicated connection with
//! `CLIENT TRACKING ON BCAST PREFIX wc:` (broadcasting, so any connection's reads can be kept and
//! the server holds no per-key table; every write under `wc:` is announced to every such host):
//! - an invalidation drops the key's entry at once, so a write by any host is gone from every
//!   near cache within the invalidation's network latency; this backend's own writes drop their
//!   entry before they return;
//! - a `get` registers its fetch before sending it, an invalidation (or flush) spoils the fetches
//!   of its key in flight, and a spoiled fetch inserts nothing (checked and inserted under the
//!   lock invalidations take), so a reply read before a write is never kept after it;
//! - the near cache is used only while the tracking connection of the current epoch is confirmed;
//!   a closed, failed or silent one (a PING every half op timeout) empties it and bypasses it
//!   until `CLIENT TRACKING` is confirmed on a new connection.
//!
//! On a cluster a key's invalidations come from the master serving its slot, so there is one
//! tracking connection per master (found with `CLUSTER SLOTS` through the cluster connection),
//! all in one epoch: the near cache is used only while every one is confirmed, and any one lost
//! empties and bypasses it until all are confirmed again. The masters are asked again after
//! every loss and every op timeout; a change (a failover promoting a replica, a master gaining
//! its first slots) is a new epoch, with connections to the new masters. Writes to slots moved
//! to a master the near cache does not track yet, or after a manual failover (no connection
//! lost), can go unannounced until that check, at most about one op timeout.
//!
//! [`RedisBackend::connect`] waits for that confirmation and fails with `Error::InvalidConfig`
//! naming `+client|tracking` when the user lacks it. The counters add `near_hits`, `near_misses`
//! and `invalidations`.
//!
//! ## TLS
//! A `rediss://` URL (on a cluster: all seed URLs, and then every node) connects both
//! connections with TLS (rustls, TLS 1.2 or 1.3), verifying the
//! server's certificate against the system's roots, or only against
//! [`RedisTls::ca_cert`] when one is given; [`RedisTls::client`] adds a client certificate for
//! servers that require mutual TLS. Certificates are checked before anything connects, and a
//! failed handshake is an `Error::Unavailable` saying what failed (an unknown CA, a name the
//! certificate does not cover, a client certificate required or refused).
//!
//! ## Faults
//! Every Redis command is bounded by [`RedisConfig::op_timeout`] (2 s by default); an
//! unreachable server gives `Error::Unavailable` or `Error::Timeout`, never a hang, and the
//! backend reconnects by itself. Nothing is reported stored unless Redis confirmed it. The
//! converse does not hold: a `set` or fill that timed out on the client may still be applied
//! (it had been written to the connection, only its answer was missing); one still queued is
//! discarded. Writes of one host reach Redis in the order they were called, whatever their size,
//! on one connection; when the connection is replaced (Redis or the path stopped answering for
//! an op timeout), a write left unanswered on the old one may still be applied when the server
//! resumes, after writes sent on the new one. So the cache is weakly consistent, and a caller
//! that needs a value it just set should read it back.

#![warn(missing_docs)]

mod acl;
mod autopipeline;
mod backend;
mod cluster;
mod command_queue;
mod config;
mod connection;
mod counters;
mod dispatcher;
mod errors;
mod keys;
mod near;
mod pubsub;
mod rendezvous;
mod scripts;
mod tls;

pub use acl::{ACL_RULES, CLUSTER_ACL_RULES};
pub use backend::RedisBackend;
pub use command_queue::{CommandQueueStats, QUEUE_BYTES, QUEUE_COMMANDS};
pub use config::{RedisConfig, RedisTarget};
pub use tls::{ClientIdentity, RedisTls};
