//! Example WASI 0.3 guest on golem-rust 3.0.2 (default-features = false): a command (it exports
//! `wasi:cli/run@0.3.0` through golem-rust's `wasip3`) that uses golem-rust's own bindings of
//! `wasi:keyvalue/cache` in their WASI 0.3 form. Eight concurrent tasks of this instance
//! `get-or-set` one key: one is handed the vacancy and fills it, the others receive its value;
//! then a `get` hits. Golem's own host answers every such call with a vacancy; wasi-cache
//! rendezvous them.

use futures::future::join_all;
use golem_rust::bindings::wasi::keyvalue::cache::{self, GetOrSetEntry};

struct Example;

impl golem_rust::wasip3::exports::cli::run::Guest for Example {
    async fn run() -> Result<(), ()> {
        let key = "golem3-compat";
        let tasks = (0..8).map(|_| async move {
            match cache::get_or_set(key).get().await.map_err(|_| ())? {
                GetOrSetEntry::Vacant(vacancy) => {
                    let value = vacancy.vacancy_fill(Some(60_000));
                    value
                        .outgoing_value_write_body_sync(b"computed once")
                        .map_err(|_| ())?;
                    Ok::<_, ()>(true)
                }
                GetOrSetEntry::Occupied(value) => {
                    let body = value.incoming_value_consume_sync().map_err(|_| ())?;
                    assert_eq!(body, b"computed once");
                    Ok(false)
                }
            }
        });
        let results = join_all(tasks).await;
        let vacant = results.iter().filter(|r| **r == Ok(true)).count();
        let hit = cache::get(key).get().await.map_err(|_| ())?.is_some();
        println!(
            "golem3-compat: {vacant} of 8 tasks computed, {} received the value, get hit: {hit}",
            results.iter().filter(|r| **r == Ok(false)).count()
        );
        Ok(())
    }
}

golem_rust::wasip3::cli::command::export!(Example with_types_in golem_rust::wasip3);
