//! Property test of the host: random sequences of guest-level operations, run through a real
//! guest component on the embedded engine, checked against a model of the cache and of every
//! handle the guest holds.
//!
//! # How a case runs
//! proptest generates a list of operations ([`Op`]); each case renders it as a script, one
//! operation a line, and runs the `script` scenario of the e2e guest (`tests/guest-e2e`, file
//! `src/script.rs`) on it, in a fresh instance over a fresh [`MemoryCache`] (the component is
//! compiled once per test binary; a case costs one instantiation). The guest executes each line
//! against the imported `wasi:keyvalue/{cache,types,wasi-keyvalue-error}` and `wasi:io`
//! functions, keeps every handle it gets in a numbered slot, and prints one result line per
//! operation. The test then replays the script on the model and checks every line.
//!
//! # The script format
//! (The full table is at the top of `tests/guest-e2e/src/script.rs`.) An operation creates at
//! most one handle, in the slot numbered like its line (from 0). Operations on handles name a
//! kind (`fg` `fe` `fr` `fs`: the futures of `get`, `exists`, `set`/`delete`, `get-or-set`;
//! `poll`, `in`, `out`, `vac`, `bucket`, `err`, `is`, `os`; or `fut`, any future, and `any`, any
//! handle) and a selector `N`: the guest acts on the `N mod count`-th newest live handle of that
//! kind (0 is the newest) and prints its slot as `#S` (or `skip` with none). At the end it drops
//! every handle it still holds, newest first, and prints `done`. Keys are `a`, `b`, `_` (empty)
//! and `L` (one byte over the 1 KiB key limit); TTLs are `-` (none), `0` (never visible) or one
//! day, so wall-clock time never makes a result ambiguous; bodies `LEN SEED` are `LEN` bytes
//! `(SEED + 7 i) mod 256`, printed as `LEN:HEX` (or `LEN:#FNV-1a` beyond 16 bytes).
//!
//! ```text
//! get K | exists K | delete K | gos K | set K N T          (the cache interface)
//! take F N | listen F N            (F = fg fe fr fs fut: `…-get`, `listen-to-…`)
//! ready N | block N                (pollables)
//! bucket NAME | new | fill N T | wsync N LEN SEED | wasync N
//! write N LEN SEED | checkw N | flush N                    (output-streams; writes stay within check-write)
//! csync N | casync N | size N | read N LEN                  (incoming-values, input-streams)
//! trace N | drop KIND N | misuse stale | misuse parent
//! ```
//!
//! # The model
//! A set of possible worlds, each a deterministic state: the stored values, the pending
//! rendezvous (holder token and waiting futures, in order), the state of every slot (a future's
//! result and whether the guest may still see it pending, outgoing-values with their body and
//! vacancy, streams with their buffer), the `set`s waiting on an open stream body, and the
//! `get-or-set` futures the guest dropped while they waited. What the host does in the
//! background (a dropped waiter passing on a vacancy it was handed before it left; a `set`
//! applying once its stream body is closed) is a set of events that may fire at any point
//! between two operations: after every operation the set of worlds is closed under them. (A
//! dropped waiter stays in line until it is handed the vacancy: leaving earlier is the same as
//! passing the vacancy on at once, and modelling it so keeps the worlds few.) Each
//! result line keeps the worlds that allow it; none left is a failure. So the check is exact
//! where the host is deterministic and accepts every allowed result where it is not (a
//! rendezvous future resolved in the background may still read `none` until a `ready` or `block`
//! saw it ready; a stream write past the value limit may fail or be refused by `check-write`).
//!
//! Checked, among others: values read are the ones the model holds (TTL 0 never visible,
//! `delete`, overwrites, fills, `set` resolving waiters); a second `…-get` after `some` is an
//! error "result already taken"; a pending result resolves after `block`; one `vacant` per
//! rendezvous, waiters receiving the fill or the abandoned vacancy in order, fills after drops,
//! a second `vacancy-fill` refused; bodies written twice, `set` of an unwritten value, oversized
//! keys and values are error resources whose `trace` names the cause; streams left open keep
//! their `set`s pending; the backend's final contents are the model's. A case fails on a
//! panic, on any trap except the two misuse operations' (a stale handle; dropping a future with
//! a live pollable), which must trap, and on a hang (10 s).
//!
//! `block` never runs where it would wait forever: before a case runs, the model replays the
//! script over every possible outcome and turns a `block` into a `ready` wherever some world
//! could leave its future pending for good (a waiter whose vacancy is still held, a `set` whose
//! stream is still open).
//!
//! # Cases
//! A script is up to 40 operations: single random ones mixed with short common chains (store a
//! value, read it, contend for a key with a holder and two waiters, wait for a future then read
//! it, fill a vacancy), selectors biased to the newest handles so that operations meet, and in
//! one case out of five a final misuse. 64 cases by default (a few seconds);
//! `WASI_CACHE_PROPTEST_CASES=N` runs `N`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use wasi_cache_engine::{Config as CacheConfig, Limits, MemoryCache, Namespace};
use wasi_cache_guest_build as guest_build;
use wasi_cache_host::{WasiCacheCtx, WasiCacheState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtx};

/// Limits small enough to exceed cheaply: 1 KiB keys, 4 KiB values (as in e2e.rs).
const TEST_LIMITS: Limits = Limits {
    max_key_size: 1024,
    max_value_size: 4096,
};
const MAX_VALUE: usize = TEST_LIMITS.max_value_size;
/// The long TTL: one day, in milliseconds.
const DAY_MS: u32 = 86_400_000;
/// Default number of cases; `WASI_CACHE_PROPTEST_CASES` overrides it.
const DEFAULT_CASES: u32 = 64;
const MAX_OPS: usize = 40;
/// Worlds the pre-pass follows before it stops trusting `block` (turning every later one into
/// `ready`), and the most the check may hold (more is a bug of this test).
const PREPASS_WORLDS: usize = 1024;
const MAX_WORLDS: usize = 100_000;
/// How long a case may run before it counts as hung (a case takes milliseconds).
const HANG: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    A,
    B,
    Empty,
    /// 1025 bytes: over the key limit.
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ttl {
    None,
    Zero,
    Day,
}

/// The four future resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fut {
    Get,
    Exists,
    Unit,
    Gos,
}

/// The kinds of slots, and two selectors of several kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Any future (a selector, `fut`).
    AnyFut,
    /// Any handle (a selector, `any`).
    Any,
    Fut(Fut),
    Poll,
    In,
    Out,
    Vac,
    Bucket,
    Err,
    Is,
    Os,
}

/// One line of a script; `u8`s are selectors (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get(Key),
    Exists(Key),
    Delete(Key),
    Gos(Key),
    Set(Key, u8, Ttl),
    /// `…-get` of a future (`Kind::Fut` or `Kind::AnyFut`).
    Take(Kind, u8),
    /// `listen-to-…` of a future (`Kind::Fut` or `Kind::AnyFut`).
    Listen(Kind, u8),
    Ready(u8),
    Block(u8),
    Bucket(bool),
    New,
    Fill(u8, Ttl),
    WSync(u8, u16, u8),
    WAsync(u8),
    Write(u8, u16, u8),
    CheckW(u8),
    Flush(u8),
    CSync(u8),
    CAsync(u8),
    Size(u8),
    Read(u8, u8),
    Trace(u8),
    Drop(Kind, u8),
    MisuseStale,
    MisuseParent,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Key::A => "a",
            Key::B => "b",
            Key::Empty => "_",
            Key::Long => "L",
        })
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::None => f.write_str("-"),
            Ttl::Zero => f.write_str("0"),
            Ttl::Day => write!(f, "{DAY_MS}"),
        }
    }
}

