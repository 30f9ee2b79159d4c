//! The baseline of the `serve` bench: a `wasi:http/proxy` component that answers every request
//! with `200`, `content-type: text/plain` and the same 1 KiB body, touching neither the cache nor
//! the network. Served by `wasi-cache serve`, it measures what the server and one fresh instance
//! per request cost, which a cache hit through the proxy example cannot go below.

use wstd::http::{Body, Error, Request, Response};

/// The body: 1 KiB, the size of the upstream's cached page in the bench.
const BODY: &[u8; 1024] = &[b'x'; 1024];

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from(&BODY[..]))?)
}
