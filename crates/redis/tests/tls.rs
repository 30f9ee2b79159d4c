//! TLS connections refused for what the certificates say, and accepted when they fit: mutual
//! TLS (a client certificate required, refused, accepted), a server whose CA the backend does
//! not trust, and certificate files that cannot be used (named in the error).

mod support;
use support::*;

use std::path::PathBuf;

use wasi_cache_engine::{Backend, Error, Namespace};
use wasi_cache_redis::{ClientIdentity, RedisBackend, RedisConfig, RedisTls};
use wasi_cache_redis_server::{ClientAuth, RedisServer, TestCa};

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The error of connecting with `config`, which must fail.
async fn refused(config: RedisConfig) -> Error {
    RedisBackend::connect(config)
        .await
        .err()
        .expect("the connection must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_of_the_servers_ca() {
    let server = RedisServer::start_tls(ClientAuth::Required);

    let err = refused(tls_config(&server)).await;
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("TLS handshake with Redis failed: the server requires a client certificate"),
        "{err}"
    );

    let stranger = TestCa::new("unrelated CA").issue_client(&scratch("stranger"));
    let tls = RedisTls::from_files(
        Some(server.ca_cert()),
        Some((&stranger.cert, &stranger.key)),
    )
    .unwrap();
    let err = refused(RedisConfig {
        tls,
        ..tls_config(&server)
    })
    .await;
    assert!(
        err.to_string()
            .contains("TLS handshake with Redis failed: the server refused the client certificate"),
        "{err}"
    );

    let client = server.client_cert();
    let tls =
        RedisTls::from_files(Some(server.ca_cert()), Some((&client.cert, &client.key))).unwrap();
    let config = RedisConfig {
        tls,
        ..tls_config(&server)
    };
    let (a, c) = (
        RedisBackend::connect(config.clone()).await.unwrap(),
        RedisBackend::connect(config).await.unwrap(),
    );
    let ns = Namespace::new("mtls").unwrap();
    a.set(&ns, b"k", b("v"), None).await.unwrap();
    assert_eq!(c.get(&ns, b"k").await.unwrap(), Some(b("v")));
    // A waiter on `c` is woken by `a`'s fill: pub/sub runs over mutual TLS too.
    let holder = vacant(a.get_or_set(&ns, b"g").await.unwrap(), "fresh key");
    let waiter = tokio::spawn(async move { c.get_or_set(&ns, b"g").await });
    let admin = Admin::connect(&server.url()).await;
    until(
        std::time::Duration::from_secs(30),
        "the waiter subscribes",
        || async { !admin.channels().await.is_empty() },
    )
    .await;
    holder.fill(b("filled"), None).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(occupied(got, "waiter"), b("filled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_an_untrusted_ca_is_refused() {
    let server = RedisServer::start_tls(ClientAuth::Optional);
    // Another private CA, and the system's roots (which never hold a CA made by a test).
    assert_untrusted_ca_refused(|tls| RedisConfig {
        tls,
        ..RedisConfig::with_url(server.tls_url())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificates_are_refused_before_connecting() {
    let dir = scratch("files");
    let ca = TestCa::new("files CA");
    let ca_cert = dir.join("ca.crt");
    ca.write_cert(&ca_cert);
    let client = ca.issue_client(&dir);
    let other = ca.issue_server(&dir);
    let text = dir.join("not-pem.txt");
    std::fs::write(&text, "just text\n").unwrap();
    let missing = dir.join("missing.crt");

    let invalid = |result: wasi_cache_engine::Result<RedisTls>| match result {
        Err(Error::InvalidConfig(message)) => message,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let message = invalid(RedisTls::from_files(Some(&missing), None));
    assert!(
        message.starts_with(&format!(
            "cannot read the CA certificate {}: ",
            missing.display()
        )),
        "{message}"
    );
    let message = invalid(RedisTls::from_files(Some(&text), None));
    assert!(
        message.starts_with(&format!(
            "the CA certificate {} holds no PEM certificate",
            text.display()
        )),
        "{message}"
    );
    let message = invalid(RedisTls::from_files(None, Some((&client.key, &client.key))));
    assert!(
        message.starts_with(&format!(
            "the client certificate {} holds no PEM certificate",
            client.key.display()
        )),
        "{message}"
    );
    let message = invalid(RedisTls::from_files(None, Some((&client.cert, &text))));
    assert!(
        message.starts_with(&format!(
            "the client key {} is not a PEM private key",
            text.display()
        )),
        "{message}"
    );
    let message = invalid(RedisTls::from_files(None, Some((&client.cert, &other.key))));
    assert!(
        message.starts_with("the client key does not go with the client certificate"),
        "{message}"
    );

    // PEM given as bytes is checked the same way, before anything connects.
    let bytes = RedisTls {
        ca_cert: Some(b"garbage".to_vec()),
        client: None,
    };
    let err = RedisBackend::connect_lazy(RedisConfig {
        tls: bytes,
        ..RedisConfig::with_url("rediss://127.0.0.1:1")
    })
    .err()
    .expect("garbage CA");
    assert!(
        err.to_string()
            .contains("the CA certificate holds no PEM certificate"),
        "{err}"
    );
    // Certificates with a plain URL would silently go unused: refused.
    let tls = RedisTls {
        ca_cert: None,
        client: Some(ClientIdentity {
            cert: std::fs::read(&client.cert).unwrap(),
            key: std::fs::read(&client.key).unwrap(),
        }),
    };
    let err = RedisBackend::connect_lazy(RedisConfig {
        tls,
        ..RedisConfig::with_url("redis://127.0.0.1:1")
    })
    .err()
    .expect("a plain URL with a client certificate");
    assert!(
        err.to_string().contains("given for a plain redis:// URL"),
        "{err}"
    );
}
