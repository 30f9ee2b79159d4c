//! The operations of a script ([`Op`], one a line) and what they name: keys, TTLs, kinds of
//! handles; their text form (`Display`, [`Op::parse`]) and the [`Script`] proptest generates.

use std::fmt;

use crate::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    A,
    B,
    Empty,
    /// 1025 bytes: over the key limit.
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ttl {
    None,
    Zero,
    Day,
}

/// The four future resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Fut {
    Get,
    Exists,
    Unit,
    Gos,
}

/// The kinds of slots, and two selectors of several kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
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
pub(crate) enum Op {
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
pub(crate) struct Script(pub(crate) Vec<Op>);

impl Script {
    pub(crate) fn text(&self) -> String {
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
    pub(crate) fn parse(line: &str) -> Op {
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
