//! The hooks of the components' outgoing `wasi:http` requests: sent to an address the outbound
//! policy allows ([`crate::send`], [`crate::outbound`]), and a request body hyper would drop
//! unsent stays open until the guest is done with it.
//!
//! hyper sends a `GET`, `HEAD` or `CONNECT` whose body has no declared length (no
//! `content-length`, no `transfer-encoding`; and any such request over HTTP/1.0) with no body at
//! all, and drops the body as soon as the request's head is written. wasmtime-wasi-http's body is
//! the receiving end of the guest's `outgoing-body` stream, so once the task sending the request
//! has written the head, the guest's next `check-write` says `closed`. A guest that writes its
//! (empty) body after `handle` — wstd's `Client::send` does, and so does the http-proxy example
//! — then fails a request that went out. Whether it does is a race between the guest and the
//! sending task (spawned by `handle`), which the task wins only when another worker thread runs
//! it at once: rare on an idle runtime (1 request in 1,600 under load on the embedded engine),
//! 2 runs in 3 of a serve test with the Redis backend's pipelining task at work. Such a body is
//! therefore kept by a task of its own, which takes the guest's writes (hyper would not send
//! them either) until the guest finishes or drops the body, and hyper gets an empty one.

use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Body as _;
use hyper::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, Version};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound::Outbound;
use crate::send::send;

/// The future of a request's connection, once its response arrived.
type Io = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The `wasi:http` hooks of every instance: requests sent where the outbound policy allows,
/// with the request bodies hyper would drop unsent kept open (see the module's docs).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The policy every request is checked against (shared by a server's instances).
    pub outbound: Arc<Outbound>,
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Io,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, Io), Error>> + Send> {
        let request = if sent_without_body(&request) {
            let (head, body) = request.into_parts();
            tokio::spawn(drain(body));
            let empty = Empty::new().map_err(|never| match never {}).boxed_unsync();
            Request::from_parts(head, empty)
        } else {
            request
        };
        let _ = fut;
        let outbound = self.outbound.clone();
        Box::new(async move {
            let (response, io) = send(request, options, outbound).await?;
            let io: Io = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// Whether hyper (HTTP/1) sends `request` with no body and drops its body after the head: a
/// body without a declared length on a `GET`, `HEAD` or `CONNECT`, or on HTTP/1.0.
fn sent_without_body(request: &Request<WasiBody>) -> bool {
    let headers = request.headers();
    if headers.contains_key(CONTENT_LENGTH)
        || headers.contains_key(TRANSFER_ENCODING)
        || request.body().is_end_stream()
    {
        return false;
    }
    request.version() < Version::HTTP_11
        || [Method::GET, Method::HEAD, Method::CONNECT].contains(request.method())
}

/// Takes what the guest writes to a body that is not sent, until it finishes or drops the body.
async fn drain(mut body: WasiBody) {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) if frame.data_ref().is_some_and(|data| !data.is_empty()) => {
                tracing::debug!(
                    "a body written to a request sent without one (a GET, HEAD or CONNECT with \
                     neither content-length nor transfer-encoding) is dropped"
                );
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
