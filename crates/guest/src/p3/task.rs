//! Spawning a task on wit-bindgen's async support: it runs beside the caller's and, after the
//! export has returned its value, keeps the component-model task alive until it ends.

use std::future::Future;

/// Runs `future` in a task of its own (detached: dropping the handle lets it run on).
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    drop(wit_bindgen::spawn_local(future));
}
