//! A keyed limiter for ordinary multi-threaded programs.
//!
//! Keys are split by hash over shards. A check of a key the shard tracks
//! runs in place under the lock of the key's own slot (see
//! [`shared`](super::shared)): it writes nothing but that slot, so threads
//! checking different keys share no written cache line and the throughput
//! grows with the threads. Only a change of which keys are tracked (a new
//! key, an expired one removed, the table growing) takes the shard's mutex,
//! and runs the single-threaded limiter's logic under it. A thread-per-core
//! program needs none of this: each core owns a
//! [`KeyedLimiter`](super::KeyedLimiter) for the keys it serves.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::core::{live_until, KeyedCore};
use super::shared::{SharedSlots, SharedTable};
use super::{check_keys_max, KeyedStats, RandomSipHash};
use crate::{Algorithm, Decision, Error};

/// Shards per available thread when the count is not given: enough that
/// threads adding new keys rarely wait for one another's mutex.
const SHARDS_PER_THREAD: usize = 8;
/// The most shards a limiter is split into.
pub const SHARDS_MAX: usize = 1 << 10;

type Core<K, A> = KeyedCore<K, A, SharedTable<K, <A as Algorithm>::State>>;

/// A shard alone on its cache lines (two, for the adjacent-line prefetcher),
/// so that the mutex of one is not on the lines another's checks read.
#[repr(align(128))]
struct Shard<K, A: Algorithm> {
    /// The slots, checked in place by any thread.
    slots: Arc<SharedSlots<K, A::State>>,
    /// Whatever changes which keys are tracked.
    core: Mutex<Core<K, A>>,
}

impl<K, A: Algorithm> Shard<K, A> {
    fn lock(&self) -> MutexGuard<'_, Core<K, A>> {
        // A panic while a shard was locked is a bug in this crate that has
        // already been reported; its keys are plain counters, so carry on.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A keyed limiter shared among threads: `&self` checks, `Send + Sync`.
///
/// Its guarantee is [`KeyedLimiter`](super::KeyedLimiter)'s, per shard: the
/// cap is divided among the shards, each keeps its own time and its own
/// overflow state, and a key always maps to the same shard. Concurrent
/// checks of one key are serialized by its slot's lock, so a limit is never
/// granted twice. The memory is the sum of the shards' tables, for
/// `keys_max` keys in all; each table is allocated for its cap at once but
/// uses (and, on Linux, touches) only the slots it has grown to, rehashing
/// in place as it doubles.
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
    /// The algorithm, for checks made without a mutex.
    algorithm: A,
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
                let table = SharedTable::new(share);
                Shard {
                    slots: Arc::clone(table.shared()),
                    core: Mutex::new(KeyedCore::with_table(algorithm.clone(), share, table)),
                }
            })
            .collect();
        Ok(SyncKeyedLimiter {
            algorithm,
            shards,
            hasher,
        })
    }
}

impl<K: Hash + Eq, A: Algorithm, H: BuildHasher> SyncKeyedLimiter<K, A, H> {
    /// The shard a hash belongs to: its low bits (the table inside uses the
    /// high bits to place the key).
    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, A> {
        // `shards.len()` is a power of two; truncating the hash keeps the
        // low bits the mask needs.
        &self.shards[hash as usize & (self.shards.len() - 1)]
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
        let shard = self.shard(hash);
        let algorithm = &self.algorithm;
        let tracked = shard
            .slots
            .check_tracked(hash, key, now_ms, |state, now_ms| {
                let decision = algorithm.check(state, now_ms, cost);
                (decision, live_until(algorithm, state, now_ms))
            });
        match tracked {
            Some((decision, false)) => decision,
            Some((decision, true)) => {
                // Only a check of cost 0 leaves a state expired; the slot is
                // freed as the single-threaded limiter frees it.
                let now_ms = shard.slots.advance(now_ms);
                shard.lock().remove_if_expired(hash, key, now_ms);
                decision
            }
            None => Self::check_locked(shard, hash, key, now_ms, cost),
        }
    }

