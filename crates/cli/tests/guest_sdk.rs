//! The guest SDK (`crates/guest`) and its examples through the `wasi-cache` binary: the SDK's own
//! test components (`crates/guest/tests/*.rs`, built once per feature set, on both WASI flavours)
//! pass on the embedded engine and on a private Redis; `examples/fanout`, `examples/golem-compat`
//! and `examples/golem3-compat` (WASI 0.3) run with `--stats`; and a vacancy whose compute failed right before its process exited reaches a
//! waiter in another process at once, not after the vacancy timeout.
//!
//! Every child process is killed when its handle drops, and every wait has a deadline.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasi_cache_guest_build as guest_build;
use wasi_cache_redis_server::RedisServer;

/// The SDK's test components: without features, with `json` (typed values as JSON), and on the
/// WASI 0.3 flavour (`p3`: WASI 0.3 commands importing the cache's 0.3 form).
fn sdk_tests() -> &'static [PathBuf] {
    static TESTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    TESTS.get_or_init(|| {
        let mut tests = guest_build::build_sdk_tests(&[], tmp());
        tests.extend(guest_build::build_sdk_tests(&["json"], tmp()));
        tests.extend(guest_build::build_sdk_tests(&["p3"], tmp()));
        tests
    })
}

fn fanout_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::FANOUT, tmp()))
}

fn golem_compat_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::GOLEM_COMPAT, tmp()))
}

fn golem3_compat_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::GOLEM3_COMPAT, tmp()))
}

/// The passed and failed counts of libtest's summary (`test result: ok. N passed; M failed; …`).
fn summary(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with("test result: "))?;
    let count = |what: &str| -> Option<u32> {
        let end = line.find(&format!(" {what}"))?;
        let start = line[..end].rfind(' ')? + 1;
        line[start..end].parse().ok()
    };
    Some((count("passed;")?, count("failed;")?))
}

/// Runs every SDK test component under `wasi-cache run OPTIONS`; each must exit 0 with
/// `N passed; 0 failed`, N > 0. Returns the total of tests run.
fn run_sdk_tests(options: &[&str]) -> u32 {
    let mut total = 0;
    for test in sdk_tests() {
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
        args.extend(options.iter().map(std::ffi::OsStr::new));
        args.extend([test.as_os_str(), "--test-threads=1".as_ref()]);
        let run = wasi_cache(args);
        let name = test.file_name().unwrap().to_string_lossy();
        assert_eq!(run.code, Some(0), "{name}: {run:#?}");
        let (passed, failed) = summary(&run.stdout)
            .unwrap_or_else(|| panic!("{name}: no libtest summary line: {run:#?}"));
        assert!(passed > 0 && failed == 0, "{name}: {run:#?}");
        total += passed;
    }
    total
}

#[test]
fn summary_lines_parse() {
    assert_eq!(
        summary(
            "x\n\ntest result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.98s\n"
        ),
        Some((12, 0))
    );
    assert_eq!(
        summary("test result: FAILED. 3 passed; 1 failed; 0 ignored\n"),
        Some((3, 1))
    );
    assert_eq!(summary("running 0 tests\n"), None);
}

/// The SDK's crate-level example compiles for `wasm32-wasip2` (a `no_run` doc test).
#[test]
fn sdk_doc_example_compiles() {
    let runner = format!("{} run", env!("CARGO_BIN_EXE_wasi-cache"));
    let output = guest_build::check_sdk_doctests(&runner, tmp());
    let (passed, failed) = summary(&output).expect("no doctest summary");
    assert!(passed >= 1 && failed == 0, "{output}");
}

#[test]
fn sdk_tests_pass_on_the_embedded_engine() {
    let total = run_sdk_tests(&[]);
    // Three test files, each built without features, with `json` and with `p3`.
    assert_eq!(sdk_tests().len(), 9, "{:?}", sdk_tests());
    assert!(total >= 4, "{total}");
}

#[test]
fn sdk_tests_pass_on_redis() {
    let server = RedisServer::start();
    let url = format!("{}/0", server.url());
    run_sdk_tests(&["--redis", &url]);
}

#[test]
fn fanout_example_runs_under_the_cli() {
    let run = wasi_cache([Path::new("run"), Path::new("--stats"), fanout_wasm()]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    for line in [
        "hand-off: caller 2 was handed the vacancy and computes",
        "hand-off: caller 1's compute failed: backend unavailable",
        "hand-off: caller 2 got \"computed by caller 2\"",
        "hand-off: caller 3 got \"computed by caller 2\"",
        "typed: Profile { name: \"Ada\", visits: 3, tags: [\"admin\"] } round-tripped \
         (postcard encoding)",
        "done",
    ] {
        assert!(run.stdout.lines().any(|l| l == line), "{line:?}: {run:#?}");
    }
    for prefix in [
        "fan-out: 64 concurrent sets, then 64/64 hits among 64 concurrent gets and 64/128 \
         present among 128 concurrent exists, in ",
        "typed: decode error as expected: cached value of \"not-a-profile\" does not decode",
        "streamed: 16777216 bytes written and read back twice in ",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(prefix)),
            "{prefix:?}: {run:#?}"
        );
    }
    let stats = run.stderr.trim_end();
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert!(stats.starts_with("wasi-cache stats: "), "{run:#?}");
    for field in [" rendezvous=2 ", " handoffs=1 ", " timeouts=0 "] {
        assert!(stats.contains(field), "{field:?} not in {stats}");
    }
}

