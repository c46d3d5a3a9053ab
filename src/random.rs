//! Non-cryptographic randomness from the standard library's per-process hash keys: enough
//! for backoff jitter, request ids and run-id suffixes, without another dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh random 64-bit value.
pub fn u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A uniform value in [0, 1).
pub fn unit() -> f64 {
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random version-4-shaped GUID, for `client-request-id`.
pub fn guid() -> String {
    let a = u64();
    let b = u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a as u16 & 0x0fff,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn guids_are_well_formed_and_distinct() {
        let a = super::guid();
        let b = super::guid();
        assert_ne!(a, b);
        assert!(crate::config::is_guid(&a), "{a}");
        let u = super::unit();
        assert!((0.0..1.0).contains(&u));
    }
}
