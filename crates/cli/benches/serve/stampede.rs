//! The cold stampede: many concurrent `GET`s of one path nobody asked for yet, each on its own
//! connection. Every connection is opened first and every request armed; then all are released
//! at one instant, and each request's latency runs from that instant to the end of its body.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use tokio::sync::{Semaphore, watch};

/// What one request of the stampede got.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status, or `None` when the request failed (connection reset, say).
    pub status: Option<u16>,
    /// The `x-cache` header: `HIT`, `MISS` or `WAIT`.
    pub x_cache: Option<String>,
    /// From the release to the end of the body (or to the failure).
    pub latency: Duration,
}

/// Every request's reply, in no particular order.
pub struct Outcome {
    /// When the requests were released.
    pub released: Instant,
    /// The replies.
    pub replies: Vec<Reply>,
}

impl Outcome {
    /// The number of `200`s.
    pub fn ok(&self) -> usize {
        self.replies
            .iter()
            .filter(|reply| reply.status == Some(200))
            .count()
    }

    /// How many replies had each `x-cache` value (`-` for none).
    pub fn by_cache(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for reply in &self.replies {
            let how = reply.x_cache.clone().unwrap_or_else(|| "-".to_owned());
            *counts.entry(how).or_insert(0) += 1;
        }
        counts
    }

    /// The latency below which `share` (0 to 1) of the requests finished (nearest rank).
    pub fn percentile(&self, share: f64) -> Duration {
        let mut latencies: Vec<Duration> = self.replies.iter().map(|reply| reply.latency).collect();
        latencies.sort();
        let rank = (share * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    }
}

/// Fails, saying how to fix it, when the open-file limit cannot hold `connections` sockets
/// (the server, which inherits the limit, needs as many). Reads `/proc/self/limits`; elsewhere
/// it does not check.
pub fn check_open_files(connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    // Room for the runtime, the pipes and the servers' own files.
    let needed = connections + 256;
    if let Some(soft) = soft {
        assert!(
            soft >= needed,
            "the open-file limit is {soft}, the stampede of {connections} connections needs \
             about {needed}: raise it first (`ulimit -n 4096`; serve.sh does)"
        );
    }
}

/// Opens `n` connections to `addr`, arms a `GET path` on each, releases them all at once and
/// waits for every reply.
pub async fn run(addr: SocketAddr, path: &str, n: usize) -> Outcome {
    let (release, released) = watch::channel(None::<Instant>);
    let armed = Arc::new(Semaphore::new(0));
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sender = crate::common::http::connect(addr).await;
        let request = crate::common::http::get_request(addr, path);
        let (armed, mut released) = (armed.clone(), released.clone());
        requests.push(tokio::spawn(async move {
            armed.add_permits(1);
            let start = released
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|start| *start)
                .unwrap();
            let (status, x_cache) = match send(&mut sender, request).await {
                Some((status, x_cache)) => (Some(status), x_cache),
                None => (None, None),
            };
            Reply {
                status,
                x_cache,
                latency: start.elapsed(),
            }
        }));
    }
    let all = u32::try_from(n).expect("fewer than 2^32 requests");
    let _every_request_armed = armed.acquire_many(all).await.unwrap();
    let released = Instant::now();
    release.send_replace(Some(released));
    let mut replies = Vec::with_capacity(n);
    for request in requests {
        replies.push(request.await.unwrap());
    }
    Outcome { released, replies }
}

/// Sends `request` and reads the whole response: its status and `x-cache`, or `None` when the
/// exchange failed.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Option<(u16, Option<String>)> {
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let x_cache = response
        .headers()
        .get("x-cache")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    response.into_body().collect().await.ok()?;
    Some((status, x_cache))
}
