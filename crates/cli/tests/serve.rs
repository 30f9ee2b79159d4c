//! `wasi-cache serve` end to end: the example caching proxy (`examples/http-proxy`, with its test
//! routes) served on a loopback port in front of an upstream written here, driven by a real HTTP
//! client. Every server process is killed when its test ends ([`Proc`]'s drop).

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::serve::{Server, all_ok, get, guarded};
use common::{tmp, wasi_cache};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wasi_cache_guest_build as guest_build;
use wasmtime_wasi_http::io::TokioIo;

/// How long the upstream takes to answer `/slow/…`.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(300);

fn proxy_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::HTTP_PROXY_TEST, tmp()))
}

/// The upstream: `/slow/…` answers after [`UPSTREAM_LATENCY`]; `/hold/…` answers once
/// [`Upstream::release`] is called; `/no-store` answers with `Cache-Control: no-store`, `/ttl-1`
/// with `max-age=1`, `/big/N` with `N` bytes, everything else with `max-age=60`. It counts the requests it receives, per
/// path.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    /// The number of requests received so far.
    total: watch::Receiver<usize>,
    gate: watch::Sender<bool>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (count, total) = watch::channel(0usize);
        let count = Arc::new(count);
        let (gate, opened) = watch::channel(false);
        let counts = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counts, count, opened) = (counts.clone(), count.clone(), opened.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (counts, count, mut opened) =
                            (counts.clone(), count.clone(), opened.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                            count.send_modify(|n| *n += 1);
                            let mut control = "max-age=60";
                            if path.starts_with("/slow/") {
                                tokio::time::sleep(UPSTREAM_LATENCY).await;
                            } else if path.starts_with("/hold/") {
                                let _ = opened.wait_for(|open| *open).await;
                            } else if path == "/no-store" {
                                control = "no-store";
                            } else if path == "/ttl-1" {
                                control = "max-age=1";
                            }
                            let body = match path.strip_prefix("/big/") {
                                Some(n) => vec![b'x'; n.parse().unwrap()],
                                None => format!("upstream says {path}").into_bytes(),
                            };
                            let body = Full::new(Bytes::from(body));
                            let response = Response::builder()
                                .header("cache-control", control)
                                .header("content-type", "text/plain")
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
            total,
            gate,
        }
    }

    /// The requests received for `path`.
    fn seen(&self, path: &str) -> usize {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Waits until the upstream has received `n` requests in all.
    async fn wait_for_requests(&self, n: usize) {
        let mut total = self.total.clone();
        total.wait_for(|total| *total >= n).await.unwrap();
    }

    /// Lets every `/hold/…` request (waiting or to come) be answered.
    fn release(&self) {
        self.gate.send_replace(true);
    }
}

impl Server {
    /// A server of the proxy in front of `upstream`.
    fn start(upstream: &Upstream, options: &[&str]) -> Self {
        Self::start_for(&format!("http://{}", upstream.addr), options)
    }

