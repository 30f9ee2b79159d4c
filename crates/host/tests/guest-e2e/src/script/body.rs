//! The bodies of the script format: the bytes `LEN SEED` stands for, and how result lines print
//! bytes. Shared with the host's property test (`crates/host/tests/prop`), which includes this
//! file to compute the results it expects: keep it free of guest-only code.

/// The body `LEN SEED` stands for: the `LEN` bytes `(SEED + 7 i) mod 256`.
pub(super) fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_add(i.wrapping_mul(7)) as u8)
        .collect()
}

/// Bytes as result lines print them: `LEN:HEX` up to 16 bytes, longer ones `LEN:#FNV` (64-bit
/// FNV-1a, hex).
pub(super) fn show(bytes: &[u8]) -> String {
    if bytes.len() <= 16 {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", bytes.len())
    } else {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}:#{hash:016x}", bytes.len())
    }
}
