//! The table of [`SyncKeyedLimiter`](super::SyncKeyedLimiter)'s shards:
//! the single-threaded table's layout (open addressing, linear probing,
//! backward-shift removal) with a lock in every slot, so that any thread can
//! check a tracked key in place while the shard's mutex serializes only the
//! changes of which keys are tracked.
//!
//! Why a lock per slot: a check of a tracked key then writes only the cache
//! lines of its own slot, which it has to load anyway. A lock beside the
//! data (one per shard) would be written by every check of every key of the
//! shard, so two threads checking different keys would pass its cache line
//! back and forth on every check; that is what kept the sharded mutex from
//! scaling.
//!
//! # Who may do what
//!
//! - Any thread, holding nothing ([`SharedSlots::check_tracked`]): probe for
//!   a key, lock the slot whose hash matches, and, if it still holds the
//!   key, run the check on its state and store the new expiry with the
//!   unlock. It holds one slot lock at a time and never waits long for one:
//!   a slot held for longer (a table growing) sends it to the mutex. It acts
//!   only on a key it found and verified under the slot's lock; anything
//!   else (an empty slot, a slot in motion, a stale size) sends it to the
//!   mutex, which is always right.
//! - The holder of the shard's mutex ([`SharedTable`]): everything that
//!   changes where keys are (insert, remove, shift, grow), each slot locked
//!   while it changes. It is the only writer of keys and hashes, so it reads
//!   them without slot locks; it may hold several slot locks at once, which
//!   cannot deadlock because no other thread ever waits for a lock while
//!   holding one.
//!
//! # Time
//!
//! The table keeps the latest time any check announced. A thread raises it
//! before it locks a slot and reads it after, and checks at the later of
//! the two, so the checks of one key run at non-decreasing times whatever
//! order threads with slightly different clocks reach it in.
//!
//! # Memory
//!
//! The slots for the cap are allocated once, zeroed (an all-zero slot is
//! empty), and never move: a thread that read a stale size still indexes
//! valid memory. The table uses the first `used` slots and grows by
//! doubling `used`, rehashing in place, so on Linux the pages behind the
//! unused slots are not touched and stay out of the resident set.

use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::num::NonZeroU64;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::slots::Slots;
use super::table::{
    between, home, must_grow, next, next_random, purge_slots, slots_max, sweep_slots, Entry,
    SLOTS_INITIAL, SWEEP_SEED,
};

/// The lock bit of a slot's word; the other 63 bits are the entry's expiry
/// in ms, 0 for an empty slot.
const LOCKED: u64 = 1 << 63;
/// The latest expiry a slot stores (about 292 million years after 1970); a
/// later one is stored as this, so such a key may be swept from then on.
const EXPIRY_MAX: u64 = LOCKED - 1;
/// Attempts a check without the mutex makes on a locked slot before it
/// leaves the slot to the mutex's holder.
const FAST_ATTEMPTS_MAX: u32 = 64;
/// Attempts between two yields of a thread that must have a slot's lock.
const ATTEMPTS_PER_YIELD: u32 = 64;

#[inline]
fn expiry(word: u64) -> u64 {
    word & EXPIRY_MAX
}

/// The word of an occupied, unlocked slot: never 0, which means empty.
#[inline]
fn occupied(expires_at_ms: u64) -> u64 {
    expires_at_ms.clamp(1, EXPIRY_MAX)
}

/// One slot. `key` and `state` hold values while the word's expiry is not
/// 0; the key is written only by the mutex's holder with the slot locked,
/// the state only with the slot locked.
struct Slot<K, S> {
    word: AtomicU64,
    hash: AtomicU64,
    key: UnsafeCell<MaybeUninit<K>>,
    state: UnsafeCell<MaybeUninit<S>>,
}

