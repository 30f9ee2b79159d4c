//! Two databases of one server are two caches: a fill in db 0 never reaches a waiter in db 1,
//! although pub/sub channels are server-wide (channel names carry the database number).

mod support;
use support::*;

use std::time::Duration;

use wasi_cache_engine::{Backend, Namespace};
use wasi_cache_redis_server::RedisServer;

const OP: Duration = Duration::from_secs(2);
/// Long enough that no vacancy passes on by expiring during the test.
const VACANCY: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_in_db_0_never_reaches_a_waiter_in_db_1() {
    let server = RedisServer::start();
    let db0 = connect(format!("{}/0", server.url()), OP, VACANCY).await;
    let db1_holder = connect(format!("{}/1", server.url()), OP, VACANCY).await;
    let db1_waiter = connect(format!("{}/1", server.url()), OP, VACANCY).await;
    let ns = Namespace::new("shared").unwrap();

    let holder1 = vacant(
        db1_holder.get_or_set(&ns, b"k").await.unwrap(),
        "db 1 holder",
    );
    let holder0 = vacant(
        db0.get_or_set(&ns, b"k").await.unwrap(),
        "db 0 is another cache",
    );
    let waiter = {
        let ns = ns.clone();
        tokio::spawn(async move { db1_waiter.get_or_set(&ns, b"k").await })
    };
    let admin = Admin::connect(&server.url()).await;
    until(
        Duration::from_secs(10),
        "the db 1 waiter subscribes",
        || async { !admin.channels().await.is_empty() },
    )
    .await;

    // db 0 fills first and announces it; give a wrongly shared channel time to deliver it.
    holder0.fill(b("db0-value"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the db 1 waiter woke on db 0's fill");
    holder1.fill(b("db1-value"), None).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the db 1 waiter must get db 1's fill")
        .unwrap()
        .unwrap();
    assert_eq!(occupied(got, "db 1 waiter"), b("db1-value"));
    assert_eq!(db0.get(&ns, b"k").await.unwrap(), Some(b("db0-value")));
    assert_eq!(
        db1_holder.get(&ns, b"k").await.unwrap(),
        Some(b("db1-value"))
    );
}
