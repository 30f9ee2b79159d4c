//! `wasi-cache serve` of a WASI 0.3 `wasi:http/service` component end to end: the test guest
//! `crates/cli/tests/serve-p3-guest` (see its routes there), served on a loopback port and driven
//! by a real HTTP client, gets what a WASI 0.2 `wasi:http/proxy` gets (`tests/serve.rs`): one
//! instance per request on one shared cache, 503 above `--max-concurrent-requests`, 504 past
//! `--request-timeout`, 500 for a trap, metrics, a graceful shutdown. Every server process is
//! killed when its test ends ([`Proc`]'s drop).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::serve::{Server, all_ok, get, guarded};
use common::{tmp, wasi_cache};
use hyper::StatusCode;
use wasi_cache_guest_build as guest_build;

fn service_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::SERVE_P3, tmp()))
}

impl Server {
    /// A `wasi-cache serve` of the test guest, with its admin endpoint.
    fn start(options: &[&str]) -> Self {
        let args = [&["--admin-addr", "127.0.0.1:0"][..], options].concat();
        Server::spawn(service_wasm(), &args)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_of_100_requests_computes_once_on_the_shared_cache() {
    guarded(service_wasm, async {
        let server = Server::start(&[]);
        let requests: Vec<_> = (0..100)
            .map(|_| tokio::spawn(get(server.addr, "/memo/stampede")))
            .collect();
        let replies = all_ok(requests, None).await;
        let computed = replies
            .iter()
            .filter(|reply| reply.header("x-computed") == Some("yes"))
            .count();
        assert_eq!(computed, 1, "{replies:?}");
        let value = &replies[0].body;
        assert!(value.starts_with("value "), "{value:?}");
        assert!(
            replies.iter().all(|reply| &reply.body == value),
            "{replies:?}"
        );
        // A later instance reads it too; another key is computed on its own.
        let later = get(server.addr, "/memo/stampede").await;
        assert_eq!(later.header("x-computed"), Some("no"));
        assert_eq!(&later.body, value);
        let other = get(server.addr, "/memo/other").await;
        assert_eq!(other.header("x-computed"), Some("yes"));
        assert_ne!(&other.body, value);
        // The metrics count every request, and the cache's one fill.
        let answered = server
            .metric("wasi_cache_http_requests_total", &[("class", "2xx")])
            .await;
        assert_eq!(answered, 102.0);
        assert_eq!(server.metric("wasi_cache_fills_total", &[]).await, 2.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_sees_the_url_it_was_asked_for() {
    guarded(service_wasm, async {
        let server = Server::start(&[]);
        let reply = get(server.addr, "/url").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, format!("http://{}/url", server.addr));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_for_that_request_only() {
    guarded(service_wasm, async {
        // An instance per request: a trap fails only its own request. (A reused instance's
        // trap fails the requests it serves with it: `a_trap_ends_its_reused_instance`.)
        let server = Server::start(&["--max-instance-reuse-count", "1"]);
        let during = tokio::spawn(get(server.addr, "/memo/beside-a-trap"));
        let trapped = get(server.addr, "/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(trapped.body, "the component trapped\n");
        let beside = during.await.unwrap();
        assert_eq!(beside.status, StatusCode::OK, "{beside:?}");
        let after = get(server.addr, "/memo/after-a-trap").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
        // An `error-code` instead of a response is a 500 too.
        let error = get(server.addr, "/error").await;
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR, "{error:?}");
        assert_eq!(error.body, "the component failed to answer\n");
        let failed = server
            .metric("wasi_cache_http_requests_total", &[("class", "5xx")])
            .await;
        assert_eq!(failed, 2.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_gets_504_and_the_server_stays_healthy() {
    guarded(service_wasm, async {
        let server = Server::start(&["--request-timeout", "2s"]);
        // Holding a key's vacancy forever (blocked in the guest's own wait: stopped by the
        // host's timer), and computing forever (stopped by epoch interruption).
        let (held, spun) = tokio::join!(get(server.addr, "/hold/k"), get(server.addr, "/spin"));
        assert_eq!(held.status, StatusCode::GATEWAY_TIMEOUT, "{held:?}");
        assert_eq!(spun.status, StatusCode::GATEWAY_TIMEOUT, "{spun:?}");
        // The held vacancy went with the dropped instance: the next request for the key
        // computes it (had it stayed held, this request would wait for the 30 s vacancy
        // timeout, past its own 2 s limit).
        let after = get(server.addr, "/memo/k").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
        assert_eq!(after.header("x-computed"), Some("yes"));
        assert_eq!(get(server.admin(), "/healthz").await.status, StatusCode::OK);
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 0.0)
            .await;
        assert_eq!(
            server
                .metric("wasi_cache_http_requests_in_flight", &[])
                .await,
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_above_the_limit_get_503_and_the_server_keeps_serving() {
    guarded(service_wasm, async {
        let server = Server::start(&["--max-concurrent-requests", "2", "--request-timeout", "3s"]);
        let held: Vec<_> = ["/hold/a", "/hold/b"]
            .into_iter()
            .map(|path| tokio::spawn(get(server.addr, path)))
            .collect();
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 2.0)
            .await;
        for _ in 0..3 {
            let refused = get(server.addr, "/memo/refused").await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{refused:?}"
            );
        }
        for request in held {
            let reply = request.await.unwrap();
            assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{reply:?}");
        }
        let reply = get(server.addr, "/memo/refused").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.header("x-computed"), Some("yes"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    guarded(service_wasm, async {
        let mut server = Server::start(&[]);
        // All in flight when the signal comes (they arrive within milliseconds; 3 s is a
        // margin for that, not a measurement).
        let requests: Vec<_> = (0..20)
            .map(|_| tokio::spawn(get(server.addr, "/sleep/3000")))
            .collect();
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 20.0)
            .await;
        server.shut_down();
        for request in requests {
            let reply = request.await.unwrap();
            assert_eq!(reply.body, "slept\n", "{reply:?}");
        }
        let ended = server.ended().await;
        assert!(ended.status.success(), "{ended:?}");
    })
    .await;
}

#[test]
fn a_component_of_the_wrong_shape_is_one_error_line() {
    // A component exporting an interface of its own, no HTTP handler.
    let other = tmp().join("serve-p3-other-export.wasm");
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $api (export "f" (func $f)))
        (export "example:other/api" (instance $api)))"#;
    std::fs::write(&other, wat::parse_str(wat).unwrap()).unwrap();
    let run = wasi_cache(["serve", "--addr", "127.0.0.1:0", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let line = run.stderr.trim_end();
    assert!(
        line.starts_with("error: ")
            && line.contains("is not a wasi:http/proxy or wasi:http/service component")
            && line.contains("wasi:http/handler@0.3.x")
            && line.ends_with("it exports example:other/api"),
        "{run:?}"
    );
}

/// The instance-request count a reply reports (`x-instance-requests`).
fn taken(reply: &common::serve::Reply) -> u64 {
    reply
        .header("x-instance-requests")
        .unwrap()
        .parse()
        .unwrap()
}

/// By default an instance of a WASI 0.3 component serves request after request, and several
/// at once: one blocked past its `--request-timeout` is answered 504 while the same instance
/// answers its neighbours, and the vacancy it held is handed off with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_reused_and_a_timeout_stops_only_its_request() {
    guarded(service_wasm, async {
        let server = Server::start(&["--request-timeout", "3s"]);
        let mut served = Vec::new();
        for _ in 0..5 {
            let reply = get(server.addr, "/sleep/0").await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            served.push(taken(&reply));
        }
        assert_eq!(served, [1, 2, 3, 4, 5]);
        let held = tokio::spawn(get(server.addr, "/hold/t"));
        server
            .wait_for_metric("wasi_cache_http_requests_in_flight", 1.0)
            .await;
        let mut beside = Vec::new();
        for _ in 0..3 {
            let reply = get(server.addr, "/sleep/100").await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            beside.push(taken(&reply));
        }
        // Served one after the other by the instance that also took the held request.
        assert!(beside[0] >= 2, "{beside:?}");
        assert_eq!(beside, [beside[0], beside[0] + 1, beside[0] + 2]);
        let held = held.await.unwrap();
        assert_eq!(held.status, StatusCode::GATEWAY_TIMEOUT, "{held:?}");
        // The held vacancy went with its request: the next request for the key computes it.
        let after = get(server.addr, "/memo/t").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
        assert_eq!(after.header("x-computed"), Some("yes"));
    })
    .await;
}

/// A trap ends the instance it happens in: the requests after it get a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_its_reused_instance() {
    guarded(service_wasm, async {
        let server = Server::start(&[]);
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 1);
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 2);
        let trapped = get(server.addr, "/trap").await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(trapped.body, "the component trapped\n");
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 1);
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 2);
    })
    .await;
}

/// A vacancy a request keeps past its end (its handle leaked) is handed off once the instance
/// has no request left, though it lives on: the next request for the key computes it, where it
/// would otherwise wait out the hour-long `--vacancy-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacancy_held_past_its_request_is_handed_off_in_a_living_instance() {
    guarded(service_wasm, async {
        let options = ["--vacancy-timeout", "1h", "--request-timeout", "30s"];
        let server = Server::start(&options);
        let leaked = get(server.addr, "/leak-vacancy/kept").await;
        assert_eq!(
            (leaked.status, leaked.body.as_str()),
            (StatusCode::OK, "leaked\n")
        );
        assert_eq!(taken(&leaked), 1);
        // The same instance, still alive.
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 2);
        let computed = get(server.addr, "/memo/kept").await;
        assert_eq!(computed.status, StatusCode::OK, "{computed:?}");
        assert_eq!(computed.header("x-computed"), Some("yes"));
        assert_eq!(taken(&computed), 3);
    })
    .await;
}

/// The memory budget is the instance's, and a request gives back what it held: thirty reads of
/// a 400 KB value in one instance whose budget holds two of them all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_does_not_leak_across_the_requests_of_an_instance() {
    guarded(service_wasm, async {
        let options = ["--memory-budget", "1MiB", "--max-value-size", "512KiB"];
        let server = Server::start(&options);
        let put = get(server.addr, "/put/big/400000").await;
        assert_eq!(put.status, StatusCode::OK, "{put:?}");
        for i in 0..30 {
            let reply = get(server.addr, "/read/big").await;
            assert_eq!(reply.status, StatusCode::OK, "read {i}: {reply:?}");
            assert_eq!(reply.body, "400000\n");
        }
        // One instance served them all: it was never retired for hoarding its budget.
        assert_eq!(taken(&get(server.addr, "/sleep/0").await), 32);
    })
    .await;
}

/// A guest that keeps cache values past its requests (their handles leaked) keeps them charged
/// to its instance's budget; once it holds more than half of it, the instance is retired rather
/// than given more requests, which then start with a whole budget in a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_hoarding_its_budget_is_retired() {
    guarded(service_wasm, async {
        let options = ["--memory-budget", "1MiB", "--max-value-size", "512KiB"];
        let server = Server::start(&options);
        assert_eq!(
            get(server.addr, "/put/big/300000").await.status,
            StatusCode::OK
        );
        let hoarded = get(server.addr, "/hoard/big").await;
        assert_eq!((hoarded.body.as_str(), taken(&hoarded)), ("hoarded\n", 2));
        // 300 KB held: under half the budget, still reused.
        let second = get(server.addr, "/hoard/big").await;
        assert_eq!((second.body.as_str(), taken(&second)), ("hoarded\n", 3));
        // 600 KB held: retired; a fresh instance reads the value with its whole budget.
        let fresh = get(server.addr, "/read/big").await;
        assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
        assert_eq!((fresh.body.as_str(), taken(&fresh)), ("300000\n", 1));
    })
    .await;
}
