//! The per-key bookkeeping shared by [`KeyedLimiter`](super::KeyedLimiter)
//! and each shard of [`SyncKeyedLimiter`](super::SyncKeyedLimiter): the
//! table of tracked keys, the overflow state, the limiter's own time and the
//! counters. Keys arrive already hashed, so a sharded limiter hashes once.
//!
//! The flow of one check:
//!
//! 1. Time: `now_ms` is raised to the latest time seen, so time never goes
//!    back for the table and an expired key stays expired.
//! 2. Tracked key: the check runs on the state in its slot, in place. If the
//!    state is then expired (only a check of cost 0 can leave it so), the
//!    slot is freed.
//! 3. Untracked key: find it a slot. An expired entry on the key's own
//!    probe path is taken over in place. Failing that, sweep a few slots
//!    from a random one: below the cap that is housekeeping (idle keys
//!    leave as new ones arrive); at the cap it looks a little further for
//!    one expired key to free. With a slot, the key starts from the overflow
//!    state if that is still live, from a fresh state if not, and is stored
//!    unless the check left it expired (a denial or a cost of 0). Without
//!    one, the check runs on the overflow state itself.

use std::borrow::Borrow;
use std::num::NonZeroU64;

use super::slots::Slots;
use super::table::{Entry, Table};
use super::KeyedStats;
use crate::{Algorithm, Decision};

/// Slots a new key's arrival sweeps below the cap: enough that idle keys
/// leave at about the rate new ones come, so a table well under its cap
/// holds about the keys active within one expiry period.
const SWEEP_SLOTS_BELOW_CAP: usize = 4;
/// Slots a new key's arrival may sweep at the cap, looking for one expired
/// key to free. It bounds the cost of a check under a flood of new keys
/// (four cache lines of slots); each sweep starts somewhere else, so
/// successive arrivals cover the whole table.
const SWEEP_SLOTS_AT_CAP: usize = 8;

pub(crate) struct KeyedCore<K, A: Algorithm, T = Table<K, <A as Algorithm>::State>> {
    algorithm: A,
    table: T,
    keys_max: usize,
    /// The state every untracked key is checked against while the table is
    /// full of live keys. It has been charged with everything any untracked
    /// key was granted, so it dominates each one's own history.
    overflow: A::State,
    /// The latest `now_ms` seen.
    latest_ms: u64,
    untracked_checks_total: u64,
    expired_evictions_total: u64,
    marker: std::marker::PhantomData<fn() -> K>,
}

impl<K, A: Algorithm> KeyedCore<K, A> {
    /// The caller has checked `keys_max >= 1`.
    pub(crate) fn new(algorithm: A, keys_max: usize) -> Self {
        Self::with_table(algorithm, keys_max, Table::new(keys_max))
    }
}

impl<K, A: Algorithm, T: Slots<K, A::State>> KeyedCore<K, A, T> {
    /// A core over `table`, which is empty and sized for `keys_max` keys.
    pub(crate) fn with_table(algorithm: A, keys_max: usize, table: T) -> Self {
        assert!(keys_max >= 1, "a table holds at least one key");
        assert_eq!(table.len(), 0, "a core starts from an empty table");
        KeyedCore {
            algorithm,
            table,
            keys_max,
            overflow: A::State::default(),
            latest_ms: 0,
            untracked_checks_total: 0,
            expired_evictions_total: 0,
            marker: std::marker::PhantomData,
        }
    }

    pub(crate) fn algorithm(&self) -> &A {
        &self.algorithm
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &T {
        &self.table
    }

    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table.find(hash, key).is_some()
    }

