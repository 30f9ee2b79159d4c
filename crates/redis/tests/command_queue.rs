//! The command path under a frozen server (`SIGSTOP`) and under races: the queue stays within
//! its bound (callers beyond it get a clear error at once), a command whose caller is gone
//! (dropped, or timed out) before it left is never sent, writes of one key reach Redis in the
//! order they were called whatever their size, and many subscriptions drain correctly. A
//! cluster's commands are bounded alike.
//!
//! What can be asserted exactly: commands already written to the socket when their caller gave
//! up still run once the server resumes (the tests keep those few apart: the "plugs" holding the
//! pipeline's window, or the batches counted as sent), and nothing else does.

mod support;
use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::join_all;
use wasi_cache_engine::{Backend, Error, Namespace};
use wasi_cache_redis::{QUEUE_BYTES, QUEUE_COMMANDS, RedisBackend, RedisConfig};
use wasi_cache_redis_server::{RedisCluster, RedisServer};

/// Far longer than a frozen phase lasts: nothing ends by the op timeout unless a test wants it.
const LONG_OP: Duration = Duration::from_secs(15);
const VACANCY: Duration = Duration::from_secs(30);
/// Hang guard for each step.
const GUARD: Duration = Duration::from_secs(30);
/// The key size of the flood: just under the 16 KiB a command may have and still share writes.
const FLOOD_KEY: usize = 16_000;

/// A flood key: `FLOOD_KEY` bytes ending in `tag` and `i`.
fn flood_key(tag: &str, i: usize) -> Vec<u8> {
    let mut key = format!("{tag}-{i}-").into_bytes();
    key.resize(FLOOD_KEY, b'k');
    key
}

/// How many GETs the server ran so far (`INFO commandstats`).
async fn gets_run(admin: &Admin) -> u64 {
    let info: String = admin.run(&["INFO", "commandstats"]).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Whether `e` is the error of a full command queue.
fn is_queue_full(e: &Error) -> bool {
    matches!(e, Error::Unavailable(m) if m.contains("command queue of this host is full"))
}

/// Asserts the queue of `backend` never held more than its bound.
fn assert_bounded(backend: &RedisBackend) {
    let q = backend.command_queue();
    assert!(
        q.commands <= QUEUE_COMMANDS && q.bytes <= QUEUE_BYTES,
        "{q:?}"
    );
    assert!(
        q.peak_commands <= QUEUE_COMMANDS && q.peak_bytes <= QUEUE_BYTES,
        "{q:?}"
    );
}

/// Under a frozen server, with the pipeline's window held by two live "plugs": 5,000 gets whose
/// futures are dropped after their first poll, 200 that time out on the caller's side, then live
/// gets until the queue is full. The queue never holds more than its bound, the callers beyond it
/// are refused at once, and after the server resumes it runs exactly the plugs and the live
/// gets: nothing of a caller that was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_abandoned_commands_are_bounded_and_never_sent() {
    let server = RedisServer::start();
    let backend = Arc::new(connect(server.url(), LONG_OP, VACANCY).await);
    let admin = Admin::connect(&server.url()).await;
    let ns = Namespace::new("queue").unwrap();
    // A first answer proves the connection: two batches may then be in flight at once.
    assert_eq!(backend.get(&ns, b"warm").await.unwrap(), None);
    let before = gets_run(&admin).await;

    server.freeze(true);
    let sent = backend.command_queue().sent;
    let mut plugs = Vec::new();
    for i in 0..2u64 {
        let (plug, ns) = (backend.clone(), ns.clone());
        plugs.push(tokio::spawn(async move {
            plug.get(&ns, format!("plug{i}").as_bytes()).await
        }));
        until(GUARD, "a plug leaves as a batch of its own", || async {
            backend.command_queue().sent == sent + i + 1
        })
        .await;
    }

    // Dropped after their first poll: queued, then abandoned.
    for i in 0..5_000 {
        let pending = backend.get(&ns, &flood_key("dropped", i)).now_or_never();
        if let Some(outcome) = pending {
            let e = outcome.expect_err("no answer from a frozen server");
            assert!(is_queue_full(&e), "{e}");
        }
        assert_bounded(&backend);
    }
    // Timed out on the caller's side.
    let timed_out = join_all((0..200).map(|i| {
        let (backend, ns) = (&backend, &ns);
        async move {
            let key = flood_key("timed-out", i);
            tokio::time::timeout(Duration::from_millis(100), backend.get(ns, &key)).await
        }
    }))
    .await;
    // The few that ended before their timeout were refused by the full queue.
    for outcome in timed_out.into_iter().flatten() {
        let e = outcome.expect_err("no answer from a frozen server");
        assert!(is_queue_full(&e), "{e}");
    }
    assert_bounded(&backend);

    // Live callers until the queue is full, and some more: those are refused at once.
    let mut live = Vec::new();
    let mut refused = 0;
    for i in 0..QUEUE_BYTES / FLOOD_KEY + 100 {
        let key = flood_key("live", i);
        let mut get = {
            let (backend, ns) = (backend.clone(), ns.clone());
            Box::pin(async move { backend.get(&ns, &key).await })
        };
        match (&mut get).now_or_never() {
            None => live.push(get),
            Some(Err(e)) if is_queue_full(&e) => refused += 1,
            Some(other) => panic!("a get under a frozen server ended with {other:?}"),
        }
    }
    assert_bounded(&backend);
    assert!(
        refused > 0,
        "{QUEUE_BYTES} bytes of gets of {FLOOD_KEY}-byte keys all fit in the queue"
    );
    let q = backend.command_queue();
    assert_eq!(
        q.commands,
        live.len(),
        "only live callers left queued: {q:?}"
    );
    assert_eq!(q.sent, sent + 2, "nothing but the plugs left: {q:?}");

    server.freeze(false);
    for plug in plugs {
        assert_eq!(plug.await.unwrap().unwrap(), None);
    }
    let answers = tokio::time::timeout(GUARD, join_all(live))
        .await
        .expect("live gets hung");
    let live = answers.len() as u64;
    assert!(answers.into_iter().all(|a| a.unwrap().is_none()));
    assert_eq!(
        gets_run(&admin).await - before,
        2 + live,
        "the server ran a get whose caller was gone"
    );
    let q = backend.command_queue();
    assert_eq!(
        q.discarded, 5_200,
        "every abandoned get discarded unsent: {q:?}"
    );
    assert_eq!(q.commands, 0, "{q:?}");
}

