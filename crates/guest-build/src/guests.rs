//! The repository's guest components: where each one's crate is, what its `.wasm` is called and
//! with which features it is built. Shared by the library and its build script.

/// A guest crate to build: its manifest (relative to the repository root), its binary's name,
/// the cargo features to enable and the target dir it is built in.
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// Path of the guest's `Cargo.toml`, relative to the repository root.
    pub manifest: &'a str,
    /// Name of the binary the crate builds (the `.wasm` file's stem).
    pub bin: &'a str,
    /// Cargo features to enable.
    pub features: &'a [&'a str],
    /// The target dir (a folder of `DIR/guests`) it is built in: [`SHARED`] but for a guest
    /// built beside the others.
    pub target: &'a str,
}

/// The target dir of every guest but those built beside the others, and of the SDK's tests:
/// their dependencies (wit-bindgen's macros above all) are built once for all of them.
pub const SHARED: &str = "shared";

/// The end-to-end test guest of the host crate, built from the project's own WIT.
pub const GUEST_E2E: Guest<'static> = Guest {
    manifest: "crates/host/tests/guest-e2e/Cargo.toml",
    bin: "wasi-cache-guest-e2e",
    features: &[],
    target: SHARED,
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
    target: SHARED,
};

/// The guest of the host's `guest` bench: `main CASE N` runs one operation `N` times.
pub const GUEST_BENCH: Guest<'static> = Guest {
    manifest: "crates/host/benches/guest-bench/Cargo.toml",
    bin: "wasi-cache-guest-bench",
    features: &[],
    target: SHARED,
};

/// The memoisation example guest (`examples/memo`).
pub const MEMO: Guest<'static> = Guest {
    manifest: "examples/memo/Cargo.toml",
    bin: "memo",
    features: &[],
    target: SHARED,
};

/// The SDK example `examples/fanout`: concurrent lookups, a `get_or_set` hand-off, typed and
/// streamed values; `fail-after MS KEY` and `take-over KEY` hand a vacancy between instances.
pub const FANOUT: Guest<'static> = Guest {
    manifest: "examples/fanout/Cargo.toml",
    bin: "fanout",
    features: &[],
    target: SHARED,
};

/// The example depending on both golem-rust and the SDK (`examples/golem-compat`).
pub const GOLEM_COMPAT: Guest<'static> = Guest {
    manifest: "examples/golem-compat/Cargo.toml",
    bin: "golem-compat",
    features: &[],
    target: SHARED,
};

/// The WASI 0.3 example on golem-rust 3.0.2 and the SDK's `p3` flavour
/// (`examples/golem3-compat`, a cdylib exporting `wasi:cli/run@0.3.0`).
///
/// Built in a target dir of its own, so that its golem-rust (the longest unit of all, about 10
/// CPU minutes on one core) builds beside the other guests rather than before them.
pub const GOLEM3_COMPAT: Guest<'static> = Guest {
    manifest: "examples/golem3-compat/Cargo.toml",
    bin: "golem3_compat",
    features: &[],
    target: "golem3-compat",
};

/// The caching reverse proxy example (`examples/http-proxy`), a `wasi:http/proxy` component
/// for `wasi-cache serve`.
pub const HTTP_PROXY: Guest<'static> = Guest {
    manifest: "examples/http-proxy/Cargo.toml",
    bin: "http-proxy",
    features: &[],
    target: SHARED,
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
    target: SHARED,
};

/// The test guest of `wasi-cache serve`'s WASI 0.3 path (`crates/cli/tests/serve-p3-guest`): a
/// `wasi:http/service@0.3.0` component (a cdylib, so its `.wasm` is named after the library)
/// using the cache in its WASI 0.3 form through the SDK.
pub const SERVE_P3: Guest<'static> = Guest {
    manifest: "crates/cli/tests/serve-p3-guest/Cargo.toml",
    bin: "serve_p3_guest",
    features: &[],
    target: SHARED,
};

/// Path of the guest SDK's manifest (`crates/guest`), relative to the repository root.
pub const SDK_MANIFEST: &str = "crates/guest/Cargo.toml";

/// The feature sets the SDK's own test components are built with (see `build_sdk_tests`):
/// none, `json` (typed values as JSON) and `p3` (the WASI 0.3 flavour).
pub const SDK_TEST_FEATURES: [&[&str]; 3] = [&[], &["json"], &["p3"]];

/// The guests the host crate's tests run (its `host-tests` feature prebuilds them).
pub const HOST_TESTS: &[Guest<'static>] = &[GUEST_E2E, GUEST_E2E_GOLEM, GUEST_E2E_P3, FANOUT];

/// The guests the CLI's tests run (its `cli-tests` feature prebuilds them, with the SDK's test
/// components).
pub const CLI_TESTS: &[Guest<'static>] = &[
    GOLEM3_COMPAT,
    GUEST_E2E,
    GUEST_E2E_P3,
    MEMO,
    FANOUT,
    GOLEM_COMPAT,
    HTTP_PROXY_TEST,
    SERVE_P3,
];