impl<K, S: Copy> Slot<K, S> {
    /// Locks the slot if it is free within `attempts`; returns its word.
    #[inline]
    fn try_lock(&self, attempts: u32) -> Option<u64> {
        for _ in 0..attempts {
            let word = self.word.load(Ordering::Relaxed);
            if word & LOCKED == 0
                && self
                    .word
                    .compare_exchange_weak(
                        word,
                        word | LOCKED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return Some(word);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Locks the slot, however long its holder takes; returns its word.
    fn lock(&self) -> u64 {
        loop {
            if let Some(word) = self.try_lock(ATTEMPTS_PER_YIELD) {
                return word;
            }
            std::thread::yield_now();
        }
    }

    /// Unlocks the slot, leaving `word` (an expiry, or 0 for empty).
    #[inline]
    fn unlock(&self, word: u64) {
        debug_assert_eq!(word & LOCKED, 0, "an unlock stores an unlocked word");
        self.word.store(word, Ordering::Release);
    }

    /// # Safety
    ///
    /// The slot is occupied, and the caller holds its lock or the mutex.
    #[inline]
    unsafe fn key(&self) -> &K {
        // SAFETY: occupied slots hold an initialized key, and its only
        // writer (the mutex's holder, with the slot locked) is excluded.
        unsafe { (*self.key.get()).assume_init_ref() }
    }

    /// # Safety
    ///
    /// The slot is occupied and the caller holds its lock.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    unsafe fn state_mut(&self) -> &mut S {
        // SAFETY: the slot's lock excludes every other access to the state.
        unsafe { (*self.state.get()).assume_init_mut() }
    }

    /// Writes an entry into the slot, which is empty and locked by the
    /// mutex's holder; the caller then stores the word.
    ///
    /// # Safety
    ///
    /// As said: empty, and locked by the caller, who holds the mutex.
    unsafe fn write(&self, hash: u64, key: K, state: S) {
        self.hash.store(hash, Ordering::Relaxed);
        // SAFETY: the slot is empty (nothing to drop) and locked.
        unsafe {
            (*self.key.get()).write(key);
            (*self.state.get()).write(state);
        }
    }

    /// Moves the entry out; the slot is then empty (its word not yet
    /// updated).
    ///
    /// # Safety
    ///
    /// The slot is occupied with `word`, and locked by the caller, who
    /// holds the mutex.
    unsafe fn take(&self, word: u64) -> Entry<K, S> {
        // SAFETY: occupied and locked; the key is read out once and the
        // slot is treated as empty from now on.
        unsafe {
            Entry {
                hash: self.hash.load(Ordering::Relaxed),
                key: (*self.key.get()).assume_init_read(),
                state: (*self.state.get()).assume_init_read(),
                expires_at_ms: NonZeroU64::new(expiry(word)).expect("an occupied slot's expiry"),
            }
        }
    }
}

/// Unlocks a slot with the word it had if an algorithm's check panics while
/// the slot is locked, so that its key does not stay locked for good.
struct UnlockOnUnwind<'a, K, S: Copy> {
    slot: &'a Slot<K, S>,
    word: u64,
}

impl<K, S: Copy> UnlockOnUnwind<'_, K, S> {
    /// The check returned: the caller unlocks (or removes) as it sees fit.
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl<K, S: Copy> Drop for UnlockOnUnwind<'_, K, S> {
    fn drop(&mut self) {
        self.slot.unlock(self.word);
    }
}

/// The layout of `capacity` slots, starting on a cache-line pair: with
/// 32-byte slots (`u64` keys and GCRA) no slot then straddles two lines,
/// so a check misses once, not twice.
fn slots_layout<K, S>(capacity: usize) -> Layout {
    Layout::array::<Slot<K, S>>(capacity)
        .and_then(|layout| layout.align_to(128))
        .expect("the cap bounds the table")
}

/// The slots of one shard, shared by every thread that checks its keys.
pub(crate) struct SharedSlots<K, S> {
    slots: NonNull<Slot<K, S>>,
    capacity: usize,
    /// The slots in use, `capacity` at most: the table's size. Only the
    /// mutex's holder changes it; other threads read it to probe.
    used: AtomicUsize,
    /// The latest time any check announced.
    clock_ms: AtomicU64,
}

// SAFETY: keys are read by several threads at once (`K: Sync`) and moved or
// dropped by whichever thread holds the mutex (`K: Send`); a state is
// accessed by one thread at a time, under its slot's lock (`S: Send`).
unsafe impl<K: Send + Sync, S: Send> Send for SharedSlots<K, S> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, S: Send> Sync for SharedSlots<K, S> {}

