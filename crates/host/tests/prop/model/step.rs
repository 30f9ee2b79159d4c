//! What an operation does to a world: the results it may print ([`Expect`]), each with the world
//! it leaves; and the guest's dropping of a handle, there and at the end of the script.

use std::fmt;

use super::{
    Body, Departing, Entry, ErrClass, Fill, FutState, Handle, OutBody, Outcome, PendingSet,
    Rendezvous, Res, StreamState, World,
};
use crate::MAX_VALUE;
use crate::body::{body, show};
use crate::ops::{Fut, Key, Kind, Op};

/// What a result line must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    Exact(String),
    /// `PREFIX` then a text containing a marker of the class.
    Trace(String, ErrClass),
    /// `PREFIX` then a stream error naming the value limit.
    Failed(String),
}

impl Expect {
    pub(crate) fn matches(&self, line: &str) -> bool {
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

/// A possible result of an operation and the world it leaves.
pub(crate) type Branch = (Expect, World);

impl World {
    /// The results operation `i` may print (without its number), each with the world it leaves.
    pub(crate) fn step(&self, i: usize, op: &Op) -> Vec<Branch> {
        let mut w = self.clone();
        let exact = |text: String, world: World| vec![(Expect::Exact(text), world)];
        let skip = || vec![(Expect::Exact("skip".into()), self.clone())];
        match *op {
            Op::Get(key) | Op::Exists(key) | Op::Delete(key) => {
                let fut = match *op {
                    Op::Get(_) => Fut::Get,
                    Op::Exists(_) => Fut::Exists,
                    _ => Fut::Unit,
                };
                let outcome = if key == Key::Long {
                    Err(ErrClass::KEY)
                } else {
                    Ok(match fut {
                        Fut::Get => Res::Get(w.store.get(&key).cloned()),
                        Fut::Exists => Res::Exists(w.store.contains_key(&key)),
                        _ => {
                            w.store.remove(&key);
                            Res::Unit
                        }
                    })
                };
                w.new_future(i, fut, key, FutState::Ready(outcome));
                exact(format!("new {fut}"), w)
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
            Op::WSync(n, ..) | Op::WAsync(n) => {
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
                let too_large = matches!(*op, Op::WSync(_, len, _) if usize::from(len) > MAX_VALUE);
                let mut errors = if *refused {
                    ErrClass::REFUSED
                } else if *out_body != OutBody::Unwritten {
                    ErrClass::WRITTEN
                } else {
                    ErrClass::NONE
                };
                if too_large && !*refused {
                    errors = errors.or(ErrClass::TOO_LARGE);
                }
                if errors.any() {
                    w.slots.insert(i, Handle::Err(errors));
                    return exact(format!("#{s} err"), w);
                }
                if let Op::WSync(_, len, seed) = *op {
                    let bytes: Body = body(usize::from(len), seed).into();
                    *out_body = OutBody::Sync(bytes.clone());
                    if let Some(fill) = fill.take() {
                        w.apply_set(fill.key, bytes, fill.ttl);
                    }
                } else {
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
                }
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
    pub(crate) fn exit(mut self) -> World {
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
