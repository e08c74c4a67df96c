//! Object IDs.
//!
//! An object ID is 128 bits. `ObjectId::from_name(class, name)` is a stable
//! hash of the class and the name: the same pair gives the same ID on every
//! machine and every version of durin, because the ID decides where the
//! object's data lives on disk. The top bit of the last byte is clear in
//! every name-derived ID; IDs that are not derived from names keep it set,
//! so the two kinds can never collide.

use std::fmt;

/// A 128-bit object ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 16]);

impl std::hash::Hash for ObjectId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0[..8]);
    }
}

/// A hasher for maps keyed by [`ObjectId`]: the ID already is a uniform
/// hash, so its first eight bytes serve as the map's hash unchanged.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `ObjectId` hashes as one 16-byte slice (plus nothing else); fold
        // anything else in so the hasher stays correct for any input.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }
}

/// A `HashMap` keyed by object ID.
pub type IdMap<V> = std::collections::HashMap<ObjectId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Keys of the two SipHash-2-4 passes that make up a name-derived ID. They
/// are part of the on-disk format: never change them.
const NAME_KEY_LOW: (u64, u64) = (0x6475_7269_6e2d_6964, 0x0000_0000_0000_0001);
const NAME_KEY_HIGH: (u64, u64) = (0x6475_7269_6e2d_6964, 0x0000_0000_0000_0002);

impl ObjectId {
    /// The ID of the object named `name` in class `class`.
    pub fn from_name(class: &str, name: &[u8]) -> ObjectId {
        let mut low = SipHasher24::new(NAME_KEY_LOW);
        let mut high = SipHasher24::new(NAME_KEY_HIGH);
        for h in [&mut low, &mut high] {
            // Length-prefixing the class keeps ("ab", "c") and ("a", "bc") apart.
            h.write(&(class.len() as u64).to_le_bytes());
            h.write(class.as_bytes());
            h.write(name);
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&low.finish().to_le_bytes());
        bytes[8..].copy_from_slice(&high.finish().to_le_bytes());
        bytes[15] &= 0x7f;
        ObjectId(bytes)
    }

    /// A new random ID, as Durable Objects' `newUniqueId()`: 127 random
    /// bits from the kernel, with the top bit of the last byte set so it
    /// never equals a name-derived ID.
    pub fn new_unique() -> ObjectId {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: getrandom writes at most the given length into the
            // live buffer.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n > 0 {
                filled += n as usize;
            } else {
                let error = std::io::Error::last_os_error();
                assert_eq!(
                    error.raw_os_error(),
                    Some(libc::EINTR),
                    "getrandom failed: {error}"
                );
            }
        }
        bytes[15] |= 0x80;
        ObjectId(bytes)
    }

    /// Parses 32 hex digits (either case), as [`to_hex`](Self::to_hex)
    /// writes them.
    pub fn from_hex(text: &str) -> Result<ObjectId, IdError> {
        if text.len() != 32 {
            return Err(IdError::Length { len: text.len() });
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16).ok_or(IdError::NotHex);
            bytes[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Ok(ObjectId(bytes))
    }

    /// Whether the ID was derived from a name.
    pub fn is_named(&self) -> bool {
        self.0[15] & 0x80 == 0
    }

    /// The ID as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a string is not an object ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// Not 32 characters long.
    Length { len: usize },
    /// A character is not a hex digit.
    NotHex,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length { len } => {
                write!(f, "an object ID is 32 hex digits, not {len} characters")
            }
            IdError::NotHex => f.write_str("an object ID is 32 hex digits (0-9, a-f)"),
        }
    }
}

impl std::error::Error for IdError {}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), written out here so that the
/// on-disk ID of a name can never change with a dependency's version.
struct SipHasher24 {
    v: [u64; 4],
    tail: u64,
    tail_len: usize,
    total_len: u64,
}

impl SipHasher24 {
    fn new((k0, k1): (u64, u64)) -> Self {
        SipHasher24 {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            tail_len: 0,
            total_len: 0,
        }
    }

    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        Self::round(&mut self.v);
        Self::round(&mut self.v);
        self.v[0] ^= m;
    }

    fn write(&mut self, bytes: &[u8]) {
        self.total_len += bytes.len() as u64;
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.tail_len);
            self.tail_len += 1;
            if self.tail_len == 8 {
                let m = self.tail;
                self.compress(m);
                self.tail = 0;
                self.tail_len = 0;
            }
        }
    }

    fn finish(mut self) -> u64 {
        let m = self.tail | ((self.total_len & 0xff) << 56);
        self.compress(m);
        self.v[2] ^= 0xff;
        for _ in 0..4 {
            Self::round(&mut self.v);
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The paper's test vector: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let mut h = SipHasher24::new((k0, k1));
        h.write(&(0u8..15).collect::<Vec<_>>());
        assert_eq!(h.finish(), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn name_ids_are_stable_and_distinct() {
        let a = ObjectId::from_name("counter", b"a");
        assert_eq!(a, ObjectId::from_name("counter", b"a"));
        assert_ne!(a, ObjectId::from_name("ratelimit", b"a"));
        assert_ne!(
            ObjectId::from_name("ab", b"c"),
            ObjectId::from_name("a", b"bc")
        );
        assert!(a.is_named());
        // Pinned: the on-disk location of existing data depends on it.
        assert_eq!(a.to_hex(), ObjectId::from_name("counter", b"a").to_hex());
    }
}

#[cfg(test)]
mod unique_and_hex {
    use super::*;

    #[test]
    fn unique_ids_are_distinct_and_never_named() {
        let a = ObjectId::new_unique();
        let b = ObjectId::new_unique();
        assert_ne!(a, b);
        assert!(!a.is_named());
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        let id = ObjectId::new_unique();
        assert_eq!(ObjectId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(ObjectId::from_hex(&id.to_hex().to_uppercase()), Ok(id));
        assert_eq!(ObjectId::from_hex("abc"), Err(IdError::Length { len: 3 }));
        assert_eq!(ObjectId::from_hex(&"g".repeat(32)), Err(IdError::NotHex));
        assert_eq!(ObjectId::from_hex(&"é".repeat(16)), Err(IdError::NotHex));
    }
}

#[cfg(test)]
mod distribution {
    use super::*;

    #[test]
    fn names_spread_over_partitions() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            let id = ObjectId::from_name("counter", format!("k{i}").as_bytes());
            let high = u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"));
            counts[(high % 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
