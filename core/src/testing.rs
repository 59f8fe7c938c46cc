//! Helpers for the crate's own unit tests. (The integration tests and the
//! end-to-end crate have their own copy of [`pattern`], as they cannot see
//! `cfg(test)` items of the library.)

/// Deterministic, non-repeating bytes (xorshift): a lost or misplaced block
/// shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
