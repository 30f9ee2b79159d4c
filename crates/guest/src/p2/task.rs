//! Spawning a task on wstd's reactor: it runs beside the caller's and, once the caller's future
//! is done, to its own end before `wstd::runtime::block_on` returns.

use std::future::Future;

/// Runs `future` in a task of its own (detached: nobody waits for it).
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    wstd::runtime::spawn(future).detach();
}