impl fmt::Display for Fut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fut::Get => "fg",
            Fut::Exists => "fe",
            Fut::Unit => "fr",
            Fut::Gos => "fs",
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::AnyFut => f.write_str("fut"),
            Kind::Any => f.write_str("any"),
            Kind::Fut(fut) => fut.fmt(f),
            Kind::Poll => f.write_str("poll"),
            Kind::In => f.write_str("in"),
            Kind::Out => f.write_str("out"),
            Kind::Vac => f.write_str("vac"),
            Kind::Bucket => f.write_str("bucket"),
            Kind::Err => f.write_str("err"),
            Kind::Is => f.write_str("is"),
            Kind::Os => f.write_str("os"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get(k) => write!(f, "get {k}"),
            Op::Exists(k) => write!(f, "exists {k}"),
            Op::Delete(k) => write!(f, "delete {k}"),
            Op::Gos(k) => write!(f, "gos {k}"),
            Op::Set(k, n, t) => write!(f, "set {k} {n} {t}"),
            Op::Take(fut, n) => write!(f, "take {fut} {n}"),
            Op::Listen(fut, n) => write!(f, "listen {fut} {n}"),
            Op::Ready(n) => write!(f, "ready {n}"),
            Op::Block(n) => write!(f, "block {n}"),
            Op::Bucket(empty) => f.write_str(if *empty { "bucket _" } else { "bucket b1" }),
            Op::New => f.write_str("new"),
            Op::Fill(n, t) => write!(f, "fill {n} {t}"),
            Op::WSync(n, len, seed) => write!(f, "wsync {n} {len} {seed}"),
            Op::WAsync(n) => write!(f, "wasync {n}"),
            Op::Write(n, len, seed) => write!(f, "write {n} {len} {seed}"),
            Op::CheckW(n) => write!(f, "checkw {n}"),
            Op::Flush(n) => write!(f, "flush {n}"),
            Op::CSync(n) => write!(f, "csync {n}"),
            Op::CAsync(n) => write!(f, "casync {n}"),
            Op::Size(n) => write!(f, "size {n}"),
            Op::Read(n, len) => write!(f, "read {n} {len}"),
            Op::Trace(n) => write!(f, "trace {n}"),
            Op::Drop(kind, n) => write!(f, "drop {kind} {n}"),
            Op::MisuseStale => f.write_str("misuse stale"),
            Op::MisuseParent => f.write_str("misuse parent"),
        }
    }
}

/// A script: proptest's value, shown as its numbered lines.
#[derive(Clone)]
struct Script(Vec<Op>);

impl Script {
    fn text(&self) -> String {
        self.0.iter().map(|op| format!("{op}\n")).collect()
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "script of {} operations:", self.0.len())?;
        for (i, op) in self.0.iter().enumerate() {
            writeln!(f, "  {i:2} {op}")?;
        }
        Ok(())
    }
}

impl Op {
    /// Parses a script line (as [`Op`]'s `Display` writes it); panics on a malformed one.
    fn parse(line: &str) -> Op {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |at: usize| -> u8 { words[at].parse().expect("a number") };
        let len = |at: usize| -> u16 { words[at].parse().expect("a length") };
        let key = |at: usize| match words[at] {
            "a" => Key::A,
            "b" => Key::B,
            "_" => Key::Empty,
            "L" => Key::Long,
            other => panic!("unknown key {other:?}"),
        };
        let ttl = |at: usize| match words[at] {
            "-" => Ttl::None,
            "0" => Ttl::Zero,
            _ => Ttl::Day,
        };
        let kind = |at: usize| match words[at] {
            "fut" => Kind::AnyFut,
            "any" => Kind::Any,
            "fg" => Kind::Fut(Fut::Get),
            "fe" => Kind::Fut(Fut::Exists),
            "fr" => Kind::Fut(Fut::Unit),
            "fs" => Kind::Fut(Fut::Gos),
            "poll" => Kind::Poll,
            "in" => Kind::In,
            "out" => Kind::Out,
            "vac" => Kind::Vac,
            "bucket" => Kind::Bucket,
            "err" => Kind::Err,
            "is" => Kind::Is,
            "os" => Kind::Os,
            other => panic!("unknown kind {other:?}"),
        };
        match words[0] {
            "get" => Op::Get(key(1)),
            "exists" => Op::Exists(key(1)),
            "delete" => Op::Delete(key(1)),
            "gos" => Op::Gos(key(1)),
            "set" => Op::Set(key(1), num(2), ttl(3)),
            "take" => Op::Take(kind(1), num(2)),
            "listen" => Op::Listen(kind(1), num(2)),
            "ready" => Op::Ready(num(1)),
            "block" => Op::Block(num(1)),
            "bucket" => Op::Bucket(words[1] == "_"),
            "new" => Op::New,
            "fill" => Op::Fill(num(1), ttl(2)),
            "wsync" => Op::WSync(num(1), len(2), num(3)),
            "wasync" => Op::WAsync(num(1)),
            "write" => Op::Write(num(1), len(2), num(3)),
            "checkw" => Op::CheckW(num(1)),
            "flush" => Op::Flush(num(1)),
            "csync" => Op::CSync(num(1)),
            "casync" => Op::CAsync(num(1)),
            "size" => Op::Size(num(1)),
            "read" => Op::Read(num(1), num(2)),
            "trace" => Op::Trace(num(1)),
            "drop" => Op::Drop(kind(1), num(2)),
            "misuse" if words[1] == "stale" => Op::MisuseStale,
            "misuse" => Op::MisuseParent,
            other => panic!("unknown operation {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![5 => Just(Key::A), 3 => Just(Key::B), 1 => Just(Key::Empty), 1 => Just(Key::Long)]
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![4 => Just(Ttl::None), 1 => Just(Ttl::Zero), 1 => Just(Ttl::Day)]
}

fn fut() -> impl Strategy<Value = Fut> {
    prop_oneof![
        2 => Just(Fut::Get),
        1 => Just(Fut::Exists),
        2 => Just(Fut::Unit),
        4 => Just(Fut::Gos)
    ]
}

/// A future selector: mostly any future, so that fewer operations find nothing to act on.
fn future_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![3 => Just(Kind::AnyFut), 1 => fut().prop_map(Kind::Fut)]
}

/// A handle selector for `drop`: mostly any handle.
fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        12 => Just(Kind::Any),
        2 => Just(Kind::AnyFut),
        3 => fut().prop_map(Kind::Fut),
        2 => Just(Kind::Poll),
        1 => Just(Kind::In),
        2 => Just(Kind::Out),
        2 => Just(Kind::Vac),
        1 => Just(Kind::Bucket),
        1 => Just(Kind::Err),
        1 => Just(Kind::Is),
        2 => Just(Kind::Os),
    ]
}

