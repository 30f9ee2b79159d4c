//! `wasi-cache serve`: its options ([`ServeArgs`]) and its `main`, which serves a WASI 0.2
//! `wasi:http/proxy` or a WASI 0.3 `wasi:http/service` component over HTTP/1.1 (hyper, through
//! wasmtime-wasi-http), compiled and pre-instantiated once, each request in an instance of
//! wasmtime-wasi-http's worker pool (fresh, or reused: [`instances`]), every instance on one
//! shared backend. What both flavours share lives here: the listener, the
//! server's own answers (503 above `--max-concurrent-requests`, 504 past `--request-timeout`,
//! 500 for a trap), the time limits and the graceful shutdown on SIGINT and SIGTERM; which
//! instance serves a request, in [`instances`] (what a WASI 0.3 request needs first, in
//! [`p3`]); the admin endpoint of
//! `--admin-addr` in [`admin`], the metrics in [`metrics`]; the limits against hostile clients
//! in [`client_limits`] (their options, the connection cap, the per-client count) and
//! [`stall`] (stalled bodies and responses, instances of clients gone).

mod admin;
mod client_limits;
mod instances;
mod metrics;
mod p3;
mod stall;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use wasmtime::error::Context;
use wasmtime::{Engine, Error, Result};
use wasmtime_wasi_http::handler::{ProxyHandler, ProxyPre};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings as p2;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::exit::{self, setup_error};
use crate::flavour::{self, Flavour};
use crate::options::CommonArgs;
use crate::options::count::parse_count;
use crate::options::duration::{format_duration, parse_duration};
use crate::options::pooling::PoolingArgs;
use crate::options::reuse::ReuseArgs;
use crate::pooling::{self, Pool};
use crate::shared::SharedArgs;
use crate::store::InstanceState;
use crate::{backend, limits, linker, panic, startup, wasi_ctx};
use admin::Admin;
use client_limits::{ClientLimitArgs, PerClient};
use instances::{Instances, RequestCtl};
use metrics::{Limit, Metrics};
use stall::{InstanceGuard, TimedBody, TimedIo};

/// The end of `wasi-cache serve --help`: examples, what each request runs in, the server's own
/// answers, the shutdown and the exit status.
pub const EXAMPLES: &str = "\
Examples:
  wasi-cache serve proxy.wasm
  wasi-cache serve --addr 0.0.0.0:8080 --env UPSTREAM=http://127.0.0.1:9000 \\
    --allow-outbound 127.0.0.1:9000 proxy.wasm
  wasi-cache serve --redis redis://127.0.0.1:6379/0 --namespace site-a --request-timeout 5s proxy.wasm

Each request runs in an instance of the component, within the per-instance limits
(--max-memory, --max-resources, --memory-budget, ...) and --request-timeout: a fresh one, or
one kept for --max-instance-reuse-count requests (default: 1 for a WASI 0.2 component, 128 for
a WASI 0.3 one, 16 at once); every instance shares one cache, so concurrent get-or-set calls
from different requests wait for one fill.
Responses the server makes itself: 503 above --max-concurrent-requests, 429 above
--max-requests-per-client, 431 above --max-request-header-size or --max-request-headers, 408
when a body stalls past --body-read-timeout, 504 past --request-timeout, 500 when the component
traps. A connection above --max-concurrent-connections is closed at once; one whose client
takes nothing of a response for --response-write-timeout is closed, and an instance whose
client went away is stopped. SIGINT or SIGTERM stops accepting, lets requests in flight finish
(up to --shutdown-timeout) and exits 0.

Exit status: 0 after a shutdown; 2 when the server cannot start (bad option, address in use,
unreadable file, not a wasi:http/proxy component, Redis unreachable or its TLS handshake
refused).";

