//! Test support shared by the host's and the CLI's tests: builds a guest component of this
//! repository from source for `wasm32-wasip2` and returns the path of its `.wasm`.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The repository's root (the workspace's folder).
///
/// Read from the `CARGO_MANIFEST_DIR` cargo gives the test or bench at run time (its package is
/// `crates/NAME` too): cargo reuses this crate's build for another clone sharing the target dir
/// without rebuilding it, so the compile-time value may name that clone. The compile-time value
/// serves when the variable is missing or names no such repository.
pub fn repo_root() -> PathBuf {
    let root_of = |dir: &Path| dir.ancestors().nth(2).map(Path::to_path_buf);
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| root_of(Path::new(&dir)))
        .filter(|root| root.join("crates/guest-build/Cargo.toml").is_file())
        .or_else(|| root_of(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .expect("crates/guest-build sits two levels below the repository root")
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

/// The WASI 0.3 end-to-end test guest of the host crate (a `wasi:cli/run@0.3.0` command built
/// as a cdylib, so its `.wasm` is named after the library).
pub const GUEST_E2E_P3: Guest<'static> = Guest {
    manifest: "crates/host/tests/guest-e2e-p3/Cargo.toml",
    bin: "wasi_cache_guest_e2e_p3",
    features: &[],
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

/// The SDK example `examples/fanout`: concurrent lookups, a `get_or_set` hand-off, typed and
/// streamed values; `fail-after MS KEY` and `take-over KEY` hand a vacancy between instances.
pub const FANOUT: Guest<'static> = Guest {
    manifest: "examples/fanout/Cargo.toml",
    bin: "fanout",
    features: &[],
};

/// The example depending on both golem-rust and the SDK (`examples/golem-compat`).
pub const GOLEM_COMPAT: Guest<'static> = Guest {
    manifest: "examples/golem-compat/Cargo.toml",
    bin: "golem-compat",
    features: &[],
};

/// The WASI 0.3 example on golem-rust 3.0.2 and the SDK's `p3` flavour
/// (`examples/golem3-compat`, a cdylib exporting `wasi:cli/run@0.3.0`).
pub const GOLEM3_COMPAT: Guest<'static> = Guest {
    manifest: "examples/golem3-compat/Cargo.toml",
    bin: "golem3_compat",
    features: &[],
};

/// The caching reverse proxy example (`examples/http-proxy`), a `wasi:http/proxy` component
/// for `wasi-cache serve`.
pub const HTTP_PROXY: Guest<'static> = Guest {
    manifest: "examples/http-proxy/Cargo.toml",
    bin: "http-proxy",
    features: &[],
};

/// [`HTTP_PROXY`] with the routes the CLI's tests use: `/_test/trap` traps, `/_test/spin`
/// computes until stopped.
pub const HTTP_PROXY_TEST: Guest<'static> = Guest {
    features: &["test-routes"],
    ..HTTP_PROXY
};

/// The `serve` bench's baseline (`crates/cli/benches/constant-1k`): a `wasi:http/proxy` component
/// that answers every request with the same 1 KiB body.
pub const CONSTANT_1K: Guest<'static> = Guest {
    manifest: "crates/cli/benches/constant-1k/Cargo.toml",
    bin: "constant-1k",
    features: &[],
};

/// The test guest of `wasi-cache serve`'s WASI 0.3 path (`crates/cli/tests/serve-p3-guest`): a
/// `wasi:http/service@0.3.0` component (a cdylib, so its `.wasm` is named after the library)
/// using the cache in its WASI 0.3 form through the SDK.
pub const SERVE_P3: Guest<'static> = Guest {
    manifest: "crates/cli/tests/serve-p3-guest/Cargo.toml",
    bin: "serve_p3_guest",
    features: &[],
};

/// Path of the guest SDK's manifest (`crates/guest`), relative to the repository root.
pub const SDK_MANIFEST: &str = "crates/guest/Cargo.toml";

/// Builds `guest` in release mode for `wasm32-wasip2` under `target_dir` (one folder per guest
/// and feature set, so builds never race over one lock) and returns the component's path.
///
/// Uses the `cargo` that runs the tests (`$CARGO`). Panics with a hint when the build fails.
pub fn build(guest: Guest<'_>, target_dir: &Path) -> PathBuf {
    let target_dir = target_dir
        .join("guests")
        .join(flavour(guest.bin, guest.features));
    let mut cmd = cargo(
        &["build", "--release"],
        guest.manifest,
        guest.features,
        &target_dir,
    );
    run(&mut cmd, guest.manifest);
    target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", guest.bin))
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
    run_with_hint(&mut cmd, &script, example.needs);
    out
}

/// Builds the integration tests of the guest SDK (`crates/guest/tests/*.rs`) for `wasm32-wasip2`
/// with `features` (`cargo test --no-run`, debug, under `target_dir` like [`build`]) and returns
/// the test components' paths, sorted; run each as a command component (`wasi-cache run
/// TEST.wasm`). Every feature set shares one build folder (only the SDK differs between them;
/// each set's artifacts have their own names), so a second set costs little.
pub fn build_sdk_tests(features: &[&str], target_dir: &Path) -> Vec<PathBuf> {
    let target_dir = target_dir.join("guests").join("sdk-tests");
    let mut cmd = cargo(
        &["test", "--no-run", "--message-format=json"],
        SDK_MANIFEST,
        features,
        &target_dir,
    );
    let stdout = run(&mut cmd, SDK_MANIFEST);
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
    assert!(
        !tests.is_empty(),
        "`cargo test --no-run` of {SDK_MANIFEST} reported no test executables"
    );
    tests
}

/// Compiles the SDK's documentation examples for `wasm32-wasip2` (they are `no_run`: compiled,
/// not run), running the merged doctest binary with `runner` (e.g. `wasi-cache run`); returns
/// cargo's output, which names every example compiled.
pub fn check_sdk_doctests(runner: &str, target_dir: &Path) -> String {
    let target_dir = target_dir.join("guests").join("sdk-tests");
    let mut cmd = cargo(&["test", "--doc"], SDK_MANIFEST, &[], &target_dir);
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUNNER", runner);
    run(&mut cmd, SDK_MANIFEST)
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
/// with `features`, into `target_dir`, with the host build's target dir and flags removed. Uses
/// the `cargo` that runs the tests (`$CARGO`).
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
        .env_remove("RUSTFLAGS");
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd
}

/// Runs `cmd` (one build at a time in this process, so builds never race over a lock) and
/// returns its stdout; its stderr passes through. Panics with a hint when the build fails.
fn run(cmd: &mut Command, manifest: &str) -> String {
    run_with_hint(
        cmd,
        manifest,
        "is the target installed? `rustup target add wasm32-wasip2`",
    )
}

/// [`run`], with `hint` in the panic message of a failed build.
fn run_with_hint(cmd: &mut Command, manifest: &str, hint: &str) -> String {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_build_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("cannot run the build of {manifest}: {err}"));
    assert!(
        output.status.success(),
        "building {manifest} failed ({hint})"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
