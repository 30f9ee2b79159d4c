//! The WASI 0.2 side of `serve`: a `wasi:http/proxy` component's
//! `wasi:http/incoming-handler@0.2.x`, which sets its response through a `response-outparam`
//! and returns once it has written the body.

use hyper::Request;
use tokio::sync::oneshot;
use wasmtime::component::Resource;
use wasmtime::{Result, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::Answer;
use super::stall::TimedBody;
use crate::store::InstanceState;

/// One request, handed to a store and ready to run in a fresh instance.
pub struct Call {
    /// The component, linked.
    pre: ProxyPre<InstanceState>,
    /// The request, in the store's table.
    request: Resource<HostIncomingRequest>,
    /// Where the component sets its response, which goes to the `answer` of [`Call::new`].
    out: Resource<HostResponseOutparam>,
}

impl Call {
    /// Puts `request` in `store` for an instance of `pre`; the response it sets goes to
    /// `answer`.
    pub fn new(
        pre: &ProxyPre<InstanceState>,
        store: &mut Store<InstanceState>,
        request: Request<TimedBody>,
        answer: oneshot::Sender<Answer>,
    ) -> Result<Self> {
        let mut http = store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let out = http.new_response_outparam_from_callback(move |response| {
            // The server may have answered already (a timeout): nobody waits for this one.
            let _ = answer.send(response.map_err(|code| format!("{code:?}")));
        })?;
        Ok(Self {
            pre: pre.clone(),
            request,
            out,
        })
    }

    /// Instantiates the component and runs its handler to its end.
    pub async fn run(self, store: &mut Store<InstanceState>) -> Result<()> {
        let proxy = self.pre.instantiate_async(&mut *store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, self.request, self.out)
            .await
    }
}
