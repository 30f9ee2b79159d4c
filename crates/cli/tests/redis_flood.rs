//! `wasi-cache run --redis` under a guest that floods the shared server: hundreds of unread
//! `get`s of a value near the value limit make the server build at most the guest's memory
//! budget of replies (plus a small constant), another tenant's gets keep working meanwhile, and
//! `get-or-set` waiters on long keys are charged every copy of the key the backend keeps.

mod common;
use common::*;

use common::redis_runs::*;
use wasi_cache_redis_server::RedisServer;

/// The guest's memory budget (`wasi-cache run`'s default).
const BUDGET: u64 = 64 << 20;

/// What the server may materialise beyond the flooding guest's budget: the small first reads'
/// Lua copies (at most 64 KiB each, one script at a time) and the server's own bookkeeping.
const SLACK: u64 = 4 << 20;

/// One `INFO memory` field of the server at `port`, in bytes.
fn memory_field(port: u16, field: &str) -> u64 {
    let info = redis_command(port, "INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO memory: {info}"))
}

/// The amplification of issue 18: one 15 MB value and 400 unread gets of it made the server
/// peak at 5.91 GB and refuse other hosts.
#[test]
fn unread_gets_of_a_large_value_stay_within_the_budget_on_the_server() {
    let server = RedisServer::start();
    let (url, port) = (server.url(), server.port());
    let small = run_to_end(
        &url,
        &["--namespace", "other"],
        &["set-and-exit", "small", "x"],
    );
    assert!(small.status.success(), "{small:#?}");

    let mut flood = start(
        &url,
        &["--namespace", "flood"],
        &["flood-gets", "big", "15000000", "400"],
    );
    flood.expect_line("ready", STARTUP);
    let before = memory_field(port, "used_memory");
    let peak_before = memory_field(port, "used_memory_peak");
    flood.send_line("go");
    // Another tenant on the same server, reading its own key throughout the flood.
    let other = start(
        &url,
        &["--namespace", "other"],
        &["get-loop", "small", "200"],
    );
    let got = flood.expect_line_with("flood: ", STARTUP);
    let other = other.wait(STARTUP);
    assert!(other.status.success(), "{other:#?}");
    assert_eq!(other.stdout, "read 200\ndone\n", "{other:#?}");

    let peak = memory_field(port, "used_memory_peak");
    let lua = memory_field(port, "used_memory_lua");
    eprintln!(
        "{got}; server: used {before} before, peak {peak_before} before and {peak} after, \
         Lua {lua}"
    );
    assert!(
        peak.saturating_sub(before) <= BUDGET + SLACK,
        "the server peaked {} bytes above its use before the flood, budget {BUDGET}",
        peak - before
    );
    assert!(lua <= SLACK, "Lua holds {lua} bytes");
    // At most what the budget holds of 15 MB values; the rest refused by the budget.
    let kept: u64 = got.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((1..=BUDGET / 15_000_000).contains(&kept), "{got}");
    assert!(got.contains("memory budget"), "{got}");
    flood.send_line("end");
    let flood = flood.wait(STARTUP);
    assert!(flood.status.success(), "{flood:#?}");
}

/// `get-or-set` waiters on one long key hold many copies of it in the Redis backend (names,
/// flights, commands, the channel's subscription): each is charged all of them, so the budget
/// refuses the waiter that would exceed it, well before the count the key alone allows.
#[test]
fn waiters_on_a_long_key_are_charged_every_copy_the_backend_keeps() {
    const KEY: u64 = 60_000;
    let server = RedisServer::start();
    let ended = run_to_end(
        &server.url(),
        &["--namespace", "waiters"],
        &["hoard-waiters", "4000", &KEY.to_string()],
    );
    assert!(ended.status.success(), "{ended:#?}");
    let line = ended.stdout.lines().next().unwrap_or_default();
    eprintln!("{line}");
    assert!(
        line.contains(", refused: ")
            && line.contains(&format!("exceed its memory budget of {BUDGET} bytes")),
        "the guest was never refused: {ended:#?}"
    );
    let kept: u64 = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap();
    // Charged once, the key would allow about 1,100 waiters.
    assert!(
        kept > 0 && kept * 20 * KEY <= BUDGET,
        "kept {kept} waiters on a {KEY}-byte key"
    );
}
