//! The memo example in Python (`examples/python-memo`, componentize-py) and in JavaScript
//! (`examples/js-memo`, ComponentizeJS), built from the project's WIT with no Rust in them,
//! under `wasi-cache run`, on the embedded engine and on a private Redis server: for each key,
//! ten concurrent get-or-set callers, one computation.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasi_cache_guest_build as guest_build;

fn python_memo() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build_polyglot(guest_build::PYTHON_MEMO, tmp()))
}

fn js_memo() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build_polyglot(guest_build::JS_MEMO, tmp()))
}

/// Runs `wasm` with `--stats` and `options`.
fn run_memo(wasm: &Path, options: &[&str]) -> Run {
    let mut args = vec!["run", "--stats"];
    args.extend(options);
    args.push(wasm.to_str().unwrap());
    wasi_cache(args)
}

/// Checks a run's output: each of the three keys computed once and waited for nine times.
fn assert_one_computation_per_key(run: &Run) {
    assert_eq!(run.code, Some(0), "{run:#?}");
    for (key, prime) in [("2000", "17389"), ("3000", "27449"), ("4000", "37813")] {
        let line = format!("nth-prime:{key}: 10 callers, 1 computation, 9 waited ({prime})");
        assert!(run.stdout.contains(&line), "{line:?} not in {run:#?}");
    }
    assert!(run.stdout.contains("get nth-prime:2000: hit"), "{run:#?}");
    for field in [" fills=3 ", " rendezvous=27 ", " handoffs=0 "] {
        assert!(run.stderr.contains(field), "{field} not in {run:#?}");
    }
}

#[test]
fn python_memo_computes_once_per_key() {
    assert_one_computation_per_key(&run_memo(python_memo(), &[]));
}

#[test]
fn python_memo_computes_once_per_key_on_redis() {
    let redis = wasi_cache_redis_server::RedisServer::start();
    let url = format!("{}/0", redis.url());
    assert_one_computation_per_key(&run_memo(python_memo(), &["--redis", &url]));
}

#[test]
fn js_memo_computes_once_per_key() {
    assert_one_computation_per_key(&run_memo(js_memo(), &[]));
}

#[test]
fn js_memo_computes_once_per_key_on_redis() {
    let redis = wasi_cache_redis_server::RedisServer::start();
    let url = format!("{}/0", redis.url());
    assert_one_computation_per_key(&run_memo(js_memo(), &["--redis", &url]));
}