/// Options of `wasi-cache serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The cache, the per-instance limits, the environment and `--stats`.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on (HOST:PORT; port 0 picks a free one, printed at start-up).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Most requests handled at once; a request beyond it is answered 503 at once.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = parse_count)]
    pub max_concurrent_requests: usize,

    /// Longest one request's instance may run, wall clock from its instantiation on, whether
    /// it computes or waits; past it the request is answered 504 (or its body cut short) and the
    /// instance dropped (0 means no limit).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On SIGINT or SIGTERM, how long requests in flight may take to finish before the server
    /// exits anyway.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest a client may take to send a request's headers (an idle keep-alive connection
    /// counts as sending the next request's); past it the connection is closed (0 means no
    /// limit).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// The limits against hostile clients: connections, requests per client, request heads,
    /// stalled bodies and responses.
    #[command(flatten)]
    pub client_limits: ClientLimitArgs,

    /// Whether instances come from wasmtime's pooling allocator, and its tunables.
    #[command(flatten)]
    pub pooling: PoolingArgs,

    /// How many requests an instance serves, at once and in its life.
    #[command(flatten)]
    pub reuse: ReuseArgs,

    /// What the instances share: the outbound policy, the pool of writes in flight.
    #[command(flatten)]
    pub shared: SharedArgs,

    /// Address of the admin endpoint (HOST:PORT): `GET /metrics` (Prometheus) and
    /// `GET /healthz`. Off by default; keep it off the public network.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_addr: Option<SocketAddr>,

    /// The wasi:http/proxy component to serve (a .wasm file built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,
}

impl ServeArgs {
    /// The per-request time limit: `--request-timeout`, unless zero.
    pub fn time_limit(&self) -> Option<Duration> {
        Some(self.request_timeout).filter(|limit| !limit.is_zero())
    }

    /// The limit on reading a request's headers: `--header-read-timeout`, unless zero.
    pub fn header_read_timeout(&self) -> Option<Duration> {
        Some(self.header_read_timeout).filter(|limit| !limit.is_zero())
    }
}

