//! The model: the state of one possible world (the stored values, the rendezvous, every slot's
//! handle, the streams, the departing futures and the pending `set`s) and how to find a slot in
//! it. What an operation does to a world is in [`step`], the engine's rendezvous in
//! [`rendezvous`], the events that fire in the background and the pre-pass that keeps `block`
//! safe in [`background`].

mod background;
mod rendezvous;
mod step;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ops::{Fut, Key, Kind, Ttl};

pub(crate) use background::{closure, make_blocks_safe};

pub(crate) type Body = Arc<[u8]>;

/// The causes an error resource may name, as a set: where several apply, the host may report
/// any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ErrClass(u8);

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

/// One possible state of the host as the guest sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct World {
    pub(crate) store: BTreeMap<Key, Body>,
    rendezvous: BTreeMap<Key, Rendezvous>,
    slots: BTreeMap<usize, Handle>,
    streams: BTreeMap<usize, StreamState>,
    departing: BTreeMap<usize, Departing>,
    pending_sets: Vec<PendingSet>,
    next_token: u64,
    /// The guest ran a misuse operation: it must have trapped right after.
    pub(crate) trapped: bool,
}

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
}