impl<K, S: Copy> SharedSlots<K, S> {
    fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a table has slots");
        let layout = slots_layout::<K, S>(capacity);
        // SAFETY: the layout is not zero-sized (a slot holds two atomics).
        let memory = unsafe { alloc::alloc_zeroed(layout) };
        let Some(slots) = NonNull::new(memory.cast::<Slot<K, S>>()) else {
            alloc::handle_alloc_error(layout)
        };
        SharedSlots {
            slots,
            capacity,
            used: AtomicUsize::new(SLOTS_INITIAL.min(capacity)),
            clock_ms: AtomicU64::new(0),
        }
    }

    #[inline]
    fn slot(&self, index: usize) -> &Slot<K, S> {
        assert!(index < self.capacity, "slot {index} of {}", self.capacity);
        // SAFETY: in bounds; zeroed memory is a valid (empty) slot, and
        // slots are only ever accessed through shared references.
        unsafe { &*self.slots.as_ptr().add(index) }
    }

    /// Raises the table's time to `now_ms`; returns the time to check at.
    #[inline]
    pub(crate) fn advance(&self, now_ms: u64) -> u64 {
        let clock_ms = self.clock_ms.load(Ordering::Relaxed);
        if now_ms > clock_ms {
            self.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
            return now_ms;
        }
        clock_ms
    }

    /// Runs `check` on `key`'s state in place, its slot locked, if the
    /// table tracks it; `check` returns the state's new expiry, `None` once
    /// expired. Returns `check`'s result and whether the state expired
    /// (the entry then stays, expired, until the mutex's holder removes
    /// it). `None`: the key was not found here without waiting (absent,
    /// being moved, or the table growing), and the caller must take the
    /// mutex.
    #[inline]
    pub(crate) fn check_tracked<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        now_ms: u64,
        check: impl FnOnce(&mut S, u64) -> (R, Option<NonZeroU64>),
    ) -> Option<(R, bool)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.advance(now_ms);
        // A stale size only leads to a wrong slot, which is then not
        // verified; every index below it is in bounds.
        let used = self.used.load(Ordering::Relaxed);
        let mut index = home(hash, used);
        for _ in 0..used {
            let slot = self.slot(index);
            if expiry(slot.word.load(Ordering::Relaxed)) == 0 {
                return None;
            }
            if slot.hash.load(Ordering::Relaxed) == hash {
                let word = slot.try_lock(FAST_ATTEMPTS_MAX)?;
                // SAFETY: locked; the key is read only once the word says
                // the slot is occupied.
                let found = expiry(word) != 0
                    && slot.hash.load(Ordering::Relaxed) == hash
                    && unsafe { slot.key() }.borrow() == key;
                if !found {
                    slot.unlock(word);
                    return None;
                }
                // Read after the lock: at least the time of every earlier
                // check of this slot.
                let now_ms = now_ms.max(self.clock_ms.load(Ordering::Relaxed));
                let guard = UnlockOnUnwind { slot, word };
                // SAFETY: occupied and locked.
                let (result, expires_at_ms) = check(unsafe { slot.state_mut() }, now_ms);
                guard.disarm();
                slot.unlock(occupied(expires_at_ms.map_or(0, NonZeroU64::get)));
                return Some((result, expires_at_ms.is_none()));
            }
            index = next(index, used);
        }
        None
    }
}

impl<K, S> Drop for SharedSlots<K, S> {
    fn drop(&mut self) {
        let used = *self.used.get_mut();
        for index in 0..used {
            // SAFETY: in bounds, and `&mut self` excludes every other access.
            let slot = unsafe { &mut *self.slots.as_ptr().add(index) };
            if expiry(*slot.word.get_mut()) != 0 {
                // SAFETY: occupied slots hold an initialized key.
                unsafe { slot.key.get_mut().assume_init_drop() };
            }
        }
        let layout = slots_layout::<K, S>(self.capacity);
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.slots.as_ptr().cast(), layout) };
    }
}

/// A shard's table as the holder of its mutex sees it.
pub(crate) struct SharedTable<K, S> {
    slots: Arc<SharedSlots<K, S>>,
    len: usize,
    /// The state of the generator that picks where sweeps start.
    sweep_seed: u64,
}

impl<K, S: Copy> SharedTable<K, S> {
    /// A table sized for at most `keys_max` entries at its load limit.
    pub(crate) fn new(keys_max: usize) -> Self {
        SharedTable {
            slots: Arc::new(SharedSlots::new(slots_max(keys_max))),
            len: 0,
            sweep_seed: SWEEP_SEED,
        }
    }

