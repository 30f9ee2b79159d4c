//! Automatic pipelining against a private `redis-server`: each command keeps its own reply and
//! error inside a shared batch, large commands travel whole in their turn, and concurrent
//! commands over TLS reach the server in shared reads.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use redis::AsyncCommands;
use wasi_cache_redis_server::{ClientAuth, RedisServer};

use super::DIRECT_BYTES;
use crate::connection::{Commands, client};
use crate::counters::Counters;
use crate::tls::RedisTls;

/// The command connection of a backend on `url`.
fn commands(url: &str, tls: &RedisTls) -> Arc<Commands> {
    let client = client(url, Duration::from_secs(5), tls).unwrap();
    Commands::start(
        client,
        Duration::from_secs(5),
        Arc::new(Counters::default()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_keeps_its_own_reply_and_error() {
    let server = RedisServer::start();
    let commands = commands(&server.url(), &RedisTls::default());
    let mut conn = commands.get();
    let _: () = conn.set("text", "not a number").await.unwrap();

    // 600 concurrent commands: a batch is at most 512, so at least two batches mix all kinds.
    let replies = join_all((0..600i64).map(|i| {
        let mut conn = commands.get();
        async move {
            match i % 3 {
                0 => conn.set::<_, _, ()>(format!("k{i}"), i).await.map(|()| i),
                1 => conn.incr::<_, _, i64>("text", 1).await.map(|_| -1),
                _ => conn
                    .get::<_, Option<i64>>("missing")
                    .await
                    .map(|v| v.unwrap_or(i)),
            }
        }
    }))
    .await;
    for (i, reply) in (0i64..).zip(replies) {
        match i % 3 {
            1 => {
                let e = reply.expect_err("INCR of a string fails");
                assert!(e.to_string().contains("not an integer"), "{e}");
            }
            _ => assert_eq!(reply.unwrap(), i, "command {i}"),
        }
    }
    for i in (0..600).step_by(3) {
        let stored: i64 = conn.get(format!("k{i}")).await.unwrap();
        assert_eq!(stored, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_commands_travel_alone_and_arrive_whole() {
    let server = RedisServer::start();
    let commands = commands(&server.url(), &RedisTls::default());
    let big = vec![7u8; DIRECT_BYTES * 4];
    let replies = join_all((0..20).map(|i| {
        let (mut conn, big) = (commands.get(), big.clone());
        async move {
            let key = format!("big{i}");
            if i % 2 == 0 {
                conn.set::<_, _, ()>(&key, &big[..]).await?;
            } else {
                conn.set::<_, _, ()>(&key, i).await?;
            }
            conn.get::<_, Vec<u8>>(&key).await
        }
    }))
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        let got = reply.unwrap();
        if i % 2 == 0 {
            assert_eq!(got, big, "value {i}");
        } else {
            assert_eq!(got, i.to_string().into_bytes(), "value {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_over_tls_share_the_servers_reads() {
    let server = RedisServer::start_tls(ClientAuth::Optional);
    let tls = RedisTls::from_files(Some(server.ca_cert()), None).unwrap();
    let commands = commands(&server.tls_url(), &tls);
    let _: () = commands.get().set("k", "v").await.unwrap();

    const OPS: u64 = 2_000;
    let before = server.reads_processed();
    let replies = join_all((0..OPS).map(|_| {
        let mut conn = commands.get();
        async move { conn.get::<_, String>("k").await }
    }))
    .await;
    let reads = server.reads_processed() - before;
    assert!(replies.into_iter().all(|r| r.unwrap() == "v"));
    // One TLS record per command made the server read about once per command (0.74 reads per
    // operation measured before batching); batches arrive in a handful of reads each.
    assert!(
        reads < OPS / 4,
        "{reads} server reads for {OPS} concurrent commands: not batched"
    );
}
