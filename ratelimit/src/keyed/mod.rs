//! Limits for many keys in bounded memory.
//!
//! A [`KeyedLimiter`] keeps one algorithm state per key (an IP address, a
//! user, an API key) in a hash table with a hard cap on the keys it tracks.
//! It is a plain value for one thread, as a shard of a thread-per-core
//! program owns it: no atomic and no lock on the way. A check of a tracked
//! key is one hash, a probe of one or two slots and the algorithm's few
//! arithmetic operations, and it allocates nothing. [`SyncKeyedLimiter`]
//! shares one among threads (tokio, rayon): a check of a tracked key locks
//! that key's slot alone, and only changes of which keys are tracked take
//! a shard's mutex.
//!
//! ```
//! use durin_ratelimit::{CoarseClock, Gcra, KeyedLimiter};
//!
//! // 10 per second per client, bursts of 20, at most 100_000 clients tracked.
//! let mut limiter = KeyedLimiter::new(Gcra::new(10, 1_000, 20)?, 100_000)?;
//! let clock = CoarseClock::at(1_700_000_000_000);
//! for _ in 0..20 {
//!     assert!(limiter.check("203.0.113.7", clock.now_ms(), 1).allowed);
//! }
//! assert!(!limiter.check("203.0.113.7", clock.now_ms(), 1).allowed);
//! assert!(limiter.check("198.51.100.1", clock.now_ms(), 1).allowed);
//! assert_eq!(limiter.len(), 2);
//! # Ok::<(), durin_ratelimit::Error>(())
//! ```
//!
//! # Memory
//!
//! A tracked key costs one slot: its 64-bit hash, the key, the state and an
//! 8-byte expiry, padded to the key's alignment. For `u64` keys that is 32
//! bytes with [`Gcra`](crate::Gcra), 40 with
//! [`FixedWindow`](crate::FixedWindow) and 48 with
//! [`SlidingWindow`](crate::SlidingWindow); a `String` key adds its 24-byte
//! header, and its bytes on the heap. The table is at most three quarters
//! full, so at the cap it holds `ceil(keys_max * 4 / 3)` slots:
//! [`KeyedStats::slot_bytes_max`] is that figure, the most the table holds.
//! It grows by doubling on the way there (while it moves the entries, the
//! old half-size table is still allocated, so the peak is 1.5 times that
//! figure) and never shrinks. [`KeyedLimiter::reserve_all`] allocates the
//! final table at once instead, for a flat footprint and no allocation
//! after start-up.
//!
//! A [`SyncKeyedLimiter`]'s slots are the same size. Each shard allocates
//! its table for its cap at once, zeroed, and grows by rehashing into more
//! of it in place (other threads may be reading it, so it never moves); on
//! Linux the pages of the slots not yet in use are never touched and stay
//! out of the resident set, and a growth holds only a temporary list of
//! the shard's entries beside the table.
//!
//! # What happens at the cap
//!
//! A key whose state has **expired** gives the same decisions as a key never
//! seen (its window is over, its bucket is full; see
//! [`Algorithm::expires_at_ms`]), so dropping it loses nothing. Expired keys
//! are dropped as new keys arrive: a new key takes over an expired entry on
//! its own probe path, and otherwise sweeps a few slots from a random one
//! (at the cap, a few more, until it frees one).
//!
//! A key that has not expired is **never** dropped, not even at the cap:
//! dropping a key that has spent its limit would let it start afresh. When
//! the table is full of live keys, a key it does not track is checked
//! against one shared *overflow* state instead, so all untracked keys
//! together get one key's allowance; when such a key is tracked later, it
//! starts from a copy of the overflow state. A flood of new keys therefore
//! costs at most `keys_max` slots and is itself limited as one key, while
//! every tracked key keeps its exact limit.
//!
//! # The guarantee
//!
//! The limiter keeps its own time: a `now_ms` earlier than one it has seen is
//! taken as that later time, so an expired key stays expired. Then:
//!
//! - **Never more than the algorithm allows.** For every key, the checks
//!   admitted for it, replayed in order through the algorithm from a fresh
//!   state, are all admitted: no window grants it more than its limit, no
//!   bucket more than its burst plus its rate. This holds at the cap too,
//!   because the state a key is checked against (its own, or the overflow)
//!   has always been charged with at least everything that key was granted.
//! - **Exact while there is room.** As long as no check has found the table
//!   full of live keys (`untracked_checks_total` is 0), or since the
//!   overflow state last expired, every decision is exactly the algorithm's
//!   on that key's own history.
//!
//! The counters in [`KeyedStats`] tell which regime a limiter is in.

mod core;
mod shared;
mod sip;
mod slots;
mod sync;
mod table;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use self::core::KeyedCore;
use crate::{Algorithm, Decision, Error};

pub use sip::{RandomSipHash, SipHasher13};
pub use sync::{SyncKeyedLimiter, SHARDS_MAX};

