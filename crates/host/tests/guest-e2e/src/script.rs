//! The `script` scenario: runs a sequence of operations read from stdin, one per line, against the
//! imported interfaces, and prints one result line per operation. The host's property test
//! (`crates/host/tests/prop`) generates the scripts and checks the results against a model.
//!
//! # Slots
//! Every handle the script holds lives in a numbered slot: the one an operation creates takes the
//! operation's line number (from 0), so an operation creates at most one handle. An operation on
//! a handle names its kind and a selector `N` (called "the `N`-th" below): it acts on the
//! `N mod count`-th newest live handle of that kind (0 is the newest), and its result line names
//! that slot as `#S`; with no live handle of the kind it prints `skip` and does nothing. Kinds:
//! `fg` `fe` `fr` `fs` (the futures of `get`, `exists`, `set`/`delete` and `get-or-set`), `poll`,
//! `in` (incoming-value), `out` (outgoing-value), `vac` (vacancy), `bucket`, `err` (error), `is`
//! (input-stream), `os` (output-stream); and two selectors of several kinds: `fut` (any future)
//! and `any` (any handle).
//!
//! # Operations
//! `K` is a key: `a`, `b`, `_` (the empty key) or `L` (1025 bytes, one over the 1 KiB key limit
//! the test configures). `T` is a TTL: `-` (none) or milliseconds. A body `LEN SEED` is the
//! `LEN` bytes `(SEED + 7 i) mod 256`. Results print bodies as `LEN:HEX` up to 16 bytes, longer
//! ones as `LEN:#FNV` (64-bit FNV-1a, hex).
//!
//! | line | does | prints |
//! | --- | --- | --- |
//! | `get K`, `exists K`, `delete K`, `gos K` | `get`, `exists`, `delete`, `get-or-set` | `new fg` / `new fe` / `new fr` / `new fs` |
//! | `set K N T` | `set` of the `N`-th `out` | `#S new fr` |
//! | `take F N` (`F` = `fg` `fe` `fr` `fs` `fut`) | the future's `…-get` | `#S none`; `#S some err` (error into the new slot); `#S some ok` + ` none` / ` in BODY` (fg), ` true` / ` false` (fe), nothing (fr), ` occupied BODY` / ` vacant` (fs); an incoming-value or vacancy goes into the new slot (bodies read with `consume-sync` to print them) |
//! | `listen F N` | `listen-to-…` | `#S new poll` |
//! | `ready N`, `block N` | the `N`-th pollable's `ready` / `block` | `#S true` / `#S false`, `#S ready` |
//! | `bucket NAME` | `open-bucket` (`_` = empty name) | `ok` / `err` |
//! | `new` | `new-outgoing-value` | `new out` |
//! | `fill N T` | `vacancy-fill` of the `N`-th `vac` | `#S new out` |
//! | `wsync N LEN SEED` | `outgoing-value-write-body-sync` | `#S ok` / `#S err` |
//! | `wasync N` | `outgoing-value-write-body-async` | `#S ok` (stream into the new slot) / `#S err` |
//! | `write N LEN SEED` | `check-write`, then `write` of the body if the permit allows it | `#S ok` / `#S short` (permit too small, nothing written) / `#S closed` / `#S failed MSG` |
//! | `checkw N`, `flush N` | `check-write` / `flush` of the `N`-th `os` | `#S ok` (or `#S zero`: a permit of 0) / `#S closed` / `#S failed MSG` |
//! | `csync N`, `casync N`, `size N` | `incoming-value-consume-sync` / `-consume-async` / `-size` | `#S ok BODY` / `#S ok` (stream into the new slot) / `#S ok LEN`; `#S err` |
//! | `read N LEN` | `read` of the `N`-th `is` | `#S ok BODY` / `#S closed` / `#S failed MSG` |
//! | `trace N` | `trace` of the `N`-th `err` | `#S TEXT` |
//! | `drop KIND N` (any kind, `fut` or `any`) | drops the handle (a future only if it has no live pollable) | `#S` |
//! | `misuse stale` | uses a just-dropped future's handle: traps | `stale`, then the trap |
//! | `misuse parent` | drops the first future (in slot order) that has a live pollable: traps | `#S`, then the trap; `skip` when there is none |
//!
//! Every result line starts with the operation's line number and a space. Malformed lines panic.
//! After the last line the script drops every handle it still holds, newest first (so pollables
//! before their futures), then `main` prints `done`.

mod body;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;

