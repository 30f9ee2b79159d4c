//! WASI 0.3 guest component of the wasi-cache-host end-to-end tests: a command (it exports
//! `wasi:cli/run@0.3.0`) whose `run SCENARIO [ARGS...]` runs one scenario against the WASI 0.3
//! `wasi:keyvalue/cache`, prints what it saw, and panics (traps) on any surprise. The 0.2
//! guest's scenarios (`../guest-e2e`), on async gets and `stream<u8>` bodies.

wit_bindgen::generate!({
    path: ["../../../../wit/p3", "wit"],
    world: "wasi-cache:guest-e2e-p3/guest",
    generate_all,
});

mod hostile;

use std::io::Write;
use std::time::Duration;

use futures::future::join_all;
use wasi::keyvalue::cache::{self, GetOrSetEntry, Vacancy};
use wasi::keyvalue::types::{IncomingValue, OutgoingValue};

struct Command;

impl exports::wasi::cli::run::Guest for Command {
    async fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().collect();
        let arg = |i: usize| args[i].as_str();
        let num = |i: usize| args[i].parse::<usize>().unwrap();
        match args.get(1).map(String::as_str).unwrap_or("") {
            "basic" => basic().await,
            "ttl" => ttl().await,
            "streams" => streams(num(2)).await,
            "rendezvous" => rendezvous(arg(2), num(3), arg(4)).await,
            "wait-and-fill" => wait_and_fill(arg(2), arg(3)).await,
            "hold" => hold(arg(2), arg(3)).await,
            "read" => read(arg(2)).await,
            "get-loop" => get_loop(arg(2), num(3)).await,
            "limits" => limits(num(2), num(3)).await,
            "live-cap" => hostile::live_cap(num(2)).await,
            "double-get" => hostile::double_get().await,
            "cancel-get" => hostile::cancel_get(arg(2)).await,
            "hoard-values" => hostile::hoard_values(num(2), num(3)).await,
            "hoard-vacancies" => hostile::hoard_vacancies(num(2)).await,
            "flood" => hostile::flood(num(2)).await,
            "hold-streams" => hostile::hold_streams(num(2)),
            other => panic!("unknown scenario {other:?}"),
        }
        say("done");
        Ok(())
    }
}

export!(Command);