    /// A server of the proxy in front of the upstream at `url`.
    fn start_for(url: &str, options: &[&str]) -> Self {
        let upstream = format!("UPSTREAM={url}");
        // A loopback upstream is outside the default outbound policy: listed explicitly.
        let allowed = url.trim_start_matches("http://").trim_end_matches('/');
        let args = [
            &["--env", upstream.as_str(), "--allow-outbound", allowed][..],
            options,
        ]
        .concat();
        Server::spawn(proxy_wasm(), &args)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_of_200_requests_reaches_the_upstream_once() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--admin-addr", "127.0.0.1:0"]);
        let requests = (0..200)
            .map(|_| tokio::spawn(get(server.addr, "/hold/page")))
            .collect();
        // The upstream answers after its latency and once the 199 other requests wait on the
        // rendezvous, as the server's metrics count them (on a loaded two-core machine some of
        // 200 instantiations can take longer than the latency: without the wait, they would be
        // HITs, not WAITs).
        upstream.wait_for_requests(1).await;
        let asked = tokio::time::Instant::now();
        server
            .wait_for_metric("wasi_cache_rendezvous_waits_total", 199.0)
            .await;
        tokio::time::sleep_until(asked + UPSTREAM_LATENCY).await;
        upstream.release();
        let replies = all_ok(requests, Some("upstream says /hold/page")).await;
        assert_eq!(upstream.seen("/hold/page"), 1);
        let mut by_cache: HashMap<Option<String>, usize> = HashMap::new();
        for reply in &replies {
            *by_cache
                .entry(reply.header("x-cache").map(str::to_owned))
                .or_default() += 1;
        }
        let count = |how: &str| by_cache.get(&Some(how.to_owned())).copied().unwrap_or(0);
        assert_eq!(count("MISS"), 1, "{by_cache:?}");
        assert_eq!(count("WAIT"), 199, "{by_cache:?}");
        let later = get(server.addr, "/hold/page").await;
        assert_eq!(later.header("x-cache"), Some("HIT"));
        assert_eq!(later.body, "upstream says /hold/page");
        assert_eq!(upstream.seen("/hold/page"), 1);
        // Not stored: each request goes to the upstream.
        for _ in 0..2 {
            let reply = get(server.addr, "/no-store").await;
            assert_eq!(reply.header("x-cache"), Some("MISS"));
        }
        assert_eq!(upstream.seen("/no-store"), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_and_the_cache_operations() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--admin-addr", "127.0.0.1:0"]);
        let start = server.metrics().await;
        for name in [
            "wasi_cache_http_request_duration_seconds",
            "wasi_cache_http_requests_in_flight",
            "wasi_cache_hits_total",
            "wasi_cache_fills_total",
        ] {
            assert_eq!(start.value(name, &[]), 0.0, "{name}");
        }
        assert!(start.0.docs.contains_key("wasi_cache_evictions"));

        // One fetch, three hits, one trap; two requests held at the upstream.
        assert_eq!(
            get(server.addr, "/slow/m").await.header("x-cache"),
            Some("MISS")
        );
        for _ in 0..3 {
            assert_eq!(
                get(server.addr, "/slow/m").await.header("x-cache"),
                Some("HIT")
            );
        }
        let trapped = get(server.addr, "/_test/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        let held: Vec<_> = (0..2)
            .map(|i| tokio::spawn(get(server.addr, format!("/hold/{i}"))))
            .collect();
        upstream.wait_for_requests(3).await;

        let during = server.metrics().await;
        assert_eq!(during.value("wasi_cache_http_requests_in_flight", &[]), 2.0);
        assert_eq!(
            during.value("wasi_cache_http_requests_total", &[("class", "2xx")]),
            4.0
        );
        assert_eq!(
            during.value("wasi_cache_http_requests_total", &[("class", "5xx")]),
            1.0
        );
        assert_eq!(
            during.value("wasi_cache_http_request_duration_seconds", &[]),
            5.0
        );
        // Per GET the proxy reads the key, then (on a miss) takes its vacancy: each fetch (the
        // first and the two held) is two misses, each later GET a hit.
        assert_eq!(during.value("wasi_cache_hits_total", &[]), 3.0);
        assert_eq!(during.value("wasi_cache_misses_total", &[]), 6.0);
        assert_eq!(during.value("wasi_cache_fills_total", &[]), 1.0);
        assert_eq!(during.value("wasi_cache_inserts_total", &[]), 1.0);
        assert_eq!(during.value("wasi_cache_rendezvous_waits_total", &[]), 0.0);
        assert_eq!(during.value("wasi_cache_handoffs_total", &[]), 0.0);
        assert_eq!(during.value("wasi_cache_entries", &[]), 1.0);
        assert!(during.value("wasi_cache_bytes", &[]) > 0.0);
        // The embedded engine has no Redis figures.
        assert!(!during.0.docs.contains_key("wasi_cache_redis_round_trips"));

        upstream.release();
        all_ok(held, None).await;
        let after = server.metrics().await;
        assert_eq!(after.value("wasi_cache_http_requests_in_flight", &[]), 0.0);
        assert_eq!(
            after.value("wasi_cache_http_requests_total", &[("class", "2xx")]),
            6.0
        );
        assert_eq!(after.value("wasi_cache_fills_total", &[]), 3.0);

        assert_eq!(server.health().await, StatusCode::OK);
        let admin = server.admin();
        assert_eq!(get(admin, "/elsewhere").await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_the_redis_server() {
    let mut redis = wasi_cache_redis_server::RedisServer::start();
    let url = format!("{}/0", redis.url());
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let options = [
            "--redis",
            url.as_str(),
            "--redis-timeout",
            "500ms",
            "--admin-addr",
            "127.0.0.1:0",
        ];
        let server = Server::start(&upstream, &options);
        assert_eq!(server.health().await, StatusCode::OK);
        assert_eq!(
            get(server.addr, "/slow/r").await.header("x-cache"),
            Some("MISS")
        );
        let metrics = server.metrics().await;
        assert_eq!(metrics.value("wasi_cache_fills_total", &[]), 1.0);
        assert!(metrics.value("wasi_cache_redis_round_trips_total", &[]) >= 3.0);

        redis.stop();
        // Each check pings once; one may still meet the old connection.
        while server.health().await != StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let down = get(server.addr, "/slow/r").await;
        assert_ne!(down.status, StatusCode::OK, "{down:?}");

        redis.restart();
        while server.health().await != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let back = get(server.addr, "/slow/r2").await;
        assert_eq!(back.header("x-cache"), Some("MISS"), "{back:?}");
        let metrics = server.metrics().await;
        assert!(metrics.value("wasi_cache_redis_reconnects_total", &[]) >= 1.0);

        // A server that stops answering (frozen, its connections open): the ping times out.
        redis.freeze(true);
        assert_eq!(server.health().await, StatusCode::SERVICE_UNAVAILABLE);
        redis.freeze(false);
        while server.health().await != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// hyper sends a `GET` without `content-length` with no body, and dropped its body (the guest's
/// `outgoing-body` stream) as soon as the head was written: a guest writing its empty body after
/// that, as the proxy does right after `handle`, failed the request with a 502. With automatic
/// pipelining on Redis the sending task won that race 2 runs in 3 (in
/// `healthz_follows_the_redis_server`); here the guest writes its body only once the response
/// has arrived, so the head was written first every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_body_written_after_the_response_can_still_be_written() {
    let redis = wasi_cache_redis_server::RedisServer::start();
    let url = format!("{}/0", redis.url());
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--redis", url.as_str()]);
        let reply = get(server.addr, "/_test/late-body/late").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, "late body: 200\n");
        assert_eq!(upstream.seen("/late"), 1);
        // The proxy's own path on a fresh key, right after start-up.
        let fetched = get(server.addr, "/fresh").await;
        assert_eq!(fetched.header("x-cache"), Some("MISS"), "{fetched:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--header-read-timeout", "1s"]);
        // Half a request, and a connection that sends nothing: neither may hold its connection
        // (nor anything else) past the timeout.
        let mut partial = TcpStream::connect(server.addr).await.unwrap();
        partial
            .write_all(b"GET /slow/never HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let idle = TcpStream::connect(server.addr).await.unwrap();
        for mut stream in [partial, idle] {
            let mut answer = Vec::new();
            // Closed by the server: the end of the stream (after a 408, maybe) or a reset.
            if stream.read_to_end(&mut answer).await.is_ok() {
                let answer = String::from_utf8_lossy(&answer);
                assert!(
                    answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                    "{answer:?}"
                );
            }
        }
        assert_eq!(upstream.seen("/slow/never"), 0);
        let reply = get(server.addr, "/slow/after").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_reach_the_upstream_once() {
    let redis = wasi_cache_redis_server::RedisServer::start();
    let url = format!("{}/0", redis.url());
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let options = ["--redis", url.as_str(), "--namespace", "site"];
        let servers = [
            Server::start(&upstream, &options),
            Server::start(&upstream, &options),
        ];
        let requests: Vec<_> = (0..200)
            .map(|i| tokio::spawn(get(servers[i % 2].addr, "/slow/shared")))
            .collect();
        let replies = all_ok(requests, Some("upstream says /slow/shared")).await;
        let misses = replies
            .iter()
            .filter(|reply| reply.header("x-cache") == Some("MISS"))
            .count();
        assert_eq!(misses, 1);
        assert_eq!(upstream.seen("/slow/shared"), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_above_the_limit_get_503_and_the_server_keeps_serving() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--max-concurrent-requests", "3"]);
        let held: Vec<_> = (0..3)
            .map(|i| tokio::spawn(get(server.addr, format!("/hold/{i}"))))
            .collect();
        upstream.wait_for_requests(3).await;
        for _ in 0..5 {
            let refused = get(server.addr, "/slow/other").await;
            assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(upstream.seen("/slow/other"), 0);
        upstream.release();
        all_ok(held, None).await;
        let reply = get(server.addr, "/slow/other").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.header("x-cache"), Some("MISS"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_for_that_request_only() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &[]);
        let trapped = get(server.addr, "/_test/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        let reply = get(server.addr, "/slow/after-trap").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_while_holding_the_vacancy_hands_it_to_a_waiter() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &[]);
        // The holder takes the vacancy of `/slow/handed`, then waits for the upstream's
        // `/hold/trap` before it traps.
        let holder = tokio::spawn(get(server.addr, "/_test/trap-holding/slow/handed"));
        upstream.wait_for_requests(1).await;
        let waiters: Vec<_> = (0..10)
            .map(|_| tokio::spawn(get(server.addr, "/slow/handed")))
            .collect();
        // Time for the waiters to reach the rendezvous (were one late, it would find the key
        // missing and fetch it itself: the assertions hold either way).
        tokio::time::sleep(Duration::from_millis(500)).await;
        upstream.release();
        let trapped = holder.await.unwrap();
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        all_ok(waiters, Some("upstream says /slow/handed")).await;
        assert_eq!(upstream.seen("/slow/handed"), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_while_holding_the_vacancy_hands_it_to_a_waiter() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--request-timeout", "3s"]);
        // The holder takes the vacancy of `/slow/timed-out` and waits for the upstream's
        // `/hold/trap`, which never answers (the gate stays closed): it gets a 504 and its
        // instance is dropped, with the vacancy.
        let holder = tokio::spawn(get(server.addr, "/_test/trap-holding/slow/timed-out"));
        upstream.wait_for_requests(1).await;
        // The waiters' own time limits end half-way through the holder's, after its hand-off
        // and the 300 ms fetch of the next holder (margins, not measurements).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let waiters: Vec<_> = (0..10)
            .map(|_| tokio::spawn(get(server.addr, "/slow/timed-out")))
            .collect();
        let timed_out = holder.await.unwrap();
        assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
        all_ok(waiters, Some("upstream says /slow/timed-out")).await;
        assert_eq!(upstream.seen("/slow/timed-out"), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_response_is_fetched_again() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &[]);
        let first = get(server.addr, "/ttl-1").await;
        assert_eq!(first.header("x-cache"), Some("MISS"));
        assert_eq!(upstream.seen("/ttl-1"), 1);
        // Past the one-second max-age (a TTL, not a measurement of the server).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = get(server.addr, "/ttl-1").await;
        assert_eq!(again.header("x-cache"), Some("MISS"));
        assert_eq!(upstream.seen("/ttl-1"), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502_and_nothing_is_cached() {
    guarded(proxy_wasm, async {
        // A port nobody listens on (bound, then closed).
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let server = Server::start_for(&dead, &[]);
        for _ in 0..2 {
            let reply = get(server.addr, "/page").await;
            assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{reply:?}");
            assert_eq!(reply.header("x-cache"), None);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_request_timeout_is_a_504() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let mut server = Server::start(&upstream, &["--request-timeout", "1s"]);
        // Computing forever: stopped by epoch interruption. More of them than the server has
        // threads: each instance is dropped, not left computing on a thread of the server.
        for _ in 0..4 {
            let spin = get(server.addr, "/_test/spin").await;
            assert_eq!(spin.status, StatusCode::GATEWAY_TIMEOUT);
        }
        // Blocked in a host call (the upstream never answers): stopped by the host's timer.
        let held = get(server.addr, "/hold/forever").await;
        assert_eq!(held.status, StatusCode::GATEWAY_TIMEOUT);
        let reply = get(server.addr, "/slow/after-timeout").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        // Nothing left running: the server shuts down at once.
        server.shut_down();
        let ended = server.ended().await;
        assert!(ended.status.success(), "{ended:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let mut server = Server::start(&upstream, &["--admin-addr", "127.0.0.1:0"]);
        let held: Vec<_> = (0..50)
            .map(|i| tokio::spawn(get(server.addr, format!("/hold/{i}"))))
            .collect();
        upstream.wait_for_requests(50).await;
        server.shut_down();
        assert_eq!(server.health().await, StatusCode::SERVICE_UNAVAILABLE);
        upstream.release();
        all_ok(held, None).await;
        let ended = server.ended().await;
        assert!(ended.status.success(), "{ended:?}");
    })
    .await;
}

#[test]
fn start_up_errors_are_one_line_and_exit_code_2() {
    // Not a proxy component: one that exports nothing.
    let empty = tmp().join("serve-empty-component.wasm");
    std::fs::write(&empty, wat::parse_str("(component)").unwrap()).unwrap();
    let run = wasi_cache(["serve", "--addr", "127.0.0.1:0", empty.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.starts_with("error: ")
            && run
                .stderr
                .contains("not a wasi:http/proxy or wasi:http/service component")
            && run.stderr.contains("it exports nothing"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");

    // The address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = wasi_cache(["serve", "--addr", &addr, proxy_wasm().to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot listen on {addr}")),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");

    // A bad option.
    let run = wasi_cache(["serve", "--request-timeout", "soon", "x.wasm"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.starts_with("error: invalid value 'soon'"),
        "{run:?}"
    );
}

/// With `--max-instance-reuse-count 5`, one instance answers five requests in turn, then a
/// fresh one takes over; a trap ends its instance and fails only its own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_reused_and_a_trap_fails_only_its_request() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let server = Server::start(&upstream, &["--max-instance-reuse-count", "5"]);
        // wasmtime-wasi-http's pool may start a second instance when a request arrives before
        // the last one's instance is available again: counts interleave, never past five.
        let mut served = Vec::new();
        for _ in 0..20 {
            let reply = get(server.addr, "/_test/instance").await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            served.push(reply.body.trim().parse::<u32>().unwrap());
        }
        assert!(served.iter().all(|n| (1..=5).contains(n)), "{served:?}");
        assert!(
            served.iter().any(|n| *n >= 2),
            "no instance reused: {served:?}"
        );
        let trapped = get(server.addr, "/_test/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        // The server goes on answering from other instances.
        for _ in 0..3 {
            assert_eq!(
                get(server.addr, "/_test/instance").await.status,
                StatusCode::OK
            );
        }
        // Without the option, every request has an instance of its own.
        let fresh = Server::start(&upstream, &[]);
        for _ in 0..3 {
            assert_eq!(get(fresh.addr, "/_test/instance").await.body, "1\n");
        }
    })
    .await;
}

/// A vacancy a request keeps past its end (its handle leaked) is handed off once the request
/// ends, though its instance lives on: the next request for the key fetches it, where it would
/// otherwise wait out the hour-long `--vacancy-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacancy_held_past_its_request_is_handed_off_in_a_living_instance() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let options = [
            "--max-instance-reuse-count",
            "100",
            "--vacancy-timeout",
            "1h",
            "--request-timeout",
            "30s",
        ];
        let server = Server::start(&upstream, &options);
        assert_eq!(get(server.addr, "/_test/instance").await.body, "1\n");
        let leaked = get(server.addr, "/_test/leak-vacancy/kept").await;
        assert_eq!(
            (leaked.status, leaked.body.as_str()),
            (StatusCode::OK, "leaked\n")
        );
        // The same instance, still alive, took the leak.
        assert_eq!(get(server.addr, "/_test/instance").await.body, "2\n");
        let fetched = get(server.addr, "/kept").await;
        assert_eq!(fetched.status, StatusCode::OK, "{fetched:?}");
        assert_eq!(fetched.header("x-cache"), Some("MISS"));
        assert_eq!(fetched.body, "upstream says /kept");
        assert_eq!(upstream.seen("/kept"), 1);
        assert_eq!(get(server.addr, "/_test/instance").await.body, "3\n");
    })
    .await;
}

/// The memory budget is the instance's, and a request gives back what it held: thirty hits of
/// a 400 KB response in one instance whose budget holds two of them all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_does_not_leak_across_the_requests_of_an_instance() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let options = [
            "--max-instance-reuse-count",
            "100",
            "--memory-budget",
            "1MiB",
            "--max-value-size",
            "512KiB",
        ];
        let server = Server::start(&upstream, &options);
        assert_eq!(get(server.addr, "/_test/instance").await.body, "1\n");
        for i in 0..30 {
            let reply = get(server.addr, "/big/400000").await;
            assert_eq!(reply.status, StatusCode::OK, "request {i}: {reply:?}");
            assert_eq!(reply.body.len(), 400_000);
            let expected = if i == 0 { "MISS" } else { "HIT" };
            assert_eq!(reply.header("x-cache"), Some(expected), "request {i}");
        }
        // The pool may have spread them over a few instances, each serving many: three leaked
        // values would pass a budget that holds two.
    })
    .await;
}

/// An instance computing past the shutdown timeout (its request's own timeout far off) does not
/// hold up the server's exit: it is dropped at its next epoch yield.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computing_instance_does_not_hold_up_the_shutdown() {
    guarded(proxy_wasm, async {
        let upstream = Upstream::start().await;
        let options = [
            "--admin-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "1h",
            "--shutdown-timeout",
            "1s",
        ];
        let mut server = Server::start(&upstream, &options);
        let spinning = tokio::spawn(get(server.addr, "/_test/spin"));
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 1.0)
            .await;
        server.shut_down();
        let ended = server.ended().await;
        assert!(ended.status.success(), "{ended:?}");
        // Answered 503, or its connection closed with the server: either way, over.
        let _ = spinning.await;
    })
    .await;
}