/// A selector: mostly the newest handle (0), so that operations chain (`new`, `wsync 0 …`,
/// `set a 0 …`, `get a`, `take fut 0`, `csync 0`).
fn sel() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 3 => 1u8..3, 1 => 3u8..8]
}

/// Body lengths for whole bodies: small, exactly the limit, one over it.
fn body_len() -> impl Strategy<Value = u16> {
    prop_oneof![12 => 0u16..=12, 1 => Just(4096u16), 1 => Just(4097u16)]
}

/// Lengths of stream writes: two of 2,100 bytes exceed the limit.
fn write_len() -> impl Strategy<Value = u16> {
    prop_oneof![12 => 0u16..=12, 2 => Just(2100u16), 1 => Just(4097u16)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::Exists),
        2 => key().prop_map(Op::Delete),
        6 => key().prop_map(Op::Gos),
        6 => (key(), sel(), ttl()).prop_map(|(k, n, t)| Op::Set(k, n, t)),
        10 => (future_kind(), sel()).prop_map(|(f, n)| Op::Take(f, n)),
        4 => (future_kind(), sel()).prop_map(|(f, n)| Op::Listen(f, n)),
        3 => sel().prop_map(Op::Ready),
        4 => sel().prop_map(Op::Block),
        1 => any::<bool>().prop_map(Op::Bucket),
        5 => Just(Op::New),
        4 => (sel(), ttl()).prop_map(|(n, t)| Op::Fill(n, t)),
        5 => (sel(), body_len(), any::<u8>()).prop_map(|(n, l, s)| Op::WSync(n, l, s)),
        4 => sel().prop_map(Op::WAsync),
        5 => (sel(), write_len(), any::<u8>()).prop_map(|(n, l, s)| Op::Write(n, l, s)),
        1 => sel().prop_map(Op::CheckW),
        1 => sel().prop_map(Op::Flush),
        2 => sel().prop_map(Op::CSync),
        2 => sel().prop_map(Op::CAsync),
        1 => sel().prop_map(Op::Size),
        3 => (sel(), 0u8..=8).prop_map(|(n, l)| Op::Read(n, l)),
        2 => sel().prop_map(Op::Trace),
        9 => (kind(), sel()).prop_map(|(k, n)| Op::Drop(k, n)),
    ]
}

/// A few operations: one at random, or a common chain of them (on the newest handles), so that
/// values get stored, read and streamed more often than independent draws would manage.
fn snippet() -> impl Strategy<Value = Vec<Op>> {
    let any_fut = Kind::AnyFut;
    prop_oneof![
        12 => op().prop_map(|op| vec![op]),
        // Store a value.
        3 => (key(), body_len(), any::<u8>(), ttl())
            .prop_map(|(k, len, seed, t)| vec![Op::New, Op::WSync(0, len, seed), Op::Set(k, 0, t)]),
        // Store a value through a stream, closing it or leaving it open for now.
        2 => (key(), write_len(), any::<u8>(), ttl(), any::<bool>())
            .prop_map(|(k, len, seed, t, close)| {
                let mut ops = vec![Op::New, Op::WAsync(0), Op::Write(0, len, seed), Op::Set(k, 0, t)];
                if close {
                    ops.push(Op::Drop(Kind::Os, 0));
                }
                ops
            }),
        // Read a value, or get-or-set one.
        2 => key().prop_map(move |k| vec![Op::Get(k), Op::Take(any_fut, 0)]),
        3 => key().prop_map(move |k| vec![Op::Gos(k), Op::Take(any_fut, 0)]),
        // Fill the newest vacancy, in one piece or through a stream.
        2 => (ttl(), body_len(), any::<u8>())
            .prop_map(|(t, len, seed)| vec![Op::Fill(0, t), Op::WSync(0, len, seed)]),
        1 => (ttl(), write_len(), any::<u8>())
            .prop_map(|(t, len, seed)| vec![Op::Fill(0, t), Op::WAsync(0), Op::Write(0, len, seed)]),
        // Contend for a key: (typically) a holder and two waiters.
        2 => key().prop_map(move |k| vec![Op::Gos(k), Op::Take(any_fut, 0), Op::Gos(k), Op::Gos(k)]),
        // Wait for a future, then read it.
        2 => sel().prop_map(move |n| vec![
            Op::Listen(any_fut, n), Op::Block(0), Op::Take(any_fut, n),
        ]),
        // Read the newest incoming-value as a stream.
        1 => (0u8..=8).prop_map(|len| vec![Op::CAsync(0), Op::Read(0, len)]),
    ]
}

/// Up to [`MAX_OPS`] operations, sometimes followed by a misuse that must trap.
fn script() -> impl Strategy<Value = Script> {
    let misuse = prop_oneof![
        8 => Just(None),
        1 => Just(Some(Op::MisuseStale)),
        1 => Just(Some(Op::MisuseParent)),
    ];
    (vec(snippet(), 1..=MAX_OPS / 2), misuse).prop_map(|(snippets, misuse)| {
        let mut ops: Vec<Op> = snippets.into_iter().flatten().take(MAX_OPS).collect();
        ops.extend(misuse);
        Script(ops)
    })
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

type Body = Arc<[u8]>;

/// The body `LEN SEED` stands for (as the guest computes it).
fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_add(i.wrapping_mul(7)) as u8)
        .collect()
}

/// A body as the guest prints it.
fn show(bytes: &[u8]) -> String {
    if bytes.len() <= 16 {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", bytes.len())
    } else {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}:#{hash:016x}", bytes.len())
    }
}

/// The causes an error resource may name, as a set: where several apply, the host may report
/// any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ErrClass(u8);

impl ErrClass {
    const TAKEN: Self = Self(1);
    const KEY: Self = Self(2);
    const NO_BODY: Self = Self(4);
    const REFUSED: Self = Self(8);
    const TOO_LARGE: Self = Self(16);
    const WRITTEN: Self = Self(32);
    const NONE: Self = Self(0);

    /// What a trace of each cause contains.
    const MARKERS: [(Self, &'static str); 6] = [
        (Self::TAKEN, "result already taken"),
        (Self::KEY, "key is 1025 bytes"),
        (Self::NO_BODY, "no body"),
        (Self::REFUSED, "vacancy-fill"),
        (Self::TOO_LARGE, "value is"),
        (Self::WRITTEN, "already written"),
    ];

    fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    fn any(self) -> bool {
        self.0 != 0
    }

    fn markers(self) -> impl Iterator<Item = &'static str> {
        Self::MARKERS
            .into_iter()
            .filter(move |(class, _)| self.0 & class.0 != 0)
            .map(|(_, marker)| marker)
    }
}

/// What a get-or-set resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entry {
    Value(Body),
    /// The vacancy with this token.
    Vacant(u64),
}

/// A future's successful result.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Res {
    Get(Option<Body>),
    Exists(bool),
    Unit,
    Gos(Entry),
}

type Outcome = Result<Res, ErrClass>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FutState {
    /// Resolved when created (the host finished the call inline): never reads as pending.
    Ready(Outcome),
    /// Running in a background task: `res` is its result once the model decided it; the guest
    /// may still read it pending until it saw it ready (`known`).
    Task { res: Option<Outcome>, known: bool },
    /// Read by the guest.
    Taken,
}

