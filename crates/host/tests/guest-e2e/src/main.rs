//! Guest component of the wasi-cache-host end-to-end tests: `main SCENARIO [ARGS...]` runs one
//! scenario against the imported `wasi:keyvalue/cache`, prints what it saw, and panics (traps) on
//! any surprise.

#[cfg(not(feature = "golem-wit"))]
wit_bindgen::generate!({
    path: "../../../../wit/p2",
    world: "wasi-cache:wit/cache",
    generate_all,
});

// The same bindings from golem-rust 2.0.0-dev.8's own WIT files (see golem-wit/README.md).
#[cfg(feature = "golem-wit")]
wit_bindgen::generate!({
    path: "golem-wit",
    world: "wasi-cache:golem-compat/cache",
    generate_all,
});

mod hostile;

mod limits;

mod script;

use std::io::Write;
use std::time::Duration;

use wasi::io::poll::{Pollable, poll};
use wasi::io::streams::StreamError;
use wasi::keyvalue::cache::{self, GetOrSetEntry, Vacancy};
use wasi::keyvalue::types::{Bucket, IncomingValue, OutgoingValue};
use wasi::keyvalue::wasi_keyvalue_error::Error;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).map(String::as_str).unwrap_or("");
    match scenario {
        "basic" => basic(),
        "errors" => errors(),
        "streams" => streams(),
        "get-or-set" => get_or_set(),
        "futures" => futures(),
        "live-cap" => live_cap(args[2].parse().unwrap()),
        "budget" => budget(),
        "hold-and-trap" => hold_and_trap(&args[2]),
        "hold-and-exit" => hold_and_exit(&args[2]),
        "set-and-exit" => set_and_exit(&args[2], &args[3]),
        "stream-and-trap" => stream_and_trap(&args[2]),
        "wait-and-fill" => wait_and_fill(&args[2], &args[3]),
        "hold-and-fill" => hold_and_fill(&args[2], &args[3]),
        "many" => many(&args[2], args[3].parse().unwrap(), &args[4]),
        "read" => read(&args[2]),
        "lines" => lines(&args[2]),
        "get-loop" => get_loop(&args[2], args[3].parse().unwrap()),
        "script" => script::run(),
        "exit" => std::process::exit(args[2].parse().unwrap()),
        "alloc" => limits::alloc(args[2].parse().unwrap()),
        "resources" => limits::resources(args[2].parse().unwrap()),
        "spin" => limits::spin(),
        "block-forever" => limits::block_forever(&args[2]),
        "busy-poll" => hostile::busy_poll(args.get(2).map_or(200, |a| a.parse().unwrap()), false),
        "busy-ready" => hostile::busy_poll(args.get(2).map_or(200, |a| a.parse().unwrap()), true),
        "hoard-values" => hostile::hoard_values(args[2].parse().unwrap(), args[3].parse().unwrap()),
        "hoard-vacancies" => {
            hostile::hoard_vacancies(args[2].parse().unwrap(), args[3].parse().unwrap())
        }
        "hoard-waiters" => {
            hostile::hoard_waiters(args[2].parse().unwrap(), args[3].parse().unwrap())
        }
        "hoard-buckets" => {
            hostile::hoard_buckets(args[2].parse().unwrap(), args[3].parse().unwrap())
        }
        "overwrite-permit" => hostile::overwrite_permit(),
        "flood-gets" => {
            hostile::flood_gets(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap())
        }
        other => panic!("unknown scenario {other:?}"),
    }
    say("done");
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn trace(err: Error) -> String {
    err.trace()
}

fn value(bytes: &[u8]) -> OutgoingValue {
    let v = OutgoingValue::new_outgoing_value();
    v.outgoing_value_write_body_sync(bytes).unwrap();
    v
}

fn wait_get(f: &cache::FutureGetResult) -> Result<Option<IncomingValue>, Error> {
    f.listen_to_future_get_result().block();
    f.future_get_result_get().expect("ready after block")
}

fn wait_exists(f: &cache::FutureExistsResult) -> Result<bool, Error> {
    f.listen_to_future_exists_result().block();
    f.future_exists_result_get().expect("ready after block")
}