    /// The slots, for the threads that check without the mutex.
    pub(crate) fn shared(&self) -> &Arc<SharedSlots<K, S>> {
        &self.slots
    }

    fn used(&self) -> usize {
        self.slots.used.load(Ordering::Relaxed)
    }

    fn slot(&self, index: usize) -> &Slot<K, S> {
        self.slots.slot(index)
    }

    /// Removes the entry at `index`, which the caller has locked, and
    /// shifts the entries after it back towards their homes, so that no
    /// probe sequence crosses a hole.
    fn remove_locked(&mut self, index: usize, word: u64) {
        let used = self.used();
        // SAFETY: occupied with `word`, locked by us, and we hold the mutex.
        drop(unsafe { self.slot(index).take(word) });
        self.len -= 1;
        let mut hole = index;
        let mut at = next(index, used);
        // Which slots are occupied, and by which hash, changes only under
        // the mutex: reading them needs no slot lock. Only an entry that
        // moves is locked, since another thread may be checking it.
        loop {
            let slot = self.slot(at);
            if expiry(slot.word.load(Ordering::Relaxed)) == 0 {
                break;
            }
            let hash = slot.hash.load(Ordering::Relaxed);
            if !between(hole, home(hash, used), at) {
                let word = slot.lock();
                // SAFETY: `at` is occupied and locked, `hole` is empty and
                // locked; we hold the mutex.
                unsafe {
                    let entry = slot.take(word);
                    self.slot(hole).write(entry.hash, entry.key, entry.state);
                }
                self.slot(hole).unlock(word);
                hole = at;
            }
            at = next(at, used);
        }
        self.slot(hole).unlock(0);
    }

    /// Puts `entry` in the first empty slot of its probe sequence.
    fn place(&self, entry: Entry<K, S>) {
        let slot = self.slot(self.first_empty(entry.hash, self.used()));
        let word = slot.lock();
        assert_eq!(expiry(word), 0, "only the mutex's holder fills slots");
        // SAFETY: empty and locked by us; we hold the mutex.
        unsafe { slot.write(entry.hash, entry.key, entry.state) };
        slot.unlock(occupied(entry.expires_at_ms.get()));
    }

    /// Rehashes every entry into the first `new_used` slots, in place.
    /// Every slot of the new size stays locked throughout, so other threads
    /// go to the mutex meanwhile.
    fn resize(&mut self, new_used: usize) {
        assert!(
            new_used > self.len,
            "every entry fits, with a slot to spare"
        );
        assert!(
            new_used <= self.slots.capacity,
            "the table never outgrows its cap"
        );
        let mut entries = Vec::with_capacity(self.len);
        for index in 0..new_used {
            let slot = self.slot(index);
            let word = slot.lock();
            if expiry(word) != 0 {
                // SAFETY: occupied and locked by us; we hold the mutex.
                entries.push(unsafe { slot.take(word) });
            }
            slot.word.store(LOCKED, Ordering::Relaxed);
        }
        assert_eq!(entries.len(), self.len, "every entry was taken out");
        self.slots.used.store(new_used, Ordering::Relaxed);
        for entry in entries {
            let slot = self.slot(self.first_empty(entry.hash, new_used));
            // SAFETY: empty (its word is LOCKED alone) and locked by us.
            unsafe { slot.write(entry.hash, entry.key, entry.state) };
            slot.word.store(
                LOCKED | occupied(entry.expires_at_ms.get()),
                Ordering::Relaxed,
            );
        }
        for index in 0..new_used {
            let slot = self.slot(index);
            slot.unlock(slot.word.load(Ordering::Relaxed) & !LOCKED);
        }
    }

    /// The first empty slot of `hash`'s probe sequence in a table of `used`
    /// slots. Only the mutex's holder fills or empties slots, so the words
    /// it reads without locking say which are empty.
    fn first_empty(&self, hash: u64, used: usize) -> usize {
        let mut index = home(hash, used);
        while expiry(self.slot(index).word.load(Ordering::Relaxed)) != 0 {
            index = next(index, used);
        }
        index
    }

