//! What the WASI 0.3 side of `serve` adds to a request before wasmtime-wasi-http's handler
//! gives it to a `wasi:http/service` component: the scheme and authority a WASI 0.2 component
//! is given too ([`absolute`]).

use hyper::header::HOST;
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{Request, Uri};

use super::stall::TimedBody;

/// `request` with the scheme and authority a WASI 0.2 component is given too (the `http` scheme;
/// the `Host` header when the request line has no authority, its usual origin form), so that a
/// component of either flavour can rebuild the URL it was asked for. Left as it is when the
/// `Host` header is missing or invalid.
pub fn absolute(mut request: Request<TimedBody>) -> Request<TimedBody> {
    let mut parts = request.uri().clone().into_parts();
    if parts.authority.is_none() {
        parts.authority = request
            .headers()
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.parse().ok());
    }
    parts.scheme.get_or_insert(Scheme::HTTP);
    parts
        .path_and_query
        .get_or_insert(PathAndQuery::from_static("/"));
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}
