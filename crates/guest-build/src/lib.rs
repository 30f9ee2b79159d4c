//! Test support shared by the host's and the CLI's tests: builds a guest component of this
//! repository from source for `wasm32-wasip2` and returns the path of its `.wasm`.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository's root (the workspace's folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/guest-build sits two levels below the repository root")
        .to_path_buf()
}

/// A guest crate to build: its manifest (relative to the repository root), its binary's name,
/// and the cargo features to enable.
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// Path of the guest's `Cargo.toml`, relative to the repository root.
    pub manifest: &'a str,
    /// Name of the binary the crate builds (the `.wasm` file's stem).
    pub bin: &'a str,
    /// Cargo features to enable.
    pub features: &'a [&'a str],
}

/// The end-to-end test guest of the host crate, built from the project's own WIT.
pub const GUEST_E2E: Guest<'static> = Guest {
    manifest: "crates/host/tests/guest-e2e/Cargo.toml",
    bin: "wasi-cache-guest-e2e",
    features: &[],
};

/// The end-to-end test guest, its bindings generated from golem-rust's WIT files.
pub const GUEST_E2E_GOLEM: Guest<'static> = Guest {
    features: &["golem-wit"],
    ..GUEST_E2E
};

/// The guest of the host's `guest` bench: `main CASE N` runs one operation `N` times.
pub const GUEST_BENCH: Guest<'static> = Guest {
    manifest: "crates/host/benches/guest-bench/Cargo.toml",
    bin: "wasi-cache-guest-bench",
    features: &[],
};

/// The memoisation example guest (`examples/memo`).
pub const MEMO: Guest<'static> = Guest {
    manifest: "examples/memo/Cargo.toml",
    bin: "memo",
    features: &[],
};

/// Builds `guest` in release mode for `wasm32-wasip2` under `target_dir` (one folder per guest
/// and feature set, so builds never race over one lock) and returns the component's path.
///
/// Uses the `cargo` that runs the tests (`$CARGO`). Panics with a hint when the build fails.
pub fn build(guest: Guest<'_>, target_dir: &Path) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_build_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let flavour = if guest.features.is_empty() {
        guest.bin.to_owned()
    } else {
        format!("{}+{}", guest.bin, guest.features.join("+"))
    };
    let target_dir = target_dir.join("guests").join(flavour);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(repo_root().join(guest.manifest))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if !guest.features.is_empty() {
        cmd.arg("--features").arg(guest.features.join(","));
    }
    let status = cmd
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build {}: {err}", guest.manifest));
    assert!(
        status.success(),
        "building {} failed (is the target installed? `rustup target add wasm32-wasip2`)",
        guest.manifest
    );
    target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", guest.bin))
}