    /// The state the table holds for `key`, if it tracks it.
    pub(crate) fn state<Q>(&self, hash: u64, key: &Q) -> Option<A::State>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = self.table.find(hash, key)?;
        Some(self.table.state_at(index))
    }

    pub(crate) fn overflow_state(&self) -> A::State {
        self.overflow
    }

    pub(crate) fn stats(&self) -> KeyedStats {
        KeyedStats {
            keys_tracked: self.table.len(),
            keys_max: self.keys_max,
            slot_bytes: self.table.slot_bytes(),
            slot_bytes_max: self.table.slot_bytes_max(),
            untracked_checks_total: self.untracked_checks_total,
            expired_evictions_total: self.expired_evictions_total,
        }
    }

    /// Raises the table's time to `now_ms` if it is later; returns the time
    /// checks are made at.
    #[inline]
    fn advance(&mut self, now_ms: u64) -> u64 {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.latest_ms
    }

    #[inline]
    pub(crate) fn check<Q>(&mut self, hash: u64, key: &Q, now_ms: u64, cost: u64) -> Decision
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now_ms = self.advance(now_ms);
        let Some(index) = self.table.find(hash, key) else {
            return self.check_untracked(hash, key, now_ms, cost);
        };
        let algorithm = &self.algorithm;
        let (decision, removed) = self.table.update(index, now_ms, |state, now_ms| {
            let decision = algorithm.check(state, now_ms, cost);
            (decision, live_until(algorithm, state, now_ms))
        });
        if removed {
            self.expired_evictions_total += 1;
        }
        decision
    }

    /// Removes `key` if its state has expired by `now_ms` (a check of
    /// another thread may have revived it since it was found expired);
    /// returns whether it did.
    pub(crate) fn remove_if_expired<Q>(&mut self, hash: u64, key: &Q, now_ms: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let now_ms = self.advance(now_ms);
        let Some(index) = self.table.find(hash, key) else {
            return false;
        };
        let algorithm = &self.algorithm;
        let ((), removed) = self.table.update(index, now_ms, |state, now_ms| {
            ((), live_until(algorithm, state, now_ms))
        });
        self.expired_evictions_total += u64::from(removed);
        removed
    }

    #[inline(never)]
    fn check_untracked<Q>(&mut self, hash: u64, key: &Q, now_ms: u64, cost: u64) -> Decision
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Taken before any sweep, which would move entries.
        let reusable = self.table.claim_expired_on_path(hash, now_ms);
        if reusable.is_none() && !self.make_room(now_ms) {
            self.untracked_checks_total += 1;
            return self.algorithm.check(&mut self.overflow, now_ms, cost);
        }
        let mut state = if live_until(&self.algorithm, &self.overflow, now_ms).is_some() {
            self.overflow
        } else {
            A::State::default()
        };
        let decision = self.algorithm.check(&mut state, now_ms, cost);
        let Some(expires_at_ms) = live_until(&self.algorithm, &state, now_ms) else {
            if let Some(index) = reusable {
                self.table.release_claim(index);
            }
            return decision;
        };
        let entry = Entry {
            hash,
            key: key.to_owned(),
            state,
            expires_at_ms,
        };
        match reusable {
            Some(index) => {
                self.table.replace_claimed(index, entry);
                self.expired_evictions_total += 1;
            }
            None => self.table.insert_absent(entry),
        }
        decision
    }

    /// Sweeps for expired keys; returns whether a new key fits.
    fn make_room(&mut self, now_ms: u64) -> bool {
        let swept = if self.table.has_room(self.keys_max) {
            self.table
                .sweep(now_ms, SWEEP_SLOTS_BELOW_CAP, SWEEP_SLOTS_BELOW_CAP)
        } else {
            self.table.sweep(now_ms, SWEEP_SLOTS_AT_CAP, 1)
        };
        self.expired_evictions_total += swept as u64;
        self.table.has_room(self.keys_max)
    }

    pub(crate) fn reserve_all(&mut self) {
        self.table.reserve_all();
    }

    /// Removes every expired key now; returns how many.
    pub(crate) fn purge_expired(&mut self, now_ms: u64) -> usize {
        let now_ms = self.advance(now_ms);
        let removed = self.table.purge_expired(now_ms);
        self.expired_evictions_total += removed as u64;
        removed
    }
}

/// `Some(expiry)` while `state` still matters after `now_ms`; `None` once it
/// is as good as fresh and need not be stored.
#[inline]
pub(crate) fn live_until<A: Algorithm>(
    algorithm: &A,
    state: &A::State,
    now_ms: u64,
) -> Option<NonZeroU64> {
    let expires_at_ms = algorithm.expires_at_ms(state);
    if expires_at_ms > now_ms {
        NonZeroU64::new(expires_at_ms)
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keyed::RandomSipHash;
    use crate::{FixedWindow, FixedWindowState};
    use std::hash::BuildHasher;

    /// Keys arrive faster than they expire, so the table stays at its cap
    /// while half its keys turn over: the free slots must stay spread out,
    /// or the table fills into one run that every probe crosses. Runs that
    /// churn on a core over `table` (sized for 10,000 keys), with
    /// `displacement` giving the mean distance of entries from their home
    /// and the longest run; returns the core for checks of its own.
    pub(crate) fn churn_at_the_cap<T>(
        table: T,
        displacement: impl Fn(&T) -> (f64, usize),
    ) -> KeyedCore<u64, FixedWindow, T>
    where
        T: Slots<u64, FixedWindowState>,
    {
        let keys_max = 10_000;
        // A key lives until the end of its 100 ms window.
        let window = FixedWindow::new(5, 100).expect("valid config");
        let mut core = KeyedCore::with_table(window, keys_max, table);
        let hasher = RandomSipHash::with_keys(1, 2);
        let mut now_ms = 1_700_000_000_000u64;
        for key in 0..600_000u64 {
            // 150 keys per ms: 15,000 a window, one and a half caps.
            if key % 150 == 0 {
                now_ms += 1;
            }
            let _ = core.check(hasher.hash_one(key), &key, now_ms, 1);
            if key % 50_000 == 49_999 {
                let (mean, longest) = displacement(&core.table);
                assert!(mean < 4.0, "mean displacement {mean} after {key} keys");
                assert!(longest < 600, "a run of {longest} slots after {key} keys");
            }
        }
        let stats = core.stats();
        assert_eq!(stats.keys_tracked, keys_max);
        assert!(stats.expired_evictions_total > 300_000, "{stats:?}");
        assert!(stats.untracked_checks_total > 0, "{stats:?}");
        core
    }

    #[test]
    fn churn_at_the_cap_keeps_probe_runs_short() {
        churn_at_the_cap(Table::new(10_000), Table::displacement);
    }
}