use self::body::{body, show};
use crate::wasi::io::poll::Pollable;
use crate::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::wasi::keyvalue::cache::{
    self, FutureExistsResult, FutureGetOrSetResult, FutureGetResult, FutureResult, GetOrSetEntry,
    Vacancy,
};
use crate::wasi::keyvalue::types::{Bucket, IncomingValue, OutgoingValue};
use crate::wasi::keyvalue::wasi_keyvalue_error::Error;

/// A handle the script holds.
enum Slot {
    Fg(FutureGetResult),
    Fe(FutureExistsResult),
    Fr(FutureResult),
    Fs(FutureGetOrSetResult),
    /// A pollable, and the slot of the future it listens to.
    Poll(Pollable, usize),
    In(IncomingValue),
    Out(OutgoingValue),
    Vac(Vacancy),
    Bucket(#[allow(dead_code)] Bucket),
    Err(Error),
    Is(InputStream),
    Os(OutputStream),
}

impl Slot {
    fn kind(&self) -> &'static str {
        match self {
            Slot::Fg(_) => "fg",
            Slot::Fe(_) => "fe",
            Slot::Fr(_) => "fr",
            Slot::Fs(_) => "fs",
            Slot::Poll(..) => "poll",
            Slot::In(_) => "in",
            Slot::Out(_) => "out",
            Slot::Vac(_) => "vac",
            Slot::Bucket(_) => "bucket",
            Slot::Err(_) => "err",
            Slot::Is(_) => "is",
            Slot::Os(_) => "os",
        }
    }

    fn is_future(&self) -> bool {
        matches!(self, Slot::Fg(_) | Slot::Fe(_) | Slot::Fr(_) | Slot::Fs(_))
    }
}

fn key(token: &str) -> String {
    match token {
        "_" => String::new(),
        "L" => "k".repeat(1025),
        other => other.to_owned(),
    }
}

fn ttl(token: &str) -> Option<u32> {
    match token {
        "-" => None,
        ms => Some(ms.parse().expect("TTL")),
    }
}

fn stream_error(err: StreamError) -> String {
    match err {
        StreamError::Closed => "closed".to_owned(),
        // The first line only: the host's debug string may carry a backtrace.
        StreamError::LastOperationFailed(e) => {
            let text = e.to_debug_string();
            format!("failed {}", text.lines().next().unwrap_or_default())
        }
    }
}

struct Script {
    slots: BTreeMap<usize, Slot>,
}

impl Script {
    /// The `n mod count`-th newest live slot of `kind` that passes `keep`.
    fn pick_where(&self, kind: &str, n: usize, keep: impl Fn(usize) -> bool) -> Option<usize> {
        let live: Vec<usize> = self
            .slots
            .iter()
            .filter(|(i, s)| {
                let selected = match kind {
                    "any" => true,
                    "fut" => s.is_future(),
                    kind => s.kind() == kind,
                };
                selected && keep(**i)
            })
            .map(|(i, _)| *i)
            .collect();
        (!live.is_empty()).then(|| live[live.len() - 1 - n % live.len()])
    }

    fn pick(&self, kind: &str, n: usize) -> Option<usize> {
        self.pick_where(kind, n, |_| true)
    }

    /// The `n mod count`-th newest live slot of `kind` and its handle (a pattern on the handle's
    /// variant fails only when there is none: `pick` finds only handles of `kind`).
    fn select(&self, kind: &str, n: usize) -> Option<(usize, &Slot)> {
        self.pick(kind, n).map(|s| (s, &self.slots[&s]))
    }

    fn has_pollable(&self, future: usize) -> bool {
        self.slots
            .values()
            .any(|s| matches!(s, Slot::Poll(_, parent) if *parent == future))
    }