/// Gets that time out by the backend's own op timeout under a frozen server: each caller gets an
/// error (a timeout, mostly), never a hang; the commands still queued when their
/// caller's time ran out are discarded unsent, and once the server resumes nothing more is sent:
/// it runs at most the commands that had left while their caller still waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_commands_are_not_sent_after_the_server_resumes() {
    const OP: Duration = Duration::from_millis(300);
    const CALLERS: usize = 1_000;
    let server = RedisServer::start();
    let backend = Arc::new(connect(server.url(), OP, VACANCY).await);
    let admin = Admin::connect(&server.url()).await;
    let ns = Namespace::new("queue-timeouts").unwrap();
    assert_eq!(backend.get(&ns, b"warm").await.unwrap(), None);
    let before = gets_run(&admin).await;
    let start = backend.command_queue();

    server.freeze(true);
    let outcomes = tokio::time::timeout(
        GUARD,
        join_all((0..CALLERS).map(|i| {
            let (backend, ns) = (backend.clone(), ns.clone());
            tokio::spawn(async move { backend.get(&ns, &flood_key("op", i)).await })
        })),
    )
    .await
    .expect("gets under a frozen server hung");
    for outcome in outcomes {
        let e = outcome
            .unwrap()
            .expect_err("no answer from a frozen server");
        // A timeout, a full queue, or a replaced connection failing to reach the frozen server.
        assert!(is_outage(&e), "{e}");
    }
    assert_bounded(&backend);
    // Every caller is gone now: what is still queued belongs to nobody, and is discarded at the
    // next batch even while the server stays frozen.
    until(GUARD, "the queue empties", || async {
        backend.command_queue().commands == 0
    })
    .await;
    let frozen = backend.command_queue();
    let flood_sent = frozen.sent - start.sent;
    assert!(
        frozen.discarded > start.discarded,
        "no timed-out get was discarded: {frozen:?}"
    );
    assert_eq!(
        flood_sent + (frozen.discarded - start.discarded) + (frozen.refused - start.refused),
        CALLERS as u64,
        "each get sent, discarded or refused: {start:?} then {frozen:?}"
    );

    server.freeze(false);
    let attempts = AtomicU64::new(0);
    eventually(GUARD, || {
        attempts.fetch_add(1, Ordering::Relaxed);
        backend.get(&ns, b"after")
    })
    .await;
    let end = backend.command_queue();
    let attempts = attempts.load(Ordering::Relaxed);
    assert!(
        end.sent - frozen.sent <= attempts,
        "sent after the resume beyond the {attempts} new gets: {frozen:?} then {end:?}"
    );
    // Commands written before their caller gave up may still run; nothing else does.
    let ran = gets_run(&admin).await - before;
    let sent = end.sent - start.sent;
    assert!(ran <= sent, "{ran} gets ran, {sent} were sent");
}

