//! The background: events that may fire between two operations (a dropped waiter passing on
//! its vacancy, a `set` applying once its stream body is closed), the closure of a set of
//! worlds under them, and the pre-pass that turns a `block` that might wait forever into a
//! `ready`.

use std::collections::HashSet;

use super::{ErrClass, FutState, Handle, Res, StreamState, World};
use crate::ops::{Kind, Op, Script};
use crate::{MAX_WORLDS, PREPASS_WORLDS};

impl World {
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
}
/// `worlds` and every world background events lead them to.
pub(crate) fn closure(worlds: impl IntoIterator<Item = World>) -> Result<Vec<World>, String> {
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
pub(crate) fn make_blocks_safe(script: &Script) -> Script {
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
