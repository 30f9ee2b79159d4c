//! The channel table's queue: taking one kind of command leaves the other kind's channels
//! queued, in order, whatever their mix, and every channel is taken exactly once.

use tokio::sync::watch;

use super::{Channel, Event, Kind, Status, Table};

/// A table of `n` channels wanted and idle (needing SUBSCRIBE) interleaved with `n` subscribed
/// and no longer wanted (needing UNSUBSCRIBE), all queued.
fn mixed(n: usize) -> Table {
    let mut table = Table::default();
    for i in 0..n {
        for (name, refs, status) in [
            (format!("sub{i}"), 1, Status::Idle),
            (format!("unsub{i}"), 0, Status::Subscribed),
        ] {
            let (events, _) = watch::channel(Event::Nothing);
            let channel = Channel {
                refs,
                status,
                queued: false,
                events,
            };
            table.channels.insert(name.clone().into_bytes(), channel);
            table.queue(name.as_bytes());
        }
    }
    table
}

/// Takes batches of `kind` until none is left.
fn drain(table: &mut Table, kind: Kind) -> Vec<Vec<u8>> {
    let mut taken = Vec::new();
    loop {
        let batch = table.take(kind);
        if batch.is_empty() {
            return taken;
        }
        assert!(batch.len() <= super::BATCH);
        taken.extend(batch);
    }
}

#[test]
fn each_kind_drains_alone_in_order() {
    const N: usize = 20_000;
    let mut table = mixed(N);
    let unsubscribed = drain(&mut table, Kind::Unsubscribe);
    let expected: Vec<Vec<u8>> = (0..N).map(|i| format!("unsub{i}").into_bytes()).collect();
    assert_eq!(unsubscribed, expected);
    let subscribed = drain(&mut table, Kind::Subscribe);
    let expected: Vec<Vec<u8>> = (0..N).map(|i| format!("sub{i}").into_bytes()).collect();
    assert_eq!(subscribed, expected);
    assert!(matches!(
        table.channels[&b"sub0"[..]].status,
        Status::Subscribing
    ));
    assert!(matches!(
        table.channels[&b"unsub0"[..]].status,
        Status::Unsubscribing
    ));
}

#[test]
fn a_channel_that_changed_its_mind_moves_to_the_other_kind() {
    let mut table = mixed(2);
    // Sorted first, then wanted again before its UNSUBSCRIBE was taken: it needs nothing now.
    assert!(table.take(Kind::Subscribe).len() == 2);
    table.channels.get_mut(&b"unsub0"[..]).unwrap().refs = 1;
    assert_eq!(table.take(Kind::Unsubscribe), vec![b"unsub1".to_vec()]);
    assert!(!table.channels[&b"unsub0"[..]].queued);
    // Unwanted and never subscribed: it leaves the table when looked at.
    table.channels.get_mut(&b"unsub0"[..]).unwrap().refs = 0;
    table.channels.get_mut(&b"unsub0"[..]).unwrap().status = Status::Idle;
    table.queue(b"unsub0");
    assert!(table.take(Kind::Subscribe).is_empty());
    assert!(!table.channels.contains_key(&b"unsub0"[..]));
}
