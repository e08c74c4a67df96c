//! A keyed limiter for ordinary multi-threaded programs.
//!
//! Keys are split by hash over shards, each a single-threaded keyed limiter
//! behind its own mutex on its own cache lines. Two threads contend only
//! when they check keys of the same shard at the same instant, so with
//! several shards per thread the throughput grows with the threads. A
//! thread-per-core program needs none of this: each core owns a
//! [`KeyedLimiter`](super::KeyedLimiter) for the keys it serves.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::core::KeyedCore;
use super::{check_keys_max, KeyedStats, RandomSipHash};
use crate::{Algorithm, Decision, Error};

/// Shards per available thread when the count is not given: enough that two
/// threads rarely meet on one lock.
const SHARDS_PER_THREAD: usize = 8;
/// The most shards a limiter is split into.
pub const SHARDS_MAX: usize = 1 << 10;

/// A shard alone on its cache lines (two, for the adjacent-line prefetcher),
/// so that threads working on neighbouring shards do not slow each other.
#[repr(align(128))]
struct Shard<K, A: Algorithm>(Mutex<KeyedCore<K, A>>);

/// A keyed limiter shared among threads: `&self` checks, `Send + Sync`.
///
/// Its guarantee is [`KeyedLimiter`](super::KeyedLimiter)'s, per shard: the
/// cap is divided among the shards, each keeps its own time and its own
/// overflow state, and a key always maps to the same shard. The memory is
/// the sum of the shards', for `keys_max` keys in all; as the shards grow
/// one at a time, the transient of a growth is one shard's.
///
/// ```
/// use std::sync::Arc;
/// use durin_ratelimit::{CoarseClock, FixedWindow, SyncKeyedLimiter};
///
/// let limiter = Arc::new(SyncKeyedLimiter::new(FixedWindow::new(5, 1_000)?, 10_000)?);
/// let workers: Vec<_> = (0..2u64)
///     .map(|worker| {
///         let limiter = Arc::clone(&limiter);
///         std::thread::spawn(move || {
///             let clock = CoarseClock::at(1_700_000_000_000);
///             (0..10).filter(|_| limiter.check(&worker, clock.now_ms(), 1).allowed).count()
///         })
///     })
///     .collect();
/// for worker in workers {
///     assert_eq!(worker.join().expect("no panic"), 5);
/// }
/// # Ok::<(), durin_ratelimit::Error>(())
/// ```
pub struct SyncKeyedLimiter<K, A: Algorithm, H = RandomSipHash> {
    shards: Box<[Shard<K, A>]>,
    hasher: H,
}

impl<K: Hash + Eq, A: Algorithm + Clone> SyncKeyedLimiter<K, A> {
    /// A limiter that tracks at most `keys_max` keys, split over
    /// `8 * available_parallelism` shards (rounded to a power of two).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroKeys`] for a cap of 0 and
    /// [`Error::TooManyKeys`] for one above
    /// [`KEYS_MAX_LIMIT`](super::KEYS_MAX_LIMIT).
    pub fn new(algorithm: A, keys_max: usize) -> Result<Self, Error> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (threads * SHARDS_PER_THREAD).next_power_of_two();
        Self::with_shards(algorithm, keys_max, shards, RandomSipHash::new())
    }
}

impl<K: Hash + Eq, A: Algorithm + Clone, H: BuildHasher> SyncKeyedLimiter<K, A, H> {
    /// A limiter split over `shards` shards (rounded up to a power of two,
    /// at most [`SHARDS_MAX`] and at most `keys_max`) that hashes keys with
    /// `hasher`.
    ///
    /// # Errors
    ///
    /// As [`SyncKeyedLimiter::new`].
    pub fn with_shards(
        algorithm: A,
        keys_max: usize,
        shards: usize,
        hasher: H,
    ) -> Result<Self, Error> {
        check_keys_max(keys_max)?;
        let mut count = shards.clamp(1, SHARDS_MAX).next_power_of_two();
        while count > keys_max {
            count /= 2;
        }
        // The cap is dealt out so that the shards' caps add up to it.
        let shards = (0..count)
            .map(|index| {
                let share = keys_max / count + usize::from(index < keys_max % count);
                Shard(Mutex::new(KeyedCore::new(algorithm.clone(), share)))
            })
            .collect();
        Ok(SyncKeyedLimiter { shards, hasher })
    }
}

impl<K: Hash + Eq, A: Algorithm, H: BuildHasher> SyncKeyedLimiter<K, A, H> {
    /// The shard a hash belongs to: its low bits (the table inside uses the
    /// high bits to place the key).
    #[inline]
    fn shard(&self, hash: u64) -> MutexGuard<'_, KeyedCore<K, A>> {
        // `shards.len()` is a power of two; truncating the hash keeps the
        // low bits the mask needs.
        let index = hash as usize & (self.shards.len() - 1);
        // A panic while a shard was locked is a bug in this crate that has
        // already been reported; its keys are plain counters, so carry on.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks `cost` units for `key` at `now_ms`, as
    /// [`KeyedLimiter::check`](super::KeyedLimiter::check) does.
    #[inline]
    pub fn check<Q>(&self, key: &Q, now_ms: u64, cost: u64) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).check(hash, key, now_ms, cost)
    }

    /// Whether `key` is tracked.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).contains(hash, key)
    }

    /// Allocates every shard's table at its final size now; see
    /// [`KeyedLimiter::reserve_all`](super::KeyedLimiter::reserve_all).
    pub fn reserve_all(&self) {
        for index in 0..self.shards.len() {
            self.lock_index(index).reserve_all();
        }
    }

    /// Drops every expired key in every shard; returns how many.
    pub fn purge_expired(&self, now_ms: u64) -> usize {
        (0..self.shards.len())
            .map(|index| self.lock_index(index).purge_expired(now_ms))
            .sum()
    }

    /// Keys tracked now, over all shards.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|index| self.lock_index(index).len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many shards the keys are split over.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The sum of the shards' figures.
    pub fn stats(&self) -> KeyedStats {
        (0..self.shards.len())
            .map(|index| self.lock_index(index).stats())
            .fold(KeyedStats::default(), KeyedStats::add)
    }

    fn lock_index(&self, index: usize) -> MutexGuard<'_, KeyedCore<K, A>> {
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gcra;

    #[test]
    fn cap_is_dealt_out_exactly() {
        let gcra = Gcra::new(1, 1_000, 1).expect("valid config");
        for (keys_max, shards) in [(1, 16), (7, 4), (1_000, 16), (1_003, 64)] {
            let limiter: SyncKeyedLimiter<u64, _> =
                SyncKeyedLimiter::with_shards(gcra, keys_max, shards, RandomSipHash::new())
                    .expect("valid cap");
            assert!(limiter.shard_count() <= keys_max);
            assert!(limiter.shard_count().is_power_of_two());
            assert_eq!(limiter.stats().keys_max, keys_max);
        }
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SyncKeyedLimiter<String, Gcra>>();
        assert_send_sync::<SyncKeyedLimiter<u64, crate::SlidingWindow>>();
    }
}