/// The vacancy an outgoing-value (or its stream) fills, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Fill {
    key: Key,
    token: u64,
    ttl: Ttl,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OutBody {
    Unwritten,
    Sync(Body),
    /// Written through the stream of this slot.
    Stream(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StreamState {
    Open { buf: Vec<u8>, failed: bool },
    Closed(Body),
    Failed,
}

/// A slot's handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Handle {
    Fut {
        fut: Fut,
        key: Key,
        state: FutState,
    },
    Poll {
        parent: usize,
    },
    In(Body),
    Out {
        body: OutBody,
        fill: Option<Fill>,
        refused: bool,
    },
    Vac {
        key: Key,
        /// `None` once `vacancy-fill` took it.
        token: Option<u64>,
    },
    Bucket,
    Err(ErrClass),
    /// The unread rest of the body.
    Is(Body),
    Os {
        fill: Option<Fill>,
    },
}

impl Kind {
    /// Whether this selector picks handles of kind `kind`.
    fn selects(self, kind: Kind) -> bool {
        match self {
            Kind::Any => true,
            Kind::AnyFut => matches!(kind, Kind::Fut(_)),
            _ => self == kind,
        }
    }
}

impl Handle {
    fn kind(&self) -> Kind {
        match self {
            Handle::Fut { fut, .. } => Kind::Fut(*fut),
            Handle::Poll { .. } => Kind::Poll,
            Handle::In(_) => Kind::In,
            Handle::Out { .. } => Kind::Out,
            Handle::Vac { .. } => Kind::Vac,
            Handle::Bucket => Kind::Bucket,
            Handle::Err(_) => Kind::Err,
            Handle::Is(_) => Kind::Is,
            Handle::Os { .. } => Kind::Os,
        }
    }
}

/// A rendezvous on a key: the current holder's token and the waiting get-or-set futures.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rendezvous {
    token: u64,
    waiters: Vec<usize>,
}

/// A get-or-set future the guest dropped while its call ran: it leaves the rendezvous in the
/// background, passing on a vacancy it was handed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Departing {
    key: Key,
    /// The vacancy it was handed, if any; `None` while it still waits.
    handed: Option<u64>,
}

/// A `set` waiting for its stream body to be closed (its future, maybe dropped, in `future`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PendingSet {
    future: usize,
    key: Key,
    stream: usize,
    ttl: Ttl,
}

/// What a result line must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Exact(String),
    /// `PREFIX` then a text containing a marker of the class.
    Trace(String, ErrClass),
    /// `PREFIX` then a stream error naming the value limit.
    Failed(String),
}

impl Expect {
    fn matches(&self, line: &str) -> bool {
        match self {
            Expect::Exact(text) => line == text,
            Expect::Trace(prefix, class) => line
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| class.markers().any(|m| rest.contains(m))),
            Expect::Failed(prefix) => line
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.contains("value is")),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Exact(text) => write!(f, "`{text}`"),
            Expect::Trace(prefix, class) => {
                let markers: Vec<_> = class.markers().collect();
                write!(f, "`{prefix}…` naming one of {markers:?}")
            }
            Expect::Failed(prefix) => write!(f, "`{prefix}…` naming the value limit"),
        }
    }
}

/// One possible state of the host as the guest sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct World {
    store: BTreeMap<Key, Body>,
    rendezvous: BTreeMap<Key, Rendezvous>,
    slots: BTreeMap<usize, Handle>,
    streams: BTreeMap<usize, StreamState>,
    departing: BTreeMap<usize, Departing>,
    pending_sets: Vec<PendingSet>,
    next_token: u64,
    /// The guest ran a misuse operation: it must have trapped right after.
    trapped: bool,
}

/// A possible result of an operation and the world it leaves.
type Branch = (Expect, World);

impl World {
    fn pick_where(&self, kind: Kind, n: u8, keep: impl Fn(usize) -> bool) -> Option<usize> {
        let live: Vec<usize> = self
            .slots
            .iter()
            .filter(|(s, h)| kind.selects(h.kind()) && keep(**s))
            .map(|(s, _)| *s)
            .collect();
        (!live.is_empty()).then(|| live[live.len() - 1 - n as usize % live.len()])
    }

    fn pick(&self, kind: Kind, n: u8) -> Option<usize> {
        self.pick_where(kind, n, |_| true)
    }

    fn has_pollable(&self, future: usize) -> bool {
        self.slots
            .values()
            .any(|h| matches!(h, Handle::Poll { parent } if *parent == future))
    }

