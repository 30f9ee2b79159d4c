//! How a guest is built: one `cargo` for `wasm32-wasip2` into the guest's target dir (one shared
//! by nearly every guest: their dependencies, wit-bindgen's macros above all, are built once for
//! all of them), one build at a time per target dir across threads and processes (a file lock),
//! and each component copied to a folder of its own (a crate built with other features writes
//! the same file name). Shared by the library and its build script, which prebuilds the tests'
//! guests while cargo compiles the rest of the workspace.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::guests::{Guest, SDK_MANIFEST, SHARED};

/// The hint of a failed Rust guest build.
const TARGET_HINT: &str = "is the target installed? `rustup target add wasm32-wasip2`";

/// The repository's root (the workspace's folder).
///
/// Read from the `CARGO_MANIFEST_DIR` cargo gives the test, bench or build script at run time
/// (its package is `crates/NAME` too): cargo reuses this crate's build for another clone sharing
/// the target dir without rebuilding it, so the compile-time value may name that clone. The
/// compile-time value serves when the variable is missing or names no such repository.
pub fn repo_root() -> PathBuf {
    let root_of = |dir: &Path| dir.ancestors().nth(2).map(Path::to_path_buf);
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| root_of(Path::new(&dir)))
        .filter(|root| root.join("crates/guest-build/Cargo.toml").is_file())
        .or_else(|| root_of(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .expect("crates/guest-build sits two levels below the repository root")
}

/// The folders below `dir` guests are built in.
fn guests_dir(dir: &Path) -> PathBuf {
    dir.join("guests")
}

/// The cargo target dir `target` (a [`Guest::target`]) of `dir`.
fn target_dir(dir: &Path, target: &str) -> PathBuf {
    guests_dir(dir).join(target)
}

/// Builds `guest` in release mode for `wasm32-wasip2` and returns the path of its component,
/// `DIR/guests/FLAVOUR/BIN.wasm` (one folder per guest and feature set).
pub fn try_build(guest: Guest<'_>, dir: &Path, jobs: Jobs) -> Result<PathBuf, String> {
    let _one_build_at_a_time = lock(dir, guest.target)?;
    let target_dir = target_dir(dir, guest.target);
    let file = format!("{}.wasm", guest.bin);
    let mut cmd = cargo(
        &["build", "--release"],
        guest.manifest,
        guest.features,
        &target_dir,
    );
    if jobs == Jobs::OwnOne {
        cmd.arg("--jobs=1")
            .env_remove("CARGO_MAKEFLAGS")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS");
    }
    run(&mut cmd, guest.manifest, TARGET_HINT)?;
    let built = target_dir.join("wasm32-wasip2/release").join(&file);
    let folder = guests_dir(dir).join(flavour(guest.bin, guest.features));
    let out = folder.join(&file);
    // Through a rename, so that a test reading the component never sees half a file.
    let partial = folder.join(format!("{file}.partial"));
    fs::create_dir_all(&folder)
        .and_then(|()| fs::copy(&built, &partial))
        .and_then(|_| fs::rename(&partial, &out))
        .map_err(|err| {
            format!(
                "cannot copy {} to {}: {err}",
                built.display(),
                out.display()
            )
        })?;
    Ok(out)
}

/// The job slots a guest's build takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jobs {
    /// cargo's own: a calling build script's jobserver when there is one, else one per core.
    Shared,
    /// Always one job, outside the calling build's slots: for a guest on the critical path of
    /// the build (golem-rust, ~10 minutes of one core, waited for by the tests' compilation),
    /// which would otherwise queue for slots behind the workspace's units.
    OwnOne,
}

/// Builds the SDK's integration tests with `features` (`cargo test --no-run`, debug) and returns
/// the test components' paths, sorted.
pub fn try_build_sdk_tests(features: &[&str], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let _one_build_at_a_time = lock(dir, SHARED)?;
    let mut cmd = cargo(
        &["test", "--no-run", "--message-format=json"],
        SDK_MANIFEST,
        features,
        &target_dir(dir, SHARED),
    );
    let stdout = run(&mut cmd, SDK_MANIFEST, TARGET_HINT)?;
    // One JSON object per line; the integration tests' artifacts are `"kind":["test"]` with an
    // `"executable"` (the library's own unit-test binary is `"kind":["lib"]`).
    let mut tests: Vec<PathBuf> = stdout
        .lines()
        .filter(|line| {
            line.starts_with(r#"{"reason":"compiler-artifact""#)
                && line.contains(r#""kind":["test"]"#)
        })
        .filter_map(|line| {
            let (_, rest) = line.split_once(r#""executable":""#)?;
            let (path, _) = rest.split_once('"')?;
            Some(PathBuf::from(path))
        })
        .collect();
    tests.sort();
    if tests.is_empty() {
        return Err(format!(
            "`cargo test --no-run` of {SDK_MANIFEST} reported no test executables"
        ));
    }
    Ok(tests)
}

/// Compiles the SDK's documentation examples, running the merged doctest binary with `runner`;
/// returns cargo's output.
pub fn try_check_sdk_doctests(runner: &str, dir: &Path) -> Result<String, String> {
    let _one_build_at_a_time = lock(dir, SHARED)?;
    let mut cmd = cargo(
        &["test", "--doc"],
        SDK_MANIFEST,
        &[],
        &target_dir(dir, SHARED),
    );
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUNNER", runner);
    run(&mut cmd, SDK_MANIFEST, TARGET_HINT)
}

/// Takes the lock of the target dir `target` of `dir`: held by one build at a time, whichever
/// thread or process (a test binary, the build script) runs it; released when the file is
/// dropped.
fn lock(dir: &Path, target: &str) -> Result<File, String> {
    let guests = guests_dir(dir);
    let path = guests.join(format!("{target}.lock"));
    fs::create_dir_all(&guests)
        .and_then(|()| File::create(&path))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|err| format!("cannot lock {}: {err}", path.display()))
}

/// The build folder's name of a crate built with `features`.
fn flavour(name: &str, features: &[&str]) -> String {
    if features.is_empty() {
        name.to_owned()
    } else {
        format!("{name}+{}", features.join("+"))
    }
}

/// `cargo ARGS --quiet --target wasm32-wasip2` for `manifest` (relative to the repository root)
/// with `features`, into `target_dir`, without what the calling build (a test, a bench, a build
/// script, clippy) set for its own: target dir, flags, compiler wrapper. Uses the `cargo` that
/// runs the tests (`$CARGO`); a build script's jobserver (`CARGO_MAKEFLAGS`) is kept, so the
/// guests share the calling build's job slots.
fn cargo(args: &[&str], manifest: &str, features: &[&str], target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args)
        .args(["--quiet", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(repo_root().join(manifest))
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd
}

/// Runs `cmd` and returns its stdout; its stderr passes through. A failure names `what` and
/// `hint`.
pub fn run(cmd: &mut Command, what: &str, hint: &str) -> Result<String, String> {
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("cannot run the build of {what}: {err}"))?;
    if !output.status.success() {
        return Err(format!("building {what} failed ({hint})"));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
