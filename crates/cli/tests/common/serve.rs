//! The `serve` tests' client and server, for both flavours (a WASI 0.2 `wasi:http/proxy` in
//! `tests/serve.rs`, a WASI 0.3 `wasi:http/service` in `tests/serve_p3.rs`): a `wasi-cache serve`
//! process on a free loopback port ([`Server`]), its admin endpoint's metrics ([`Metrics`]), and
//! `GET`s on connections of their own ([`get`]) under a hang guard ([`guarded`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::header::HeaderMap;

use super::{Ended, Proc, STARTUP};

/// A generous bound on any test's run (a hang guard, never a measurement).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// A `wasi-cache serve` of a component on a free loopback port.
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// The admin endpoint's address, when started with `--admin-addr`.
    pub admin: Option<SocketAddr>,
}

impl Server {
    /// Starts `wasi-cache serve --addr 127.0.0.1:0 OPTIONS… WASM` and waits for it to listen
    /// (and, with `--admin-addr` among the options, for its admin endpoint).
    pub fn spawn(wasm: &Path, options: &[&str]) -> Self {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
        args.extend(options);
        args.push(wasm.to_str().unwrap());
        let mut proc = Proc::spawn(&args);
        // The admin endpoint is announced first.
        let admin = options.contains(&"--admin-addr").then(|| {
            let line =
                proc.expect_line_with("wasi-cache serve: admin endpoint on http://", STARTUP);
            address_in(&line)
        });
        let line = proc.expect_line_with("wasi-cache serve: listening on http://", STARTUP);
        Self {
            proc,
            addr: address_in(&line),
            admin,
        }
    }

    /// Sends SIGTERM to the server and waits for it to announce its shutdown.
    pub fn shut_down(&mut self) {
        self.proc.terminate();
        self.proc
            .expect_line_with("wasi-cache serve: shutting down", STARTUP);
    }

    /// Waits (at most the [`HANG_GUARD`]) for the server process to end.
    pub async fn ended(self) -> Ended {
        tokio::task::spawn_blocking(move || self.proc.wait(HANG_GUARD))
            .await
            .unwrap()
    }

    /// The admin endpoint's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("started with --admin-addr")
    }

    /// Scrapes the admin endpoint's `/metrics`, parsed by a Prometheus text parser.
    pub async fn metrics(&self) -> Metrics {
        let reply = get(self.admin(), "/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let lines = reply.body.lines().map(|line| Ok(line.to_owned()));
        Metrics(prometheus_parse::Scrape::parse(lines).unwrap())
    }

    /// The value of the metric sample `name` with exactly these `labels`, in a fresh scrape
    /// ([`Metrics::value`]).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics().await.value(name, labels)
    }

    /// The admin endpoint's `/healthz` status.
    pub async fn health(&self) -> StatusCode {
        get(self.admin(), "/healthz").await.status
    }

    /// Waits until the metric `name` (no labels) reaches `at_least`.
    pub async fn wait_for_metric(&self, name: &str, at_least: f64) {
        while self.metric(name, &[]).await < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The address at the end of a start-up line (`… http://ADDR`).
pub fn address_in(line: &str) -> SocketAddr {
    line.rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"))
}

/// One scrape of `/metrics`.
pub struct Metrics(pub prometheus_parse::Scrape);

impl Metrics {
    /// The value of the sample `name` with exactly these `labels` (0 when absent: a counter
    /// never bumped), or a histogram's count.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value;
        let sample = self.0.samples.iter().find(|sample| {
            sample.metric == name
                && sample.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(value))
        });
        match sample.map(|sample| &sample.value) {
            None => 0.0,
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            Some(Value::Histogram(buckets)) => buckets
                .iter()
                .find(|bucket| bucket.less_than.is_infinite())
                .map_or(0.0, |bucket| bucket.count),
            Some(other) => panic!("{name}: unexpected {other:?}"),
        }
    }
}

/// What a response said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The header `name`'s value, if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// `GET path` on a connection of its own.
pub async fn get(addr: SocketAddr, path: impl AsRef<str>) -> Reply {
    let mut sender = super::http::connect(addr).await;
    let response = sender
        .send_request(super::http::get_request(addr, path.as_ref()))
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Awaits every request, checking that each got a `200` (and, given one, this body).
pub async fn all_ok(
    requests: Vec<tokio::task::JoinHandle<Reply>>,
    body: Option<&str>,
) -> Vec<Reply> {
    let mut replies = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        if let Some(body) = body {
            assert_eq!(reply.body, body);
        }
        replies.push(reply);
    }
    replies
}

/// Runs `test` under the [`HANG_GUARD`], once `build` built the component (which may take
/// minutes).
pub async fn guarded(build: fn() -> &'static Path, test: impl Future<Output = ()>) {
    tokio::task::spawn_blocking(build).await.unwrap();
    tokio::time::timeout(HANG_GUARD, test)
        .await
        .expect("the test hung");
}
