//! The Lua scripts that make the rendezvous atomic on the server, one round trip each.
//!
//! Redis runs a script without interleaving other commands, so "read the value or take the
//! lock" and "store, release the lock if still ours, and announce" each happen as one step, for
//! every host sharing the server. `redis::Script` sends them as EVALSHA and falls back to EVAL
//! when the server lost its script cache (e.g. after a restart).

use std::sync::LazyLock;

use redis::Script;

/// Returns the value, or takes the lock, or reports who holds it.
///
/// KEYS: value, lock. ARGV: token, lock lifetime in ms (the vacancy timeout).
/// Returns `{1, value}` (present), `{2}` (lock taken: the caller holds the vacancy) or
/// `{3, pttl}` (another caller holds the lock for `pttl` more milliseconds).
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3, redis.call('PTTL', KEYS[2])}
",
    )
});

/// Stores a value (a plain `set`, or a vacancy's fill) and wakes the key's waiters.
///
/// KEYS: value, lock, channel. ARGV: token (empty for a plain set), value, TTL in ms (empty for
/// none; `0` deletes the key: never visible), and `1` to publish the value inline or `0` to
/// publish only a "changed" notice (large values: waiters then re-read it).
/// The lock is released only if it still holds this token; a stale holder's fill is stored as an
/// ordinary set. Waiters are told (`PUBLISH`) only while some lock exists: without a lock no
/// caller waits on a message (a waiter whose lock expired re-claims on its own timer).
/// Returns 1 if the caller's lock was released, 0 otherwise.
pub(crate) static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
elseif ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
local lock = redis.call('GET', KEYS[2])
if not lock then return 0 end
local owned = 0
if ARGV[1] ~= '' and lock == ARGV[1] then
  redis.call('DEL', KEYS[2])
  owned = 1
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[3], 'v' .. ARGV[2])
else
  redis.call('PUBLISH', KEYS[3], 'c')
end
return owned
",
    )
});

/// Releases an abandoned vacancy's lock if it still holds the token, and wakes the waiters so
/// that they race their claim (exactly one wins).
///
/// KEYS: lock, channel. ARGV: token. Returns 0 if the lock was not ours any more, otherwise 1 +
/// the number of subscribers that were told.
pub(crate) static ABANDON: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1 + redis.call('PUBLISH', KEYS[2], 'a')
end
return 0
",
    )
});
