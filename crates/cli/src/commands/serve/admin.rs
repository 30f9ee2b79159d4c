//! The admin endpoint of `--admin-addr`: `GET /metrics` (the [`Metrics`] in the OpenMetrics
//! text format Prometheus scrapes) and `GET /healthz` (200 while the backend answers a ping,
//! 503 when it does not or once the server is shutting down). It listens apart from the
//! components' address, so that no component can shadow it and its port can stay private.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasi_cache_engine::Backend;
use wasmtime_wasi_http::io::TokioIo;

use super::metrics::{self, Metrics};
use super::{http1_builder, text};

/// What the admin endpoint reads.
pub struct Admin {
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The backend `/healthz` pings.
    pub backend: Arc<dyn Backend>,
    /// Set once the server is shutting down (`/healthz` then says 503, so that a load
    /// balancer stops sending requests).
    pub stopping: watch::Receiver<bool>,
    /// `--header-read-timeout`, unless zero.
    pub header_read_timeout: Option<std::time::Duration>,
}

impl Admin {
    /// Serves the endpoint on `listener` until the runtime stops.
    pub async fn serve(self, listener: TcpListener) {
        let admin = Arc::new(self);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!("admin endpoint: cannot accept a connection: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admin = admin.clone();
            let builder = http1_builder(admin.header_read_timeout);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.answer(request).await) }
                });
                if let Err(err) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("admin endpoint: connection ended: {err}");
                }
            });
        }
    }

    /// One request to the endpoint.
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path != "/metrics" && path != "/healthz" {
            return text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /healthz\n",
            );
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        if path == "/metrics" {
            let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            return response;
        }
        if *self.stopping.borrow() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        match self.backend.ping().await {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(err) => {
                tracing::warn!("health check: the backend does not answer: {err}");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the backend does not answer: {err}\n"),
                )
            }
        }
    }
}