    /// Removes the entry at `index` if it has expired by `now_ms`; returns
    /// whether it did.
    fn remove_if_expired(&mut self, index: usize, now_ms: u64) -> bool {
        match self.lock_if_expired(index, now_ms) {
            Some(word) => {
                self.remove_locked(index, word);
                true
            }
            None => false,
        }
    }

    /// The entry at `index`, locked, if it has expired by `now_ms`.
    fn lock_if_expired(&self, index: usize, now_ms: u64) -> Option<u64> {
        let slot = self.slot(index);
        let seen = expiry(slot.word.load(Ordering::Relaxed));
        if seen == 0 || seen > now_ms {
            return None;
        }
        // Another thread may have checked the key since: look again.
        let word = slot.lock();
        if expiry(word) != 0 && expiry(word) <= now_ms {
            return Some(word);
        }
        slot.unlock(word);
        None
    }

    /// Asserts that every entry can be found from its home, that the count
    /// is right, and that no slot is left locked.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self)
    where
        K: Eq,
    {
        let mut count = 0;
        for index in 0..self.used() {
            let slot = self.slot(index);
            let word = slot.word.load(Ordering::Relaxed);
            assert_eq!(word & LOCKED, 0, "slot {index} left locked");
            if expiry(word) != 0 {
                let hash = slot.hash.load(Ordering::Relaxed);
                // SAFETY: occupied, and the caller has the table to itself.
                let key = unsafe { slot.key() };
                assert_eq!(
                    Slots::find(self, hash, key),
                    Some(index),
                    "slot {index} unreachable"
                );
                count += 1;
            }
        }
        assert_eq!(count, self.len);
    }

    /// Average distance of entries from their home, and the longest run of
    /// occupied slots.
    #[cfg(test)]
    pub(crate) fn displacement(&self) -> (f64, usize) {
        let used = self.used();
        let (mut total, mut run, mut max_run) = (0usize, 0usize, 0usize);
        for index in 0..used {
            let slot = self.slot(index);
            if expiry(slot.word.load(Ordering::Relaxed)) == 0 {
                run = 0;
                continue;
            }
            let home = home(slot.hash.load(Ordering::Relaxed), used);
            total += (index + used - home) % used;
            run += 1;
            max_run = max_run.max(run);
        }
        (total as f64 / self.len.max(1) as f64, max_run)
    }
}

impl<K, S: Copy> Slots<K, S> for SharedTable<K, S> {
    fn len(&self) -> usize {
        self.len
    }

    fn slot_bytes(&self) -> usize {
        self.used() * std::mem::size_of::<Slot<K, S>>()
    }

    fn slot_bytes_max(&self) -> usize {
        self.slots.capacity * std::mem::size_of::<Slot<K, S>>()
    }

