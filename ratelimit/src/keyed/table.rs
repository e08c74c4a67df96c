//! The keyed limiter's hash table: open addressing with linear probing, each
//! key's state stored inline beside it, and sampled sweeps that remove
//! expired keys.
//!
//! A lookup of a key that is present touches one slot on average (two at
//! the highest load), in one or two adjacent cache lines, and compares stored
//! 64-bit hashes before keys, so a long key is compared only when its hash
//! matches. Removal shifts the following entries back (no tombstones), so
//! probe sequences never grow with churn. The table grows by doubling up to a
//! final size fixed by the key cap, and never past it.
//!
//! Where removals happen matters. Inserts land at random slots; if removals
//! happened in one place (a sweep going round the table in order), the free
//! slots would gather there and the rest of the table would fill into one
//! long run, which every probe then crosses. So each sweep starts at a
//! random slot, and a new key takes over an expired entry on its own probe
//! path when there is one: both free slots where keys arrive, at random.

use std::borrow::Borrow;
use std::num::NonZeroU64;

use super::slots::Slots;

/// The table is never more than `LOAD_MAX_NUM / LOAD_MAX_DEN` full; linear
/// probing then expects about 2.5 probes for a present key and 8.5 for an
/// absent one.
const LOAD_MAX_NUM: usize = 3;
const LOAD_MAX_DEN: usize = 4;
/// Slots of a table before its first growth.
pub(crate) const SLOTS_INITIAL: usize = 16;

/// One tracked key. `expires_at_ms` is non-zero for every stored entry (an
/// expired state is never inserted, and time starts at 0), which gives
/// `Option<Entry>` a niche: an empty slot costs no extra byte.
pub(crate) struct Entry<K, S> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) state: S,
    pub(crate) expires_at_ms: NonZeroU64,
}

pub(crate) struct Table<K, S> {
    slots: Box<[Option<Entry<K, S>>]>,
    len: usize,
    /// The most slots the table will ever have.
    slots_max: usize,
    /// The state of the generator that picks where sweeps start.
    sweep_seed: u64,
}

/// The slot where a hash's probe sequence starts: the high bits of the
/// hash scaled onto `0..slots`, which needs no power-of-two size.
#[inline]
pub(crate) fn home(hash: u64, slots: usize) -> usize {
    // `slots` fits in a u64 and the result is below it.
    ((u128::from(hash) * slots as u128) >> 64) as usize
}

#[inline]
pub(crate) fn next(index: usize, slots: usize) -> usize {
    if index + 1 == slots {
        0
    } else {
        index + 1
    }
}

/// Whether `home` lies in the cyclic range `(hole, at]`: an entry at `at`
/// whose home is there cannot move back to `hole` without becoming
/// unreachable from its home.
#[inline]
pub(crate) fn between(hole: usize, home: usize, at: usize) -> bool {
    if hole <= at {
        hole < home && home <= at
    } else {
        hole < home || home <= at
    }
}

/// The least size whose load limit admits `keys_max`, and more slots than
/// keys, so that every probe sequence reaches an empty slot.
pub(crate) fn slots_max(keys_max: usize) -> usize {
    (keys_max * LOAD_MAX_DEN)
        .div_ceil(LOAD_MAX_NUM)
        .max(keys_max + 1)
}

/// Whether a table of `slots` slots holding `len` entries must grow before
/// it takes one more.
pub(crate) fn must_grow(len: usize, slots: usize) -> bool {
    (len + 1) * LOAD_MAX_DEN > slots * LOAD_MAX_NUM
}

