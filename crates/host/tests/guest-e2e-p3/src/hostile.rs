//! Scenarios of a hostile guest: more futures than the cap, concurrent and cancelled gets of
//! one future, hoarded values and vacancies, a flood of calls dropped unread. The host must
//! answer each with an error or by bounding it, never by trapping or hanging.

use futures::future::{Either, join_all, select};

use super::{GetOrSetEntry, OutgoingValue, cache, fill, say, set};

/// Holds futures until the live-future cap refuses one; then drops them and starts again.
pub async fn live_cap(cap: usize) {
    let held: Vec<_> = (0..cap).map(|i| cache::get(&format!("k{i}"))).collect();
    let err = cache::get("one-more").get().await.unwrap_err().trace();
    say(&format!("over the cap: {err}"));
    drop(held);
    assert_eq!(cache::get("k0").get().await.unwrap().map(|_| ()), None);
    say("after dropping: ok");
}

/// Two gets of one pending future at once (a get-or-set waiting for this instance's own
/// vacancy): one gets the result, the other an error at once.
pub async fn double_get() {
    let GetOrSetEntry::Vacant(vacancy) = cache::get_or_set("dg").get().await.unwrap() else {
        panic!("dg: expected a vacancy")
    };
    let future = cache::get_or_set("dg");
    let fill_later = async {
        for _ in 0..20 {
            wit_bindgen::yield_async().await;
        }
        fill(vacancy, b"x");
    };
    let (a, b, ()) = futures::join!(future.get(), future.get(), fill_later);
    let (ok, err) = match (a, b) {
        (Ok(value), Err(err)) | (Err(err), Ok(value)) => (value, err),
        (a, b) => panic!(
            "expected one value and one error, got {:?} and {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    };
    assert!(matches!(ok, GetOrSetEntry::Occupied(_)));
    say(&format!("second get: {}", err.trace()));
}

/// A get of a rendezvous that waits (`key`'s vacancy is held elsewhere), cancelled; the next
/// get of the same future waits again and gets the value once the holder fills it.
pub async fn cancel_get(key: &str) {
    let future = cache::get_or_set(key);
    let waiting = std::pin::pin!(future.get());
    let yielded = std::pin::pin!(async {
        for _ in 0..50 {
            wit_bindgen::yield_async().await;
        }
    });
    match select(waiting, yielded).await {
        Either::Left(_) => panic!("{key}: expected to wait for the holder"),
        Either::Right(((), waiting)) => drop(waiting),
    }
    say("cancelled");
    match future.get().await {
        Err(err) => say(&format!("error {}", err.trace())),
        Ok(GetOrSetEntry::Occupied(value)) => {
            let value = value.incoming_value_consume_sync().unwrap();
            say(&format!("occupied {}", String::from_utf8(value).unwrap()));
        }
        Ok(GetOrSetEntry::Vacant(_)) => say("vacant"),
    }
}

/// Keeps `n` incoming values of a `size`-byte entry until the memory budget refuses one.
pub async fn hoard_values(n: usize, size: usize) {
    set("hoard", &vec![7; size], None).await;
    let mut held = Vec::new();
    for i in 0..n {
        match cache::get("hoard").get().await {
            Ok(value) => held.push(value.unwrap()),
            Err(err) => {
                say(&format!("refused after {i}: {}", err.trace()));
                return;
            }
        }
    }
    say(&format!("held {}", held.len()));
}

/// Keeps vacancies of `n` keys (and their fill values, unwritten) until refused.
pub async fn hoard_vacancies(n: usize) {
    let mut held = Vec::new();
    for i in 0..n {
        match cache::get_or_set(&format!("vacancy-{i}")).get().await {
            Ok(GetOrSetEntry::Vacant(vacancy)) => {
                let out = vacancy.vacancy_fill(None);
                held.push((vacancy, out));
            }
            Ok(GetOrSetEntry::Occupied(_)) => panic!("vacancy-{i} was occupied"),
            Err(err) => {
                say(&format!("refused after {i}: {}", err.trace()));
                return;
            }
        }
    }
    say(&format!("held {}", held.len()));
}

/// `n` calls of every kind started and dropped unread, writes included, then `n` gets awaited
/// at once.
pub async fn flood(n: usize) {
    for i in 0..n {
        let key = format!("f{}", i % 64);
        drop(cache::get(&key));
        drop(cache::exists(&key));
        drop(cache::get_or_set(&key));
        let out = OutgoingValue::new_outgoing_value();
        out.outgoing_value_write_body_sync(b"x").unwrap();
        drop(cache::set(&key, &out, None));
        drop(cache::delete(&key));
    }
    let futures: Vec<_> = (0..n.min(1000))
        .map(|i| cache::get(&format!("f{}", i % 64)))
        .collect();
    let results = join_all(futures.iter().map(|f| f.get())).await;
    let errors = results.iter().filter(|r| r.is_err()).count();
    say(&format!(
        "flooded {n}; awaited {} ({errors} errors)",
        results.len()
    ));
}

/// Creates `n` `stream<u8>`s and holds both ends of each: WASI 0.3 handles the guest makes
/// without a host call, which the host's resource cap bounds all the same.
pub fn hold_streams(n: usize) {
    let held: Vec<_> = (0..n).map(|_| super::wit_stream::new::<u8>()).collect();
    say(&format!("held {} streams", held.len()));
}
