//! `wasi-cache run --redis` processes running the end-to-end guest's scenarios: starting them,
//! waiting for a waiter, checking a start-up failure, and the cross-process rendezvous that
//! every way of reaching Redis (plain, TLS) must pass.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasi_cache_guest_build as guest_build;

use super::{Ended, Proc, STARTUP, someone_waits};

/// The end-to-end guest component, built once per test binary.
pub fn e2e_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        guest_build::build(
            guest_build::GUEST_E2E,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        )
    })
}

/// Starts `wasi-cache run --redis URL OPTIONS… GUEST SCENARIO…`.
pub fn start(url: &str, options: &[&str], scenario: &[&str]) -> Proc {
    let e2e = e2e_wasm().to_string_lossy();
    let head = ["run", "--redis", url];
    let guest = [&*e2e];
    Proc::spawn(head.iter().chain(options).chain(&guest).chain(scenario))
}

/// Runs one scenario to its end (within a minute) and returns its output.
pub fn run_to_end(url: &str, options: &[&str], scenario: &[&str]) -> Ended {
    start(url, options, scenario).wait(STARTUP)
}

/// Waits until some client of the server at `port` waits on a key ([`someone_waits`]).
pub fn wait_for_a_waiter(port: u16, waiter: &mut Proc) {
    let deadline = Instant::now() + STARTUP;
    while !someone_waits(port) {
        assert!(waiter.running(), "the waiter ended without waiting");
        assert!(Instant::now() < deadline, "the waiter never subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that the run failed before running anything: exit code 2, one `error: ` line.
pub fn assert_setup_error(ended: &Ended, needle: &str) {
    assert_eq!(ended.status.code(), Some(2), "{ended:#?}");
    assert!(ended.stdout.is_empty(), "{ended:#?}");
    assert_eq!(
        ended.stderr.lines().count(),
        1,
        "one line expected: {ended:#?}"
    );
    assert!(ended.stderr.starts_with("error: "), "{ended:#?}");
    assert!(
        ended.stderr.contains(needle),
        "{needle:?} not in {ended:#?}"
    );
}

/// Two processes on the server at `url` (with `options`): a holder and, in another process, a
/// waiter on the same key, which stays pending until the holder fills and then gets its value.
/// `port` is the server's plain port, where the test watches for the waiter.
pub fn rendezvous_across_processes(port: u16, url: &str, options: &[&str]) {
    let with = |more: &[&'static str]| [options, more].concat();
    let mut holder = start(
        url,
        &with(&["--namespace", "shared"]),
        &["hold-and-fill", "k", "from-a"],
    );
    holder.expect_line("holding", STARTUP);

    let mut waiter = start(
        url,
        &with(&["--namespace", "shared", "--stats"]),
        &["wait-and-fill", "k", "from-b"],
    );
    wait_for_a_waiter(port, &mut waiter);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.running(),
        "the waiter must stay pending while the holder holds"
    );

    let filling = Instant::now();
    holder.send_line("fill");
    holder.expect_line("filled", Duration::from_secs(10));
    let holder = holder.wait(Duration::from_secs(10));
    assert!(holder.status.success(), "{holder:#?}");

    let waiter = waiter.wait(Duration::from_secs(10));
    assert!(waiter.status.success(), "{waiter:#?}");
    assert_eq!(waiter.stdout, "occupied from-a\ndone\n", "{waiter:#?}");
    assert!(waiter.at > filling, "the waiter ended before the fill");
    let stats = waiter.stderr.trim_end();
    assert_eq!(waiter.stderr.lines().count(), 1, "{waiter:#?}");
    for field in [
        "wasi-cache stats: ",
        " rendezvous=1 ",
        " round_trips=",
        " reconnects=0",
    ] {
        assert!(stats.contains(field), "{field:?} not in {stats}");
    }
}
