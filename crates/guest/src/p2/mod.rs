//! The WASI 0.2 flavour (the default): bindings of `wit/p2`, whose future resources are waited
//! on through `wasi:io` pollables (on wstd's reactor, or blocking) and whose bodies are `wasi:io`
//! streams.

pub mod bindings;
pub(crate) mod pending;
pub(crate) mod stream;
pub(crate) mod task;
