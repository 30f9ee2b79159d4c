//! `wasi-cache serve`: its options ([`ServeArgs`]) and its `main`, which serves a WASI 0.2
//! `wasi:http/proxy` or a WASI 0.3 `wasi:http/service` component over HTTP/1.1 (hyper, through
//! wasmtime-wasi-http), compiled and pre-instantiated once, a fresh instance per request, every
//! instance on one shared backend. What both flavours share lives here: the listener, the
//! server's own answers (503 above `--max-concurrent-requests`, 504 past `--request-timeout`,
//! 500 for a trap), the time limits and the graceful shutdown on SIGINT and SIGTERM; how a
//! request reaches an instance of each flavour, in [`p2`] and [`p3`]; the admin endpoint of
//! `--admin-addr` in [`admin`], the metrics in [`metrics`].

mod admin;
mod metrics;
mod p2;
mod p3;

use std::convert::Infallible;
use std::net::SocketAddr;
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
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use wasi_cache_engine::Backend;
use wasmtime::error::Context;
use wasmtime::{Engine, Error, Result, Store};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::exit::{self, setup_error};
use crate::flavour::{self, Flavour};
use crate::options::CommonArgs;
use crate::options::count::parse_count;
use crate::options::duration::{format_duration, parse_duration};
use crate::shared::{Shared, SharedArgs};
use crate::store::{self, InstanceState};
use crate::{backend, limits, linker, panic, startup, wasi_ctx};
use admin::Admin;
use metrics::Metrics;

/// The end of `wasi-cache serve --help`: examples, what each request runs in, the server's own
/// answers, the shutdown and the exit status.
pub const EXAMPLES: &str = "\
Examples:
  wasi-cache serve proxy.wasm
  wasi-cache serve --addr 0.0.0.0:8080 --env UPSTREAM=http://127.0.0.1:9000 \\
    --allow-outbound 127.0.0.1:9000 proxy.wasm
  wasi-cache serve --redis redis://127.0.0.1:6379/0 --namespace site-a --request-timeout 5s proxy.wasm

Each request runs in a fresh instance of the component, within the per-instance limits
(--max-memory, --max-resources, --memory-budget, ...) and --request-timeout; every instance
shares one cache, so concurrent get-or-set calls from different requests wait for one fill.
Responses the server makes itself: 503 above --max-concurrent-requests, 504 past
--request-timeout, 500 when the component traps. SIGINT or SIGTERM stops accepting, lets
requests in flight finish (up to --shutdown-timeout) and exits 0.

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
    let pre = match prepare(args) {
        Ok(pre) => pre,
        Err(err) => return setup_error(&err),
    };
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
    let server = Arc::new(Server {
        pre,
        backend: backend.clone(),
        common: args.common.clone(),
        argv: vec![wasi_ctx::argv0(&args.component)],
        time_limit: args.time_limit(),
        header_read_timeout: args.header_read_timeout(),
        permits: Arc::new(Semaphore::new(args.max_concurrent_requests)),
        max_requests: args.max_concurrent_requests,
        halt: watch::channel(false).0,
        metrics,
        shared,
    });
    if let Err(err) = runtime.block_on(serve(server, listener, stop, args.shutdown_timeout)) {
        return setup_error(&err);
    }
    // Lets the backend calls instances left behind finish (releases of vacancies, writes whose
    // futures were dropped) before the runtime stops.
    runtime.block_on(backend.settle(args.common.redis_timeout));
    drop(runtime);
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
/// component it is.
fn prepare(args: &ServeArgs) -> Result<Pre> {
    let path = &args.component;
    let pre = linker::instantiate_pre(&args.common, path, true)?;
    let not_http = |why: String| {
        Error::msg(format!(
            "{} is not a wasi:http/proxy or wasi:http/service component: {why}",
            path.display()
        ))
    };
    let engine = pre.engine().clone();
    match flavour::http(pre.component(), &engine).map_err(not_http)? {
        Flavour::P2 => ProxyPre::new(pre).map(Pre::P2),
        Flavour::P3 => ServicePre::new(pre).map(Pre::P3),
    }
    .map_err(|err| not_http(format!("its handler does not match: {err}")))
}

/// A linked HTTP component of either flavour, ready to instantiate once per request.
enum Pre {
    /// It exports `wasi:http/incoming-handler@0.2.x`.
    P2(ProxyPre<InstanceState>),
    /// It exports `wasi:http/handler@0.3.x`.
    P3(ServicePre<InstanceState>),
}

impl Pre {
    /// The engine the component is compiled for.
    fn engine(&self) -> &Engine {
        match self {
            Pre::P2(pre) => pre.engine(),
            Pre::P3(pre) => pre.engine(),
        }
    }

    /// Puts `request` in `store` for a fresh instance; its response goes to `answer`.
    fn call(
        &self,
        store: &mut Store<InstanceState>,
        request: Request<Incoming>,
        answer: oneshot::Sender<Answer>,
    ) -> Result<Call> {
        match self {
            Pre::P2(pre) => p2::Call::new(pre, store, request, answer).map(Call::P2),
            Pre::P3(pre) => p3::Call::new(pre, store, request, answer).map(Call::P3),
        }
    }
}

