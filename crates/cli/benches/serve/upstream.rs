//! The bench's upstream, served in-process with hyper on a loopback port: `/hit/…` answers at
//! once, `/cold/…` after [`COLD_LATENCY`], both `200` with a 1 KiB body and
//! `Cache-Control: max-age=600` (long enough that nothing the bench caches expires during a run);
//! `/swr/…` after [`COLD_LATENCY`] too, fresh for one second and then stale for ten minutes
//! (`max-age=1, stale-while-revalidate=600`): revalidated about once a second under load.
//! Anything else is a 404. It counts the requests it receives, per path, and notes when the
//! first one arrived, so the bench can tell what the proxy really fetched, and when.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wasmtime_wasi_http::io::TokioIo;

/// How long the upstream takes to answer `/cold/…`.
pub const COLD_LATENCY: Duration = Duration::from_millis(300);

/// The body of every page: 1 KiB, the size the constant component answers with.
static BODY: [u8; 1024] = [b'u'; 1024];

/// Requests received so far, per path, and when the first arrived.
type Seen = Arc<Mutex<HashMap<String, (usize, Instant)>>>;

/// A running upstream; it stops accepting connections when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Seen,
    accepting: JoinHandle<()>,
}

impl Upstream {
    /// Starts the upstream on a free loopback port, on the current Tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let counts = seen.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        answer(counts.clone(), request)
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
            accepting,
        }
    }

    /// The requests received for `path`.
    pub fn seen(&self, path: &str) -> usize {
        self.seen.lock().unwrap().get(path).map_or(0, |(n, _)| *n)
    }

    /// When the first request for `path` arrived, if one did.
    pub fn first_seen(&self, path: &str) -> Option<Instant> {
        self.seen.lock().unwrap().get(path).map(|(_, first)| *first)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Counts `request` and answers it.
async fn answer(
    seen: Seen,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let cold = path.starts_with("/cold/");
    let revalidated = path.starts_with("/swr/");
    let known = cold || revalidated || path.starts_with("/hit/");
    seen.lock()
        .unwrap()
        .entry(path)
        .or_insert((0, Instant::now()))
        .0 += 1;
    if !known {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    if cold || revalidated {
        tokio::time::sleep(COLD_LATENCY).await;
    }
    let control = match revalidated {
        true => "max-age=1, stale-while-revalidate=600",
        false => "max-age=600",
    };
    let response = Response::builder()
        .header("content-type", "text/plain")
        .header("cache-control", control)
        .body(Full::new(Bytes::from_static(&BODY)))
        .unwrap();
    Ok(response)
}
