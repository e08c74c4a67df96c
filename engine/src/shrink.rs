//! Giving back the memory of maps that grew for a burst and then emptied.
//!
//! A hash map keeps its capacity when entries are removed: a shard that
//! once held a million objects' sockets or calls would hold their buckets
//! for good. [`map_if_sparse`] shrinks a map to twice its entries once at
//! most a quarter of its capacity is used (and it is more than four times
//! [`CAPACITY_KEPT`], so that a map just shrunk is left alone). The rehash is proportional to
//! the entries left and bounded by [`SHRINK_LEN_MAX`]; each shrink at least
//! halves the room grown for entries since removed, so over time it costs
//! no more than the growth did.
//!
//! ```
//! let mut map: std::collections::HashMap<u32, u32> = (0..100_000).map(|n| (n, n)).collect();
//! map.retain(|&k, _| k < 10);
//! assert!(durin::shrink::map_if_sparse(&mut map));
//! assert!(map.capacity() <= 2 * durin::shrink::CAPACITY_KEPT);
//! assert!(!durin::shrink::map_if_sparse(&mut map), "left alone once shrunk");
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Below this capacity a map is never shrunk: small maps cost little and
/// would only be regrown.
pub const CAPACITY_KEPT: usize = 1024;
/// The most entries one shrink rehashes (a few milliseconds at most); a
/// map with more keeps its capacity, which is then at most four times
/// what it holds.
pub const SHRINK_LEN_MAX: usize = 128 * 1024;

/// Shrinks `map` once it is mostly empty; returns whether it did.
pub fn map_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) -> bool {
    let len = map.len();
    if map.capacity() <= 4 * len.max(CAPACITY_KEPT) || len > SHRINK_LEN_MAX {
        return false;
    }
    map.shrink_to((len * 2).max(CAPACITY_KEPT));
    true
}