/// One request in a store, ready to run in a fresh instance of either flavour.
enum Call {
    /// For a WASI 0.2 component.
    P2(p2::Call),
    /// For a WASI 0.3 component.
    P3(p3::Call),
}

impl Call {
    /// Instantiates the component and runs its handler to its end.
    async fn run(self, store: &mut Store<InstanceState>) -> Result<()> {
        match self {
            Call::P2(call) => call.run(store).await,
            Call::P3(call) => call.run(store).await,
        }
    }
}

/// What the component answered: its response, or the `error-code` it answered with instead
/// (described).
type Answer = Result<Response<HyperOutgoingBody>, String>;

/// Binds a listening socket, for `what`.
async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// What every request's handling shares.
struct Server {
    /// The component, compiled, linked and ready to instantiate.
    pre: Pre,
    /// The cache every instance shares.
    backend: Arc<dyn Backend>,
    /// The cache options and per-instance limits.
    common: CommonArgs,
    /// The component's argv (its file's name).
    argv: Vec<String>,
    /// `--request-timeout`, unless zero.
    time_limit: Option<Duration>,
    /// `--header-read-timeout`, unless zero.
    header_read_timeout: Option<Duration>,
    /// One permit per request in flight (held until its instance is dropped).
    permits: Arc<Semaphore>,
    /// `--max-concurrent-requests`: every permit.
    max_requests: usize,
    /// Set when the shutdown timeout has passed: instances still running are dropped.
    halt: watch::Sender<bool>,
    /// The HTTP metrics (and the backend's, for the admin endpoint).
    metrics: Arc<Metrics>,
    /// What the instances share: the outbound policy, the pool of writes in flight.
    shared: Shared,
}

/// How a request's instance ended.
enum End {
    /// The handler returned (having set its response, or not).
    Returned,
    /// The instance trapped, for this reason (one line).
    Trapped(String),
    /// The request's time limit passed while the instance ran.
    TimedOut,
    /// The server stopped it at the end of the shutdown timeout.
    Halted,
}

impl Server {
    /// Answers one request ([`Server::handle`]), counted in the metrics and logged at debug
    /// level.
    async fn respond(self: Arc<Self>, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let timer = self.metrics.start();
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let response = self.clone().handle(request).await;
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

    /// Answers one request: in a fresh instance of the component, or with the server's own 503,
    /// 504 or 500.
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is handling --max-concurrent-requests requests already\n",
            );
        };
        let what = format!("{} {}", request.method(), request.uri());
        let deadline = limits::deadline(self.time_limit);
        let wasi = wasi_ctx::wasi_ctx(&self.common, &self.argv);
        let mut store = store::new_store_with(
            self.pre.engine(),
            &self.common,
            self.backend.clone(),
            wasi,
            deadline,
            &self.shared,
        );
        let (sender, receiver) = oneshot::channel();
        let call = match self.pre.call(&mut store, request, sender) {
            Ok(call) => call,
            Err(err) => return self.internal_error(&what, &err),
        };
        let server = self.clone();
        let instance = tokio::spawn(async move {
            let _permit = permit;
            let mut halt = server.halt.subscribe();
            let handle = panic::catch(call.run(&mut store));
            // The epoch callback stops an instance that computes; `within`, one blocked in a
            // host call.
            let finished = tokio::select! {
                finished = limits::within(deadline, handle) => finished,
                _ = halt.wait_for(|halted| *halted) => return End::Halted,
            };
            match finished {
                None => End::TimedOut,
                Some(Err(panic)) => End::Trapped(format!("host panicked: {panic}")),
                Some(Ok(Ok(()))) => End::Returned,
                Some(Ok(Err(err))) if limits::is_deadline(&err) => End::TimedOut,
                Some(Ok(Err(err))) => {
                    End::Trapped(limits::explain(&err, &store.data().cache, &server.common))
                }
            }
            // The store drops here: the instance's vacancies pass to waiters.
        });
        match limits::within(deadline, receiver).await {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => {
                tracing::warn!("{what}: the component answered with the error {code}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the component failed to answer\n",
                )
            }
            None => {
                instance.abort();
                self.timed_out(&what)
            }
            // The instance ended without setting a response: its end says why.
            Some(Err(_dropped)) => match instance.await {
                Ok(End::TimedOut) => self.timed_out(&what),
                Ok(End::Trapped(reason)) => {
                    tracing::warn!("{what}: the component trapped: {reason}");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "the component trapped\n")
                }
                Ok(End::Halted) => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down\n",
                ),
                Ok(End::Returned) => self.internal_error(
                    &what,
                    &Error::msg("the component returned without setting a response"),
                ),
                Err(err) => self.internal_error(&what, &Error::new(err)),
            },
        }
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
    let _ticker = server
        .time_limit
        .map(|_| limits::EpochTicker::start(server.pre.engine()))
        .transpose()?;
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
                Ok((stream, _)) => {
                    connections.spawn(connection(server.clone(), stream, stopped.clone()));
                }
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
/// the request in progress is answered.
async fn connection(server: Arc<Server>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let builder = http1_builder(server.header_read_timeout);
    let service = service_fn(move |request| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.respond(request).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
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
    }
}
