//! The Lua scripts that make the rendezvous atomic on the server, one round trip each.
//!
//! Redis runs a script without interleaving other commands, so "read the value or take the
//! lock" and "store, release the lock if still ours, and announce" each happen as one step, for
//! every host sharing the server. Each is sent as EVALSHA with its keys (so a cluster routes it
//! to the node serving their slot); a node that lacks it (a restart, a promoted replica) answers
//! NOSCRIPT, and the script is then loaded on that node and run again. They announce with
//! `PUBLISH` on one server and `SPUBLISH` (sharded pub/sub) on a cluster: [`Scripts::new`].

use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

use crate::connection::Conn;

/// Most times a script is loaded for one call.
const MAX_LOADS: usize = 3;

/// One script: its code (to load it where it is missing) and its hash (to call it).
pub(crate) struct Lua {
    code: String,
    script: Script,
}

impl Lua {
    fn new(code: String) -> Self {
        Self {
            script: Script::new(&code),
            code,
        }
    }

    /// An EVALSHA of the script with `keys`; its ARGV are added to the command.
    pub(crate) fn call(&self, keys: &[&[u8]]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        cmd
    }

    /// Runs `call` (made by [`Lua::call`], with `key` its first key), loading the script on the
    /// node serving `key` when that node lacks it. While a cluster fails over, the load and the
    /// call may reach different nodes (the replica, then the promoted one), so a few rounds are
    /// allowed (the caller's op timeout bounds them all).
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        conn: &mut Conn,
        key: &[u8],
        call: &Cmd,
    ) -> RedisResult<T> {
        let mut loads = 0;
        loop {
            match call.query_async(conn).await {
                Err(e)
                    if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
                        && loads < MAX_LOADS =>
                {
                    loads += 1;
                    conn.load_script(&self.code, key).await?;
                }
                outcome => return outcome,
            }
        }
    }
}

/// The backend's scripts, announcing with one publish command.
pub(crate) struct Scripts {
    /// See [`READ`].
    pub(crate) read: Lua,
    /// See [`CLAIM`].
    pub(crate) claim: Lua,
    /// See [`STORE`].
    pub(crate) store: Lua,
    /// See [`ABANDON`].
    pub(crate) abandon: Lua,
}

impl Scripts {
    /// The scripts announcing with `publish`: `PUBLISH` (one server) or `SPUBLISH` (a cluster,
    /// where a channel lives on the shard of its hash tag).
    pub(crate) fn new(publish: &str) -> Self {
        let with = |code: &str| Lua::new(code.replace("'PUBLISH'", &format!("'{publish}'")));
        Self {
            read: with(READ),
            claim: with(CLAIM),
            store: with(STORE),
            abandon: with(ABANDON),
        }
    }
}

/// Reads a value only if it is no longer than a limit, so that the server never builds a reply
/// (nor a Lua string) larger than what the caller reserved for it. One command, so that it is
/// batched with others like a GET.
///
/// KEYS: value. ARGV: the limit in bytes, and `1` to return the value's PTTL too.
/// Returns `{0}` (absent), `{1, value}` or `{1, value, pttl}` (present), or `{2, length}` (longer
/// than the limit: not read).
const READ: &str = r"
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return {2, n} end
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
if ARGV[2] == '1' then return {1, v, redis.call('PTTL', KEYS[1])} end
return {1, v}
";

/// Returns the value (if no longer than a limit), or takes the lock, or reports who holds it.
///
/// KEYS: value, lock. ARGV: token, lock lifetime in ms (the vacancy timeout), the limit in
/// bytes.
/// Returns `{1, value}` (present), `{2}` (lock taken: the caller holds the vacancy),
/// `{3, pttl}` (another caller holds the lock for `pttl` more milliseconds) or `{4, length}`
/// (present but longer than the limit: not read).
const CLAIM: &str = r"
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[3]) then return {4, n} end
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3, redis.call('PTTL', KEYS[2])}
";

/// Stores a value (a plain `set`, or a vacancy's fill) and wakes the key's waiters.
///
/// KEYS: value, lock, channel. ARGV: token (empty for a plain set), value, TTL in ms (empty for
/// none; `0` deletes the key: never visible), and `1` to publish the value inline or `0` to
/// publish only a "changed" notice (large values: waiters then re-read it).
/// The lock is released only if it still holds this token; a stale holder's fill is stored as an
/// ordinary set. Waiters are told (`PUBLISH`) only while some lock exists: without a lock no
/// caller waits on a message (a waiter whose lock expired re-claims on its own timer).
/// Returns 1 if the caller's lock was released, 0 otherwise.
const STORE: &str = r"
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
";

/// Releases an abandoned vacancy's lock if it still holds the token, and wakes the waiters so
/// that they race their claim (exactly one wins).
///
/// KEYS: lock, channel. ARGV: token. Returns 0 if the lock was not ours any more, otherwise 1 +
/// the number of subscribers that were told.
const ABANDON: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1 + redis.call('PUBLISH', KEYS[2], 'a')
end
return 0
";
