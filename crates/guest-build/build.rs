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

use guests::{CLI_TESTS, Guest, HOST_TESTS, SDK_MANIFEST, SDK_TARGET, SDK_TEST_FEATURES, SHARED};

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
    // One thread per target dir: golem3-compat's builds beside the rest, each after the other
    // within a target dir (its lock would serialise them anyway).
    let mut jobs: Vec<(&str, Vec<Job>)> = Vec::new();
    let sdk_features = if cli { &SDK_TEST_FEATURES[..] } else { &[] };
    let all = (guests
        .into_iter()
        .map(|guest| (guest.target, Job::Guest(guest))))
    .chain(
        sdk_features
            .iter()
            .map(|features| (SDK_TARGET, Job::SdkTests(features))),
    );
    for (target, job) in all {
        match jobs.iter_mut().find(|(other, _)| *other == target) {
            Some((_, list)) => list.push(job),
            None => jobs.push((target, vec![job])),
        }
    }
    let failed: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = jobs
            .into_iter()
            .map(|(_, list)| {
                scope.spawn(|| {
                    list.into_iter()
                        .filter_map(|job| job.run(&dir))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap_or_default())
            .collect()
    });
    for err in failed {
        println!("cargo:warning=prebuilding a test guest: {err}; the tests will try again");
    }
}

/// One build of the prebuild.
enum Job {
    /// A guest component.
    Guest(Guest<'static>),
    /// The SDK's test components with these features.
    SdkTests(&'static [&'static str]),
}

impl Job {
    /// Builds it into `dir`; the error, if it failed.
    fn run(self, dir: &Path) -> Option<String> {
        match self {
            // A guest built beside the others (golem3-compat) is the build's critical path.
            Job::Guest(guest) if guest.target != SHARED => {
                cargo::try_build(guest, dir, cargo::Jobs::OwnOne).err()
            }
            Job::Guest(guest) => cargo::try_build(guest, dir, cargo::Jobs::Shared).err(),
            Job::SdkTests(features) => cargo::try_build_sdk_tests(features, dir).err(),
        }
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
