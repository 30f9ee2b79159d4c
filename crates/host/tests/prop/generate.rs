//! The proptest strategies: operations weighted towards the ones that meet (selectors mostly
//! the newest handle), common chains of them, and whole scripts.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::MAX_OPS;
use crate::ops::{Fut, Key, Kind, Op, Script, Ttl};

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
pub(crate) fn script() -> impl Strategy<Value = Script> {
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
