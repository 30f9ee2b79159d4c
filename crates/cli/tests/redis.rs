//! `wasi-cache run --redis`: separate CLI processes sharing one private `redis-server` — a
//! waiter in one process gets the value another process's holder fills, a `kill -9`ed holder's
//! vacancy passes to a waiter within the vacancy timeout, namespaces stay apart across
//! processes, and an unreachable server is one `error: …` line with exit code 2.
//!
//! Every child process is killed when its handle drops, and every wait has a deadline, so a bug
//! fails a test instead of hanging it.

mod common;
use common::*;

use std::time::{Duration, Instant};

use common::redis_runs::*;
use wasi_cache_redis_server::{RedisServer, free_port};

#[test]
fn a_waiter_in_another_process_gets_the_holders_value() {
    let server = RedisServer::start();
    rendezvous_across_processes(server.port(), &format!("{}/0", server.url()), &[]);
}

#[test]
fn databases_stay_apart_across_processes() {
    // Pub/sub channels are server-wide: a fill in db 0 must not wake a waiter in db 1 on the
    // same namespace and key. A long vacancy timeout: nothing passes on by a lock expiring.
    let server = RedisServer::start();
    let url = |db: u32| format!("{}/{db}", server.url());
    let options = ["--namespace", "shared", "--vacancy-timeout", "60s"];
    let mut holder1 = start(&url(1), &options, &["hold-and-fill", "k", "db1-value"]);
    holder1.expect_line("holding", STARTUP);
    // The same namespace and key in db 0 are another cache: a vacancy of their own.
    let mut holder0 = start(&url(0), &options, &["hold-and-fill", "k", "db0-value"]);
    holder0.expect_line("holding", STARTUP);
    let mut waiter = start(&url(1), &options, &["wait-and-fill", "k", "from-waiter"]);
    wait_for_a_waiter(server.port(), &mut waiter);

    holder0.send_line("fill");
    holder0.expect_line("filled", Duration::from_secs(10));
    let holder0 = holder0.wait(Duration::from_secs(10));
    assert!(holder0.status.success(), "{holder0:#?}");
    // Time for a wrongly shared channel to deliver db 0's fill.
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiter.running(), "the db 1 waiter woke on db 0's fill");

    holder1.send_line("fill");
    holder1.expect_line("filled", Duration::from_secs(10));
    let holder1 = holder1.wait(Duration::from_secs(10));
    assert!(holder1.status.success(), "{holder1:#?}");
    let waiter = waiter.wait(Duration::from_secs(10));
    assert!(waiter.status.success(), "{waiter:#?}");
    assert_eq!(waiter.stdout, "occupied db1-value\ndone\n", "{waiter:#?}");
    for (db, want) in [(0, "db0-value"), (1, "db1-value")] {
        let reader = run_to_end(&url(db), &options, &["read", "k"]);
        assert_eq!(
            reader.stdout,
            format!("value {want}\ndone\n"),
            "{reader:#?}"
        );
    }
}

#[test]
fn a_killed_holders_vacancy_passes_to_a_waiter_within_the_vacancy_timeout() {
    const VACANCY: Duration = Duration::from_secs(2);
    let server = RedisServer::start();
    let url = server.url();
    let options = ["--vacancy-timeout", "2s"];
    let mut holder = start(&url, &options, &["hold-and-fill", "k", "from-a"]);
    holder.expect_line("holding", STARTUP);
    let claimed = Instant::now();

    let mut waiter = start(&url, &options, &["wait-and-fill", "k", "from-b"]);
    wait_for_a_waiter(server.port(), &mut waiter);
    assert!(
        claimed.elapsed() < VACANCY,
        "the waiter took too long to start for this test to mean anything"
    );
    let killed = Instant::now();
    drop(holder); // SIGKILL: the holder never releases its lock.

    waiter.expect_line("vacant", VACANCY + Duration::from_secs(5));
    let waited = killed.elapsed();
    assert!(
        waited <= VACANCY + Duration::from_secs(1),
        "the waiter got the vacancy {waited:?} after the kill"
    );
    let waiter = waiter.wait(Duration::from_secs(10));
    assert!(waiter.status.success(), "{waiter:#?}");
    assert_eq!(waiter.stdout, "vacant\ndone\n", "{waiter:#?}");

    let reader = run_to_end(&url, &[], &["read", "k"]);
    assert_eq!(reader.stdout, "value from-b\ndone\n", "{reader:#?}");
}

