//! The SDK's revalidating lookups across hosts: two `wasi-cache run` processes on one private
//! Redis, each with 100 concurrent callers on a stale key (the `two_hosts_*` parts of
//! `crates/guest/tests/revalidate.rs`, on both WASI flavours): every caller answers the stale
//! value, one compute runs in all, and then every caller answers the new value. (The SDK's
//! single-process revalidation tests run with the others, in `tests/guest_sdk.rs`.)

mod common;
use common::*;

use std::path::PathBuf;
use std::time::Duration;

use wasi_cache_guest_build as guest_build;
use wasi_cache_redis_server::RedisServer;

/// The SDK's `revalidate` test component of each feature set (none, `json`, `p3`).
fn revalidate_tests() -> Vec<PathBuf> {
    guest_build::SDK_TEST_FEATURES
        .iter()
        .flat_map(|features| guest_build::build_sdk_tests(features, tmp()))
        .filter(|test| {
            test.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("revalidate"))
        })
        .collect()
}

/// The number after `what: ` on a line of `stdout` (the first one follows libtest's `test NAME
/// ... ` on its line).
fn count(stdout: &str, what: &str) -> u32 {
    let prefix = format!("{what}: ");
    stdout
        .lines()
        .find_map(|line| line.split(&prefix).nth(1)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout:?}"))
}

#[test]
fn two_hosts_serve_a_stale_value_while_one_refreshes_it() {
    let tests = revalidate_tests();
    assert_eq!(tests.len(), 3, "{tests:?}");
    let server = RedisServer::start();
    let url = format!("{}/0", server.url());
    for (i, test) in tests.iter().enumerate() {
        let name = test.file_name().unwrap().to_string_lossy();
        let key = format!("SWR_KEY=two-hosts:{i}");
        let part = |part: &str, env: &[&str]| {
            let mut args = vec!["run", "--redis", &url, "--env", &key];
            for var in env {
                args.extend(["--env", var]);
            }
            let test = test.to_str().unwrap();
            args.extend([test, "--ignored", "--exact", part, "--test-threads=1"]);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let seeded = wasi_cache(part("two_hosts_seed", &[]));
        assert_eq!(seeded.code, Some(0), "{name}: {seeded:#?}");
        // Past the seeded value's one-second freshness (a TTL, not a measurement).
        std::thread::sleep(Duration::from_millis(1200));
        let a = Proc::spawn(part("two_hosts_burst", &["SWR_HOST=a", "SWR_OTHER=b"]));
        let b = Proc::spawn(part("two_hosts_burst", &["SWR_HOST=b", "SWR_OTHER=a"]));
        let (a, b) = (a.wait(STARTUP * 2), b.wait(STARTUP * 2));
        for ended in [&a, &b] {
            assert!(ended.status.success(), "{name}: {ended:#?}");
        }
        let both = |what| count(&a.stdout, what) + count(&b.stdout, what);
        assert_eq!(both("stale"), 200, "{name}: {a:#?} {b:#?}");
        assert_eq!(both("computes"), 1, "{name}: {a:#?} {b:#?}");
        assert_eq!(both("fresh"), 200, "{name}: {a:#?} {b:#?}");
    }
}