#[test]
fn golem_compat_example_runs_under_the_cli() {
    let run = wasi_cache([Path::new("run"), Path::new("--stats"), golem_compat_wasm()]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout, "golem-compat: \"computed once\" (golem-rust and the SDK in one component)\n",
        "{run:#?}"
    );
    let stats = run.stderr.trim_end();
    for field in ["wasi-cache stats: hits=1 ", " inserts=1 ", " entries=1 "] {
        assert!(stats.contains(field), "{field:?} not in {stats}");
    }
}

/// The WASI 0.3 example on golem-rust 3.0.2 and the SDK: eight tasks of one instance memoise one
/// key, one computes, and golem-rust's own bindings read the value back.
#[test]
fn golem3_compat_example_runs_under_the_cli() {
    let run = wasi_cache([Path::new("run"), Path::new("--stats"), golem3_compat_wasm()]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout,
        "golem3-compat: 1 of 8 tasks computed, 8 have the value, golem-rust's bindings read \
         Some(\"computed once\")\n",
        "{run:#?}"
    );
    let stats = run.stderr.trim_end();
    for field in [" rendezvous=7 ", " inserts=1 ", " entries=1 "] {
        assert!(stats.contains(field), "{field:?} not in {stats}");
    }
}

/// Starts `wasi-cache run --redis URL --vacancy-timeout 30s fanout.wasm ARGS…`.
fn fanout(url: &str, args: &[&str]) -> Proc {
    let wasm = fanout_wasm().to_string_lossy();
    let head = ["run", "--redis", url, "--vacancy-timeout", "30s", &*wasm];
    Proc::spawn(head.iter().chain(args))
}

/// The take-over instance's lines once it was handed the vacancy of `key`.
fn assert_took_over(ended: &Ended, key: &str) {
    assert_eq!(ended.status.code(), Some(0), "{ended:#?}");
    assert!(ended.stderr.is_empty(), "{ended:#?}");
    let handed = format!("take-over: handed the vacancy of {key:?} after ");
    assert!(
        ended.lines().len() == 2 && ended.lines()[0].starts_with(&handed),
        "{ended:#?}"
    );
    assert_eq!(
        ended.lines()[1],
        format!("take-over: {key:?} = \"filled by the take-over instance\""),
        "{ended:#?}"
    );
}

/// The failed compute's instance exits right after its compute fails: the release of its
/// vacancy still reaches Redis, and wakes the instance waiting in another process at once
/// (with a 30 s vacancy timeout, a lost release would keep it waiting 30 s).
#[test]
fn a_failed_compute_hands_the_vacancy_to_another_process_at_once() {
    let server = RedisServer::start();
    let url = server.url();
    let mut failing = fanout(&url, &["fail-after", "3000", "k"]);
    failing.expect_line(
        "fail-after: holding the vacancy of \"k\" for 3000 ms",
        STARTUP,
    );
    let mut taking_over = fanout(&url, &["take-over", "k"]);
    while !someone_waits(server.port()) {
        assert!(taking_over.running(), "the take-over instance did not wait");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        failing.running(),
        "the compute failed before the other instance waited: the test means nothing"
    );
    let failed = failing.wait(Duration::from_secs(10));
    assert_eq!(failed.status.code(), Some(0), "{failed:#?}");
    assert_eq!(
        failed.lines()[1],
        "fail-after: compute failed on purpose; the vacancy goes to a waiter",
        "{failed:#?}"
    );
    let took_over = taking_over.wait(Duration::from_secs(10));
    assert_took_over(&took_over, "k");
    let after = took_over.at - failed.at;
    assert!(
        after < Duration::from_secs(5),
        "the waiter got the vacancy {after:?} after the holder exited"
    );
}

/// The same with nobody waiting yet: the release reaches Redis before the process ends, so
/// the next process finds the key free.
#[test]
fn a_failed_compute_releases_its_vacancy_before_the_process_ends() {
    let server = RedisServer::start();
    let url = server.url();
    let failed = fanout(&url, &["fail-after", "0", "k"]).wait(STARTUP);
    assert_eq!(failed.status.code(), Some(0), "{failed:#?}");
    assert_eq!(failed.lines().len(), 2, "{failed:#?}");
    let started = Instant::now();
    let took_over = fanout(&url, &["take-over", "k"]).wait(Duration::from_secs(20));
    assert_took_over(&took_over, "k");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the vacancy outlived its holder: {:?}",
        started.elapsed()
    );
}
