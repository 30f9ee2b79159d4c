//! WASI 0.3 commands through the `wasi-cache` binary: the host's 0.3 test guest
//! (`crates/host/tests/guest-e2e-p3`, a `wasi:cli/run@0.3.0` command) runs its scenarios, a
//! trap is reported as one, and a 0.2 and a 0.3 command share one Redis: each reads what the
//! other wrote.

mod common;
use common::*;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasi_cache_guest_build as guest_build;
use wasi_cache_redis_server::RedisServer;

fn guest(which: guest_build::Guest<'static>) -> PathBuf {
    guest_build::build(which, tmp())
}

fn p3_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest(guest_build::GUEST_E2E_P3))
}

fn p2_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest(guest_build::GUEST_E2E))
}

fn run(extra: &[&str], wasm: &Path, args: &[&str]) -> Run {
    let mut argv: Vec<&OsStr> = vec![OsStr::new("run")];
    argv.extend(extra.iter().map(OsStr::new));
    argv.push(wasm.as_os_str());
    argv.extend(args.iter().map(OsStr::new));
    wasi_cache(argv)
}

#[test]
fn wasi_03_command_runs_its_scenarios() {
    for args in [&["basic"][..], &["ttl"], &["rendezvous", "k", "20", "v"]] {
        let out = run(&[], p3_wasm(), args);
        assert_eq!(out.code, Some(0), "{args:?}: {out:#?}");
        assert!(out.stdout.ends_with("done\n"), "{args:?}: {out:#?}");
    }
    let out = run(&[], p3_wasm(), &["rendezvous", "k", "20", "v"]);
    assert!(out.stdout.contains("vacant 1 occupied 19"), "{out:#?}");
}

#[test]
fn wasi_03_command_that_traps_is_reported() {
    let out = run(&[], p3_wasm(), &["hold", "k", "trap"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("trapped"), "{out:#?}");
}

/// A 0.2 and a 0.3 command on one Redis: values written by one are read by the other.
#[test]
fn wasi_02_and_03_commands_share_one_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let redis = ["--redis", url.as_str()];
    let written = run(&redis, p2_wasm(), &["wait-and-fill", "x2", "from-p2"]);
    assert_eq!(written.code, Some(0), "{written:#?}");
    let read = run(&redis, p3_wasm(), &["read", "x2"]);
    assert!(read.stdout.contains("value from-p2"), "{read:#?}");
    let written = run(&redis, p3_wasm(), &["wait-and-fill", "x3", "from-p3"]);
    assert!(written.stdout.starts_with("vacant"), "{written:#?}");
    let read = run(&redis, p2_wasm(), &["read", "x3"]);
    assert!(read.stdout.contains("value from-p3"), "{read:#?}");
}

/// A WASI 0.3 guest creates streams without a host call, in wasmtime's own handle tables:
/// `--max-resources` caps them too, and the trap is explained as a 0.2 guest's full resource
/// table is.
#[test]
fn max_resources_caps_wasi_03_streams_as_it_caps_wasi_02_resources() {
    let cap = ["--max-resources", "1000"];
    let p3 = run(&cap, p3_wasm(), &["hold-streams", "2000"]);
    assert_eq!(p3.code, Some(1), "{p3:#?}");
    assert!(!p3.stdout.contains("held"), "{p3:#?}");
    let p2 = run(&cap, p2_wasm(), &["resources", "2000"]);
    assert_eq!(p2.code, Some(1), "{p2:#?}");
    for out in [&p3, &p2] {
        assert!(out.stderr.contains("trapped: "), "{out:#?}");
        assert!(
            out.stderr
                .contains("(the component holds the most resources --max-resources allows, 1000)"),
            "{out:#?}"
        );
    }
    // Within the cap (a stream counts as one resource), the streams are held.
    let within = run(&cap, p3_wasm(), &["hold-streams", "900"]);
    assert_eq!(within.code, Some(0), "{within:#?}");
    assert!(within.stdout.contains("held 900 streams\n"), "{within:#?}");
}
