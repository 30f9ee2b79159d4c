//! `wasi-cache run --redis rediss://…`: the cross-process rendezvous over TLS, mutual TLS, and
//! what can go wrong with certificates (a server of another CA, a client certificate missing,
//! files that cannot be used, TLS options without a rediss:// URL or without --redis), each one
//! `error:` line with exit code 2. Every server is a private `redis-server` with a TLS port, on
//! certificates of a CA made by the test.

mod common;
use common::redis_runs::*;
use common::{assert_unknown_ca, tmp, wasi_cache, write_unrelated_ca_cert};

use std::path::{Path, PathBuf};

use wasi_cache_redis_server::{ClientAuth, RedisServer, TestCa};

/// `path` as an argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A scratch file of this test binary's own.
fn scratch(name: &str) -> PathBuf {
    tmp().join(format!("redis-tls-{}-{name}", std::process::id()))
}

#[test]
fn a_waiter_in_another_process_gets_the_holders_value_over_tls() {
    let server = RedisServer::start_tls(ClientAuth::Optional);
    let url = format!("{}/0", server.tls_url());
    rendezvous_across_processes(
        server.port(),
        &url,
        &["--redis-ca-cert", arg(server.ca_cert())],
    );
}

#[test]
fn mutual_tls_needs_a_client_certificate() {
    let server = RedisServer::start_tls(ClientAuth::Required);
    let url = server.tls_url();
    let ca = ["--redis-ca-cert", arg(server.ca_cert())];
    let ended = run_to_end(&url, &ca, &["read", "k"]);
    assert_setup_error(
        &ended,
        "TLS handshake with Redis failed: the server requires a client certificate",
    );

    let client = server.client_cert();
    let identity = [
        "--redis-client-cert",
        arg(&client.cert),
        "--redis-client-key",
        arg(&client.key),
    ];
    let options = [&ca[..], &identity].concat();
    let ended = run_to_end(&url, &options, &["wait-and-fill", "k", "mutual"]);
    assert!(ended.status.success(), "{ended:#?}");
    assert_eq!(ended.stdout, "vacant\ndone\n", "{ended:#?}");
    let ended = run_to_end(&url, &options, &["read", "k"]);
    assert_eq!(ended.stdout, "value mutual\ndone\n", "{ended:#?}");
}

#[test]
fn a_server_signed_by_another_ca_is_one_error_line() {
    let server = RedisServer::start_tls(ClientAuth::Optional);
    let unrelated = scratch("unrelated-ca.crt");
    write_unrelated_ca_cert(&unrelated);
    let url = server.tls_url();
    let ended = run_to_end(&url, &["--redis-ca-cert", arg(&unrelated)], &["read", "k"]);
    assert_setup_error(&ended, &format!("cannot connect to Redis at {url}: "));
    assert_unknown_ca(&ended.stderr, &ended);
}

#[test]
fn unusable_tls_options_are_one_error_line() {
    let ca = TestCa::new("options CA");
    let ca_cert = scratch("ca.crt");
    ca.write_cert(&ca_cert);
    let missing = scratch("missing.crt");
    let text = scratch("not-pem.txt");
    std::fs::write(&text, "not a certificate\n").unwrap();
    // Nothing listens there: each of these fails before connecting.
    let url = "rediss://127.0.0.1:1";

    let ended = run_to_end(url, &["--redis-ca-cert", arg(&missing)], &["read", "k"]);
    assert_setup_error(
        &ended,
        &format!("cannot read the CA certificate {}: ", missing.display()),
    );
    let ended = run_to_end(url, &["--redis-ca-cert", arg(&text)], &["read", "k"]);
    assert_setup_error(
        &ended,
        &format!(
            "the CA certificate {} holds no PEM certificate",
            text.display()
        ),
    );
    let ended = run_to_end(
        "redis://127.0.0.1:1",
        &["--redis-ca-cert", arg(&ca_cert)],
        &["read", "k"],
    );
    assert_setup_error(
        &ended,
        "given for a plain redis:// URL; use a rediss:// URL",
    );

    // Without --redis, or a client certificate without its key: usage errors.
    let e2e = arg(e2e_wasm());
    for (options, needle) in [
        (vec!["--redis-ca-cert", arg(&ca_cert)], "--redis <URL>"),
        (
            vec!["--redis", url, "--redis-client-cert", arg(&ca_cert)],
            "--redis-client-key <FILE>",
        ),
    ] {
        let run = wasi_cache(["run"].iter().chain(&options).chain(&[e2e]));
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(needle),
            "{needle:?} not in {run:#?}"
        );
    }
}
