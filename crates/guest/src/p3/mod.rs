//! The WASI 0.3 flavour (the `p3` feature): bindings of `wit/p3`, whose future resources have
//! one `get: async func()` and whose bodies are `stream<u8>`, all on wit-bindgen's async support.

pub mod bindings;
pub(crate) mod pending;
pub(crate) mod stream;
pub(crate) mod task;
