//! The WASI 0.3 side of `serve`: a `wasi:http/service` component's `wasi:http/handler@0.3.x`
//! (wasmtime-wasi-http's experimental `p3`), an async export that returns its response and may
//! go on writing the body afterwards, in the store's event loop.

use std::pin::Pin;

use hyper::header::HOST;
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{Request, Uri};
use tokio::sync::oneshot;
use wasmtime::component::Resource;
use wasmtime::{Result, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::Answer;
use super::stall::TimedBody;
use crate::store::InstanceState;

/// `request` with the scheme and authority a WASI 0.2 component is given too (the `http` scheme;
/// the `Host` header when the request line has no authority, its usual origin form), so that a
/// component of either flavour can rebuild the URL it was asked for. Left as it is when the
/// `Host` header is missing or invalid.
fn absolute(mut request: Request<TimedBody>) -> Request<TimedBody> {
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

/// What the host learns of an error while it reads a request's body for the component.
type RequestBodyResult =
    Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>;

/// One request, handed to a store and ready to run in a fresh instance.
pub struct Call {
    /// The component, linked.
    pre: ServicePre<InstanceState>,
    /// The request, in the store's table.
    request: Resource<wasmtime_wasi_http::p3::Request>,
    /// Handed to the response, which passes it on to the component.
    request_body: RequestBodyResult,
    /// Where the response goes, once the handler returns it.
    answer: oneshot::Sender<Answer>,
}

impl Call {
    /// Puts `request` in `store` for an instance of `pre`; the response it returns goes to
    /// `answer`.
    pub fn new(
        pre: &ServicePre<InstanceState>,
        store: &mut Store<InstanceState>,
        request: Request<TimedBody>,
        answer: oneshot::Sender<Answer>,
    ) -> Result<Self> {
        let http = store.data_mut().http();
        let (request, request_body) =
            wasmtime_wasi_http::p3::Request::from_http(http.hooks, absolute(request));
        let request = http.table.push(request)?;
        Ok(Self {
            pre: pre.clone(),
            request,
            request_body: Box::pin(request_body),
            answer,
        })
    }

    /// Instantiates the component and runs its handler in the store's event loop: until it
    /// returns the response, and then until its tasks have all ended (the ones writing the
    /// response's body among them), as wasmtime's own `serve` does before it drops an instance.
    pub async fn run(self, store: &mut Store<InstanceState>) -> Result<()> {
        let Self {
            pre,
            request,
            request_body,
            answer,
        } = self;
        let service = pre.instantiate_async(&mut *store).await?;
        store
            .run_concurrent(async move |accessor| {
                let handled = service
                    .wasi_http_handler()
                    .call_handle(accessor, request)
                    .await?;
                let response = match handled {
                    Ok(response) => Ok(accessor.with(|mut access| {
                        let response = access.get().http().table.delete(response)?;
                        response.into_http(&mut access, request_body)
                    })?),
                    Err(code) => Err(format!("{code:?}")),
                };
                // The server may have answered already (a timeout): nobody waits for this one.
                let _ = answer.send(response);
                std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                Ok(())
            })
            .await?
    }
}