fn wait_unit(f: &cache::FutureResult) -> Result<(), Error> {
    f.listen_to_future_result().block();
    f.future_result_get().expect("ready after block")
}

fn wait_gos(f: &cache::FutureGetOrSetResult) -> Result<GetOrSetEntry, Error> {
    f.listen_to_future_get_or_set_result().block();
    f.future_get_or_set_result_get().expect("ready after block")
}

fn get(k: &str) -> Option<Vec<u8>> {
    wait_get(&cache::get(k))
        .unwrap()
        .map(|v| v.incoming_value_consume_sync().unwrap())
}

fn set(k: &str, bytes: &[u8], ttl: Option<u32>) {
    wait_unit(&cache::set(k, &value(bytes), ttl)).unwrap();
}

fn exists(k: &str) -> bool {
    wait_exists(&cache::exists(k)).unwrap()
}

fn expect_vacant(f: &cache::FutureGetOrSetResult) -> Vacancy {
    match wait_gos(f).unwrap() {
        GetOrSetEntry::Vacant(v) => v,
        GetOrSetEntry::Occupied(v) => panic!(
            "expected vacant, got occupied {:?}",
            v.incoming_value_consume_sync()
        ),
    }
}

fn expect_occupied(f: &cache::FutureGetOrSetResult) -> Vec<u8> {
    match wait_gos(f).unwrap() {
        GetOrSetEntry::Occupied(v) => v.incoming_value_consume_sync().unwrap(),
        GetOrSetEntry::Vacant(_) => panic!("expected occupied, got vacant"),
    }
}

fn read_stream(v: &IncomingValue) -> Vec<u8> {
    let stream = v.incoming_value_consume_async().unwrap();
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(3) {
            Ok(chunk) => {
                assert!(chunk.len() <= 3);
                out.extend(chunk);
            }
            Err(StreamError::Closed) => break,
            Err(e) => panic!("read failed: {e:?}"),
        }
    }
    out
}

