//! The keyed limiters' default hasher: SipHash-1-3 with random keys, the
//! algorithm of the standard library's `RandomState`, with a fast path for
//! keys that hash as whole 64-bit words (integers, and most of a longer key).
//!
//! Clients choose the keys a rate limiter sees, so the hash must be keyed
//! with a secret, or a client could pick keys that all land in one probe
//! sequence. The standard library's hasher feeds a `u64` through its
//! general byte path; this one compresses it directly, which makes a check
//! of an integer key a few nanoseconds and many instructions cheaper.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`SipHasher13`]s with two 64-bit keys drawn at random once per
/// builder (from the standard library's own random source).
#[derive(Clone, Debug)]
pub struct RandomSipHash {
    k0: u64,
    k1: u64,
}

impl RandomSipHash {
    /// A builder with fresh random keys.
    pub fn new() -> Self {
        // `RandomState` is seeded from the OS once per thread and then
        // varied; hashing two constants with it yields two secret words.
        let random = RandomState::new();
        RandomSipHash {
            k0: random.hash_one(0x736f_6d65_7073_6575u64),
            k1: random.hash_one(0x646f_7261_6e64_6f6du64),
        }
    }

    /// A builder with the given keys: for tests that need fixed hashes.
    pub fn with_keys(k0: u64, k1: u64) -> Self {
        RandomSipHash { k0, k1 }
    }
}

impl Default for RandomSipHash {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for RandomSipHash {
    type Hasher = SipHasher13;

    #[inline]
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13 {
            v0: self.k0 ^ 0x736f_6d65_7073_6575,
            v1: self.k1 ^ 0x646f_7261_6e64_6f6d,
            v2: self.k0 ^ 0x6c79_6765_6e65_7261,
            v3: self.k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            tail_len: 0,
            length: 0,
        }
    }
}

/// SipHash-1-3 (one compression round per word, three finalisation rounds).
#[derive(Clone, Debug)]
pub struct SipHasher13 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes not yet compressed, little-endian, `tail_len` of them.
    tail: u64,
    tail_len: usize,
    /// Bytes written in all.
    length: usize,
}

impl SipHasher13 {
    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, word: u64) {
        self.v3 ^= word;
        self.round();
        self.v0 ^= word;
    }
}

/// Reads up to 8 bytes as a little-endian word.
#[inline]
fn load_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl Hasher for SipHasher13 {
    #[inline]
    fn write_u64(&mut self, value: u64) {
        if self.tail_len == 0 {
            self.length += 8;
            self.compress(value);
        } else {
            self.write(&value.to_le_bytes());
        }
    }

    fn write(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len();
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(bytes.len());
            self.tail |= load_le(&bytes[..take]) << (8 * self.tail_len);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 8 {
                return;
            }
            let word = self.tail;
            self.compress(word);
            self.tail = 0;
            self.tail_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.compress(load_le(word));
        }
        let rest = words.remainder();
        self.tail = load_le(rest);
        self.tail_len = rest.len();
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut state = self.clone();
        let last = ((self.length as u64 & 0xff) << 56) | self.tail;
        state.compress(last);
        state.v2 ^= 0xff;
        state.round();
        state.round();
        state.round();
        state.v0 ^ state.v1 ^ state.v2 ^ state.v3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{DefaultHasher, Hash};

    /// The standard library's `DefaultHasher::new()` is SipHash-1-3 with
    /// both keys 0; with the same keys this one must agree with it.
    fn std_hash<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    fn our_hash<T: Hash + ?Sized>(value: &T) -> u64 {
        RandomSipHash::with_keys(0, 0).hash_one(value)
    }

    #[test]
    fn agrees_with_the_standard_library() {
        for value in [0u64, 1, 42, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(our_hash(&value), std_hash(&value), "u64 {value}");
            assert_eq!(our_hash(&(value as u32)), std_hash(&(value as u32)));
            assert_eq!(our_hash(&(value, 7u8)), std_hash(&(value, 7u8)));
            assert_eq!(our_hash(&(7u8, value)), std_hash(&(7u8, value)));
        }
        let text = "The quick brown fox jumps over the lazy dog, twice over.";
        for end in 0..text.len() {
            assert_eq!(
                our_hash(&text[..end]),
                std_hash(&text[..end]),
                "{end} bytes"
            );
            assert_eq!(
                our_hash(&text.as_bytes()[..end]),
                std_hash(&text.as_bytes()[..end])
            );
        }
        let address = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        assert_eq!(our_hash(&address), std_hash(&address));
    }

    #[test]
    fn keys_change_the_hash() {
        let a = RandomSipHash::new();
        let b = RandomSipHash::new();
        assert_ne!(a.hash_one(1u64), b.hash_one(1u64));
        assert_ne!(a.hash_one(1u64), a.hash_one(2u64));
        assert_eq!(a.hash_one(1u64), a.clone().hash_one(1u64));
    }
}
