//! Prebuilds the guest components of the tests that enabled this crate's features
//! (`host-tests`, `cli-tests`) while cargo compiles the rest of the workspace, into the folder
//! the tests build them in (`CARGO_TARGET_TMPDIR`): the tests then find them up to date. A
//! failed prebuild is only a warning: the test that needs the guest builds it again and fails
//! with the build's own message. `WASI_CACHE_PREBUILD_GUESTS=0` turns the prebuild off.

// The script uses a part of each: the library's doctest check is not prebuilt.
#[path = "src/cargo.rs"]
#[allow(dead_code)]
mod cargo;
#[path = "src/guests.rs"]
#[allow(dead_code)]
mod guests;

use std::path::{Path, PathBuf};

use cargo::Jobs;
use guests::{CLI_TESTS, Guest, HOST_TESTS, SDK_MANIFEST, SDK_TEST_FEATURES, SHARED};

fn main() {
    println!("cargo:rerun-if-env-changed=WASI_CACHE_PREBUILD_GUESTS");
    // Set by `cargo clippy`, which only checks: the guests would hold up its check of the tests
    // while one core builds golem-rust and the other idles. Watching it runs the script again
    // for the build after it.
    println!("cargo:rerun-if-env-changed=CLIPPY_ARGS");
    if std::env::var_os("WASI_CACHE_PREBUILD_GUESTS").is_some_and(|value| value == "0")
        || std::env::var_os("CLIPPY_ARGS").is_some()
    {
        // One test binary run from nothing then builds only the guests it runs.
        return;
    }
    let root = cargo::repo_root();
    let host = std::env::var_os("CARGO_FEATURE_HOST_TESTS").is_some();
    let cli = std::env::var_os("CARGO_FEATURE_CLI_TESTS").is_some();
    let mut guests: Vec<Guest<'static>> = Vec::new();
    for guest in cli
        .then_some(CLI_TESTS)
        .into_iter()
        .chain(host.then_some(HOST_TESTS))
        .flatten()
    {
        let same =
            |other: &Guest| other.manifest == guest.manifest && other.features == guest.features;
        if !guests.iter().any(same) {
            guests.push(*guest);
        }
    }
    // What the guests are built from; their `target` folders (a build by hand) are not.
    let crates = guests
        .iter()
        .map(|guest| guest.manifest)
        .chain([SDK_MANIFEST]);
    for manifest in crates {
        watch(&root, manifest.trim_end_matches("Cargo.toml"));
    }
    watch(&root, "wit");
    let Some(dir) = tmp_dir() else {
        println!("cargo:warning=no target dir found above OUT_DIR: guests are built by the tests");
        return;
    };
    // A guest with a target dir of its own (golem3-compat, the build's critical path) builds on a
    // thread of its own, with a job slot always its own; the rest one after the other in the
    // shared target dir, whose lock would serialise them anyway.
    let (beside, shared): (Vec<_>, Vec<_>) =
        guests.into_iter().partition(|guest| guest.target != SHARED);
    let sdk_features = if cli { &SDK_TEST_FEATURES[..] } else { &[] };
    let dir = dir.as_path();
    let failed: Vec<String> = std::thread::scope(|scope| {
        let beside: Vec<_> = beside
            .into_iter()
            .map(|guest| scope.spawn(move || cargo::try_build(guest, dir, Jobs::OwnOne).err()))
            .collect();
        let shared = shared
            .into_iter()
            .filter_map(|guest| cargo::try_build(guest, dir, Jobs::Shared).err());
        let sdk = sdk_features
            .iter()
            .filter_map(|features| cargo::try_build_sdk_tests(features, dir).err());
        let mut failed: Vec<String> = shared.chain(sdk).collect();
        failed.extend(
            beside
                .into_iter()
                .filter_map(|thread| thread.join().ok().flatten()),
        );
        failed
    });
    for err in failed {
        println!("cargo:warning=prebuilding a test guest: {err}; the tests will try again");
    }
}

/// Asks cargo to run this script again when anything in the folder `dir` of the repository at
/// `root` changes, but its `target`. The paths are relative to this package, so that a clone
/// elsewhere sharing the target dir runs the script again for its own files.
fn watch(root: &Path, dir: &str) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() != "target" {
            let path = Path::new("../..").join(dir).join(entry.file_name());
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The `CARGO_TARGET_TMPDIR` of the tests (`TARGET_DIR/tmp`), from this script's `OUT_DIR`
/// (`TARGET_DIR[/TRIPLE]/PROFILE/build/PACKAGE-HASH/out`).
fn tmp_dir() -> Option<PathBuf> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let mut target_dir = out_dir.ancestors().nth(4)?;
    if std::env::var_os("TARGET").is_some_and(|triple| target_dir.file_name() == Some(&triple)) {
        target_dir = target_dir.parent()?;
    }
    Some(target_dir.join("tmp"))
}
