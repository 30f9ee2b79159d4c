//! A caching reverse proxy, as a `wasi:http/proxy` component on the wasi-cache-guest SDK.
//!
//! It forwards requests to the base URL in the environment variable `UPSTREAM`. A `GET` goes
//! through the cache, keyed by method and path: concurrent requests for a missing key meet in a
//! get-or-set rendezvous, so the upstream sees one request however many arrive at once. Every
//! response says how it was served in `x-cache`: `HIT` (from the cache), `MISS` (this request
//! fetched it) or `WAIT` (it waited for another request's fetch). A response is stored for its
//! `Cache-Control: max-age` (60 s by default); one marked `no-store` or `private`, or with a
//! status other than 2xx, is not stored, and the vacancy is dropped so that a waiting request
//! fetches instead. Other methods pass through uncached; an unreachable upstream is a 502.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasi_cache_guest::{Cache, Entry};
use wstd::http::{Body, Client, Error, HeaderValue, Method, Request, Response, StatusCode};

/// How long a response without `max-age` is cached.
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// The upstream headers kept with a cached response.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "cache-control",
    "etag",
    "last-modified",
    "content-language",
];

/// A response as the cache stores it.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    #[cfg(feature = "test-routes")]
    if let Some(response) = test_routes(&path).await? {
        return Ok(response);
    }
    let Ok(upstream) = std::env::var("UPSTREAM") else {
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UPSTREAM is not set (wasi-cache serve --env UPSTREAM=http://HOST:PORT)\n",
        ));
    };
    let url = format!("{}{path}", upstream.trim_end_matches('/'));
    if request.method() != Method::GET {
        return pass_through(request, &url).await;
    }
    let key = format!("GET {path}");
    let cache = Cache::new();
    if let Some(value) = cache.get_value(&key).await? {
        return respond(value.decode::<Cached>()?, "HIT");
    }
    match cache.entry(&key).await? {
        Entry::Occupied(value) => respond(value.decode::<Cached>()?, "WAIT"),
        Entry::Vacant(vacancy) => {
            let Ok(fetched) = fetch(&url).await else {
                // Nothing cached: the vacancy passes to a waiter, which tries for itself.
                vacancy.abandon();
                return Ok(text(
                    StatusCode::BAD_GATEWAY,
                    "the upstream is unreachable\n",
                ));
            };
            match ttl(&fetched) {
                Some(ttl) => vacancy.fill_as(&fetched, Some(ttl))?,
                None => vacancy.abandon(),
            }
            respond(fetched, "MISS")
        }
    }
}

/// Fetches `url` with a `GET`, keeping the status, the [`KEPT_HEADERS`] and the body.
async fn fetch(url: &str) -> Result<Cached, Error> {
    let request = Request::get(url).body(Body::empty())?;
    let response = Client::new().send(request).await?;
    let status = response.status().as_u16();
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?;
            Some(((*name).to_owned(), value.as_bytes().to_vec()))
        })
        .collect();
    let mut body = response.into_body();
    let body = body.contents().await?.to_vec();
    Ok(Cached {
        status,
        headers,
        body,
    })
}