/// Runs `wasi-cache serve` until SIGINT or SIGTERM and returns the process's exit code: 0
/// after a shutdown, 2 when the server cannot start.
pub fn main(args: &ServeArgs) -> ExitCode {
    logging();
    let runtime = match startup::start(&args.common) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let (pre, engine) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(err) => return setup_error(&err),
    };
    // Before Redis connects and the listeners bind: they are files too.
    let files = client_limits::raise_file_limit();
    let max_connections = args
        .client_limits
        .max_connections(files, args.max_concurrent_requests);
    if let Some(files) = files
        && (max_connections as u64).saturating_add(args.max_concurrent_requests as u64) > files
    {
        tracing::warn!(
            "--max-concurrent-connections ({max_connections}) and --max-concurrent-requests \
             ({}) are above the open-file limit ({files}): accepts and outgoing connections may \
             fail with too many open files",
            args.max_concurrent_requests
        );
    }
    let backend = match backend::backend(&args.common, &runtime) {
        Ok(backend) => backend,
        Err(err) => return setup_error(&err),
    };
    let listeners = runtime.block_on(async {
        let admin = match args.admin_addr {
            Some(addr) => Some(listen(addr, "the admin endpoint").await?),
            None => None,
        };
        Ok::<_, Error>((listen(args.addr, "requests").await?, admin))
    });
    let (listener, admin_listener) = match listeners {
        Ok(listeners) => listeners,
        Err(err) => return setup_error(&err),
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let shared = args.shared.shared(admin_addr);
    let mut metrics = Metrics::new(backend.clone(), args.common.uses_redis());
    shared.register_metrics(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let (stop, stopping) = watch::channel(false);
    if let Some(listener) = admin_listener {
        let admin = Admin {
            metrics: metrics.clone(),
            backend: backend.clone(),
            stopping,
            header_read_timeout: args.header_read_timeout(),
        };
        match listener.local_addr() {
            Ok(addr) => println!("wasi-cache serve: admin endpoint on http://{addr}"),
            Err(err) => return setup_error(&Error::new(err)),
        }
        runtime.spawn(admin.serve(listener));
    }
    let p3 = matches!(pre, ProxyPre::P3(_));
    let handler = ProxyHandler::new(Instances {
        pre,
        engine: engine.clone(),
        backend: backend.clone(),
        common: args.common.clone(),
        argv: vec![wasi_ctx::argv0(&args.component)],
        shared,
        reuse: args.reuse.reuse(p3),
        time_limit: args.time_limit(),
    });
    let server = Arc::new(Server {
        handler,
        engine,
        p3,
        time_limit: args.time_limit(),
        header_read_timeout: args.header_read_timeout(),
        limits: args.client_limits.clone(),
        connections: Arc::new(Semaphore::new(max_connections)),
        clients: Arc::new(PerClient::new(
            args.client_limits
                .max_requests_per_client(args.max_concurrent_requests),
        )),
        permits: Arc::new(Semaphore::new(args.max_concurrent_requests)),
        max_requests: args.max_concurrent_requests,
        halt: watch::channel(false).0,
        metrics,
    });
    // Ticking until the runtime is gone: an instance left computing after the shutdown timeout
    // must still reach an epoch yield for the runtime's threads to stop.
    let ticker = match server.time_limit {
        Some(_) => match limits::EpochTicker::start(&server.engine) {
            Ok(ticker) => Some(ticker),
            Err(err) => return setup_error(&err),
        },
        None => None,
    };
    if let Err(err) = runtime.block_on(serve(server, listener, stop, args.shutdown_timeout)) {
        return setup_error(&err);
    }
    // Lets the backend calls instances left behind finish (releases of vacancies, writes whose
    // futures were dropped) before the runtime stops.
    runtime.block_on(backend.settle(args.common.redis_timeout));
    drop(runtime);
    drop(ticker);
    exit::report_stats(&args.common, &*backend);
    ExitCode::SUCCESS
}

/// Sends the server's logs (and those of the crates it uses) to stderr through `tracing`,
/// filtered by `RUST_LOG` (warnings and errors by default; `RUST_LOG=wasi_cache=debug` adds a
/// line per request).
fn logging() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    // Colours only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Compiles the component and links it with WASI, wasi:http and the cache, once for every
/// request, on an engine set up for the time limit; it is served as the WASI 0.2 or 0.3 HTTP
/// component it is; with the engine it is compiled for.
fn prepare(args: &ServeArgs) -> Result<(ProxyPre<InstanceState>, Engine)> {
    let path = &args.component;
    let pool = Pool::new(
        &args.pooling,
        pooling::instances_for(args.max_concurrent_requests),
        args.common.max_memory,
    );
    let pre = linker::instantiate_pre(&args.common, path, true, pool.as_ref())?;
    let not_http = |why: String| {
        Error::msg(format!(
            "{} is not a wasi:http/proxy or wasi:http/service component: {why}",
            path.display()
        ))
    };
    let engine = pre.engine().clone();
    let pre = match flavour::http(pre.component(), &engine).map_err(not_http)? {
        Flavour::P2 => p2::ProxyPre::new(pre).map(ProxyPre::P2),
        Flavour::P3 => ServicePre::new(pre).map(ProxyPre::P3),
    }
    .map_err(|err| not_http(format!("its handler does not match: {err}")))?;
    Ok((pre, engine))
}

/// Binds a listening socket, for `what`.
async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// What every request's handling shares.
struct Server {
    /// The instances requests run in (wasmtime-wasi-http's worker pool).
    handler: ProxyHandler<Instances>,
    /// The engine the component is compiled for.
    engine: Engine,
    /// Whether the component is a WASI 0.3 `wasi:http/service`.
    p3: bool,
    /// `--request-timeout`, unless zero.
    time_limit: Option<Duration>,
    /// `--header-read-timeout`, unless zero.
    header_read_timeout: Option<Duration>,
    /// The limits against hostile clients.
    limits: ClientLimitArgs,
    /// One permit per connection open (`--max-concurrent-connections`).
    connections: Arc<Semaphore>,
    /// Each client address's requests in flight (`--max-requests-per-client`).
    clients: Arc<PerClient>,
    /// One permit per request in flight (held until its response is sent or abandoned).
    permits: Arc<Semaphore>,
    /// `--max-concurrent-requests`: every permit.
    max_requests: usize,
    /// Set when the shutdown timeout has passed: instances still running are dropped.
    halt: watch::Sender<bool>,
    /// The HTTP metrics (and the backend's, for the admin endpoint).
    metrics: Arc<Metrics>,
}

/// How a request that got no response from its instance ended.
enum Outcome {
    /// Its body stalled past `--body-read-timeout`.
    Stalled,
    /// Its time limit passed.
    TimedOut,
    /// The instance gave no response, for this reason (a trap, an error code, ...).
    Failed(Error),
    /// The host panicked serving it.
    Panicked(String),
}

impl Server {
    /// Answers one request ([`Server::handle`]), counted in the metrics and logged at debug
    /// level.
    async fn respond(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: IpAddr,
    ) -> Response<HyperOutgoingBody> {
        let timer = self.metrics.start();
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let response = self.clone().handle(request, client).await;
        let status = response.status();
        tracing::debug!(
            %method,
            %uri,
            status = status.as_u16(),
            elapsed_ms = timer.elapsed().as_millis() as u64,
            "request"
        );
        timer.finish(status);
        response
    }

    /// Answers one request: in an instance of the component (a fresh one, or one reused as
    /// `--max-instance-reuse-count` allows), or with the server's own 429, 503, 408, 504 or 500.
    /// The request is abandoned (its instance ends it) when this future is dropped before the
    /// response, or the response's body before its end (the client went away).
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: IpAddr,
    ) -> Response<HyperOutgoingBody> {
        // The server full is a 503 whoever asks; a 429 says this client is the one to slow down.
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.limited(Limit::Requests);
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is handling --max-concurrent-requests requests already\n",
            );
        };
        let Some(client_slot) = self.clients.try_acquire(client) else {
            self.metrics.limited(Limit::PerClient);
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "this client has --max-requests-per-client requests in flight already\n",
            );
        };
        let slot = self.metrics.slot();
        let what = format!("{} {}", request.method(), request.uri());
        let head_only = request.method() == hyper::Method::HEAD;
        let limit = self.limits.body_read_timeout();
        let request = request.map(|body| TimedBody::new(body, limit, self.metrics.clone()));
        let mut stalled = request.body().stalled();
        let stalled_before_answer = stalled.clone();
        let request = match self.p3 {
            true => p3::absolute(request),
            false => request,
        };
        let request = request.map(BodyExt::boxed_unsync);
        let deadline = limits::deadline(self.time_limit);
        let ctl = RequestCtl::new(deadline);
        let guard = InstanceGuard::new(
            ctl.clone(),
            (permit, client_slot, slot),
            self.metrics.clone(),
        );
        let mut halt = self.halt.subscribe();
        let handled = panic::catch(self.handler.handle(ctl.clone(), request));
        let outcome = tokio::select! {
            answer = limits::within(deadline, handled) => match answer {
                None => Outcome::TimedOut,
                Some(Err(panic)) => Outcome::Panicked(panic),
                Some(Ok(Err(err))) => Outcome::Failed(err),
                // The component answered the error of its stalled body.
                Some(Ok(Ok(_))) if *stalled_before_answer.borrow() => Outcome::Stalled,
                Some(Ok(Ok(response))) => return guard.attach(response, head_only),
            },
            _ = halt.wait_for(|halted| *halted) => {
                guard.release();
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down\n",
                );
            }
            // An error is the body dropped unstalled: not a stall.
            Ok(_) = stalled.wait_for(|stalled| *stalled) => Outcome::Stalled,
        };
        // No response to send: the request ends here, its instance told so when it still runs
        // it (not counted as abandoned: the server gave up on it, not its client).
        ctl.abandon();
        guard.release();
        match outcome {
            Outcome::Stalled => self.stalled(&what),
            Outcome::TimedOut => self.timed_out(&what),
            Outcome::Failed(err) => self.failed(&what, &err, &ctl),
            Outcome::Panicked(panic) => {
                self.internal_error(&what, &Error::msg(format!("host panicked: {panic}")))
            }
        }
    }

    /// The server's answer to a request whose instance gave no response, for reason `err`.
    fn failed(&self, what: &str, err: &Error, request: &RequestCtl) -> Response<HyperOutgoingBody> {
        use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};
        // Past its deadline, the instance may be dropped (by its expiration) a moment before
        // the server's own timer answers: a timeout all the same.
        if err.is::<ExpirationError>() || request.past_deadline() {
            return self.timed_out(what);
        }
        if let Some(failed) = err.downcast_ref::<InstantiationError<Arc<RequestCtl>>>() {
            // The pool full of instances still ending, say: the server is busy, not broken.
            let why = exit::one_line(&format!("{:#}", failed.error));
            tracing::warn!("{what}: cannot instantiate the component: {why}");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server has no instance of the component to serve this request\n",
            );
        }
        let code = err
            .downcast_ref::<wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>()
            .map(|code| format!("{code:?}"))
            .or_else(|| {
                err.downcast_ref::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
                    .map(|code| format!("{code:?}"))
            });
        if let Some(code) = code {
            tracing::warn!("{what}: the component answered with the error {code}");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the component failed to answer\n",
            );
        }
        // The handler's own words for a WASI 0.2 handler that returned without a response
        // (with no cause: a trap would be its cause).
        let unanswered = err.chain().count() == 1 && err.to_string().contains("response-outparam");
        if unanswered && request.trapped().is_none() && !err.is::<TrapOrPanicError>() {
            return self.internal_error(
                what,
                &Error::msg("the component returned without setting a response"),
            );
        }
        let reason = request
            .trapped()
            .map(str::to_owned)
            .unwrap_or_else(|| exit::one_line(&format!("{err:#}")));
        tracing::warn!("{what}: the component trapped: {reason}");
        plain(StatusCode::INTERNAL_SERVER_ERROR, "the component trapped\n")
    }

    /// The 504 of a request past its time limit.
    fn timed_out(&self, what: &str) -> Response<HyperOutgoingBody> {
        let limit = format_duration(self.time_limit.unwrap_or_default());
        tracing::warn!("{what}: the component exceeded the --request-timeout of {limit}");
        plain(
            StatusCode::GATEWAY_TIMEOUT,
            "the component exceeded the request's time limit\n",
        )
    }

    /// The 408 of a request whose body stalled past `--body-read-timeout`.
    fn stalled(&self, what: &str) -> Response<HyperOutgoingBody> {
        let limit = format_duration(self.limits.body_read_timeout);
        tracing::debug!("{what}: the body stalled past the --body-read-timeout of {limit}");
        let mut response = plain(
            StatusCode::REQUEST_TIMEOUT,
            "the request's body stalled past the server's limit\n",
        );
        // The rest of the body will not be read: the connection cannot serve another request.
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        response
    }

    /// The 500 of a request the host could not hand to the component.
    fn internal_error(&self, what: &str, err: &Error) -> Response<HyperOutgoingBody> {
        tracing::warn!("{what}: {}", exit::one_line(&format!("{err:#}")));
        plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
    }
}

