//! `wasi-cache serve` of a WASI 0.3 `wasi:http/service` component end to end: the test guest
//! `crates/cli/tests/serve-p3-guest` (see its routes there), served on a loopback port and driven
//! by a real HTTP client, gets what a WASI 0.2 `wasi:http/proxy` gets (`tests/serve.rs`): one
//! instance per request on one shared cache, 503 above `--max-concurrent-requests`, 504 past
//! `--request-timeout`, 500 for a trap, metrics, a graceful shutdown. Every server process is
//! killed when its test ends ([`Proc`]'s drop).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Proc, STARTUP, tmp, wasi_cache};
use http_body_util::BodyExt;
use hyper::StatusCode;
use wasi_cache_guest_build as guest_build;

/// A generous bound on any test's run (a hang guard, never a measurement).
const HANG_GUARD: Duration = Duration::from_secs(120);

fn service_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::SERVE_P3, tmp()))
}

/// A `wasi-cache serve` of the test guest on a free loopback port, with its admin endpoint.
struct Server {
    proc: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    fn start(options: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ];
        args.extend(options);
        args.push(service_wasm().to_str().unwrap());
        let mut proc = Proc::spawn(&args);
        // The admin endpoint is announced first.
        let admin = proc.expect_line_with("wasi-cache serve: admin endpoint on http://", STARTUP);
        let line = proc.expect_line_with("wasi-cache serve: listening on http://", STARTUP);
        Self {
            proc,
            addr: address_in(&line),
            admin: address_in(&admin),
        }
    }

    /// The value of the metric sample `name` with exactly these `labels` (0 when absent).
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value;
        let reply = get(self.admin, "/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let lines = reply.body.lines().map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let sample = scrape.samples.iter().find(|sample| {
            sample.metric == name
                && sample.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(value))
        });
        match sample.map(|sample| &sample.value) {
            None => 0.0,
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            Some(other) => panic!("{name}: unexpected {other:?}"),
        }
    }

    /// Waits until the metric `name` (no labels) reaches `at_least`.
    async fn wait_for_metric(&self, name: &str, at_least: f64) {
        while self.metric(name, &[]).await < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The address at the end of a start-up line (`… http://ADDR`).
fn address_in(line: &str) -> SocketAddr {
    line.rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"))
}

/// What a response said.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: StatusCode,
    /// The guest's `x-computed` header: whether this request computed the value.
    computed: Option<String>,
    body: String,
}