fn say(line: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// A value with body `body`, written in one piece.
fn value(body: &[u8]) -> OutgoingValue {
    let value = OutgoingValue::new_outgoing_value();
    value.outgoing_value_write_body_sync(body).unwrap();
    value
}

async fn set(key: &str, body: &[u8], ttl_ms: Option<u32>) {
    cache::set(key, &value(body), ttl_ms).get().await.unwrap();
}

async fn get(key: &str) -> Option<Vec<u8>> {
    let value = cache::get(key).get().await.unwrap()?;
    Some(value.incoming_value_consume_sync().unwrap())
}

/// Reads a value's body through its `stream<u8>`.
async fn read_stream(value: &IncomingValue) -> Vec<u8> {
    let stream = value.incoming_value_consume_async().unwrap();
    stream.collect().await
}

fn fill(vacancy: Vacancy, body: &[u8]) {
    vacancy
        .vacancy_fill(None)
        .outgoing_value_write_body_sync(body)
        .unwrap();
}

async fn basic() {
    assert_eq!(get("k").await, None);
    assert!(!cache::exists("k").get().await.unwrap());
    set("k", b"v1", None).await;
    assert_eq!(get("k").await.as_deref(), Some(&b"v1"[..]));
    assert!(cache::exists("k").get().await.unwrap());
    let value = cache::get("k").get().await.unwrap().unwrap();
    assert_eq!(value.incoming_value_size().unwrap(), 2);
    assert_eq!(read_stream(&value).await, b"v1");
    cache::delete("k").get().await.unwrap();
    assert_eq!(get("k").await, None);
    // A future's result is read once.
    let future = cache::exists("k");
    assert!(!future.get().await.unwrap());
    let again = future.get().await.unwrap_err().trace();
    assert!(again.contains("result already taken"), "{again}");
    // A set of a value without a body is an error, not a trap.
    let empty = OutgoingValue::new_outgoing_value();
    let err = cache::set("k", &empty, None).get().await.unwrap_err();
    say(&format!("no body: {}", err.trace()));
    say("basic ok");
}

async fn ttl() {
    set("short", b"s", Some(50)).await;
    set("long", b"l", Some(60_000)).await;
    assert_eq!(get("short").await.as_deref(), Some(&b"s"[..]));
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(get("short").await, None);
    assert_eq!(get("long").await.as_deref(), Some(&b"l"[..]));
    say("ttl ok");
}

/// The body `size` bytes long: a pattern that a dropped or reordered chunk would break.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Starts `value`'s body as a `stream<u8>`: the writable end.
fn body_stream(value: &OutgoingValue) -> wit_bindgen::StreamWriter<u8> {
    let (tx, rx) = wit_stream::new();
    value.outgoing_value_write_body_async(rx).unwrap();
    tx
}

/// Writes `body` through `tx` and closes it.
async fn write_all(mut tx: wit_bindgen::StreamWriter<u8>, body: Vec<u8>) {
    let rest = tx.write_all(body).await;
    assert!(rest.is_empty(), "{} bytes not written", rest.len());
}

async fn streams(size: usize) {
    let body = pattern(size);
    let out = OutgoingValue::new_outgoing_value();
    // The set, started once the body is a stream, waits for the stream's end.
    let tx = body_stream(&out);
    let set = cache::set("big", &out, None);
    write_all(tx, body.clone()).await;
    set.get().await.unwrap();
    let value = cache::get("big").get().await.unwrap().unwrap();
    assert_eq!(value.incoming_value_size().unwrap(), size as u64);
    assert!(read_stream(&value).await == body, "streamed body differs");
    assert!(value.incoming_value_consume_sync().unwrap() == body);
    // A vacancy filled through a stream.
    let GetOrSetEntry::Vacant(vacancy) = cache::get_or_set("filled").get().await.unwrap() else {
        panic!("filled: expected a vacancy")
    };
    write_all(body_stream(&vacancy.vacancy_fill(None)), body.clone()).await;
    let GetOrSetEntry::Occupied(value) = cache::get_or_set("filled").get().await.unwrap() else {
        panic!("filled: expected its value")
    };
    assert!(read_stream(&value).await == body, "filled body differs");
    say(&format!("streamed {size}"));
}

/// `n` concurrent tasks of this instance on `key`'s rendezvous: one gets the vacancy and fills
/// it with `body` after letting the others join; every other one gets that value.
async fn rendezvous(key: &str, n: usize, body: &str) {
    let tasks = (0..n).map(|_| async move {
        match cache::get_or_set(key).get().await.unwrap() {
            GetOrSetEntry::Vacant(vacancy) => {
                for _ in 0..20 {
                    wit_bindgen::yield_async().await;
                }
                fill(vacancy, body.as_bytes());
                None
            }
            GetOrSetEntry::Occupied(value) => Some(value.incoming_value_consume_sync().unwrap()),
        }
    });
    let results = join_all(tasks).await;
    let vacant = results.iter().filter(|r| r.is_none()).count();
    // Every task gets one value: this instance's `body` when one of its tasks had the vacancy,
    // else that of the instance that came first.
    let values: Vec<&Vec<u8>> = results.iter().flatten().collect();
    assert!(values.windows(2).all(|pair| pair[0] == pair[1]));
    assert!(vacant == 0 || values.iter().all(|v| v.as_slice() == body.as_bytes()));
    say(&format!("vacant {vacant} occupied {}", n - vacant));
}

/// Waits on `key`'s rendezvous; fills it with `body` if handed the vacancy.
async fn wait_and_fill(key: &str, body: &str) {
    match cache::get_or_set(key).get().await.unwrap() {
        GetOrSetEntry::Vacant(vacancy) => {
            say("vacant");
            fill(vacancy, body.as_bytes());
        }
        GetOrSetEntry::Occupied(value) => {
            let value = value.incoming_value_consume_sync().unwrap();
            say(&format!("occupied {}", String::from_utf8(value).unwrap()));
        }
    }
}

/// Takes the vacancy of `key`, says so, then `then`: `drop` it, `trap`, `stream-trap` (trap
/// halfway through a streamed fill), `exit` holding it, or `sleep` past the vacancy timeout and
/// then try to fill it.
async fn hold(key: &str, then: &str) {
    let GetOrSetEntry::Vacant(vacancy) = cache::get_or_set(key).get().await.unwrap() else {
        panic!("{key}: expected a vacancy")
    };
    say("holding");
    std::thread::sleep(Duration::from_millis(300));
    match then {
        "drop" => {
            drop(vacancy);
            say("dropped");
        }
        "trap" => {
            say("trapping");
            core::arch::wasm32::unreachable();
        }
        "stream-trap" => {
            let mut tx = body_stream(&vacancy.vacancy_fill(None));
            let rest = tx.write_all(b"partial".to_vec()).await;
            assert!(rest.is_empty());
            say("trapping mid-stream");
            core::arch::wasm32::unreachable();
        }
        "exit" => {
            std::mem::forget(vacancy);
            std::process::exit(0);
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(700));
            let out = vacancy.vacancy_fill(None);
            match out.outgoing_value_write_body_sync(b"late") {
                Ok(()) => say("late fill accepted"),
                Err(err) => say(&format!("late fill refused: {}", err.trace())),
            }
        }
        other => panic!("unknown hold mode {other:?}"),
    }
}

async fn read(key: &str) {
    match get(key).await {
        Some(value) => say(&format!("value {}", String::from_utf8(value).unwrap())),
        None => say("none"),
    }
}

/// Every size limit yields an error the guest reads, never a trap: a key over `max_key`, a
/// value over `max_value` (in one piece and streamed).
async fn limits(max_key: usize, max_value: usize) {
    let long = "k".repeat(max_key + 1);
    let err = cache::get(&long).get().await.unwrap_err().trace();
    say(&format!("long key: {err}"));
    let err = cache::get_or_set(&long).get().await.err().unwrap().trace();
    say(&format!("long key get-or-set: {err}"));
    let big = vec![1; max_value + 1];
    let out = OutgoingValue::new_outgoing_value();
    let err = out
        .outgoing_value_write_body_sync(&big)
        .unwrap_err()
        .trace();
    say(&format!("big value: {err}"));
    let out = OutgoingValue::new_outgoing_value();
    let mut tx = body_stream(&out);
    let set = cache::set("big", &out, None);
    let rest = tx.write_all(big).await;
    drop(tx);
    say(&format!("big stream: {} bytes refused", rest.len()));
    let err = set.get().await.unwrap_err().trace();
    say(&format!("big stream set: {err}"));
    assert_eq!(get("big").await, None);
}

/// `n` gets of `key` (a hit), each read whole: the loop the flavours bench times.
async fn get_loop(key: &str, n: usize) {
    let mut total = 0;
    for _ in 0..n {
        let value = cache::get(key).get().await.unwrap().expect("a hit");
        total += value.incoming_value_consume_sync().unwrap().len();
    }
    say(&format!("read {total}"));
}