/// The seed of a table's sweep generator.
pub(crate) const SWEEP_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// xorshift64*: cheap, and good enough to spread sweeps over a table.
pub(crate) fn next_random(seed: &mut u64) -> u64 {
    let mut x = *seed;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *seed = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The sweep both tables make: examines up to `slots_to_examine`
/// consecutive slots of `slots` from `start`, calling `remove_if_expired`
/// on each; stops once `removals_wanted` have been removed. Returns how many
/// were removed.
pub(crate) fn sweep_slots(
    start: usize,
    slots: usize,
    slots_to_examine: usize,
    removals_wanted: usize,
    mut remove_if_expired: impl FnMut(usize) -> bool,
) -> usize {
    let mut index = start;
    let mut removed = 0;
    // A removal shifts the next entry into the slot just examined, which is
    // then examined again; past twice the slots, every slot has been.
    for _ in 0..slots_to_examine.min(2 * slots) {
        if remove_if_expired(index) {
            removed += 1;
            if removed == removals_wanted {
                break;
            }
        } else {
            index = next(index, slots);
        }
    }
    removed
}

/// Calls `remove_if_expired` on every slot of `slots` until none is left
/// to remove. A removal shifts later entries back (one may wrap from slot 0
/// to the end), so the slot just emptied is examined again; every entry is
/// examined at least once.
pub(crate) fn purge_slots(slots: usize, mut remove_if_expired: impl FnMut(usize) -> bool) {
    let mut index = 0;
    while index < slots {
        if !remove_if_expired(index) {
            index += 1;
        }
    }
}

impl<K, S> Table<K, S> {
    /// A table sized for at most `keys_max` entries at its load limit.
    pub(crate) fn new(keys_max: usize) -> Self {
        let slots_max = slots_max(keys_max);
        Table {
            slots: empty_slots(SLOTS_INITIAL.min(slots_max)),
            len: 0,
            slots_max,
            sweep_seed: SWEEP_SEED,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the slots (not counting what a key owns on the heap).
    pub(crate) fn slot_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Option<Entry<K, S>>>()
    }

    /// Bytes the slots will hold at the final size, the most they ever hold.
    pub(crate) fn slot_bytes_max(&self) -> usize {
        self.slots_max * std::mem::size_of::<Option<Entry<K, S>>>()
    }

    /// The slot of the entry for `key`, or `None`.
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = self.slots.len();
        let mut index = home(hash, slots);
        // Terminates: the load limit keeps at least one slot empty.
        loop {
            match &self.slots[index] {
                None => return None,
                Some(entry) if entry.hash == hash && entry.key.borrow() == key => {
                    return Some(index)
                }
                Some(_) => index = next(index, slots),
            }
        }
    }

    #[inline]
    pub(crate) fn entry_mut(&mut self, index: usize) -> &mut Entry<K, S> {
        self.slots[index]
            .as_mut()
            .expect("an index from `find` holds an entry until the table changes")
    }

    /// Inserts an entry for a key that `find` just reported absent; the
    /// caller has checked the cap.
    pub(crate) fn insert_absent(&mut self, entry: Entry<K, S>) {
        if must_grow(self.len, self.slots.len()) {
            self.grow();
        }
        assert!(
            self.len + 1 < self.slots.len(),
            "the cap keeps a slot empty"
        );
        place(&mut self.slots, entry);
        self.len += 1;
    }

    /// Removes the entry at `index` and shifts the entries after it back
    /// towards their homes, so that no probe sequence crosses a hole.
    pub(crate) fn remove_at(&mut self, index: usize) {
        let slots = self.slots.len();
        assert!(self.slots[index].is_some(), "removing an empty slot");
        self.slots[index] = None;
        self.len -= 1;
        let mut hole = index;
        let mut at = next(index, slots);
        while let Some(entry) = &self.slots[at] {
            if !between(hole, home(entry.hash, slots), at) {
                self.slots.swap(hole, at);
                hole = at;
            }
            at = next(at, slots);
        }
    }

    /// The first entry expired by `now_ms` on the probe path of `hash`,
    /// which must be absent: a slot a new key may take over as it is, with
    /// no shifting, because it lies between the new key's home and the
    /// first empty slot.
    pub(crate) fn expired_on_path(&self, hash: u64, now_ms: u64) -> Option<usize> {
        let slots = self.slots.len();
        let mut index = home(hash, slots);
        while let Some(entry) = &self.slots[index] {
            if entry.expires_at_ms.get() <= now_ms {
                return Some(index);
            }
            index = next(index, slots);
        }
        None
    }

    /// Replaces the expired entry at `index` (from
    /// [`expired_on_path`](Self::expired_on_path) for `entry`'s hash).
    pub(crate) fn replace_at(&mut self, index: usize, entry: Entry<K, S>) {
        let slot = &mut self.slots[index];
        assert!(slot.is_some(), "only an entry is replaced");
        *slot = Some(entry);
    }

    /// Examines up to `slots_to_examine` consecutive slots from a random
    /// one and removes each entry that has expired by `now_ms`; stops early
    /// once `removals_wanted` have been removed. Returns how many were
    /// removed.
    pub(crate) fn sweep(
        &mut self,
        now_ms: u64,
        slots_to_examine: usize,
        removals_wanted: usize,
    ) -> usize {
        let slots = self.slots.len();
        let start = home(self.next_random(), slots);
        sweep_slots(start, slots, slots_to_examine, removals_wanted, |index| {
            self.remove_if_expired(index, now_ms)
        })
    }

    /// Removes the entry at `index` if it has expired by `now_ms`; returns
    /// whether it did.
    fn remove_if_expired(&mut self, index: usize, now_ms: u64) -> bool {
        let expired =
            matches!(&self.slots[index], Some(entry) if entry.expires_at_ms.get() <= now_ms);
        if expired {
            self.remove_at(index);
        }
        expired
    }

    fn next_random(&mut self) -> u64 {
        next_random(&mut self.sweep_seed)
    }

    /// Removes every entry expired by `now_ms`; returns how many.
    pub(crate) fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.len;
        purge_slots(self.slots.len(), |index| {
            self.remove_if_expired(index, now_ms)
        });
        before - self.len
    }

    /// Grows to the final size now, if not there yet.
    pub(crate) fn reserve_all(&mut self) {
        if self.slots.len() < self.slots_max {
            self.resize(self.slots_max);
        }
    }

    /// Doubles the slots, up to `slots_max`.
    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).min(self.slots_max);
        assert!(slots > self.slots.len(), "grow is called below the cap");
        self.resize(slots);
    }

    /// Moves every entry to a table of `slots` slots.
    fn resize(&mut self, slots: usize) {
        assert!(slots > self.len, "every entry fits, with a slot to spare");
        let old = std::mem::replace(&mut self.slots, empty_slots(slots));
        for entry in old.into_vec().into_iter().flatten() {
            place(&mut self.slots, entry);
        }
    }

    /// Average distance of entries from their home, and the longest run of
    /// occupied slots.
    #[cfg(test)]
    pub(crate) fn displacement(&self) -> (f64, usize) {
        let n = self.slots.len();
        let mut total = 0usize;
        let mut run = 0usize;
        let mut max_run = 0usize;
        for (index, slot) in self.slots.iter().enumerate() {
            match slot {
                Some(entry) => {
                    let home = home(entry.hash, n);
                    total += (index + n - home) % n;
                    run += 1;
                    max_run = max_run.max(run);
                }
                None => run = 0,
            }
        }
        (total as f64 / self.len.max(1) as f64, max_run)
    }

    /// Every entry, in slot order: for tests and diagnostics.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry<K, S>> {
        self.slots.iter().flatten()
    }
}