/// How long `response` may be cached: `None` when it must not be (not 2xx, `no-store`,
/// `private`, `max-age=0`).
fn ttl(response: &Cached) -> Option<Duration> {
    if !(200..300).contains(&response.status) {
        return None;
    }
    let Some((_, control)) = response
        .headers
        .iter()
        .find(|(name, _)| name == "cache-control")
    else {
        return Some(DEFAULT_TTL);
    };
    let control = String::from_utf8_lossy(control).to_ascii_lowercase();
    let mut ttl = DEFAULT_TTL;
    for directive in control.split(',').map(str::trim) {
        if directive == "no-store" || directive == "private" {
            return None;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            ttl = Duration::from_secs(seconds.trim_matches('"').parse().ok()?);
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

/// The response for `cached`, marked with `x-cache: how`.
fn respond(cached: Cached, how: &'static str) -> Result<Response<Body>, Error> {
    let mut response = Response::builder().status(cached.status);
    for (name, value) in &cached.headers {
        response = response.header(name.as_str(), HeaderValue::from_bytes(value)?);
    }
    Ok(response
        .header("x-cache", how)
        .body(Body::from(cached.body))?)
}

/// Forwards a request other than `GET` to `url` uncached (its body and headers too).
async fn pass_through(request: Request<Body>, url: &str) -> Result<Response<Body>, Error> {
    let mut forwarded = Request::builder().method(request.method()).uri(url);
    for (name, value) in request.headers() {
        forwarded = forwarded.header(name, value);
    }
    let forwarded = forwarded.body(request.into_body())?;
    match Client::new().send(forwarded).await {
        Ok(response) => Ok(response),
        Err(_) => Ok(text(
            StatusCode::BAD_GATEWAY,
            "the upstream is unreachable\n",
        )),
    }
}

/// A plain-text response of the proxy's own.
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}

/// The tests' misbehaviours: `/_test/trap` traps; `/_test/spin` computes until stopped;
/// `/_test/trap-holding/PATH` takes the vacancy of `GET /PATH` (when the key is missing), asks
/// the upstream for `/hold/trap`, then traps while still holding the vacancy;
/// `/_test/late-body/PATH` answers with [`late_body`]'s report on `GET /PATH`.
#[cfg(feature = "test-routes")]
async fn test_routes(path: &str) -> Result<Option<Response<Body>>, Error> {
    match path {
        "/_test/trap" => panic!("trap requested by the test"),
        "/_test/spin" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/_test/trap-holding") {
        let upstream = std::env::var("UPSTREAM")?;
        if let Entry::Vacant(vacancy) = Cache::new().entry(&format!("GET {rest}")).await? {
            let _ = fetch(&format!("{upstream}/hold/trap")).await;
            let _holding = vacancy;
            panic!("trap requested by the test, holding the vacancy of {rest}");
        }
    }
    if let Some(rest) = path.strip_prefix("/_test/late-body") {
        return late_body(rest).await.map(Some);
    }
    Ok(None)
}

/// Looks `GET PATH` up in the cache (as the proxy does first), then sends the upstream a `GET
/// PATH` whose empty body it writes and finishes only once the response has arrived (a guest
/// may write its body at any time before it finishes it; a body written after `handle` returns
/// is what raced the sending of the request). A 200 saying `late body: STATUS` with the
/// upstream's status when the body could be written, else a 502 saying why not.
#[cfg(feature = "test-routes")]
async fn late_body(path: &str) -> Result<Response<Body>, Error> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    use wstd::runtime::AsyncPollable;

    let upstream = std::env::var("UPSTREAM")?;
    let authority = upstream.trim_start_matches("http://").trim_end_matches('/');
    let _ = Cache::new().get_value(&format!("GET {path}")).await?;
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |what: &str| Error::msg(format!("invalid {what}"));
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = request.body().map_err(|()| invalid("body"))?;
    let pending = outgoing_handler::handle(request, None)?;
    AsyncPollable::new(pending.subscribe()).wait_for().await;
    let status = match pending.get() {
        Some(Ok(Ok(response))) => response.status(),
        Some(Ok(Err(code))) => {
            let reason = format!("the request failed: {code:?}\n");
            return Ok(text_owned(StatusCode::BAD_GATEWAY, reason));
        }
        _ => return Err(Error::msg("the response was ready but not there")),
    };
    let written = body
        .write()
        .map_err(|()| invalid("body stream"))
        .and_then(|stream| {
            let failed = |err| Error::msg(format!("{err:?}"));
            stream.check_write().map_err(failed)?;
            stream.write(b"").map_err(failed)?;
            stream.flush().map_err(failed)
        });
    if let Err(err) = written {
        let reason = format!("the body could not be written: {err}\n");
        return Ok(text_owned(StatusCode::BAD_GATEWAY, reason));
    }
    OutgoingBody::finish(body, None)?;
    Ok(text_owned(StatusCode::OK, format!("late body: {status}\n")))
}

/// A plain-text response of the test routes' own.
#[cfg(feature = "test-routes")]
fn text_owned(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