/// `GET path` on a connection of its own.
async fn get(addr: SocketAddr, path: impl AsRef<str>) -> Reply {
    let mut sender = common::http::connect(addr).await;
    let response = sender
        .send_request(common::http::get_request(addr, path.as_ref()))
        .await
        .unwrap();
    let status = response.status();
    let computed = response
        .headers()
        .get("x-computed")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        computed,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Runs `test` under the [`HANG_GUARD`], once the guest is built (which may take minutes).
async fn guarded(test: impl Future<Output = ()>) {
    tokio::task::spawn_blocking(service_wasm).await.unwrap();
    tokio::time::timeout(HANG_GUARD, test)
        .await
        .expect("the test hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_of_100_requests_computes_once_on_the_shared_cache() {
    guarded(async {
        let server = Server::start(&[]);
        let requests: Vec<_> = (0..100)
            .map(|_| tokio::spawn(get(server.addr, "/memo/stampede")))
            .collect();
        let mut replies = Vec::new();
        for request in requests {
            let reply = request.await.unwrap();
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            replies.push(reply);
        }
        let computed = replies
            .iter()
            .filter(|reply| reply.computed.as_deref() == Some("yes"))
            .count();
        assert_eq!(computed, 1, "{replies:?}");
        let value = &replies[0].body;
        assert!(value.starts_with("value "), "{value:?}");
        assert!(
            replies.iter().all(|reply| &reply.body == value),
            "{replies:?}"
        );
        // A later instance reads it too; another key is computed on its own.
        let later = get(server.addr, "/memo/stampede").await;
        assert_eq!(later.computed.as_deref(), Some("no"));
        assert_eq!(&later.body, value);
        let other = get(server.addr, "/memo/other").await;
        assert_eq!(other.computed.as_deref(), Some("yes"));
        assert_ne!(&other.body, value);
        // The metrics count every request, and the cache's one fill.
        let answered = server
            .metric("wasi_cache_http_requests_total", &[("class", "2xx")])
            .await;
        assert_eq!(answered, 102.0);
        assert_eq!(server.metric("wasi_cache_fills_total", &[]).await, 2.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_sees_the_url_it_was_asked_for() {
    guarded(async {
        let server = Server::start(&[]);
        let reply = get(server.addr, "/url").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, format!("http://{}/url", server.addr));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_for_that_request_only() {
    guarded(async {
        let server = Server::start(&[]);
        let during = tokio::spawn(get(server.addr, "/memo/beside-a-trap"));
        let trapped = get(server.addr, "/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(trapped.body, "the component trapped\n");
        let beside = during.await.unwrap();
        assert_eq!(beside.status, StatusCode::OK, "{beside:?}");
        let after = get(server.addr, "/memo/after-a-trap").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
        // An `error-code` instead of a response is a 500 too.
        let error = get(server.addr, "/error").await;
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR, "{error:?}");
        assert_eq!(error.body, "the component failed to answer\n");
        let failed = server
            .metric("wasi_cache_http_requests_total", &[("class", "5xx")])
            .await;
        assert_eq!(failed, 2.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_gets_504_and_the_server_stays_healthy() {
    guarded(async {
        let server = Server::start(&["--request-timeout", "2s"]);
        // Holding a key's vacancy forever (blocked in the guest's own wait: stopped by the
        // host's timer), and computing forever (stopped by epoch interruption).
        let (held, spun) = tokio::join!(get(server.addr, "/hold/k"), get(server.addr, "/spin"));
        assert_eq!(held.status, StatusCode::GATEWAY_TIMEOUT, "{held:?}");
        assert_eq!(spun.status, StatusCode::GATEWAY_TIMEOUT, "{spun:?}");
        // The held vacancy went with the dropped instance: the next request for the key
        // computes it (had it stayed held, this request would wait for the 30 s vacancy
        // timeout, past its own 2 s limit).
        let after = get(server.addr, "/memo/k").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
        assert_eq!(after.computed.as_deref(), Some("yes"));
        assert_eq!(get(server.admin, "/healthz").await.status, StatusCode::OK);
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 0.0)
            .await;
        assert_eq!(
            server
                .metric("wasi_cache_http_requests_in_flight", &[])
                .await,
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_above_the_limit_get_503_and_the_server_keeps_serving() {
    guarded(async {
        let server = Server::start(&["--max-concurrent-requests", "2", "--request-timeout", "3s"]);
        let held: Vec<_> = ["/hold/a", "/hold/b"]
            .into_iter()
            .map(|path| tokio::spawn(get(server.addr, path)))
            .collect();
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 2.0)
            .await;
        for _ in 0..3 {
            let refused = get(server.addr, "/memo/refused").await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{refused:?}"
            );
        }
        for request in held {
            let reply = request.await.unwrap();
            assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{reply:?}");
        }
        let reply = get(server.addr, "/memo/refused").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.computed.as_deref(), Some("yes"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    guarded(async {
        let mut server = Server::start(&[]);
        // All in flight when the signal comes (they arrive within milliseconds; 3 s is a
        // margin for that, not a measurement).
        let requests: Vec<_> = (0..20)
            .map(|_| tokio::spawn(get(server.addr, "/sleep/3000")))
            .collect();
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 20.0)
            .await;
        server.proc.terminate();
        server
            .proc
            .expect_line_with("wasi-cache serve: shutting down", STARTUP);
        for request in requests {
            let reply = request.await.unwrap();
            assert_eq!(reply.body, "slept\n", "{reply:?}");
        }
        let ended = tokio::task::spawn_blocking(move || server.proc.wait(HANG_GUARD))
            .await
            .unwrap();
        assert!(ended.status.success(), "{ended:?}");
    })
    .await;
}

#[test]
fn a_component_of_the_wrong_shape_is_one_error_line() {
    // A component exporting an interface of its own, no HTTP handler.
    let other = tmp().join("serve-p3-other-export.wasm");
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $api (export "f" (func $f)))
        (export "example:other/api" (instance $api)))"#;
    std::fs::write(&other, wat::parse_str(wat).unwrap()).unwrap();
    let run = wasi_cache(["serve", "--addr", "127.0.0.1:0", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let line = run.stderr.trim_end();
    assert!(
        line.starts_with("error: ")
            && line.contains("is not a wasi:http/proxy or wasi:http/service component")
            && line.contains("wasi:http/handler@0.3.x")
            && line.ends_with("it exports example:other/api"),
        "{run:?}"
    );
}