impl<K, S: Copy> Slots<K, S> for Table<K, S> {
    fn len(&self) -> usize {
        Table::len(self)
    }

    fn slot_bytes(&self) -> usize {
        Table::slot_bytes(self)
    }

    fn slot_bytes_max(&self) -> usize {
        Table::slot_bytes_max(self)
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        Table::find(self, hash, key)
    }

    fn state_at(&self, index: usize) -> S {
        self.slots[index]
            .as_ref()
            .expect("an index from `find` holds an entry until the table changes")
            .state
    }

    #[inline]
    fn update<R>(
        &mut self,
        index: usize,
        now_ms: u64,
        check: impl FnOnce(&mut S, u64) -> (R, Option<NonZeroU64>),
    ) -> (R, bool) {
        let entry = self.entry_mut(index);
        let (result, expires_at_ms) = check(&mut entry.state, now_ms);
        match expires_at_ms {
            Some(expires_at_ms) => {
                entry.expires_at_ms = expires_at_ms;
                (result, false)
            }
            None => {
                self.remove_at(index);
                (result, true)
            }
        }
    }

    /// Nothing else can revive an entry of a table for one thread, so a
    /// claim is the index alone.
    fn claim_expired_on_path(&mut self, hash: u64, now_ms: u64) -> Option<usize> {
        self.expired_on_path(hash, now_ms)
    }

    fn replace_claimed(&mut self, index: usize, entry: Entry<K, S>) {
        self.replace_at(index, entry);
    }

    fn release_claim(&mut self, _index: usize) {}

    fn insert_absent(&mut self, entry: Entry<K, S>) {
        Table::insert_absent(self, entry);
    }

    fn sweep(&mut self, now_ms: u64, slots_to_examine: usize, removals_wanted: usize) -> usize {
        Table::sweep(self, now_ms, slots_to_examine, removals_wanted)
    }

    fn purge_expired(&mut self, now_ms: u64) -> usize {
        Table::purge_expired(self, now_ms)
    }

    fn reserve_all(&mut self) {
        Table::reserve_all(self);
    }
}

/// Puts `entry` in the first empty slot of its probe sequence.
fn place<K, S>(slots: &mut [Option<Entry<K, S>>], entry: Entry<K, S>) {
    let count = slots.len();
    let mut index = home(entry.hash, count);
    while slots[index].is_some() {
        index = next(index, count);
    }
    slots[index] = Some(entry);
}

