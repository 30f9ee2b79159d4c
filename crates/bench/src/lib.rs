//! Benchmarks of the wasi-cache memory engine against moka and quick_cache.
//!
//! The bench binary (`benches/engine.rs`, run by `cargo bench -p wasi-cache-bench`) drives the
//! sections below over one shared, precomputed workload; `docs/benchmarks.md` describes the
//! method. Every cache is reached through [`adapters`], so each one sees the same keys, values
//! and hasher family (foldhash).

#![warn(missing_docs)]

pub mod adapters;
pub mod hit_ratio;
pub mod memory;
pub mod report;
pub mod sizes;
pub mod stampede;
pub mod throughput;
pub mod workload;
