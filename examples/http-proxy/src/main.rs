//! A caching reverse proxy, as a `wasi:http/proxy` component on the wasi-cache-guest SDK.
//!
//! It forwards requests to the base URL in the environment variable `UPSTREAM`. A `GET` goes
//! through the cache, keyed by method and path, with the SDK's revalidating lookup: concurrent
//! requests for a missing key meet in a get-or-set rendezvous, so the upstream sees one request
//! however many arrive at once. A response is fresh for its `Cache-Control: max-age` (60 s by
//! default); after that, within its `stale-while-revalidate=N` window (RFC 5861), requests
//! answer the stale response at once while one request (across every instance and host on the
//! backend) refreshes it after its own response was sent; within its `stale-if-error=N` window
//! a refresh that fails (the upstream unreachable, or a 5xx) answers the stale response.
//!
//! Every response says how it was served in `x-cache`: `HIT` (fresh from the cache), `STALE`
//! (stale from the cache), `MISS` (this request fetched it) or `WAIT` (another request fetched
//! it meanwhile); every answer from the cache has an `Age` (seconds since it was fetched). A
//! response marked `no-store` or `private`, or with a status other than 2xx, is not stored, and
//! a waiting request fetches for itself. Other methods pass through uncached; an unreachable
//! upstream is a 502.

use std::time::Duration;

use serde::{Deserialize, Serialize};
#[cfg(feature = "test-routes")]
use wasi_cache_guest::Entry;
use wasi_cache_guest::{Cache, How, Lifetimes, codec};
use wstd::http::{Body, Client, Error, HeaderValue, Method, Request, Response, StatusCode};

/// How long a response without `max-age` is fresh.
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

/// Why a fetch gives nothing to cache: a stale response is answered instead when its
/// `stale-if-error` window allows it.
#[derive(Debug)]
enum Failed {
    /// The upstream could not be reached.
    Unreachable,
    /// The upstream answered with a server error (5xx), passed on when nothing stale is left.
    Status(Cached),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unreachable => f.write_str("the upstream is unreachable"),
            Failed::Status(cached) => write!(f, "the upstream answered {}", cached.status),
        }
    }
}

impl std::error::Error for Failed {}

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
    // The fetch may run after this response is sent (a refresh of a stale response): it owns
    // what it needs.
    let fetched = Cache::new()
        .get_or_revalidate_served(&key, move || async move {
            let fetched = fetch(&url).await.map_err(|_| Failed::Unreachable)?;
            if fetched.status >= 500 {
                return Err(Failed::Status(fetched));
            }
            let lifetimes = lifetimes(&fetched);
            let bytes = codec::encode(&fetched).map_err(|_| Failed::Unreachable)?;
            Ok((bytes, lifetimes))
        })
        .await;
    match fetched {
        Ok(served) => {
            let how = match served.how {
                How::Fresh => "HIT",
                How::Stale => "STALE",
                How::Computed => "MISS",
                How::Waited => "WAIT",
            };
            let age = (served.how != How::Computed).then_some(served.age);
            respond(codec::decode(&key, &served.value)?, how, age)
        }
        Err(err) => match err.into_compute().map(|e| e.downcast::<Failed>()) {
            Some(Ok(failed)) => match *failed {
                Failed::Status(cached) => respond(cached, "MISS", None),
                Failed::Unreachable => Ok(text(
                    StatusCode::BAD_GATEWAY,
                    "the upstream is unreachable\n",
                )),
            },
            Some(Err(other)) => Err(Error::msg(other.to_string())),
            None => Err(Error::msg("the cache failed")),
        },
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

/// How long `response` is fresh and may be served stale (RFC 9111's `max-age`, RFC 5861's
/// `stale-while-revalidate` and `stale-if-error`): [`Lifetimes::none`] when it must not be
/// stored (not 2xx, `no-store`, `private`, `no-cache`, a malformed number, nothing to keep).
fn lifetimes(response: &Cached) -> Lifetimes {
    if !(200..300).contains(&response.status) {
        return Lifetimes::none();
    }
    let Some((_, control)) = response
        .headers
        .iter()
        .find(|(name, _)| name == "cache-control")
    else {
        return Lifetimes::new(DEFAULT_TTL);
    };
    let control = String::from_utf8_lossy(control).to_ascii_lowercase();
    let mut lifetimes = Lifetimes::new(DEFAULT_TTL);
    for directive in control.split(',').map(str::trim) {
        if ["no-store", "private", "no-cache"].contains(&directive) {
            return Lifetimes::none();
        }
        let Some((name, value)) = directive.split_once('=') else {
            continue;
        };
        let Ok(seconds) = value.trim_matches('"').parse::<u64>() else {
            return Lifetimes::none();
        };
        let seconds = Duration::from_secs(seconds);
        lifetimes = match name {
            "max-age" => Lifetimes {
                fresh: seconds,
                ..lifetimes
            },
            "stale-while-revalidate" => lifetimes.stale_while_revalidate(seconds),
            "stale-if-error" => lifetimes.stale_if_error(seconds),
            _ => lifetimes,
        };
    }
    lifetimes
}

/// The response for `cached`, marked with `x-cache: how` and, when it comes from the cache,
/// its `Age` in whole seconds.
fn respond(
    cached: Cached,
    how: &'static str,
    age: Option<Duration>,
) -> Result<Response<Body>, Error> {
    let mut response = Response::builder().status(cached.status);
    for (name, value) in &cached.headers {
        response = response.header(name.as_str(), HeaderValue::from_bytes(value)?);
    }
    if let Some(age) = age {
        response = response.header("age", age.as_secs());
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
/// `/_test/late-body/PATH` answers with [`late_body`]'s report on `GET /PATH`;
/// `/_test/leak-vacancy/PATH` takes the vacancy of `GET /PATH` and keeps it past its request (the
/// handle is leaked); `/_test/instance` answers how many times its instance answered it.
#[cfg(feature = "test-routes")]
async fn test_routes(path: &str) -> Result<Option<Response<Body>>, Error> {
    match path {
        "/_test/instance" => {
            use std::sync::atomic::{AtomicU64, Ordering};
            static SERVED: AtomicU64 = AtomicU64::new(0);
            let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
            return Ok(Some(text_owned(StatusCode::OK, format!("{served}\n"))));
        }
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
    if let Some(rest) = path.strip_prefix("/_test/leak-vacancy") {
        let held = match Cache::new().entry(&format!("GET {rest}")).await? {
            Entry::Vacant(vacancy) => {
                std::mem::forget(vacancy);
                "leaked\n"
            }
            Entry::Occupied(_) => "present\n",
        };
        return Ok(Some(text_owned(StatusCode::OK, held.to_owned())));
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