    fn find<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let used = self.used();
        let mut index = home(hash, used);
        // Terminates: the load limit keeps at least one slot empty.
        loop {
            let slot = self.slot(index);
            if expiry(slot.word.load(Ordering::Relaxed)) == 0 {
                return None;
            }
            // SAFETY: occupied, and we hold the mutex, the keys' only writer.
            if slot.hash.load(Ordering::Relaxed) == hash && unsafe { slot.key() }.borrow() == key {
                return Some(index);
            }
            index = next(index, used);
        }
    }

    fn state_at(&self, index: usize) -> S {
        let slot = self.slot(index);
        let word = slot.lock();
        assert_ne!(expiry(word), 0, "an index from `find` holds an entry");
        // SAFETY: occupied and locked.
        let state = unsafe { *slot.state_mut() };
        slot.unlock(word);
        state
    }

    fn update<R>(
        &mut self,
        index: usize,
        now_ms: u64,
        check: impl FnOnce(&mut S, u64) -> (R, Option<NonZeroU64>),
    ) -> (R, bool) {
        let slot = self.slot(index);
        let word = slot.lock();
        assert_ne!(expiry(word), 0, "an index from `find` holds an entry");
        let now_ms = now_ms.max(self.slots.clock_ms.load(Ordering::Relaxed));
        let guard = UnlockOnUnwind { slot, word };
        // SAFETY: occupied and locked.
        let (result, expires_at_ms) = check(unsafe { slot.state_mut() }, now_ms);
        guard.disarm();
        match expires_at_ms {
            Some(expires_at_ms) => {
                slot.unlock(occupied(expires_at_ms.get()));
                (result, false)
            }
            None => {
                self.remove_locked(index, word);
                (result, true)
            }
        }
    }

    /// The claimed slot stays locked, so that no other thread revives the
    /// expired key in it before it is replaced.
    fn claim_expired_on_path(&mut self, hash: u64, now_ms: u64) -> Option<usize> {
        let used = self.used();
        let mut index = home(hash, used);
        while expiry(self.slot(index).word.load(Ordering::Relaxed)) != 0 {
            if self.lock_if_expired(index, now_ms).is_some() {
                return Some(index);
            }
            index = next(index, used);
        }
        None
    }

    fn replace_claimed(&mut self, index: usize, entry: Entry<K, S>) {
        let slot = self.slot(index);
        let word = slot.word.load(Ordering::Relaxed);
        assert_ne!(word & LOCKED, 0, "a claimed slot is locked");
        // SAFETY: occupied and locked by us (the claim); we hold the mutex.
        unsafe {
            drop(slot.take(word & !LOCKED));
            slot.write(entry.hash, entry.key, entry.state);
        }
        slot.unlock(occupied(entry.expires_at_ms.get()));
    }

    fn release_claim(&mut self, index: usize) {
        let slot = self.slot(index);
        let word = slot.word.load(Ordering::Relaxed);
        assert_ne!(word & LOCKED, 0, "a claimed slot is locked");
        slot.unlock(word & !LOCKED);
    }

    fn insert_absent(&mut self, entry: Entry<K, S>) {
        if must_grow(self.len, self.used()) {
            let grown = (self.used() * 2).min(self.slots.capacity);
            assert!(
                grown > self.used(),
                "the cap keeps the table below its capacity"
            );
            self.resize(grown);
        }
        assert!(self.len + 1 < self.used(), "the cap keeps a slot empty");
        self.place(entry);
        self.len += 1;
    }

    fn sweep(&mut self, now_ms: u64, slots_to_examine: usize, removals_wanted: usize) -> usize {
        let used = self.used();
        let start = home(next_random(&mut self.sweep_seed), used);
        sweep_slots(start, used, slots_to_examine, removals_wanted, |index| {
            self.remove_if_expired(index, now_ms)
        })
    }

    fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.len;
        purge_slots(self.used(), |index| self.remove_if_expired(index, now_ms));
        before - self.len
    }

    fn reserve_all(&mut self) {
        if self.used() < self.slots.capacity {
            self.resize(self.slots.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::core::KeyedCore;
    use crate::keyed::RandomSipHash;
    use crate::FixedWindow;
    use std::hash::BuildHasher;

    #[test]
    fn a_slot_costs_what_an_entry_of_the_single_threaded_table_costs() {
        assert_eq!(
            std::mem::size_of::<Slot<u64, crate::GcraState>>(),
            std::mem::size_of::<Option<Entry<u64, crate::GcraState>>>()
        );
    }

    /// The single-threaded core's churn, on this table.
    #[test]
    #[cfg_attr(miri, ignore = "600,000 checks: too slow for an interpreter")]
    fn churn_at_the_cap_keeps_probe_runs_short() {
        let core = crate::keyed::core::tests::churn_at_the_cap(
            SharedTable::new(10_000),
            SharedTable::displacement,
        );
        core.table().assert_consistent();
    }

    #[test]
    fn keys_that_own_memory_are_dropped_with_the_table() {
        let window = FixedWindow::new(5, 100).expect("valid config");
        let mut core = KeyedCore::with_table(window, 1_000, SharedTable::new(1_000));
        let hasher = RandomSipHash::with_keys(3, 4);
        for key in 0..900u64 {
            let key = format!("client-{key}");
            let _ = core.check(hasher.hash_one(key.as_str()), key.as_str(), 1_000, 1);
        }
        core.table().assert_consistent();
        // All expire and are purged, dropping their strings; 500 new ones
        // are rehashed into the final size, then dropped with the table.
        assert_eq!(core.purge_expired(1_100), 900);
        for key in 0..500u64 {
            let key = format!("client-{key}");
            let _ = core.check(hasher.hash_one(key.as_str()), key.as_str(), 1_200, 1);
        }
        core.reserve_all();
        core.table().assert_consistent();
        assert_eq!(core.len(), 500);
    }
}
