//! `wasi-cache serve` under hostile clients, over real loopback sockets: the connection cap,
//! the limits on request heads, a stalled body and a client that stops reading losing their
//! request slot, an instance stopped when its client goes away, and one address unable to take
//! every slot. Where the two WASI flavours take different paths (how a body is read, how an
//! instance ends), each test runs on both: the WASI 0.2 caching proxy (`examples/http-proxy`)
//! in front of an upstream written here, and the WASI 0.3 test guest
//! (`crates/cli/tests/serve-p3-guest`). Each slot test sets `--request-timeout` far beyond the
//! hang guard, so that only the limit under test can free the slot in time.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use common::serve::{Server, get, guarded};
use common::tmp;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wasi_cache_guest_build as guest_build;
use wasmtime_wasi_http::io::TokioIo;

/// Longer than any test's hang guard: a slot freed in time was freed by the limit under test.
const NEVER: &str = "600s";

/// A response larger than what loopback sockets with a small receive buffer absorb.
const BIG: usize = 12 << 20;

fn proxy_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::HTTP_PROXY_TEST, tmp()))
}

fn service_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::SERVE_P3, tmp()))
}

/// Which component a test serves, and its routes for what the tests need.
#[derive(Debug, Clone, Copy)]
enum Flavour {
    /// The WASI 0.2 caching proxy, in front of [`upstream`].
    P2,
    /// The WASI 0.3 test guest.
    P3,
}

impl Flavour {
    /// A server of this flavour's component with its admin endpoint and `options`.
    async fn start(self, options: &[&str]) -> Server {
        let admin = ["--admin-addr", "127.0.0.1:0"];
        match self {
            Flavour::P2 => {
                let upstream = format!("UPSTREAM=http://{}", upstream().await);
                // A loopback upstream must be allowed.
                let env = ["--env", upstream.as_str(), "--allow-outbound", "127.0.0.1"];
                Server::spawn(proxy_wasm(), &[&admin[..], &env, options].concat())
            }
            Flavour::P3 => Server::spawn(service_wasm(), &[&admin[..], options].concat()),
        }
    }

    /// A route whose instance runs until stopped (waiting on the upstream, or sleeping).
    fn endless(self) -> &'static str {
        match self {
            Flavour::P2 => "/hold/forever",
            Flavour::P3 => "/sleep/3600000",
        }
    }

    /// A route answered at once with 200.
    fn quick(self) -> &'static str {
        match self {
            Flavour::P2 => "/quick",
            Flavour::P3 => "/url",
        }
    }

    /// A route whose response is [`BIG`] bytes.
    fn big(self) -> String {
        match self {
            Flavour::P2 => "/big".to_owned(),
            Flavour::P3 => format!("/big/{BIG}"),
        }
    }

    /// A `POST` route whose component reads the request's body to its end.
    fn body(self) -> &'static str {
        // The proxy passes a POST to the upstream, which reads its body.
        "/body"
    }
}