    /// A check under the shard's mutex: a key not tracked yet, or one that
    /// another thread is moving.
    #[inline(never)]
    fn check_locked<Q>(shard: &Shard<K, A>, hash: u64, key: &Q, now_ms: u64, cost: u64) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut core = shard.lock();
        let now_ms = shard.slots.advance(now_ms);
        core.check(hash, key, now_ms, cost)
    }

    /// Whether `key` is tracked.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).lock().contains(hash, key)
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
            .map(|index| {
                let mut core = self.lock_index(index);
                let now_ms = self.shards[index].slots.advance(now_ms);
                core.purge_expired(now_ms)
            })
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

    fn lock_index(&self, index: usize) -> MutexGuard<'_, Core<K, A>> {
        self.shards[index].lock()
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

    impl<K: Hash + Eq, A: Algorithm, H: BuildHasher> SyncKeyedLimiter<K, A, H> {
        fn assert_consistent(&self) {
            for index in 0..self.shards.len() {
                self.lock_index(index).table().assert_consistent();
            }
        }
    }

    /// Runs `work(thread)` on `threads` threads at once; returns what each
    /// returned, in thread order.
    fn on_threads<R: Send>(threads: u64, work: impl Fn(u64) -> R + Sync) -> Vec<R> {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|thread| {
                    let work = &work;
                    scope.spawn(move || work(thread))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("no panic"))
                .collect()
        })
    }

    /// Threads check the same keys while the tables grow from 16 slots to
    /// their cap under them: within one window, each key's admitted checks
    /// must have seen `remaining` count down from `limit - 1` to 0, each
    /// value once, or two threads updated one state at once.
    #[test]
    fn no_update_is_lost_while_tables_grow() {
        // Miri runs every test, small enough for an interpreter.
        const LIMIT: u64 = if cfg!(miri) { 3 } else { 20 };
        const KEYS: u64 = if cfg!(miri) { 40 } else { 4_000 };
        const THREADS: u64 = if cfg!(miri) { 3 } else { 4 };
        let window = crate::FixedWindow::new(LIMIT, 3_600_000).expect("valid config");
        let limiter: SyncKeyedLimiter<u64, _> =
            SyncKeyedLimiter::with_shards(window, 2 * KEYS as usize, 2, RandomSipHash::new())
                .expect("valid cap");
        let seen = on_threads(THREADS, |thread| {
            let mut admitted = Vec::new();
            let mut x = 0x9E37_79B9_7F4A_7C15 ^ (thread + 1);
            for _ in 0..2 * LIMIT * KEYS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = x % KEYS;
                let decision = limiter.check(&key, 1_000, 1);
                if decision.allowed {
                    admitted.push((key, decision.remaining));
                }
            }
            admitted
        });
        let mut remaining: Vec<Vec<u64>> = vec![Vec::new(); KEYS as usize];
        for (key, left) in seen.into_iter().flatten() {
            remaining[key as usize].push(left);
        }
        for (key, mut left) in remaining.into_iter().enumerate() {
            left.sort_unstable();
            assert_eq!(left, (0..LIMIT).collect::<Vec<_>>(), "key {key}");
        }
        assert_eq!(limiter.len(), KEYS as usize);
        assert_eq!(limiter.stats().untracked_checks_total, 0);
        limiter.assert_consistent();
    }

    /// Threads with clocks a little apart check keys of short windows at a
    /// cap well below the keys in play, with checks of cost 0 among them:
    /// keys are inserted, taken over, swept and removed under the mutex
    /// while other threads check in place. The cap holds, the tables stay
    /// consistent, and no key is granted more than its limit per window over
    /// the windows the run spans.
    #[test]
    fn churn_at_the_cap_under_threads_keeps_the_table_consistent() {
        const LIMIT: u64 = 3;
        const WINDOW_MS: u64 = 8;
        const KEYS: u64 = if cfg!(miri) { 200 } else { 3_000 };
        const KEYS_MAX: usize = if cfg!(miri) { 40 } else { 500 };
        const THREADS: u64 = if cfg!(miri) { 3 } else { 4 };
        const STEPS: u64 = if cfg!(miri) { 3_000 } else { 200_000 };
        const STEPS_PER_MS: u64 = if cfg!(miri) { 20 } else { 500 };
        let window = crate::FixedWindow::new(LIMIT, WINDOW_MS).expect("valid config");
        let limiter: SyncKeyedLimiter<u64, _> =
            SyncKeyedLimiter::with_shards(window, KEYS_MAX, 4, RandomSipHash::new())
                .expect("valid cap");
        let start_ms = 1_700_000_000_000u64;
        let admitted = on_threads(THREADS, |thread| {
            let mut admitted = Vec::new();
            let mut x = 0x2545_F491_4F6C_DD1D ^ (thread + 1);
            for step in 0..STEPS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Each thread's clock runs a little behind or
                // ahead of the others'.
                let now_ms = start_ms + step / STEPS_PER_MS + thread % 2;
                let key = x % KEYS;
                let cost = u64::from(x % 16 != 0);
                let decision = limiter.check(&key, now_ms, cost);
                if decision.allowed && cost > 0 {
                    admitted.push(key);
                }
            }
            admitted
        });
        let stats = limiter.stats();
        assert!(stats.keys_tracked <= KEYS_MAX, "{stats:?}");
        assert!(
            stats.untracked_checks_total > 0,
            "the cap was reached: {stats:?}"
        );
        assert!(stats.expired_evictions_total > 0, "keys expired: {stats:?}");
        limiter.assert_consistent();
        // Granted units per key cannot exceed the limit in each window the
        // run spans, plus one for a window straddling the clock skew.
        let windows = STEPS / STEPS_PER_MS / WINDOW_MS + 2;
        let mut per_key = vec![0u64; KEYS as usize];
        for key in admitted.into_iter().flatten() {
            per_key[key as usize] += 1;
        }
        for (key, granted) in per_key.into_iter().enumerate() {
            assert!(granted <= LIMIT * windows, "key {key}: {granted}");
        }
    }

    #[test]
    fn string_keys_are_checked_in_place_and_dropped_with_the_limiter() {
        let window = crate::FixedWindow::new(3, 60_000).expect("valid config");
        let limiter: SyncKeyedLimiter<String, _> =
            SyncKeyedLimiter::with_shards(window, 100, 4, RandomSipHash::new()).expect("cap");
        for round in 0..4 {
            for client in ["alice", "bob", "carol"] {
                let decision = limiter.check(client, 1_000, 1);
                assert_eq!(decision.allowed, round < 3, "{client} in round {round}");
            }
        }
        assert_eq!(limiter.len(), 3);
        assert!(limiter.contains("bob"));
        assert_eq!(limiter.purge_expired(61_000), 3);
        assert!(limiter.check("bob", 61_000, 1).allowed);
        limiter.assert_consistent();
    }

    /// An algorithm that panics on a cost of 13.
    #[derive(Clone)]
    struct PanicsOn13(crate::FixedWindow);

    impl Algorithm for PanicsOn13 {
        type State = crate::FixedWindowState;

        fn check(&self, state: &mut Self::State, now_ms: u64, cost: u64) -> Decision {
            assert_ne!(cost, 13, "unlucky cost");
            self.0.check(state, now_ms, cost)
        }

        fn expires_at_ms(&self, state: &Self::State) -> u64 {
            self.0.expires_at_ms(state)
        }
    }

    /// A panic inside a check, in place or under the mutex, leaves neither
    /// the key's slot nor the shard locked.
    #[test]
    fn a_panicking_check_leaves_the_key_usable() {
        let window = PanicsOn13(crate::FixedWindow::new(5, 60_000).expect("valid config"));
        let limiter: SyncKeyedLimiter<u64, _> =
            SyncKeyedLimiter::with_shards(window, 100, 1, RandomSipHash::new()).expect("cap");
        assert!(limiter.check(&7, 1_000, 1).allowed);
        // Tracked, so checked in place: the panic leaves the state as it was.
        for remaining in [3, 2, 1, 0] {
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                limiter.check(&7, 1_000, 13)
            }));
            assert!(unwound.is_err());
            assert_eq!(limiter.check(&7, 1_000, 1).remaining, remaining);
        }
        assert!(!limiter.check(&7, 1_000, 1).allowed);
        // Untracked: the check runs under the mutex.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            limiter.check(&8, 1_000, 13)
        }));
        assert!(unwound.is_err());
        assert!(limiter.check(&8, 1_000, 1).allowed);
        limiter.assert_consistent();
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SyncKeyedLimiter<String, Gcra>>();
        assert_send_sync::<SyncKeyedLimiter<u64, crate::SlidingWindow>>();
    }
}
