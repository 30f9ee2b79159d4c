//! Test guest of `wasi-cache serve`'s WASI 0.3 path (`crates/cli/tests/serve_p3.rs`): a
//! `wasi:http/service@0.3.0` component (it exports `wasi:http/handler@0.3.0`) that uses the cache
//! in its WASI 0.3 form through the guest SDK. Its routes:
//!
//! - `/memo/KEY`: `get_or_set` of `KEY`, whose computation waits 300 ms (so that a burst of
//!   requests overlaps it) and makes a value no other computation makes (a random number); the
//!   body is the value, the header `x-computed` says whether this request computed it.
//! - `/hold/KEY`: `get_or_set` of `KEY` whose computation never ends: the instance holds the
//!   key's vacancy until the server drops it.
//! - `/sleep/MS`: answers after `MS` milliseconds, without the cache.
//! - `/spin`: computes forever.
//! - `/url`: answers with the URL the request was for, as the host gave it (scheme, authority,
//!   path).
//! - `/error`: answers with an `error-code` instead of a response.
//! - `/trap`: traps.
//! - `/body`: reads the request's body to its end and answers with its length (the body-read
//!   timeout's test).
//! - `/big/N`: answers with `N` bytes (the response-write timeout's test).
//! - `/detach/KEY/N`: starts `N` `set`s of `KEY` and drops each future unread (the writes go
//!   on after the instance ends), answering at once.
//! - `/set/KEY`: one `set` of `KEY`, awaited: 200, or 500 with the cache's error.
//! - `/leak-vacancy/KEY`: takes the vacancy of `KEY` and keeps it past the request (the handle
//!   is leaked).
//! - `/put/KEY/N`: one `set` of `KEY` to `N` bytes; `/read/KEY`: a `get` of `KEY`, answering
//!   its length; `/hoard/KEY`: a `get` of `KEY` whose value (its handle) is kept past the
//!   request, leaked.
//!
//! Every response says, in `x-instance-requests`, how many requests its instance has taken.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasi_cache_guest::{Cache, Error};
use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
use wasip3::{wit_future, wit_stream};

struct Service;

/// Requests this instance has taken.
static TAKEN: AtomicU64 = AtomicU64::new(0);

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        TAKEN.fetch_add(1, Ordering::Relaxed);
        let path = request.get_path_with_query().unwrap_or_default();
        if let Some(key) = path.strip_prefix("/leak-vacancy/") {
            let held = match Cache::new().entry(key).await {
                Ok(wasi_cache_guest::Entry::Vacant(vacancy)) => {
                    std::mem::forget(vacancy);
                    "leaked\n"
                }
                _ => "not vacant\n",
            };
            return respond(200, &[], held.as_bytes().to_vec());
        }
        if let Some(rest) = path.strip_prefix("/put/") {
            let Some((key, n)) = rest
                .rsplit_once('/')
                .and_then(|(k, n)| Some((k, n.parse().ok()?)))
            else {
                return respond(400, &[], b"expected /put/KEY/N\n".to_vec());
            };
            return match Cache::new().set(key, &vec![b'v'; n], None).await {
                Ok(()) => respond(200, &[], b"put\n".to_vec()),
                Err(err) => respond(500, &[], format!("cache error: {err}\n").into_bytes()),
            };
        }
        if let Some(key) = path.strip_prefix("/hoard/") {
            use wasi_cache_guest::bindings::wasi::keyvalue::cache;
            let held = match cache::get(key).get().await {
                Ok(Some(value)) => {
                    std::mem::forget(value);
                    "hoarded\n"
                }
                _ => "absent\n",
            };
            return respond(200, &[], held.as_bytes().to_vec());
        }
        if let Some(key) = path.strip_prefix("/read/") {
            return match Cache::new().get(key).await {
                Ok(Some(value)) => respond(200, &[], format!("{}\n", value.len()).into_bytes()),
                Ok(None) => respond(404, &[], b"absent\n".to_vec()),
                Err(err) => respond(500, &[], format!("cache error: {err}\n").into_bytes()),
            };
        }
        if let Some(key) = path.strip_prefix("/memo/") {
            return memo(key).await;
        }
        if let Some(key) = path.strip_prefix("/hold/") {
            let held = Cache::new()
                .get_or_set(key, None, || async {
                    // An hour: longer than any test's request timeout.
                    sleep(Duration::from_secs(3600)).await;
                    Ok::<_, Error>(Vec::new())
                })
                .await;
            return respond(500, &[], format!("the hold ended: {held:?}").into_bytes());
        }
        if let Some(rest) = path.strip_prefix("/detach/") {
            return detach(rest);
        }
        if let Some(key) = path.strip_prefix("/set/") {
            return match Cache::new().set(key, b"set", None).await {
                Ok(()) => respond(200, &[], b"set\n".to_vec()),
                Err(err) => respond(500, &[], format!("cache error: {err}\n").into_bytes()),
            };
        }
        if let Some(ms) = path.strip_prefix("/sleep/") {
            let Ok(ms) = ms.parse() else {
                return respond(400, &[], b"not a number of milliseconds\n".to_vec());
            };
            sleep(Duration::from_millis(ms)).await;
            return respond(200, &[], b"slept\n".to_vec());
        }
        if let Some(size) = path.strip_prefix("/big/") {
            let Ok(size) = size.parse() else {
                return respond(400, &[], b"not a number of bytes\n".to_vec());
            };
            return respond(200, &[], vec![b'x'; size]);
        }
        if path == "/body" {
            let (_sent, read) = wit_future::new(|| Ok(()));
            let (body, trailers) = Request::consume_body(request, read);
            let length = body.collect().await.len();
            return match trailers.await {
                Ok(_) => respond(200, &[], format!("read {length} bytes\n").into_bytes()),
                Err(code) => respond(
                    500,
                    &[],
                    format!("the body failed: {code:?}\n").into_bytes(),
                ),
            };
        }
        match path.as_str() {
            "/url" => {
                let scheme = match request.get_scheme() {
                    Some(Scheme::Http) => "http".to_owned(),
                    Some(Scheme::Https) => "https".to_owned(),
                    Some(Scheme::Other(other)) => other,
                    None => "(none)".to_owned(),
                };
                let authority = request.get_authority().unwrap_or_else(|| "(none)".into());
                respond(
                    200,
                    &[],
                    format!("{scheme}://{authority}{path}").into_bytes(),
                )
            }
            "/error" => Err(ErrorCode::InternalError(Some("the /error route".into()))),
            "/spin" => spin(),
            "/trap" => panic!("the /trap route traps"),
            _ => respond(404, &[], b"no such route\n".to_vec()),
        }
    }
}