/// Starts the WASI 0.2 proxy's upstream: `/hold/…` never answers, `/big` answers [`BIG`]
/// bytes, a `POST` is read to its end and answered with its length, the rest with `ok`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let path = request.uri().path().to_owned();
                let body = if path.starts_with("/hold/") {
                    std::future::pending::<()>().await;
                    unreachable!()
                } else if path == "/big" {
                    Bytes::from(vec![b'x'; BIG])
                } else if request.method() == hyper::Method::POST {
                    let read = request.into_body().collect().await;
                    let length = read.map_or(0, |body| body.to_bytes().len());
                    Bytes::from(format!("read {length} bytes\n"))
                } else {
                    Bytes::from_static(b"ok\n")
                };
                let response = Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(Full::new(body))
                    .unwrap();
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A connection to `addr` from the loopback address `from`, with a small receive buffer (so
/// that a response it does not read fills the sockets soon).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let from: IpAddr = from.parse().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A `GET path` request's bytes, asking the server to close the connection after it.
fn get_bytes(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").into_bytes()
}

/// Sends `request` on `stream` and reads the server's answer to the connection's end: the
/// status line's code and the whole text (`None`: the connection was reset instead).
async fn exchange(mut stream: TcpStream, request: &[u8]) -> Option<(u16, String)> {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {answer:?}"));
    Some((status, answer))
}

/// `GET path` from the loopback address `from`: its status.
async fn get_from(from: &str, addr: SocketAddr, path: &str) -> u16 {
    let stream = connect_from(from, addr).await;
    let (status, answer) = exchange(stream, &get_bytes(path))
        .await
        .expect("a response");
    assert!(status != 0, "{answer}");
    status
}

/// Sends `GET path` from `from` and leaves the request open (its instance running); the
/// connection is returned to be held or dropped.
async fn start_request(from: &str, server: &Server, path: &str) -> TcpStream {
    let mut stream = connect_from(from, server.addr).await;
    stream.write_all(&get_bytes(path)).await.unwrap();
    stream
}

/// Waits until the gauge `name` equals `value`.
async fn wait_for_gauge(server: &Server, name: &str, value: f64) {
    while server.metric(name, &[]).await != value {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The count of `limit`'s refusals and cuts.
async fn limited(server: &Server, limit: &str) -> f64 {
    server
        .metric("wasi_cache_http_limited_total", &[("limit", limit)])
        .await
}

/// Waits until `limit` has refused or cut `count` in all (the count may land just after the
/// client saw its connection closed).
async fn wait_for_limited(server: &Server, limit: &str, count: f64) {
    while limited(server, limit).await < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limited(server, limit).await, count);
}

const SLOTS: &str = "wasi_cache_http_request_slots_used";
const CONNECTIONS: &str = "wasi_cache_http_connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_are_closed_at_once_and_the_others_served() {
    guarded(service_wasm, async {
        let server = Flavour::P3
            .start(&["--max-concurrent-connections", "3"])
            .await;
        // A keep-alive client, served before and after the flood.
        let mut client = common::http::connect(server.addr).await;
        let ask = |path| common::http::get_request(server.addr, path);
        let first = client.send_request(ask("/url")).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        first.into_body().collect().await.unwrap();
        let mut idle = vec![
            TcpStream::connect(server.addr).await.unwrap(),
            TcpStream::connect(server.addr).await.unwrap(),
        ];
        wait_for_gauge(&server, CONNECTIONS, 3.0).await;
        for _ in 0..5 {
            // Reset so soon that the connect itself may see it.
            let Ok(mut refused) = TcpStream::connect(server.addr).await else {
                continue;
            };
            let _ = refused.write_all(&get_bytes("/url")).await;
            let mut answer = Vec::new();
            // Closed at once: the end of the stream or a reset, never an answer.
            if refused.read_to_end(&mut answer).await.is_ok() {
                assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
            }
        }
        wait_for_limited(&server, "max-concurrent-connections", 5.0).await;
        assert_eq!(server.metric(CONNECTIONS, &[]).await, 3.0);
        let again = client.send_request(ask("/url")).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        // A connection closed makes room for a new one.
        drop(idle.pop());
        wait_for_gauge(&server, CONNECTIONS, 2.0).await;
        let reply = get(server.addr, "/url").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_overlong_request_heads_are_refused_with_431() {
    guarded(service_wasm, async {
        let options = [
            "--max-request-header-size",
            "16KiB",
            "--max-request-headers",
            "20",
        ];
        let server = Flavour::P3.start(&options).await;
        // 30 small headers: read whole, answered 431.
        let mut many = String::from("GET /url HTTP/1.1\r\nhost: test\r\n");
        for i in 0..30 {
            many.push_str(&format!("x-header-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (status, answer) = exchange(stream, many.as_bytes()).await.expect("an answer");
        assert_eq!(status, 431, "{answer}");
        wait_for_limited(&server, "max-request-header-size", 1.0).await;
        // One 20,000-byte header: 431, or a reset when the server closes with the rest of the
        // head unread; the metric counts it either way.
        let big = format!(
            "GET /url HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n",
            "x".repeat(20_000)
        );
        let stream = TcpStream::connect(server.addr).await.unwrap();
        if let Some((status, answer)) = exchange(stream, big.as_bytes()).await {
            assert_eq!(status, 431, "{answer}");
        }
        wait_for_limited(&server, "max-request-header-size", 2.0).await;
        // Within both limits: served.
        let mut fine = String::from("GET /url HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
        for i in 0..10 {
            fine.push_str(&format!("x-header-{i}: {}\r\n", "v".repeat(1000)));
        }
        fine.push_str("\r\n");
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (status, answer) = exchange(stream, fine.as_bytes()).await.expect("an answer");
        assert_eq!(status, 200, "{answer}");
    })
    .await;
}

/// With one request slot: a client that sends its headers and then its body a byte a second
/// gets a 408 at `--body-read-timeout`, its instance stopped and the slot free for the next.
async fn a_stalled_body_loses_its_slot(flavour: Flavour) {
    let options = [
        "--max-concurrent-requests",
        "1",
        "--body-read-timeout",
        "500ms",
        "--request-timeout",
        NEVER,
    ];
    let server = flavour.start(&options).await;
    let mut stream = connect_from("127.0.0.1", server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n",
        flavour.body()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{flavour:?}: {answer:?}"
    );
    trickle.abort();
    assert_eq!(limited(&server, "body-read-timeout").await, 1.0);
    assert_eq!(server.metric(SLOTS, &[]).await, 0.0);
    assert_eq!(
        get_from("127.0.0.1", server.addr, flavour.quick()).await,
        200
    );
    // A body sent at once is read whole.
    let whole = format!(
        "POST {} HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        flavour.body()
    );
    let stream = connect_from("127.0.0.1", server.addr).await;
    let (status, answer) = exchange(stream, whole.as_bytes()).await.expect("an answer");
    assert_eq!(status, 200, "{flavour:?}: {answer}");
    // The body may be chunked: its text is in it whole.
    assert!(answer.contains("read 5 bytes\n"), "{flavour:?}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_loses_its_slot_p2() {
    guarded(proxy_wasm, a_stalled_body_loses_its_slot(Flavour::P2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_loses_its_slot_p3() {
    guarded(service_wasm, a_stalled_body_loses_its_slot(Flavour::P3)).await;
}

/// With one request slot: a client that asks for a large response and never reads it loses
/// its connection at `--response-write-timeout`, its instance stopped and the slot freed.
async fn a_client_that_stops_reading_loses_its_slot(flavour: Flavour) {
    let options = [
        "--max-concurrent-requests",
        "1",
        "--response-write-timeout",
        "1s",
        "--request-timeout",
        NEVER,
    ];
    let server = flavour.start(&options).await;
    let unread = start_request("127.0.0.1", &server, &flavour.big()).await;
    wait_for_limited(&server, "response-write-timeout", 1.0).await;
    wait_for_gauge(&server, SLOTS, 0.0).await;
    assert_eq!(
        get_from("127.0.0.1", server.addr, flavour.quick()).await,
        200
    );
    drop(unread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_slot_p2() {
    guarded(
        proxy_wasm,
        a_client_that_stops_reading_loses_its_slot(Flavour::P2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_slot_p3() {
    guarded(
        service_wasm,
        a_client_that_stops_reading_loses_its_slot(Flavour::P3),
    )
    .await;
}

/// With one request slot: the instance of a request whose client closes its connection before
/// the response is stopped, and the slot is free for the next request.
async fn a_disconnected_clients_instance_is_stopped(flavour: Flavour) {
    let options = ["--max-concurrent-requests", "1", "--request-timeout", NEVER];
    let server = flavour.start(&options).await;
    let gone = start_request("127.0.0.1", &server, flavour.endless()).await;
    wait_for_gauge(&server, SLOTS, 1.0).await;
    // Held: the one slot is taken.
    assert_eq!(
        get_from("127.0.0.2", server.addr, flavour.quick()).await,
        503
    );
    drop(gone);
    wait_for_gauge(&server, SLOTS, 0.0).await;
    let abandoned = server
        .metric("wasi_cache_http_abandoned_instances_total", &[])
        .await;
    assert_eq!(abandoned, 1.0);
    assert_eq!(
        get_from("127.0.0.1", server.addr, flavour.quick()).await,
        200
    );
    // A response sent whole stops nothing.
    let abandoned = server
        .metric("wasi_cache_http_abandoned_instances_total", &[])
        .await;
    assert_eq!(abandoned, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_clients_instance_is_stopped_p2() {
    guarded(
        proxy_wasm,
        a_disconnected_clients_instance_is_stopped(Flavour::P2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_clients_instance_is_stopped_p3() {
    guarded(
        service_wasm,
        a_disconnected_clients_instance_is_stopped(Flavour::P3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_cannot_take_every_slot() {
    guarded(service_wasm, async {
        let flavour = Flavour::P3;
        let options = [
            "--max-concurrent-requests",
            "8",
            "--max-requests-per-client",
            "2",
            "--request-timeout",
            NEVER,
        ];
        let server = flavour.start(&options).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(start_request("127.0.0.1", &server, flavour.endless()).await);
        }
        wait_for_gauge(&server, SLOTS, 2.0).await;
        // Its third is refused at once; another address is served.
        assert_eq!(
            get_from("127.0.0.1", server.addr, flavour.quick()).await,
            429
        );
        assert_eq!(limited(&server, "max-requests-per-client").await, 1.0);
        assert_eq!(
            get_from("127.0.0.2", server.addr, flavour.quick()).await,
            200
        );
        // One of its own ended: it may send another.
        drop(held.pop());
        wait_for_gauge(&server, SLOTS, 1.0).await;
        assert_eq!(
            get_from("127.0.0.1", server.addr, flavour.quick()).await,
            200
        );
    })
    .await;
}
