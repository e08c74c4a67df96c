//! The queue's stored log: one key per unacknowledged message, and a meta
//! record with the next sequence number, the message count and bytes.
//!
//! | key | value |
//! | --- | --- |
//! | `meta` | next_seq, count, bytes: three u64 LE |
//! | `m/` + seq (u64 BE) | the message body |
//! | `d/` + seq (u64 BE) | a dead-lettered message (JSON) |
//!
//! Sequence numbers start at 1 and are dense: an append takes the next
//! ones in one event, so concurrent producers are ordered by the object's
//! one-event-at-a-time execution. An acknowledged message is deleted, and
//! the meta record changes in the same event, so the counts the size limits
//! check are always those of the stored messages.

use crate::object::{Context, ListOptions, StorageError, TransactionError};

const META_KEY: &[u8] = b"meta";
pub(super) const MESSAGE_PREFIX: &[u8] = b"m/";
pub(super) const DEAD_PREFIX: &[u8] = b"d/";

/// Messages listed per storage read when acknowledging a range.
const ACK_PAGE_MESSAGES: usize = 1000;

/// What the queue stores, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// The sequence number the next appended message gets.
    pub next_seq: u64,
    /// Unacknowledged messages stored.
    pub count: u64,
    /// Their body bytes.
    pub bytes: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            next_seq: 1,
            count: 0,
            bytes: 0,
        }
    }
}

impl Meta {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.next_seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..].copy_from_slice(&self.bytes.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Meta> {
        let field = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
        };
        if bytes.len() != 24 {
            return None;
        }
        let meta = Meta {
            next_seq: field(0)?,
            count: field(1)?,
            bytes: field(2)?,
        };
        // Every stored message has a sequence number below next_seq.
        (meta.next_seq >= 1 && meta.count < meta.next_seq).then_some(meta)
    }
}

/// The key of message `seq` under `prefix`.
pub(super) fn seq_key(prefix: &[u8], seq: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(prefix);
    key[2..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number in a key under a two-byte prefix.
pub(super) fn key_seq(key: &[u8]) -> Option<u64> {
    key.get(2..10)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

/// Reads the meta record (a new queue's if there is none).
pub(super) fn load_meta(ctx: &mut Context<'_>) -> Result<Meta, StorageError> {
    match ctx.storage().get(META_KEY)? {
        None => Ok(Meta::default()),
        Some(bytes) => {
            Meta::decode(&bytes).ok_or(StorageError::CorruptRecord { what: "queue meta" })
        }
    }
}

/// Appends `bodies` as one atomic write; returns the first sequence number.
/// The caller has checked the queue's limits.
pub(super) fn append(
    ctx: &mut Context<'_>,
    meta: &mut Meta,
    bodies: &[&[u8]],
) -> Result<u64, StorageError> {
    assert!(!bodies.is_empty());
    let mut next = *meta;
    let first_seq = next.next_seq;
    let result = ctx.storage().transaction(|storage| {
        for body in bodies {
            storage.put(&seq_key(MESSAGE_PREFIX, next.next_seq), body)?;
            next.next_seq += 1;
            next.count += 1;
            next.bytes += body.len() as u64;
        }
        storage.put(META_KEY, &next.encode())
    });
    match result {
        Ok(()) => {
            assert_eq!(next.next_seq, first_seq + bodies.len() as u64);
            *meta = next;
            super::QueueMetrics::add(|m| &m.messages_appended_total, bodies.len() as u64);
            Ok(first_seq)
        }
        Err(TransactionError::Aborted(e)) => Err(e),
    }
}

/// Deletes message `seq` under `prefix` if it is stored; returns whether it
/// was. The meta record is written by [`store_meta`].
pub(super) fn remove(
    ctx: &mut Context<'_>,
    meta: &mut Meta,
    seq: u64,
) -> Result<bool, StorageError> {
    let key = seq_key(MESSAGE_PREFIX, seq);
    let Some(len) = ctx.storage().get_with(&key, |v| v.map(<[u8]>::len))? else {
        return Ok(false);
    };
    ctx.storage().delete(&key)?;
    assert!(meta.count >= 1);
    meta.count -= 1;
    meta.bytes = meta.bytes.saturating_sub(len as u64);
    Ok(true)
}

pub(super) fn store_meta(ctx: &mut Context<'_>, meta: &Meta) -> Result<(), StorageError> {
    ctx.storage().put(META_KEY, &meta.encode())
}

/// Deletes every stored message with a sequence number from `floor` to
/// `through`, inclusive; returns the sequence numbers deleted.
pub(super) fn remove_through(
    ctx: &mut Context<'_>,
    meta: &mut Meta,
    floor: u64,
    through: u64,
) -> Result<Vec<u64>, StorageError> {
    let mut removed = Vec::new();
    if through < floor {
        // Everything up to `through` is acknowledged already.
        return Ok(removed);
    }
    let end = seq_key(MESSAGE_PREFIX, through.saturating_add(1));
    let mut start = seq_key(MESSAGE_PREFIX, floor);
    loop {
        let page = ctx.storage().list(&ListOptions {
            prefix: Some(MESSAGE_PREFIX),
            start: Some(&start),
            end: Some(&end),
            limit: Some(ACK_PAGE_MESSAGES),
            ..ListOptions::default()
        })?;
        for (key, _) in &page {
            let seq = key_seq(key).ok_or(StorageError::CorruptRecord {
                what: "queue message key",
            })?;
            if remove(ctx, meta, seq)? {
                removed.push(seq);
            }
        }
        match page.last().and_then(|(key, _)| key_seq(key)) {
            Some(last) if page.len() == ACK_PAGE_MESSAGES => {
                start = seq_key(MESSAGE_PREFIX, last + 1);
            }
            _ => return Ok(removed),
        }
    }
}

/// Up to `limit` stored messages from `floor` on, in order.
pub(super) fn read_from(
    ctx: &mut Context<'_>,
    floor: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
    let start = seq_key(MESSAGE_PREFIX, floor);
    let entries = ctx.storage().list(&ListOptions {
        prefix: Some(MESSAGE_PREFIX),
        start: Some(&start),
        limit: Some(limit),
        ..ListOptions::default()
    })?;
    entries
        .into_iter()
        .map(|(key, body)| {
            let seq = key_seq(&key).ok_or(StorageError::CorruptRecord {
                what: "queue message key",
            })?;
            assert!(seq >= floor);
            Ok((seq, body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_impossible_counts() {
        let meta = Meta {
            next_seq: 10,
            count: 3,
            bytes: 99,
        };
        assert_eq!(Meta::decode(&meta.encode()), Some(meta));
        let broken = Meta {
            next_seq: 2,
            count: 5,
            bytes: 0,
        };
        assert_eq!(Meta::decode(&broken.encode()), None);
        assert_eq!(Meta::decode(b"short"), None);
    }

    #[test]
    fn message_keys_sort_by_sequence_number() {
        let a = seq_key(MESSAGE_PREFIX, 255);
        let b = seq_key(MESSAGE_PREFIX, 256);
        assert!(a < b);
        assert_eq!(key_seq(&b), Some(256));
    }
}
