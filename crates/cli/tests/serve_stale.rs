//! `wasi-cache serve` of the example proxy (`examples/http-proxy`) in front of an upstream whose
//! responses allow stale answers (RFC 5861): within `stale-while-revalidate` a burst answers
//! the stale body at once (`x-cache: STALE`, with an `Age`) while one request refreshes it in
//! the background; within `stale-if-error`, an upstream that is down still gets the stale body
//! answered with a 200.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::serve::{Server, get, guarded};
use common::tmp;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasi_cache_guest_build as guest_build;
use wasmtime_wasi_http::io::TokioIo;

fn proxy_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::HTTP_PROXY_TEST, tmp()))
}

/// The upstream: `/swr` answers `max-age=1, stale-while-revalidate=30`, its first request after
/// 500 ms and the later ones once [`Upstream::release`] is called; `/sie` answers `max-age=1,
/// stale-if-error=60` at once. Each body names its path and the request's number for the path.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    gate: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (gate, opened) = watch::channel(false);
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counts, opened) = (counts.clone(), opened.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (counts, mut opened) = (counts.clone(), opened.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let n = {
                                let mut counts = counts.lock().unwrap();
                                let n = counts.entry(path.clone()).or_insert(0);
                                *n += 1;
                                *n
                            };
                            let control = if path == "/swr" {
                                if n == 1 {
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                } else {
                                    let _ = opened.wait_for(|open| *open).await;
                                }
                                "max-age=1, stale-while-revalidate=30"
                            } else {
                                "max-age=1, stale-if-error=60"
                            };
                            let body = Full::new(Bytes::from(format!("{path} #{n}")));
                            let response = Response::builder()
                                .header("cache-control", control)
                                .body(body)
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            gate,
            task,
        }
    }

    /// The requests received for `path`.
    fn seen(&self, path: &str) -> usize {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Lets the held `/swr` requests be answered.
    fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Stops listening: new connections are refused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A server of the proxy in front of `upstream` (a loopback upstream must be allowed
/// explicitly by the outbound policy).
fn proxy(upstream: &Upstream) -> Server {
    let env = format!("UPSTREAM=http://{}", upstream.addr);
    let allowed = upstream.addr.to_string();
    Server::spawn(proxy_wasm(), &["--env", &env, "--allow-outbound", &allowed])
}

/// The `Age` of a reply, in seconds.
fn age(reply: &common::serve::Reply) -> u64 {
    reply
        .header("age")
        .unwrap_or_else(|| panic!("no Age: {reply:?}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_do_not_wait_for_the_refresh() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = proxy(&upstream);
        let first = get(server.addr, "/swr").await;
        assert_eq!(
            (first.status, first.header("x-cache"), first.body.as_str()),
            (StatusCode::OK, Some("MISS"), "/swr #1")
        );
        let hit = get(server.addr, "/swr").await;
        assert_eq!(hit.header("x-cache"), Some("HIT"), "{hit:?}");
        assert!(hit.header("age").is_some(), "{hit:?}");
        // Past the one-second max-age (a TTL, not a measurement of the server).
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // The refresh's upstream request is held until the burst has its answers: none of
        // them waited for it.
        let burst: Vec<_> = (0..100)
            .map(|_| tokio::spawn(get(server.addr, "/swr")))
            .collect();
        for reply in burst {
            let reply = reply.await.unwrap();
            assert_eq!(
                (reply.status, reply.header("x-cache"), reply.body.as_str()),
                (StatusCode::OK, Some("STALE"), "/swr #1"),
                "{reply:?}"
            );
            assert!(age(&reply) >= 1, "{reply:?}");
        }
        upstream.release();
        let refreshed = loop {
            let reply = get(server.addr, "/swr").await;
            if reply.header("x-cache") == Some("HIT") {
                break reply;
            }
            assert_eq!(reply.body, "/swr #1", "{reply:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(refreshed.body, "/swr #2");
        assert_eq!(
            upstream.seen("/swr"),
            2,
            "the burst made more than one refresh"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_gets_the_stale_body_answered() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = proxy(&upstream);
        let first = get(server.addr, "/sie").await;
        assert_eq!(
            (first.header("x-cache"), first.body.as_str()),
            (Some("MISS"), "/sie #1")
        );
        upstream.stop().await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let replies: Vec<_> = (0..20)
            .map(|_| tokio::spawn(get(server.addr, "/sie")))
            .collect();
        for reply in replies {
            let reply = reply.await.unwrap();
            assert_eq!(
                (reply.status, reply.header("x-cache"), reply.body.as_str()),
                (StatusCode::OK, Some("STALE"), "/sie #1"),
                "{reply:?}"
            );
            assert!(age(&reply) >= 1, "{reply:?}");
        }
    })
    .await;
}