/// Every plain operation on present, absent and expiring keys.
fn basic() {
    let bucket = Bucket::open_bucket("b").unwrap();
    drop(bucket);

    set("k1", b"v1", None);
    assert_eq!(get("k1").as_deref(), Some(&b"v1"[..]));
    assert!(exists("k1"));
    assert!(!exists("missing"));
    assert_eq!(get("missing"), None);

    let v = wait_get(&cache::get("k1")).unwrap().unwrap();
    assert_eq!(v.incoming_value_size().unwrap(), 2);
    assert_eq!(read_stream(&v), b"v1");
    // Consuming again is allowed: the host keeps the shared bytes.
    assert_eq!(v.incoming_value_consume_sync().unwrap(), b"v1");

    set("k1", b"v1-bis", None);
    assert_eq!(get("k1").as_deref(), Some(&b"v1-bis"[..]));

    wait_unit(&cache::delete("k1")).unwrap();
    assert_eq!(get("k1"), None);
    assert!(!exists("k1"));
    wait_unit(&cache::delete("never-there")).unwrap();

    set("empty", b"", None);
    let v = wait_get(&cache::get("empty")).unwrap().unwrap();
    assert_eq!(v.incoming_value_size().unwrap(), 0);
    assert_eq!(read_stream(&v), b"");

    set("short-lived", b"x", Some(1));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(get("short-lived"), None);
    set("long-lived", b"y", Some(60_000));
    assert_eq!(get("long-lived").as_deref(), Some(&b"y"[..]));

    // Fire-and-forget: the set goes on after its future is dropped.
    drop(cache::set("ff", &value(b"fire"), None));
    drop(cache::delete("long-lived"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(get("ff").as_deref(), Some(&b"fire"[..]));
    assert_eq!(get("long-lived"), None);
    say("ok basic");
}

/// Error resources for every bad input; none traps.
fn errors() {
    // Reading a result twice.
    let f = cache::get("x");
    wait_get(&f).unwrap();
    let again = f.future_get_result_get().unwrap().unwrap_err();
    assert!(trace(again).contains("already taken"));
    let f = cache::exists("x");
    wait_exists(&f).unwrap();
    assert!(trace(f.future_exists_result_get().unwrap().unwrap_err()).contains("already taken"));
    let f = cache::delete("x");
    wait_unit(&f).unwrap();
    assert!(trace(f.future_result_get().unwrap().unwrap_err()).contains("already taken"));
    let f = cache::get_or_set("x-gos");
    drop(expect_vacant(&f));
    let e = f.future_get_or_set_result_get().unwrap().err().unwrap();
    assert!(trace(e).contains("already taken"));

    // Oversized keys (the tests configure a 1 KiB key limit).
    let long = "k".repeat(2000);
    let t = trace(wait_get(&cache::get(&long)).unwrap_err());
    assert!(t.contains("key is 2000 bytes"), "{t}");
    assert!(trace(wait_exists(&cache::exists(&long)).unwrap_err()).contains("key is"));
    assert!(
        trace(wait_unit(&cache::set(&long, &value(b"v"), None)).unwrap_err()).contains("key is")
    );
    assert!(trace(wait_unit(&cache::delete(&long)).unwrap_err()).contains("key is"));
    assert!(trace(wait_gos(&cache::get_or_set(&long)).err().unwrap()).contains("key is"));

    // Oversized value, sync (the tests configure a 4 KiB value limit).
    let v = OutgoingValue::new_outgoing_value();
    let t = trace(v.outgoing_value_write_body_sync(&[0; 5000]).unwrap_err());
    assert!(t.contains("value is 5000 bytes"), "{t}");
    // The body is still unwritten: set refuses it.
    let t = trace(wait_unit(&cache::set("k", &v, None)).unwrap_err());
    assert!(t.contains("no body"), "{t}");
    v.outgoing_value_write_body_sync(b"fits").unwrap();
    let t = trace(v.outgoing_value_write_body_sync(b"twice").unwrap_err());
    assert!(t.contains("already written"), "{t}");
    assert!(v.outgoing_value_write_body_async().is_err());
    wait_unit(&cache::set("k", &v, None)).unwrap();
    assert_eq!(get("k").as_deref(), Some(&b"fits"[..]));
    // The same outgoing-value serves several sets.
    wait_unit(&cache::set("k2", &v, None)).unwrap();
    assert_eq!(get("k2").as_deref(), Some(&b"fits"[..]));

    // Oversized value, stream.
    let v = OutgoingValue::new_outgoing_value();
    let s = v.outgoing_value_write_body_async().unwrap();
    let f = cache::set("big", &v, None);
    s.blocking_write_and_flush(&[1; 4000]).unwrap();
    match s.write(&[2; 200]) {
        Err(StreamError::LastOperationFailed(e)) => {
            assert!(e.to_debug_string().contains("value is 4200 bytes"))
        }
        other => panic!("expected a failed write, got {other:?}"),
    }
    assert!(matches!(s.check_write(), Err(StreamError::Closed)));
    drop(s);
    let t = trace(wait_unit(&f).unwrap_err());
    assert!(t.contains("value is 4200 bytes"), "{t}");
    assert_eq!(get("big"), None);
    say("ok errors");
}

/// Stream bodies in and out, and `set` waiting for an open stream.
fn streams() {
    let v = OutgoingValue::new_outgoing_value();
    let s = v.outgoing_value_write_body_async().unwrap();
    s.blocking_write_and_flush(b"hello, ").unwrap();
    let f = cache::set("s", &v, Some(60_000));
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        f.future_result_get().is_none(),
        "set resolved before the stream closed"
    );
    assert!(!f.listen_to_future_result().ready());
    let permit = s.check_write().unwrap();
    assert!(permit > 0);
    s.write(b"world").unwrap();
    s.flush().unwrap();
    drop(s);
    wait_unit(&f).unwrap();
    let value = wait_get(&cache::get("s")).unwrap().unwrap();
    assert_eq!(value.incoming_value_size().unwrap(), 12);
    assert_eq!(read_stream(&value), b"hello, world");

    // A large value through a stream, read back in one piece and as a stream.
    let big: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let v = OutgoingValue::new_outgoing_value();
    let s = v.outgoing_value_write_body_async().unwrap();
    for chunk in big.chunks(1000) {
        s.blocking_write_and_flush(chunk).unwrap();
    }
    drop(s);
    wait_unit(&cache::set("big", &v, None)).unwrap();
    assert_eq!(get("big").unwrap(), big);
    say("ok streams");
}

/// The rendezvous, fills (sync and stream), abandonment and hand-off within one instance.
fn get_or_set() {
    // Miss, fill, hit.
    let vacancy = expect_vacant(&cache::get_or_set("g1"));
    let out = vacancy.vacancy_fill(None);
    out.outgoing_value_write_body_sync(b"one").unwrap();
    assert_eq!(expect_occupied(&cache::get_or_set("g1")), b"one");
    assert_eq!(get("g1").as_deref(), Some(&b"one"[..]));
    // A vacancy gives one outgoing-value; a second is refused with an error, no trap.
    let second = vacancy.vacancy_fill(None);
    let t = trace(second.outgoing_value_write_body_sync(b"two").unwrap_err());
    assert!(t.contains("vacancy-fill"), "{t}");
    assert!(second.outgoing_value_write_body_async().is_err());
    drop(second);
    drop(out);
    drop(vacancy);

    // Fill through a stream, with a TTL; a waiter gets the value when the stream is dropped.
    let first = cache::get_or_set("g2");
    let vacancy = expect_vacant(&first);
    let waiter = cache::get_or_set("g2");
    std::thread::sleep(Duration::from_millis(20));
    assert!(waiter.future_get_or_set_result_get().is_none());
    let out = vacancy.vacancy_fill(Some(60_000));
    let s = out.outgoing_value_write_body_async().unwrap();
    s.blocking_write_and_flush(b"str").unwrap();
    s.blocking_write_and_flush(b"eamed").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(waiter.future_get_or_set_result_get().is_none());
    drop(s);
    assert_eq!(expect_occupied(&waiter), b"streamed");
    assert_eq!(get("g2").as_deref(), Some(&b"streamed"[..]));

    // Dropping the vacancy abandons it: no waiter, the key stays absent.
    drop(expect_vacant(&cache::get_or_set("g3")));
    assert_eq!(get("g3"), None);
    // Dropping the fill's outgoing-value without a body abandons it too.
    let vacancy = expect_vacant(&cache::get_or_set("g3"));
    drop(vacancy.vacancy_fill(None));
    drop(vacancy);
    // ... as does dropping a stream body's outgoing-value... no: the stream owns the fill.
    let vacancy = expect_vacant(&cache::get_or_set("g3"));

    // Hand-off: a waiter receives the abandoned vacancy and fills it.
    let waiter = cache::get_or_set("g3");
    std::thread::sleep(Duration::from_millis(20));
    assert!(waiter.future_get_or_set_result_get().is_none());
    drop(vacancy);
    let handed = expect_vacant(&waiter);
    handed
        .vacancy_fill(None)
        .outgoing_value_write_body_sync(b"handed")
        .unwrap();
    assert_eq!(get("g3").as_deref(), Some(&b"handed"[..]));

    // A pending get-or-set future dropped leaves the rendezvous; the next caller gets the
    // vacancy once the holder gives up, and nobody hangs.
    let vacancy = expect_vacant(&cache::get_or_set("g4"));
    let leaver = cache::get_or_set("g4");
    std::thread::sleep(Duration::from_millis(20));
    drop(leaver);
    drop(vacancy);
    let vacancy = expect_vacant(&cache::get_or_set("g4"));
    // A dropped pending future that was about to receive the vacancy hands it on.
    let leaver = cache::get_or_set("g4");
    let stayer = cache::get_or_set("g4");
    std::thread::sleep(Duration::from_millis(20));
    drop(vacancy); // hands off to `leaver` (first in line), which is dropped next
    drop(leaver);
    let vacancy = expect_vacant(&stayer);
    vacancy
        .vacancy_fill(None)
        .outgoing_value_write_body_sync(b"four")
        .unwrap();
    assert_eq!(get("g4").as_deref(), Some(&b"four"[..]));

    // A plain set resolves the waiters of a pending rendezvous.
    let vacancy = expect_vacant(&cache::get_or_set("g5"));
    let waiter = cache::get_or_set("g5");
    set("g5", b"by-set", None);
    assert_eq!(expect_occupied(&waiter), b"by-set");
    drop(vacancy);

    // The fill's outgoing-value can also be passed to set for another key.
    let vacancy = expect_vacant(&cache::get_or_set("g6"));
    let out = vacancy.vacancy_fill(None);
    out.outgoing_value_write_body_sync(b"six").unwrap();
    wait_unit(&cache::set("g6-copy", &out, None)).unwrap();
    assert_eq!(get("g6").as_deref(), Some(&b"six"[..]));
    assert_eq!(get("g6-copy").as_deref(), Some(&b"six"[..]));
    say("ok get-or-set");
}

/// Polling many futures at once, and reading results without polling.
fn futures() {
    for i in 0..20 {
        set(&format!("p{i}"), format!("v{i}").as_bytes(), None);
    }
    let gets: Vec<_> = (0..20).map(|i| cache::get(&format!("p{i}"))).collect();
    let exists: Vec<_> = (0..20).map(|i| cache::exists(&format!("p{i}"))).collect();
    let mut pending: Vec<(usize, Pollable)> = gets
        .iter()
        .map(|f| f.listen_to_future_get_result())
        .chain(exists.iter().map(|f| f.listen_to_future_exists_result()))
        .enumerate()
        .collect();
    let mut seen = 0;
    while !pending.is_empty() {
        let refs: Vec<&Pollable> = pending.iter().map(|(_, p)| p).collect();
        let ready = poll(&refs);
        assert!(!ready.is_empty());
        let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for i in ready {
            let (which, pollable) = pending.remove(i);
            drop(pollable);
            if which < 20 {
                let v = gets[which]
                    .future_get_result_get()
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    v.incoming_value_consume_sync().unwrap(),
                    format!("v{which}").as_bytes()
                );
            } else {
                assert!(
                    exists[which - 20]
                        .future_exists_result_get()
                        .unwrap()
                        .unwrap()
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 40);

    // Spinning on `…-get` without a pollable also sees the result.
    let f = cache::get("p3");
    let mut spins = 0u64;
    let v = loop {
        if let Some(r) = f.future_get_result_get() {
            break r.unwrap().unwrap();
        }
        spins += 1;
        assert!(spins < 100_000_000, "get never became ready");
        if spins.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    assert_eq!(v.incoming_value_consume_sync().unwrap(), b"v3");

    // A pollable stays ready; `ready` tells without blocking.
    let f = cache::exists("p1");
    let p = f.listen_to_future_exists_result();
    p.block();
    assert!(p.ready());
    p.block();
    drop(p);
    assert!(f.future_exists_result_get().unwrap().unwrap());
    say("ok futures");
}

/// The per-instance cap on live futures: over it, futures resolve to an error.
fn live_cap(cap: usize) {
    let held: Vec<_> = (0..cap).map(|i| cache::get(&format!("c{i}"))).collect();
    let over = cache::get("over");
    let t = trace(wait_get(&over).unwrap_err());
    assert!(t.contains("live futures"), "{t}");
    let over = cache::set("over", &value(b"v"), None);
    assert!(trace(wait_unit(&over).unwrap_err()).contains("live futures"));
    drop(held);
    // Slots come back once the futures are dropped (and their calls are done).
    std::thread::sleep(Duration::from_millis(20));
    set("over", b"v", None);
    assert_eq!(get("over").as_deref(), Some(&b"v"[..]));
    say("ok live-cap");
}

/// The memory budget (the test sets 10,000 bytes, values up to 4 KiB): bodies held by
/// outgoing-values count until dropped; a write beyond it fails, never traps.
fn budget() {
    // The test's budget is 16,000 bytes; every resource costs 128 bytes besides its payload.
    let over = |t: &str| t.contains("memory budget of 16000 bytes");
    let a = value(&[1; 4000]);
    let b = value(&[2; 4000]);
    let x = value(&[7; 4000]);
    let c = OutgoingValue::new_outgoing_value();
    let t = trace(c.outgoing_value_write_body_sync(&[3; 4000]).unwrap_err());
    assert!(over(&t) && t.contains("holds 12512 bytes"), "{t}");
    // Values already written still serve sets (a set holds its value while it writes).
    drop(x);
    wait_unit(&cache::set("a", &a, None)).unwrap();
    drop(a);
    c.outgoing_value_write_body_sync(&[3; 4000]).unwrap();
    wait_unit(&cache::set("c", &c, None)).unwrap();
    assert_eq!(get("c").unwrap(), vec![3; 4000]);

    // A stream body grows against the same budget: 2000 bytes fit, the next 2000 do not.
    let y = value(&[6; 4000]);
    let d = OutgoingValue::new_outgoing_value();
    let s = d.outgoing_value_write_body_async().unwrap();
    let f = cache::set("d", &d, None);
    s.blocking_write_and_flush(&[4; 2000]).unwrap();
    assert!(s.check_write().unwrap() >= 2000);
    match s.write(&[4; 2000]) {
        Err(StreamError::LastOperationFailed(e)) => {
            let t = e.to_debug_string();
            assert!(over(&t), "{t}")
        }
        other => panic!("expected a failed write, got {other:?}"),
    }
    assert!(matches!(s.check_write(), Err(StreamError::Closed)));
    drop(s);
    let t = trace(wait_unit(&f).unwrap_err());
    assert!(over(&t), "{t}");
    assert_eq!(get("d"), None);

    // The failed stream gave its bytes back; dropping the rest frees the whole budget.
    drop((d, f, y));
    let e = value(&[5; 2000]);
    drop((b, c, e));
    let held: Vec<_> = (0..3).map(|i| value(&[i; 4000])).collect();
    let last = OutgoingValue::new_outgoing_value();
    let t = trace(last.outgoing_value_write_body_sync(&[9; 4000]).unwrap_err());
    assert!(over(&t) && t.contains("holds 12512 bytes"), "{t}");
    last.outgoing_value_write_body_sync(&[9; 2000]).unwrap();
    drop((held, last));
    say("ok budget");
}

/// Takes the vacancy of `key`, says so, then traps while holding it.
fn hold_and_trap(key: &str) {
    let _vacancy = expect_vacant(&cache::get_or_set(key));
    say("holding");
    std::thread::sleep(Duration::from_millis(300));
    say("trapping");
    core::arch::wasm32::unreachable();
}

/// Takes the vacancy of `key`, starts filling it through a stream, then traps mid-body: the
/// partial body must not be stored.
fn stream_and_trap(key: &str) {
    let vacancy = expect_vacant(&cache::get_or_set(key));
    let out = vacancy.vacancy_fill(None);
    let stream = out.outgoing_value_write_body_async().unwrap();
    stream.blocking_write_and_flush(b"partial").unwrap();
    say("holding");
    std::thread::sleep(Duration::from_millis(300));
    say("trapping");
    core::arch::wasm32::unreachable();
}

/// Takes the vacancy of `key`, says so, then exits (drops the store) while holding it.
fn hold_and_exit(key: &str) {
    let vacancy = expect_vacant(&cache::get_or_set(key));
    say("holding");
    std::thread::sleep(Duration::from_millis(300));
    say("exiting");
    std::mem::forget(vacancy);
    std::process::exit(0);
}

/// Starts a `set` of `key` to `value`, drops its future (and the value) at once and exits: the
/// write is fire-and-forget, so it is stored all the same.
fn set_and_exit(key: &str, body: &str) {
    let v = value(body.as_bytes());
    drop(cache::set(key, &v, None));
    drop(v);
    say("exiting");
    std::process::exit(0);
}

/// Takes the vacancy of `key`, says `holding`, waits for a line (or the end) on stdin, then fills
/// it with `value` and says `filled`: another process can wait on the key meanwhile.
fn hold_and_fill(key: &str, value: &str) {
    let vacancy = expect_vacant(&cache::get_or_set(key));
    say("holding");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    vacancy
        .vacancy_fill(None)
        .outgoing_value_write_body_sync(value.as_bytes())
        .unwrap();
    say("filled");
}

/// Waits on `key`'s rendezvous; fills it with `value` if handed the vacancy.
fn wait_and_fill(key: &str, value: &str) {
    match wait_gos(&cache::get_or_set(key)).unwrap() {
        GetOrSetEntry::Vacant(v) => {
            say("vacant");
            v.vacancy_fill(None)
                .outgoing_value_write_body_sync(value.as_bytes())
                .unwrap();
        }
        GetOrSetEntry::Occupied(v) => {
            let v = v.incoming_value_consume_sync().unwrap();
            say(&format!("occupied {}", String::from_utf8(v).unwrap()));
        }
    }
}

/// `n` concurrent get-or-set futures on `key`: fills the vacancy (if one comes here) with
/// `value`, and reports how many were vacant and occupied, and which values came back.
fn many(key: &str, n: usize, value: &str) {
    let futures: Vec<_> = (0..n).map(|_| cache::get_or_set(key)).collect();
    let mut pending: Vec<(usize, Pollable)> = futures
        .iter()
        .map(|f| f.listen_to_future_get_or_set_result())
        .enumerate()
        .collect();
    let (mut vacant, mut occupied) = (0, 0);
    let mut values = std::collections::BTreeSet::new();
    while !pending.is_empty() {
        let refs: Vec<&Pollable> = pending.iter().map(|(_, p)| p).collect();
        let mut ready: Vec<usize> = poll(&refs).into_iter().map(|i| i as usize).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for i in ready {
            let (which, pollable) = pending.swap_remove(i);
            drop(pollable);
            match futures[which]
                .future_get_or_set_result_get()
                .unwrap()
                .unwrap()
            {
                GetOrSetEntry::Vacant(v) => {
                    vacant += 1;
                    v.vacancy_fill(None)
                        .outgoing_value_write_body_sync(value.as_bytes())
                        .unwrap();
                }
                GetOrSetEntry::Occupied(v) => {
                    occupied += 1;
                    values.insert(
                        String::from_utf8(v.incoming_value_consume_sync().unwrap()).unwrap(),
                    );
                }
            }
        }
    }
    say(&format!(
        "vacant={vacant} occupied={occupied} values={values:?}"
    ));
}

/// Prints the value of `key`.
/// Serves commands on stdin, one per line, until `end` or the end of stdin: `get` says what
/// [`read`] says, `set V` stores `V` (no TTL) and says `set` once it is acknowledged, `delete`
/// says `deleted` likewise.
/// A long-lived process another one can change `key` under, each step on cue.
fn lines(key: &str) {
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        match line.trim_end().split_once(' ') {
            None if line.trim_end() == "end" => break,
            None if line.trim_end() == "get" => read(key),
            None if line.trim_end() == "delete" => {
                wait_unit(&cache::delete(key)).unwrap();
                say("deleted");
            }
            Some(("set", v)) => {
                set(key, v.as_bytes(), None);
                say("set");
            }
            _ => panic!("unknown command {line:?}"),
        }
        line.clear();
    }
}

fn read(key: &str) {
    match get(key) {
        Some(v) => say(&format!("value {}", String::from_utf8(v).unwrap())),
        None => say("absent"),
    }
}

/// `n` gets of `key` (a hit), each read whole: the loop the flavours bench times.
fn get_loop(key: &str, n: usize) {
    let mut total = 0;
    for _ in 0..n {
        let future = cache::get(key);
        let result = match future.future_get_result_get() {
            Some(result) => result,
            None => {
                future.listen_to_future_get_result().block();
                future.future_get_result_get().unwrap()
            }
        };
        let value = result.unwrap().expect("a hit");
        total += value.incoming_value_consume_sync().unwrap().len();
    }
    say(&format!("read {total}"));
}