/// A response of the server's own: `status` with a short plain-text body.
fn plain(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    text(status, body).map(|body| {
        body.map_err(|never: Infallible| match never {})
            .boxed_unsync()
    })
}

/// A plain-text response (the server's own answers and the admin endpoint's).
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Accepts connections until SIGINT or SIGTERM, then shuts down gracefully: stops accepting,
/// lets every connection finish the request it is serving and every instance end, for at most
/// `shutdown_timeout`, and then drops what is left.
async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    stop: watch::Sender<bool>,
    shutdown_timeout: Duration,
) -> Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    println!("wasi-cache serve: listening on http://{addr}");
    let stopped = stop.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match server.connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let open = (permit, server.metrics.connection());
                        let serving = connection(server.clone(), stream, peer, stopped.clone());
                        connections.spawn(async move {
                            serving.await;
                            drop(open);
                        });
                    }
                    Err(_) => {
                        // Counted first, so that its client sees it counted once closed.
                        server.metrics.limited(Limit::Connections);
                        // Closed at once, with a reset: no TIME_WAIT kept for it.
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                },
                Err(err) => {
                    // Out of file descriptors, say: wait for some to be closed.
                    tracing::warn!("cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Before the announcement: once it is out, `/healthz` says so.
    let _ = stop.send(true);
    println!(
        "wasi-cache serve: shutting down (up to {} for requests in flight)",
        format_duration(shutdown_timeout)
    );
    let drained = tokio::time::timeout(shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
        // Every instance ended (one can outlive its connection: a client gone mid-request).
        let all = u32::try_from(server.max_requests).unwrap_or(u32::MAX);
        let _ = server.permits.acquire_many(all).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "requests still in flight after the --shutdown-timeout of {} were dropped",
            format_duration(shutdown_timeout)
        );
        let _ = server.halt.send(true);
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one connection's requests until the client closes it or, once `stop` is set, until
/// the request in progress is answered; within the limits on request heads and on writes.
async fn connection(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1_builder(server.header_read_timeout);
    builder.max_buf_size(server.limits.max_request_header_size);
    // hyper keeps up to 100 headers on the stack, more on the heap, per request.
    if server.limits.max_request_headers != 100 {
        builder.max_headers(server.limits.max_request_headers);
    }
    let metrics = server.metrics.clone();
    let write_limit = server.limits.response_write_timeout();
    let io = TimedIo::new(stream, write_limit, metrics.clone());
    let service = service_fn(move |request| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.respond(request, peer.ip()).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        _ = stop.wait_for(|stop| *stop) => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = ended {
        if err.is_parse_too_large() {
            metrics.limited(Limit::RequestHeaders);
        } else if err.is_timeout() {
            metrics.limited(Limit::HeaderReadTimeout);
        }
        tracing::debug!("connection from {peer} ended: {err}");
    }
}

/// The HTTP/1.1 settings of every connection the server accepts (the admin endpoint's too):
/// keep-alive, and a client that takes longer than `header_read_timeout` to send a request's
/// headers is disconnected.
fn http1_builder(header_read_timeout: Option<Duration>) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use clap::Parser;

    use crate::commands::{Cli, Command, one_line};

    #[test]
    fn serve_options() {
        let cli =
            Cli::try_parse_from(["wasi-cache", "serve", "--capacity", "16MiB", "p.wasm"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.max_concurrent_requests, 1_000);
        assert_eq!(args.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(args.time_limit(), Some(Duration::from_secs(60)));
        assert_eq!(args.common.capacity, 16 << 20);
        assert_eq!(args.component, Path::new("p.wasm"));
        let limits = &args.client_limits;
        assert_eq!(limits.max_concurrent_connections, None);
        assert_eq!(
            limits.max_requests_per_client(args.max_concurrent_requests),
            250
        );
        assert_eq!(limits.max_request_header_size, 64 << 10);
        assert_eq!(limits.max_request_headers, 100);
        assert_eq!(limits.body_read_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(
            limits.response_write_timeout(),
            Some(Duration::from_secs(10))
        );
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "serve",
            "--request-timeout",
            "0",
            "--addr",
            "0.0.0.0:0",
            "p.wasm",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.time_limit(), None);
        let bad = ["wasi-cache", "serve", "--addr", "localhost", "p.wasm"];
        let line = one_line(&Cli::try_parse_from(bad).unwrap_err().render().to_string());
        assert!(
            line.starts_with("error: invalid value 'localhost'"),
            "{line}"
        );
        let bad = [
            "wasi-cache",
            "serve",
            "--max-concurrent-requests",
            "0",
            "p.wasm",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
        for bad in [
            ["--max-concurrent-connections", "0"],
            ["--max-requests-per-client", "0"],
            ["--max-request-headers", "0"],
            ["--max-request-header-size", "4KiB"],
            ["--body-read-timeout", "soon"],
        ] {
            let argv = [&["wasi-cache", "serve"][..], &bad, &["p.wasm"]].concat();
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "serve",
            "--body-read-timeout",
            "0",
            "--response-write-timeout",
            "0",
            "p.wasm",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.client_limits.body_read_timeout(), None);
        assert_eq!(args.client_limits.response_write_timeout(), None);
    }
}