/// The same bound on a Redis Cluster, where redis-rs holds the commands: with a master frozen,
/// gets dropped after their first poll stay counted until redis-rs gives them up, the count never
/// passes the bound, callers beyond it are refused at once, and once the master resumes the count
/// drains and the backend works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_commands_are_bounded_under_a_frozen_master() {
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3, 0));
    let backend = RedisBackend::connect(RedisConfig {
        op_timeout: LONG_OP,
        vacancy_timeout: VACANCY,
        ..RedisConfig::with_cluster(cluster.seeds())
    })
    .await
    .unwrap();
    let ns = Namespace::new("cluster-queue").unwrap();
    assert_eq!(backend.get(&ns, b"warm").await.unwrap(), None);

    let frozen = cluster.freeze(cluster.masters()[0]);
    let mut refused = 0;
    for i in 0..10_000 {
        if let Some(outcome) = backend.get(&ns, &flood_key("cluster", i)).now_or_never() {
            match outcome {
                Err(e) if is_queue_full(&e) => refused += 1,
                // Another shard's answer, or its refusal while the cluster sees a node failing.
                _ => {}
            }
        }
        assert_bounded(&backend);
    }
    assert!(refused > 0, "{:?}", backend.command_queue());

    drop(frozen);
    tokio::task::block_in_place(|| cluster.wait_until_ok(GUARD));
    until(GUARD, "redis-rs is done with every command", || async {
        backend.command_queue().commands == 0
    })
    .await;
    eventually(GUARD, || backend.get(&ns, b"after")).await;
}

/// A `set` of a small value (queued behind a load of gets) and one of a large value (over 16 KiB,
/// sent as a batch of its own) race on one key, in both orders, many rounds; in some rounds the
/// first caller gives up right after its first poll. The key always ends with the later call's
/// value: a write that was not sent is discarded, one that was reaches Redis first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_set_always_wins_across_small_and_large_values() {
    let server = RedisServer::start();
    let backend = Arc::new(connect(server.url(), LONG_OP, VACANCY).await);
    let ns = Namespace::new("order").unwrap();
    // Loads the script, so no call meets NOSCRIPT.
    backend.set(&ns, b"warm", b("v"), None).await.unwrap();
    let large = |round: usize| Bytes::from(vec![b'0' + (round % 10) as u8; 64 << 10]);
    let small = |round: usize| Bytes::from(format!("small {round}"));
    for round in 0..300 {
        let key = format!("k{round}");
        // Load that keeps a batch in flight, so the small set waits in the queue.
        let load: Vec<_> = (0..64)
            .map(|i| {
                let (backend, ns) = (backend.clone(), ns.clone());
                tokio::spawn(async move { backend.get(&ns, format!("load{i}").as_bytes()).await })
            })
            .collect();
        let (first, later) = if round % 2 == 0 {
            (small(round), large(round))
        } else {
            (large(round), small(round))
        };
        let mut earlier = backend.set(&ns, key.as_bytes(), first, None);
        let earlier_pending = futures::poll!(earlier.as_mut()).is_pending();
        assert!(earlier_pending, "a set answered without a round trip");
        let give_up = round % 3 == 2;
        if give_up {
            drop(earlier);
            backend
                .set(&ns, key.as_bytes(), later.clone(), None)
                .await
                .unwrap();
        } else {
            let (a, z) = tokio::join!(
                earlier,
                backend.set(&ns, key.as_bytes(), later.clone(), None)
            );
            a.unwrap();
            z.unwrap();
        }
        for get in load {
            get.await.unwrap().unwrap();
        }
        assert_eq!(
            backend.get(&ns, key.as_bytes()).await.unwrap(),
            Some(later),
            "round {round}: an earlier set landed after the later one"
        );
    }
}

/// Thousands of waiters subscribed at once and then gone: every channel is unsubscribed, and a
/// rendezvous still works after (the pub/sub table drains its pending channels in linear work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_subscriptions_drain() {
    const KEYS: usize = 3_000;
    let server = RedisServer::start();
    let holder = connect(server.url(), LONG_OP, VACANCY).await;
    let waiter = Arc::new(connect(server.url(), LONG_OP, VACANCY).await);
    let admin = Admin::connect(&server.url()).await;
    let ns = Namespace::new("drain").unwrap();
    let mut vacancies = Vec::new();
    for k in 0..KEYS {
        let key = format!("k{k}");
        vacancies.push(vacant(
            holder.get_or_set(&ns, key.as_bytes()).await.unwrap(),
            "holder",
        ));
    }
    let waiters: Vec<_> = (0..KEYS)
        .map(|k| {
            let (waiter, ns) = (waiter.clone(), ns.clone());
            tokio::spawn(async move { waiter.get_or_set(&ns, format!("k{k}").as_bytes()).await })
        })
        .collect();
    until(GUARD, "every waiter subscribes", || async {
        admin.channels().await.len() == KEYS
    })
    .await;
    // Half go away while the other half's channels are still wanted, then the rest.
    for w in &waiters[..KEYS / 2] {
        w.abort();
    }
    until(GUARD, "half the channels are unsubscribed", || async {
        admin.channels().await.len() == KEYS - KEYS / 2
    })
    .await;
    for w in &waiters[KEYS / 2..] {
        w.abort();
    }
    until(GUARD, "every channel is unsubscribed", || async {
        admin.channels().await.is_empty()
    })
    .await;
    drop(vacancies);
    rendezvous(&holder, &waiter, &ns, b"after", GUARD).await;
}
