//! Benchmarks of the wasi-cache memory engine.
pub fn x() {}