fn empty_slots<K, S>(count: usize) -> Box<[Option<Entry<K, S>>]> {
    std::iter::repeat_with(|| None).take(count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(hash: u64, key: u64, expires_at_ms: u64) -> Entry<u64, u64> {
        Entry {
            hash,
            key,
            state: key * 10,
            expires_at_ms: NonZeroU64::new(expires_at_ms).expect("tests use non-zero expiries"),
        }
    }

    /// Every entry can be found from its home, and the count is right.
    fn assert_consistent(table: &Table<u64, u64>) {
        let mut count = 0;
        for entry in table.entries() {
            let index = table.find(entry.hash, &entry.key).expect("reachable");
            assert_eq!(table.slots[index].as_ref().map(|e| e.key), Some(entry.key));
            count += 1;
        }
        assert_eq!(count, table.len());
    }

    #[test]
    fn empty_slot_costs_nothing_extra() {
        assert_eq!(
            std::mem::size_of::<Option<Entry<u64, u64>>>(),
            std::mem::size_of::<Entry<u64, u64>>()
        );
    }

    #[test]
    fn colliding_hashes_probe_and_shift_back_on_removal() {
        let mut table = Table::new(100);
        // All share one home; removing the first must keep the rest reachable.
        for key in 0..5 {
            table.insert_absent(entry(7, key, 100 + key));
        }
        assert_consistent(&table);
        let first = table.find(7, &0).expect("present");
        table.remove_at(first);
        assert_eq!(table.find(7, &0), None);
        assert_consistent(&table);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn entries_wrapping_past_the_end_stay_reachable() {
        let mut table = Table::new(12);
        assert_eq!(table.slots.len(), 16);
        // Home of u64::MAX is the last slot; the rest wrap to the start.
        for key in 0..4 {
            table.insert_absent(entry(u64::MAX, key, 50));
        }
        table.insert_absent(entry(0, 99, 50));
        assert_consistent(&table);
        let last = table.find(u64::MAX, &0).expect("present");
        table.remove_at(last);
        assert_consistent(&table);
        assert_eq!(table.purge_expired(50), 4);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn grows_to_its_cap_and_no_further() {
        let keys_max = 1_000;
        let mut table = Table::new(keys_max);
        let mut hash = 1u64;
        for key in 0..keys_max as u64 {
            hash = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(key);
            table.insert_absent(entry(hash, key, 10));
        }
        assert_eq!(table.slots.len(), table.slots_max);
        assert!(table.slots_max * 3 >= keys_max * 4);
        assert_consistent(&table);
    }

    #[test]
    fn sweep_removes_only_expired_and_stops_when_asked() {
        let mut table = Table::new(100);
        let mut hash = 3u64;
        for key in 0..40u64 {
            hash = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
            table.insert_absent(entry(hash, key, if key % 2 == 0 { 5 } else { 500 }));
        }
        assert_eq!(table.sweep(5, usize::MAX, 1), 1);
        let swept = table.sweep(5, 1_000, usize::MAX);
        assert_eq!(swept, 19);
        assert!(table.entries().all(|e| e.expires_at_ms.get() == 500));
        assert_consistent(&table);
    }

    #[test]
    fn random_operations_match_a_hash_map() {
        let keys_max = 200;
        let mut table = Table::new(keys_max);
        // Key to expiry.
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut seed = 0x1234_5678u64;
        for step in 1..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = seed % 300;
            // Few distinct hashes force long clusters and wrap-around.
            let hash = (key % 37).wrapping_mul(0x0700_0000_0000_0001);
            match table.find(hash, &key) {
                Some(index) if step % 3 == 0 => {
                    table.remove_at(index);
                    model.remove(&key);
                }
                Some(index) => assert_eq!(table.entry_mut(index).state, key * 10),
                None => {
                    assert!(!model.contains_key(&key));
                    if table.has_room(keys_max) {
                        table.insert_absent(entry(hash, key, step));
                        model.insert(key, step);
                    }
                }
            }
            if step % 1_000 == 0 {
                let now_ms = step - 500;
                let expected = model.values().filter(|&&at| at <= now_ms).count();
                model.retain(|_, at| *at > now_ms);
                assert_eq!(table.purge_expired(now_ms), expected);
            } else if step % 7 == 0 {
                let now_ms = step.saturating_sub(300);
                let removed = table.sweep(now_ms, 5, usize::MAX);
                let before = model.len();
                model.retain(|key, _| {
                    let hash = (key % 37).wrapping_mul(0x0700_0000_0000_0001);
                    table.find(hash, key).is_some()
                });
                assert_eq!(before - model.len(), removed);
            }
            assert_eq!(table.len(), model.len());
        }
        assert_consistent(&table);
    }
}
