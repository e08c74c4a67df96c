//! The requests of one RPC connection that await their responses, found by
//! request ID in O(1) whatever order the responses come back in.
//!
//! The table has one entry per pipeline slot. A request's ID carries its
//! slot in the low [`SLOT_BITS`] bits and the connection's sequence number
//! of the request above them, so the ID of a response names the entry to
//! look in, and the entry's stored ID tells a real answer from a stray or
//! repeated one. Sequence numbers start at 1, so no request gets ID 0,
//! which the protocol reserves for errors of the connection.
//!
//! ```
//! use loadgen::protocol::InFlight;
//! use loadgen::rpc::table::InFlightTable;
//! let mut table = InFlightTable::new(2);
//! let a = table.insert(InFlight { origin_ns: 1, written_ns: 1 });
//! let b = table.insert(InFlight { origin_ns: 2, written_ns: 2 });
//! assert_eq!(table.take(b).map(|r| r.origin_ns), Some(2)); // out of order
//! assert_eq!(table.take(b), None);                        // answered already
//! assert_eq!(table.take(a).map(|r| r.origin_ns), Some(1));
//! ```

use crate::protocol::InFlight;

/// Bits of a request ID that name its slot; the table holds at most
/// `1 << SLOT_BITS` requests.
pub const SLOT_BITS: u32 = 10;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The most requests one table holds.
pub const IN_FLIGHT_MAX: usize = 1 << SLOT_BITS;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// 0 while the slot is free.
    request_id: u64,
    request: InFlight,
}

const FREE: Entry = Entry {
    request_id: 0,
    request: InFlight {
        origin_ns: 0,
        written_ns: 0,
    },
};

#[derive(Debug)]
pub struct InFlightTable {
    entries: Vec<Entry>,
    /// Free slots, used last-freed first.
    free: Vec<u32>,
    /// The sequence number of the next request.
    next_seq: u64,
    /// No request in the table was written before this; `None` when empty.
    /// It is exact when set and only goes stale (too early) as the oldest
    /// requests are answered, so the table is scanned for the true oldest
    /// only when this bound says a request might have timed out.
    oldest_bound_ns: Option<u64>,
}

impl InFlightTable {
    /// A table for at most `max` requests in flight.
    pub fn new(max: usize) -> InFlightTable {
        assert!(
            (1..=IN_FLIGHT_MAX).contains(&max),
            "pipeline depth is checked"
        );
        InFlightTable {
            entries: vec![FREE; max],
            free: (0..max as u32).rev().collect(),
            next_seq: 1,
            oldest_bound_ns: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.len() == self.entries.len()
    }

    /// Remembers `request` and returns its ID. The caller keeps the table
    /// from overflowing: a full table here is a bug.
    pub fn insert(&mut self, request: InFlight) -> u64 {
        let slot = self.free.pop().expect("the caller checks for a free slot");
        let request_id = (self.next_seq << SLOT_BITS) | u64::from(slot);
        self.next_seq += 1;
        self.entries[slot as usize] = Entry {
            request_id,
            request,
        };
        self.oldest_bound_ns.get_or_insert(request.written_ns);
        request_id
    }

    /// The request `request_id` answers; `None` if it names no request in
    /// flight (never sent, or answered already).
    pub fn take(&mut self, request_id: u64) -> Option<InFlight> {
        let slot = (request_id & SLOT_MASK) as usize;
        let entry = self.entries.get_mut(slot)?;
        if request_id == 0 || entry.request_id != request_id {
            return None;
        }
        let request = entry.request;
        *entry = FREE;
        self.free.push(slot as u32);
        if self.is_empty() {
            self.oldest_bound_ns = None;
        }
        Some(request)
    }

    /// Whether a request has waited `timeout_ns` or more by `now_ns`.
    pub fn timed_out(&mut self, now_ns: u64, timeout_ns: u64) -> bool {
        let Some(bound_ns) = self.oldest_bound_ns else {
            return false;
        };
        if now_ns.saturating_sub(bound_ns) < timeout_ns {
            return false;
        }
        let oldest_ns = self
            .entries
            .iter()
            .filter(|entry| entry.request_id != 0)
            .map(|entry| entry.request.written_ns)
            .min()
            .expect("a bound is kept only while requests are in flight");
        self.oldest_bound_ns = Some(oldest_ns);
        now_ns.saturating_sub(oldest_ns) >= timeout_ns
    }

    /// Forgets every request, returning how many there were.
    pub fn clear(&mut self) -> u64 {
        let count = self.len() as u64;
        self.entries.fill(FREE);
        self.free.clear();
        self.free.extend((0..self.entries.len() as u32).rev());
        self.oldest_bound_ns = None;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> InFlight {
        InFlight {
            origin_ns: ns,
            written_ns: ns,
        }
    }

    #[test]
    fn ids_are_unique_nonzero_and_match_out_of_order() {
        let mut table = InFlightTable::new(3);
        let ids: Vec<u64> = (0..3).map(|i| table.insert(at(i))).collect();
        assert!(ids.iter().all(|&id| id != 0));
        assert_eq!(table.len(), 3);
        // The middle one first, then its slot is reused under a new ID.
        assert_eq!(table.take(ids[1]), Some(at(1)));
        let reused = table.insert(at(9));
        assert_ne!(reused, ids[1]);
        assert_eq!(reused & SLOT_MASK, ids[1] & SLOT_MASK);
        assert_eq!(table.take(ids[1]), None, "a stale ID answers nothing");
        assert_eq!(table.take(ids[2]), Some(at(2)));
        assert_eq!(table.take(reused), Some(at(9)));
        assert_eq!(table.take(ids[0]), Some(at(0)));
        assert!(table.is_empty());
    }

    #[test]
    fn refuses_ids_it_never_gave() {
        let mut table = InFlightTable::new(2);
        let id = table.insert(at(1));
        for stray in [0, id + 1, id ^ (1 << 40), u64::MAX, SLOT_MASK] {
            assert_eq!(table.take(stray), None, "{stray:#x}");
        }
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn times_out_by_the_oldest_request_still_waiting() {
        let mut table = InFlightTable::new(4);
        let first = table.insert(at(100));
        table.insert(at(200));
        assert!(!table.timed_out(150, 100));
        assert!(table.timed_out(200, 100));
        // Once the oldest is answered, the next one sets the clock.
        table.take(first);
        assert!(!table.timed_out(250, 100));
        assert!(table.timed_out(300, 100));
        assert_eq!(table.clear(), 1);
        assert!(!table.timed_out(u64::MAX, 1));
        assert_eq!(table.free.len(), 4);
    }
}