#[test]
fn a_trapped_holders_vacancy_is_released_at_exit() {
    // With a 30 s vacancy timeout, only the release at exit lets the next caller in at once.
    let server = RedisServer::start();
    let url = server.url();
    let options = ["--vacancy-timeout", "30s"];
    let holder = run_to_end(&url, &options, &["hold-and-trap", "k"]);
    assert_eq!(holder.status.code(), Some(1), "{holder:#?}");
    assert!(holder.stdout.starts_with("holding\n"), "{holder:#?}");
    let started = Instant::now();
    let next = run_to_end(&url, &options, &["wait-and-fill", "k", "next"]);
    assert_eq!(next.stdout, "vacant\ndone\n", "{next:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the lock outlived its holder: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_set_whose_future_was_dropped_at_exit_is_stored() {
    // The component drops the `set`'s future and exits at once: the CLI lets the write reach
    // Redis before the process ends.
    let server = RedisServer::start();
    let url = server.url();
    for i in 0..3 {
        let key = format!("k{i}");
        let value = format!("fire-and-forget-{i}");
        let setter = run_to_end(&url, &[], &["set-and-exit", &key, &value]);
        assert!(setter.status.success(), "{setter:#?}");
        assert_eq!(setter.stdout, "exiting\n", "{setter:#?}");
        let reader = run_to_end(&url, &[], &["read", &key]);
        assert_eq!(
            reader.stdout,
            format!("value {value}\ndone\n"),
            "{reader:#?}"
        );
    }
}

#[test]
fn namespaces_stay_apart_across_processes() {
    let server = RedisServer::start();
    let url = server.url();
    let run = |namespace: &str, scenario: &[&str]| {
        let ended = run_to_end(&url, &["--namespace", namespace], scenario);
        assert!(ended.status.success(), "{ended:#?}");
        ended.stdout
    };
    assert_eq!(run("a", &["wait-and-fill", "k", "in-a"]), "vacant\ndone\n");
    assert_eq!(run("b", &["read", "k"]), "absent\ndone\n");
    assert_eq!(run("b", &["wait-and-fill", "k", "in-b"]), "vacant\ndone\n");
    // (`a:b`, `k`) and (`a`, `b:k`) would collide under a naive `ns:key` encoding.
    assert_eq!(run("a:b", &["read", "k"]), "absent\ndone\n");
    assert_eq!(
        run("a", &["wait-and-fill", "b:k", "a-then-b:k"]),
        "vacant\ndone\n"
    );
    assert_eq!(run("a:b", &["read", "k"]), "absent\ndone\n");
    assert_eq!(
        run("a:b", &["wait-and-fill", "k", "in-a:b"]),
        "vacant\ndone\n"
    );
    assert_eq!(run("a", &["read", "k"]), "value in-a\ndone\n");
    assert_eq!(run("a", &["read", "b:k"]), "value a-then-b:k\ndone\n");
    assert_eq!(run("b", &["read", "k"]), "value in-b\ndone\n");
    assert_eq!(run("a:b", &["read", "k"]), "value in-a:b\ndone\n");
    // Another process in the same namespace sees the value: it is the shared cache.
    assert_eq!(
        run("a", &["wait-and-fill", "k", "again"]),
        "occupied in-a\ndone\n"
    );
}

#[test]
fn host_scenarios_run_on_redis() {
    let server = RedisServer::start();
    for scenario in HOST_SCENARIOS {
        let ended = run_to_end(&server.url(), &HOST_SCENARIO_OPTIONS, &[scenario]);
        assert!(ended.status.success(), "{scenario}: {ended:#?}");
        assert!(
            ended.stdout.contains(&format!("ok {scenario}\n")) && ended.stdout.ends_with("done\n"),
            "{scenario}: {ended:#?}"
        );
    }
}

#[test]
fn an_unreachable_server_is_one_error_line() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let started = Instant::now();
    let ended = run_to_end(&url, &["--redis-timeout", "500ms"], &["read", "k"]);
    assert_setup_error(&ended, &format!("cannot connect to Redis at {url}: "));
    assert!(
        ended.stderr.contains("is the server running?"),
        "{ended:#?}"
    );
    assert!(!ended.stderr.contains("keeps reconnecting"), "{ended:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_server_is_one_error_line_within_the_redis_timeout() {
    // Connections are accepted (by the kernel) but nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let ended = run_to_end(&url, &["--redis-timeout", "300ms"], &["read", "k"]);
    assert_setup_error(&ended, "did not answer within 300ms");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn a_user_without_channel_rights_is_one_error_line_naming_the_grant() {
    // Redis 7 creates users without channel rights: fills would fail after storing the value.
    let server = RedisServer::start();
    let created = redis_command(
        server.port(),
        "ACL SETUSER nochannels on >secret ~* +@all resetchannels",
    );
    assert!(created.starts_with("+OK"), "{created}");
    let url = format!("redis://nochannels:secret@127.0.0.1:{}/0", server.port());
    let ended = run_to_end(&url, &[], &["read", "k"]);
    assert_setup_error(&ended, "grant it the channels `&wc:*`");
    assert!(ended.stderr.contains("+publish +subscribe"), "{ended:#?}");
    assert!(!ended.stderr.contains("secret"), "{ended:#?}");
}

#[test]
fn bad_redis_options_are_one_error_line() {
    let ended = run_to_end("http://:secret@127.0.0.1:1", &[], &["read", "k"]);
    assert_setup_error(&ended, "invalid Redis URL");
    assert!(!ended.stderr.contains("secret"), "{ended:#?}");
    let ended = run_to_end("redis://:secret@127.0.0.1:1", &[], &["read", "k"]);
    assert_setup_error(
        &ended,
        "cannot connect to Redis at redis://:***@127.0.0.1:1",
    );
    assert!(!ended.stderr.contains("secret"), "{ended:#?}");
    let ended = run_to_end(
        "redis://127.0.0.1:1",
        &["--capacity", "1MiB"],
        &["read", "k"],
    );
    assert_setup_error(&ended, "cannot be used with '--capacity <SIZE>'");
}

/// The figure `name` of the `--stats` line in `stderr`.
fn stat(stderr: &str, name: &str) -> u64 {
    stderr
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stderr:?}"))
}

#[test]
fn a_near_cache_process_sees_another_processes_writes_within_the_bound() {
    // The bound: a write acknowledged in one process is read in the other within it.
    const BOUND: Duration = Duration::from_millis(100);
    const STEP: Duration = Duration::from_secs(10);
    let server = RedisServer::start();
    let url = server.url();
    let mut writer = start(&url, &[], &["lines", "k"]);
    let mut reader = start(&url, &["--near-cache", "1MiB", "--stats"], &["lines", "k"]);
    writer.send_line("set v1");
    writer.expect_line("set", STARTUP);
    // The first read goes to Redis, the next ones are near hits.
    reader.send_line("get");
    reader.expect_line("value v1", STARTUP);
    for _ in 0..3 {
        reader.send_line("get");
        reader.expect_line("value v1", STEP);
    }
    for (command, ack, want) in [
        ("set v2", "set", "value v2"),
        ("delete", "deleted", "absent"),
        ("set v3", "set", "value v3"),
    ] {
        writer.send_line(command);
        writer.expect_line(ack, STEP);
        let acked = Instant::now();
        loop {
            reader.send_line("get");
            let line = reader.expect_line_with("", STEP);
            if line == want {
                break;
            }
            assert!(
                acked.elapsed() < BOUND,
                "still {line:?} (not {want:?}) {:?} after `{command}` was acknowledged",
                acked.elapsed()
            );
        }
        reader.send_line("get");
        reader.expect_line(want, STEP);
    }
    reader.send_line("end");
    writer.send_line("end");
    let writer = writer.wait(STEP);
    assert!(writer.status.success(), "{writer:#?}");
    let reader = reader.wait(STEP);
    assert!(reader.status.success(), "{reader:#?}");
    assert!(reader.stdout.ends_with("done\n"), "{reader:#?}");
    assert!(stat(&reader.stderr, "near_hits") >= 3, "{reader:#?}");
    assert!(stat(&reader.stderr, "near_misses") >= 1, "{reader:#?}");
    assert!(stat(&reader.stderr, "invalidations") >= 3, "{reader:#?}");
}

#[test]
fn a_user_without_tracking_rights_is_one_error_line_naming_them() {
    let server = RedisServer::start();
    let created = redis_command(
        server.port(),
        "ACL SETUSER notracking on >secret ~* &* +@all -client",
    );
    assert!(created.starts_with("+OK"), "{created}");
    let url = format!("redis://notracking:secret@127.0.0.1:{}/0", server.port());
    let ended = run_to_end(&url, &["--near-cache", "1MiB"], &["read", "k"]);
    assert_setup_error(&ended, "+client|tracking");
    assert!(!ended.stderr.contains("secret"), "{ended:#?}");
    // Without the near cache, the same user is fine.
    let ended = run_to_end(&url, &[], &["read", "k"]);
    assert!(ended.status.success(), "{ended:#?}");
}
