//! Handing messages out: leases, long-poll waiters and WebSocket consumers.
//!
//! A message handed out is leased to its consumer for `visibility_ms`;
//! until it is acknowledged or the lease ends nobody else gets it. Leases
//! live in memory (and, for a socket consumer, in the socket's attachment,
//! so that they survive hibernation). A queue holding pull leases stays in
//! memory until the last of them ends; a restart forgets them and hands
//! those messages out again, which at-least-once delivery allows.
//!
//! Ordered delivery (the default) never hands out a message past an
//! earlier one that is leased: a consumer sees the queue in order, and a
//! second consumer waits until the first acknowledges (or its lease ends).
//! Unordered delivery skips leased messages instead.

use std::collections::{BTreeMap, VecDeque};

use crate::object::{Context, Deferred, StorageError, WebSocket};

use super::store;

/// Who holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    Pull,
    Socket(WebSocket),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    pub until_ms: u64,
    pub holder: Holder,
}

/// How a consumer asked for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    pub max: usize,
    pub visibility_ms: u64,
    pub unordered: bool,
}

/// A long-poll pull waiting for messages.
pub(super) struct Waiter {
    pub deferred: Deferred,
    pub want: Want,
    pub deadline_ms: u64,
}

/// A message handed out: its sequence number and body.
pub(super) type Handed = Vec<(u64, Vec<u8>)>;

#[derive(Default)]
pub(super) struct Delivery {
    /// Leased messages by sequence number (expired ones are removed lazily).
    pub leases: BTreeMap<u64, Lease>,
    /// Long-polls in arrival order.
    pub waiters: VecDeque<Waiter>,
    /// Every message below this one is acknowledged: where reads start.
    pub floor: u64,
}

impl Delivery {
    /// Forgets leases whose time is up; returns whether any ended.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(u64, Holder)> {
        let ended: Vec<(u64, Holder)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.until_ms <= now_ms)
            .map(|(seq, l)| (*seq, l.holder))
            .collect();
        for (seq, _) in &ended {
            self.leases.remove(seq);
        }
        super::QueueMetrics::add(|m| &m.leases_expired_total, ended.len() as u64);
        ended
    }

    /// Leases held by `holder`.
    pub fn held_by(&self, holder: Holder) -> usize {
        self.leases.values().filter(|l| l.holder == holder).count()
    }

    /// Releases every lease `holder` has.
    pub fn release(&mut self, holder: Holder) {
        self.leases.retain(|_, l| l.holder != holder);
    }

    /// The earliest lease end.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.leases.values().map(|l| l.until_ms).min()
    }

    /// Leases up to `want.max` messages to `holder` and returns them, in
    /// order. `leases_max` bounds the leases of the whole queue.
    pub fn take(
        &mut self,
        ctx: &mut Context<'_>,
        want: Want,
        holder: Holder,
        leases_max: usize,
    ) -> Result<Handed, StorageError> {
        let now_ms = ctx.now_ms();
        self.expire(now_ms);
        let room = leases_max.saturating_sub(self.leases.len());
        let max = want.max.min(room);
        if max == 0 {
            return Ok(Vec::new());
        }
        // Unordered reads past the leased messages, and so does a socket
        // past its own; an ordered pull stops at the first of them, so it
        // needs no more than it hands out.
        let read = if want.unordered || holder != Holder::Pull {
            max + self.leases.len()
        } else {
            max
        };
        let stored = store::read_from(ctx, self.floor, read)?;
        match stored.first() {
            Some((first, _)) => self.floor = *first,
            None => return Ok(Vec::new()),
        }
        let mut handed = Vec::with_capacity(max);
        for (seq, body) in stored {
            if handed.len() == max {
                break;
            }
            if let Some(lease) = self.leases.get(&seq) {
                // A socket passes its own leases: it holds them in order
                // already. Pulls are anonymous, so one never passes another.
                let own = holder != Holder::Pull && lease.holder == holder;
                if want.unordered || own {
                    continue;
                }
                break;
            }
            let until_ms = now_ms.saturating_add(want.visibility_ms);
            self.leases.insert(seq, Lease { until_ms, holder });
            handed.push((seq, body));
        }
        assert!(handed.len() <= max);
        super::QueueMetrics::add(|m| &m.messages_delivered_total, handed.len() as u64);
        if holder == Holder::Pull && !handed.is_empty() {
            // A pull lease lives only here (a socket's is in its
            // attachment too): the queue stays in memory while it holds.
            ctx.stay_in_memory_until(now_ms.saturating_add(want.visibility_ms));
        }
        Ok(handed)
    }

    /// Puts a lease read back from a socket's attachment into place (after
    /// hibernation).
    pub fn restore(&mut self, seq: u64, lease: Lease) {
        self.leases.entry(seq).or_insert(lease);
    }
}

/// A socket consumer's settings and leases, kept as its attachment so they
/// outlive the object's time in memory: max_in_flight u32, visibility_ms
/// u64, unordered u8, then (seq u64, until_ms u64) per lease, all LE.
pub(super) fn encode_attachment(want: Want, leases: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + leases.len() * 16);
    out.extend_from_slice(&(want.max as u32).to_le_bytes());
    out.extend_from_slice(&want.visibility_ms.to_le_bytes());
    out.push(u8::from(want.unordered));
    for (seq, until_ms) in leases {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&until_ms.to_le_bytes());
    }
    out
}

/// Reads an attachment written by [`encode_attachment`].
pub(super) fn decode_attachment(bytes: &[u8]) -> Option<(Want, Vec<(u64, u64)>)> {
    let u64_at = |i: usize| {
        bytes
            .get(i..i + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let max = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let visibility_ms = u64_at(4)?;
    let unordered = *bytes.get(12)? == 1;
    let rest = bytes.get(13..)?;
    if !rest.len().is_multiple_of(16) {
        return None;
    }
    let leases = (0..rest.len() / 16)
        .map(|i| Some((u64_at(13 + i * 16)?, u64_at(21 + i * 16)?)))
        .collect::<Option<Vec<_>>>()?;
    let want = Want {
        max,
        visibility_ms,
        unordered,
    };
    Some((want, leases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_round_trips() {
        let want = Want {
            max: 7,
            visibility_ms: 1234,
            unordered: true,
        };
        let leases = vec![(1, 10), (5, 50)];
        let bytes = encode_attachment(want, &leases);
        assert_eq!(decode_attachment(&bytes), Some((want, leases)));
        assert_eq!(decode_attachment(&bytes[..bytes.len() - 1]), None);
    }
}
