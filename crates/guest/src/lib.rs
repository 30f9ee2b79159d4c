//! # wasi-cache-guest
//!
//! The guest SDK of `wasi:keyvalue/cache` (package `wasi:keyvalue@0.1.0`) for components built
//! for `wasm32-wasip2` and run by a wasi-cache host (e.g. `wasi-cache run`).
//!
//! Two flavours, one API: by default the cache's WASI 0.2 form (golem-rust 2.x; futures with
//! `wasi:io` pollables, awaited on [wstd]); with the `p3` feature its WASI 0.3 form (golem-rust
//! 3.x; futures with an `async get` and `stream<u8>` bodies, on wit-bindgen's async support, for
//! components exporting `wasi:cli/run@0.3.0` or other async exports). `docs/guest-sdk.md` says
//! what differs.
//!
//! - [`Cache`]: async operations (on WASI 0.2 awaited on [wstd]'s reactor), so many run at once;
//! - [`blocking::Cache`]: the same operations, blocking the instance;
//! - typed values (`get_as`, `set_as`, `get_or_set_as`) in [postcard] (JSON with the `json`
//!   feature), with [`Error::Decode`] when stored bytes are not of the requested type;
//! - streamed bodies for large values ([`ValueReader`], [`ValueWriter`]);
//! - `get_or_set` memoisation: concurrent callers on a missing key (in any instance) meet, one
//!   computes, the others receive its value; a failing compute hands the key to a waiter.
//! - stale-while-revalidate and stale-if-error ([`Cache::get_or_revalidate`], [`stale`]): a
//!   stale value is answered at once while exactly one caller (of every instance and host)
//!   refreshes it, and still answered when the refresh fails, within their windows.
//!
//! On WASI 0.2, `wasi:io` is the [`wasip2`] crate's, so pollables and streams interoperate with
//! wstd and golem-rust. All errors are one [`Error`], carrying the host's trace.
//!
//! ## Example
//! ```no_run
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use wasi_cache_guest::{Cache, Error};
//!
//! #[derive(Serialize, Deserialize, Debug)]
//! struct Profile { name: String, visits: u32 }
//!
//! #[wstd::main]
//! async fn main() -> Result<(), Error> {
//!     let cache = Cache::new();
//!     cache.set("greeting", b"hello", Some(Duration::from_secs(60))).await?;
//!     // Many lookups at once, all pending on the host together.
//!     let (a, b) = futures::join!(cache.get("greeting"), cache.exists("missing"));
//!     assert_eq!(a?.as_deref(), Some(&b"hello"[..]));
//!     assert!(!b?);
//!
//!     // Compute once across concurrent callers; an Err hands the key to a waiter.
//!     let profile: Profile = cache
//!         .get_or_set_as("profile:42", None, || async {
//!             Ok::<_, Error>(Profile { name: "Ada".into(), visits: 1 })
//!         })
//!         .await?;
//!     println!("{profile:?}");
//!
//!     // Stream a large value in and out.
//!     let mut writer = cache.set_stream("big", None)?;
//!     writer.write(&vec![7u8; 1 << 20]).await?;
//!     writer.finish().await?;
//!     let mut reader = cache.get_value("big").await?.expect("just set").into_reader()?;
//!     assert_eq!(reader.read_to_end().await?.len(), 1 << 20);
//!
//!     // Or without async at all.
//!     let blocking = wasi_cache_guest::blocking::Cache::new();
//!     blocking.delete("greeting")?;
//!     Ok(())
//! }
//! ```
//!
//! See `docs/guest-sdk.md` in the repository for the guide.

#![deny(missing_docs)]

// One flavour per build: both import `wasi:keyvalue/cache@0.1.0` under the same name.
#[cfg(not(feature = "p3"))]
mod p2;
#[cfg(not(feature = "p3"))]
use p2 as flavour;
#[cfg(feature = "p3")]
mod p3;
#[cfg(feature = "p3")]
use p3 as flavour;

pub mod blocking;
mod body;
mod cache;
pub mod codec;
mod entry;
mod error;
pub mod stale;
mod value;

pub use flavour::bindings;
use flavour::{pending, stream, task};

pub use cache::Cache;
pub use entry::{Entry, VacantEntry};
pub use error::{BoxError, Error, Result};
pub use stale::{How, Lifetimes, Served};
pub use stream::{CHUNK, ValueReader, ValueWriter};
pub use value::Value;
