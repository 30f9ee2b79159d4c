//! Scenarios that run into the limits a host puts on a guest (the CLI's `--max-memory`,
//! `--max-resources` and `--timeout`): each says what it is about to do, then does it until the
//! host stops it.

use std::hint::black_box;

use crate::wasi::keyvalue::cache;
use crate::wasi::keyvalue::types::Bucket;

use crate::{expect_vacant, say};

/// Allocates `mib` MiB in 1 MiB blocks, touching every page, and holds them; says `allocated N
/// MiB` after each block. A memory cap below `mib` MiB makes an allocation fail, which aborts.
pub fn alloc(mib: usize) {
    let mut blocks = Vec::with_capacity(mib);
    for n in 1..=mib {
        let mut block = vec![0u8; 1 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = n as u8;
        }
        blocks.push(black_box(block));
        say(&format!("allocated {n} MiB"));
    }
    black_box(&blocks);
}

/// Opens `n` buckets and holds them all (one resource each); says `held N` at the end.
pub fn resources(n: usize) {
    let buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket::open_bucket(&format!("b{i}")).unwrap())
        .collect();
    say(&format!("held {}", buckets.len()));
}

/// Says `spinning`, then computes forever without calling the host.
pub fn spin() {
    say("spinning");
    let mut x = 1u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Takes the vacancy of `key`, then waits on the key's rendezvous (blocked in the host on the
/// waiter's pollable), which nobody fills before the vacancy timeout; says `blocking` first.
pub fn block_forever(key: &str) {
    let _vacancy = expect_vacant(&cache::get_or_set(key));
    let waiter = cache::get_or_set(key);
    say("blocking");
    waiter.listen_to_future_get_or_set_result().block();
    say("woke up");
}