    /// Runs line `i` of the script and returns its result (without the line number).
    fn run(&mut self, i: usize, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |at: usize| -> usize { words[at].parse().expect("number") };
        match words[0] {
            "get" => {
                self.slots.insert(i, Slot::Fg(cache::get(&key(words[1]))));
                "new fg".into()
            }
            "exists" => {
                self.slots
                    .insert(i, Slot::Fe(cache::exists(&key(words[1]))));
                "new fe".into()
            }
            "delete" => {
                self.slots
                    .insert(i, Slot::Fr(cache::delete(&key(words[1]))));
                "new fr".into()
            }
            "gos" => {
                self.slots
                    .insert(i, Slot::Fs(cache::get_or_set(&key(words[1]))));
                "new fs".into()
            }
            "set" => {
                let Some((s, Slot::Out(v))) = self.select("out", num(2)) else {
                    return "skip".into();
                };
                let future = cache::set(&key(words[1]), v, ttl(words[3]));
                self.slots.insert(i, Slot::Fr(future));
                format!("#{s} new fr")
            }
            "take" => {
                let Some(s) = self.pick(words[1], num(2)) else {
                    return "skip".into();
                };
                let (result, new) = self.take(s);
                if let Some(new) = new {
                    self.slots.insert(i, new);
                }
                format!("#{s} {result}")
            }
            "listen" => {
                let Some(s) = self.pick(words[1], num(2)) else {
                    return "skip".into();
                };
                let pollable = match &self.slots[&s] {
                    Slot::Fg(f) => f.listen_to_future_get_result(),
                    Slot::Fe(f) => f.listen_to_future_exists_result(),
                    Slot::Fr(f) => f.listen_to_future_result(),
                    Slot::Fs(f) => f.listen_to_future_get_or_set_result(),
                    _ => unreachable!(),
                };
                self.slots.insert(i, Slot::Poll(pollable, s));
                format!("#{s} new poll")
            }
            op @ ("ready" | "block") => {
                let Some((s, Slot::Poll(p, _))) = self.select("poll", num(1)) else {
                    return "skip".into();
                };
                if op == "ready" {
                    format!("#{s} {}", p.ready())
                } else {
                    p.block();
                    format!("#{s} ready")
                }
            }
            "bucket" => {
                let name = if words[1] == "_" { "" } else { words[1] };
                match Bucket::open_bucket(name) {
                    Ok(b) => {
                        self.slots.insert(i, Slot::Bucket(b));
                        "ok".into()
                    }
                    Err(e) => {
                        self.slots.insert(i, Slot::Err(e));
                        "err".into()
                    }
                }
            }
            "new" => {
                self.slots
                    .insert(i, Slot::Out(OutgoingValue::new_outgoing_value()));
                "new out".into()
            }
            "fill" => {
                let Some((s, Slot::Vac(v))) = self.select("vac", num(1)) else {
                    return "skip".into();
                };
                let out = v.vacancy_fill(ttl(words[2]));
                self.slots.insert(i, Slot::Out(out));
                format!("#{s} new out")
            }
            op @ ("wsync" | "wasync") => {
                let Some((s, Slot::Out(v))) = self.select("out", num(1)) else {
                    return "skip".into();
                };
                let (result, new) = if op == "wsync" {
                    let bytes = body(num(2), num(3) as u8);
                    match v.outgoing_value_write_body_sync(&bytes) {
                        Ok(()) => ("ok", None),
                        Err(e) => ("err", Some(Slot::Err(e))),
                    }
                } else {
                    match v.outgoing_value_write_body_async() {
                        Ok(stream) => ("ok", Some(Slot::Os(stream))),
                        Err(e) => ("err", Some(Slot::Err(e))),
                    }
                };
                if let Some(new) = new {
                    self.slots.insert(i, new);
                }
                format!("#{s} {result}")
            }
            op @ ("write" | "checkw" | "flush") => {
                let Some((s, Slot::Os(stream))) = self.select("os", num(1)) else {
                    return "skip".into();
                };
                let result = match op {
                    "write" => {
                        let bytes = body(num(2), num(3) as u8);
                        match stream.check_write() {
                            Ok(permit) if (permit as usize) < bytes.len() => "short".to_owned(),
                            Ok(_) => match stream.write(&bytes) {
                                Ok(()) => "ok".to_owned(),
                                Err(e) => stream_error(e),
                            },
                            Err(e) => stream_error(e),
                        }
                    }
                    "checkw" => match stream.check_write() {
                        Ok(0) => "zero".to_owned(),
                        Ok(_) => "ok".to_owned(),
                        Err(e) => stream_error(e),
                    },
                    _ => match stream.flush() {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => stream_error(e),
                    },
                };
                format!("#{s} {result}")
            }
            op @ ("csync" | "casync" | "size") => {
                let Some((s, Slot::In(v))) = self.select("in", num(1)) else {
                    return "skip".into();
                };
                let (result, new) = match op {
                    "csync" => match v.incoming_value_consume_sync() {
                        Ok(bytes) => (format!("ok {}", show(&bytes)), None),
                        Err(e) => ("err".to_owned(), Some(Slot::Err(e))),
                    },
                    "casync" => match v.incoming_value_consume_async() {
                        Ok(stream) => ("ok".to_owned(), Some(Slot::Is(stream))),
                        Err(e) => ("err".to_owned(), Some(Slot::Err(e))),
                    },
                    _ => match v.incoming_value_size() {
                        Ok(n) => (format!("ok {n}"), None),
                        Err(e) => ("err".to_owned(), Some(Slot::Err(e))),
                    },
                };
                if let Some(new) = new {
                    self.slots.insert(i, new);
                }
                format!("#{s} {result}")
            }
            "read" => {
                let Some((s, Slot::Is(stream))) = self.select("is", num(1)) else {
                    return "skip".into();
                };
                match stream.read(num(2) as u64) {
                    Ok(bytes) => format!("#{s} ok {}", show(&bytes)),
                    Err(e) => format!("#{s} {}", stream_error(e)),
                }
            }
            "trace" => {
                let Some((s, Slot::Err(e))) = self.select("err", num(1)) else {
                    return "skip".into();
                };
                format!("#{s} {}", e.trace().replace('\n', " "))
            }
            "drop" => {
                let droppable = |s: usize| !self.slots[&s].is_future() || !self.has_pollable(s);
                let Some(s) = self.pick_where(words[1], num(2), droppable) else {
                    return "skip".into();
                };
                drop(self.slots.remove(&s));
                format!("#{s}")
            }
            "misuse" => match words[1] {
                "stale" => {
                    say(&format!("{i} stale"));
                    let future = cache::get("a");
                    let handle = future.handle();
                    drop(future);
                    // SAFETY: none; the handle was just dropped, and the host must trap on it.
                    let stale = ManuallyDrop::new(unsafe { FutureGetResult::from_handle(handle) });
                    let _ = stale.future_get_result_get();
                    panic!("a dropped handle was accepted")
                }
                "parent" => {
                    let parent = self
                        .slots
                        .iter()
                        .find(|(s, slot)| slot.is_future() && self.has_pollable(**s))
                        .map(|(s, _)| *s);
                    let Some(s) = parent else {
                        return "skip".into();
                    };
                    say(&format!("{i} #{s}"));
                    drop(self.slots.remove(&s));
                    panic!("a future with a live pollable was dropped without a trap")
                }
                other => panic!("unknown misuse {other:?}"),
            },
            other => panic!("unknown operation {other:?}"),
        }
    }