    fn future_state(&mut self, s: usize) -> &mut FutState {
        match self.slots.get_mut(&s) {
            Some(Handle::Fut { state, .. }) => state,
            other => panic!("slot {s} is not a future: {other:?}"),
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Resolves the waiting get-or-set future `w` (live or departing); false if it no longer
    /// waits.
    fn resolve(&mut self, w: usize, entry: Entry) -> bool {
        if let Some(Handle::Fut {
            fut: Fut::Gos,
            state: FutState::Task {
                res: res @ None, ..
            },
            ..
        }) = self.slots.get_mut(&w)
        {
            *res = Some(Ok(Res::Gos(entry)));
            return true;
        }
        if let Some(departing) = self.departing.get_mut(&w)
            && departing.handed.is_none()
        {
            match entry {
                Entry::Vacant(token) => departing.handed = Some(token),
                Entry::Value(_) => {
                    self.departing.remove(&w);
                }
            }
            return true;
        }
        false
    }

    /// The engine's `set`: ends the key's rendezvous (every waiter gets the value), then stores
    /// the value, or removes the key for TTL 0.
    fn apply_set(&mut self, key: Key, value: Body, ttl: Ttl) {
        if let Some(rendezvous) = self.rendezvous.remove(&key) {
            for w in rendezvous.waiters {
                assert!(self.resolve(w, Entry::Value(value.clone())), "waiter {w}");
            }
        }
        if ttl == Ttl::Zero {
            self.store.remove(&key);
        } else {
            self.store.insert(key, value);
        }
    }

    /// The engine's abandon: the vacancy `token` of `key`, if still current, goes to the first
    /// waiter; with none the rendezvous ends.
    fn abandon(&mut self, key: Key, token: u64) {
        let Some(rendezvous) = self.rendezvous.get(&key) else {
            return;
        };
        if rendezvous.token != token {
            return;
        }
        let mut waiters = rendezvous.waiters.clone();
        while !waiters.is_empty() {
            let w = waiters.remove(0);
            let next = self.token();
            let rendezvous = self.rendezvous.get_mut(&key).unwrap();
            rendezvous.token = next;
            rendezvous.waiters = waiters.clone();
            if self.resolve(w, Entry::Vacant(next)) {
                return;
            }
        }
        self.rendezvous.remove(&key);
    }

    /// The worlds one background event leads to.
    fn events(&self) -> Vec<World> {
        let mut next = Vec::new();
        for (&w, departing) in &self.departing {
            // One that still waits stays in line: its leaving only matters once it is handed the
            // vacancy, and leaving before is the same as passing it on at once.
            let Some(token) = departing.handed else {
                continue;
            };
            let mut world = self.clone();
            world.departing.remove(&w);
            world.abandon(departing.key, token);
            next.push(world);
        }
        for (i, set) in self.pending_sets.iter().enumerate() {
            let outcome = match &self.streams[&set.stream] {
                StreamState::Open { .. } => continue,
                StreamState::Closed(bytes) => Ok((bytes.clone(), set)),
                StreamState::Failed => Err(ErrClass::TOO_LARGE),
            };
            let mut world = self.clone();
            world.pending_sets.remove(i);
            let outcome = match outcome {
                Ok((bytes, set)) => {
                    world.apply_set(set.key, bytes, set.ttl);
                    Ok(Res::Unit)
                }
                Err(class) => Err(class),
            };
            if let Some(Handle::Fut {
                state: FutState::Task { res, .. },
                ..
            }) = world.slots.get_mut(&set.future)
            {
                *res = Some(outcome);
            }
            next.push(world);
        }
        next
    }

    /// Forgets what can no longer matter (so that equal states compare equal): a departing
    /// future handed a vacancy that is no longer current passes on nothing.
    fn canonical(mut self) -> World {
        let rendezvous = &self.rendezvous;
        self.departing.retain(|_, d| match d.handed {
            None => true,
            Some(token) => rendezvous.get(&d.key).is_some_and(|r| r.token == token),
        });
        self
    }

    /// Whether no background event can fire.
    fn quiescent(&self) -> bool {
        self.departing.values().all(|d| d.handed.is_none())
            && self
                .pending_sets
                .iter()
                .all(|set| matches!(self.streams[&set.stream], StreamState::Open { .. }))
    }

    /// Whether `block` on the `n`-th pollable could wait forever in this (quiescent) world.
    fn block_may_hang(&self, n: u8) -> bool {
        let Some(p) = self.pick(Kind::Poll, n) else {
            return false;
        };
        let Some(Handle::Poll { parent }) = self.slots.get(&p) else {
            unreachable!()
        };
        matches!(
            self.slots.get(parent),
            Some(Handle::Fut {
                state: FutState::Task { res: None, .. },
                ..
            })
        )
    }

    /// The results operation `i` may print (without its number), each with the world it leaves.
    fn step(&self, i: usize, op: &Op) -> Vec<Branch> {
        let mut w = self.clone();
        let exact = |text: String, world: World| vec![(Expect::Exact(text), world)];
        let skip = || vec![(Expect::Exact("skip".into()), self.clone())];
        match *op {
            Op::Get(key) => {
                let outcome = if key == Key::Long {
                    Err(ErrClass::KEY)
                } else {
                    Ok(Res::Get(w.store.get(&key).cloned()))
                };
                w.new_future(i, Fut::Get, key, FutState::Ready(outcome));
                exact("new fg".into(), w)
            }
            Op::Exists(key) => {
                let outcome = if key == Key::Long {
                    Err(ErrClass::KEY)
                } else {
                    Ok(Res::Exists(w.store.contains_key(&key)))
                };
                w.new_future(i, Fut::Exists, key, FutState::Ready(outcome));
                exact("new fe".into(), w)
            }
            Op::Delete(key) => {
                let outcome = if key == Key::Long {
                    Err(ErrClass::KEY)
                } else {
                    w.store.remove(&key);
                    Ok(Res::Unit)
                };
                w.new_future(i, Fut::Unit, key, FutState::Ready(outcome));
                exact("new fr".into(), w)
            }
            Op::Gos(key) => {
                let state = if key == Key::Long {
                    FutState::Ready(Err(ErrClass::KEY))
                } else if let Some(value) = w.store.get(&key) {
                    FutState::Ready(Ok(Res::Gos(Entry::Value(value.clone()))))
                } else if let Some(rendezvous) = w.rendezvous.get_mut(&key) {
                    rendezvous.waiters.push(i);
                    FutState::Task {
                        res: None,
                        known: false,
                    }
                } else {
                    let token = w.token();
                    w.rendezvous.insert(
                        key,
                        Rendezvous {
                            token,
                            waiters: Vec::new(),
                        },
                    );
                    FutState::Ready(Ok(Res::Gos(Entry::Vacant(token))))
                };
                w.new_future(i, Fut::Gos, key, state);
                exact("new fs".into(), w)
            }
            Op::Set(key, n, ttl) => {
                let Some(s) = w.pick(Kind::Out, n) else {
                    return skip();
                };
                let Some(Handle::Out { body, refused, .. }) = w.slots.get(&s).cloned() else {
                    unreachable!()
                };
                let mut errors = ErrClass::NONE;
                if refused {
                    errors = errors.or(ErrClass::REFUSED);
                } else if body == OutBody::Unwritten {
                    errors = errors.or(ErrClass::NO_BODY);
                }
                if key == Key::Long {
                    errors = errors.or(ErrClass::KEY);
                }
                let state = if errors.any() {
                    FutState::Ready(Err(errors))
                } else {
                    match body {
                        OutBody::Unwritten => unreachable!(),
                        OutBody::Sync(bytes) => {
                            w.apply_set(key, bytes, ttl);
                            FutState::Ready(Ok(Res::Unit))
                        }
                        OutBody::Stream(stream) => match &w.streams[&stream] {
                            StreamState::Closed(bytes) => {
                                w.apply_set(key, bytes.clone(), ttl);
                                FutState::Ready(Ok(Res::Unit))
                            }
                            StreamState::Failed => FutState::Ready(Err(ErrClass::TOO_LARGE)),
                            StreamState::Open { .. } => {
                                w.pending_sets.push(PendingSet {
                                    future: i,
                                    key,
                                    stream,
                                    ttl,
                                });
                                FutState::Task {
                                    res: None,
                                    known: false,
                                }
                            }
                        },
                    }
                };
                w.new_future(i, Fut::Unit, key, state);
                exact(format!("#{s} new fr"), w)
            }
            Op::Take(kind, n) => {
                let Some(s) = w.pick(kind, n) else {
                    return skip();
                };
                let Some(Handle::Fut { key, state, .. }) = w.slots.get(&s).cloned() else {
                    unreachable!()
                };
                let pending = || (Expect::Exact(format!("#{s} none")), self.clone());
                match state {
                    FutState::Ready(outcome) => vec![w.taken(i, s, key, outcome)],
                    FutState::Task { res: None, .. } => vec![pending()],
                    FutState::Task {
                        res: Some(outcome),
                        known,
                    } => {
                        let mut branches = vec![w.taken(i, s, key, outcome)];
                        if !known {
                            branches.push(pending());
                        }
                        branches
                    }
                    FutState::Taken => {
                        w.slots.insert(i, Handle::Err(ErrClass::TAKEN));
                        exact(format!("#{s} some err"), w)
                    }
                }
            }
            Op::Listen(kind, n) => {
                let Some(s) = w.pick(kind, n) else {
                    return skip();
                };
                w.slots.insert(i, Handle::Poll { parent: s });
                exact(format!("#{s} new poll"), w)
            }
            Op::Ready(n) | Op::Block(n) => {
                let Some(p) = w.pick(Kind::Poll, n) else {
                    return skip();
                };
                let Some(Handle::Poll { parent }) = w.slots.get(&p).cloned() else {
                    unreachable!()
                };
                let block = matches!(op, Op::Block(_));
                let ready_text = format!("#{p} {}", if block { "ready" } else { "true" });
                match w.future_state(parent) {
                    FutState::Ready(_) | FutState::Taken => exact(ready_text, w),
                    FutState::Task { res: None, .. } if block => Vec::new(),
                    FutState::Task { res: None, .. } => exact(format!("#{p} false"), w),
                    FutState::Task { known, .. } => {
                        let was_known = *known;
                        *known = true;
                        let mut branches = exact(ready_text, w);
                        if !block && !was_known {
                            branches.push((Expect::Exact(format!("#{p} false")), self.clone()));
                        }
                        branches
                    }
                }
            }
            Op::Bucket(_) => {
                w.slots.insert(i, Handle::Bucket);
                exact("ok".into(), w)
            }
            Op::New => {
                w.slots.insert(
                    i,
                    Handle::Out {
                        body: OutBody::Unwritten,
                        fill: None,
                        refused: false,
                    },
                );
                exact("new out".into(), w)
            }
            Op::Fill(n, ttl) => {
                let Some(s) = w.pick(Kind::Vac, n) else {
                    return skip();
                };
                let Some(Handle::Vac { key, token }) = w.slots.get_mut(&s) else {
                    unreachable!()
                };
                let out = match token.take() {
                    Some(token) => Handle::Out {
                        body: OutBody::Unwritten,
                        fill: Some(Fill {
                            key: *key,
                            token,
                            ttl,
                        }),
                        refused: false,
                    },
                    None => Handle::Out {
                        body: OutBody::Unwritten,
                        fill: None,
                        refused: true,
                    },
                };
                w.slots.insert(i, out);
                exact(format!("#{s} new out"), w)
            }
            Op::WSync(n, len, seed) => {
                let Some(s) = w.pick(Kind::Out, n) else {
                    return skip();
                };
                let Some(Handle::Out {
                    body: out_body,
                    fill,
                    refused,
                }) = w.slots.get_mut(&s)
                else {
                    unreachable!()
                };
                let len = usize::from(len);
                let mut errors = ErrClass::NONE;
                if *refused {
                    errors = ErrClass::REFUSED;
                } else if *out_body != OutBody::Unwritten {
                    errors = ErrClass::WRITTEN;
                    if len > MAX_VALUE {
                        errors = errors.or(ErrClass::TOO_LARGE);
                    }
                } else if len > MAX_VALUE {
                    errors = ErrClass::TOO_LARGE;
                }
                if errors.any() {
                    w.slots.insert(i, Handle::Err(errors));
                    return exact(format!("#{s} err"), w);
                }
                let bytes: Body = body(len, seed).into();
                *out_body = OutBody::Sync(bytes.clone());
                if let Some(fill) = fill.take() {
                    w.apply_set(fill.key, bytes, fill.ttl);
                }
                exact(format!("#{s} ok"), w)
            }
            Op::WAsync(n) => {
                let Some(s) = w.pick(Kind::Out, n) else {
                    return skip();
                };
                let Some(Handle::Out {
                    body: out_body,
                    fill,
                    refused,
                }) = w.slots.get_mut(&s)
                else {
                    unreachable!()
                };
                let errors = if *refused {
                    ErrClass::REFUSED
                } else if *out_body != OutBody::Unwritten {
                    ErrClass::WRITTEN
                } else {
                    ErrClass::NONE
                };
                if errors.any() {
                    w.slots.insert(i, Handle::Err(errors));
                    return exact(format!("#{s} err"), w);
                }
                *out_body = OutBody::Stream(i);
                let fill = fill.take();
                w.slots.insert(i, Handle::Os { fill });
                w.streams.insert(
                    i,
                    StreamState::Open {
                        buf: Vec::new(),
                        failed: false,
                    },
                );
                exact(format!("#{s} ok"), w)
            }
            Op::Write(n, len, seed) => {
                let Some(s) = w.pick(Kind::Os, n) else {
                    return skip();
                };
                let Some(StreamState::Open { buf, failed }) = w.streams.get_mut(&s) else {
                    unreachable!("the stream of a live output-stream is open")
                };
                if *failed {
                    return exact(format!("#{s} closed"), w);
                }
                let bytes = body(usize::from(len), seed);
                if buf.len() + bytes.len() <= MAX_VALUE {
                    buf.extend_from_slice(&bytes);
                    return exact(format!("#{s} ok"), w);
                }
                // Past the value limit: the write fails the stream, or check-write grants less.
                *failed = true;
                buf.clear();
                vec![
                    (Expect::Failed(format!("#{s} failed ")), w),
                    (Expect::Exact(format!("#{s} short")), self.clone()),
                ]
            }
            Op::CheckW(n) | Op::Flush(n) => {
                let Some(s) = w.pick(Kind::Os, n) else {
                    return skip();
                };
                let Some(StreamState::Open { failed, .. }) = w.streams.get(&s) else {
                    unreachable!("the stream of a live output-stream is open")
                };
                let text = if *failed { "closed" } else { "ok" };
                exact(format!("#{s} {text}"), w)
            }
            Op::CSync(n) | Op::CAsync(n) | Op::Size(n) => {
                let Some(s) = w.pick(Kind::In, n) else {
                    return skip();
                };
                let Some(Handle::In(bytes)) = w.slots.get(&s).cloned() else {
                    unreachable!()
                };
                let text = match op {
                    Op::CSync(_) => format!("#{s} ok {}", show(&bytes)),
                    Op::Size(_) => format!("#{s} ok {}", bytes.len()),
                    _ => {
                        w.slots.insert(i, Handle::Is(bytes));
                        format!("#{s} ok")
                    }
                };
                exact(text, w)
            }
            Op::Read(n, len) => {
                let Some(s) = w.pick(Kind::Is, n) else {
                    return skip();
                };
                let Some(Handle::Is(rest)) = w.slots.get_mut(&s) else {
                    unreachable!()
                };
                if rest.is_empty() {
                    return exact(format!("#{s} closed"), w);
                }
                let n = usize::from(len).min(rest.len());
                let text = format!("#{s} ok {}", show(&rest[..n]));
                *rest = rest[n..].into();
                exact(text, w)
            }
            Op::Trace(n) => {
                let Some(s) = w.pick(Kind::Err, n) else {
                    return skip();
                };
                let Some(Handle::Err(class)) = w.slots.get(&s) else {
                    unreachable!()
                };
                vec![(Expect::Trace(format!("#{s} "), *class), w)]
            }
            Op::Drop(kind, n) => {
                // A future with a live pollable is left alone (dropping it traps).
                let droppable = |s: usize| {
                    !matches!(self.slots[&s], Handle::Fut { .. }) || !self.has_pollable(s)
                };
                let Some(s) = w.pick_where(kind, n, droppable) else {
                    return skip();
                };
                let handle = w.slots.remove(&s).unwrap();
                w.dropped(s, handle);
                exact(format!("#{s}"), w)
            }
            Op::MisuseStale => {
                w.trapped = true;
                exact("stale".into(), w)
            }
            Op::MisuseParent => {
                let parent = self
                    .slots
                    .iter()
                    .find(|(s, h)| matches!(h, Handle::Fut { .. }) && self.has_pollable(**s))
                    .map(|(s, _)| *s);
                let Some(s) = parent else {
                    return skip();
                };
                w.trapped = true;
                exact(format!("#{s}"), w)
            }
        }
    }

    /// The end of the script: the guest drops every handle it still holds, newest first.
    fn exit(mut self) -> World {
        while let Some((s, handle)) = self.slots.pop_last() {
            self.dropped(s, handle);
        }
        self
    }

    fn new_future(&mut self, i: usize, fut: Fut, key: Key, state: FutState) {
        self.slots.insert(i, Handle::Fut { fut, key, state });
    }

    /// Future `s` (of `key`) hands its `outcome` to operation `i`.
    fn taken(mut self, i: usize, s: usize, key: Key, outcome: Outcome) -> Branch {
        *self.future_state(s) = FutState::Taken;
        let text = match outcome {
            Err(class) => {
                self.slots.insert(i, Handle::Err(class));
                "some err".to_owned()
            }
            Ok(Res::Get(None)) => "some ok none".to_owned(),
            Ok(Res::Get(Some(bytes))) => {
                let text = format!("some ok in {}", show(&bytes));
                self.slots.insert(i, Handle::In(bytes));
                text
            }
            Ok(Res::Exists(found)) => format!("some ok {found}"),
            Ok(Res::Unit) => "some ok".to_owned(),
            Ok(Res::Gos(Entry::Value(bytes))) => {
                let text = format!("some ok occupied {}", show(&bytes));
                self.slots.insert(i, Handle::In(bytes));
                text
            }
            Ok(Res::Gos(Entry::Vacant(token))) => {
                self.slots.insert(
                    i,
                    Handle::Vac {
                        key,
                        token: Some(token),
                    },
                );
                "some ok vacant".to_owned()
            }
        };
        (Expect::Exact(format!("#{s} {text}")), self)
    }

    /// The guest dropped `handle`, from slot `s`.
    fn dropped(&mut self, s: usize, handle: Handle) {
        match handle {
            Handle::Fut {
                fut: Fut::Gos,
                key,
                state,
            } => match state {
                FutState::Ready(Ok(Res::Gos(Entry::Vacant(token)))) => self.abandon(key, token),
                FutState::Task { res: None, .. } => {
                    self.departing.insert(s, Departing { key, handed: None });
                }
                FutState::Task {
                    res: Some(Ok(Res::Gos(Entry::Vacant(token)))),
                    ..
                } => {
                    self.departing.insert(
                        s,
                        Departing {
                            key,
                            handed: Some(token),
                        },
                    );
                }
                _ => {}
            },
            Handle::Out {
                fill: Some(fill), ..
            } => self.abandon(fill.key, fill.token),
            Handle::Vac {
                key,
                token: Some(token),
            } => self.abandon(key, token),
            Handle::Os { fill } => {
                let Some(StreamState::Open { buf, failed }) = self.streams.get(&s).cloned() else {
                    unreachable!()
                };
                if failed {
                    self.streams.insert(s, StreamState::Failed);
                    if let Some(fill) = fill {
                        self.abandon(fill.key, fill.token);
                    }
                } else {
                    let bytes: Body = buf.into();
                    self.streams.insert(s, StreamState::Closed(bytes.clone()));
                    if let Some(fill) = fill {
                        self.apply_set(fill.key, bytes, fill.ttl);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `worlds` and every world background events lead them to.
fn closure(worlds: impl IntoIterator<Item = World>) -> Result<Vec<World>, String> {
    let mut seen = HashSet::new();
    let mut todo: Vec<World> = worlds.into_iter().collect();
    while let Some(world) = todo.pop() {
        let world = world.canonical();
        if seen.contains(&world) {
            continue;
        }
        todo.extend(world.events().into_iter().filter(|w| !seen.contains(w)));
        seen.insert(world);
        if seen.len() > MAX_WORLDS {
            return Err(format!("the model exceeded {MAX_WORLDS} worlds"));
        }
    }
    Ok(seen.into_iter().collect())
}

/// Replays `script` over every possible result and turns each `block` that might wait forever
/// into a `ready`.
fn make_blocks_safe(script: &Script) -> Script {
    let mut ops = script.0.clone();
    let mut worlds = vec![World::default()];
    for i in 0..ops.len() {
        let closed = match closure(std::mem::take(&mut worlds)) {
            Ok(closed) if closed.len() <= PREPASS_WORLDS => closed,
            // Too many worlds to follow: no `block` from here on.
            _ => {
                for op in &mut ops[i..] {
                    if let Op::Block(n) = *op {
                        *op = Op::Ready(n);
                    }
                }
                break;
            }
        };
        if let Op::Block(n) = ops[i]
            && closed.iter().any(|w| w.quiescent() && w.block_may_hang(n))
        {
            ops[i] = Op::Ready(n);
        }
        worlds = closed
            .iter()
            .flat_map(|w| w.step(i, &ops[i]))
            .map(|(_, w)| w)
            .collect();
    }
    Script(ops)
}

// ---------------------------------------------------------------------------------------------
// Running the guest
// ---------------------------------------------------------------------------------------------

/// The engine and the guest component, compiled once, ready to instantiate.
struct Host {
    engine: Engine,
    pre: CommandPre<WasiCacheState>,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let wasm = guest_build::build(
            guest_build::GUEST_E2E,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        );
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasi_cache_host::add_to_linker(&mut linker).unwrap();
        let pre = CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Host { engine, pre }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// How a run ended.
#[derive(Debug)]
struct Run {
    /// `Ok(code)` when the guest returned or exited, `Err(message)` when it trapped or hung.
    exit: Result<i32, String>,
    stdout: String,
    stderr: String,
    /// The backend's value of each storable key after the run.
    store: BTreeMap<Key, Body>,
}

async fn run(script: &Script) -> Run {
    let host = host();
    let (stdout, stderr) = (
        MemoryOutputPipe::new(1 << 20),
        MemoryOutputPipe::new(1 << 20),
    );
    let wasi = WasiCtx::builder()
        .args(&["guest", "script"])
        .stdin(MemoryInputPipe::new(script.text()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let backend = Arc::new(
        MemoryCache::new(CacheConfig {
            limits: TEST_LIMITS,
            // Never reached: no vacancy changes hands by the clock.
            vacancy_timeout: Duration::from_secs(3600),
            ..CacheConfig::with_capacity(64 << 20)
        })
        .unwrap(),
    );
    let ns = Namespace::new("prop").unwrap();
    let cache = WasiCacheCtx::builder(backend.clone())
        .namespace(ns.clone())
        .limits(TEST_LIMITS)
        .memory_budget(64 << 20)
        .build();
    let mut store = Store::new(&host.engine, WasiCacheState::new(wasi, cache));
    let call = async {
        let command = host.pre.instantiate_async(&mut store).await?;
        command.wasi_cli_run().call_run(&mut store).await
    };
    let exit = match tokio::time::timeout(HANG, call).await {
        Err(_) => Err(format!("the guest hung (still running after {HANG:?})")),
        Ok(Ok(Ok(()))) => Ok(0),
        Ok(Ok(Err(()))) => Ok(1),
        Ok(Err(err)) => match err.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            // The message and its causes, without the host's backtrace.
            None => Err(format!("{err:?}")
                .split("\nStack backtrace:")
                .next()
                .unwrap_or_default()
                .to_owned()),
        },
    };
    drop(store);
    let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    let store = [Key::A, Key::B, Key::Empty]
        .into_iter()
        .filter_map(|key| {
            let name = match key {
                Key::A => "a",
                Key::B => "b",
                _ => "",
            };
            let value = backend.get(&ns, name.as_bytes()).unwrap()?;
            Some((key, Body::from(&value[..])))
        })
        .collect();
    Run {
        exit,
        stdout: text(&stdout),
        stderr: text(&stderr),
        store,
    }
}

// ---------------------------------------------------------------------------------------------
// Checking a run
// ---------------------------------------------------------------------------------------------

/// Checks `run`'s output against the model; the error says where and why it diverged.
fn check(script: &Script, run: &Run) -> Result<(), String> {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut worlds = closure([World::default()])?;
    for (i, op) in script.0.iter().enumerate() {
        let Some(line) = lines.get(i) else {
            return Err(format!(
                "operation {i} (`{op}`) printed nothing: the guest ended with {:?}",
                run.exit
            ));
        };
        let Some(result) = line.strip_prefix(&format!("{i} ")) else {
            return Err(format!("line {i} is `{line}`, expected a result of `{op}`"));
        };
        let mut next = Vec::new();
        let mut allowed = Vec::new();
        for world in &worlds {
            for (expect, world) in world.step(i, op) {
                if expect.matches(result) {
                    next.push(world);
                } else if !allowed.contains(&expect) {
                    allowed.push(expect);
                }
            }
        }
        if next.is_empty() {
            let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return Err(format!(
                "operation {i} (`{op}`) printed `{result}`; the model allows {}",
                if allowed.is_empty() {
                    "nothing (a `block` that should have waited forever?)".to_owned()
                } else {
                    allowed.join(" or ")
                }
            ));
        }
        worlds = closure(next)?;
        if worlds.iter().all(|w| w.trapped) {
            let trap = match &run.exit {
                Err(trap) => trap,
                Ok(code) => return Err(format!("`{op}` must trap; the guest exited with {code}")),
            };
            let expected = match op {
                Op::MisuseStale => "unknown handle index",
                _ => "resource has children",
            };
            if !trap.contains(expected) {
                return Err(format!(
                    "`{op}` must trap with {expected:?}; it trapped with {trap}"
                ));
            }
            if lines.len() != i + 1 {
                return Err(format!("`{op}` must trap; the guest went on"));
            }
            return check_store(&worlds, run);
        }
    }
    if lines.len() != script.0.len() + 1 || lines.last() != Some(&"done") {
        return Err("the guest printed more than one line per operation and `done`".to_owned());
    }
    if run.exit != Ok(0) {
        return Err(format!("the guest ended with {:?}", run.exit));
    }
    check_store(&closure(worlds.into_iter().map(World::exit))?, run)
}

/// The backend's final contents are some world's (background `set`s may still have been
/// landing).
fn check_store(worlds: &[World], run: &Run) -> Result<(), String> {
    if worlds.iter().any(|w| w.store == run.store) {
        return Ok(());
    }
    let show_store = |store: &BTreeMap<Key, Body>| -> String {
        let entries: Vec<String> = store
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        format!("{{{}}}", entries.join(", "))
    };
    let allowed: HashSet<String> = worlds.iter().map(|w| show_store(&w.store)).collect();
    Err(format!(
        "the backend ends with {}; the model allows {allowed:?}",
        show_store(&run.store)
    ))
}

fn report(script: &Script, run: &Run) -> String {
    format!(
        "{script:?}exit: {:?}\nstdout:\n{}stderr:\n{}",
        run.exit, run.stdout, run.stderr
    )
}

fn cases() -> u32 {
    match std::env::var("WASI_CACHE_PROPTEST_CASES") {
        Ok(n) => n
            .parse()
            .expect("WASI_CACHE_PROPTEST_CASES must be a number of cases"),
        Err(_) => DEFAULT_CASES,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4096,
        // Shrinking a hang costs `HANG` a step: give up on a smaller case after five minutes.
        max_shrink_time: 300_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Random scripts through the guest, the host and the engine give results the model allows.
    #[test]
    fn random_scripts_match_the_model(script in script()) {
        run_case(&script).map_err(TestCaseError::fail)?;
    }
}

/// Runs one case: makes its `block`s safe, runs the guest, checks the output.
fn run_case(script: &Script) -> Result<(), String> {
    let script = make_blocks_safe(script);
    let run = runtime().block_on(run(&script));
    check(&script, &run).map_err(|why| format!("{why}\n{}", report(&script, &run)))
}

/// Hand-written scripts for paths worth running every time, whatever proptest draws.
#[test]
fn fixed_scripts_match_the_model() {
    let scripts = [
        // A holder and two waiters: the abandoned vacancy goes to the first waiter, whose fill
        // reaches the second; a second `…-get` is an error naming the cause.
        "gos a; take fut 0; gos a; gos a; drop vac 0; listen fut 1; block 0; take fut 1; \
         fill 0 -; wsync 0 3 9; listen fut 0; block 0; take fut 0; csync 0; take fut 0; trace 0",
        // A `set` waits for its stream body; the value lands once the stream is dropped.
        "new; wasync 0; write 0 3 1; set a 0 -; listen fut 0; ready 0; get a; take fut 0; \
         drop os 0; listen fr 0; block 0; take fr 0; get a; take fut 0; casync 0; read 0 2; \
         read 0 2; read 0 2",
        // TTL 0 is never visible, and replaces an older value; a long TTL is.
        "new; wsync 0 2 5; set a 0 -; set a 0 0; get a; take fut 0; set b 0 86400000; exists b; \
         take fut 0",
        // Bad input: a long key, an oversized body, a body written twice, an unwritten value.
        "get L; take fut 0; trace 0; new; wsync 0 4097 1; trace 0; set a 0 -; take fut 0; \
         trace 0; wsync 0 1 1; wsync 0 1 1; trace 0; set L 0 -; take fut 0; trace 0",
        // A stream past the value limit fails, and so does the `set` waiting on it.
        "new; wasync 0; set b 0 -; write 0 2100 1; write 0 2100 2; checkw 0; drop os 0; \
         take fut 0; trace 0",
        // Many waiters dropped while waiting (here at exit) keep the model small.
        "gos a; take fut 0; gos a; gos a; gos a; take fut 0; gos a; gos a; gos a; take fut 0; \
         gos a; gos a; gos a; take fut 0; gos a; gos a; gos a; take fut 0; gos b; take fut 0; \
         gos b; take fut 0; gos b; gos b",
        // The two misuses trap.
        "get a; listen fut 0; misuse parent",
        "get a; misuse stale",
    ];
    for text in scripts {
        let script = Script(text.split(';').map(|line| Op::parse(line.trim())).collect());
        if let Err(why) = run_case(&script) {
            panic!("{why}");
        }
    }
}
