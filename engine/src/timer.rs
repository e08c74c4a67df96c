//! The shard's timer wheel.
//!
//! Deadlines within the near window (`slots × tick_ms`) live in a hashed
//! wheel: inserting is O(1) and firing touches only the slots that passed.
//! Deadlines beyond the window wait in a heap and move into the wheel as
//! they come near, so a million far-future timers cost the heap's entries
//! and nothing in the wheel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Entries a drained slot keeps room for; a slot that held more (a burst
/// of timers due in the same tick) gives its memory back once it empties.
const SLOT_CAPACITY_KEPT: usize = 64;
/// The far heap shrinks once at most a quarter of its capacity is used and
/// it is more than four times this.
const FAR_CAPACITY_KEPT: usize = 1024;
/// The most far entries one shrink moves, so that it takes at most a few
/// milliseconds of an advance; a heap with more keeps its capacity, which
/// is then at most four times what it holds.
const FAR_SHRINK_LEN_MAX: usize = 128 * 1024;

/// A timer wheel whose entries carry a `T`.
pub struct TimerWheel<T> {
    tick_ms: u64,
    slots: Vec<Vec<(u64, T)>>,
    /// The tick the wheel has advanced to; slots before it are empty.
    current_tick: u64,
    far: BinaryHeap<Reverse<FarEntry<T>>>,
    far_seq: u64,
    /// A lower bound of the earliest deadline, or `u64::MAX` when empty.
    earliest_ms: u64,
    len: usize,
}

struct FarEntry<T> {
    deadline_ms: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for FarEntry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ms, self.seq) == (other.deadline_ms, other.seq)
    }
}
impl<T> Eq for FarEntry<T> {}
impl<T> PartialOrd for FarEntry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for FarEntry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ms, self.seq).cmp(&(other.deadline_ms, other.seq))
    }
}

impl<T> TimerWheel<T> {
    /// A wheel of `slots` slots of `tick_ms` each, starting at `now_ms`.
    pub fn new(tick_ms: u64, slots: usize, now_ms: u64) -> Self {
        assert!(tick_ms > 0, "a tick must last at least 1 ms");
        assert!(slots > 0, "a wheel needs slots");
        TimerWheel {
            tick_ms,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            current_tick: now_ms / tick_ms,
            far: BinaryHeap::new(),
            far_seq: 0,
            earliest_ms: u64::MAX,
            len: 0,
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn near_ticks(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Schedules `item` at `deadline_ms`. A deadline in the past fires on
    /// the next advance.
    pub fn insert(&mut self, deadline_ms: u64, item: T) {
        self.len += 1;
        self.earliest_ms = self.earliest_ms.min(deadline_ms);
        let tick = (deadline_ms / self.tick_ms).max(self.current_tick);
        if tick - self.current_tick < self.near_ticks() {
            let slot = (tick % self.near_ticks()) as usize;
            self.slots[slot].push((deadline_ms, item));
        } else {
            self.far_seq += 1;
            self.far.push(Reverse(FarEntry {
                deadline_ms,
                seq: self.far_seq,
                item,
            }));
        }
    }

    /// Moves every item whose deadline is at or before `now_ms` into `fired`.
    pub fn advance(&mut self, now_ms: u64, fired: &mut Vec<T>) {
        if now_ms < self.earliest_ms {
            return;
        }
        let target = now_ms / self.tick_ms;
        let span = (target - self.current_tick).min(self.near_ticks() - 1);
        let first = target - span;
        let near = self.near_ticks();
        for tick in first..=target {
            let slot = &mut self.slots[(tick % near) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= now_ms {
                    fired.push(slot.swap_remove(i).1);
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
            if slot.is_empty() && slot.capacity() > SLOT_CAPACITY_KEPT {
                *slot = Vec::new();
            }
        }
        self.current_tick = target;
        while self
            .far
            .peek()
            .is_some_and(|e| e.0.deadline_ms / self.tick_ms < target + self.near_ticks())
        {
            let Reverse(entry) = self.far.pop().expect("peeked above");
            self.len -= 1;
            if entry.deadline_ms <= now_ms {
                fired.push(entry.item);
            } else {
                self.insert(entry.deadline_ms, entry.item);
            }
        }
        let far_len = self.far.len();
        if self.far.capacity() > 4 * far_len.max(FAR_CAPACITY_KEPT) && far_len <= FAR_SHRINK_LEN_MAX
        {
            self.far.shrink_to((far_len * 2).max(FAR_CAPACITY_KEPT));
        }
        self.earliest_ms = self.scan_earliest();
    }

    /// Entries the wheel holds memory for, fired or not.
    pub fn capacity(&self) -> usize {
        self.far.capacity() + self.slots.iter().map(Vec::capacity).sum::<usize>()
    }

    fn scan_earliest(&self) -> u64 {
        for k in 0..self.near_ticks() {
            let slot = &self.slots[((self.current_tick + k) % self.near_ticks()) as usize];
            if let Some(min) = slot.iter().map(|e| e.0).min() {
                return min;
            }
        }
        self.far.peek().map_or(u64::MAX, |e| e.0.deadline_ms)
    }

    /// The earliest pending deadline (a lower bound: it may belong to a
    /// timer whose owner no longer cares), or `None`.
    pub fn next_deadline(&self) -> Option<u64> {
        (self.len > 0).then_some(self.earliest_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_near_and_far() {
        let mut wheel = TimerWheel::new(4, 16, 1000);
        wheel.insert(1010, "near");
        wheel.insert(1000 + 4 * 16 * 10, "far");
        wheel.insert(999, "past");
        let mut fired = Vec::new();
        wheel.advance(1001, &mut fired);
        assert_eq!(fired, vec!["past"]);
        assert_eq!(wheel.next_deadline(), Some(1010));
        wheel.advance(1009, &mut fired);
        assert_eq!(fired.len(), 1);
        wheel.advance(1010, &mut fired);
        assert_eq!(fired, vec!["past", "near"]);
        wheel.advance(1000 + 4 * 16 * 10 - 1, &mut fired);
        assert_eq!(fired.len(), 2);
        wheel.advance(1000 + 4 * 16 * 10, &mut fired);
        assert_eq!(fired, vec!["past", "near", "far"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn a_burst_of_timers_leaves_no_memory_behind_once_fired() {
        let mut wheel = TimerWheel::new(1, 8, 0);
        let empty = wheel.capacity();
        for n in 0..10_000u64 {
            wheel.insert(3, n);
            wheel.insert(100_000 + n, n);
        }
        let mut fired = Vec::new();
        wheel.advance(200_000, &mut fired);
        assert_eq!(fired.len(), 20_000);
        assert!(wheel.is_empty());
        assert!(
            wheel.capacity() <= empty + FAR_CAPACITY_KEPT,
            "{} entries of room kept",
            wheel.capacity()
        );
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut wheel = TimerWheel::new(1, 8, 0);
        for d in 0..100 {
            wheel.insert(d, d);
        }
        let mut fired = Vec::new();
        wheel.advance(1000, &mut fired);
        fired.sort_unstable();
        assert_eq!(fired, (0..100).collect::<Vec<_>>());
    }
}