/// The largest `keys_max` a limiter accepts: about 4 billion keys, more than
/// any machine holds, and small enough that the table's size never overflows.
pub const KEYS_MAX_LIMIT: usize = 1 << 32;

/// What a keyed limiter holds and has done; counters end in `_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyedStats {
    /// Keys tracked now, expired ones not yet swept included.
    pub keys_tracked: usize,
    /// The cap on tracked keys.
    pub keys_max: usize,
    /// Bytes of the table's slots now.
    pub slot_bytes: usize,
    /// Bytes of the table's slots at the cap: the most it ever allocates
    /// (keys that own heap memory, such as `String`, add theirs).
    pub slot_bytes_max: usize,
    /// Checks of an untracked key made against the overflow state because
    /// the table was full of live keys.
    pub untracked_checks_total: u64,
    /// Keys dropped because their state had expired.
    pub expired_evictions_total: u64,
}

impl KeyedStats {
    fn add(self, other: KeyedStats) -> KeyedStats {
        KeyedStats {
            keys_tracked: self.keys_tracked + other.keys_tracked,
            keys_max: self.keys_max + other.keys_max,
            slot_bytes: self.slot_bytes + other.slot_bytes,
            slot_bytes_max: self.slot_bytes_max + other.slot_bytes_max,
            untracked_checks_total: self.untracked_checks_total + other.untracked_checks_total,
            expired_evictions_total: self.expired_evictions_total + other.expired_evictions_total,
        }
    }
}

/// Validates a key cap.
fn check_keys_max(keys_max: usize) -> Result<(), Error> {
    if keys_max == 0 {
        return Err(Error::ZeroKeys);
    }
    if keys_max > KEYS_MAX_LIMIT {
        return Err(Error::TooManyKeys {
            keys_max,
            limit: KEYS_MAX_LIMIT,
        });
    }
    Ok(())
}

/// A rate limiter for many keys, for one thread; see the
/// [module documentation](self) for its memory and its guarantee.
///
/// `K` is the owned key type; checks take any borrowed form of it (`&str`
/// for `String`), and only a key seen for the first time is converted to
/// `K`. `H` hashes keys; the default, [`RandomSipHash`], is the standard
/// library's algorithm (SipHash-1-3 with random keys, so that clients
/// cannot choose keys that collide) with a fast path for integer keys.
/// Keys that no client chooses may use any faster hasher.
pub struct KeyedLimiter<K, A: Algorithm, H = RandomSipHash> {
    core: KeyedCore<K, A>,
    hasher: H,
}

impl<K: Hash + Eq, A: Algorithm> KeyedLimiter<K, A> {
    /// A limiter that tracks at most `keys_max` keys.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroKeys`] for a cap of 0 and [`Error::TooManyKeys`] for one
    /// above [`KEYS_MAX_LIMIT`].
    pub fn new(algorithm: A, keys_max: usize) -> Result<Self, Error> {
        Self::with_hasher(algorithm, keys_max, RandomSipHash::new())
    }
}

impl<K: Hash + Eq, A: Algorithm, H: BuildHasher> KeyedLimiter<K, A, H> {
    /// A limiter that hashes keys with `hasher`.
    ///
    /// # Errors
    ///
    /// As [`KeyedLimiter::new`].
    pub fn with_hasher(algorithm: A, keys_max: usize, hasher: H) -> Result<Self, Error> {
        check_keys_max(keys_max)?;
        Ok(KeyedLimiter {
            core: KeyedCore::new(algorithm, keys_max),
            hasher,
        })
    }

    /// Checks `cost` units for `key` at `now_ms`; see the algorithm's
    /// `check` for the decision, and the module documentation for what
    /// happens to keys the limiter does not track.
    #[inline]
    pub fn check<Q>(&mut self, key: &Q, now_ms: u64, cost: u64) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.core.check(hash, key, now_ms, cost)
    }

    /// Whether `key` is tracked (an expired key not yet swept still is).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.core.contains(self.hasher.hash_one(key), key)
    }

    /// The state tracked for `key`, if any: for diagnostics and tests.
    pub fn state<Q>(&mut self, key: &Q) -> Option<A::State>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.core.state(hash, key)
    }

    /// The state untracked keys are checked against at the cap.
    pub fn overflow_state(&self) -> A::State {
        self.core.overflow_state()
    }

    /// Allocates the table at its final size now, [`KeyedStats::slot_bytes_max`]:
    /// no later check allocates, even for a new key (unless `K` owns heap
    /// memory), and the memory is flat from the start instead of growing
    /// with the keys.
    pub fn reserve_all(&mut self) {
        self.core.reserve_all();
    }

    /// Drops every key whose state has expired by `now_ms` and returns how
    /// many. Not needed for correctness or for the cap; it returns slots to
    /// the table at once, after a burst of keys, instead of as new keys
    /// arrive.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        self.core.purge_expired(now_ms)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    pub fn algorithm(&self) -> &A {
        self.core.algorithm()
    }

    pub fn stats(&self) -> KeyedStats {
        self.core.stats()
    }
}
