//! `wasi-cache serve`'s bounds on what instances share, end to end on loopback: the outbound
//! policy (`--allow-outbound`: a guest's request to 127.0.0.1, to a name resolving there and to
//! the server's own admin endpoint is refused with the wasi:http error code, and allowed when
//! listed; the example proxy's `/_test/late-body/PATH` route reports the error code it got),
//! and the pool of writes in flight (`--max-pending-writes`: writes that outlive their instance
//! while Redis is frozen fill it, a write beyond it is refused at its call, and the pool drains
//! once Redis resumes). The policy's decisions on other ranges (private, link-local, ...) are
//! unit tests of `src/outbound.rs`: no test here sends traffic anywhere but loopback.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::serve::{Server, get, guarded};
use common::tmp;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wasi_cache_guest_build as guest_build;
use wasi_cache_redis_server::RedisServer;

fn proxy_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::HTTP_PROXY_TEST, tmp()))
}

fn service_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::SERVE_P3, tmp()))
}

/// A loopback upstream answering every request with 200, counting them.
async fn upstream() -> (SocketAddr, &'static AtomicUsize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    seen.fetch_add(1, Ordering::AcqRel);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("upstream"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A free loopback port (bound, then released: for an admin endpoint the guest is to reach).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The proxy in front of `upstream` (a URL), with `options`; its late-body route's report.
async fn late_body(upstream: &str, options: &[&str]) -> (Server, common::serve::Reply) {
    let env = format!("UPSTREAM={upstream}");
    let args = [&["--env", env.as_str()][..], options].concat();
    let server = Server::spawn(proxy_wasm(), &args);
    // `/healthz`: the admin endpoint answers it too.
    let reply = get(server.addr, "/_test/late-body/healthz").await;
    (server, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_unless_listed() {
    guarded(proxy_wasm, async {
        let (up, seen) = upstream().await;
        let url = format!("http://{up}");
        let listed = up.to_string();

        // The default policy: loopback refused, with the wasi:http error code; counted.
        let (server, reply) = late_body(&url, &["--admin-addr", "127.0.0.1:0"]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{reply:?}");
        assert!(reply.body.contains("DestinationIpProhibited"), "{reply:?}");
        assert_eq!(
            server.metric("wasi_cache_outbound_denied_total", &[]).await,
            1.0
        );
        // A name is judged by the address it resolves to.
        let by_name = format!("http://localhost:{}", up.port());
        let (_server, reply) = late_body(&by_name, &[]).await;
        assert!(reply.body.contains("DestinationIpProhibited"), "{reply:?}");
        assert_eq!(seen.load(Ordering::Acquire), 0);

        // Listed: allowed, by address and by the name that resolves there.
        let (server, reply) = late_body(&url, &["--allow-outbound", &listed]).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, "late body: 200\n");
        let cached = get(server.addr, "/page").await;
        assert_eq!(cached.status, StatusCode::OK, "{cached:?}");
        assert_eq!(cached.body, "upstream");
        let (_server, reply) = late_body(&by_name, &["--allow-outbound", &listed]).await;
        assert_eq!(reply.body, "late body: 200\n", "{reply:?}");
        assert_eq!(seen.load(Ordering::Acquire), 3);
        // Another port of the same address is not listed.
        let other = format!("http://127.0.0.1:{}", free_port());
        let (_server, reply) = late_body(&other, &["--allow-outbound", &listed]).await;
        assert!(reply.body.contains("DestinationIpProhibited"), "{reply:?}");

        // `none`: refused before any resolution, as a denied request.
        let (_server, reply) = late_body(&by_name, &["--allow-outbound", "none"]).await;
        assert!(reply.body.contains("HttpRequestDenied"), "{reply:?}");
        assert_eq!(seen.load(Ordering::Acquire), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_is_refused_unless_listed() {
    guarded(proxy_wasm, async {
        // The guest's upstream is the server's own admin endpoint.
        let admin = format!("127.0.0.1:{}", free_port());
        let url = format!("http://{admin}");
        let options = ["--admin-addr", admin.as_str(), "--allow-outbound", "public"];
        let (server, reply) = late_body(&url, &options).await;
        assert!(reply.body.contains("DestinationIpProhibited"), "{reply:?}");
        assert_eq!(
            server.metric("wasi_cache_outbound_denied_total", &[]).await,
            1.0
        );
        drop(server);
        let admin = format!("127.0.0.1:{}", free_port());
        let url = format!("http://{admin}");
        let options = ["--admin-addr", admin.as_str(), "--allow-outbound", &admin];
        let (server, reply) = late_body(&url, &options).await;
        assert_eq!(reply.body, "late body: 200\n", "{reply:?}");
        assert_eq!(
            server.metric("wasi_cache_outbound_denied_total", &[]).await,
            0.0
        );
    })
    .await;
}

/// A flood of requests whose guests all call a refused address: each is refused (and counted),
/// nothing reaches the address, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_reaches_nothing() {
    guarded(proxy_wasm, async {
        let (up, seen) = upstream().await;
        let env = format!("UPSTREAM=http://{up}");
        let server = Server::spawn(
            proxy_wasm(),
            &["--env", &env, "--admin-addr", "127.0.0.1:0"],
        );
        let requests: Vec<_> = (0..100)
            .map(|_| tokio::spawn(get(server.addr, "/_test/late-body/healthz")))
            .collect();
        for request in requests {
            let reply = request.await.unwrap();
            assert!(reply.body.contains("DestinationIpProhibited"), "{reply:?}");
        }
        assert_eq!(
            server.metric("wasi_cache_outbound_denied_total", &[]).await,
            100.0
        );
        assert_eq!(seen.load(Ordering::Acquire), 0);
        assert_eq!(server.health().await, StatusCode::OK);
    })
    .await;
}

/// A guest that leaves writes running when its instance ends, while Redis is frozen: the pool
/// of writes in flight fills (counted as orphans), a write beyond it is refused at its call
/// with an error naming the bound, and everything drains once Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outliving_their_instance_are_bounded_server_wide() {
    guarded(service_wasm, async {
        let redis = RedisServer::start();
        let url = redis.url();
        let options = [
            "--admin-addr",
            "127.0.0.1:0",
            "--redis",
            url.as_str(),
            // Longer than the test: the frozen writes stay in flight until Redis resumes.
            "--redis-timeout",
            "60s",
            "--max-pending-writes",
            "8",
        ];
        let server = Server::spawn(service_wasm(), &options);
        // Connected and working first.
        let reply = get(server.addr, "/set/warm").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

        redis.freeze(true);
        for round in 0..3 {
            let reply = get(server.addr, "/detach/k/5").await;
            assert_eq!(reply.status, StatusCode::OK, "round {round}: {reply:?}");
        }
        // The instances end once their responses are out: their writes are orphans then.
        server
            .wait_for_metric("wasi_cache_orphan_writes", 8.0)
            .await;
        let metrics = server.metrics().await;
        assert_eq!(metrics.value("wasi_cache_pending_writes", &[]), 8.0);
        assert_eq!(metrics.value("wasi_cache_orphan_writes", &[]), 8.0);
        assert_eq!(
            metrics.value("wasi_cache_pending_writes_refused_total", &[]),
            7.0
        );
        // A write beyond the pool fails at its call, not after the Redis timeout.
        let refused = get(server.addr, "/set/late").await;
        assert_eq!(
            refused.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{refused:?}"
        );
        assert!(
            refused
                .body
                .contains("writes in flight across all its instances"),
            "{refused:?}"
        );

        redis.freeze(false);
        while server.metric("wasi_cache_pending_writes", &[]).await > 0.0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(server.metric("wasi_cache_orphan_writes", &[]).await, 0.0);
        let reply = get(server.addr, "/set/after").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    })
    .await;
}
