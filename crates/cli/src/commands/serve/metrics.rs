//! The server's metrics on a prometheus-client registry: the HTTP figures the server keeps
//! (requests by status class, requests in flight, a request-duration histogram, connections
//! open, request slots used, what each limit against hostile clients refused or cut) and the
//! backend's counters, read from [`Backend::stats`] at each scrape.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use hyper::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use wasi_cache_engine::Backend;

use crate::stats::{self, Field, Kind};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of a request's counter: its status class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Class {
    /// `2xx`, `3xx`, `4xx` or `5xx` (`1xx` never ends a request).
    class: &'static str,
}

/// The label of a limit's counter: the option that set it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    /// The option's name without its dashes (`max-concurrent-connections`, ...).
    limit: &'static str,
}

/// A limit against clients that refused a connection or a request, or cut one short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--max-concurrent-connections`: a connection closed as soon as it was accepted.
    Connections,
    /// `--max-concurrent-requests`: a request answered 503.
    Requests,
    /// `--max-requests-per-client`: a request answered 429.
    PerClient,
    /// `--max-request-header-size` or `--max-request-headers`: a request answered 431 (hyper
    /// cannot tell which one it was).
    RequestHeaders,
    /// `--header-read-timeout`: a connection closed before its request's headers arrived.
    HeaderReadTimeout,
    /// `--body-read-timeout`: a request whose body stalled, its instance stopped.
    BodyReadTimeout,
    /// `--response-write-timeout`: a connection whose client stopped reading, closed.
    ResponseWriteTimeout,
}

impl Limit {
    /// The label value: the option's name.
    fn label(self) -> &'static str {
        match self {
            Limit::Connections => "max-concurrent-connections",
            Limit::Requests => "max-concurrent-requests",
            Limit::PerClient => "max-requests-per-client",
            Limit::RequestHeaders => "max-request-header-size",
            Limit::HeaderReadTimeout => "header-read-timeout",
            Limit::BodyReadTimeout => "body-read-timeout",
            Limit::ResponseWriteTimeout => "response-write-timeout",
        }
    }
}

/// Every metric `serve` exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<Class, Counter>,
    in_flight: Gauge,
    duration: Histogram,
    connections: Gauge,
    slots: Gauge,
    limited: Family<LimitLabel, Counter>,
    abandoned: Counter,
}

impl Metrics {
    /// The HTTP metrics, and the counters of `backend` (with Redis's own when `remote`).
    pub fn new(backend: Arc<dyn Backend>, remote: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Class, Counter>::default();
        registry.register(
            "wasi_cache_http_requests",
            "HTTP requests answered, by status class (the server's own 503, 504 and 500 included)",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "wasi_cache_http_requests_in_flight",
            "HTTP requests being handled now",
            in_flight.clone(),
        );
        // 1 ms to about 65 s, doubling: from a cached hit to the default request timeout.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "wasi_cache_http_request_duration",
            "Time from a request's arrival to its response's head",
            Unit::Seconds,
            duration.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "wasi_cache_http_connections",
            "Client connections open now (at most --max-concurrent-connections)",
            connections.clone(),
        );
        let slots = Gauge::default();
        registry.register(
            "wasi_cache_http_request_slots_used",
            "Request slots held now: instances running, answered or not (at most \
             --max-concurrent-requests)",
            slots.clone(),
        );
        let limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "wasi_cache_http_limited",
            "Connections and requests a limit against clients refused or cut short, by the \
             option that set it",
            limited.clone(),
        );
        let abandoned = Counter::default();
        registry.register(
            "wasi_cache_http_abandoned_instances",
            "Instances stopped because their client went away before its response was sent",
            abandoned.clone(),
        );
        registry.register_collector(Box::new(CacheCollector { backend, remote }));
        Self {
            registry,
            requests,
            in_flight,
            duration,
            connections,
            slots,
            limited,
            abandoned,
        }
    }

    /// Counts one connection or request `limit` refused or cut short.
    pub fn limited(&self, limit: Limit) {
        let label = LimitLabel {
            limit: limit.label(),
        };
        self.limited.get_or_create(&label).inc();
    }

    /// Counts one instance stopped because its client went away.
    pub fn abandoned(&self) {
        self.abandoned.inc();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection(&self) -> Held {
        Held::new(&self.connections)
    }

    /// Counts a request slot as used until the returned guard is dropped.
    pub fn slot(&self) -> Held {
        Held::new(&self.slots)
    }

    /// The registry, for the metrics of what the instances share ([`crate::shared`]).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts a request as in flight until the returned guard is finished or dropped.
    pub fn start(&self) -> RequestTimer<'_> {
        self.in_flight.inc();
        RequestTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, nor can the collector (it only formats numbers).
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("cannot encode the metrics: {err}");
        }
        text
    }
}

/// One request in flight; [`RequestTimer::finish`] records its status and duration, dropping it
/// unfinished (the client went away first) only ends its time in flight.
pub struct RequestTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl RequestTimer<'_> {
    /// The time since the request arrived.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Records the request's status class and its duration so far.
    pub fn finish(self, status: StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.metrics.requests.get_or_create(&Class { class }).inc();
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics.duration.observe(seconds);
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// One unit of a gauge, given back when dropped (a connection open, a request slot used).
pub struct Held(Gauge);

impl Held {
    /// Adds one to `gauge` until dropped.
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads the backend's counters at each scrape.
struct CacheCollector {
    backend: Arc<dyn Backend>,
    remote: bool,
}

impl fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheCollector")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for field in stats::fields(&self.backend.stats(), self.remote) {
            match field.kind {
                Kind::Counter => emit(&mut encoder, &field, ConstCounter::new(field.value))?,
                Kind::Gauge => emit(&mut encoder, &field, ConstGauge::new(field.value))?,
            }
        }
        Ok(())
    }
}

/// Writes `field`'s HELP and TYPE and its one sample, `metric`.
fn emit(
    encoder: &mut DescriptorEncoder,
    field: &Field,
    metric: impl EncodeMetric,
) -> Result<(), fmt::Error> {
    let sample = encoder.encode_descriptor(field.metric, field.help, None, metric.metric_type())?;
    metric.encode(sample)
}