/// `/memo/KEY`: the value of `KEY`, computed by one request of a burst.
async fn memo(key: &str) -> Result<Response, ErrorCode> {
    let computed = Cell::new(false);
    let value = Cache::new()
        .get_or_set(key, Some(Duration::from_secs(60)), || async {
            computed.set(true);
            sleep(Duration::from_millis(300)).await;
            let token = wasip3::random::random::get_random_u64();
            Ok::<_, Error>(format!("value {token:016x}").into_bytes())
        })
        .await;
    match value {
        Ok(value) => {
            let computed = if computed.get() { "yes" } else { "no" };
            respond(200, &[("x-computed", computed)], value)
        }
        Err(err) => respond(500, &[], format!("cache error: {err}\n").into_bytes()),
    }
}

/// `/detach/KEY/N`: `N` fire-and-forget `set`s of `KEY` (through the raw bindings: the SDK's
/// `set` awaits its write).
fn detach(rest: &str) -> Result<Response, ErrorCode> {
    use wasi_cache_guest::bindings::wasi::keyvalue::{cache, types::OutgoingValue};
    let Some((key, n)) = rest
        .rsplit_once('/')
        .and_then(|(k, n)| Some((k, n.parse().ok()?)))
    else {
        return respond(400, &[], b"expected /detach/KEY/N\n".to_vec());
    };
    for _ in 0..n {
        let value = OutgoingValue::new_outgoing_value();
        let _ = value.outgoing_value_write_body_sync(b"detached");
        drop(cache::set(key, &value, None));
    }
    respond(200, &[], format!("detached {n}\n").into_bytes())
}

/// Computes until the host stops it.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Waits `pause` (WASI 0.3's monotonic clock).
async fn sleep(pause: Duration) {
    wasip3::clocks::monotonic_clock::wait_for(pause.as_nanos() as u64).await;
}

/// A response with `status`, `headers` and `body`; the body is written once the host reads it,
/// after `handle` has returned.
fn respond(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, ErrorCode> {
    let taken = TAKEN.load(Ordering::Relaxed).to_string();
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .chain([&("x-instance-requests", taken.as_str())])
        .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries)
        .map_err(|err| ErrorCode::InternalError(Some(format!("{err:?}"))))?;
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _sent) = Response::new(fields, Some(body_rx), trailers_rx);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("bad status {status}"))))?;
    wasip3::spawn(async move {
        // What is left unwritten when the host dropped the body (a client gone) is dropped too.
        let _unwritten = body_tx.write_all(body).await;
    });
    Ok(response)
}

wasip3::http::service::export!(Service);
