//! What [`KeyedCore`](super::core::KeyedCore) needs from a table of tracked
//! keys. Two tables provide it: [`Table`](super::table::Table), a plain
//! value for one thread, and [`SharedTable`](super::shared::SharedTable),
//! whose slots other threads may check in place while its owner holds the
//! shard's lock.
//!
//! Indexes returned by `find` and `claim_expired_on_path` stay valid until
//! the next call that changes the table's layout (an insert, a removal, a
//! sweep).

use std::borrow::Borrow;
use std::num::NonZeroU64;

use super::table::Entry;

pub(crate) trait Slots<K, S: Copy> {
    /// Keys tracked now.
    fn len(&self) -> usize;

    /// Bytes held by the slots now (not counting what a key owns on the heap).
    fn slot_bytes(&self) -> usize;

    /// Bytes the slots hold at the final size, the most they ever hold.
    fn slot_bytes_max(&self) -> usize;

    /// Whether one more entry fits under `keys_max`.
    fn has_room(&self, keys_max: usize) -> bool {
        self.len() < keys_max
    }

    /// The slot of the entry for `key`, or `None`.
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized;

    /// A copy of the state at `index`.
    fn state_at(&self, index: usize) -> S;

    /// Runs `check` on the state at `index` with the time to check at:
    /// `now_ms`, or later where the table has seen a later time. `check`
    /// returns the state's new expiry, or `None` once it has expired, and
    /// the entry is then removed. Returns `check`'s result and whether the
    /// entry was removed.
    fn update<R>(
        &mut self,
        index: usize,
        now_ms: u64,
        check: impl FnOnce(&mut S, u64) -> (R, Option<NonZeroU64>),
    ) -> (R, bool);

    /// The first entry expired by `now_ms` on the probe path of `hash`
    /// (which must be absent): a slot a new key may take over in place. It
    /// stays claimed (no other thread revives it) until
    /// [`replace_claimed`](Self::replace_claimed) or
    /// [`release_claim`](Self::release_claim).
    fn claim_expired_on_path(&mut self, hash: u64, now_ms: u64) -> Option<usize>;

    /// Replaces the claimed entry at `index` with `entry`, whose hash has
    /// that slot on its probe path.
    fn replace_claimed(&mut self, index: usize, entry: Entry<K, S>);

    /// Gives back a claim that was not used.
    fn release_claim(&mut self, index: usize);

    /// Inserts an entry for a key that `find` just reported absent; the
    /// caller has checked the cap.
    fn insert_absent(&mut self, entry: Entry<K, S>);

    /// Examines up to `slots_to_examine` consecutive slots from a random one
    /// and removes each entry expired by `now_ms`; stops once
    /// `removals_wanted` have been removed. Returns how many were removed.
    fn sweep(&mut self, now_ms: u64, slots_to_examine: usize, removals_wanted: usize) -> usize;

    /// Removes every entry expired by `now_ms`; returns how many.
    fn purge_expired(&mut self, now_ms: u64) -> usize;

    /// Grows to the final size now, if not there yet.
    fn reserve_all(&mut self);
}
