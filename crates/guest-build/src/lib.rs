//! Test support shared by the host's and the CLI's tests: builds a guest component of this
//! repository from source for `wasm32-wasip2` and returns the path of its `.wasm`.
//!
//! The build script prebuilds the guests of the features enabled (`host-tests`, `cli-tests`:
//! each test crate enables its own), so that their builds (golem-rust's above all) overlap the
//! compilation of the workspace instead of starting when the tests run; a test's [`build`] then
//! finds its guest up to date. Every Rust guest is built in one target dir, so wit-bindgen and
//! the other dependencies they share are built once.

#![deny(missing_docs)]

mod cargo;
mod guests;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use cargo::repo_root;
pub use guests::*;

/// Builds `guest` in release mode for `wasm32-wasip2` under `target_dir` and returns the
/// component's path (one folder per guest and feature set).
///
/// Uses the `cargo` that runs the tests (`$CARGO`). Panics with a hint when the build fails.
pub fn build(guest: Guest<'_>, target_dir: &Path) -> PathBuf {
    try_build(guest, target_dir).unwrap_or_else(|err| panic!("{err}"))
}

/// [`build`], returning the failure's message with its hint instead of panicking.
pub fn try_build(guest: Guest<'_>, target_dir: &Path) -> Result<PathBuf, String> {
    cargo::try_build(guest, target_dir, cargo::Jobs::Shared)
}

/// A memo example in another language than Rust, built by its own `build.sh`.
#[derive(Debug, Clone, Copy)]
pub struct Polyglot {
    /// Its folder under `examples/`.
    pub name: &'static str,
    /// What its build needs, for the message of a failed build.
    pub needs: &'static str,
}

/// The Python memo example (`examples/python-memo`, componentize-py).
pub const PYTHON_MEMO: Polyglot = Polyglot {
    name: "python-memo",
    needs: "python3 with venv (Debian: apt-get install python3-venv) and PyPI",
};

/// The JavaScript memo example (`examples/js-memo`, ComponentizeJS).
pub const JS_MEMO: Polyglot = Polyglot {
    name: "js-memo",
    needs: "node and npm (Debian: apt-get install nodejs npm) and the npm registry",
};

/// Builds `example` through its `build.sh` (which installs its toolchain under `target_dir`
/// when missing) and returns the component's path.
pub fn build_polyglot(example: Polyglot, target_dir: &Path) -> PathBuf {
    let out = target_dir
        .join("guests")
        .join(example.name)
        .join("memo.wasm");
    let script = format!("examples/{}/build.sh", example.name);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join(&script))
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir);
    cargo::run(&mut cmd, &script, example.needs).unwrap_or_else(|err| panic!("{err}"));
    out
}

/// Builds the integration tests of the guest SDK (`crates/guest/tests/*.rs`) for `wasm32-wasip2`
/// with `features` (`cargo test --no-run`, debug, under `target_dir` like [`build`]) and returns
/// the test components' paths, sorted; run each as a command component (`wasi-cache run
/// TEST.wasm`). Each feature set's artifacts have their own names, so a second set costs little.
pub fn build_sdk_tests(features: &[&str], target_dir: &Path) -> Vec<PathBuf> {
    cargo::try_build_sdk_tests(features, target_dir).unwrap_or_else(|err| panic!("{err}"))
}

/// Compiles the SDK's documentation examples for `wasm32-wasip2` (they are `no_run`: compiled,
/// not run), running the merged doctest binary with `runner` (e.g. `wasi-cache run`); returns
/// cargo's output, which names every example compiled.
pub fn check_sdk_doctests(runner: &str, target_dir: &Path) -> String {
    cargo::try_check_sdk_doctests(runner, target_dir).unwrap_or_else(|err| panic!("{err}"))
}
