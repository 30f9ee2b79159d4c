//! Redis ACL users: one without the channel rights is refused at connect with one error that
//! names what to grant (instead of every fill failing with NOPERM after storing its value), and
//! the documented rules ([`ACL_RULES`]) are enough for everything the backend does.

mod support;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::{Backend, Error, Namespace};
use wasi_cache_redis::{ACL_RULES, RedisBackend, RedisConfig};
use wasi_cache_redis_server::RedisServer;

const OP: Duration = Duration::from_secs(2);
/// Far longer than the test's hang guards: no waiter gets anything from a lock expiring.
const VACANCY: Duration = Duration::from_secs(120);
const GUARD: Duration = Duration::from_secs(30);

/// Creates (or changes) `user` with password `pw` and `rules`.
async fn set_user(admin: &Admin, user: &str, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", user, "on", ">pw"];
    args.extend_from_slice(rules);
    let () = admin.run(&args).await.unwrap();
}

/// The URL of the test server as `user`, on database `db`.
fn url_as(server: &RedisServer, user: &str, db: u32) -> String {
    format!("redis://{user}:pw@127.0.0.1:{}/{db}", server.port())
}

/// The error connecting as `user` gives.
async fn refused(server: &RedisServer, user: &str) -> String {
    let config = RedisConfig {
        op_timeout: OP,
        ..RedisConfig::with_url(url_as(server, user, 0))
    };
    match RedisBackend::connect(config).await {
        Err(Error::InvalidConfig(msg)) => msg,
        Err(other) => panic!("{user}: expected InvalidConfig, got {other}"),
        Ok(_) => panic!("{user}: connected without the channel rights"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_channel_rights_is_refused_with_what_to_grant() {
    let server = RedisServer::start();
    let admin = Admin::connect(&server.url()).await;
    // Redis 7's default for new users, spelled out: no channels at all.
    set_user(&admin, "nochannels", &["~*", "+@all", "resetchannels"]).await;
    let msg = refused(&server, "nochannels").await;
    for needle in [
        "PUBLISH",
        "`&wc:*`",
        "+publish +subscribe +unsubscribe",
        "ACL SETUSER",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
    assert!(!msg.contains('\n'), "one line: {msg:?}");

    set_user(&admin, "nosubscribe", &["~*", "&*", "+@all", "-subscribe"]).await;
    let msg = refused(&server, "nosubscribe").await;
    assert!(
        msg.contains("SUBSCRIBE") && msg.contains("+subscribe"),
        "{msg:?}"
    );

    // Granting the channels named in the message is enough.
    set_user(&admin, "nochannels", &["&wc:*"]).await;
    connect(url_as(&server, "nochannels", 0), OP, VACANCY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_rules_are_enough() {
    let server = RedisServer::start();
    let admin = Admin::connect(&server.url()).await;
    let mut rules = vec!["resetkeys", "resetchannels", "-@all"];
    rules.extend(ACL_RULES.split_whitespace());
    set_user(&admin, "cache", &rules).await;
    // Database 1 needs SELECT, which the rules grant.
    let holder = connect(url_as(&server, "cache", 1), OP, VACANCY).await;
    let other = Arc::new(connect(url_as(&server, "cache", 1), OP, VACANCY).await);
    let ns = Namespace::new("acl").unwrap();

    holder.set(&ns, b"plain", b("v"), None).await.unwrap();
    assert_eq!(other.get(&ns, b"plain").await.unwrap(), Some(b("v")));
    assert!(other.exists(&ns, b"plain").await.unwrap());
    other.delete(&ns, b"plain").await.unwrap();
    assert!(!holder.exists(&ns, b"plain").await.unwrap());

    // A fill and an abandon each reach a waiter on the other backend through pub/sub.
    let filled = vacant(holder.get_or_set(&ns, b"filled").await.unwrap(), "holder");
    let dropped = vacant(holder.get_or_set(&ns, b"dropped").await.unwrap(), "holder");
    let waiters: Vec<_> = [&b"filled"[..], b"dropped"]
        .into_iter()
        .map(|key| {
            let (c, ns) = (other.clone(), ns.clone());
            tokio::spawn(async move { c.get_or_set(&ns, key).await })
        })
        .collect();
    until(GUARD, "both waiters subscribe", || async {
        admin.channels().await.len() == 2
    })
    .await;
    filled
        .fill(b("filled"), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    drop(dropped);
    let mut outcomes = Vec::new();
    for waiter in waiters {
        let got = tokio::time::timeout(GUARD, waiter)
            .await
            .expect("waiter hung");
        outcomes.push(got.unwrap().expect("waiter failed"));
    }
    let mut outcomes = outcomes.into_iter();
    assert_eq!(
        occupied(outcomes.next().unwrap(), "filled key"),
        b("filled")
    );
    vacant(outcomes.next().unwrap(), "abandoned key")
        .fill(b("second"), None)
        .await
        .unwrap();
    assert_eq!(
        holder.get(&ns, b"dropped").await.unwrap(),
        Some(b("second"))
    );
    assert_eq!(other.stats().timeouts, 0);
}

/// A backend as `user` on database 0 with a near cache.
fn near_config(server: &RedisServer, user: &str) -> RedisConfig {
    RedisConfig {
        op_timeout: OP,
        near_cache: Some(1 << 20),
        ..RedisConfig::with_url(url_as(server, user, 0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_rules_are_enough_for_the_near_cache() {
    let server = RedisServer::start();
    let admin = Admin::connect(&server.url()).await;
    let mut rules = vec!["resetkeys", "resetchannels", "-@all"];
    rules.extend(ACL_RULES.split_whitespace());
    set_user(&admin, "cache", &rules).await;
    let near = RedisBackend::connect(near_config(&server, "cache"))
        .await
        .expect("the documented rules allow the near cache");
    let other = connect(url_as(&server, "cache", 0), OP, VACANCY).await;
    let ns = Namespace::new("acl").unwrap();
    other.set(&ns, b"k", b("v1"), None).await.unwrap();
    until(GUARD, "a near hit", || async {
        near.get(&ns, b"k").await.unwrap();
        near.stats().near_hits > 0
    })
    .await;
    other.set(&ns, b"k", b("v2"), None).await.unwrap();
    until(GUARD, "the invalidation", || async {
        near.get(&ns, b"k").await.unwrap() == Some(b("v2"))
    })
    .await;
    assert!(near.stats().invalidations > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_tracking_rights_is_refused_with_what_to_grant() {
    let server = RedisServer::start();
    let admin = Admin::connect(&server.url()).await;
    // HELLO (RESP3) needs no right; CLIENT TRACKING does.
    for (user, missing) in [("noclient", "-client"), ("notracking", "-client|tracking")] {
        set_user(&admin, user, &["~*", "&*", "+@all", missing]).await;
        match RedisBackend::connect(near_config(&server, user)).await {
            Err(Error::InvalidConfig(msg)) => {
                assert!(msg.contains("`+client|tracking`"), "{user}: {msg}");
                assert!(!msg.contains('\n'), "one line: {msg:?}");
            }
            Err(other) => panic!("{user}: expected InvalidConfig, got {other}"),
            Ok(_) => panic!("{user}: connected without the tracking rights"),
        }
        // Without the near cache, the same user is fine.
        connect(url_as(&server, user, 0), OP, VACANCY).await;
    }
}