    /// `…-get` of the future in slot `s`: the result, and the handle it yields, if any.
    fn take(&self, s: usize) -> (String, Option<Slot>) {
        fn some<T>(
            result: Option<Result<T, Error>>,
            ok: impl FnOnce(T) -> (String, Option<Slot>),
        ) -> (String, Option<Slot>) {
            match result {
                None => ("none".into(), None),
                Some(Err(e)) => ("some err".into(), Some(Slot::Err(e))),
                Some(Ok(value)) => {
                    let (text, new) = ok(value);
                    (format!("some ok{text}"), new)
                }
            }
        }
        match &self.slots[&s] {
            Slot::Fg(f) => some(f.future_get_result_get(), |v| match v {
                None => (" none".into(), None),
                Some(v) => (format!(" in {}", incoming_ref(&v)), Some(Slot::In(v))),
            }),
            Slot::Fe(f) => some(f.future_exists_result_get(), |b| (format!(" {b}"), None)),
            Slot::Fr(f) => some(f.future_result_get(), |()| (String::new(), None)),
            Slot::Fs(f) => some(f.future_get_or_set_result_get(), |entry| match entry {
                GetOrSetEntry::Occupied(v) => {
                    (format!(" occupied {}", incoming_ref(&v)), Some(Slot::In(v)))
                }
                GetOrSetEntry::Vacant(v) => (" vacant".into(), Some(Slot::Vac(v))),
            }),
            _ => unreachable!(),
        }
    }
}

fn incoming_ref(v: &IncomingValue) -> String {
    match v.incoming_value_consume_sync() {
        Ok(bytes) => show(&bytes),
        Err(e) => format!("(consume-sync failed: {})", e.trace()),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Runs the script on stdin.
pub fn run() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut script = Script {
        slots: BTreeMap::new(),
    };
    for (i, line) in input.lines().enumerate() {
        let result = script.run(i, line);
        say(&format!("{i} {result}"));
    }
    // Newest first: a pollable goes before the future it listens to.
    while let Some((_, slot)) = script.slots.pop_last() {
        drop(slot);
    }
}
